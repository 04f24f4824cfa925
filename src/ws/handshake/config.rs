//! Server and client handshake settings.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Server handshake settings.
///
/// Build one with `HandshakeConfig::default()` and the `with_*` methods.
#[derive(Clone)]
#[non_exhaustive]
pub struct HandshakeConfig {
    /// How long a peer has to send its whole request head, counted from the call to
    /// [`accept_request`]. A peer trickling bytes (slowloris) is dropped when it runs
    /// out. The same bound applies to writing the response. Default: 10 s.
    ///
    /// [`accept_request`]: super::accept_request
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
    ///
    /// [`connect`]: super::connect
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
