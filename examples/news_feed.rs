//! Live news feed: articles POSTed over HTTP appear at once on every open page.
//!
//! ```text
//! cargo run --example news_feed                     # http://127.0.0.1:8081/
//! cargo run --example news_feed -- --port 9001      # or PORT=9001
//! cargo run --example news_feed -- --tls            # https://, self-signed certificate
//! cargo run --example news_feed -- --cert cert.pem --key key.pem
//! cargo run --example news_feed -- --log-format json  # JSON logs; RUST_LOG filters them
//! ```
//!
//! Open the printed URL, then publish an article from a terminal:
//!
//! ```text
//! curl -X POST http://127.0.0.1:8081/articles -H 'content-type: application/json' \
//!   -d '{"title": "Hello from curl", "body": "It works.", "url": "https://example.org"}'
//! ```
//!
//! | route | what |
//! | --- | --- |
//! | `GET /` | the page (`examples/news_feed/`: HTML, CSS and JS compiled in) |
//! | `GET /wshub.js` | the browser client (`clients/wshub.js`) |
//! | `POST /articles` | `{"title", "body", "url"?}` -> 201 and the [`Article`]; 400 `{"error", "field"}` on bad input, 413 over 32 KiB, 415 if not JSON |
//! | `GET /articles` | `{"articles": [..]}`, newest first: the room's history (the last 100, for a day), for HTTP clients; the page reads it over its WebSocket |
//! | `GET /ws` | the hub: anyone may join `news:latest`; only the server publishes there |
//! | `GET /metrics` | the hub's Prometheus metrics (`Hub::metrics_route`) |
//!
//! Each accepted article is published, typed, to the room `news:latest` of the
//! server-publish-only namespace `news` (a client's publish there is refused with
//! `forbidden`), whose history keeps the last 100 for a day. The page asks for that
//! history when it joins, and after a reconnect recovers what it missed (or, told
//! `recovered: false`, reloads the history), then shows new articles as they are
//! published. `GET /articles` lists the same history, for other HTTP clients.

#[path = "common/mod.rs"]
mod common;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use wshub::{HistoryLimits, Hub, Namespace, Room};

use common::{ApiError, asset};
pub use common::{LogFormat, TlsChoice, TlsInfo};

/// The room articles are published to.
pub const ROOM: &str = "news:latest";
/// Articles kept in memory (and listed by `GET /articles`).
pub const KEPT: usize = 100;
/// Largest `POST /articles` body, in bytes.
pub const MAX_BODY_BYTES: usize = 32 * 1024;
/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest body, in characters.
pub const MAX_TEXT_CHARS: usize = 5000;
/// Longest URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// An article, as stored, listed and published (the room's message type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Article {
    /// Increasing from 1: the order of publication.
    pub id: u64,
    /// The headline (1 to 200 characters).
    pub title: String,
    /// The text (1 to 5,000 characters).
    pub body: String,
    /// An `http` or `https` link, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// When it was published, in milliseconds since the Unix epoch.
    pub published_at: u64,
}

/// A valid article not yet published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewArticle {
    /// The headline, trimmed.
    pub title: String,
    /// The text, trimmed.
    pub body: String,
    /// The link, trimmed.
    pub url: Option<String>,
}

impl NewArticle {
    /// Checks a `POST /articles` body; the error names the field at fault.
    pub fn from_json(input: &Map<String, Value>) -> Result<NewArticle, ApiError> {
        let title = text_field(input, "title", MAX_TITLE_CHARS, false)?;
        let body = text_field(input, "body", MAX_TEXT_CHARS, true)?;
        let url = match input.get("url") {
            None | Some(Value::Null) => None,
            Some(Value::String(url)) if url.trim().is_empty() => None,
            Some(Value::String(url)) => Some(valid_url(url.trim())?),
            Some(_) => return Err(ApiError::field("url", "url must be a string")),
        };
        Ok(NewArticle { title, body, url })
    }
}

/// A required string field, trimmed, of 1 to `max` characters and without control
/// characters (`multiline` allows line breaks and tabs).
fn text_field(
    input: &Map<String, Value>,
    field: &'static str,
    max: usize,
    multiline: bool,
) -> Result<String, ApiError> {
    let value = match input.get(field) {
        Some(Value::String(s)) => s.trim(),
        Some(Value::Null) | None => {
            return Err(ApiError::field(field, format!("{field} is required")));
        }
        Some(_) => return Err(ApiError::field(field, format!("{field} must be a string"))),
    };
    let chars = value.chars().count();
    if chars == 0 {
        return Err(ApiError::field(field, format!("{field} is empty")));
    }
    if chars > max {
        return Err(ApiError::field(
            field,
            format!("{field} is {chars} characters long; at most {max}"),
        ));
    }
    let allowed = |c: char| !c.is_control() || (multiline && matches!(c, '\n' | '\r' | '\t'));
    if !value.chars().all(allowed) {
        return Err(ApiError::field(
            field,
            format!("{field} contains control characters"),
        ));
    }
    Ok(value.to_owned())
}

/// An `http://` or `https://` URL with a host and no spaces or control characters: the
/// page turns it into a link, so nothing else (`javascript:`, `data:`) gets in.
fn valid_url(url: &str) -> Result<String, ApiError> {
    let bad = |why: &str| ApiError::field("url", format!("url {why}"));
    if url.len() > MAX_URL_BYTES {
        return Err(bad(&format!("is longer than {MAX_URL_BYTES} bytes")));
    }
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or_else(|| bad("must start with http:// or https://"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') || host.starts_with('@') {
        return Err(bad("has no host"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("contains spaces or control characters"));
    }
    Ok(url.to_owned())
}

/// The articles: the room they are published to, whose history (the last [`KEPT`])
/// is also what `GET /articles` lists. Cheap to clone.
#[derive(Clone)]
pub struct Articles(Arc<ArticlesInner>);

struct ArticlesInner {
    room: Room<Article>,
    /// The last id given. An async mutex held across the publish, so ids and the
    /// room's `seq`s come in the same order.
    last_id: tokio::sync::Mutex<u64>,
}

impl std::fmt::Debug for Articles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Articles")
            .field("room", &self.0.room.name())
            .finish()
    }
}

impl Articles {
    fn new(hub: &Hub) -> Self {
        let room = hub
            .room::<Article>(ROOM)
            .expect("the news namespace carries Article");
        Articles(Arc::new(ArticlesInner {
            room,
            last_id: tokio::sync::Mutex::new(0),
        }))
    }

    /// Publishes `new` to [`ROOM`] (stored in its history); returns it as published.
    pub async fn publish(&self, new: NewArticle) -> wshub::Result<Article> {
        let mut last_id = self.0.last_id.lock().await;
        let article = Article {
            id: *last_id + 1,
            title: new.title,
            body: new.body,
            url: new.url,
            published_at: common::now_ms(),
        };
        self.0.room.publish(article.clone()).await?;
        *last_id += 1;
        Ok(article)
    }

    /// The kept articles (the room's history), newest first.
    pub async fn list(&self) -> wshub::Result<Vec<Article>> {
        let mut articles: Vec<Article> = self
            .0
            .room
            .history(KEPT)
            .await?
            .into_iter()
            .map(|entry| entry.data)
            .collect();
        articles.reverse();
        Ok(articles)
    }
}

/// How to run the news feed.
#[derive(Debug, Clone)]
pub struct NewsOptions {
    /// Address [`main`] listens on (default 127.0.0.1); [`start`] serves the listener
    /// it is given.
    pub host: IpAddr,
    /// Port [`main`] listens on (default 8081, `PORT` or `--port`).
    pub port: u16,
    /// `Some` to serve https/wss.
    pub tls: Option<TlsChoice>,
    /// How the server logs (`--log-format`); [`main`] sets up logging with it.
    /// Default text.
    pub log_format: LogFormat,
    /// `--redis URL`: one node of a cluster on that Redis (a backplane, keys under
    /// the example's own prefix). Default none: a single process.
    pub redis: Option<String>,
    /// `--trusted-proxy CIDR`: proxies whose `X-Forwarded-For` is believed
    /// (`deploy/`). Default none.
    pub trusted_proxies: Vec<String>,
}

impl Default for NewsOptions {
    fn default() -> Self {
        NewsOptions {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8081,
            tls: None,
            log_format: LogFormat::Text,
            redis: None,
            trusted_proxies: Vec::new(),
        }
    }
}

impl NewsOptions {
    /// Options from the command line (`--port`, `--host`, `--tls`, `--cert`, `--key`)
    /// and `PORT`.
    pub fn from_env() -> Self {
        let flags = common::Flags::from_env("news_feed", 8081);
        NewsOptions {
            host: flags.host,
            port: flags.port,
            tls: flags.tls,
            log_format: flags.log_format,
            redis: flags.redis,
            trusted_proxies: flags.trusted_proxies,
        }
    }
}

/// A running news feed, from [`start`].
#[derive(Debug)]
pub struct NewsServer {
    /// The hub: `hub.shutdown().await` stops the whole server (then await `task`).
    pub hub: Hub,
    /// The articles: `articles.publish(..)` does what `POST /articles` does.
    pub articles: Articles,
    /// The address served.
    pub local_addr: SocketAddr,
    /// The certificate, when serving https.
    pub tls: Option<TlsInfo>,
    /// Ends once the hub has begun shutting down, after the listener is dropped.
    pub task: JoinHandle<io::Result<()>>,
}

impl NewsServer {
    /// The page's URL: `http://127.0.0.1:PORT/` (or `https://`).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}/", self.local_addr)
    }

    /// The hub's URL: `ws://127.0.0.1:PORT/ws` (or `wss://`).
    pub fn ws_url(&self) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://{}/ws", self.local_addr)
    }

    /// The `curl` command that publishes an article here.
    pub fn curl_example(&self) -> String {
        // A self-signed certificate is not trusted by curl unless told so.
        let insecure = match &self.tls {
            Some(tls) if tls.self_signed => "-k ",
            _ => "",
        };
        format!(
            "curl {insecure}-X POST {}articles -H 'content-type: application/json' \
             -d '{{\"title\": \"Hello from curl\", \"body\": \"It works.\", \"url\": \"https://example.org\"}}'",
            self.url()
        )
    }

    /// Shuts the hub down (every WebSocket closed with 1001) and waits for the server
    /// to stop; the port can then be bound again.
    pub async fn shutdown(self) -> io::Result<()> {
        self.hub.shutdown().await;
        self.task.await.map_err(io::Error::other)?
    }
}

/// Starts the news feed on `listener` (port 0 is fine) and returns at once; the server
/// runs until its hub shuts down. Fails only if TLS cannot be set up.
pub async fn start(listener: TcpListener, options: NewsOptions) -> io::Result<NewsServer> {
    let builder = Hub::builder().namespace(
        Namespace::<Article>::new("news")
            // Clients read; only this server writes.
            .server_only()
            // Readers do not need to see each other.
            .presence(false)
            // The room's history is the list of articles: the last KEPT, for a
            // day. A page that loads or reconnects fills itself from it.
            .history(HistoryLimits::new(KEPT, Duration::from_secs(24 * 3600))),
    );
    let hub = common::cluster_options(
        "news_feed",
        builder,
        options.redis.as_deref(),
        &options.trusted_proxies,
        "wshub-news",
        None,
    )
    .build();
    let articles = Articles::new(&hub);
    let app = Router::new()
        .route("/", get(|| async { asset(HTML, INDEX_HTML) }))
        .route("/style.css", get(|| async { asset(CSS, STYLE_CSS) }))
        .route("/app.js", get(|| async { asset(JS, APP_JS) }))
        .route("/wshub.js", get(|| async { asset(JS, common::WSHUB_JS) }))
        .route("/articles", get(list_articles).post(post_article))
        .route("/ws", hub.axum_route())
        .route("/metrics", hub.metrics_route())
        .with_state(articles.clone());
    let served = common::serve(listener, app, hub.clone(), options.tls.as_ref()).await?;
    Ok(NewsServer {
        hub,
        articles,
        local_addr: served.local_addr,
        tls: served.tls,
        task: served.task,
    })
}

/// [`start`], then wait until the hub shuts down.
pub async fn serve(listener: TcpListener, options: NewsOptions) -> io::Result<()> {
    let server = start(listener, options).await?;
    server.task.await.map_err(io::Error::other)?
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const INDEX_HTML: &str = include_str!("news_feed/index.html");
const STYLE_CSS: &str = include_str!("news_feed/style.css");
const APP_JS: &str = include_str!("news_feed/app.js");

/// `POST /articles`.
async fn post_article(
    State(articles): State<Articles>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let input = common::read_json_object(&headers, body, MAX_BODY_BYTES).await?;
        NewArticle::from_json(&input)
    }
    .await;
    match result {
        Ok(new) => match articles.publish(new).await {
            Ok(article) => (StatusCode::CREATED, axum::Json(article)).into_response(),
            Err(e) => unavailable(e),
        },
        Err(e) => e.into_response(),
    }
}

/// 503 when the history store failed (it cannot with the in-memory default).
fn unavailable(e: wshub::Error) -> Response {
    tracing::error!(error = %e, "history unavailable");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({ "error": e.to_string() })),
    )
        .into_response()
}

/// `GET /articles`.
async fn list_articles(State(articles): State<Articles>) -> Response {
    match articles.list().await {
        Ok(list) => axum::Json(json!({ "articles": list })).into_response(),
        Err(e) => unavailable(e),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::exit_code("news_feed", run().await)
}

async fn run() -> io::Result<()> {
    let options = NewsOptions::from_env();
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
    println!("news feed: open {}", server.url());
    common::print_certificate(server.tls.as_ref());
    println!("then publish an article:\n  {}", server.curl_example());
    common::run_until_ctrl_c(server.hub, server.task).await
}
