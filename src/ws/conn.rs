//! One WebSocket connection: the frame reader, message assembly, the outbound queue and
//! the writer, all driven by one task.
//!
//! A connection is a single future, not a reader task plus a writer task: whoever awaits
//! [`WebSocket::recv`] also flushes the outbound queue, so an idle connection costs one
//! task, one small [`Shared`] block and no read buffer at all. Other tasks (the hub's
//! publishers) reach the connection through an [`Outbound`] handle, which only appends
//! to a bounded queue and wakes the connection: a publisher never waits for a slow
//! reader.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use std::{cell::RefCell, fmt};
use tokio::time::Instant;

use atomic_waker::AtomicWaker;
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::{CloseFrame, Utf8Bytes};

use super::config::WsConfig;
use super::deflate::{self, DeflateParams, InflateError};
use super::frame::{self, BINARY, CLOSE, CONTINUE, PING, PONG, TEXT};
use super::prepared::PreparedMessage;
use super::utf8::Utf8Validator;
use crate::error::{CapacityError, Error, ProtocolError, Result};

/// Which end of the connection this side is (RFC 6455 masking rules differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepted the connection: expects masked frames, sends unmasked ones.
    Server,
    /// Opened the connection: sends masked frames, expects unmasked ones.
    Client,
}

/// A complete data message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message (valid UTF-8, checked on receipt).
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        Message::Text(text.into())
    }
    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Message::Binary(data.into())
    }
    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }
    /// The text, for a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(t) => Some(t.as_str()),
            Message::Binary(_) => None,
        }
    }
    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }
    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

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
fn now_ms() -> u64 {
    clock_start().elapsed().as_millis() as u64
}

/// tokio's clock rather than std's, so that liveness logic can be tested with
/// `tokio::time::pause()`.
fn clock_start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// What the connection and its [`Outbound`] handles share.
struct Shared {
    /// A std mutex: it is held only to push to or swap out the queue, never across an
    /// `.await`, so an async mutex would only add cost.
    queue: Mutex<Queue>,
    /// Wakes the connection's task when something is queued.
    waker: AtomicWaker,
    /// When the peer last sent anything (ms on [`now_ms`]'s clock); read by liveness
    /// sweeps so that no connection needs a timer of its own.
    last_seen: AtomicU64,
    /// Server window bits when permessage-deflate was negotiated.
    deflate_bits: Option<u8>,
    role: Role,
    max_queued_bytes: usize,
    compression_threshold: usize,
}

/// The outbound queue. Data frames count against `max_queued_bytes`; control frames
/// are bounded by construction (one pending pong, one ping flag, one close).
#[derive(Default)]
struct Queue {
    items: VecDeque<Bytes>,
    bytes: usize,
    /// The pong for the most recent ping not yet answered (RFC 6455 §5.5.3 allows
    /// answering only the latest), so a ping flood cannot grow the queue.
    pong: Option<Bytes>,
    ping: bool,
    /// A close frame to send after `items`; once set, nothing more is accepted.
    close: Option<Bytes>,
    closing: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock cannot leave the queue inconsistent (every
        // critical section is a push or a swap), so a poisoned lock is still usable.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mask(&self) -> Option<[u8; 4]> {
        (self.role == Role::Client).then(rand::random)
    }

    fn close_frame(&self, code: CloseCode, reason: &str) -> Bytes {
        frame::encode_close(code.into(), reason, self.mask())
    }
}

/// A cheap, cloneable handle for sending on a connection from any task.
///
/// Sending never waits: [`try_send`](Self::try_send) appends to the connection's
/// bounded queue (or refuses) and wakes the connection, whose task writes everything
/// queued in one vectored write.
#[derive(Clone)]
pub struct Outbound(Arc<Shared>);

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
        let s = &self.0;
        let bits = s
            .deflate_bits
            .filter(|_| msg.payload().len() >= s.compression_threshold);
        // Build (or fetch the shared) frame before taking the lock.
        let frame = msg.frame_for(bits, s.mask());
        {
            let mut q = s.lock();
            if q.closing {
                return Err(SendError::Closed);
            }
            if q.bytes > 0 && q.bytes + frame.len() > s.max_queued_bytes {
                return Err(SendError::Full);
            }
            q.bytes += frame.len();
            q.items.push_back(frame);
        }
        s.waker.wake();
        Ok(())
    }

    /// Starts the closing handshake after everything already queued has been sent.
    /// Does nothing if the connection is already closing.
    pub fn close(&self, code: CloseCode, reason: &str) {
        self.enqueue_close(code, reason, false);
    }

    /// Starts the closing handshake now, dropping whatever is still queued (for a slow
    /// consumer, 1013, or a policy violation, 1008).
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
            }
            q.close = Some(frame);
            q.closing = true;
        }
        self.0.waker.wake();
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

/// The message being reassembled from fragments (boxed: only exists mid-message).
struct Partial {
    text: bool,
    compressed: bool,
    buf: BytesMut,
}

/// The header of the frame being read, kept while its payload arrives.
struct CurFrame {
    head: frame::Head,
    /// Payload bytes already unmasked (and, for text, UTF-8 checked).
    done: usize,
}

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
    close_received: Option<Option<CloseFrame>>,
    read_eof: bool,
    write_shut: bool,
    close_deadline: Option<Pin<Box<Sleep>>>,
    /// Run when an error closes the connection, before the grace period in which the
    /// peer may read our close frame (see [`WebSocket::on_error_close`]).
    on_error_close: Option<Box<dyn FnOnce() + Send>>,
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

/// Reads of idle connections land here, so no connection keeps a read buffer.
const SCRATCH_LEN: usize = 16 * 1024;
thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_LEN].into_boxed_slice());
}
/// Most frames written in one vectored write.
const MAX_IOV: usize = 64;
/// Without vectored I/O (TLS), frames are copied into one buffer up to this size, so a
/// burst of small messages becomes one record rather than one each.
const COALESCE_LIMIT: usize = 64 * 1024;

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
        }
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
        self.close_received.as_ref().map(|c| c.as_ref())
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
        let s = &self.shared;
        let bits = s
            .deflate_bits
            .filter(|_| prepared.payload().len() >= s.compression_threshold);
        let frame = prepared.frame_for(bits, s.mask());
        {
            let mut q = s.lock();
            if q.closing {
                return Err(Error::ConnectionClosed);
            }
            q.bytes += frame.len();
            q.items.push_back(frame);
        }
        self.flush().await
    }

    /// Writes everything queued so far.
    pub async fn flush(&mut self) -> Result<()> {
        poll_fn(|cx| self.poll_write_side(cx)).await?;
        Ok(())
    }

    /// Sends a close frame with `code` and `reason` and completes the closing
    /// handshake: waits (up to `close_timeout`) for the peer's close frame, discarding
    /// data that arrives meanwhile, then shuts the connection.
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
    /// When the peer breaks the protocol or a limit, the matching close code (1002,
    /// 1007, 1009) is sent, the closing handshake is given `close_timeout` to finish,
    /// and the error is returned. After `Ok(None)` or an error, do not call it again.
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
                let _ = poll_fn(|cx| Pin::new(&mut self.stream).poll_shutdown(cx)).await;
                self.write_shut = true;
                return Ok(None);
            }
            if self.is_closing() && self.close_deadline.is_none() {
                self.close_deadline = Some(Box::pin(tokio::time::sleep(self.config.close_timeout)));
            }
            match poll_fn(|cx| self.poll_io(cx)).await {
                Ok(IoEvent::Progress) => {}
                Ok(IoEvent::Eof) => {
                    self.read_eof = true;
                    if self.close_received.is_none() && !self.is_closing() {
                        return Err(ProtocolError::ResetWithoutClosingHandshake.into());
                    }
                    if !self.close_sent {
                        // Still flush our close; then the loop above finishes.
                        let _ = self.flush().await;
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

    /// Closes the connection because of `err`: sends the matching close code, gives the
    /// peer `close_timeout` to read it, and returns the error.
    async fn fail(&mut self, err: Error) -> Error {
        let code = err.close_code().unwrap_or(CloseCode::Error);
        tracing::debug!(error = %err, code = u16::from(code), "closing connection");
        let reason = match &err {
            Error::Protocol(p) => p.to_string(),
            Error::Capacity(c) => c.to_string(),
            other => other.to_string(),
        };
        self.outbound().close_now(code, &reason);
        if let Some(hook) = self.on_error_close.take() {
            hook();
        }
        let _ = tokio::time::timeout(self.config.close_timeout, async {
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

    /// Parses and handles every complete frame in `rbuf`; returns a message as soon as
    /// one completes.
    fn process_buffered(&mut self) -> Result<Option<Message>> {
        loop {
            if self.cur.is_none() {
                let Some(head) = frame::parse_head(&self.rbuf)? else {
                    break;
                };
                self.check_head(&head)?;
                self.cur = Some(CurFrame { head, done: 0 });
            }
            let cur = self.cur.as_mut().expect("set above");
            let header_len = cur.head.header_len;
            let len = cur.head.len as usize;
            let avail = (self.rbuf.len() - header_len).min(len);
            // Unmask (and check UTF-8 of) what has arrived so far, so that invalid text
            // fails on its first bad byte rather than after the whole frame.
            if avail > cur.done {
                let chunk = &mut self.rbuf[header_len + cur.done..header_len + avail];
                if let Some(mask) = cur.head.header.mask {
                    frame::apply_mask(chunk, mask, cur.done);
                }
                if !frame::is_control(cur.head.header.opcode)
                    && let Some(v) = self.utf8.as_mut()
                    && !v.feed(chunk)
                {
                    return Err(ProtocolError::InvalidUtf8.into());
                }
                cur.done = avail;
            }
            if avail < len {
                break;
            }
            let cur = self.cur.take().expect("set above");
            self.rbuf.advance(header_len);
            let payload = self.rbuf.split_to(len).freeze();
            if let Some(msg) = self.handle_frame(cur.head.header, payload)? {
                self.release_rbuf();
                return Ok(Some(msg));
            }
            if self.close_received.is_some() {
                break;
            }
        }
        self.release_rbuf();
        Ok(None)
    }

    /// Drops the read buffer's allocation once everything in it is consumed.
    fn release_rbuf(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > 0 {
            self.rbuf = BytesMut::new();
        }
    }

    /// Validates a header before its payload is read.
    fn check_head(&mut self, head: &frame::Head) -> Result<()> {
        let h = &head.header;
        let masked = h.mask.is_some();
        if masked != (self.shared.role == Role::Server) {
            return Err(ProtocolError::BadMasking.into());
        }
        if h.rsv2 || h.rsv3 {
            return Err(ProtocolError::ReservedBits.into());
        }
        if frame::is_control(h.opcode) {
            if h.rsv1 {
                return Err(ProtocolError::ReservedBits.into());
            }
            if !h.is_final || head.len > 125 {
                return Err(ProtocolError::BadControlFrame.into());
            }
            return Ok(());
        }
        if head.len > self.config.max_frame_size as u64 {
            return Err(CapacityError::FrameTooLarge {
                size: head.len,
                max: self.config.max_frame_size,
            }
            .into());
        }
        let so_far = self.partial.as_ref().map_or(0, |p| p.buf.len() as u64);
        if so_far + head.len > self.config.max_message_size as u64 {
            return Err(CapacityError::MessageTooLarge {
                max: self.config.max_message_size,
            }
            .into());
        }
        match h.opcode {
            CONTINUE => {
                if self.partial.is_none() {
                    return Err(ProtocolError::BadFragmentation.into());
                }
                // RSV1 marks a compressed message on its first frame only (RFC 7692 §6.1).
                if h.rsv1 {
                    return Err(ProtocolError::ReservedBits.into());
                }
            }
            op => {
                if self.partial.is_some() {
                    return Err(ProtocolError::BadFragmentation.into());
                }
                if h.rsv1 && self.deflate.is_none() {
                    return Err(ProtocolError::ReservedBits.into());
                }
                // Check text as it arrives unless it is compressed (then after inflating).
                if op == TEXT && !h.rsv1 {
                    self.utf8 = Some(Utf8Validator::default());
                }
                if !h.is_final {
                    self.partial = Some(Box::new(Partial {
                        text: op == TEXT,
                        compressed: h.rsv1,
                        buf: BytesMut::new(),
                    }));
                }
            }
        }
        Ok(())
    }

    /// Handles one complete, unmasked frame.
    fn handle_frame(
        &mut self,
        header: tungstenite::protocol::frame::FrameHeader,
        payload: Bytes,
    ) -> Result<Option<Message>> {
        self.shared.last_seen.store(now_ms(), Ordering::Relaxed);
        match header.opcode {
            PING => {
                let pong = frame::encode(PONG, false, &payload, self.shared.mask());
                let mut q = self.shared.lock();
                if !q.closing {
                    q.pong = Some(pong);
                }
                Ok(None)
            }
            PONG => Ok(None),
            CLOSE => {
                let close = parse_close(&payload)?;
                let reply = match &close {
                    Some(c) => self.shared.close_frame(c.code, ""),
                    None => frame::encode(CLOSE, false, &[], self.shared.mask()),
                };
                {
                    let mut q = self.shared.lock();
                    if !q.closing {
                        q.close = Some(reply);
                        q.closing = true;
                    }
                }
                self.close_received = Some(close);
                Ok(None)
            }
            TEXT | BINARY if header.is_final => {
                let text = header.opcode == TEXT;
                if header.rsv1 {
                    let data = self.inflate(&payload)?;
                    return message(text, data.freeze(), true).map(Some);
                }
                let complete = self.utf8.take().is_none_or(|v| v.is_complete());
                if !complete {
                    return Err(ProtocolError::InvalidUtf8.into());
                }
                message(text, payload, false).map(Some)
            }
            TEXT | BINARY | CONTINUE => {
                let partial = self.partial.as_mut().expect("checked in check_head");
                partial.buf.extend_from_slice(&payload);
                if !header.is_final {
                    return Ok(None);
                }
                let p = self.partial.take().expect("present");
                let utf8 = self.utf8.take();
                if p.compressed {
                    let data = self.inflate(&p.buf)?;
                    return message(p.text, data.freeze(), true).map(Some);
                }
                if !utf8.is_none_or(|v| v.is_complete()) {
                    return Err(ProtocolError::InvalidUtf8.into());
                }
                message(p.text, p.buf.freeze(), false).map(Some)
            }
            _ => Err(ProtocolError::UnknownOpcode(u8::from(header.opcode)).into()),
        }
    }

    fn inflate(&self, data: &[u8]) -> Result<BytesMut> {
        deflate::inflate(data, self.config.max_message_size).map_err(|e| match e {
            InflateError::TooLarge => CapacityError::MessageTooLarge {
                max: self.config.max_message_size,
            }
            .into(),
            InflateError::Corrupt => ProtocolError::BadCompression.into(),
        })
    }

    /// Moves queued frames into the write batch.
    fn refill(&mut self) {
        let mut q = self.shared.lock();
        if let Some(pong) = q.pong.take() {
            self.wbatch.push_back(pong);
        }
        if std::mem::take(&mut q.ping) && !q.closing {
            let ping = frame::encode(PING, false, &[], self.shared.mask());
            self.wbatch.push_back(ping);
        }
        if !q.items.is_empty() {
            q.bytes = 0;
            if self.wbatch.is_empty() {
                std::mem::swap(&mut self.wbatch, &mut q.items);
            } else {
                self.wbatch.append(&mut q.items);
            }
        }
        if let Some(close) = q.close.take() {
            self.wbatch.push_back(close);
            self.close_in_batch = true;
        }
        drop(q);
        if !self.stream.is_write_vectored() && self.wbatch.len() > 1 {
            self.coalesce();
        }
    }

    /// Copies small frames together so one write (one TLS record) carries many.
    fn coalesce(&mut self) {
        let mut out: VecDeque<Bytes> = VecDeque::with_capacity(self.wbatch.len());
        let mut acc = BytesMut::new();
        for f in self.wbatch.drain(..) {
            if acc.len() + f.len() > COALESCE_LIMIT && !acc.is_empty() {
                out.push_back(acc.split().freeze());
            }
            if f.len() >= COALESCE_LIMIT {
                out.push_back(f);
            } else {
                acc.extend_from_slice(&f);
            }
        }
        if !acc.is_empty() {
            out.push_back(acc.freeze());
        }
        self.wbatch = out;
    }

    /// Writes until everything queued is written and flushed (`Ready`), or the socket
    /// is full (`Pending`, with the waker registered for writability or new items).
    fn poll_write_side(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.write_shut {
                return Poll::Ready(Ok(()));
            }
            if self.wbatch.is_empty() {
                self.refill();
            }
            if !self.wbatch.is_empty() {
                let mut slices = [IoSlice::new(&[]); MAX_IOV];
                let mut n = 0;
                for (i, f) in self.wbatch.iter().take(MAX_IOV).enumerate() {
                    slices[i] = IoSlice::new(if i == 0 { &f[self.woff..] } else { f });
                    n += 1;
                }
                let written =
                    ready!(Pin::new(&mut self.stream).poll_write_vectored(cx, &slices[..n]))?;
                if written == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.advance_written(written);
                self.needs_flush = true;
                continue;
            }
            if self.needs_flush {
                ready!(Pin::new(&mut self.stream).poll_flush(cx))?;
                self.needs_flush = false;
                if self.close_in_batch {
                    self.close_in_batch = false;
                    self.close_sent = true;
                }
                continue;
            }
            self.shared.waker.register(cx.waker());
            // Re-check after registering, so a push that raced the registration is not
            // missed.
            let q = self.shared.lock();
            let more = !q.items.is_empty()
                || q.pong.is_some()
                || q.close.is_some()
                || (q.ping && !q.closing);
            drop(q);
            if !more {
                return Poll::Ready(Ok(()));
            }
        }
    }

    fn advance_written(&mut self, mut n: usize) {
        while n > 0 {
            let first = self.wbatch.front().expect("wrote more than batched").len() - self.woff;
            if n >= first {
                n -= first;
                self.woff = 0;
                self.wbatch.pop_front();
            } else {
                self.woff += n;
                n = 0;
            }
        }
        if self.wbatch.is_empty() && self.wbatch.capacity() > MAX_IOV {
            self.wbatch = VecDeque::new();
        }
    }

    /// Reads once: into `rbuf` directly when a large frame is being received, else
    /// through the per-thread scratch buffer.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<IoEvent>> {
        let want = self
            .cur
            .as_ref()
            .map_or(0, |c| c.head.header_len + c.head.len as usize);
        if want > self.rbuf.len() + SCRATCH_LEN / 2 {
            // Grow geometrically with what actually arrived, never straight to the
            // announced size: a peer announcing a huge frame gets no huge buffer.
            let grow = (want - self.rbuf.len()).min(self.rbuf.len().max(SCRATCH_LEN));
            self.rbuf.reserve(grow);
            let n = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut self.stream),
                cx,
                &mut self.rbuf
            ))?;
            return Poll::Ready(Ok(if n == 0 {
                IoEvent::Eof
            } else {
                IoEvent::Progress
            }));
        }
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut buf = ReadBuf::new(&mut scratch[..]);
            ready!(Pin::new(&mut self.stream).poll_read(cx, &mut buf))?;
            let n = buf.filled().len();
            if n == 0 {
                return Poll::Ready(Ok(IoEvent::Eof));
            }
            self.rbuf.extend_from_slice(buf.filled());
            Poll::Ready(Ok(IoEvent::Progress))
        })
    }

    /// One round of I/O: write what is queued, then read.
    fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<IoEvent>> {
        let was_sent = self.close_sent;
        if let Poll::Ready(r) = self.poll_write_side(cx) {
            r?;
            if self.close_sent != was_sent {
                return Poll::Ready(Ok(IoEvent::Progress));
            }
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

/// Builds a message, checking UTF-8 where it was not checked as it arrived.
fn message(text: bool, data: Bytes, check_utf8: bool) -> Result<Message> {
    if !text {
        return Ok(Message::Binary(data));
    }
    if check_utf8 {
        return Utf8Bytes::try_from(data)
            .map(Message::Text)
            .map_err(|_| ProtocolError::InvalidUtf8.into());
    }
    // SAFETY: every byte of this message went through `Utf8Validator`, which accepted it
    // and ended on a code point boundary.
    Ok(Message::Text(unsafe {
        Utf8Bytes::from_bytes_unchecked(data)
    }))
}

/// Parses a close frame payload (RFC 6455 §5.5.1).
fn parse_close(payload: &[u8]) -> Result<Option<CloseFrame>> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(ProtocolError::BadClose.into()),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !frame::close_code_is_valid(code) {
                return Err(ProtocolError::BadClose.into());
            }
            let reason = Utf8Bytes::try_from(Bytes::copy_from_slice(&payload[2..]))
                .map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Some(CloseFrame {
                code: CloseCode::from(code),
                reason,
            }))
        }
    }
}

#[allow(dead_code)]
fn _assert_send<S: AsyncRead + AsyncWrite + Unpin + Send>(ws: &mut WebSocket<S>) {
    fn is_send<T: Send>(_: T) {}
    is_send(ws.recv());
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
    use tungstenite::protocol::frame::coding::OpCode;

    fn pair() -> (WebSocket<DuplexStream>, WebSocket<DuplexStream>) {
        let (a, b) = duplex(64 * 1024);
        let cfg = WsConfig::default();
        (
            WebSocket::from_parts(a, Role::Server, cfg.clone(), None, BytesMut::new()),
            WebSocket::from_parts(b, Role::Client, cfg, None, BytesMut::new()),
        )
    }

    /// A server over one end of a pipe, and the raw other end.
    fn raw_server(cfg: WsConfig) -> (WebSocket<DuplexStream>, DuplexStream) {
        let (a, b) = duplex(1 << 20);
        (
            WebSocket::from_parts(a, Role::Server, cfg, None, BytesMut::new()),
            b,
        )
    }

    fn masked(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut f = frame::encode(opcode, false, payload, Some([9, 8, 7, 6])).to_vec();
        if !fin {
            f[0] &= 0x7F;
        }
        f
    }

    async fn read_close_code(raw: &mut DuplexStream) -> u16 {
        let mut buf = Vec::new();
        raw.read_to_end(&mut buf).await.unwrap();
        let head = frame::parse_head(&buf).unwrap().unwrap();
        assert_eq!(
            head.header.opcode, CLOSE,
            "expected a close frame, got {buf:x?}"
        );
        u16::from_be_bytes([buf[head.header_len], buf[head.header_len + 1]])
    }

    #[tokio::test]
    async fn messages_round_trip_both_ways() {
        let (mut server, mut client) = pair();
        let echo = tokio::spawn(async move {
            while let Some(m) = server.recv().await.unwrap() {
                server.send(m).await.unwrap();
            }
        });
        for len in [0usize, 1, 125, 126, 65535, 65536, 300_000] {
            let bin = Message::binary(vec![(len % 251) as u8; len]);
            client.send(bin.clone()).await.unwrap();
            assert_eq!(client.recv().await.unwrap().unwrap(), bin);
            let txt = Message::text("é".repeat(len / 2));
            client.send(txt.clone()).await.unwrap();
            assert_eq!(client.recv().await.unwrap().unwrap(), txt);
        }
        client.close(CloseCode::Normal, "bye").await.unwrap();
        echo.await.unwrap();
    }

    #[tokio::test]
    async fn fragments_and_interleaved_ping_reassemble() {
        let (mut server, mut raw) = raw_server(WsConfig::default());
        let mut bytes = masked(TEXT, false, "héllo ".as_bytes());
        bytes.extend(masked(PING, true, b"p1"));
        // Split the two-byte 'é' across fragments: validation must carry over.
        let word = "wörld".as_bytes();
        bytes.extend(masked(CONTINUE, false, &word[..2]));
        bytes.extend(masked(CONTINUE, true, &word[2..]));
        raw.write_all(&bytes).await.unwrap();
        let msg = server.recv().await.unwrap().unwrap();
        assert_eq!(msg.as_text(), Some("héllo wörld"));
        // The pong went out while the message was being assembled.
        server.flush().await.unwrap();
        let mut pong = [0u8; 4];
        raw.read_exact(&mut pong).await.unwrap();
        assert_eq!(pong, [0x8A, 2, b'p', b'1']);
    }

    #[tokio::test]
    async fn unmasked_client_frame_is_1002() {
        let (mut server, mut raw) = raw_server(WsConfig::default());
        raw.write_all(&frame::encode(TEXT, false, b"hi", None))
            .await
            .unwrap();
        let err = server.recv().await.unwrap_err();
        assert!(
            matches!(err, Error::Protocol(ProtocolError::BadMasking)),
            "{err}"
        );
        drop(server);
        assert_eq!(read_close_code(&mut raw).await, 1002);
    }

    #[tokio::test]
    async fn bad_utf8_fails_before_the_frame_ends() {
        let (mut server, mut raw) = raw_server(WsConfig::default());
        let full = masked(
            TEXT,
            true,
            b"abc\xff and a lot more text that never arrives",
        );
        // Send only the header and the first 4 payload bytes.
        raw.write_all(&full[..2 + 4 + 4]).await.unwrap();
        let err = server.recv().await.unwrap_err();
        assert!(
            matches!(err, Error::Protocol(ProtocolError::InvalidUtf8)),
            "{err}"
        );
        drop(server);
        assert_eq!(read_close_code(&mut raw).await, 1007);
    }

    #[tokio::test]
    async fn oversized_frame_is_1009_before_its_payload() {
        let (mut server, mut raw) = raw_server(WsConfig::default().with_max_frame_size(1000));
        // Header of a 1 MiB masked binary frame, no payload.
        let mut head = vec![0x82, 0x80 | 127];
        head.extend_from_slice(&(1u64 << 20).to_be_bytes());
        head.extend_from_slice(&[1, 2, 3, 4]);
        raw.write_all(&head).await.unwrap();
        let err = server.recv().await.unwrap_err();
        assert!(
            matches!(err, Error::Capacity(CapacityError::FrameTooLarge { .. })),
            "{err}"
        );
        drop(server);
        assert_eq!(read_close_code(&mut raw).await, 1009);
    }

    #[tokio::test]
    async fn close_is_echoed_with_its_code() {
        let (mut server, mut raw) = raw_server(WsConfig::default());
        let mut payload = 4000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"done");
        raw.write_all(&masked(CLOSE, true, &payload)).await.unwrap();
        assert!(server.recv().await.unwrap().is_none());
        let peer = server.peer_close().unwrap().unwrap();
        assert_eq!(u16::from(peer.code), 4000);
        assert_eq!(peer.reason.as_str(), "done");
        drop(server);
        assert_eq!(read_close_code(&mut raw).await, 4000);
    }

    #[tokio::test]
    async fn outbound_queue_is_bounded() {
        let (server, _raw) = raw_server(WsConfig::default().with_max_queued_bytes(10_000));
        let out = server.outbound();
        let msg = PreparedMessage::new(Message::binary(vec![0u8; 4000]));
        assert_eq!(out.try_send(&msg), Ok(()));
        assert_eq!(out.try_send(&msg), Ok(()));
        assert_eq!(out.try_send(&msg), Err(SendError::Full));
        out.close_now(CloseCode::Again, "slow consumer");
        assert_eq!(out.queued_bytes(), 0);
        assert_eq!(out.try_send(&msg), Err(SendError::Closed));
    }

    #[tokio::test]
    async fn idle_connection_holds_no_read_buffer() {
        let (mut server, mut client) = pair();
        client.send(Message::text("x".repeat(5000))).await.unwrap();
        assert!(server.recv().await.unwrap().is_some());
        assert_eq!(server.rbuf.capacity(), 0);
    }
}
