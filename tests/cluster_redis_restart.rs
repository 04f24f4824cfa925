//! Redis restarted (without persistence) under a steady publish stream, two nodes,
//! `wshub::client` clients on both (feature `redis`). While Redis is down publishes
//! fail with `Error::Unavailable`; once it is back the hubs resubscribe by themselves;
//! every client has every message published successfully, in order and once, or was
//! told `NotRecovered` (the restart lost the history); and the cluster serves again:
//! the publishes after the restart reach every client.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::client::next_event;
use common::hub::{ChatMessage, serve, test_hub_builder};
use common::services::RedisServer;
use wshub::Hub;
use wshub::client::{Backoff, Client, RoomEvent, Subscription};
use wshub::redis::{RedisBackplane, RedisOptions};

async fn node(redis: &RedisServer) -> (Hub, String) {
    let mut options = RedisOptions::default();
    options.command_timeout = Duration::from_millis(300);
    options.reconnect_min = Duration::from_millis(20);
    options.reconnect_max = Duration::from_millis(200);
    let backplane = RedisBackplane::new(&redis.url(), options).unwrap();
    let hub = test_hub_builder().backplane(backplane).build();
    let url = serve(&hub).await;
    (hub, url)
}

/// What the publisher saw.
#[derive(Default)]
struct Log {
    ok: Vec<u64>,
    failed: Vec<(u64, String)>,
}

/// Every event of `sub` until it has received message `last`: the indices received,
/// and how many times it was told it did not recover.
async fn collect(sub: &mut Subscription<ChatMessage>, last: u64) -> (Vec<u64>, usize) {
    let (mut got, mut not_recovered) = (Vec::new(), 0);
    loop {
        match next_event(sub).await {
            RoomEvent::Message(m) => {
                let i: u64 = m.data.text.parse().unwrap();
                got.push(i);
                if i == last {
                    return (got, not_recovered);
                }
            }
            RoomEvent::NotRecovered { .. } => not_recovered += 1,
            RoomEvent::Recovered { .. }
            | RoomEvent::PresenceDiff(_)
            | RoomEvent::PresenceReset(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_loses_nothing_silently() {
    let redis = RedisServer::start();
    let (a, url_a) = node(&redis).await;
    let (_b, url_b) = node(&redis).await;

    let mut subs = Vec::new();
    for url in [&url_a, &url_a, &url_b, &url_b] {
        let client = Client::builder(url.as_str())
            .configure(|o| {
                o.backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(100))
            })
            .build()
            .unwrap();
        let sub = client.join::<ChatMessage>("chat:s").await.unwrap();
        subs.push((client, sub));
    }

    let log = Arc::new(Mutex::new(Log::default()));
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let (count_tx, mut count_rx) = tokio::sync::watch::channel(0usize);
    let (failed_tx, mut failed_rx) = tokio::sync::watch::channel(0usize);
    let room = a.room::<ChatMessage>("chat:s").unwrap();
    let publisher = tokio::spawn({
        let log = log.clone();
        async move {
            let mut i = 0u64;
            while !*stop_rx.borrow_and_update() {
                i += 1;
                let r = room
                    .publish(ChatMessage {
                        text: i.to_string(),
                    })
                    .await;
                let (ok, failed) = {
                    let mut log = log.lock().unwrap();
                    match r {
                        Ok(_) => log.ok.push(i),
                        Err(e) => log.failed.push((i, e.to_string())),
                    }
                    (log.ok.len(), log.failed.len())
                };
                count_tx.send_replace(ok);
                failed_tx.send_replace(failed);
                // Pacing, not synchronisation: a steady stream rather than a flood.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });

    // The stream flows; Redis goes down; publishes fail; Redis comes back empty.
    count_rx.wait_for(|n| *n >= 30).await.unwrap();
    let mut redis = redis;
    redis.kill();
    failed_rx.wait_for(|n| *n >= 3).await.unwrap();
    let redis = tokio::task::spawn_blocking(move || {
        redis.start_again();
        redis
    })
    .await
    .unwrap();
    let before = log.lock().unwrap().ok.len();
    // Serving again: 40 more successful publishes after the restart.
    tokio::time::timeout(
        Duration::from_secs(30),
        count_rx.wait_for(|n| *n >= before + 40),
    )
    .await
    .expect("the cluster never served again")
    .unwrap();
    stop_tx.send_replace(true);
    publisher.await.unwrap();

    let log = std::mem::take(&mut *log.lock().unwrap());
    assert!(
        !log.failed.is_empty(),
        "publishes during the outage must fail, none did"
    );
    for (_, e) in &log.failed {
        assert!(e.contains("unavailable"), "{e}");
    }
    let last = *log.ok.last().unwrap();
    let tail: Vec<u64> = log.ok[log.ok.len() - 20..].to_vec();
    for (_, sub) in &mut subs {
        let (got, not_recovered) = collect(sub, last).await;
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "in order, once: {got:?}"
        );
        let missing: Vec<u64> = log
            .ok
            .iter()
            .copied()
            .filter(|i| !got.contains(i))
            .collect();
        assert!(
            missing.is_empty() || not_recovered > 0,
            "missed {missing:?} without being told"
        );
        // The restart lost the room's history and its epoch: no node can vouch for
        // continuity, and every client is told so.
        assert!(not_recovered >= 1, "a lost epoch must be reported");
        for i in &tail {
            assert!(
                got.contains(i),
                "message {i} published after the restart never arrived"
            );
        }
        assert!(
            got.iter().all(|i| log.ok.contains(i)),
            "only successful publishes arrive"
        );
    }
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_publish_while_redis_is_down_is_unavailable() {
    let mut redis = RedisServer::start();
    let (_a, url) = node(&redis).await;
    let mut c = common::hub::Client::connect(&url).await;
    c.join_ok("chat:d").await;
    redis.kill();
    let r = c.publish("chat:d", serde_json::json!({"text": "x"})).await;
    assert_eq!(
        (&r["ok"], &r["error"]["code"]),
        (&serde_json::json!(false), &serde_json::json!("unavailable")),
        "{r}"
    );
    let r = c.join("chat:other", serde_json::json!({})).await;
    assert_eq!(r["error"]["code"], "unavailable", "{r}");
    redis.start_again();
    // Back by itself: the hub resubscribes, finds the room's epoch gone and closes
    // its member with 1013 (it re-joins and is told `recovered: false`).
    assert_eq!(c.expect_close().await, 1013);
    let mut c = common::hub::Client::connect(&url).await;
    c.join_ok("chat:d").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = c.publish("chat:d", serde_json::json!({"text": "y"})).await;
        if r["ok"] == true {
            assert_eq!(
                r["data"]["seq"], 1,
                "a restarted Redis starts a new epoch: {r}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never served again: {r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
