//! Recovery across nodes (feature `redis`): a client cut from node A re-joins on node
//! B with its position and gets exactly what it missed, then the live stream, with no
//! gap and no duplicate, even while messages keep coming; a position the cluster
//! cannot vouch for gets `recovered: false`.

mod common;

use common::hub::{ChatMessage, Client, serve, test_hub_builder};
use common::services::RedisServer;
use serde_json::{Value, json};
use wshub::Hub;
use wshub::redis::{RedisBackplane, RedisOptions};

async fn node(redis: &RedisServer) -> (Hub, String) {
    let backplane = RedisBackplane::new(&redis.url(), RedisOptions::default()).unwrap();
    let hub = test_hub_builder().backplane(backplane).build();
    let url = serve(&hub).await;
    (hub, url)
}

fn say(text: impl Into<String>) -> ChatMessage {
    ChatMessage { text: text.into() }
}

/// Joins `room` with `since` and returns the reply and what followed it up to `n`
/// messages of the room.
async fn join_since(c: &mut Client, room: &str, since: Value) -> Value {
    let (reply, others) = c
        .request(json!({"op": "join", "room": room, "since": since}))
        .await;
    assert!(
        others.is_empty(),
        "nothing of the room before the reply: {others:?}"
    );
    assert_eq!(reply["ok"], true, "{reply}");
    reply["data"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cut_from_one_node_recovers_on_another() {
    let redis = RedisServer::start();
    let (a, url_a) = node(&redis).await;
    let (b, url_b) = node(&redis).await;
    let on_a = a.room::<ChatMessage>("chat:r").unwrap();
    let on_b = b.room::<ChatMessage>("chat:r").unwrap();

    let mut c = Client::connect(&url_a).await;
    c.join_ok("chat:r").await;
    for i in 1..=3 {
        on_a.publish(say(format!("m{i}"))).await.unwrap();
    }
    let mut last = Value::Null;
    for seq in 1..=3 {
        last = c.recv().await;
        assert_eq!(last["seq"], seq);
    }
    let epoch = last["epoch"].clone();
    // Cut: the connection is dropped without a close.
    drop(c);

    for i in 4..=7 {
        on_b.publish(say(format!("m{i}"))).await.unwrap();
    }
    let mut c = Client::connect(&url_b).await;
    let data = join_since(&mut c, "chat:r", json!({"seq": 3, "epoch": epoch})).await;
    assert_eq!(
        (
            &data["recovered"],
            &data["replayed"],
            &data["seq"],
            &data["epoch"]
        ),
        (&json!(true), &json!(4), &json!(7), &epoch)
    );
    for seq in 4..=7 {
        let m = c.recv().await;
        assert_eq!(
            (&m["seq"], &m["data"]["text"]),
            (&json!(seq), &json!(format!("m{seq}")))
        );
    }
    on_a.publish(say("m8")).await.unwrap();
    let m = c.recv().await;
    assert_eq!((&m["seq"], &m["data"]["text"]), (&json!(8), &json!("m8")));
    assert_eq!(
        c.recv_nothing(std::time::Duration::from_millis(200)).await,
        None
    );

    // Another epoch: not recovered, and said so.
    let mut d = Client::connect(&url_a).await;
    let data = join_since(&mut d, "chat:r", json!({"seq": 3, "epoch": "0000dead"})).await;
    assert_eq!(
        (&data["recovered"], &data["replayed"]),
        (&json!(false), &json!(0))
    );
    assert_eq!(data["seq"], 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_meets_a_steady_stream_with_no_gap_and_no_duplicate() {
    const TOTAL: u64 = 150;
    let redis = RedisServer::start();
    let (a, url_a) = node(&redis).await;
    let (_b, url_b) = node(&redis).await;
    let room = a.room::<ChatMessage>("chat:stream").unwrap();
    let first = room.publish(say("0")).await.unwrap().position.unwrap();

    // Published from node A without a pause while clients join on both nodes.
    let publisher = tokio::spawn(async move {
        for i in 2..=TOTAL {
            room.publish(say(i.to_string())).await.unwrap();
        }
    });
    let mut clients = Vec::new();
    for i in 0..6 {
        let url = if i % 2 == 0 { &url_b } else { &url_a };
        let mut c = Client::connect(url).await;
        let data = join_since(
            &mut c,
            "chat:stream",
            json!({"seq": 1, "epoch": &*first.epoch}),
        )
        .await;
        assert_eq!(data["recovered"], true, "{data}");
        clients.push(c);
    }
    publisher.await.unwrap();
    for mut c in clients {
        // Replayed and live together: exactly 2..=TOTAL, in order.
        for seq in 2..=TOTAL {
            let m = c.recv().await;
            assert_eq!(m["seq"], seq, "{m}");
        }
        assert_eq!(
            c.recv_nothing(std::time::Duration::from_millis(100)).await,
            None
        );
    }
}
