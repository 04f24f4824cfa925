//! [`Rewind`]: a stream that first gives back bytes already read from it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream with a few bytes read ahead of its start put back: reads return `prefix`
/// first, then the stream's own bytes; writes go straight through.
///
/// Used after a PROXY protocol header, whose reader may read a few bytes of the TLS or
/// HTTP handshake that follows in the same packet. The prefix is at most
/// [`proxy_protocol::MAX_LEN`](super::proxy_protocol::MAX_LEN) bytes and its memory is
/// freed as soon as it has been read, so a long-lived connection carries only a
/// `None` (no per-connection buffer).
#[derive(Debug)]
pub(crate) struct Rewind<S> {
    /// Boxed, and `None` once read or when empty: every connection to `Hub::serve`
    /// is a `Rewind` for as long as it is open, a `Bytes` is 32 bytes, and only
    /// connections through a PROXY-protocol proxy ever have a prefix.
    prefix: Option<Box<Bytes>>,
    inner: S,
}

impl<S> Rewind<S> {
    /// `inner`, with `prefix` to be read first.
    pub(crate) fn new(inner: S, prefix: Bytes) -> Self {
        let prefix = (!prefix.is_empty()).then(|| Box::new(prefix));
        Rewind { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(prefix) = self.prefix.as_mut() {
            let n = prefix.len().min(buf.remaining());
            buf.put_slice(&prefix[..n]);
            prefix.advance(n);
            if prefix.is_empty() {
                // Release the storage now rather than with the connection.
                self.prefix = None;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn reads_the_prefix_then_the_stream_and_writes_through() {
        let (mut peer, inner) = tokio::io::duplex(64);
        let mut s = Rewind::new(inner, Bytes::from_static(b"hello "));
        peer.write_all(b"world").await.unwrap();
        let mut small = [0u8; 4];
        s.read_exact(&mut small).await.unwrap();
        assert_eq!(&small, b"hell");
        let mut rest = [0u8; 7];
        s.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"o world");
        assert!(s.prefix.is_none());
        s.write_all(b"back").await.unwrap();
        let mut back = [0u8; 4];
        peer.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"back");
    }
}
