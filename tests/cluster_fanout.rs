//! Two hub nodes on one Redis (feature `redis`): a message published on either node,
//! by a client or from Rust, reaches the room's members on both nodes, and every
//! member sees the room's messages in the same order (`seq` 1, 2, 3, ... with no gap).

mod common;

use common::hub::{ChatMessage, Client, serve, test_hub_builder};
use common::services::RedisServer;
use serde_json::json;
use wshub::Hub;
use wshub::redis::{RedisBackplane, RedisOptions};

/// A node of the test cluster on `redis`, served on 127.0.0.1:0.
pub async fn node(redis: &RedisServer) -> (Hub, String) {
    let backplane = RedisBackplane::new(&redis.url(), RedisOptions::default()).unwrap();
    let hub = test_hub_builder().backplane(backplane).build();
    let url = serve(&hub).await;
    (hub, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_on_any_node_reach_every_node_in_one_order() {
    let redis = RedisServer::start();
    let (_a, url_a) = node(&redis).await;
    let (b, url_b) = node(&redis).await;

    let mut on_a = Client::connect(&url_a).await;
    let mut on_b = Client::connect(&url_b).await;
    assert_eq!(on_a.join_ok("chat:lobby").await["data"]["seq"], 0);
    on_b.join_ok("chat:lobby").await;

    // Interleaved publishers on both nodes, clients and Rust.
    let room = b.room::<ChatMessage>("chat:lobby").unwrap();
    let mut sent = Vec::new();
    // Messages `on_a` received while waiting for its replies.
    let mut early = Vec::new();
    for i in 0..10 {
        let text = format!("a{i}");
        let (r, others) = on_a
            .request(json!({"op": "publish", "room": "chat:lobby", "data": {"text": text}}))
            .await;
        assert_eq!(r["ok"], true, "{r}");
        early.extend(others);
        sent.push(text);
        let text = format!("b{i}");
        on_b.send(json!({"op": "publish", "room": "chat:lobby", "data": {"text": text}}))
            .await;
        sent.push(text);
        let text = format!("rust{i}");
        let p = room
            .publish(ChatMessage { text: text.clone() })
            .await
            .unwrap();
        assert!(p.position.is_some());
        sent.push(text);
    }
    // Each client: 30 messages, seq 1..=30, the same texts in the same order on both.
    let mut seen = Vec::new();
    for (i, c) in [&mut on_a, &mut on_b].into_iter().enumerate() {
        let mut texts = Vec::new();
        let mut seq = 0;
        let mut early = if i == 0 {
            std::mem::take(&mut early)
        } else {
            Vec::new()
        }
        .into_iter();
        while texts.len() < 30 {
            let m = match early.next() {
                Some(m) => m,
                None => c.recv().await,
            };
            if m["op"] == "reply" {
                continue;
            }
            assert_eq!(m["op"], "message", "{m}");
            seq += 1;
            assert_eq!(m["seq"], seq, "{m}");
            texts.push(m["data"]["text"].as_str().unwrap().to_owned());
        }
        let mut sorted = texts.clone();
        sorted.sort();
        let mut expected = sent.clone();
        expected.sort();
        assert_eq!(sorted, expected);
        seen.push(texts);
    }
    assert_eq!(seen[0], seen[1], "both nodes deliver in one order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publish_reply_counts_this_nodes_deliveries() {
    let redis = RedisServer::start();
    let (_a, url_a) = node(&redis).await;
    let (_b, url_b) = node(&redis).await;
    let mut a1 = Client::connect(&url_a).await;
    let mut a2 = Client::connect(&url_a).await;
    let mut b1 = Client::connect(&url_b).await;
    for c in [&mut a1, &mut a2, &mut b1] {
        c.join_ok("chat:x").await;
    }
    let (reply, _) = a1
        .request(
            json!({"op": "publish", "room": "chat:x", "data": {"text": "hi"}, "ephemeral": true}),
        )
        .await;
    assert_eq!(reply["data"]["delivered"], 2, "{reply}");
    let m = b1.recv().await;
    assert_eq!(m["data"]["text"], "hi");
    assert!(m.get("seq").is_none(), "ephemeral: no position");
}
