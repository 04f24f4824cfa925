//! The read side: frames parsed out of the read buffer, checked, unmasked (text checked
//! for UTF-8 as it arrives) and assembled into messages; control frames answered.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::{CloseFrame, Utf8Bytes};

use super::outbound::now_ms;
use super::{IoEvent, Message, Role, WebSocket};
use crate::error::{CapacityError, ProtocolError, Result};
use crate::ws::deflate::{self, InflateError};
use crate::ws::frame::{self, BINARY, CLOSE, CONTINUE, PING, PONG, TEXT};
use crate::ws::utf8::Utf8Validator;

/// The message being reassembled from fragments (boxed: only exists mid-message).
pub(super) struct Partial {
    text: bool,
    compressed: bool,
    buf: BytesMut,
}

/// The header of the frame being read, kept while its payload arrives.
pub(super) struct CurFrame {
    head: frame::Head,
    /// Payload bytes already unmasked (and, for text, UTF-8 checked).
    done: usize,
}

/// Reads of idle connections land here, so no connection keeps a read buffer.
const SCRATCH_LEN: usize = 16 * 1024;
thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_LEN].into_boxed_slice());
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Parses and handles every complete frame in `rbuf`; returns a message as soon as
    /// one completes.
    pub(super) fn process_buffered(&mut self) -> Result<Option<Message>> {
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
                #[cfg(feature = "metrics")]
                if let Some(observer) = &self.observer {
                    observer.message_received(msg.len());
                }
                return Ok(Some(msg));
            }
            if self.close_received.is_some() {
                break;
            }
        }
        self.release_rbuf();
        Ok(None)
    }

    /// Tells the observer (if any) that `n` bytes were read.
    #[inline]
    fn observe_read(&self, _n: usize) {
        #[cfg(feature = "metrics")]
        if let Some(observer) = &self.observer {
            observer.read(_n);
        }
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
            PONG => {
                #[cfg(feature = "metrics")]
                if let (Some(sent), Some(observer)) = (self.ping_sent.take(), &self.observer) {
                    observer.pong(sent.elapsed());
                }
                Ok(None)
            }
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
                        q.close_record = Some(super::outbound::CloseRecord {
                            code: close.as_ref().map_or(1005, |c| c.code.into()),
                            reason: close.as_ref().map_or("", |c| c.reason.as_str()).into(),
                            by_peer: true,
                        });
                    }
                }
                self.close_received = Some(Box::new(close));
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

    /// Reads once: into `rbuf` directly when a large frame is being received, else
    /// through the per-thread scratch buffer.
    pub(super) fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<IoEvent>> {
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
            self.observe_read(n);
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
            self.observe_read(n);
            self.rbuf.extend_from_slice(buf.filled());
            Poll::Ready(Ok(IoEvent::Progress))
        })
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
