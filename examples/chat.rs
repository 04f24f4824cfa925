//! Browser chat: sign-in with a signed token, rooms, presence, typing indicators and
//! automatic reconnection, over ws:// or wss://.
//!
//! ```text
//! cargo run --example chat                          # http://127.0.0.1:8080/
//! cargo run --example chat -- --port 9000           # or PORT=9000
//! cargo run --example chat -- --tls                 # https://, self-signed certificate
//! cargo run --example chat -- --cert cert.pem --key key.pem
//! cargo run --example chat -- --log-format json     # JSON logs; RUST_LOG=wshub=debug for more
//! CHAT_MAX_CONNECTIONS_PER_IP=19000 cargo run --example chat  # load tests from one host
//!                                                   # (also lifts the per-network and total caps)
//! cargo run --example chat -- --redis redis://127.0.0.1:6379/ --port 9001
//!                                                   # one node of a cluster: deploy/cluster.sh
//! CHAT_PRESENCE_TTL_MS=1000 cargo run --example chat -- --redis ...
//!                                                   # a dead node's users leave within ~1.3 s
//! ```
//!
//! Open the printed URL in two windows (a normal and a private one make two users),
//! pick a name in each and chat. Stop the server and start it again: the pages come
//! back by themselves. With `--tls` the certificate is written to a file whose path is
//! printed: trust it, or accept the browser's warning once.
//!
//! One port serves everything (`Hub::serve_axum`, the hub on `Hub::axum_route`):
//!
//! | route | what |
//! | --- | --- |
//! | `GET /` | the page (`examples/chat/`: HTML, CSS and JS compiled in) |
//! | `GET /wshub.js` | the browser client (`clients/wshub.js`) |
//! | `POST /login` | `{"name": "Alice"}` -> `{"token", "user", "name", "expires_at"}`, or 400 `{"error", "field"}` (a refused name), 409 (taken), 503 (too many names held) |
//! | `GET /session?token=T` | 200 `{"user", "name", "expires_at"}` or 401 `{"error"}`: why a handshake was refused |
//! | `GET /ws?token=T` | the hub; a missing, forged or expired token gets 401 instead of a WebSocket |
//! | `GET /metrics` | the hub's Prometheus metrics (`Hub::metrics_route`); `deploy/prometheus.yml` scrapes it, `deploy/grafana/wshub.json` charts it |
//!
//! Tokens are HS256 JWTs valid 12 hours, signed with `CHAT_SECRET` if set, else with a
//! random key made at start. The user id is the display name in lower case, so the
//! same name in two tabs is one user: it appears once in the online list and leaves
//! when its last tab closes.
//!
//! Display names (`examples/chat/names.rs`) are NFKC-normalised and trimmed, 1 to 32
//! characters of one script: letters, digits, single spaces and `-` `_` `.` `'`.
//! Invisible, control and bidi characters, look-alikes mixed in from another script
//! and leftover combining accents are refused with a 400 saying which rule the name
//! broke; so are reserved names ("admin", "system", "server"... in any case or
//! look-alike spelling). A name is held, with the names that look like it ("Alice",
//! "AIice", Cyrillic "аlice"), until the last token issued for it expires: anyone
//! else gets 409 meanwhile. Its holder keeps it by presenting one of its valid tokens
//! when signing in again: `POST /login` sets it as an HttpOnly cookie (path `/login`),
//! so another tab of the same browser gets the name back, and an API client may send
//! it as `"token"` in the body. A restarted server (same `CHAT_SECRET`) learns who
//! holds which name again from the tokens that come back. At most
//! [`ChatOptions::max_names`] names are held; past that, logins get 503 until some
//! expire.
//!
//! Rooms are `chat:NAME` and carry [`ChatEvent`]s: `{"kind": "text", "text": ..}`
//! (1 to 2,000 characters; the server stamps the sender's name and the time) and
//! `{"kind": "typing"}`, sent with `ephemeral: true`, which the page shows for 3
//! seconds.
//!
//! Rooms keep the hub's default history (a room's last 100 messages, for 10 minutes;
//! typing indicators are never kept). The page joins each room asking for its last 50
//! messages, so a reload or a second tab shows the conversation so far. After a
//! reconnect it gets exactly the messages it missed (`PROTOCOL.md` section 9); if the
//! server cannot send them (it restarted, or too many were missed), the room's list
//! says "some messages may be missing" and shows the recent messages again.
//!
//! One RPC, `rooms.list` (`{"op": "call", "method": "rooms.list", "id": N}`), answers
//! the rooms that have people in them, `[{"room": "chat:lobby", "users": 3}, ..]`; the
//! page shows them in its "Rooms with people" panel, refreshed when it connects, every
//! 5 seconds and when someone comes or goes in a joined room.

// Public for the tests that include this file (`tests/logs_json.rs` sets up logging
// as `main` does).
#[path = "common/mod.rs"]
pub mod common;
#[path = "chat/names.rs"]
pub mod names;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use wshub::{
    Action, AuthRejection, AuthRequest, Authenticator, Hub, Identity, Namespace, Refusal,
    RpcContext, RpcError,
};

use common::{ApiError, asset};
pub use common::{LogFormat, TlsChoice, TlsInfo};
use names::{ClaimError, NameKeys, NameRegistry};

/// The room every user starts in.
pub const DEFAULT_ROOM: &str = "chat:lobby";
/// Longest chat message, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;
/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = names::MAX_NAME_CHARS;
/// Longest room name after `chat:`, in characters.
pub const MAX_ROOM_CHARS: usize = 32;

/// What travels in `chat:*` rooms, tagged by `kind` on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChatEvent {
    /// A message. Clients send `{"kind": "text", "text": "hi"}`; the publish hook fills
    /// in `name` and `at` from the server's side, so neither can be forged.
    Text {
        /// The message, trimmed, 1 to 2,000 characters.
        text: String,
        /// The sender's display name (from their token).
        #[serde(default)]
        name: String,
        /// When the server accepted it, in milliseconds since the Unix epoch.
        #[serde(default)]
        at: u64,
    },
    /// "I am typing": published with `ephemeral: true`, shown by the others for a few
    /// seconds.
    Typing {
        /// The typist's display name (from their token).
        #[serde(default)]
        name: String,
    },
}

/// The chat's [`Authenticator`], written the way an application would: `POST /login`
/// issues an HS256 token for a display name, and the WebSocket presents it in
/// `?token=` (browsers cannot set headers on a WebSocket; a bearer header works too).
///
/// Cheap to clone.
#[derive(Clone)]
pub struct ChatAuth(Arc<AuthKeys>);

struct AuthKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    /// Who holds which display name, until their last token expires.
    names: NameRegistry,
}

impl std::fmt::Debug for ChatAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ChatAuth")
            .field("ttl", &self.0.ttl)
            .finish_non_exhaustive()
    }
}

/// The claims of a chat token.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// User id: the display name in lower case.
    sub: String,
    /// Display name, normalised ([`names::normalize`]).
    name: String,
    /// Who holds the name: a random id, kept by the tokens a holder gets when they
    /// sign in again with a valid token ([`names`] registry owner).
    sid: String,
    /// Expiry, seconds since the Unix epoch.
    exp: u64,
    /// Issued at.
    iat: u64,
}

/// What `POST /login` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    /// The token for `?token=`.
    pub token: String,
    /// The user id (the name in lower case).
    pub user: String,
    /// The display name.
    pub name: String,
    /// When the token expires, in seconds since the Unix epoch.
    pub expires_at: u64,
}

impl ChatAuth {
    /// Signs and verifies with `secret`; tokens live for `ttl`; at most
    /// [`names::DEFAULT_MAX_NAMES`] names are held.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        Self::with_max_names(secret, ttl, names::DEFAULT_MAX_NAMES)
    }

    /// [`ChatAuth::new`], holding at most `max_names` display names.
    pub fn with_max_names(secret: &[u8], ttl: Duration, max_names: usize) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        // The hub closes a connection when its token expires, on its own clock.
        validation.leeway = 0;
        ChatAuth(Arc::new(AuthKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
            names: NameRegistry::new(max_names),
        }))
    }

    /// Issues a token for display name `name`, or says why not: 400 for a name that
    /// [`names::normalize`] refuses, 409 if someone else holds it (or one like it),
    /// 503 if too many names are held.
    pub fn login(&self, name: &str) -> Result<Login, ApiError> {
        self.login_with(name, None::<&str>)
    }

    /// [`ChatAuth::login`] by someone who may hold the name already: the first of
    /// `tokens` that is valid proves who they are, and they keep their names.
    pub fn login_with<'a>(
        &self,
        name: &str,
        tokens: impl IntoIterator<Item = &'a str>,
    ) -> Result<Login, ApiError> {
        let name = names::normalize(name).map_err(|e| ApiError::field("name", e.to_string()))?;
        let sid = tokens
            .into_iter()
            .find_map(|token| self.decode(token).ok())
            .map_or_else(|| format!("{:032x}", rand::random::<u128>()), |c| c.sid);
        let now = unix_now();
        let exp = now + self.0.ttl.as_secs();
        self.0
            .names
            .claim(&NameKeys::of(&name), &sid, exp, now)
            .map_err(|e| match e {
                ClaimError::Taken => ApiError {
                    status: StatusCode::CONFLICT,
                    message: format!(
                        "the name \"{name}\" is taken (or looks like one that is): pick another"
                    ),
                    field: Some("name"),
                },
                ClaimError::Full => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many names are in use: try again later",
                ),
            })?;
        let claims = Claims {
            sub: user_id(&name),
            name,
            sid,
            exp,
            iat: now,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.0.encoding)
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot sign a token: {e}"),
                )
            })?;
        Ok(Login {
            token,
            user: claims.sub,
            name: claims.name,
            expires_at: claims.exp,
        })
    }

    /// Checks a token's signature and expiry and returns who it names.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthRejection> {
        let claims = self.decode(token)?;
        // A server restarted with the same key has forgotten who holds which name:
        // the holder's token takes its name back, unless someone else (with a name
        // that looks the same) got there first. A full registry refuses no valid
        // token; the name is then just not held.
        let keys = NameKeys::of(&claims.name);
        if self
            .0
            .names
            .claim(&keys, &claims.sid, claims.exp, unix_now())
            == Err(ClaimError::Taken)
        {
            return Err(AuthRejection::Unauthorized(
                "this name is now held by someone else: sign in again".into(),
            ));
        }
        Ok(Identity::new(claims.sub, claims.name)
            .with_expiry(UNIX_EPOCH + Duration::from_secs(claims.exp)))
    }

    /// The claims of a token with a valid signature that has not expired.
    fn decode(&self, token: &str) -> Result<Claims, AuthRejection> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.0.decoding, &self.0.validation)
            .map_err(|e| {
                AuthRejection::Unauthorized(match e.kind() {
                    ErrorKind::ExpiredSignature => "token expired".into(),
                    _ => "invalid token".into(),
                })
            })?
            .claims;
        // jsonwebtoken compares whole seconds; the hub expires a connection at the
        // `exp` instant itself. Judge like the hub so that `/session` never accepts a
        // token the handshake refuses.
        if UNIX_EPOCH + Duration::from_secs(claims.exp) <= SystemTime::now() {
            return Err(AuthRejection::Unauthorized("token expired".into()));
        }
        Ok(claims)
    }
}

impl Authenticator for ChatAuth {
    async fn authenticate(&self, req: &AuthRequest) -> Result<Identity, AuthRejection> {
        let token = req
            .token()
            .ok_or_else(|| AuthRejection::Unauthorized("missing token".into()))?;
        self.verify(&token)
    }

    /// Rooms are created by joining them: only well-formed names (which the page shows
    /// to everyone) may be. A refusal is a `forbidden` reply.
    fn authorize(&self, _identity: &Identity, room: &str, _action: Action) -> bool {
        room.strip_prefix("chat:").is_some_and(valid_room_id)
    }
}

/// The user id of a display name: its lower case, so "Alice" and "alice" are one user.
pub fn user_id(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether `id` (the part after `chat:`) is a room name the chat accepts: 1 to 32 of
/// `a-z`, `0-9`, `-` and `_`.
pub fn valid_room_id(id: &str) -> bool {
    (1..=MAX_ROOM_CHARS).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Most rooms `rooms.list` returns (the busiest): a bounded reply, well under the
/// hub's `max_rpc_response`, and as many as a side panel can show.
pub const MAX_LISTED_ROOMS: usize = 50;

/// One entry of the `rooms.list` RPC's response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomWithPeople {
    /// The room's full name, `chat:NAME`.
    pub room: String,
    /// How many users are in it (a user with two tabs counts once).
    pub users: usize,
}

/// The `rooms.list` RPC: the chat rooms that have people in them, busiest first (then
/// by name), at most [`MAX_LISTED_ROOMS`]. Takes no request (`data` absent or `null`).
async fn rooms_list(ctx: RpcContext, _: ()) -> Result<Vec<RoomWithPeople>, RpcError> {
    let mut rooms: Vec<RoomWithPeople> = ctx
        .hub()
        .rooms()
        .into_iter()
        .filter(|r| r.namespace == "chat" && r.connections > 0)
        .map(|r| RoomWithPeople {
            users: r.users.unwrap_or(r.connections),
            room: r.name,
        })
        .collect();
    rooms.sort_by(|a, b| b.users.cmp(&a.users).then_with(|| a.room.cmp(&b.room)));
    rooms.truncate(MAX_LISTED_ROOMS);
    Ok(rooms)
}

/// The chat namespace: messages are checked and stamped by the publish hook.
fn chat_namespace() -> Namespace<ChatEvent> {
    Namespace::<ChatEvent>::new("chat")
        // 2,000 characters of up to 4 bytes, escaped: well under this.
        .max_payload(16 * 1024)
        .on_publish(|ctx, event| match event {
            ChatEvent::Text { text, .. } => {
                let text = text.trim();
                if text.is_empty() {
                    return Err(Refusal::invalid("empty message"));
                }
                if text.chars().count() > MAX_TEXT_CHARS {
                    return Err(Refusal::invalid(format!(
                        "messages are at most {MAX_TEXT_CHARS} characters"
                    )));
                }
                Ok(ChatEvent::Text {
                    text: text.to_owned(),
                    name: ctx.identity.name.clone(),
                    at: common::now_ms(),
                })
            }
            ChatEvent::Typing { .. } => Ok(ChatEvent::Typing {
                name: ctx.identity.name.clone(),
            }),
        })
}

/// How to run the chat.
#[derive(Debug, Clone)]
pub struct ChatOptions {
    /// Address [`main`] listens on (default 127.0.0.1); [`start`] serves the listener
    /// it is given.
    pub host: IpAddr,
    /// Port [`main`] listens on (default 8080, `PORT` or `--port`).
    pub port: u16,
    /// `Some` to serve https/wss.
    pub tls: Option<TlsChoice>,
    /// Key for signing tokens (`CHAT_SECRET`). `None`: 32 random bytes made once per
    /// process, so a server restarted in the same process still accepts its tokens
    /// (a new process does not: the page then signs in again by itself).
    pub secret: Option<Vec<u8>>,
    /// How long a token is valid. Default 12 hours; the hub closes a connection (1008)
    /// when its token expires, and the page signs in again.
    pub token_ttl: Duration,
    /// How many display names may be held at once (each until its last token
    /// expires). Default [`names::DEFAULT_MAX_NAMES`] (10,000, the hub's default
    /// connection cap): a few MB at most; past it, `POST /login` answers 503.
    pub max_names: usize,
    /// Most WebSocket connections from one host (`CHAT_MAX_CONNECTIONS_PER_IP`). `None`
    /// (the default) keeps the hub's per-host limits, which are right for a real
    /// deployment. Only for load tests (`benches/soak.rs`), whose clients all come from
    /// 127.0.0.1: `Some(n)` also lifts the other per-host limits (message rate,
    /// connections in their handshake) and the per-host sign-in limit, which would
    /// otherwise refuse such a load; and, when `n` is larger, the per-network
    /// (1,000) and total (10,000) connection caps, so that a load generator spreading
    /// its connections over 127.0.0.x (one /24 network) can hold `n` of them.
    pub max_connections_per_ip: Option<usize>,
    /// How the server logs (`--log-format`); [`main`] sets up logging with it.
    /// Default text.
    pub log_format: LogFormat,
    /// How often the hub pings every connection. `None` (the default) keeps the hub's
    /// 25 s; tests shorten it to see pings' round trips in the metrics.
    pub ping_interval: Option<Duration>,
    /// `--redis URL`: one node of a cluster on that Redis (a backplane, keys under
    /// the example's own prefix). Default none: a single process.
    pub redis: Option<String>,
    /// `--trusted-proxy CIDR`: proxies whose `X-Forwarded-For` is believed
    /// (`deploy/`). Default none.
    pub trusted_proxies: Vec<String>,
    /// With `--redis`, how long this node's presence entries outlive it if it dies
    /// without a goodbye (`CHAT_PRESENCE_TTL_MS`; `RedisOptions::presence_ttl`). `None`
    /// (the default) keeps the backplane's 15 s; tests shorten it to see a killed
    /// node's users leave within about a second.
    pub presence_ttl: Option<Duration>,
    /// Rooms with more users than this are big (counts and pages, `PROTOCOL.md`
    /// section 6), and the most users in one page of a member list. `None` (the
    /// default) keeps the hub's 200 and 100; tests shrink them to see a big room with
    /// a few browsers.
    pub big_room: Option<(usize, usize)>,
}

impl Default for ChatOptions {
    fn default() -> Self {
        ChatOptions {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8080,
            tls: None,
            secret: None,
            token_ttl: Duration::from_secs(12 * 60 * 60),
            max_names: names::DEFAULT_MAX_NAMES,
            max_connections_per_ip: None,
            log_format: LogFormat::Text,
            ping_interval: None,
            redis: None,
            trusted_proxies: Vec::new(),
            presence_ttl: None,
            big_room: None,
        }
    }
}

impl ChatOptions {
    /// Options from the command line (`--port`, `--host`, `--tls`, `--cert`, `--key`)
    /// and the environment (`PORT`, `CHAT_SECRET`, `CHAT_MAX_CONNECTIONS_PER_IP`,
    /// `CHAT_PRESENCE_TTL_MS`). Exits with a message if `CHAT_MAX_CONNECTIONS_PER_IP` or
    /// `CHAT_PRESENCE_TTL_MS` is not a positive number.
    pub fn from_env() -> Self {
        let flags = common::Flags::from_env("chat", 8080);
        let max_connections_per_ip = std::env::var("CHAT_MAX_CONNECTIONS_PER_IP")
            .ok()
            .filter(|s| !s.is_empty())
            .map(|s| match s.parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => {
                    eprintln!("chat: CHAT_MAX_CONNECTIONS_PER_IP={s} is not a positive number");
                    std::process::exit(2);
                }
            });
        let presence_ttl = std::env::var("CHAT_PRESENCE_TTL_MS")
            .ok()
            .filter(|s| !s.is_empty())
            .map(|s| match s.parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => {
                    eprintln!("chat: CHAT_PRESENCE_TTL_MS={s} is not a positive number");
                    std::process::exit(2);
                }
            });
        ChatOptions {
            host: flags.host,
            port: flags.port,
            tls: flags.tls,
            secret: std::env::var("CHAT_SECRET")
                .ok()
                .filter(|s| !s.is_empty())
                .map(String::into_bytes),
            max_connections_per_ip,
            log_format: flags.log_format,
            redis: flags.redis,
            trusted_proxies: flags.trusted_proxies,
            presence_ttl,
            ..ChatOptions::default()
        }
    }

    fn secret(&self) -> Vec<u8> {
        static PROCESS_SECRET: OnceLock<[u8; 32]> = OnceLock::new();
        match &self.secret {
            Some(secret) => secret.clone(),
            None => PROCESS_SECRET.get_or_init(rand::random).to_vec(),
        }
    }
}

/// A running chat server, from [`start`].
#[derive(Debug)]
pub struct ChatServer {
    /// The hub: `hub.shutdown().await` stops the whole server (then await `task`).
    pub hub: Hub,
    /// Issues and checks tokens (`auth.login("alice")` gives a token, as `POST /login`).
    pub auth: ChatAuth,
    /// The address served.
    pub local_addr: SocketAddr,
    /// The certificate, when serving https.
    pub tls: Option<TlsInfo>,
    /// Ends once the hub has begun shutting down, after the listener is dropped.
    pub task: JoinHandle<io::Result<()>>,
}

impl ChatServer {
    /// The page's URL: `http://127.0.0.1:PORT/` (or `https://`).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}/", self.local_addr)
    }

    /// The hub's URL, without the token: `ws://127.0.0.1:PORT/ws` (or `wss://`).
    pub fn ws_url(&self) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://{}/ws", self.local_addr)
    }

    /// Shuts the hub down (every WebSocket closed with 1001) and waits for the server
    /// to stop; the port can then be bound again.
    pub async fn shutdown(self) -> io::Result<()> {
        self.hub.shutdown().await;
        self.task.await.map_err(io::Error::other)?
    }
}

#[derive(Clone)]
struct AppState {
    auth: ChatAuth,
    /// Whether the login cookie gets `Secure` (served over https).
    secure_cookie: bool,
    /// Sign-ins per host (`None` for load tests from one host).
    signins: Option<Arc<SigninLimit>>,
}

/// How many names one host may sign in: a burst of [`SigninLimit::BURST`], then one
/// every [`SigninLimit::EVERY`]. Without it, one machine could hold every name the
/// registry allows (`max_names`) and lock everyone else out of signing in. Hosts are
/// grouped as the hub groups them (an IPv4 address, an IPv6 /64).
#[derive(Debug, Default)]
struct SigninLimit {
    /// Host -> (tokens left, when last counted). A std mutex held for a lookup.
    hosts: std::sync::Mutex<std::collections::HashMap<IpAddr, (f64, std::time::Instant)>>,
}

impl SigninLimit {
    const BURST: f64 = 20.0;
    const EVERY: Duration = Duration::from_secs(6);
    /// Hosts remembered at most; full buckets are forgotten first.
    const MAX_HOSTS: usize = 100_000;

    /// Takes one sign-in for `ip`'s host, if it has one left.
    fn take(&self, ip: IpAddr) -> bool {
        let host = wshub::AddrGrouping::default().host(ip);
        let now = std::time::Instant::now();
        let rate = 1.0 / Self::EVERY.as_secs_f64();
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if hosts.len() >= Self::MAX_HOSTS {
            hosts.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < Self::BURST
            });
            if hosts.len() >= Self::MAX_HOSTS {
                return false;
            }
        }
        let (tokens, at) = hosts.entry(host).or_insert((Self::BURST, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(Self::BURST);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Gives back the sign-in taken for a request that was refused: only names
    /// actually handed out count.
    fn refund(&self, ip: IpAddr) {
        let host = wshub::AddrGrouping::default().host(ip);
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((tokens, _)) = hosts.get_mut(&host) {
            *tokens = (*tokens + 1.0).min(Self::BURST);
        }
    }
}

/// Starts the chat on `listener` (port 0 is fine) and returns at once; the server runs
/// until its hub shuts down. Fails only if TLS cannot be set up.
pub async fn start(listener: TcpListener, options: ChatOptions) -> io::Result<ChatServer> {
    let auth = ChatAuth::with_max_names(&options.secret(), options.token_ttl, options.max_names);
    let mut builder = Hub::builder()
        .namespace(chat_namespace())
        .rpc("rooms.list", rooms_list)
        .authenticator(auth.clone());
    if let Some((users, page)) = options.big_room {
        builder = builder.configure(|c| {
            c.presence_big_room = users;
            c.presence_page_size = page;
        });
    }
    if let Some(interval) = options.ping_interval {
        builder = builder.configure(|c| c.ping_interval = interval);
    }
    if let Some(n) = options.max_connections_per_ip {
        builder = builder.configure(|c| {
            c.max_connections_per_ip = n;
            // 127.0.0.x is one /24: a generator spreading its source addresses over it
            // meets the per-network cap, then the total, before the per-host one.
            c.max_connections_per_network = c.max_connections_per_network.max(n);
            c.max_connections = c.max_connections.max(n);
            c.host_rate_per_second = f64::INFINITY;
            c.max_pending_per_host = c.max_pending_connections;
            c.max_pending_per_network = c.max_pending_connections;
        });
    }
    let builder = common::cluster_options(
        "chat",
        builder,
        options.redis.as_deref(),
        &options.trusted_proxies,
        "wshub-chat",
        options.presence_ttl,
    );
    let hub = builder.build();
    let app = Router::new()
        .route("/", get(|| async { asset(HTML, INDEX_HTML) }))
        .route("/style.css", get(|| async { asset(CSS, STYLE_CSS) }))
        .route("/app.js", get(|| async { asset(JS, APP_JS) }))
        .route("/wshub.js", get(|| async { asset(JS, common::WSHUB_JS) }))
        .route("/login", post(login))
        .route("/session", get(session))
        .route("/ws", hub.axum_route())
        .route("/metrics", hub.metrics_route())
        .with_state(AppState {
            auth: auth.clone(),
            secure_cookie: options.tls.is_some(),
            signins: options
                .max_connections_per_ip
                .is_none()
                .then(|| Arc::new(SigninLimit::default())),
        });
    let served = common::serve(listener, app, hub.clone(), options.tls.as_ref()).await?;
    Ok(ChatServer {
        hub,
        auth,
        local_addr: served.local_addr,
        tls: served.tls,
        task: served.task,
    })
}

/// [`start`], then wait until the hub shuts down.
pub async fn serve(listener: TcpListener, options: ChatOptions) -> io::Result<()> {
    let server = start(listener, options).await?;
    server.task.await.map_err(io::Error::other)?
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const INDEX_HTML: &str = include_str!("chat/index.html");
const STYLE_CSS: &str = include_str!("chat/style.css");
const APP_JS: &str = include_str!("chat/app.js");

/// Largest `POST /login` body: a name and some JSON.
const LOGIN_BODY_LIMIT: usize = 1024;

/// The cookie in which `POST /login` leaves the token, for the next login from the
/// same browser (another tab, after a logout) to show it holds the name.
const LOGIN_COOKIE: &str = "chat_token";

/// `POST /login {"name": "..", "token": ".."?}`: a token for that name. A valid token
/// (`token`, or the login cookie) keeps its holder's names.
async fn login(State(app): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    // `serve_axum` gives every request the peer's address.
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if let (Some(limit), Some(peer)) = (&app.signins, peer)
        && !limit.take(peer.ip())
    {
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many sign-ins from your address: try again in a minute",
        )
        .into_response();
    }
    let result = async {
        let body = common::read_json_object(&headers, body, LOGIN_BODY_LIMIT).await?;
        let name = match body.get("name") {
            Some(serde_json::Value::String(name)) => name,
            Some(_) => return Err(ApiError::field("name", "the name must be a string")),
            None => return Err(ApiError::field("name", "the name is missing")),
        };
        let presented = body.get("token").and_then(serde_json::Value::as_str);
        app.auth.login_with(
            name,
            presented.into_iter().chain(cookies(&headers, LOGIN_COOKIE)),
        )
    }
    .await;
    if let (Err(_), Some(limit), Some(peer)) = (&result, &app.signins, peer) {
        limit.refund(peer.ip());
    }
    match result {
        Ok(login) => {
            // HttpOnly: page scripts never see it; path /login: sent nowhere else;
            // SameSite=Strict: no other site's request carries it.
            let secure = if app.secure_cookie { "; Secure" } else { "" };
            let cookie = format!(
                "{LOGIN_COOKIE}={}; Path=/login; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
                login.token,
                app.auth.0.ttl.as_secs()
            );
            let mut response = axum::Json(login).into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

/// The values of the cookies called `name` in `headers`.
fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (key, value) = pair.split_once('=')?;
            (key.trim() == name).then_some(value.trim())
        })
}

/// `GET /session?token=..`: what the hub's handshake would say of this token. A
/// browser cannot see why its WebSocket was refused, so the page asks here.
async fn session(State(app): State<AppState>, req: Request) -> Response {
    match app
        .auth
        .authenticate(&AuthRequest::from_request(&req))
        .await
    {
        Ok(identity) => {
            let expires_at = identity
                .expires_at
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs());
            axum::Json(json!({
                "user": identity.user_id,
                "name": identity.name,
                "expires_at": expires_at,
            }))
            .into_response()
        }
        Err(rejection) => (
            rejection.status(),
            axum::Json(json!({ "error": rejection.message() })),
        )
            .into_response(),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::exit_code("chat", run().await)
}

async fn run() -> io::Result<()> {
    let options = ChatOptions::from_env();
    common::init_tracing(options.log_format);
    let flags = common::Flags {
        host: options.host,
        port: options.port,
        tls: options.tls.clone(),
        log_format: options.log_format,
        redis: options.redis.clone(),
        trusted_proxies: options.trusted_proxies.clone(),
    };
    let listener = common::bind(&flags).await?;
    let server = start(listener, options).await?;
    println!(
        "chat: open {} (in two windows, to chat with yourself)",
        server.url()
    );
    common::print_certificate(server.tls.as_ref());
    println!("Ctrl-C stops; the pages reconnect when the server is back");
    common::run_until_ctrl_c(server.hub, server.task).await
}
