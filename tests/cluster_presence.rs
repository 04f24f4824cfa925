//! Cluster-wide presence (feature `redis`): a user's first connection anywhere
//! announces the join and their last anywhere the leave; a node that shuts down
//! gracefully has them leave at once. (A node killed with `kill -9`, whose users leave
//! within the heartbeat bound: `cluster_presence_kill9`.)

mod common;

use std::time::Duration;

use common::hub::{Client, test_hub_builder};
use common::services::RedisServer;
use wshub::auth::StaticTokens;
use wshub::redis::{RedisBackplane, RedisOptions};
use wshub::{Hub, Identity};

const QUIET: Duration = Duration::from_millis(400);

fn node_hub(redis: &RedisServer, ttl: Duration) -> Hub {
    let mut options = RedisOptions::default();
    options.presence_ttl = ttl;
    let backplane = RedisBackplane::new(&redis.url(), options).unwrap();
    test_hub_builder()
        .authenticator(
            StaticTokens::new()
                .with("tok-alice", Identity::new("alice", "Alice"))
                .with("tok-bob", Identity::new("bob", "Bob"))
                .with("tok-carol", Identity::new("carol", "Carol")),
        )
        .backplane(backplane)
        .build()
}

async fn serve(hub: &Hub) -> String {
    common::hub::serve(hub).await
}

async fn connect_as(url: &str, token: &str) -> Client {
    let bearer = format!("Bearer {token}");
    let mut c = Client::connect_with(url, &[("authorization", &bearer)])
        .await
        .unwrap();
    c.watch_presence = true;
    c
}

/// The next diff about `user`: `"join"` or `"leave"`.
async fn diff_about(c: &mut Client, user: &str) -> &'static str {
    let d = c.recv_diff_about(user).await;
    if d["joins"].get(user).is_some() {
        "join"
    } else {
        "leave"
    }
}

/// Nothing about `user` for a while.
async fn quiet_about(c: &mut Client, user: &str) {
    let deadline = tokio::time::Instant::now() + QUIET;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.recv_nothing(left).await {
            None => return,
            Some(d) => assert!(
                d["joins"].get(user).is_none() && d["leaves"].get(user).is_none(),
                "unexpected {d}"
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_on_two_nodes_are_one_user() {
    let redis = RedisServer::start();
    let (a, b) = (
        node_hub(&redis, Duration::from_secs(15)),
        node_hub(&redis, Duration::from_secs(15)),
    );
    let (url_a, url_b) = (serve(&a).await, serve(&b).await);

    let mut bob = connect_as(&url_a, "tok-bob").await;
    bob.join_ok("chat:p").await;
    let mut carol = connect_as(&url_b, "tok-carol").await;
    let r = carol.join_ok("chat:p").await;
    assert!(
        r["data"]["presence"]["bob"].is_object(),
        "bob (node A) in carol's snapshot: {r}"
    );
    assert_eq!(diff_about(&mut bob, "carol").await, "join");

    // Alice's first tab, on node B: one join, seen on both nodes.
    let mut tab1 = connect_as(&url_b, "tok-alice").await;
    tab1.join_ok("chat:p").await;
    assert_eq!(diff_about(&mut bob, "alice").await, "join");
    assert_eq!(diff_about(&mut carol, "alice").await, "join");
    // Her second tab, on node A: no new join anywhere; her snapshot has both tabs.
    let mut tab2 = connect_as(&url_a, "tok-alice").await;
    let r = tab2.join_ok("chat:p").await;
    assert_eq!(
        r["data"]["presence"]["alice"]["metas"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "{r}"
    );
    quiet_about(&mut bob, "alice").await;
    quiet_about(&mut carol, "alice").await;
    // One tab closes: still present.
    tab1.close().await;
    quiet_about(&mut bob, "alice").await;
    quiet_about(&mut carol, "alice").await;
    // The last one: one leave, on both nodes.
    tab2.close().await;
    assert_eq!(diff_about(&mut bob, "alice").await, "leave");
    assert_eq!(diff_about(&mut carol, "alice").await, "leave");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_removes_its_users_at_once() {
    // A heartbeat far longer than the test: only the goodbye can explain the leave.
    let ttl = Duration::from_secs(600);
    let redis = RedisServer::start();
    let (a, b) = (node_hub(&redis, ttl), node_hub(&redis, ttl));
    let (url_a, url_b) = (serve(&a).await, serve(&b).await);
    let mut bob = connect_as(&url_a, "tok-bob").await;
    bob.join_ok("chat:g").await;
    let mut alice = connect_as(&url_b, "tok-alice").await;
    alice.join_ok("chat:g").await;
    assert_eq!(diff_about(&mut bob, "alice").await, "join");
    assert!(b.shutdown().await);
    assert_eq!(diff_about(&mut bob, "alice").await, "leave");
}
