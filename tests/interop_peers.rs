//! Interoperability with real WebSocket peers, run as subprocesses from
//! `tests/peers/`: the Python `websockets` client and the Node `ws` client each
//! send text and binary messages of 0, 125, 126, 65535, 65536 and 1048576
//! bytes, unfragmented and fragmented (text split inside multi-byte
//! characters), to the crate's echo server, check every echo byte for byte,
//! and close with 1000. They print one JSON line, which these tests check:
//! `ok`, the case count, whether permessage-deflate was negotiated, and the
//! close code the server answered.
//!
//! The peers must be installed (see `tests/common/mod.rs`): a missing one
//! fails the test, it is not skipped.
//!
//! Still to be written by the engine team, beside these:
//! - the tokio-tungstenite client against the crate's echo server;
//! - the crate's client role against `tests/peers/py_echo_server.py`
//!   (`common::spawn_python_echo_server`), with and without compression.

mod common;

use std::net::SocketAddr;

use common::echo::spawn_echo;
use common::{PEER_CASES, PEER_TIMEOUT, node_client_cmd, py_client_cmd, run_peer_async};

fn ws_url(addr: SocketAddr) -> String {
    format!("ws://{addr}/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_echo_with_deflate() {
    // Fails at once, before starting the server, if the peer is not installed.
    common::python();
    let addr = spawn_echo(true).await;
    let outcome = run_peer_async(py_client_cmd(&ws_url(addr), true), PEER_TIMEOUT).await;
    outcome.assert_echo_ok(PEER_CASES, true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_echo_without_deflate() {
    common::python();
    let addr = spawn_echo(false).await;
    let outcome = run_peer_async(py_client_cmd(&ws_url(addr), false), PEER_TIMEOUT).await;
    outcome.assert_echo_ok(PEER_CASES, false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_client_echo_with_deflate() {
    common::node();
    let addr = spawn_echo(true).await;
    let outcome = run_peer_async(node_client_cmd(&ws_url(addr), true), PEER_TIMEOUT).await;
    outcome.assert_echo_ok(PEER_CASES, true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_client_echo_without_deflate() {
    common::node();
    let addr = spawn_echo(false).await;
    let outcome = run_peer_async(node_client_cmd(&ws_url(addr), false), PEER_TIMEOUT).await;
    outcome.assert_echo_ok(PEER_CASES, false);
}

/// A client offers permessage-deflate to a server that has compression off:
/// the server must not accept the extension, and echo uncompressed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_offers_deflate_to_server_without_it() {
    common::python();
    let addr = spawn_echo(false).await;
    let outcome = run_peer_async(py_client_cmd(&ws_url(addr), true), PEER_TIMEOUT).await;
    outcome.assert_echo_ok(PEER_CASES, false);
}
