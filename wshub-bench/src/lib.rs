//! `wshub-bench`: a load generator for `wshub.v1` services and plain WebSocket servers.
//!
//! The binary (`cargo run --release -p wshub-bench -- --help`) parses the command line
//! into the option structs here and runs one scenario; the integration tests call the
//! same scenario functions against in-process servers.
//!
//! - [`conn`]: connecting, with source addresses spread over 127.0.0.x;
//! - [`phases`]: the rate schedule (fixed, or Artillery-like ramps);
//! - [`socketio`]: the engine.io v4 / Socket.IO framing of the `socketio` protocol;
//! - [`stats`]: latency histograms, counters and the generator's own CPU time;
//! - [`report`]: the result, as a table or JSON;
//! - [`scenario`]: `broadcast`, `echo`, `idle`, `connect-rate`, `presence-churn` and
//!   `reconnect-storm`.

pub mod conn;
pub mod phases;
pub mod report;
pub mod scenario;
pub mod socketio;
pub mod stats;
