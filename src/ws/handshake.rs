//! The opening handshake of RFC 6455 §4, server and client role, over any
//! `AsyncRead + AsyncWrite + Unpin` stream.
//!
//! Server role: [`accept_request`] reads one HTTP/1.1 upgrade request from a raw stream
//! (TCP, TLS, ...), validates it with [`negotiate`] and hands back an [`Upgrade`] that the
//! application either [accepts](Upgrade::accept) (101 response, then a [`WebSocket`]) or
//! [rejects](Upgrade::reject) (authentication, limits). An invalid request is answered
//! with the HTTP status of [`HandshakeError::status`] before the error is returned.
//!
//! When an HTTP server (hyper, axum) has already parsed the request, call [`negotiate`]
//! on it, answer with [`Negotiated::response`], and build the socket on the upgraded
//! connection with [`WebSocket::from_parts`] and [`Negotiated::deflate`].
//!
//! Client role: [`connect`] (plain TCP) or [`client_handshake`] (any connected stream,
//! e.g. one wrapped in TLS for `wss://`).
//!
//! Every read is bounded in size and in time: a peer can neither make us buffer more
//! than the configured head size nor hold a task forever by trickling bytes
//! (slowloris).
//!
//! Only HTTP/1.1 upgrades are supported: WebSockets over HTTP/2 (RFC 8441, extended
//! `CONNECT`) are answered with 405.

use std::fmt;
use std::io;
use std::net::{Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tungstenite::handshake::client::generate_key;
use tungstenite::handshake::derive_accept_key;

use crate::error::HandshakeError;
use crate::ws::deflate::{self, DeflateParams};
use crate::ws::{Role, WebSocket, WsConfig};

/// Most header lines accepted in a request or response head; more is treated as an
/// oversized head (431) rather than a malformed one.
const MAX_HEADERS: usize = 64;

/// First size of the head buffer. Typical upgrade requests are 300-600 bytes, so most
/// handshakes never grow it.
const INITIAL_HEAD_BUFFER: usize = 1024;

/// The only WebSocket protocol version (RFC 6455 §4.1).
const WEBSOCKET_VERSION: &str = "13";

// ---------------------------------------------------------------------------------------
// Server configuration
// ---------------------------------------------------------------------------------------

/// Server handshake settings.
///
/// Build one with `HandshakeConfig::default()` and the `with_*` methods.
#[derive(Clone)]
#[non_exhaustive]
pub struct HandshakeConfig {
    /// How long a peer has to send its whole request head, counted from the call to
    /// [`accept_request`]. A peer trickling bytes (slowloris) is dropped when it runs
    /// out. The same bound applies to writing the response. Default: 10 s.
    pub timeout: Duration,
    /// Largest request head (request line and headers) accepted, in bytes. Over it, or
    /// with more than 64 header lines, the peer gets `431 Request Header Fields Too
    /// Large`. Default: 8 KiB.
    pub max_request_size: usize,
    /// Subprotocols the server speaks, most preferred first. The first of them that the
    /// client offered in `Sec-WebSocket-Protocol` is selected; when none was offered (or
    /// this is empty) no subprotocol is selected and the header is left out of the
    /// response, as RFC 6455 §4.2.2 asks. Names are compared case-sensitively.
    /// Default: empty.
    pub subprotocols: Vec<String>,
    /// Which `Origin`s may connect. Default: [`OriginPolicy::Any`].
    pub origin: OriginPolicy,
    /// Negotiate permessage-deflate (RFC 7692) when the client offers it.
    /// Default: `true`.
    pub deflate: bool,
}

impl Default for HandshakeConfig {
    fn default() -> Self {
        HandshakeConfig {
            timeout: Duration::from_secs(10),
            max_request_size: 8 * 1024,
            subprotocols: Vec::new(),
            origin: OriginPolicy::Any,
            deflate: true,
        }
    }
}

impl fmt::Debug for HandshakeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeConfig")
            .field("timeout", &self.timeout)
            .field("max_request_size", &self.max_request_size)
            .field("subprotocols", &self.subprotocols)
            .field("origin", &self.origin)
            .field("deflate", &self.deflate)
            .finish()
    }
}

impl HandshakeConfig {
    /// Sets [`timeout`](Self::timeout).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Sets [`max_request_size`](Self::max_request_size).
    pub fn with_max_request_size(mut self, bytes: usize) -> Self {
        self.max_request_size = bytes;
        self
    }
    /// Sets [`subprotocols`](Self::subprotocols), most preferred first.
    pub fn with_subprotocols<I, T>(mut self, subprotocols: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.subprotocols = subprotocols.into_iter().map(Into::into).collect();
        self
    }
    /// Sets [`origin`](Self::origin).
    pub fn with_origin(mut self, origin: OriginPolicy) -> Self {
        self.origin = origin;
        self
    }
    /// Sets [`deflate`](Self::deflate).
    pub fn with_deflate(mut self, deflate: bool) -> Self {
        self.deflate = deflate;
        self
    }
}

/// The function of [`OriginPolicy::Custom`]: whether a request with this `Origin` header
/// (`None` when absent) may connect.
pub type OriginCheck = dyn Fn(Option<&str>) -> bool + Send + Sync;

/// Which `Origin` header values may open a WebSocket.
///
/// Browsers always send `Origin` on a WebSocket upgrade and let any page connect
/// anywhere, so checking it is what stops another site from using a visitor's cookies
/// against this server (cross-site WebSocket hijacking).
#[derive(Clone, Default)]
pub enum OriginPolicy {
    /// Every origin (and none) is allowed.
    #[default]
    Any,
    /// Only these origins, e.g. `"https://app.example.com"`, compared exactly but ASCII
    /// case-insensitively with the `Origin` header.
    ///
    /// A request without `Origin` is allowed: browsers always send it, so its absence
    /// means a non-browser client, which could send any `Origin` it likes anyway.
    AllowList(Vec<String>),
    /// Decide with a function of the `Origin` header (`None` when absent).
    Custom(Arc<OriginCheck>),
}

impl OriginPolicy {
    /// [`OriginPolicy::AllowList`] from any list of strings.
    pub fn allow_list<I, T>(origins: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        OriginPolicy::AllowList(origins.into_iter().map(Into::into).collect())
    }

    /// [`OriginPolicy::Custom`] from a closure.
    pub fn custom(f: impl Fn(Option<&str>) -> bool + Send + Sync + 'static) -> Self {
        OriginPolicy::Custom(Arc::new(f))
    }

    /// Whether a request with this `Origin` header (`None`: no header) may connect.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        match self {
            OriginPolicy::Any => true,
            OriginPolicy::AllowList(list) => match origin {
                None => true,
                Some(origin) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
            },
            OriginPolicy::Custom(f) => f(origin),
        }
    }
}

impl fmt::Debug for OriginPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OriginPolicy::Any => f.write_str("Any"),
            OriginPolicy::AllowList(list) => f.debug_tuple("AllowList").field(list).finish(),
            OriginPolicy::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Validation of an upgrade request
// ---------------------------------------------------------------------------------------

/// What the server agreed to for one upgrade.
#[derive(Debug, Clone)]
pub struct Negotiated {
    accept_key: String,
    subprotocol: Option<String>,
    deflate: Option<DeflateParams>,
    extensions_header: Option<String>,
}

impl Negotiated {
    /// The selected subprotocol, if the client offered one the server speaks.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// The permessage-deflate parameters, if compression was negotiated. Pass them to
    /// [`WebSocket::from_parts`].
    pub fn deflate(&self) -> Option<DeflateParams> {
        self.deflate
    }

    /// The 101 Switching Protocols response (Upgrade, Connection, Sec-WebSocket-Accept,
    /// and Sec-WebSocket-Protocol / -Extensions when chosen).
    pub fn response(&self) -> Response<()> {
        let mut res = Response::new(());
        *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *res.version_mut() = Version::HTTP_11;
        let headers = res.headers_mut();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        // All three values were checked to be valid header values by `negotiate` (the
        // accept key is base64), so these conversions cannot fail in practice; a failure
        // would only drop the header, never panic.
        if let Ok(v) = HeaderValue::from_str(&self.accept_key) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        if let Some(Ok(v)) = self.subprotocol.as_deref().map(HeaderValue::from_str) {
            headers.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
        }
        if let Some(Ok(v)) = self.extensions_header.as_deref().map(HeaderValue::from_str) {
            headers.insert(header::SEC_WEBSOCKET_EXTENSIONS, v);
        }
        res
    }
}

/// Validate an upgrade request against RFC 6455 §4.2.1 (usable with requests parsed by
/// hyper/axum too) and decide what to answer.
///
/// Checks, in order, each failing with the [`HandshakeError`] whose
/// [`status`](HandshakeError::status) the client should get:
///
/// - method `GET`, else [`MethodNotAllowed`](HandshakeError::MethodNotAllowed) (405);
/// - HTTP/1.1 or later, a `Host` header (or an absolute request target), an `Upgrade`
///   token list containing `websocket`, a `Connection` token list containing `upgrade`
///   (both case-insensitive, e.g. `Connection: keep-alive, Upgrade`), no request body,
///   else [`BadRequest`](HandshakeError::BadRequest) (400);
/// - `Sec-WebSocket-Version: 13`, else
///   [`UnsupportedVersion`](HandshakeError::UnsupportedVersion) (426);
/// - one `Sec-WebSocket-Key` that is base64 for 16 bytes, else `BadRequest`;
/// - the `Origin` is allowed by [`HandshakeConfig::origin`], else
///   [`OriginNotAllowed`](HandshakeError::OriginNotAllowed) (403).
///
/// Then it selects a subprotocol (see [`HandshakeConfig::subprotocols`]; offers may be
/// spread over several `Sec-WebSocket-Protocol` headers) and, when
/// [`HandshakeConfig::deflate`] is on, permessage-deflate parameters.
pub fn negotiate<B>(req: &Request<B>, cfg: &HandshakeConfig) -> Result<Negotiated, HandshakeError> {
    if req.method() != Method::GET {
        return Err(HandshakeError::MethodNotAllowed);
    }
    if req.version() < Version::HTTP_11 {
        return Err(HandshakeError::BadRequest("HTTP/1.1 or later required"));
    }
    let headers = req.headers();
    if !headers.contains_key(header::HOST) && req.uri().authority().is_none() {
        return Err(HandshakeError::BadRequest("missing Host header"));
    }
    if !has_token(headers, &header::UPGRADE, "websocket") {
        return Err(HandshakeError::BadRequest(
            "missing or invalid Upgrade header",
        ));
    }
    if !has_token(headers, &header::CONNECTION, "upgrade") {
        return Err(HandshakeError::BadRequest(
            "missing or invalid Connection header",
        ));
    }
    // Bytes after the head belong to the WebSocket stream; a body would be misread as
    // frames.
    if has_body(headers) {
        return Err(HandshakeError::BadRequest(
            "an upgrade request must not have a body",
        ));
    }
    // A missing version is answered like a wrong one: 426 tells the client which version
    // to use (RFC 6455 §4.4).
    if single_value(headers, &header::SEC_WEBSOCKET_VERSION) != Some(WEBSOCKET_VERSION) {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let key = single_value(headers, &header::SEC_WEBSOCKET_KEY)
        .filter(|key| is_valid_key(key))
        .ok_or(HandshakeError::BadRequest(
            "missing or invalid Sec-WebSocket-Key header",
        ))?;

    let mut origins = headers.get_all(header::ORIGIN).iter();
    let origin = match (origins.next(), origins.next()) {
        (None, _) => None,
        (Some(value), None) => Some(
            value
                .to_str()
                .map_err(|_| HandshakeError::BadRequest("invalid Origin header"))?
                .trim(),
        ),
        // Two origins are ambiguous: whichever one we checked, the other could be the
        // one the application (or a proxy) trusts.
        (Some(_), Some(_)) => {
            return Err(HandshakeError::BadRequest("more than one Origin header"));
        }
    };
    if !cfg.origin.allows(origin) {
        return Err(HandshakeError::OriginNotAllowed);
    }

    // Server preference wins (RFC 6455 leaves the choice to the server). A selected name
    // equals one of the client's tokens, so it is a valid header value.
    let subprotocol = cfg
        .subprotocols
        .iter()
        .find(|ours| {
            list_tokens(headers, &header::SEC_WEBSOCKET_PROTOCOL).any(|t| t == ours.as_str())
        })
        .cloned();

    let (deflate, extensions_header) = if cfg.deflate {
        let offers = headers
            .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
            .iter()
            .filter_map(|v| v.to_str().ok());
        match deflate::negotiate_server(offers) {
            // Only agree to compression if the answer can actually be sent: a client that
            // does not see the header would not expect compressed frames.
            Some((params, value)) if HeaderValue::from_str(&value).is_ok() => {
                (Some(params), Some(value))
            }
            _ => (None, None),
        }
    } else {
        (None, None)
    };

    Ok(Negotiated {
        accept_key: derive_accept_key(key.as_bytes()),
        subprotocol,
        deflate,
        extensions_header,
    })
}

/// Whether a comma-separated token list in any of the `name` headers contains `token`
/// (ASCII case-insensitive). Values that are not visible ASCII are ignored.
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    list_tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token))
}

/// The non-empty, trimmed elements of the comma-separated lists in all `name` headers.
fn list_tokens<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The trimmed value of a header that must appear exactly once; `None` when it is
/// missing, repeated or not visible ASCII.
fn single_value<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok().map(str::trim)
}

/// Whether the head announces a message body.
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes().trim_ascii() != b"0")
}

/// Whether `key` is base64 for 16 bytes: 22 base64 digits and `==` (RFC 6455 §4.1).
///
/// The 4 unused bits of the last digit are not required to be zero: the key is only
/// hashed, never decoded, so a lenient check costs nothing and refuses no sloppy client.
fn is_valid_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    bytes.len() == 24
        && bytes[22..] == *b"=="
        && bytes[..22]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

// ---------------------------------------------------------------------------------------
// Server role over a raw stream
// ---------------------------------------------------------------------------------------

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
            negotiated.deflate,
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

// ---------------------------------------------------------------------------------------
// Client role
// ---------------------------------------------------------------------------------------

/// Client handshake settings.
///
/// Build one with `ClientConfig::default()` and the `with_*` methods.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Subprotocols offered in `Sec-WebSocket-Protocol`, in order of preference. Each
    /// must be an HTTP token. The server's choice (if any) must be one of them.
    /// Default: empty (no header).
    pub subprotocols: Vec<String>,
    /// Offer permessage-deflate (RFC 7692). Default: `true`.
    pub deflate: bool,
    /// Extra request headers, e.g. `Authorization`, `Origin`, `Cookie`. A `Host` here
    /// replaces the one derived from the URL; headers of the handshake itself
    /// (`Upgrade`, `Connection`, `Sec-WebSocket-*`) are ignored with a warning.
    /// Default: none.
    pub headers: HeaderMap,
    /// Time allowed for the whole handshake (for [`connect`]: also name resolution and
    /// the TCP connect). Default: 10 s.
    pub timeout: Duration,
    /// Largest response head accepted from the server, in bytes. Default: 8 KiB.
    pub max_response_size: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            subprotocols: Vec::new(),
            deflate: true,
            headers: HeaderMap::new(),
            timeout: Duration::from_secs(10),
            max_response_size: 8 * 1024,
        }
    }
}

impl ClientConfig {
    /// Sets [`subprotocols`](Self::subprotocols), most preferred first.
    pub fn with_subprotocols<I, T>(mut self, subprotocols: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.subprotocols = subprotocols.into_iter().map(Into::into).collect();
        self
    }
    /// Sets [`deflate`](Self::deflate).
    pub fn with_deflate(mut self, deflate: bool) -> Self {
        self.deflate = deflate;
        self
    }
    /// Sets [`headers`](Self::headers), replacing any set before.
    pub fn with_headers(mut self, headers: HeaderMap) -> Self {
        self.headers = headers;
        self
    }
    /// Adds one header to [`headers`](Self::headers).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }
    /// Sets [`timeout`](Self::timeout).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Sets [`max_response_size`](Self::max_response_size).
    pub fn with_max_response_size(mut self, bytes: usize) -> Self {
        self.max_response_size = bytes;
        self
    }
}

/// Perform the client handshake on an already connected stream.
///
/// `url` is `ws://host[:port]/path[?query]` (`wss://` too, for use over a TLS stream;
/// only the host, port and path matter here). An invalid URL or subprotocol name is an
/// [`io::ErrorKind::InvalidInput`] error. Anything but a valid 101 answer from the
/// server is [`HandshakeError::Refused`] (with the status, e.g. `"HTTP 401
/// Unauthorized"`, or the header at fault); no answer within
/// [`ClientConfig::timeout`] is [`HandshakeError::Timeout`].
///
/// Returns the socket and the server's response (for its headers, e.g. the selected
/// `Sec-WebSocket-Protocol`).
pub async fn client_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    url: &str,
    cfg: &ClientConfig,
    ws: WsConfig,
) -> Result<(WebSocket<S>, Response<()>), HandshakeError> {
    let url = WsUrl::parse(url)?;
    let deadline = Instant::now().checked_add(cfg.timeout);
    handshake_until(stream, &url, cfg, ws, deadline).await
}

/// Connect over TCP to a `ws://` URL (resolve the host, connect, set `TCP_NODELAY`) and
/// perform the handshake.
///
/// [`ClientConfig::timeout`] bounds everything: resolution, connect and handshake. For
/// `wss://`, connect a TLS stream yourself and call [`client_handshake`].
pub async fn connect(
    url: &str,
    cfg: &ClientConfig,
    ws: WsConfig,
) -> Result<(WebSocket<TcpStream>, Response<()>), HandshakeError> {
    let url = WsUrl::parse(url)?;
    if url.secure {
        return Err(invalid_input(
            "wss:// needs TLS: connect a TLS stream and call client_handshake",
        ));
    }
    let deadline = Instant::now().checked_add(cfg.timeout);
    let stream = until(deadline, TcpStream::connect((url.host.as_str(), url.port)))
        .await
        .ok_or(HandshakeError::Timeout)??;
    // Messages are written whole; Nagle would only delay small ones (pings, chat lines).
    stream.set_nodelay(true)?;
    handshake_until(stream, &url, cfg, ws, deadline).await
}

/// Run `f` until `deadline` (`None`: a timeout too large to represent, i.e. none).
async fn until<F: Future>(deadline: Option<Instant>, f: F) -> Option<F::Output> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, f).await.ok(),
        None => Some(f.await),
    }
}

async fn handshake_until<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    url: &WsUrl,
    cfg: &ClientConfig,
    ws: WsConfig,
    deadline: Option<Instant>,
) -> Result<(WebSocket<S>, Response<()>), HandshakeError> {
    let key = generate_key();
    let request = encode_client_request(url, cfg, &key)?;
    let exchange = async {
        stream.write_all(&request).await?;
        stream.flush().await?;
        read_head(&mut stream, cfg.max_response_size, parse_response)
            .await
            .map_err(HeadError::into_client_error)
    };
    let (response, leftover) = until(deadline, exchange)
        .await
        .ok_or(HandshakeError::Timeout)??;
    let deflate = check_response(&response, &key, cfg)?;
    Ok((
        WebSocket::from_parts(stream, Role::Client, ws, deflate, leftover),
        response,
    ))
}

/// The permessage-deflate offer to send, if any.
fn deflate_offer(cfg: &ClientConfig) -> Option<HeaderValue> {
    if cfg.deflate {
        HeaderValue::from_str(deflate::CLIENT_OFFER).ok()
    } else {
        None
    }
}

/// The request head of the client handshake.
fn encode_client_request(
    url: &WsUrl,
    cfg: &ClientConfig,
    key: &str,
) -> Result<Vec<u8>, HandshakeError> {
    let mut headers = HeaderMap::new();
    let host = match cfg.headers.get(header::HOST) {
        Some(host) => host.clone(),
        None => {
            HeaderValue::from_str(&url.host_header).map_err(|_| invalid_input("invalid host"))?
        }
    };
    headers.insert(header::HOST, host);
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(
        header::SEC_WEBSOCKET_KEY,
        HeaderValue::from_str(key).map_err(|_| invalid_input("invalid key"))?,
    );
    headers.insert(
        header::SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static(WEBSOCKET_VERSION),
    );
    if !cfg.subprotocols.is_empty() {
        if !cfg.subprotocols.iter().all(|p| is_token(p)) {
            return Err(invalid_input("subprotocol names must be HTTP tokens"));
        }
        let list = cfg.subprotocols.join(", ");
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_str(&list).map_err(|_| invalid_input("invalid subprotocol"))?,
        );
    }
    if let Some(offer) = deflate_offer(cfg) {
        headers.insert(header::SEC_WEBSOCKET_EXTENSIONS, offer);
    }
    for (name, value) in &cfg.headers {
        if *name == header::HOST {
            continue;
        }
        if is_handshake_request_header(name) {
            tracing::warn!(header = %name, "ignoring extra header that would break the WebSocket handshake");
            continue;
        }
        headers.append(name.clone(), value.clone());
    }

    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(url.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    encode_headers(&mut out, &headers);
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

/// Headers the client request sets itself (or must not carry).
fn is_handshake_request_header(name: &HeaderName) -> bool {
    *name == header::UPGRADE
        || *name == header::CONNECTION
        || *name == header::SEC_WEBSOCKET_KEY
        || *name == header::SEC_WEBSOCKET_VERSION
        || *name == header::SEC_WEBSOCKET_PROTOCOL
        || *name == header::SEC_WEBSOCKET_EXTENSIONS
        || *name == header::CONTENT_LENGTH
        || *name == header::TRANSFER_ENCODING
}

/// Check the server's answer (RFC 6455 §4.1, client requirements 1-6) and return the
/// agreed permessage-deflate parameters.
fn check_response(
    res: &Response<()>,
    key: &str,
    cfg: &ClientConfig,
) -> Result<Option<DeflateParams>, HandshakeError> {
    let refused = |why: &str| HandshakeError::Refused(why.to_owned());
    if res.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(HandshakeError::Refused(format!("HTTP {}", res.status())));
    }
    let headers = res.headers();
    if !has_token(headers, &header::UPGRADE, "websocket") {
        return Err(refused("missing or invalid Upgrade header"));
    }
    if !has_token(headers, &header::CONNECTION, "upgrade") {
        return Err(refused("missing or invalid Connection header"));
    }
    let expected = derive_accept_key(key.as_bytes());
    if single_value(headers, &header::SEC_WEBSOCKET_ACCEPT) != Some(expected.as_str()) {
        return Err(refused("Sec-WebSocket-Accept does not match the key"));
    }

    let mut protocols = headers.get_all(header::SEC_WEBSOCKET_PROTOCOL).iter();
    match (protocols.next(), protocols.next()) {
        (None, _) => {}
        (Some(value), None) => {
            let chosen = value.to_str().map(str::trim).unwrap_or("");
            if !cfg.subprotocols.iter().any(|ours| ours == chosen) {
                return Err(refused("server selected a subprotocol we did not offer"));
            }
        }
        (Some(_), Some(_)) => return Err(refused("more than one Sec-WebSocket-Protocol header")),
    }

    // HTTP allows a list to be split over several header lines; joined, they are one
    // list, which `accept_client_response` parses (quoted strings included) and checks
    // to hold exactly one extension.
    let mut extensions = Vec::new();
    for value in headers.get_all(header::SEC_WEBSOCKET_EXTENSIONS) {
        let value = value
            .to_str()
            .map_err(|_| refused("invalid Sec-WebSocket-Extensions header"))?;
        // Empty list elements are allowed (RFC 9110 §5.6.1): an empty header selects
        // nothing.
        if !value.split(',').all(|e| e.trim().is_empty()) {
            extensions.push(value);
        }
    }
    if extensions.is_empty() {
        return Ok(None);
    }
    if deflate_offer(cfg).is_none() {
        return Err(refused("server selected an extension we did not offer"));
    }
    deflate::accept_client_response(&extensions.join(", "))
        .map(Some)
        .map_err(|why| {
            HandshakeError::Refused(format!("invalid permessage-deflate response: {why}"))
        })
}

/// Whether `s` is a non-empty HTTP token (RFC 9110 §5.6.2).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn invalid_input(why: &'static str) -> HandshakeError {
    HandshakeError::Io(io::Error::new(io::ErrorKind::InvalidInput, why))
}

/// The parts of a `ws://` / `wss://` URL the handshake needs.
#[derive(Debug, PartialEq, Eq)]
struct WsUrl {
    secure: bool,
    /// Host to connect to: a name or an IP address, IPv6 without brackets.
    host: String,
    port: u16,
    /// `Host` header value: the host as written (IPv6 in brackets) and the port when it
    /// is not the scheme's default.
    host_header: String,
    /// Request target: path and query, at least `/`.
    target: String,
}

impl WsUrl {
    /// Parse by hand: the `url` crate is not a dependency, and this subset (RFC 6455 §3)
    /// is small.
    fn parse(url: &str) -> Result<WsUrl, HandshakeError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid_input("WebSocket URL must start with ws:// or wss://"))?;
        let secure = if scheme.eq_ignore_ascii_case("ws") {
            false
        } else if scheme.eq_ignore_ascii_case("wss") {
            true
        } else {
            return Err(invalid_input("WebSocket URL scheme must be ws or wss"));
        };
        // RFC 6455 §3: fragment identifiers are meaningless in WebSocket URIs.
        if rest.contains('#') {
            return Err(invalid_input("WebSocket URL must not have a fragment"));
        }
        let (authority, target) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        if authority.contains('@') {
            return Err(invalid_input(
                "user info in WebSocket URLs is not supported",
            ));
        }

        let (host, port, bracketed) = if let Some(inner) = authority.strip_prefix('[') {
            let (host, after) = inner
                .split_once(']')
                .ok_or_else(|| invalid_input("unterminated IPv6 address in URL"))?;
            if host.parse::<Ipv6Addr>().is_err() {
                return Err(invalid_input("invalid IPv6 address in URL"));
            }
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| invalid_input("invalid URL authority"))?,
                ),
            };
            (host, port, true)
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port), false),
                None => (authority, None, false),
            }
        };
        if !bracketed && !is_reg_name(host) {
            return Err(invalid_input("invalid host in URL"));
        }

        let default_port = if secure { 443 } else { 80 };
        let port = match port {
            // RFC 3986 allows an empty port: it means the default.
            None | Some("") => default_port,
            Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u16>()
                .map_err(|_| invalid_input("invalid port in URL"))?,
            Some(_) => return Err(invalid_input("invalid port in URL")),
        };

        let mut host_header = if bracketed {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        if port != default_port {
            host_header.push_str(&format!(":{port}"));
        }

        // Only visible ASCII may go on the request line: a space or CR/LF in the path
        // would let the URL inject headers.
        if !target.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid_input(
                "URL path must be ASCII without spaces (percent-encode the rest)",
            ));
        }
        let target = if target.is_empty() {
            "/".to_owned()
        } else if target.starts_with('?') {
            format!("/{target}")
        } else {
            target.to_owned()
        };

        Ok(WsUrl {
            secure,
            host: host.to_owned(),
            port,
            host_header,
            target,
        })
    }
}

/// Whether `host` is a non-empty registered name or IPv4 address (RFC 3986 §3.2.2:
/// unreserved, percent-encoded and sub-delimiter characters).
fn is_reg_name(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b))
}

// ---------------------------------------------------------------------------------------
// Reading and writing HTTP heads
// ---------------------------------------------------------------------------------------

/// Why a head could not be read; mapped to a [`HandshakeError`] per role.
enum HeadError {
    TooLarge,
    Malformed(&'static str),
    Io(io::Error),
}

impl HeadError {
    fn into_server_error(self) -> HandshakeError {
        match self {
            HeadError::TooLarge => HandshakeError::RequestTooLarge,
            HeadError::Malformed(why) => HandshakeError::BadRequest(why),
            HeadError::Io(e) => HandshakeError::Io(e),
        }
    }

    fn into_client_error(self) -> HandshakeError {
        match self {
            HeadError::TooLarge => {
                HandshakeError::Refused("response head larger than max_response_size".into())
            }
            HeadError::Malformed(why) => HandshakeError::Refused(why.into()),
            HeadError::Io(e) => HandshakeError::Io(e),
        }
    }
}

/// A head parser: `Ok(None)` while the head is incomplete, else the head and its length.
type ParseHead<T> = fn(&[u8]) -> Result<Option<(T, usize)>, HeadError>;

/// Read until `parse` finds a complete head, never holding more than `max` bytes.
/// Returns the parsed head and the bytes read after it.
///
/// The buffer starts at 1 KiB and doubles up to `max`, so an idle or small handshake
/// costs little. The head is re-parsed from its start after each read; with heads of a
/// few KiB that is cheaper than keeping parser state across reads.
async fn read_head<S, T>(
    stream: &mut S,
    max: usize,
    parse: ParseHead<T>,
) -> Result<(T, BytesMut), HeadError>
where
    S: AsyncRead + Unpin,
{
    let mut buf = vec![0; max.min(INITIAL_HEAD_BUFFER)];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            if filled >= max {
                return Err(HeadError::TooLarge);
            }
            buf.resize(buf.len().saturating_mul(2).min(max), 0);
        }
        let n = stream
            .read(&mut buf[filled..])
            .await
            .map_err(HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the end of the HTTP head",
            )));
        }
        filled += n;
        if let Some((head, len)) = parse(&buf[..filled])? {
            return Ok((head, BytesMut::from(&buf[len..filled])));
        }
    }
}

fn parse_request(buf: &[u8]) -> Result<Option<(Request<()>, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed("malformed HTTP request")),
    };
    let method = req
        .method
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .ok_or(HeadError::Malformed("invalid method"))?;
    let uri = req
        .path
        .and_then(|p| p.parse::<Uri>().ok())
        .ok_or(HeadError::Malformed("invalid request target"))?;
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = http_version(req.version)?;
    copy_headers(req.headers, request.headers_mut())?;
    Ok(Some((request, len)))
}

fn parse_response(buf: &[u8]) -> Result<Option<(Response<()>, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    let len = match res.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed("malformed HTTP response")),
    };
    let status = res
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(HeadError::Malformed("invalid HTTP status code"))?;
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = http_version(res.version)?;
    copy_headers(res.headers, response.headers_mut())?;
    Ok(Some((response, len)))
}

fn http_version(minor: Option<u8>) -> Result<Version, HeadError> {
    match minor {
        Some(0) => Ok(Version::HTTP_10),
        Some(1) => Ok(Version::HTTP_11),
        _ => Err(HeadError::Malformed("unsupported HTTP version")),
    }
}

fn copy_headers(src: &[httparse::Header<'_>], dst: &mut HeaderMap) -> Result<(), HeadError> {
    dst.reserve(src.len());
    for h in src {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| HeadError::Malformed("invalid header name"))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| HeadError::Malformed("invalid header value"))?;
        dst.append(name, value);
    }
    Ok(())
}

/// A response with a short `text/plain` body that closes the connection.
fn encode_text_response(status: StatusCode, mut headers: HeaderMap, body: &str) -> Vec<u8> {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    // A 426 also names `Upgrade` here, as RFC 9110 §7.8 asks of any message carrying an
    // Upgrade header.
    let connection = if headers.contains_key(header::UPGRADE) {
        "Upgrade, close"
    } else {
        "close"
    };
    headers.insert(header::CONNECTION, HeaderValue::from_static(connection));
    let mut out = encode_status_head(status, &headers);
    out.extend_from_slice(body.as_bytes());
    out
}

/// `HTTP/1.1 <status>` and `headers`, up to and including the empty line.
fn encode_status_head(status: StatusCode, headers: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    encode_headers(&mut out, headers);
    out.extend_from_slice(b"\r\n");
    out
}

fn encode_headers(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        push_header_name(out, name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Write a header name in its usual spelling. `http` keeps names in lower case; HTTP
/// does not care, but some hand-written clients and servers compare
/// `Sec-WebSocket-Accept` byte for byte.
fn push_header_name(out: &mut Vec<u8>, name: &HeaderName) {
    let canonical = match name.as_str() {
        "sec-websocket-accept" => Some("Sec-WebSocket-Accept"),
        "sec-websocket-extensions" => Some("Sec-WebSocket-Extensions"),
        "sec-websocket-key" => Some("Sec-WebSocket-Key"),
        "sec-websocket-protocol" => Some("Sec-WebSocket-Protocol"),
        "sec-websocket-version" => Some("Sec-WebSocket-Version"),
        _ => None,
    };
    if let Some(canonical) = canonical {
        out.extend_from_slice(canonical.as_bytes());
        return;
    }
    let mut upper = true;
    for &b in name.as_str().as_bytes() {
        out.push(if upper { b.to_ascii_uppercase() } else { b });
        upper = b == b'-';
    }
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{DuplexStream, duplex};

    /// The example of RFC 6455 §1.3.
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn request() -> Request<()> {
        Request::builder()
            .method(Method::GET)
            .uri("/chat")
            .version(Version::HTTP_11)
            .header("Host", "server.example.com")
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade")
            .header("Sec-WebSocket-Key", KEY)
            .header("Sec-WebSocket-Version", "13")
            .body(())
            .unwrap()
    }

    fn with(mut req: Request<()>, name: &'static str, value: &str) -> Request<()> {
        req.headers_mut()
            .insert(name, HeaderValue::from_str(value).unwrap());
        req
    }

    fn adding(mut req: Request<()>, name: &'static str, value: &str) -> Request<()> {
        req.headers_mut()
            .append(name, HeaderValue::from_str(value).unwrap());
        req
    }

    fn without(mut req: Request<()>, name: &'static str) -> Request<()> {
        req.headers_mut().remove(name);
        req
    }

    fn cfg() -> HandshakeConfig {
        HandshakeConfig::default()
    }

    fn bad_request(req: &Request<()>, cfg: &HandshakeConfig) -> &'static str {
        match negotiate(req, cfg) {
            Err(HandshakeError::BadRequest(why)) => why,
            other => panic!("expected BadRequest, got {other:?}"),
        }
    }

    #[test]
    fn accepts_the_rfc_example() {
        let n = negotiate(&request(), &cfg()).unwrap();
        assert_eq!(n.subprotocol(), None);
        assert!(n.deflate().is_none());
        let res = n.response();
        assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
        let h = res.headers();
        assert_eq!(h["sec-websocket-accept"], ACCEPT);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "Upgrade");
        assert!(!h.contains_key("sec-websocket-protocol"));
        assert!(!h.contains_key("sec-websocket-extensions"));
    }

    #[test]
    fn method_must_be_get() {
        let mut req = request();
        *req.method_mut() = Method::POST;
        let err = negotiate(&req, &cfg()).unwrap_err();
        assert!(matches!(err, HandshakeError::MethodNotAllowed));
        assert_eq!(err.status(), Some(StatusCode::METHOD_NOT_ALLOWED));
    }

    #[test]
    fn http_version_must_be_at_least_1_1() {
        let mut req = request();
        *req.version_mut() = Version::HTTP_10;
        bad_request(&req, &cfg());
    }

    #[test]
    fn host_is_required() {
        bad_request(&without(request(), "host"), &cfg());
    }

    #[test]
    fn upgrade_header_must_name_websocket() {
        let why = bad_request(&without(request(), "upgrade"), &cfg());
        assert_eq!(why, "missing or invalid Upgrade header");
        bad_request(&with(request(), "upgrade", "h2c"), &cfg());
        negotiate(&with(request(), "upgrade", "WebSocket"), &cfg()).unwrap();
        negotiate(&with(request(), "upgrade", "foo/2, websocket"), &cfg()).unwrap();
    }

    #[test]
    fn connection_header_must_contain_upgrade() {
        bad_request(&without(request(), "connection"), &cfg());
        bad_request(&with(request(), "connection", "keep-alive"), &cfg());
        bad_request(&with(request(), "connection", "upgraded"), &cfg());
        negotiate(
            &with(request(), "connection", "keep-alive, Upgrade"),
            &cfg(),
        )
        .unwrap();
        let two = adding(
            with(request(), "connection", "keep-alive"),
            "connection",
            "upgrade",
        );
        negotiate(&two, &cfg()).unwrap();
    }

    #[test]
    fn version_must_be_13() {
        for req in [
            with(request(), "sec-websocket-version", "8"),
            with(request(), "sec-websocket-version", "13, 8"),
            adding(request(), "sec-websocket-version", "13"),
            without(request(), "sec-websocket-version"),
        ] {
            let err = negotiate(&req, &cfg()).unwrap_err();
            assert!(matches!(err, HandshakeError::UnsupportedVersion), "{err:?}");
            assert_eq!(err.status(), Some(StatusCode::UPGRADE_REQUIRED));
        }
    }

    #[test]
    fn key_must_be_base64_of_16_bytes() {
        for key in [
            "",
            "short",
            "dGhlIHNhbXBsZSBub25jZQ=",
            "dGhlIHNhbXBsZSBub25jZQ!=",
            "dGhlIHNhbXBsZSBub25jZQ=A",
            // 20 bytes
            "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ] {
            let why = bad_request(&with(request(), "sec-websocket-key", key), &cfg());
            assert_eq!(why, "missing or invalid Sec-WebSocket-Key header");
        }
        bad_request(&without(request(), "sec-websocket-key"), &cfg());
        bad_request(&adding(request(), "sec-websocket-key", KEY), &cfg());
        negotiate(
            &with(request(), "sec-websocket-key", "AAAAAAAAAAAAAAAAAAAAAA=="),
            &cfg(),
        )
        .unwrap();
    }

    #[test]
    fn body_is_refused() {
        bad_request(&with(request(), "content-length", "5"), &cfg());
        bad_request(&with(request(), "transfer-encoding", "chunked"), &cfg());
        negotiate(&with(request(), "content-length", "0"), &cfg()).unwrap();
    }

    #[test]
    fn origin_allow_list() {
        let cfg = cfg().with_origin(OriginPolicy::allow_list(["https://app.example.com"]));
        negotiate(&with(request(), "origin", "https://app.example.com"), &cfg).unwrap();
        negotiate(&with(request(), "origin", "HTTPS://App.Example.com"), &cfg).unwrap();
        // No Origin: not a browser.
        negotiate(&request(), &cfg).unwrap();
        for origin in [
            "https://evil.example",
            "https://app.example.com.evil.example",
            "null",
        ] {
            let err = negotiate(&with(request(), "origin", origin), &cfg).unwrap_err();
            assert!(matches!(err, HandshakeError::OriginNotAllowed), "{origin}");
            assert_eq!(err.status(), Some(StatusCode::FORBIDDEN));
        }
        let two = adding(
            with(request(), "origin", "https://app.example.com"),
            "origin",
            "https://evil.example",
        );
        bad_request(&two, &cfg);
    }

    #[test]
    fn origin_custom_policy() {
        let cfg = cfg().with_origin(OriginPolicy::custom(|o| o == Some("https://ok.example")));
        negotiate(&with(request(), "origin", "https://ok.example"), &cfg).unwrap();
        assert!(matches!(
            negotiate(&request(), &cfg),
            Err(HandshakeError::OriginNotAllowed)
        ));
        assert_eq!(format!("{:?}", cfg.origin), "Custom(..)");
    }

    #[test]
    fn subprotocol_follows_server_preference() {
        let cfg = cfg().with_subprotocols(["v3.chat", "v2.chat", "v1.chat"]);
        let req = adding(
            with(request(), "sec-websocket-protocol", "v1.chat, other"),
            "sec-websocket-protocol",
            "v2.chat",
        );
        let n = negotiate(&req, &cfg).unwrap();
        assert_eq!(n.subprotocol(), Some("v2.chat"));
        assert_eq!(n.response().headers()["sec-websocket-protocol"], "v2.chat");

        // Nothing in common: no subprotocol, no header.
        let req = with(request(), "sec-websocket-protocol", "mqtt, V2.CHAT");
        let n = negotiate(&req, &cfg).unwrap();
        assert_eq!(n.subprotocol(), None);
        assert!(
            !n.response()
                .headers()
                .contains_key("sec-websocket-protocol")
        );

        // The server speaks none.
        let req = with(request(), "sec-websocket-protocol", "v1.chat");
        assert_eq!(
            negotiate(&req, &HandshakeConfig::default())
                .unwrap()
                .subprotocol(),
            None
        );
    }

    #[test]
    fn deflate_offer_gets_an_extensions_header() {
        let req = with(
            request(),
            "sec-websocket-extensions",
            "permessage-deflate; client_max_window_bits",
        );
        let n = negotiate(&req, &cfg()).unwrap();
        assert!(n.deflate().is_some());
        let res = n.response();
        let ext = res.headers()["sec-websocket-extensions"].to_str().unwrap();
        assert!(ext.starts_with("permessage-deflate"), "{ext}");

        let off = negotiate(&req, &cfg().with_deflate(false)).unwrap();
        assert!(off.deflate().is_none());
        assert!(
            !off.response()
                .headers()
                .contains_key("sec-websocket-extensions")
        );

        let none = negotiate(&request(), &cfg()).unwrap();
        assert!(none.deflate().is_none());
        let other = negotiate(
            &with(request(), "sec-websocket-extensions", "x-foo"),
            &cfg(),
        )
        .unwrap();
        assert!(other.deflate().is_none());
    }

    #[test]
    fn header_names_are_written_in_their_usual_spelling() {
        let mut headers = HeaderMap::new();
        headers.insert("sec-websocket-accept", HeaderValue::from_static("x"));
        headers.insert("www-authenticate", HeaderValue::from_static("Bearer"));
        let head = encode_status_head(StatusCode::SWITCHING_PROTOCOLS, &headers);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: x\r\nWww-Authenticate: Bearer\r\n\r\n"
        );
    }

    #[test]
    fn url_parsing() {
        let u = WsUrl::parse("ws://example.com").unwrap();
        assert_eq!(
            u,
            WsUrl {
                secure: false,
                host: "example.com".into(),
                port: 80,
                host_header: "example.com".into(),
                target: "/".into(),
            }
        );
        let u = WsUrl::parse("wss://example.com:8443/a/b?x=1&y=2").unwrap();
        assert!(u.secure);
        assert_eq!((u.port, u.host_header.as_str()), (8443, "example.com:8443"));
        assert_eq!(u.target, "/a/b?x=1&y=2");
        let u = WsUrl::parse("WSS://example.com:443?q").unwrap();
        assert_eq!(
            (u.port, u.host_header.as_str(), u.target.as_str()),
            (443, "example.com", "/?q")
        );
        let u = WsUrl::parse("ws://[::1]:9001/ws").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9001));
        assert_eq!(u.host_header, "[::1]:9001");
        let u = WsUrl::parse("ws://[::1]").unwrap();
        assert_eq!((u.port, u.host_header.as_str()), (80, "[::1]"));
        let u = WsUrl::parse("ws://127.0.0.1:/").unwrap();
        assert_eq!(u.port, 80);

        for bad in [
            "example.com",
            "http://example.com/",
            "ws://",
            "ws:///path",
            "ws://example.com:99999/",
            "ws://example.com:+80/",
            "ws://example.com:http/",
            "ws://::1/",
            "ws://[::1/",
            "ws://[nothost]/",
            "ws://[::1]x/",
            "ws://user@example.com/",
            "ws://example.com/#frag",
            "ws://example.com/a b",
            "ws://example.com/a\r\nX-Injected: 1",
            "ws://exa mple.com/",
        ] {
            match WsUrl::parse(bad) {
                Err(HandshakeError::Io(e)) => {
                    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    // ----- accept_request over an in-memory stream -----------------------------------

    const RAW_REQUEST: &str = "GET /chat?room=1 HTTP/1.1\r\n\
        Host: server.example.com\r\n\
        Upgrade: websocket\r\n\
        Connection: keep-alive, Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\
        \r\n";

    /// Read from `stream` until a whole HTTP head has arrived.
    async fn read_http_head(stream: &mut DuplexStream) -> String {
        let mut buf = Vec::new();
        let mut chunk = [0; 256];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "EOF after {:?}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8(buf).unwrap()
    }

    async fn read_all(stream: &mut DuplexStream) -> String {
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await.unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[tokio::test]
    async fn accept_request_keeps_leftover_bytes_and_accepts() {
        let (mut client, server) = duplex(64 * 1024);
        client.write_all(RAW_REQUEST.as_bytes()).await.unwrap();
        client.write_all(b"\x81\x80frame").await.unwrap();

        let peer: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let upgrade = accept_request(server, Some(peer), &cfg()).await.unwrap();
        assert_eq!(upgrade.peer_addr(), Some(peer));
        assert_eq!(upgrade.request().uri(), "/chat?room=1");
        assert_eq!(upgrade.request().headers()["host"], "server.example.com");
        assert_eq!(&upgrade.leftover[..], b"\x81\x80frame");
        assert!(format!("{upgrade:?}").contains("leftover: 7"));

        let mut extra = HeaderMap::new();
        extra.insert("set-cookie", HeaderValue::from_static("sid=1"));
        extra.insert("sec-websocket-accept", HeaderValue::from_static("forged"));
        let _ws = upgrade
            .accept_with_headers(extra, WsConfig::default())
            .await
            .unwrap();
        let head = read_http_head(&mut client).await;
        assert!(
            head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n")),
            "{head}"
        );
        assert!(head.contains("Upgrade: websocket\r\n"), "{head}");
        assert!(head.contains("Set-Cookie: sid=1\r\n"), "{head}");
        assert!(!head.contains("forged"), "{head}");
    }

    #[tokio::test]
    async fn request_arriving_in_pieces_is_assembled() {
        let (mut client, server) = duplex(64 * 1024);
        let writer = tokio::spawn(async move {
            for piece in RAW_REQUEST.as_bytes().chunks(7) {
                client.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
            client
        });
        let upgrade = accept_request(server, None, &cfg()).await.unwrap();
        assert!(upgrade.leftover.is_empty());
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn oversized_head_gets_431() {
        let (mut client, server) = duplex(64 * 1024);
        let pad = "a".repeat(2000);
        let req = RAW_REQUEST.replace("\r\n\r\n", &format!("\r\nX-Pad: {pad}\r\n\r\n"));
        client.write_all(req.as_bytes()).await.unwrap();
        let cfg = cfg().with_max_request_size(1500);
        let err = accept_request(server, None, &cfg).await.unwrap_err();
        assert!(matches!(err, HandshakeError::RequestTooLarge), "{err:?}");
        let response = read_all(&mut client).await;
        assert!(
            response.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{response}"
        );
        assert!(response.contains("Connection: close\r\n"), "{response}");
        assert!(response.ends_with("request head too large\n"), "{response}");
    }

    #[tokio::test]
    async fn too_many_headers_get_431() {
        let (mut client, server) = duplex(64 * 1024);
        let many: String = (0..MAX_HEADERS).map(|i| format!("X-{i}: 1\r\n")).collect();
        let req = RAW_REQUEST.replace("\r\n\r\n", &format!("\r\n{many}\r\n"));
        client.write_all(req.as_bytes()).await.unwrap();
        let err = accept_request(server, None, &cfg()).await.unwrap_err();
        assert!(matches!(err, HandshakeError::RequestTooLarge), "{err:?}");
        assert!(read_all(&mut client).await.starts_with("HTTP/1.1 431 "));
    }

    #[tokio::test(start_paused = true)]
    async fn slow_peer_times_out() {
        let (mut client, server) = duplex(64 * 1024);
        client
            .write_all(b"GET /chat HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        let err = accept_request(server, None, &cfg()).await.unwrap_err();
        assert!(matches!(err, HandshakeError::Timeout), "{err:?}");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
            "{waited:?}"
        );
        // Nothing is answered to a peer that did not finish its request.
        assert_eq!(read_all(&mut client).await, "");
    }

    #[tokio::test]
    async fn eof_before_the_head_is_an_io_error() {
        let (mut client, server) = duplex(64 * 1024);
        client.write_all(b"GET /chat HTTP/1.1\r\n").await.unwrap();
        drop(client);
        match accept_request(server, None, &cfg()).await {
            Err(HandshakeError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn bad_version_gets_426_with_the_supported_version() {
        let (mut client, server) = duplex(64 * 1024);
        let req = RAW_REQUEST.replace("Version: 13", "Version: 8");
        client.write_all(req.as_bytes()).await.unwrap();
        let err = accept_request(server, None, &cfg()).await.unwrap_err();
        assert!(matches!(err, HandshakeError::UnsupportedVersion), "{err:?}");
        let response = read_all(&mut client).await;
        assert!(response.starts_with("HTTP/1.1 426"), "{response}");
        assert!(
            response.contains("Sec-WebSocket-Version: 13\r\n"),
            "{response}"
        );
    }

    #[tokio::test]
    async fn post_gets_405_with_allow() {
        let (mut client, server) = duplex(64 * 1024);
        let req = RAW_REQUEST.replace("GET ", "POST ");
        client.write_all(req.as_bytes()).await.unwrap();
        let err = accept_request(server, None, &cfg()).await.unwrap_err();
        assert!(matches!(err, HandshakeError::MethodNotAllowed), "{err:?}");
        let response = read_all(&mut client).await;
        assert!(
            response.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{response}"
        );
        assert!(response.contains("Allow: GET\r\n"), "{response}");
    }

    #[tokio::test]
    async fn garbage_gets_400() {
        let (mut client, server) = duplex(64 * 1024);
        client
            .write_all(b"\x16\x03\x01\x02\x00 TLS hello\r\n\r\n")
            .await
            .unwrap();
        let err = accept_request(server, None, &cfg()).await.unwrap_err();
        assert!(matches!(err, HandshakeError::BadRequest(_)), "{err:?}");
        assert!(
            read_all(&mut client)
                .await
                .starts_with("HTTP/1.1 400 Bad Request\r\n")
        );
    }

    #[tokio::test]
    async fn reject_writes_the_status_and_closes() {
        let (mut client, server) = duplex(64 * 1024);
        client.write_all(RAW_REQUEST.as_bytes()).await.unwrap();
        let upgrade = accept_request(server, None, &cfg()).await.unwrap();
        let mut extra = HeaderMap::new();
        extra.insert("www-authenticate", HeaderValue::from_static("Bearer"));
        extra.insert("content-length", HeaderValue::from_static("999"));
        upgrade
            .reject_with_headers(StatusCode::UNAUTHORIZED, extra, "no token")
            .await
            .unwrap();
        let response = read_all(&mut client).await;
        assert!(
            response.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
            "{response}"
        );
        assert!(
            response.contains("Www-Authenticate: Bearer\r\n"),
            "{response}"
        );
        assert!(response.contains("Content-Length: 8\r\n"), "{response}");
        assert!(response.contains("Connection: close\r\n"), "{response}");
        assert!(response.ends_with("\r\n\r\nno token"), "{response}");
    }

    // ----- client role ------------------------------------------------------------------

    /// A fake server: reads the request head, answers with `respond(key)`, and returns
    /// the request it saw.
    fn fake_server(
        mut stream: DuplexStream,
        respond: impl FnOnce(&str) -> String + Send + 'static,
    ) -> tokio::task::JoinHandle<(String, DuplexStream)> {
        tokio::spawn(async move {
            let head = read_http_head(&mut stream).await;
            let key = head
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap()
                .to_owned();
            stream.write_all(respond(&key).as_bytes()).await.unwrap();
            (head, stream)
        })
    }

    fn switching(accept: &str, extra: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
        )
    }

    #[tokio::test]
    async fn client_accepts_a_correct_answer() {
        let (client, server) = duplex(64 * 1024);
        let srv = fake_server(server, |key| {
            switching(&derive_accept_key(key.as_bytes()), "")
        });
        let cfg = ClientConfig::default()
            .with_header(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"))
            .with_header(header::CONNECTION, HeaderValue::from_static("close"));
        let (_ws, res) = client_handshake(
            client,
            "ws://example.com:8080/chat?room=1",
            &cfg,
            WsConfig::default(),
        )
        .await
        .unwrap();
        assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
        let (head, _stream) = srv.await.unwrap();
        assert!(head.starts_with("GET /chat?room=1 HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("Host: example.com:8080\r\n"), "{head}");
        assert!(head.contains("Upgrade: websocket\r\n"), "{head}");
        assert!(head.contains("Connection: Upgrade\r\n"), "{head}");
        assert!(head.contains("Sec-WebSocket-Version: 13\r\n"), "{head}");
        assert!(head.contains("Authorization: Bearer t\r\n"), "{head}");
        assert!(
            head.contains(&format!(
                "Sec-WebSocket-Extensions: {}\r\n",
                deflate::CLIENT_OFFER
            )),
            "{head}"
        );
        assert!(!head.contains("close"), "{head}");
    }

    #[tokio::test]
    async fn client_refuses_a_wrong_accept_key() {
        let (client, server) = duplex(64 * 1024);
        let _srv = fake_server(server, |_| switching(ACCEPT, ""));
        let err = client_handshake(
            client,
            "ws://example.com/",
            &ClientConfig::default(),
            WsConfig::default(),
        )
        .await
        .unwrap_err();
        match err {
            HandshakeError::Refused(why) => assert!(why.contains("Sec-WebSocket-Accept"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn client_reports_the_status_of_a_refusal() {
        let (client, server) = duplex(64 * 1024);
        let _srv = fake_server(server, |_| {
            "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".to_owned()
        });
        let err = client_handshake(
            client,
            "ws://example.com/",
            &ClientConfig::default(),
            WsConfig::default(),
        )
        .await
        .unwrap_err();
        match err {
            HandshakeError::Refused(why) => assert!(why.contains("401"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn client_refuses_what_it_did_not_offer() {
        let cases: [(ClientConfig, &str); 6] = [
            (ClientConfig::default(), "Sec-WebSocket-Protocol: chat\r\n"),
            (
                ClientConfig::default().with_subprotocols(["chat"]),
                "Sec-WebSocket-Protocol: other\r\n",
            ),
            (
                ClientConfig::default().with_deflate(false),
                "Sec-WebSocket-Extensions: permessage-deflate\r\n",
            ),
            (
                ClientConfig::default(),
                "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n",
            ),
            (
                ClientConfig::default(),
                "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\
                 Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n",
            ),
            // We asked for server_no_context_takeover: an answer without it is refused.
            (
                ClientConfig::default(),
                "Sec-WebSocket-Extensions: permessage-deflate\r\n",
            ),
        ];
        for (cfg, extra) in cases {
            let (client, server) = duplex(64 * 1024);
            let extra = extra.to_owned();
            let _srv = fake_server(server, move |key| {
                switching(&derive_accept_key(key.as_bytes()), &extra)
            });
            let err = client_handshake(client, "ws://example.com/", &cfg, WsConfig::default())
                .await
                .unwrap_err();
            assert!(matches!(err, HandshakeError::Refused(_)), "{err:?}");
        }
    }

    #[tokio::test]
    async fn client_accepts_deflate_and_empty_extension_headers() {
        for extra in [
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n",
            "Sec-WebSocket-Extensions: \r\nSec-WebSocket-Extensions: ,\r\n",
        ] {
            let (client, server) = duplex(64 * 1024);
            let _srv = fake_server(server, move |key| {
                switching(&derive_accept_key(key.as_bytes()), extra)
            });
            let cfg = ClientConfig::default();
            let (_ws, res) =
                client_handshake(client, "ws://example.com/", &cfg, WsConfig::default())
                    .await
                    .unwrap();
            assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
        }
    }

    #[tokio::test]
    async fn client_accepts_an_offered_subprotocol() {
        let (client, server) = duplex(64 * 1024);
        let srv = fake_server(server, |key| {
            switching(
                &derive_accept_key(key.as_bytes()),
                "Sec-WebSocket-Protocol: b\r\n",
            )
        });
        let cfg = ClientConfig::default().with_subprotocols(["a", "b"]);
        let (_ws, res) = client_handshake(client, "ws://example.com/", &cfg, WsConfig::default())
            .await
            .unwrap();
        assert_eq!(res.headers()["sec-websocket-protocol"], "b");
        let (head, _) = srv.await.unwrap();
        assert!(head.contains("Sec-WebSocket-Protocol: a, b\r\n"), "{head}");
    }

    #[tokio::test]
    async fn client_rejects_invalid_subprotocol_names() {
        let (client, _server) = duplex(64 * 1024);
        let cfg = ClientConfig::default().with_subprotocols(["a b"]);
        match client_handshake(client, "ws://example.com/", &cfg, WsConfig::default()).await {
            Err(HandshakeError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::InvalidInput),
            other => panic!("{:?}", other.map(|(_, res)| res)),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn client_times_out_on_a_silent_server() {
        let (client, _server) = duplex(64 * 1024);
        let err = client_handshake(
            client,
            "ws://example.com/",
            &ClientConfig::default(),
            WsConfig::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, HandshakeError::Timeout), "{err:?}");
    }

    #[tokio::test]
    async fn client_and_server_agree() {
        let (client, server) = duplex(64 * 1024);
        let server_cfg = cfg().with_subprotocols(["v2", "v1"]);
        let srv = tokio::spawn(async move {
            let upgrade = accept_request(server, None, &server_cfg).await.unwrap();
            assert_eq!(upgrade.negotiated().subprotocol(), Some("v2"));
            assert!(upgrade.negotiated().deflate().is_some());
            upgrade.accept(WsConfig::default()).await.unwrap()
        });
        let cfg = ClientConfig::default().with_subprotocols(["v1", "v2"]);
        let (_ws, res) = client_handshake(client, "ws://localhost/", &cfg, WsConfig::default())
            .await
            .unwrap();
        assert_eq!(res.headers()["sec-websocket-protocol"], "v2");
        assert!(res.headers().contains_key("sec-websocket-extensions"));
        let _server_ws = srv.await.unwrap();
    }

    #[tokio::test]
    async fn connect_over_tcp() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let srv = tokio::spawn(async move {
            let (stream, peer) = listener.accept().await.unwrap();
            let upgrade = accept_request(stream, Some(peer), &HandshakeConfig::default())
                .await
                .unwrap();
            assert_eq!(upgrade.request().uri(), "/ws?x=1");
            let host = upgrade.request().headers()["host"]
                .to_str()
                .unwrap()
                .to_owned();
            let _ws = upgrade.accept(WsConfig::default()).await.unwrap();
            host
        });
        let url = format!("ws://{addr}/ws?x=1");
        let (_ws, res) = connect(&url, &ClientConfig::default(), WsConfig::default())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(srv.await.unwrap(), addr.to_string());

        let err = connect(
            "wss://example.com/",
            &ClientConfig::default(),
            WsConfig::default(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, HandshakeError::Io(ref e) if e.kind() == io::ErrorKind::InvalidInput)
        );
    }
}
