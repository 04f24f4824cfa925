//! `kill -9` of a node (feature `redis`): two chat nodes (the chat example) on one
//! Redis, one of them a process of its own. Alice is connected through that process,
//! Bob through the other node; the process is SIGKILLed, so it writes no leave and
//! says no goodbye. Alice leaves Bob's presence, announced to him as a leave diff,
//! within the documented bound: the dead node's heartbeat key expires in Redis at most
//! `presence_ttl` after its last refresh, and the next reconciliation (every third of
//! it) drops its entries, so about 4/3 of the ttl.
#![cfg(all(feature = "axum", feature = "tls", feature = "jwt", feature = "redis"))]

#[path = "../examples/chat.rs"]
#[allow(dead_code)]
mod chat;
mod common;

use std::time::{Duration, Instant};

use chat::{ChatAuth, ChatOptions};
use common::chat_process::ChatProcess;
use common::hub::Client;
use common::services::RedisServer;

const SECRET: &str = "kill -9 test key, shared by both nodes";
const ROOM: &str = "chat:lobby";

async fn connect(addr: std::net::SocketAddr, token: &str) -> Client {
    let mut c = Client::connect(&format!("ws://{addr}/ws?token={token}")).await;
    c.watch_presence = true;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_users_leave_the_other_nodes_presence() {
    // Short, so the test takes seconds; the default (15 s) behaves the same, slower.
    let ttl = Duration::from_millis(1200);
    let ttl_ms = ttl.as_millis().to_string();
    let redis = RedisServer::start();
    let url = redis.url();

    // The node that dies: the chat example, a process of its own.
    let mut doomed = ChatProcess::start(
        &["--redis", &url],
        &[
            ("CHAT_SECRET", SECRET),
            ("CHAT_PRESENCE_TTL_MS", &ttl_ms),
            ("RUST_LOG", "warn"),
        ],
    );
    // The node that survives, in this process.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let survivor = chat::start(
        listener,
        ChatOptions {
            secret: Some(SECRET.as_bytes().to_vec()),
            redis: Some(url.clone()),
            presence_ttl: Some(ttl),
            ..ChatOptions::default()
        },
    )
    .await
    .unwrap();
    // Tokens signed with the shared secret are valid on both nodes.
    let auth = ChatAuth::new(SECRET.as_bytes(), Duration::from_secs(3600));
    let alice_token = auth.login("Alice").unwrap().token;
    let bob_token = survivor.auth.login("Bob").unwrap().token;

    let mut bob = connect(survivor.local_addr, &bob_token).await;
    bob.join_ok(ROOM).await;
    let mut alice = connect(doomed.addr, &alice_token).await;
    let r = alice.join_ok(ROOM).await;
    assert!(
        r["data"]["presence"]["bob"].is_object(),
        "Bob (the other node) in Alice's snapshot: {r}"
    );
    let d = bob.recv_diff_about("alice").await;
    assert!(d["joins"]["alice"].is_object(), "{d}");

    let killed = Instant::now();
    doomed.kill9();
    // Nothing but the expiry in Redis can tell Bob's node: wait for the leave.
    let d = bob.recv_diff_about("alice").await;
    let took = killed.elapsed();
    assert!(d["leaves"]["alice"].is_object(), "{d}");
    // Shown with `--nocapture`.
    eprintln!("alice left bob's presence {took:?} after the kill (ttl {ttl:?})");
    assert_eq!(d["joins"], serde_json::json!({}), "{d}");
    // The bound is 4/3 of the ttl (plus a presence tick). It is measured on the real
    // clock, and cannot run on tokio's paused one: the heartbeat key expires inside
    // Redis, on Redis's clock, which a paused tokio clock does not move (and pausing
    // it would fire every Redis command's timeout at once). Generous for a loaded
    // machine: three times the bound.
    assert!(
        took < ttl * 4,
        "the leave took {took:?}; dead node's log:\n{}",
        doomed.log()
    );
    // Bob's node holds nobody of the dead node any more.
    let (r, _) = bob
        .request(serde_json::json!({"op": "presence", "room": ROOM}))
        .await;
    let users: Vec<&String> = r["data"]["presence"].as_object().unwrap().keys().collect();
    assert_eq!(users, ["bob"], "{r}");
    drop(alice);
}
