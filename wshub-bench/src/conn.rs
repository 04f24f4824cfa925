//! Connecting to the server under test.
//!
//! The client is tokio-tungstenite, not wshub's own engine: a generator built on the
//! engine it measures could share its bugs (a frame both sides get wrong the same way
//! passes unnoticed), and the comparison with other servers (issue 12, item 2) needs a
//! generator that belongs to none of them. The price is tungstenite's own CPU cost,
//! which the report shows as the generator's CPU time.
//!
//! One exception: tungstenite 0.30 has no permessage-deflate (its pull request #426 is
//! still open), so a connection that must negotiate compression (`--deflate`) is
//! opened with wshub's engine client ([`wshub::ws::client_handshake`]), the one
//! client in this repository that speaks RFC 7692. Only the receiving side of the
//! compression scenario uses it; publishers stay on tungstenite.
//!
//! Three protocols ride on the WebSocket ([`Proto`]): `wshub.v1`, plain WebSocket
//! (the payload is the message, as the seeds' `ws` broadcast server and the
//! tokio-tungstenite peer expect) and Socket.IO (engine.io v4 over websocket).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as TMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// How long opening one connection (TCP and handshake), or joining, may take: a
/// server that never answers fails the connection instead of hanging the run.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The byte stream under a WebSocket: TCP, or TLS over TCP for `wss://`.
#[derive(Debug)]
pub enum Io {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://` (rustls); boxed, the TLS state is large.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A tungstenite client WebSocket (the generator's usual client).
pub type TungWs = WebSocketStream<Io>;

/// A client WebSocket: tungstenite, or wshub's engine when permessage-deflate must be
/// negotiated (see the module docs).
#[derive(Debug)]
// Unboxed tungstenite: the common case, one per connection, and the generator's own
// memory is not what a run measures.
#[allow(clippy::large_enum_variant)]
pub enum Ws {
    /// tokio-tungstenite.
    Tung(TungWs),
    /// wshub's engine client, with permessage-deflate offered.
    Engine(Box<wshub::ws::WebSocket<Io>>),
}

/// What [`Ws::recv`] returns.
#[derive(Debug)]
pub enum Incoming {
    /// A text message (valid UTF-8: both clients check).
    Text(Text),
    /// A binary message.
    Binary(Bytes),
    /// The server closed the connection; why, for the report.
    Close(String),
    /// A control frame or anything else the scenarios ignore.
    Other,
}

/// A received text message, without copying it out of the client's buffer.
#[derive(Debug)]
pub struct Text(Bytes);

impl Text {
    /// The text's bytes, for looking at without checking the UTF-8 again.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Both clients validated the UTF-8 already; checking again costs less than a
        // copy and needs no `unsafe`.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

/// Converts what tungstenite received.
pub fn from_tung(
    msg: Option<Result<TMessage, tokio_tungstenite::tungstenite::Error>>,
) -> Option<anyhow::Result<Incoming>> {
    Some(Ok(match msg? {
        Ok(TMessage::Text(t)) => Incoming::Text(Text(Bytes::from(t))),
        Ok(TMessage::Binary(b)) => Incoming::Binary(b),
        Ok(TMessage::Close(frame)) => Incoming::Close(format!("{frame:?}")),
        Ok(_) => Incoming::Other,
        Err(e) => return Some(Err(e.into())),
    }))
}

impl Ws {
    /// Sends a text message.
    pub async fn send_text(&mut self, text: String) -> anyhow::Result<()> {
        match self {
            Ws::Tung(ws) => ws.send(TMessage::text(text)).await?,
            Ws::Engine(ws) => ws.send(wshub::ws::Message::text(text)).await?,
        }
        Ok(())
    }

    /// Sends a binary message.
    pub async fn send_binary(&mut self, data: Vec<u8>) -> anyhow::Result<()> {
        match self {
            Ws::Tung(ws) => ws.send(TMessage::binary(data)).await?,
            Ws::Engine(ws) => ws.send(wshub::ws::Message::binary(data)).await?,
        }
        Ok(())
    }

    /// The next message; `None` at the end of the stream.
    pub async fn recv(&mut self) -> Option<anyhow::Result<Incoming>> {
        match self {
            Ws::Tung(ws) => from_tung(ws.next().await),
            Ws::Engine(ws) => match ws.recv().await {
                Ok(Some(wshub::ws::Message::Text(t))) => {
                    Some(Ok(Incoming::Text(Text(Bytes::from(t)))))
                }
                Ok(Some(wshub::ws::Message::Binary(b))) => Some(Ok(Incoming::Binary(b))),
                Ok(None) => Some(Ok(Incoming::Close(format!("{:?}", ws.peer_close())))),
                Err(e) => Some(Err(e.into())),
            },
        }
    }

    /// Closes the connection (a close frame, then waiting briefly for the server's).
    pub async fn close(self) {
        match self {
            Ws::Tung(mut ws) => {
                let _ = ws.close(None).await;
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
                    while let Some(Ok(_)) = ws.next().await {}
                })
                .await;
            }
            Ws::Engine(ws) => {
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(1),
                    ws.close(wshub::ws::CloseCode::Normal, ""),
                )
                .await;
            }
        }
    }

    /// Whether permessage-deflate was negotiated.
    pub fn compressed(&self) -> bool {
        matches!(self, Ws::Engine(ws) if ws.deflate().is_some())
    }

    /// The tungstenite connection, for splitting into a sink and a stream (publishers
    /// and echo senders never negotiate compression, so they are always tungstenite).
    pub fn into_tung(self) -> anyhow::Result<TungWs> {
        match self {
            Ws::Tung(ws) => Ok(ws),
            Ws::Engine(_) => bail!("a compressed connection cannot be split"),
        }
    }
}

/// The application protocol the generator speaks over each WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Proto {
    /// `wshub.v1`: join a room, publish into it, receive `message` frames.
    #[default]
    Wshub,
    /// Plain WebSocket: every text message the server sends is a delivery; what is
    /// sent is the payload itself (a broadcast server relays it to every client).
    Plain,
    /// Socket.IO (engine.io v4 over websocket, default namespace): `42["msg",DATA]`
    /// events, the server relaying each to every socket; pings answered.
    #[value(name = "socketio")]
    SocketIo,
}

/// Where and how to connect: resolved once, shared by every connection.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given (`ws://` or `wss://host:port/path?query`).
    pub url: String,
    /// The resolved server address.
    pub addr: SocketAddr,
    /// The host name, for TLS's server name.
    pub host: String,
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
    /// The protocol spoken over the WebSocket.
    pub proto: Proto,
    /// Offer permessage-deflate on receiving connections (wshub's engine client; see
    /// the module docs).
    pub deflate: bool,
    /// For `wss://`: the TLS client configuration (trusting `--ca-file`).
    pub tls: Option<Tls>,
}

/// A TLS connector (a newtype: tokio-rustls's has no `Debug`).
#[derive(Clone)]
pub struct Tls(pub TlsConnector);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(..)")
    }
}

impl Target {
    /// Resolves `url` (`ws://`, or `wss://` with [`Target::tls`] set afterwards by
    /// [`Target::trust`]).
    pub async fn resolve(url: &str) -> anyhow::Result<Target> {
        let uri: Uri = url.parse().with_context(|| format!("bad URL {url:?}"))?;
        let default_port = match uri.scheme_str() {
            Some("ws") => 80,
            Some("wss") => 443,
            _ => bail!("only ws:// and wss:// URLs are supported: {url}"),
        };
        let host = uri.host().context("URL without a host")?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(default_port);
        let addr = tokio::net::lookup_host((host, port))
            .await?
            .next()
            .with_context(|| format!("{host} did not resolve"))?;
        Ok(Target {
            url: url.to_owned(),
            addr,
            host: host.to_owned(),
            source_ips: 16,
            subprotocol: None,
            token: None,
            token_in_header: false,
            jwt_secret: None,
            proto: Proto::Wshub,
            deflate: false,
            tls: None,
        })
    }

    /// Trusts the certificates in `ca_pem` (PEM) for `wss://`: a self-signed
    /// certificate, or the CA of a test deployment.
    pub fn trust(&mut self, ca_pem: &[u8]) -> anyhow::Result<()> {
        let config = wshub::tls::client_config_trusting(ca_pem)?;
        self.tls = Some(Tls(TlsConnector::from(Arc::new(config))));
        Ok(())
    }

    fn secure(&self) -> bool {
        self.url.starts_with("wss://")
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

    /// Opens connection `index`: TCP (bound to its source address), TLS for `wss://`,
    /// then the WebSocket handshake with the subprotocol and token (offering
    /// permessage-deflate when [`deflate`](Self::deflate) is set), within
    /// [`CONNECT_TIMEOUT`]. A Socket.IO connection also completes the engine.io open
    /// and the namespace connect.
    pub async fn connect(&self, index: usize) -> anyhow::Result<Ws> {
        self.connect_with(index, self.deflate).await
    }

    /// [`connect`](Self::connect), always over tungstenite without compression: for
    /// the connections that are split into a sink and a stream (publishers).
    pub async fn connect_plain(&self, index: usize) -> anyhow::Result<TungWs> {
        self.connect_with(index, false).await?.into_tung()
    }

    async fn connect_with(&self, index: usize, deflate: bool) -> anyhow::Result<Ws> {
        tokio::time::timeout(CONNECT_TIMEOUT, async {
            let mut ws = self.connect_inner(index, deflate).await?;
            if self.proto == Proto::SocketIo {
                crate::socketio::open(&mut ws).await?;
            }
            Ok(ws)
        })
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

    async fn connect_inner(&self, index: usize, deflate: bool) -> anyhow::Result<Ws> {
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
        let io = if self.secure() {
            let tls = self
                .tls
                .as_ref()
                .context("wss:// needs --ca-file (the certificate to trust)")?;
            let name = ServerName::try_from(self.host.clone())?;
            Io::Tls(Box::new(
                tls.0.connect(name, stream).await.context("TLS handshake")?,
            ))
        } else {
            Io::Plain(stream)
        };

        let token = self.token_for(index)?;
        let url = match (&token, self.token_in_header) {
            (Some(t), false) => {
                let sep = if self.url.contains('?') { '&' } else { '?' };
                format!("{}{sep}token={}", self.url, t)
            }
            _ => self.url.clone(),
        };
        let bearer = match (&token, self.token_in_header) {
            (Some(t), true) => Some(HeaderValue::from_str(&format!("Bearer {t}"))?),
            _ => None,
        };
        if deflate {
            let mut cfg = wshub::ClientConfig::default().with_deflate(true);
            if let Some(p) = &self.subprotocol {
                cfg = cfg.with_subprotocols([p.clone()]);
            }
            if let Some(b) = bearer {
                cfg = cfg.with_header(http::header::AUTHORIZATION, b);
            }
            let (ws, _resp) =
                wshub::ws::client_handshake(io, &url, &cfg, wshub::WsConfig::default())
                    .await
                    .context("WebSocket handshake")?;
            return Ok(Ws::Engine(Box::new(ws)));
        }
        let mut req = url.into_client_request()?;
        if let Some(p) = &self.subprotocol {
            req.headers_mut()
                .insert("sec-websocket-protocol", HeaderValue::from_str(p)?);
        }
        if let Some(b) = bearer {
            req.headers_mut().insert("authorization", b);
        }
        // tungstenite zero-fills its read buffer up to `read_buffer_size` before every
        // read (128 KiB by default): a memset per read that a generator receiving
        // millions of small frames pays for on its one core. 16 KiB still takes a
        // burst's coalesced frames in few reads.
        let config = WebSocketConfig::default().read_buffer_size(16 * 1024);
        let (ws, _resp) = tokio_tungstenite::client_async_with_config(req, io, Some(config))
            .await
            .context("WebSocket handshake")?;
        Ok(Ws::Tung(ws))
    }
}

/// What kind of failure ended a connection attempt, for counting failures by kind: the
/// HTTP status when the server refused the upgrade (`401`, `429`, `503`...), else
/// `timeout`, `refused` (nothing listening), `connect_error` (a Socket.IO server refused
/// the namespace connect), `io` or `other`.
pub fn failure_kind(e: &anyhow::Error) -> String {
    use tokio_tungstenite::tungstenite::Error as WsError;
    for cause in e.chain() {
        if let Some(WsError::Http(resp)) = cause.downcast_ref::<WsError>() {
            return resp.status().as_u16().to_string();
        }
        if let Some(wshub::error::HandshakeError::Refused(why)) =
            cause.downcast_ref::<wshub::error::HandshakeError>()
        {
            // "HTTP 401 Unauthorized": the status, as tungstenite's refusals give it.
            if let Some(code) = why.strip_prefix("HTTP ").and_then(|s| s.get(..3)) {
                return code.to_owned();
            }
        }
        if cause.is::<crate::socketio::ConnectError>() {
            return "connect_error".into();
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
