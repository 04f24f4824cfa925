//! What the connection shares with other tasks: the bounded outbound queue, the waker,
//! the liveness clock, and the [`Outbound`] handle that publishers send through.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use bytes::Bytes;
use tokio::time::Instant;
use tungstenite::protocol::frame::coding::CloseCode;

use super::Role;
use crate::error::Result;
use crate::ws::frame;
use crate::ws::prepared::PreparedMessage;

/// Why [`Outbound::try_send`] refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The queue holds `max_queued_bytes` already: the peer reads too slowly.
    #[error("outbound queue is full")]
    Full,
    /// The connection is closing or closed.
    #[error("connection is closed")]
    Closed,
}

/// Milliseconds on a process-wide monotonic clock, cheap to store in an atomic.
pub(super) fn now_ms() -> u64 {
    clock_start().elapsed().as_millis() as u64
}

/// tokio's clock rather than std's, so that liveness logic can be tested with
/// `tokio::time::pause()`.
fn clock_start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// What the connection and its [`Outbound`] handles share.
pub(super) struct Shared {
    /// A std mutex: it is held only to push to or swap out the queue, never across an
    /// `.await`, so an async mutex would only add cost.
    pub(super) queue: Mutex<Queue>,
    /// Wakes the connection's task when something is queued.
    pub(super) waker: AtomicWaker,
    /// When the peer last sent anything (ms on [`now_ms`]'s clock); read by liveness
    /// sweeps so that no connection needs a timer of its own.
    pub(super) last_seen: AtomicU64,
    /// Server window bits when permessage-deflate was negotiated.
    pub(super) deflate_bits: Option<u8>,
    pub(super) role: Role,
    pub(super) max_queued_bytes: usize,
    pub(super) compression_threshold: usize,
}

/// The outbound queue. Data frames count against `max_queued_bytes`; control frames
/// are bounded by construction (one pending pong, one ping flag, one close).
#[derive(Default)]
pub(super) struct Queue {
    pub(super) items: VecDeque<Bytes>,
    pub(super) bytes: usize,
    /// The uncompressed payload bytes of `items` (what `bytes` was before compression
    /// and framing), taken with them by the writer for its observer. A plain add under
    /// the lock each send already takes: nothing shared between connections.
    #[cfg(feature = "metrics")]
    pub(super) payload_bytes: usize,
    /// The pong for the most recent ping not yet answered (RFC 6455 §5.5.3 allows
    /// answering only the latest), so a ping flood cannot grow the queue.
    pub(super) pong: Option<Bytes>,
    pub(super) ping: bool,
    /// A close frame to send after `items`; once set, nothing more is accepted.
    pub(super) close: Option<Bytes>,
    pub(super) closing: bool,
    /// The connection task is parked on a write (or flush) the peer has not made room
    /// for. Data pushed meanwhile need not wake it: it moves everything queued into its
    /// next batch as soon as the current one is out. A close still wakes it, because
    /// the close starts the close deadline, which must run even if the peer never
    /// reads again. Cleared when the task next takes from the queue.
    pub(super) writer_parked: bool,
    /// The close that began the closing handshake, whichever side sent it first, for
    /// the owner to report once the connection ends (the hub's disconnect hook). Set
    /// together with `closing`, once; a boxed reason keeps an open connection's queue
    /// at one pointer's worth of extra state.
    pub(super) close_record: Option<CloseRecord>,
}

/// The close that began a connection's closing handshake (see
/// [`Outbound::close_record`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CloseRecord {
    /// The close code: ours as sent, or the peer's as received (1005 when its close
    /// frame carried no code).
    pub(crate) code: u16,
    /// The reason text as sent (clipped to the 123 bytes a close frame holds) or as
    /// received.
    pub(crate) reason: Box<str>,
    /// Whether the peer closed first.
    pub(crate) by_peer: bool,
}

/// The longest close reason a close frame can carry (RFC 6455 §5.5: 125 bytes of
/// payload, 2 of them the code), cut at a character boundary.
pub(crate) fn clip_close_reason(reason: &str) -> &str {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock cannot leave the queue inconsistent (every
        // critical section is a push or a swap), so a poisoned lock is still usable.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn mask(&self) -> Option<[u8; 4]> {
        (self.role == Role::Client).then(rand::random)
    }

    /// Appends `msg`'s frame for this connection (compressed when negotiated and worth
    /// it; masked in the client role). `bounded`: refuse with [`SendError::Full`] when
    /// the queue already holds `max_queued_bytes` (a message larger than the limit is
    /// still accepted into an empty queue, so it can be delivered at all). `Ok(true)`:
    /// the connection task should be woken (it is not parked on a full socket).
    pub(super) fn enqueue(&self, msg: &PreparedMessage, bounded: bool) -> Result<bool, SendError> {
        let bits = self
            .deflate_bits
            .filter(|_| msg.payload().len() >= self.compression_threshold);
        // Build (or fetch the shared) frame before taking the lock.
        let frame = msg.frame_for(bits, self.mask());
        let mut q = self.lock();
        if q.closing {
            return Err(SendError::Closed);
        }
        if bounded && q.bytes > 0 && q.bytes + frame.len() > self.max_queued_bytes {
            return Err(SendError::Full);
        }
        q.bytes += frame.len();
        #[cfg(feature = "metrics")]
        {
            q.payload_bytes += msg.payload().len();
        }
        q.items.push_back(frame);
        Ok(!q.writer_parked)
    }

    pub(super) fn close_frame(&self, code: CloseCode, reason: &str) -> Bytes {
        frame::encode_close(code.into(), reason, self.mask())
    }
}

/// A cheap, cloneable handle for sending on a connection from any task.
///
/// Sending never waits: [`try_send`](Self::try_send) appends to the connection's
/// bounded queue (or refuses) and wakes the connection, whose task writes everything
/// queued in one vectored write. (A connection parked on a full socket is not woken
/// for data, only for a close: it takes the queue as soon as the socket drains.)
#[derive(Clone)]
pub struct Outbound(pub(super) Arc<Shared>);

impl fmt::Debug for Outbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbound")
            .field("queued_bytes", &self.queued_bytes())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Outbound {
    /// Queues a prepared message. Refuses with [`SendError::Full`] when the queue
    /// already holds `max_queued_bytes` (a message larger than the limit is still
    /// accepted into an empty queue, so it can be delivered at all), and with
    /// [`SendError::Closed`] once the connection is closing.
    pub fn try_send(&self, msg: &PreparedMessage) -> Result<(), SendError> {
        if self.0.enqueue(msg, true)? {
            self.0.waker.wake();
        }
        Ok(())
    }

    /// Starts the closing handshake after everything already queued has been sent:
    /// the close frame goes behind the messages and replies queued so far, and from now
    /// on nothing new is accepted ([`try_send`](Self::try_send) answers
    /// [`SendError::Closed`]) and messages the peer sends are read only to be
    /// discarded ([`WebSocket::recv`](super::WebSocket::recv) never returns them). The flush,
    /// the close frame and the peer's answer together take at most `close_timeout`; a
    /// peer that reads too slowly for that gets cut off without the rest. Does nothing
    /// if the connection is already closing.
    ///
    /// This is the close for every policy decision (flooding and token expiry 1008, slow
    /// consumer 1013, the engine's own 1002/1007/1009, shutdown 1001): the peer is still
    /// there, and the replies to what it sent before are owed to it.
    pub fn close(&self, code: CloseCode, reason: &str) {
        self.enqueue_close(code, reason, false);
    }

    /// Starts the closing handshake at once, dropping whatever is still queued (a
    /// frame already being written is finished, so the stream stays well-formed).
    ///
    /// Only for a peer presumed gone, such as the liveness sweep's 1001 "ping timeout"
    /// for a peer that has sent nothing, not even a pong, for `pong_timeout`: what is
    /// queued for it would almost surely never be read, and dropping it frees up to
    /// `max_queued_bytes` now rather than after `close_timeout`. A peer that is only
    /// slow or misbehaving gets [`close`](Self::close).
    pub fn close_now(&self, code: CloseCode, reason: &str) {
        self.enqueue_close(code, reason, true);
    }

    fn enqueue_close(&self, code: CloseCode, reason: &str, discard: bool) {
        let frame = self.0.close_frame(code, reason);
        {
            let mut q = self.0.lock();
            if q.closing {
                return;
            }
            if discard {
                q.items = VecDeque::new();
                q.bytes = 0;
                #[cfg(feature = "metrics")]
                {
                    q.payload_bytes = 0;
                }
            }
            q.close = Some(frame);
            q.closing = true;
            q.close_record = Some(CloseRecord {
                code: code.into(),
                reason: clip_close_reason(reason).into(),
                by_peer: false,
            });
        }
        self.0.waker.wake();
    }

    /// The close that began the closing handshake, once one has: ours (from
    /// [`close`](Self::close), [`close_now`](Self::close_now) or an error close) or the
    /// peer's close frame, whichever came first. `None` while open, and for a
    /// connection that ended without any close frame (the TCP connection dropped).
    pub(crate) fn close_record(&self) -> Option<CloseRecord> {
        self.0.lock().close_record.clone()
    }

    /// Queues a ping (at most one is pending at a time). Liveness sweeps call this and
    /// then look at [`last_seen`](Self::last_seen).
    pub fn ping(&self) {
        let was = std::mem::replace(&mut self.0.lock().ping, true);
        if !was {
            self.0.waker.wake();
        }
    }

    /// When the peer last sent anything (any frame, including pongs).
    pub fn last_seen(&self) -> Instant {
        clock_start() + Duration::from_millis(self.0.last_seen.load(Ordering::Relaxed))
    }

    /// Bytes of data frames waiting to be written.
    pub fn queued_bytes(&self) -> usize {
        self.0.lock().bytes
    }

    /// Whether the connection is closing or closed (sends are refused).
    pub fn is_closed(&self) -> bool {
        self.0.lock().closing
    }

    /// Whether permessage-deflate was negotiated on this connection.
    pub fn is_compressed(&self) -> bool {
        self.0.deflate_bits.is_some()
    }
}
