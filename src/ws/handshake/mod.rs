//! The opening handshake of RFC 6455 §4, server and client role, over any
//! `AsyncRead + AsyncWrite + Unpin` stream.
//!
//! Server role: [`accept_request`] reads one HTTP/1.1 upgrade request from a raw stream
//! (TCP, TLS, ...), validates it with [`negotiate`] and hands back an [`Upgrade`] that the
//! application either [accepts](Upgrade::accept) (101 response, then a [`WebSocket`]) or
//! [rejects](Upgrade::reject) (authentication, limits). An invalid request is answered
//! with the HTTP status of [`HandshakeError::status`] before the error is returned.
//!
//! When an HTTP server (hyper, axum) has already parsed the request, call [`negotiate`]
//! on it, answer with [`Negotiated::response`], and build the socket on the upgraded
//! connection with [`WebSocket::from_parts`] and [`Negotiated::deflate`].
//!
//! Client role: [`connect`] (plain TCP) or [`client_handshake`] (any connected stream,
//! e.g. one wrapped in TLS for `wss://`).
//!
//! Every read is bounded in size and in time: a peer can neither make us buffer more
//! than the configured head size nor hold a task forever by trickling bytes
//! (slowloris).
//!
//! Only HTTP/1.1 upgrades are supported: WebSockets over HTTP/2 (RFC 8441, extended
//! `CONNECT`) are answered with 405.
//!
//! [`WebSocket`]: crate::ws::WebSocket
//! [`WebSocket::from_parts`]: crate::ws::WebSocket::from_parts

mod client;
mod config;
mod http;
mod negotiate;
mod server;
#[cfg(test)]
mod test_support;
mod url;

#[cfg(feature = "client")]
pub(crate) use url::WsUrl;

pub use client::{client_handshake, connect};
pub use config::{ClientConfig, HandshakeConfig, OriginCheck, OriginPolicy};
#[cfg(feature = "axum")]
pub(crate) use http::MAX_HEADERS;
pub use negotiate::{Negotiated, negotiate};
pub use server::{Upgrade, accept, accept_request};

use std::io;

use crate::error::HandshakeError;

/// The only WebSocket protocol version (RFC 6455 §4.1).
const WEBSOCKET_VERSION: &str = "13";

fn invalid_input(why: &'static str) -> HandshakeError {
    HandshakeError::Io(io::Error::new(io::ErrorKind::InvalidInput, why))
}
