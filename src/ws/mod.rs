//! The WebSocket engine: RFC 6455 and permessage-deflate (RFC 7692) on tokio, built on
//! tungstenite's frame types.
//!
//! Why not tungstenite's `WebSocket`: it rejects RSV1 frames (so it cannot speak
//! permessage-deflate) and keeps a 128 KiB read buffer per connection. This engine keeps
//! no read buffer while a connection is idle, negotiates stateless compression
//! (`*_no_context_takeover`) so no connection owns a zlib context, and sends
//! [`PreparedMessage`]s: frames encoded (and compressed) once, shared as [`Bytes`] by
//! any number of connections.

mod config;
mod conn;
pub(crate) mod deflate;
mod frame;
pub mod handshake;
mod message;
mod prepared;
mod utf8;

pub use bytes::Bytes;
pub use config::WsConfig;
#[cfg(feature = "metrics")]
pub(crate) use conn::ConnObserver;
pub(crate) use conn::{CloseRecord, clip_close_reason};
pub use conn::{Outbound, SendError, WebSocket};
pub use deflate::DeflateParams;
pub(crate) use frame::close_code_is_valid as close_code_is_sendable;
pub use message::{Message, Role};
// The client side at the engine's top level too, where a client looks first.
pub use handshake::{ClientConfig, client_handshake, connect};
pub use prepared::PreparedMessage;
pub use tungstenite::protocol::frame::coding::CloseCode;
pub use tungstenite::protocol::frame::{CloseFrame, Utf8Bytes};
