//! [`AuthRequest`]: the upgrade request as an authenticator sees it, and the helpers
//! that read tokens, query parameters and cookies out of it.

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, Method, Uri};

/// The parts of the upgrade request an [`Authenticator`](super::Authenticator) may look at.
///
/// Its `Debug` output leaves out the query string and header values, which carry
/// tokens and cookies, so the request can be logged safely.
#[derive(Clone)]
pub struct AuthRequest {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    peer_addr: Option<SocketAddr>,
    proxy_addr: Option<SocketAddr>,
}

impl AuthRequest {
    /// A request with these parts and no known peer address.
    pub fn new(method: Method, uri: Uri, headers: HeaderMap) -> Self {
        AuthRequest {
            method,
            uri,
            headers,
            peer_addr: None,
            proxy_addr: None,
        }
    }

    /// Copies the method, URI and headers of an `http` request (the body is not used).
    pub fn from_request<B>(req: &http::Request<B>) -> Self {
        AuthRequest::new(
            req.method().clone(),
            req.uri().clone(),
            req.headers().clone(),
        )
    }

    /// Sets the client's address (see [`peer_addr`](Self::peer_addr)).
    pub fn with_peer_addr(mut self, peer_addr: SocketAddr) -> Self {
        self.peer_addr = Some(peer_addr);
        self
    }

    /// Sets the address of the trusted proxy that named the client (see
    /// [`proxy_addr`](Self::proxy_addr)).
    pub fn with_proxy_addr(mut self, proxy_addr: SocketAddr) -> Self {
        self.proxy_addr = Some(proxy_addr);
        self
    }

    /// The request method (`GET` for a WebSocket upgrade).
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The request target: path and query.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// The raw (still percent-encoded) query string, without the `?`.
    pub fn query(&self) -> Option<&str> {
        self.uri.query()
    }

    /// All request headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The first value of header `name`, if it is present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// The client's address, if the server knows it: the TCP peer's, or, when the TCP
    /// peer is one of [`HubConfig::trusted_proxies`](crate::HubConfig::trusted_proxies),
    /// the address that proxy gave (`Forwarded`, `X-Forwarded-For` or a PROXY protocol
    /// header; port 0 when it gave none). It is the address the connection limits
    /// count. Headers from any other peer are ignored, so a client cannot choose it.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_addr
    }

    /// The TCP peer, when it is a trusted proxy whose word gave
    /// [`peer_addr`](Self::peer_addr); `None` for a direct connection.
    pub fn proxy_addr(&self) -> Option<SocketAddr> {
        self.proxy_addr
    }

    /// The first query parameter called `name`, percent-decoded (`+` is a space, as in
    /// HTML forms and `URLSearchParams`). A parameter without `=` has the empty value.
    /// Malformed escapes are kept as written and invalid UTF-8 becomes U+FFFD, the way
    /// browsers decode URLs.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query()?
            .split('&')
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(key, _)| percent_decode(key) == name)
            .map(|(_, value)| percent_decode(value).into_owned())
    }

    /// The value of cookie `name` (from any `Cookie` header), without surrounding double
    /// quotes and not decoded further.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| key.trim() == name)
            .map(|(_, value)| {
                let value = value.trim();
                value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value)
            })
    }

    /// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
    pub fn bearer_token(&self) -> Option<&str> {
        let value = self.headers.get(AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.trim().split_once(' ')?;
        let token = token.trim_start();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
    }

    /// The client's token: the bearer token if there is one, else the `token` query
    /// parameter (browsers cannot set headers on a WebSocket). `Sec-WebSocket-Protocol`
    /// is deliberately not used: it is for protocol names, and proxies log it.
    pub fn token(&self) -> Option<String> {
        match self.bearer_token() {
            Some(token) => Some(token.to_owned()),
            None => self.query_param("token").filter(|t| !t.is_empty()),
        }
    }
}

impl fmt::Debug for AuthRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthRequest")
            .field("method", &self.method)
            .field("path", &self.uri.path())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("peer_addr", &self.peer_addr)
            .field("proxy_addr", &self.proxy_addr)
            .finish_non_exhaustive()
    }
}

/// Decodes `%XX` escapes and `+`; borrows when there is nothing to decode.
fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    fn hex(b: u8) -> Option<u8> {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::AuthRequest;
    use crate::auth::tests::req;
    use crate::auth::{Identity, StaticTokens};

    #[test]
    fn query_params_are_percent_decoded() {
        let r = req(
            "/ws?a=1&name=J%C3%A9r%C3%B4me+L%27H&plus=%2B&bad=100%zz%2&bin=%FF&flag&a=2&k%65y=v",
            &[],
        );
        assert_eq!(r.query_param("a").as_deref(), Some("1"), "first one wins");
        assert_eq!(r.query_param("name").as_deref(), Some("Jérôme L'H"));
        assert_eq!(r.query_param("plus").as_deref(), Some("+"));
        assert_eq!(r.query_param("bad").as_deref(), Some("100%zz%2"));
        assert_eq!(r.query_param("bin").as_deref(), Some("\u{FFFD}"));
        assert_eq!(r.query_param("flag").as_deref(), Some(""));
        assert_eq!(r.query_param("key").as_deref(), Some("v"));
        assert_eq!(r.query_param("missing"), None);
        assert_eq!(req("/ws", &[]).query_param("a"), None);
        assert_eq!(r.path(), "/ws");
    }

    #[test]
    fn cookies() {
        let r = req(
            "/",
            &[
                ("cookie", "theme=dark; session=abc123 ;quoted=\"q v\""),
                ("cookie", "late=1"),
            ],
        );
        assert_eq!(r.cookie("session"), Some("abc123"));
        assert_eq!(r.cookie("theme"), Some("dark"));
        assert_eq!(r.cookie("quoted"), Some("q v"));
        assert_eq!(r.cookie("late"), Some("1"));
        assert_eq!(r.cookie("sess"), None);
        assert_eq!(req("/", &[]).cookie("session"), None);
    }

    #[test]
    fn bearer_tokens() {
        let bearer = |v: &str| {
            req("/", &[("authorization", v)])
                .bearer_token()
                .map(str::to_owned)
        };
        assert_eq!(bearer("Bearer abc.def").as_deref(), Some("abc.def"));
        assert_eq!(bearer("bearer   abc").as_deref(), Some("abc"));
        assert_eq!(bearer("BEARER abc ").as_deref(), Some("abc"));
        assert_eq!(bearer("Basic dXNlcjpwdw=="), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(req("/", &[]).bearer_token(), None);
    }

    #[test]
    fn token_prefers_the_header_then_the_query() {
        let both = req(
            "/?token=from-query",
            &[("authorization", "Bearer from-header")],
        );
        assert_eq!(both.token().as_deref(), Some("from-header"));
        let query = req("/?token=a%2Bb", &[]);
        assert_eq!(query.token().as_deref(), Some("a+b"));
        assert_eq!(req("/?token=", &[]).token(), None);
        let subprotocol = req("/", &[("sec-websocket-protocol", "wshub.v1, secret")]);
        assert_eq!(subprotocol.token(), None);
    }

    #[test]
    fn debug_output_hides_secrets() {
        let r = req(
            "/ws?token=s3cret",
            &[
                ("authorization", "Bearer s3cret"),
                ("cookie", "session=s3cret"),
            ],
        )
        .with_peer_addr("127.0.0.1:9".parse().unwrap());
        let debug = format!("{r:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(
            debug.contains("authorization") && debug.contains("127.0.0.1:9"),
            "{debug}"
        );
        assert_eq!(r.peer_addr(), Some("127.0.0.1:9".parse().unwrap()));

        let tokens = StaticTokens::new().with("s3cret", Identity::new("u", "U"));
        assert!(!format!("{tokens:?}").contains("s3cret"));
    }

    #[test]
    fn from_http_request() {
        let http_req = http::Request::get("/ws?x=1")
            .header("authorization", "Bearer t")
            .body(())
            .unwrap();
        let r = AuthRequest::from_request(&http_req);
        assert_eq!(r.method(), Method::GET);
        assert_eq!(r.query(), Some("x=1"));
        assert_eq!(r.header("authorization"), Some("Bearer t"));
        assert_eq!(r.uri().path(), "/ws");
        assert_eq!(r.headers().len(), 1);
    }
}
