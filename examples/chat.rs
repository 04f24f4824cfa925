//! Browser chat: sign-in with a signed token, rooms, presence, typing indicators and
//! automatic reconnection, over ws:// or wss://.
//!
//! ```text
//! cargo run --example chat                          # http://127.0.0.1:8080/
//! cargo run --example chat -- --port 9000           # or PORT=9000
//! cargo run --example chat -- --tls                 # https://, self-signed certificate
//! cargo run --example chat -- --cert cert.pem --key key.pem
//! CHAT_MAX_CONNECTIONS_PER_IP=5000 cargo run --example chat   # load tests from one host
//! ```
//!
//! Open the printed URL in two windows (a normal and a private one make two users),
//! pick a name in each and chat. Stop the server and start it again: the pages come
//! back by themselves. With `--tls` the certificate is written to a file whose path is
//! printed: trust it, or accept the browser's warning once.
//!
//! One port serves everything, through `Hub::axum_route`:
//!
//! | route | what |
//! | --- | --- |
//! | `GET /` | the page (`examples/chat/`: HTML, CSS and JS compiled in) |
//! | `GET /wshub.js` | the browser client (`clients/wshub.js`) |
//! | `POST /login` | `{"name": "Alice"}` -> `{"token", "user", "name", "expires_at"}`, or 400 `{"error", "field"}` |
//! | `GET /session?token=T` | 200 `{"user", "name", "expires_at"}` or 401 `{"error"}`: why a handshake was refused |
//! | `GET /ws?token=T` | the hub; a missing, forged or expired token gets 401 instead of a WebSocket |
//!
//! Tokens are HS256 JWTs valid 12 hours, signed with `CHAT_SECRET` if set, else with a
//! random key made at start. The user id is the display name in lower case, so the
//! same name in two tabs is one user: it appears once in the online list and leaves
//! when its last tab closes.
//!
//! Rooms are `chat:NAME` and carry [`ChatEvent`]s: `{"kind": "text", "text": ..}`
//! (1 to 2,000 characters; the server stamps the sender's name and the time) and
//! `{"kind": "typing"}`, sent with `ephemeral: true`, which the page shows for 3
//! seconds.

#[path = "common/mod.rs"]
mod common;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use wshub::{Action, AuthRejection, AuthRequest, Authenticator, Hub, Identity, Namespace, Refusal};

use common::{ApiError, asset};
pub use common::{TlsChoice, TlsInfo};

/// The room every user starts in.
pub const DEFAULT_ROOM: &str = "chat:lobby";
/// Longest chat message, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;
/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 32;
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
    /// Display name, as typed (trimmed).
    name: String,
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
    /// Signs and verifies with `secret`; tokens live for `ttl`.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        // The hub closes a connection when its token expires, on its own clock.
        validation.leeway = 0;
        ChatAuth(Arc::new(AuthKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }))
    }

    /// Issues a token for display name `name`, or says why the name is refused.
    pub fn login(&self, name: &str) -> Result<Login, String> {
        let name = valid_name(name)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            sub: user_id(name),
            name: name.to_owned(),
            exp: now + self.0.ttl.as_secs(),
            iat: now,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.0.encoding)
            .map_err(|e| format!("cannot sign a token: {e}"))?;
        Ok(Login {
            token,
            user: claims.sub,
            name: claims.name,
            expires_at: claims.exp,
        })
    }

    /// Checks a token's signature and expiry and returns who it names.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthRejection> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.0.decoding, &self.0.validation)
            .map_err(|e| {
                AuthRejection::Unauthorized(match e.kind() {
                    ErrorKind::ExpiredSignature => "token expired".into(),
                    _ => "invalid token".into(),
                })
            })?
            .claims;
        let identity = Identity::new(claims.sub, claims.name)
            .with_expiry(UNIX_EPOCH + Duration::from_secs(claims.exp));
        // jsonwebtoken compares whole seconds; the hub expires a connection at the
        // `exp` instant itself. Judge like the hub so that `/session` never accepts a
        // token the handshake refuses.
        if identity.is_expired(SystemTime::now()) {
            return Err(AuthRejection::Unauthorized("token expired".into()));
        }
        Ok(identity)
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

/// `name` trimmed, if it can be a display name: 1 to 32 characters, none of them
/// control, zero-width or bidi-override characters (they make one name pass for
/// another).
pub fn valid_name(name: &str) -> Result<&str, String> {
    let name = name.trim();
    let chars = name.chars().count();
    if !(1..=MAX_NAME_CHARS).contains(&chars) {
        return Err(format!(
            "the name must be 1 to {MAX_NAME_CHARS} characters long"
        ));
    }
    let invisible = |c: char| {
        c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
    };
    if name.chars().any(invisible) {
        return Err("the name contains invisible or control characters".into());
    }
    Ok(name)
}

/// The user id of a display name: its lower case, so "Alice" and "alice" are one user.
pub fn user_id(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Whether `id` (the part after `chat:`) is a room name the chat accepts: 1 to 32 of
/// `a-z`, `0-9`, `-` and `_`.
pub fn valid_room_id(id: &str) -> bool {
    (1..=MAX_ROOM_CHARS).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
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
    /// Most WebSocket connections from one IP address (`CHAT_MAX_CONNECTIONS_PER_IP`).
    /// `None` (the default) keeps the hub's default, which is right for a real
    /// deployment. Only for load tests (`benches/soak.rs`), whose clients all come from
    /// 127.0.0.1 and would otherwise be refused with 429 after the first hundred.
    pub max_connections_per_ip: Option<usize>,
}

impl Default for ChatOptions {
    fn default() -> Self {
        ChatOptions {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8080,
            tls: None,
            secret: None,
            token_ttl: Duration::from_secs(12 * 60 * 60),
            max_connections_per_ip: None,
        }
    }
}

impl ChatOptions {
    /// Options from the command line (`--port`, `--host`, `--tls`, `--cert`, `--key`)
    /// and the environment (`PORT`, `CHAT_SECRET`, `CHAT_MAX_CONNECTIONS_PER_IP`).
    /// Exits with a message if `CHAT_MAX_CONNECTIONS_PER_IP` is not a positive number.
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
        ChatOptions {
            host: flags.host,
            port: flags.port,
            tls: flags.tls,
            secret: std::env::var("CHAT_SECRET")
                .ok()
                .filter(|s| !s.is_empty())
                .map(String::into_bytes),
            max_connections_per_ip,
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
}

/// Starts the chat on `listener` (port 0 is fine) and returns at once; the server runs
/// until its hub shuts down. Fails only if TLS cannot be set up.
pub async fn start(listener: TcpListener, options: ChatOptions) -> io::Result<ChatServer> {
    let auth = ChatAuth::new(&options.secret(), options.token_ttl);
    let mut builder = Hub::builder()
        .namespace(chat_namespace())
        .authenticator(auth.clone());
    if let Some(n) = options.max_connections_per_ip {
        builder = builder.configure(|c| c.max_connections_per_ip = n);
    }
    let hub = builder.build();
    let app = Router::new()
        .route("/", get(|| async { asset(HTML, INDEX_HTML) }))
        .route("/style.css", get(|| async { asset(CSS, STYLE_CSS) }))
        .route("/app.js", get(|| async { asset(JS, APP_JS) }))
        .route("/wshub.js", get(|| async { asset(JS, common::WSHUB_JS) }))
        .route("/login", post(login))
        .route("/session", get(session))
        .route("/ws", hub.axum_route())
        .with_state(AppState { auth: auth.clone() });
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

/// `POST /login {"name": ".."}`: a token for that name.
async fn login(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let body = common::read_json_object(&headers, body, LOGIN_BODY_LIMIT).await?;
        let name = match body.get("name") {
            Some(serde_json::Value::String(name)) => name,
            Some(_) => return Err(ApiError::field("name", "the name must be a string")),
            None => return Err(ApiError::field("name", "the name is missing")),
        };
        app.auth.login(name).map_err(|e| ApiError::field("name", e))
    }
    .await;
    match result {
        Ok(login) => axum::Json(login).into_response(),
        Err(e) => e.into_response(),
    }
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
    common::init_tracing();
    let options = ChatOptions::from_env();
    let flags = common::Flags {
        host: options.host,
        port: options.port,
        tls: options.tls.clone(),
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
