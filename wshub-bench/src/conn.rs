//! Connecting to the server under test.
//!
//! The client is tokio-tungstenite, not wshub's own engine: a generator built on the
//! engine it measures could share its bugs (a frame both sides get wrong the same way
//! passes unnoticed), and the comparison with other servers (issue 12, item 2) needs a
//! generator that belongs to none of them. The price is tungstenite's own CPU cost,
//! which the report shows as the generator's CPU time.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Context, bail};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri};

/// How long opening one connection (TCP and handshake), or joining, may take: a
/// server that never answers fails the connection instead of hanging the run.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A client WebSocket over plain TCP (the generator speaks ws:// only for now).
pub type Ws = WebSocketStream<TcpStream>;

/// Where and how to connect: resolved once, shared by every connection.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given (`ws://host:port/path?query`).
    pub url: String,
    /// The resolved server address.
    pub addr: SocketAddr,
    /// How many loopback source addresses to spread connections over (127.0.0.1 to
    /// 127.0.0.N). Linux picks a bound socket's ephemeral port per source address, so
    /// N addresses give N times the ~28,000 ports of one. Used only when the server is
    /// on loopback; 0 or 1 binds nothing.
    pub source_ips: u8,
    /// The `Sec-WebSocket-Protocol` to offer (`wshub.v1`), if any.
    pub subprotocol: Option<String>,
    /// A token for every connection: `{i}` in it becomes the connection's index, for
    /// tables of per-user tokens.
    pub token: Option<String>,
    /// Whether the token goes in `Authorization: Bearer` (else `?token=`).
    pub token_in_header: bool,
    /// An HS256 secret: when set, every connection sends a token minted for it
    /// (`sub`, `name` and `sid` `bench-{i}`, valid for an hour) instead of [`token`](Self::token), so the
    /// server pays a signature check per connection as it would with real logins.
    pub jwt_secret: Option<String>,
}

impl Target {
    /// Resolves `url` (ws:// only).
    pub async fn resolve(url: &str) -> anyhow::Result<Target> {
        let uri: Uri = url.parse().with_context(|| format!("bad URL {url:?}"))?;
        if uri.scheme_str() != Some("ws") {
            bail!("only ws:// URLs are supported for now: {url}");
        }
        let host = uri.host().context("URL without a host")?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((host, port))
            .await?
            .next()
            .with_context(|| format!("{host} did not resolve"))?;
        Ok(Target {
            url: url.to_owned(),
            addr,
            source_ips: 16,
            subprotocol: None,
            token: None,
            token_in_header: false,
            jwt_secret: None,
        })
    }

    /// The source address of connection `index`: 127.0.0.(1 + index mod N) when the
    /// server is on IPv4 loopback and N > 1.
    pub fn source_addr(&self, index: usize) -> Option<SocketAddr> {
        match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_loopback() && self.source_ips > 1 => {
                let last = 1 + (index % usize::from(self.source_ips)) as u8;
                Some(SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)),
                    0,
                ))
            }
            _ => None,
        }
    }

    /// Opens connection `index`: TCP (bound to its source address), then the
    /// WebSocket handshake with the subprotocol and token, within [`CONNECT_TIMEOUT`].
    pub async fn connect(&self, index: usize) -> anyhow::Result<Ws> {
        tokio::time::timeout(CONNECT_TIMEOUT, self.connect_inner(index))
            .await
            .context("no handshake within 10 s")?
    }

    /// The token connection `index` sends: minted with [`jwt_secret`](Self::jwt_secret),
    /// or [`token`](Self::token) with `{i}` replaced.
    pub fn token_for(&self, index: usize) -> anyhow::Result<Option<String>> {
        if let Some(secret) = &self.jwt_secret {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            // `name` equal to `sub` and a `sid`, as the chat example's tokens carry
            // (its user id is the lower-cased name; `sid` says who holds the name):
            // other verifiers ignore claims they do not know.
            let user = format!("bench-{index}");
            let claims = serde_json::json!({
                "sub": user,
                "name": user,
                "sid": user,
                "iat": now,
                "exp": now + 3600,
            });
            let token = jsonwebtoken::encode(
                &jsonwebtoken::Header::default(),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
            )?;
            return Ok(Some(token));
        }
        Ok(self
            .token
            .as_ref()
            .map(|t| t.replace("{i}", &index.to_string())))
    }

    async fn connect_inner(&self, index: usize) -> anyhow::Result<Ws> {
        let socket = if self.addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(src) = self.source_addr(index) {
            socket
                .bind(src)
                .with_context(|| format!("binding to {src}"))?;
        }
        let stream = socket
            .connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        stream.set_nodelay(true)?;

        let token = self.token_for(index)?;
        let url = match (&token, self.token_in_header) {
            (Some(t), false) => {
                let sep = if self.url.contains('?') { '&' } else { '?' };
                format!("{}{sep}token={}", self.url, t)
            }
            _ => self.url.clone(),
        };
        let mut req = url.into_client_request()?;
        if let Some(p) = &self.subprotocol {
            req.headers_mut()
                .insert("sec-websocket-protocol", HeaderValue::from_str(p)?);
        }
        if let (Some(t), true) = (&token, self.token_in_header) {
            req.headers_mut().insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {t}"))?,
            );
        }
        let (ws, _resp) = tokio_tungstenite::client_async(req, stream)
            .await
            .context("WebSocket handshake")?;
        Ok(ws)
    }
}

/// What kind of failure ended a connection attempt, for counting failures by kind: the
/// HTTP status when the server refused the upgrade (`401`, `429`, `503`...), else
/// `timeout`, `refused` (nothing listening), `io` or `other`.
pub fn failure_kind(e: &anyhow::Error) -> String {
    use tokio_tungstenite::tungstenite::Error as WsError;
    for cause in e.chain() {
        if let Some(WsError::Http(resp)) = cause.downcast_ref::<WsError>() {
            return resp.status().as_u16().to_string();
        }
        if cause.is::<tokio::time::error::Elapsed>() {
            return "timeout".into();
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "refused".into(),
                _ => "io".into(),
            };
        }
    }
    "other".into()
}
