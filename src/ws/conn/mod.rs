//! One WebSocket connection: the frame reader, message assembly, the outbound queue and
//! the writer, all driven by one task.
//!
//! A connection is a single future, not a reader task plus a writer task: whoever awaits
//! [`WebSocket::recv`] also flushes the outbound queue, so an idle connection costs one
//! task, one small [`Shared`] block and no read buffer at all. Other tasks (the hub's
//! publishers) reach the connection through an [`Outbound`] handle, which only appends
//! to a bounded queue and wakes the connection: a publisher never waits for a slow
//! reader.
//!
//! Closing keeps the queue: a close frame goes out behind what was queued before it,
//! and one deadline (`close_timeout`, armed when the connection first sees the close)
//! bounds that flush together with the closing handshake, so a peer that stops reading
//! cannot hold a closing connection.

#[cfg(feature = "metrics")]
mod observe;
mod outbound;
mod read;
#[cfg(test)]
mod tests;
mod write;

use super::message::{Message, Role};
#[cfg(feature = "metrics")]
pub(crate) use observe::ConnObserver;
pub(crate) use outbound::{CloseRecord, clip_close_reason};
pub use outbound::{Outbound, SendError};

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Sleep;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

use self::outbound::{Queue, Shared, now_ms};
use self::read::{CurFrame, Partial};
use super::config::WsConfig;
use super::deflate::DeflateParams;
use super::prepared::PreparedMessage;
use super::utf8::Utf8Validator;
use crate::error::{Error, ProtocolError, Result};

/// A WebSocket connection after the opening handshake.
///
/// [`recv`](Self::recv) drives the connection: it reads and answers control frames,
/// writes whatever is queued, and returns the next complete message. Call it in a loop
/// for as long as the connection lives; sending works from any task through
/// [`outbound`](Self::outbound).
pub struct WebSocket<S> {
    stream: S,
    shared: Arc<Shared>,
    config: WsConfig,
    deflate: Option<DeflateParams>,
    /// Bytes read but not yet consumed. Empty and unallocated while idle: reads land in
    /// a per-thread scratch buffer and are copied here only when a frame is incomplete.
    rbuf: BytesMut,
    cur: Option<CurFrame>,
    partial: Option<Box<Partial>>,
    /// Validates the text message in progress as its bytes arrive (fail fast).
    utf8: Option<Utf8Validator>,
    /// Frames being written; `woff` bytes of the first are already out.
    wbatch: VecDeque<Bytes>,
    woff: usize,
    /// The last frame of `wbatch` is our close frame.
    close_in_batch: bool,
    needs_flush: bool,
    close_sent: bool,
    /// The peer's close frame, once received (boxed: every open connection carries
    /// this field, and only a closing one fills it).
    close_received: Option<Box<Option<CloseFrame>>>,
    read_eof: bool,
    write_shut: bool,
    /// When closing must be over: armed (`close_timeout` ahead) when the connection first
    /// sees a close queued. It bounds the flush of what was queued before the close, the
    /// close frame and the wait for the peer's answer, together. The only timer a
    /// connection ever has, and only while it closes.
    close_deadline: Option<Pin<Box<Sleep>>>,
    /// Run when an error closes the connection, before the grace period in which the
    /// peer may read our close frame (see [`WebSocket::on_error_close`]).
    on_error_close: Option<Box<dyn FnOnce() + Send>>,
    /// Told of bytes read and written and of ping round trips (the hub's metrics);
    /// `None` costs one branch per read and write.
    #[cfg(feature = "metrics")]
    observer: Option<Arc<dyn ConnObserver>>,
    /// When our last ping was written, while its pong is awaited (only with an
    /// observer): the pong's arrival gives the round trip.
    #[cfg(feature = "metrics")]
    ping_sent: Option<tokio::time::Instant>,
}

impl<S> fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("role", &self.shared.role)
            .field("deflate", &self.deflate)
            .field("close_sent", &self.close_sent)
            .field("close_received", &self.close_received)
            .finish_non_exhaustive()
    }
}

/// What one round of I/O produced.
enum IoEvent {
    /// New bytes are in `rbuf`, or writing made progress worth re-checking state for.
    Progress,
    /// The peer closed its side.
    Eof,
    /// The closing handshake took longer than `close_timeout`.
    Timeout,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Wraps a stream on which the opening handshake is complete. `leftover` holds
    /// bytes read past the handshake (they belong to the WebSocket stream); `deflate`
    /// is what was negotiated. Use this with streams upgraded by hyper or axum; the
    /// [`handshake`](super::handshake) module calls it for raw streams.
    pub fn from_parts(
        stream: S,
        role: Role,
        config: WsConfig,
        deflate: Option<DeflateParams>,
        leftover: BytesMut,
    ) -> Self {
        let deflate_bits = deflate.map(|d| match role {
            Role::Server => d.server_window_bits(),
            Role::Client => d.client_window_bits(),
        });
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            waker: AtomicWaker::new(),
            last_seen: AtomicU64::new(now_ms()),
            deflate_bits,
            role,
            max_queued_bytes: config.max_queued_bytes,
            compression_threshold: config.compression_threshold,
        });
        WebSocket {
            stream,
            shared,
            config,
            deflate,
            rbuf: leftover,
            cur: None,
            partial: None,
            utf8: None,
            wbatch: VecDeque::new(),
            woff: 0,
            close_in_batch: false,
            needs_flush: false,
            close_sent: false,
            close_received: None,
            read_eof: false,
            write_shut: false,
            close_deadline: None,
            on_error_close: None,
            #[cfg(feature = "metrics")]
            observer: None,
            #[cfg(feature = "metrics")]
            ping_sent: None,
        }
    }

    /// Reports this connection's traffic and ping round trips to `observer` from now on.
    #[cfg(feature = "metrics")]
    pub(crate) fn set_observer(&mut self, observer: Arc<dyn ConnObserver>) {
        self.observer = Some(observer);
    }

    /// Sets a function to run once if the connection is closed because of an error
    /// (a protocol violation, a limit), right after the close frame is queued.
    ///
    /// [`recv`](Self::recv) returns such an error only after giving the peer up to
    /// `close_timeout` to read the close frame; this hook lets the owner act at once
    /// (the hub takes the connection out of its rooms here).
    pub fn on_error_close(&mut self, f: impl FnOnce() + Send + 'static) {
        self.on_error_close = Some(Box::new(f));
    }

    /// A handle for sending from other tasks.
    pub fn outbound(&self) -> Outbound {
        Outbound(self.shared.clone())
    }

    /// The negotiated permessage-deflate parameters, if any.
    pub fn deflate(&self) -> Option<DeflateParams> {
        self.deflate
    }

    /// The close frame the peer sent, once it has sent one (`Some(None)`: a close frame
    /// without a code).
    pub fn peer_close(&self) -> Option<Option<&CloseFrame>> {
        self.close_received.as_deref().map(Option::as_ref)
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// Queues `msg` (bypassing the queue limit) and writes everything queued. The
    /// message is compressed with the connection's `compression_level` when
    /// permessage-deflate was negotiated.
    pub async fn send(&mut self, msg: Message) -> Result<()> {
        let prepared = PreparedMessage::with_compression_level(msg, self.config.compression_level);
        // No wake-up needed either way: this task writes it right below.
        self.shared
            .enqueue(&prepared, false)
            .map_err(|_| Error::ConnectionClosed)?;
        self.flush().await
    }

    /// Writes everything queued so far.
    pub async fn flush(&mut self) -> Result<()> {
        poll_fn(|cx| self.poll_write_side(cx)).await?;
        Ok(())
    }

    /// Sends a close frame with `code` and `reason` after everything already queued, and
    /// completes the closing handshake: waits for the peer's close frame, discarding data
    /// that arrives meanwhile, then shuts the connection. The whole of it (flush, close
    /// frame, the peer's answer) takes at most `close_timeout`.
    pub async fn close(mut self, code: CloseCode, reason: &str) -> Result<()> {
        self.outbound().close(code, reason);
        loop {
            match self.recv().await {
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Returns the next message; `Ok(None)` once the connection has closed normally
    /// (both close frames exchanged, or our close went unanswered within
    /// `close_timeout`).
    ///
    /// Once a close is queued (by [`Outbound::close`] from any task, or by the peer's
    /// close frame), messages that arrive are discarded, never returned: nothing the
    /// peer sends after the close decision is acted on. What was queued before the close
    /// is still written, then the close frame; the whole closing (that flush included)
    /// is bounded by `close_timeout`, so a peer that reads nothing cannot hold the
    /// connection open.
    ///
    /// When the peer breaks the protocol or a limit, the matching close code (1002,
    /// 1007, 1009) is queued behind whatever was already queued (replies to the
    /// messages this returned before the bad one still go out), the closing is given
    /// what is left of `close_timeout`, and the error is returned. After `Ok(None)` or
    /// an error, do not call it again.
    pub async fn recv(&mut self) -> Result<Option<Message>> {
        loop {
            if self.close_received.is_none() {
                match self.process_buffered() {
                    Ok(Some(msg)) if !self.close_sent && !self.is_closing() => {
                        return Ok(Some(msg));
                    }
                    // Data after we started closing is discarded (RFC 6455 §1.4).
                    Ok(Some(_)) => continue,
                    Ok(None) => {}
                    // Boxed: the failure path (with its timer) stays out of the future every idle
                    // connection keeps.
                    Err(e) => return Err(Box::pin(self.fail(e)).await),
                }
            }
            if self.close_sent && (self.close_received.is_some() || self.read_eof) {
                // Both sides said goodbye: the server closes TCP first (RFC 6455 §7.1.1).
                // Bounded too: a TLS shutdown writes (close_notify) and can block.
                // Boxed, like the other closing paths below: a timer is about 100
                // bytes, and every idle connection's future would carry it inline.
                let at = self.close_deadline_at();
                let _ = Box::pin(tokio::time::timeout_at(
                    at,
                    poll_fn(|cx| Pin::new(&mut self.stream).poll_shutdown(cx)),
                ))
                .await;
                self.write_shut = true;
                return Ok(None);
            }
            match poll_fn(|cx| self.poll_io(cx)).await {
                Ok(IoEvent::Progress) => {}
                Ok(IoEvent::Eof) => {
                    self.read_eof = true;
                    if self.close_received.is_none() && !self.is_closing() {
                        return Err(ProtocolError::ResetWithoutClosingHandshake.into());
                    }
                    if !self.close_sent {
                        // Still flush our close (within the close deadline: a peer that
                        // half-closed may never read); then the loop above finishes.
                        let at = self.close_deadline_at();
                        let _ = Box::pin(tokio::time::timeout_at(
                            at,
                            poll_fn(|cx| self.poll_write_side(cx)),
                        ))
                        .await;
                        self.close_sent = true;
                    }
                }
                Ok(IoEvent::Timeout) => {
                    tracing::debug!("closing handshake timed out");
                    return Ok(None);
                }
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }

    /// Whether a close frame is queued or sent.
    fn is_closing(&self) -> bool {
        self.close_sent || self.close_in_batch || self.shared.lock().closing
    }

    /// When the close must be finished: `close_timeout` after the connection first saw
    /// itself closing (armed here on first use).
    ///
    /// One deadline for the whole close, whichever path finishes it (the receive loop,
    /// an error close, the final shutdown), so no combination of them can take longer
    /// than `close_timeout`.
    fn close_deadline_at(&mut self) -> tokio::time::Instant {
        let timeout = self.config.close_timeout;
        self.close_deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)))
            .deadline()
    }

    /// Closes the connection because of `err`: queues the matching close code behind
    /// what is already queued, gives the peer what is left of `close_timeout` to read
    /// it all, and returns the error.
    async fn fail(&mut self, err: Error) -> Error {
        let code = err.close_code().unwrap_or(CloseCode::Error);
        tracing::debug!(error = %err, code = u16::from(code), "closing connection");
        let reason = match &err {
            Error::Protocol(p) => p.to_string(),
            Error::Capacity(c) => c.to_string(),
            other => other.to_string(),
        };
        // `close`, not `close_now`: replies to the messages already returned are queued
        // ahead of this close and are owed to the peer (a client that sent ten good ops
        // and then a frame too big gets ten replies, then 1009). A no-op if a close was
        // queued already: that one (and its code) stands.
        self.outbound().close(code, &reason);
        if let Some(hook) = self.on_error_close.take() {
            hook();
        }
        let at = self.close_deadline_at();
        let _ = tokio::time::timeout_at(at, async {
            poll_fn(|cx| self.poll_write_side(cx)).await?;
            poll_fn(|cx| Pin::new(&mut self.stream).poll_shutdown(cx)).await?;
            self.write_shut = true;
            // Read and discard until the peer closes: dropping a socket with unread
            // input makes the kernel send RST, and the peer could lose our close frame.
            self.rbuf = BytesMut::new();
            while !self.read_eof {
                if let IoEvent::Eof = poll_fn(|cx| self.poll_read(cx)).await? {
                    self.read_eof = true;
                }
                self.rbuf.clear();
            }
            Ok::<(), io::Error>(())
        })
        .await;
        err
    }

    /// One round of I/O: write what is queued, then read; `Timeout` once closing has
    /// taken `close_timeout`.
    fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<IoEvent>> {
        let was_sent = self.close_sent;
        if let Poll::Ready(r) = self.poll_write_side(cx) {
            r?;
            if self.close_sent != was_sent {
                return Poll::Ready(Ok(IoEvent::Progress));
            }
        }
        // Armed here, after the write side registered for wake-ups, rather than only
        // before waiting: another task (a slow consumer's 1013, token expiry) may queue
        // the close while this one is parked on a write the peer will never make room
        // for. That close wakes the task (see `park_writer`) and lands here; without a
        // deadline the connection would wait for the peer forever.
        if self.close_deadline.is_none() && self.is_closing() {
            self.close_deadline_at();
        }
        if let Some(deadline) = self.close_deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Ok(IoEvent::Timeout));
        }
        if self.read_eof {
            return Poll::Pending;
        }
        self.poll_read(cx)
    }
}

#[allow(dead_code)]
fn _assert_send<S: AsyncRead + AsyncWrite + Unpin + Send>(ws: &mut WebSocket<S>) {
    fn is_send<T: Send>(_: T) {}
    is_send(ws.recv());
}
