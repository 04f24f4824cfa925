//! # wshub
//!
//! Real-time WebSocket pub/sub for Rust.
//!
//! This crate is being built; today it provides [`ws`], its own lean RFC 6455 engine
//! with permessage-deflate (RFC 7692), made for fan-out: a message is framed (and
//! compressed) once and its bytes are shared by every connection that sends it.
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![deny(clippy::await_holding_lock)]

pub mod error;
pub mod ws;

pub use error::{Error, Result};
