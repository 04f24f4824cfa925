//! The write side: queued frames moved into a batch and written with vectored writes
//! (coalesced into larger buffers for streams without vectored I/O, such as TLS).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

use super::WebSocket;
use crate::ws::frame::{self, PING};

/// Most frames written in one vectored write.
const MAX_IOV: usize = 64;
/// Without vectored I/O (TLS), frames are copied into one buffer up to this size, so a
/// burst of small messages becomes one record rather than one each.
const COALESCE_LIMIT: usize = 64 * 1024;

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Moves queued frames into the write batch.
    fn refill(&mut self) {
        let mut q = self.shared.lock();
        q.writer_parked = false;
        if let Some(pong) = q.pong.take() {
            self.wbatch.push_back(pong);
        }
        if std::mem::take(&mut q.ping) && !q.closing {
            let ping = frame::encode(PING, false, &[], self.shared.mask());
            self.wbatch.push_back(ping);
            // Timed from here (it is written right after): the pong gives the round trip.
            #[cfg(feature = "metrics")]
            if self.observer.is_some() {
                self.ping_sent = Some(tokio::time::Instant::now());
            }
        }
        if !q.items.is_empty() {
            q.bytes = 0;
            #[cfg(feature = "metrics")]
            {
                let payload = std::mem::take(&mut q.payload_bytes);
                if let Some(observer) = &self.observer {
                    observer.payload_sent(payload);
                }
            }
            if self.wbatch.is_empty() {
                std::mem::swap(&mut self.wbatch, &mut q.items);
            } else {
                self.wbatch.append(&mut q.items);
                // Emptied, not freed: free it as the swap above would.
                q.items = VecDeque::new();
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
    pub(super) fn poll_write_side(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
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
                // One frame (the usual case for paced traffic): a plain write, which a
                // TCP stream turns into `send`. The kernel's `writev` path costs more per
                // call for a socket (the vectored file-write path and its position
                // lock), which shows with one small write per delivery (BENCHMARKS.md).
                let res = if n == 1 {
                    Pin::new(&mut self.stream).poll_write(cx, &slices[0])
                } else {
                    Pin::new(&mut self.stream).poll_write_vectored(cx, &slices[..n])
                };
                let written = match res {
                    Poll::Ready(r) => r?,
                    Poll::Pending => return self.park_writer(cx),
                };
                if written == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                #[cfg(feature = "metrics")]
                if let Some(observer) = &self.observer {
                    observer.written(written);
                }
                self.advance_written(written);
                self.needs_flush = true;
                continue;
            }
            if self.needs_flush {
                if Pin::new(&mut self.stream).poll_flush(cx)?.is_pending() {
                    return self.park_writer(cx);
                }
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

    /// The peer has no room for more: wait for the socket, and for a close.
    ///
    /// The socket's readiness wakes the task when the peer reads again. The queue's
    /// waker is registered too, before the owner checks whether a close was queued
    /// (`poll_io` does, after this), so a close queued from another task while this one
    /// is parked always wakes it and starts the close deadline: a peer that never reads
    /// again cannot keep a closing connection. Data pushes do not wake it
    /// ([`Queue::writer_parked`](super::outbound::Queue)): they wait for this batch.
    fn park_writer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shared.waker.register(cx.waker());
        self.shared.lock().writer_parked = true;
        Poll::Pending
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
        // A written batch gives its buffer back: refill swapped it in from the queue,
        // so keeping it would leave every idle connection holding two small deques
        // (the queue's and this one, 128 bytes each, `BENCHMARKS.md`, idle). The next
        // send allocates one again: a malloc and a free per batch, next to a write.
        if self.wbatch.is_empty() {
            self.wbatch = VecDeque::new();
        }
    }
}
