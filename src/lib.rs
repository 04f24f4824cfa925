//! # wshub
//!
//! Real-time WebSocket pub/sub for Rust: typed rooms, presence, fan-out, liveness, and
//! a pluggable authenticator, on the crate's own lean RFC 6455 + permessage-deflate
//! engine ([`ws`]).
//!
//! ## A hub in twenty lines
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//! use wshub::{Hub, Namespace};
//!
//! #[derive(Clone, Serialize, Deserialize)]
//! struct ChatMessage { text: String }
//!
//! #[derive(Clone, Serialize, Deserialize)]
//! struct Article { title: String }
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let hub = Hub::builder()
//!         .namespace(Namespace::<ChatMessage>::new("chat"))          // rooms chat:*
//!         .namespace(Namespace::<Article>::new("news").server_only()) // rooms news:*
//!         .build();
//!     let news = hub.room::<Article>("news:latest").expect("declared above");
//!     // Stored in the room's history (a late joiner can ask for it) and sent to members.
//!     news.publish(Article { title: "wshub is up".into() }).await.expect("serializable");
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//!     hub.serve(listener).await
//! }
//! ```
//!
//! Clients speak the JSON protocol `wshub.v1` (specified in [`PROTOCOL.md`] in the
//! repository): `join`, `leave`, `publish`, `presence` and `call` ops, each answered by
//! a `reply`; `message` and `presence_diff` pushed by the server. `call` runs a method
//! the application registered with [`HubBuilder::rpc`] (typed request and response,
//! an [`RpcContext`] saying who calls, errors as [`RpcError`]). The [`protocol`] module
//! is its Rust form.
//!
//! [`PROTOCOL.md`]: https://github.com/wshub/wshub/blob/HEAD/PROTOCOL.md
//!
//! ## Rooms are typed
//!
//! A namespace is declared with a serde type. A client publish is decoded into that
//! type (a payload that does not fit gets an `invalid_data` reply and is never
//! broadcast), passed through the namespace's optional hook
//! ([`Namespace::on_publish`]), and encoded once for every member.
//! [`Hub::room`] gives a typed [`Room`] handle to publish from the server, read
//! presence, or [`subscribe`](Room::subscribe) to a room's messages as Rust values;
//! asking for the wrong type is an error, not a panic.
//!
//! ## Authentication
//!
//! Implement [`Authenticator`]: it sees the upgrade request ([`AuthRequest`]: headers,
//! query, cookies, peer address) and returns an [`Identity`] or an
//! [`AuthRejection`] (HTTP 401 or 403, before any upgrade). `authorize` decides per
//! room and action. Built in: [`AllowAnonymous`] (the default),
//! [`StaticTokens`], and `JwtAuth` (feature `jwt`).
//!
//! ## Serving
//!
//! [`Hub::serve`] on a `TcpListener`, [`Hub::serve_tls`] for `wss://` (feature `tls`),
//! [`Hub::serve_stream`] for any stream, or `Hub::axum_route` to mount the hub on a
//! route of your own axum `Router`, served with `Hub::serve_axum` or
//! `Hub::serve_axum_tls` (feature `axum`). [`Hub::shutdown`] closes every connection
//! with 1001 after its queued messages.
//!
//! Before its upgrade every connection is bounded in time (`handshake_timeout` from
//! `accept`) and in count (`max_pending_connections` in all, `max_pending_per_host`,
//! `max_pending_per_network`), so connections that never finish a handshake
//! (slowloris) cannot exhaust the server or crowd other clients out.
//!
//! Behind a reverse proxy or load balancer, list it in
//! [`HubConfig::trusted_proxies`]: the client's address is then read from `Forwarded`,
//! `X-Forwarded-For` or (with [`HubConfig::proxy_protocol`]) a PROXY protocol header,
//! and only from those peers ([`net`]).
//!
//! ## The server in control
//!
//! [`HubBuilder::on_connect`] and [`HubBuilder::on_disconnect`] run once per
//! connection, with a [`Connection`] handle: its [`Identity`], address, rooms, typed
//! data of the application's ([`Connection::set_data`]), and what the server can do to
//! it. [`Hub::connection`] finds one by id; [`Hub::user_connections`] lists a user's.
//! From Rust the server can join a connection to a room, or all of a user's
//! ([`Connection::join`], [`Hub::join_user`]), with the presence and diffs of a
//! client's own join (the client gets a `joined` message); take it out again
//! ([`Connection::leave`], [`Hub::remove_user_from_rooms`] for a ban that must take
//! effect now); close it or all of a user's tabs with a code of its choosing
//! ([`Connection::close`], [`Hub::disconnect_user`]); and send it a typed message
//! outside any room ([`Connection::send`], [`Hub::send_to_user`]), through the same
//! bounded queue as everything else.
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//! use wshub::{CloseInfo, Connection, Hub, Namespace};
//!
//! #[derive(Clone, Serialize, Deserialize)]
//! struct Chat { text: String }
//!
//! struct Plan(&'static str);
//!
//! #[derive(Serialize)]
//! #[serde(tag = "type")]
//! enum Notice { Welcome { plan: &'static str } }
//!
//! # #[tokio::main] async fn main() {
//! let hub = Hub::builder()
//!     .namespace(Namespace::<Chat>::new("chat"))
//!     .on_connect(|conn: Connection| async move {
//!         conn.set_data(Plan("free"));
//!         let _ = conn.join(&format!("chat:user-{}", conn.identity().user_id));
//!         let _ = conn.send(&Notice::Welcome { plan: "free" });
//!     })
//!     .on_disconnect(|conn: Connection, close: CloseInfo| async move {
//!         tracing::info!(conn_id = conn.id(), code = close.code, "gone");
//!     })
//!     .build();
//! // A ban: the authenticator now refuses "mallory"'s joins; this removes her from the
//! // rooms she is in, and then closes every tab she has open.
//! hub.remove_user_from_rooms("mallory", |_room| true, "banned");
//! hub.disconnect_user("mallory", 4003, "banned");
//! # }
//! ```
//!
//! ## Safe by default
//!
//! Every limit has a default ([`HubConfig`], [`NamespaceOptions`], and the engine's
//! [`WsConfig`], which a hub carries as [`HubConfig::ws`]):
//! connections in all, per host (an IPv4 address or IPv6 /64) and per network (IPv4 /24,
//! IPv6 /48), optionally per user, rooms per connection, message and payload sizes, a
//! byte-bounded outbound queue per connection (a slow consumer is closed with 1013, the
//! publisher never waits), a per-connection rate limit, and a ping/pong liveness sweep.
//!
//! ## Features
//!
//! | feature | default | adds |
//! | --- | --- | --- |
//! | `axum` | yes | `Hub::axum_route`, `Hub::serve_axum` (and `Hub::serve_axum_tls` with `tls`) |
//! | `tls` | no | `Hub::serve_tls`, the `tls` module (rustls acceptors from PEM) |
//! | `self-signed` | no | `tls::self_signed`: certificates for development, with rcgen (implies `tls`) |
//! | `jwt` | no | `JwtAuth` (HS256, RS256) |
//! | `client` | no | the `client` module: a Rust client of `wshub.v1` that reconnects by itself (backoff with full jitter, the close-code policy, token renewal) and recovers its rooms (`since`, each stored message once); `wss://` with `tls` |
//! | `metrics` | no | Prometheus metrics: `Hub::metrics_text` (the text exposition format, with prometheus-client), and `Hub::metrics_route` with `axum` |
//! | `redis` | no | the `redis` module: a Redis backplane (`HubBuilder::backplane`) so several hub processes serve one set of rooms, in one per-room order, with history in Redis (`RedisHistory`) and recovery on any node (redis-rs) |
//!
//! ## Seeing it run
//!
//! With the `metrics` feature, `.route("/metrics", hub.metrics_route())` next to the
//! application's axum routes serves what an operator watches: connections open,
//! opened and closed (by close code), handshakes refused (by HTTP status), messages in
//! and out and deliveries (by namespace), bytes on the wire and as payloads, fan-out,
//! handshake and ping round-trip times as histograms, slow consumers, rate limiting,
//! rooms, users in presence and history recovery. Counters are kept per thread, so
//! recording does not slow the fan-out down; no label names a room, user or
//! connection. The repository's `deploy/` holds a Prometheus configuration and a
//! Grafana dashboard for it.
//!
//! The hub logs with `tracing`: a span per connection (`conn_id`, `user`, `peer`) and,
//! at `info`, its `connected` and `closed` (code, reason, who closed), `authentication
//! failed`, flood closes (1008) and slow consumers (1013). Tokens, cookies and message
//! bodies are never logged.
//!
//! For the live view behind those numbers, from Rust: [`Hub::rooms`] lists rooms with
//! their connection and user counts, [`Room::connections`] enumerates a room's
//! connections, [`Hub::user_connections`] a user's, and [`Hub::stats`] the hub's
//! counters.
//!
//! ## Everything from the crate root
//!
//! The types an application names are re-exported here; the modules ([`auth`],
//! [`protocol`], [`ws`], [`net`], [`error`]) hold the rest. A whole app, with its own
//! authenticator, a typed namespace with a publish hook, a server-side publish, and
//! the hub served next to axum routes:
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use serde::{Deserialize, Serialize};
//! use wshub::{
//!     Action, AuthRejection, AuthRequest, Authenticator, ErrorCode, Hub, HubConfig,
//!     Identity, Namespace, OriginPolicy, PublishContext, Refusal, WsConfig,
//! };
//!
//! #[derive(Clone, Serialize, Deserialize)]
//! struct Chat { text: String }
//!
//! struct Tokens;
//!
//! impl Authenticator for Tokens {
//!     async fn authenticate(&self, req: &AuthRequest) -> Result<Identity, AuthRejection> {
//!         match req.token().as_deref() {
//!             Some("secret-ann") => Ok(Identity::new("ann", "Ann")),
//!             _ => Err(AuthRejection::Unauthorized("unknown token".into())),
//!         }
//!     }
//!     fn authorize(&self, identity: &Identity, room: &str, action: Action) -> bool {
//!         action == Action::Join || room != "chat:announcements" || identity.user_id == "ann"
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let mut config = HubConfig::default();
//!     config.origin = OriginPolicy::allow_list(["https://example.com"]);
//!     config.ws = WsConfig::default().with_max_message_size(64 * 1024);
//!     let hub = Hub::builder()
//!         .authenticator(Tokens)
//!         .config(config)
//!         .namespace(Namespace::<Chat>::new("chat").on_publish(
//!             |ctx: &PublishContext<'_>, msg: Chat| {
//!                 if msg.text.is_empty() {
//!                     return Err(Refusal { code: ErrorCode::InvalidData, message: "empty".into() });
//!                 }
//!                 Ok(Chat { text: format!("{}: {}", ctx.identity.name, msg.text) })
//!             },
//!         ))
//!         .build();
//!     hub.room::<Chat>("chat:lobby")
//!         .expect("declared above")
//!         .publish(Chat { text: "welcome".into() })
//!         .await
//!         .expect("serializable");
//!     let app = Router::new()
//!         .route("/", get(|| async { "hello" }))
//!         .route("/ws", hub.axum_route());
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//!     hub.serve_axum(listener, app).await
//! }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![deny(clippy::await_holding_lock)]

pub mod auth;
#[doc(hidden)]
pub mod bench_support;
#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod client;
pub mod error;
pub mod history;
mod hub;
mod metrics;
pub mod net;
mod presence;
pub mod protocol;
mod rate;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
mod room;
mod server;
mod session;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;
pub mod ws;

/// A boxed, sendable future: what erased handlers and hooks return.
pub(crate) type BoxFuture<T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

pub use auth::{
    Action, AllowAnonymous, AuthRejection, AuthRequest, Authenticator, Identity, StaticTokens,
};
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub use auth::{JwtAuth, JwtKeyError};
pub use error::{Error, Result};
pub use history::{HistoryLimits, HistoryStore, MemoryHistory};
pub use hub::{CloseInfo, CloseInitiator, Connection, MembershipError};
pub use hub::{ConnectionInfo, RoomInfo};
pub use hub::{HistoryEntry, Published, Room};
pub use hub::{Hub, HubBuilder, HubConfig, HubStats, RoomError, default_room_name_char};
pub use hub::{RpcContext, RpcError};
pub use net::{AddrGrouping, TrustedProxies};
pub use presence::PresenceInterest;
pub use protocol::{
    ErrorCode, Presence, PresenceCount, PresenceDiff, PresenceMeta, PresencePage, StreamPosition,
};
pub use room::{
    AsyncPublishContext, Delivery, Namespace, NamespaceOptions, PublishContext, RecvError, Refusal,
    RoomMessage, RoomSubscription,
};
// The engine types that appear in hub configuration and in the client API.
pub use ws::handshake::{ClientConfig, OriginPolicy};
pub use ws::{DeflateParams, WsConfig};
