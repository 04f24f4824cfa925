//! The chat example as a cluster in a real browser (headless Chromium driven by
//! `tests/browser/chat_cluster.mjs`): three chat nodes on one Redis behind nginx with
//! the repository's `deploy/nginx.conf` (round-robin, no stickiness), as
//! `deploy/cluster.sh` runs them. Two users whose pages' WebSockets are on different
//! nodes see each other in the online list and exchange messages.
//!
//! Needs Node.js >= 20, Chromium and `npm ci --prefix tests/peers` (as
//! `tests/browser_chat.rs`), and redis-server and nginx (as the cluster tests).
#![cfg(all(feature = "axum", feature = "tls", feature = "jwt", feature = "redis"))]

#[path = "../examples/chat.rs"]
#[allow(dead_code)]
mod chat;
mod common;
#[path = "browser/support.rs"]
mod support;

use std::time::Duration;

use chat::{ChatOptions, ChatServer};
use common::cluster::nginx_for;
use common::services::RedisServer;
use support::run_script;

/// The indexes of the nodes holding `user`'s connections.
fn nodes_of(nodes: &[ChatServer], user: &str) -> Vec<usize> {
    nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.hub.user_connections(user).into_iter().map(move |_| i))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_on_two_nodes_chat_through_nginx() {
    let redis = RedisServer::start();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let options = ChatOptions {
            // One secret for all nodes: a token signed by one is valid on every one.
            secret: Some(b"browser cluster test key".to_vec()),
            redis: Some(redis.url()),
            trusted_proxies: vec!["127.0.0.1/32".to_owned()],
            ..ChatOptions::default()
        };
        nodes.push(chat::start(listener, options).await.expect("a chat node"));
    }
    let addrs: Vec<_> = nodes.iter().map(|n| n.local_addr).collect();
    let nginx = nginx_for(&addrs);
    let url = format!("http://{}", nginx.addr());

    let outcome = run_script(
        "chat_cluster.mjs",
        &url,
        Duration::from_secs(90),
        async |cmd: &str| -> Result<String, String> {
            if cmd != "where" {
                return Err(format!("unknown control command `{cmd}`"));
            }
            let (a, b) = (nodes_of(&nodes, "alice"), nodes_of(&nodes, "bob"));
            Ok(match (&a[..], &b[..]) {
                ([a], [b]) if a != b => format!("apart {a} {b}"),
                ([_], [_]) => "together".to_owned(),
                _ => format!("moving {a:?} {b:?}"),
            })
        },
    )
    .await;
    let report = outcome.assert_ok();
    let apart = report["where"].as_str().unwrap_or_default().to_owned();
    assert!(apart.starts_with("apart "), "{}", outcome.report());
    // Asked while both pages were online, after the messages went both ways: still
    // on the same two different nodes.
    let last = outcome.controls.last().map(|(_, answer)| answer.clone());
    assert_eq!(last, Some(format!("ok {apart}")), "{}", outcome.report());
    drop(nginx);
    for n in nodes {
        n.hub.shutdown().await;
    }
}
