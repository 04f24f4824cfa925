//! Server role over a raw stream: read one upgrade request, then accept or reject it.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName};
use http::{Request, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::http::{encode_status_head, encode_text_response, parse_request, read_head};
use super::{HandshakeConfig, Negotiated, negotiate};
use crate::error::HandshakeError;
use crate::ws::{Role, WebSocket, WsConfig};

/// A validated upgrade request read from a raw stream, not yet answered.
///
/// Look at the [request](Self::request) (path, query, cookies, `Authorization`) and then
/// [accept](Self::accept) or [reject](Self::reject) it. Dropping it closes the connection
/// without an answer.
pub struct Upgrade<S> {
    stream: S,
    request: Request<()>,
    negotiated: Negotiated,
    leftover: BytesMut,
    peer_addr: Option<SocketAddr>,
    /// [`HandshakeConfig::timeout`], bounding the write of the answer.
    timeout: Duration,
}

impl<S> fmt::Debug for Upgrade<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgrade")
            .field("request", &self.request)
            .field("peer_addr", &self.peer_addr)
            .field("negotiated", &self.negotiated)
            .field("leftover", &self.leftover.len())
            .finish_non_exhaustive()
    }
}

impl<S> Upgrade<S> {
    /// The upgrade request (method, URI, version, headers; no body).
    pub fn request(&self) -> &Request<()> {
        &self.request
    }

    /// The peer's address, as given to [`accept_request`].
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_addr
    }

    /// What [`accept`](Self::accept) will agree to.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Upgrade<S> {
    /// Write the 101 response and start the WebSocket.
    pub async fn accept(self, config: WsConfig) -> Result<WebSocket<S>, HandshakeError> {
        self.accept_with_headers(HeaderMap::new(), config).await
    }

    /// Write the 101 response (plus `extra` headers, e.g. `Set-Cookie`) and start the
    /// WebSocket.
    ///
    /// Extra headers that would contradict the handshake (`Upgrade`, `Connection`,
    /// `Sec-WebSocket-*`, `Content-Length`, `Transfer-Encoding`) are ignored with a
    /// warning. Fails with [`HandshakeError::Timeout`] if the response cannot be written
    /// within [`HandshakeConfig::timeout`].
    pub async fn accept_with_headers(
        self,
        extra: HeaderMap,
        config: WsConfig,
    ) -> Result<WebSocket<S>, HandshakeError> {
        let Upgrade {
            mut stream,
            negotiated,
            leftover,
            timeout,
            ..
        } = self;
        let mut response = negotiated.response();
        for (name, value) in &extra {
            if is_handshake_response_header(name) {
                tracing::warn!(header = %name, "ignoring extra header that would break the WebSocket handshake");
                continue;
            }
            response.headers_mut().append(name.clone(), value.clone());
        }
        let head = encode_status_head(response.status(), response.headers());
        let write = async {
            stream.write_all(&head).await?;
            stream.flush().await
        };
        // Boxed for the same reason as in `accept_request`.
        Box::pin(tokio::time::timeout(timeout, write))
            .await
            .map_err(|_| HandshakeError::Timeout)??;
        Ok(WebSocket::from_parts(
            stream,
            Role::Server,
            config,
            negotiated.deflate(),
            leftover,
        ))
    }

    /// Refuse the upgrade (authentication, limits): writes `status` with a short text
    /// body and `Connection: close`, then shuts the stream.
    ///
    /// `status` should be a 4xx or 5xx code; a 1xx is not a final response (the client
    /// would keep waiting), so it is replaced by 500. The write is bounded by
    /// [`HandshakeConfig::timeout`] (an [`io::ErrorKind::TimedOut`] error past it).
    pub async fn reject(self, status: StatusCode, body: &str) -> io::Result<()> {
        self.reject_with_headers(status, HeaderMap::new(), body)
            .await
    }

    /// [`reject`](Self::reject) with extra response headers, e.g. `WWW-Authenticate` on
    /// a 401 or `Retry-After` on a 503. `Content-Type`, `Content-Length`,
    /// `Transfer-Encoding` and `Connection` are set by this method and ignored in `extra`.
    pub async fn reject_with_headers(
        self,
        status: StatusCode,
        extra: HeaderMap,
        body: &str,
    ) -> io::Result<()> {
        let status = if status.is_informational() {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            status
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &extra {
            if !is_framing_header(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        let response = encode_text_response(status, headers, body);
        let mut stream = self.stream;
        Box::pin(write_and_close(&mut stream, &response, self.timeout)).await
    }
}

/// Accepts any valid upgrade on `stream`: [`accept_request`] then [`Upgrade::accept`],
/// for servers with nothing to decide between the two (no authentication).
///
/// The whole handshake runs in one allocation that is freed when it ends, so a
/// connection task that awaits this keeps none of the handshake's state.
///
/// ```no_run
/// use wshub::ws::handshake::{HandshakeConfig, accept};
/// use wshub::ws::WsConfig;
/// # async fn run(stream: tokio::net::TcpStream) -> wshub::Result<()> {
/// let mut ws = accept(stream, None, &HandshakeConfig::default(), WsConfig::default()).await?;
/// while let Some(msg) = ws.recv().await? {
///     ws.send(msg).await?;
/// }
/// # Ok(()) }
/// ```
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer_addr: Option<SocketAddr>,
    cfg: &HandshakeConfig,
    config: WsConfig,
) -> Result<WebSocket<S>, HandshakeError> {
    Box::pin(async move {
        accept_request(stream, peer_addr, cfg)
            .await?
            .accept(config)
            .await
    })
    .await
}

/// Read and validate one upgrade request.
///
/// The whole request head must arrive within [`HandshakeConfig::timeout`] (else
/// [`HandshakeError::Timeout`]) and fit in [`HandshakeConfig::max_request_size`] (else
/// [`HandshakeError::RequestTooLarge`]); an EOF before the head is complete is an
/// [`io::ErrorKind::UnexpectedEof`] error. Bytes the client sent after the head are kept
/// for the WebSocket.
///
/// On failure, writes the HTTP response of `err.status()` (when `Some`: 426 carries
/// `Sec-WebSocket-Version: 13`, 405 carries `Allow: GET`; a small text/plain body names
/// the problem; `Connection: close`) and shuts the stream before returning the error.
pub async fn accept_request<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer_addr: Option<SocketAddr>,
    cfg: &HandshakeConfig,
) -> Result<Upgrade<S>, HandshakeError> {
    // Boxed: the handshake's state (buffers, timer) is needed once, and a future that
    // awaited it inline would carry its size for the connection's whole life.
    Box::pin(read_upgrade(stream, peer_addr, cfg)).await
}

async fn read_upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer_addr: Option<SocketAddr>,
    cfg: &HandshakeConfig,
) -> Result<Upgrade<S>, HandshakeError> {
    let read = read_head(&mut stream, cfg.max_request_size, parse_request);
    let result = match tokio::time::timeout(cfg.timeout, read).await {
        Err(_elapsed) => Err(HandshakeError::Timeout),
        Ok(Err(e)) => Err(e.into_server_error()),
        Ok(Ok((request, leftover))) => {
            negotiate(&request, cfg).map(|negotiated| (request, negotiated, leftover))
        }
    };
    match result {
        Ok((request, negotiated, leftover)) => Ok(Upgrade {
            stream,
            request,
            negotiated,
            leftover,
            peer_addr,
            timeout: cfg.timeout,
        }),
        Err(err) => {
            tracing::debug!(peer = ?peer_addr, error = %err, "WebSocket upgrade refused");
            if let Some(response) = encode_error_response(&err) {
                // The peer may be gone or not reading; the handshake failed either way
                // and the error we return is the interesting one.
                if let Err(e) = write_and_close(&mut stream, &response, cfg.timeout).await {
                    tracing::debug!(peer = ?peer_addr, error = %e, "could not send the handshake error response");
                }
            }
            Err(err)
        }
    }
}

/// The response to a failed handshake, `None` when nothing can be answered.
fn encode_error_response(err: &HandshakeError) -> Option<Vec<u8>> {
    let status = err.status()?;
    Some(encode_text_response(
        status,
        err.response_headers(),
        &format!("{err}\n"),
    ))
}

/// Write a whole response, then shut the stream down, within `limit`.
///
/// The stream is not drained afterwards: a client that still had bytes in flight (an
/// oversized head) may see a reset instead of the response. Draining would let it keep
/// the connection open longer, which is what the limits are there to prevent.
async fn write_and_close<S: AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    limit: Duration,
) -> io::Result<()> {
    let io = async {
        stream.write_all(bytes).await?;
        stream.flush().await?;
        stream.shutdown().await
    };
    match tokio::time::timeout(limit, io).await {
        Ok(result) => result,
        Err(_elapsed) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "timed out writing the HTTP response",
        )),
    }
}

/// Headers the 101 response sets itself (or must not carry).
fn is_handshake_response_header(name: &HeaderName) -> bool {
    *name == header::UPGRADE
        || *name == header::CONNECTION
        || *name == header::SEC_WEBSOCKET_ACCEPT
        || *name == header::SEC_WEBSOCKET_PROTOCOL
        || *name == header::SEC_WEBSOCKET_EXTENSIONS
        || is_framing_header(name)
}

/// Headers that decide where an HTTP message ends, which we always set ourselves.
fn is_framing_header(name: &HeaderName) -> bool {
    *name == header::CONTENT_LENGTH
        || *name == header::TRANSFER_ENCODING
        || *name == header::CONNECTION
        || *name == header::CONTENT_TYPE
}

#[cfg(test)]
mod tests;
