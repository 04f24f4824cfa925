//! # wshub
//!
//! Real-time WebSocket pub/sub for Rust: typed rooms, presence, fan-out, liveness, and
//! a pluggable authenticator, on the crate's own lean RFC 6455 + permessage-deflate
//! engine ([`ws`]).
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![deny(clippy::await_holding_lock)]

pub mod auth;
pub mod error;
mod hub;
mod presence;
pub mod protocol;
mod reaper;
mod room;
mod server;
mod session;
#[cfg(feature = "tls")]
pub mod tls;
pub mod ws;

pub use auth::{Action, AllowAnonymous, AuthRejection, AuthRequest, Authenticator, Identity};
pub use error::{Error, Result};
pub use hub::{Hub, HubBuilder, HubConfig, HubStats, RoomError};
pub use presence::{Presence, PresenceDiff, PresenceMeta};
pub use room::{
    Delivery, Namespace, NamespaceOptions, PublishContext, RecvError, Refusal, Room, RoomMessage,
    RoomSubscription,
};
