//! `--proto socketio` against the real Socket.IO 4.8.1 server of the comparison
//! (`benches/compare/node/socketio.js` on Node, packages from `tests/peers/`), not only
//! against the relay written here (`tests/socketio.rs`): the engine.io open, the
//! namespace connect, events relayed to every socket, and its JWT middleware accepting
//! tokens minted with the right secret and refusing the others with a `connect_error`.
//!
//! Needs Node.js and `bash scripts/test-deps.sh` (`npm ci --prefix tests/peers`);
//! without them the tests fail saying so.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use wshub_bench::conn::{Proto, Target};
use wshub_bench::phases::Schedule;
use wshub_bench::scenario::{broadcast, connect_rate};

const SECRET: &str = "compare-bench-secret";

async fn target(url: &str) -> Target {
    let mut target = Target::resolve(url).await.unwrap();
    target.proto = Proto::SocketIo;
    target
}

/// 20 connections over 250 ms.
fn connect_opts() -> connect_rate::ConnectRateOpts {
    connect_rate::ConnectRateOpts {
        schedule: Some(Schedule::fixed(Duration::from_millis(250), 80.0)),
        progress: false,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_every_socket() {
    let server = common::node::socketio_server(None).await;
    let opts = broadcast::BroadcastOpts {
        subscribers: 10,
        // 100 messages, paced: 200/s for 500 ms.
        schedule: Some(Schedule::fixed(Duration::from_millis(500), 200.0)),
        progress: false,
        ..Default::default()
    };
    let r = broadcast::run(target(&server.url).await, opts)
        .await
        .unwrap();
    // 10 subscribers and the publisher, which `io.emit` includes.
    assert_eq!(r.connected, 11, "{}", r.table());
    assert_eq!(r.connect_failed, 0);
    assert_eq!(r.sent, 100);
    assert_eq!(r.expected, 100 * 11);
    common::assert_complete(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_minted_per_connection_is_accepted() {
    let server = common::node::socketio_server(Some(SECRET)).await;
    let mut target = target(&server.url).await;
    target.jwt_secret = Some(SECRET.into());
    let r = connect_rate::run(target, connect_opts()).await.unwrap();
    assert!(r.errors.is_empty(), "errors: {:?}", r.errors);
    assert_eq!(r.details["attempts"], 20, "{}", r.table());
    assert_eq!(r.details["completed"], 20);
    assert_eq!(r.connected, 20);
    assert_eq!(r.latency.count, 20);
    assert!(r.failures.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_is_refused_with_connect_error() {
    let server = common::node::socketio_server(Some(SECRET)).await;
    let mut target = target(&server.url).await;
    target.jwt_secret = Some("wrong".into());
    let r = connect_rate::run(target, connect_opts()).await.unwrap();
    assert_eq!(r.details["attempts"], 20, "{}", r.table());
    assert_eq!(r.details["completed"], 0);
    assert_eq!(r.connected, 0);
    // Socket.IO upgrades the WebSocket, then refuses the namespace connect
    // (`44{"message":"unauthorized"}`, its `connect_error`).
    assert_eq!(
        r.failures,
        BTreeMap::from([("connect_error".to_string(), 20)]),
        "errors: {:?}",
        r.errors
    );
    assert!(
        r.errors[0].contains("unauthorized"),
        "errors: {:?}",
        r.errors
    );
}
