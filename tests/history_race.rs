//! Publishes racing recovering joins, many times over: a client that joins with
//! `since` while the room is being published to gets every message after `since`
//! exactly once and in order, across the replay and the live stream.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use wshub::{HistoryLimits, Hub, Namespace};

use common::hub::{ChatMessage, Client, serve};

const ROUNDS: usize = 30;
/// Messages published in each round, while clients join.
const PER_ROUND: u64 = 600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovering_joins_never_skip_or_repeat_while_publishes_race() {
    let hub = Hub::builder()
        .namespace(
            Namespace::<ChatMessage>::new("chat")
                .history(HistoryLimits::new(10_000, Duration::from_secs(600))),
        )
        .configure(|c| {
            c.max_recovery = 10_000;
            c.rate_per_second = 1_000_000.0;
            c.rate_burst = 1_000_000.0;
        })
        .build();
    let url = serve(&hub).await;
    let mut outcomes = [0usize; 2]; // joins whose replay was empty / not empty
    for round in 0..ROUNDS {
        let name = format!("chat:race{round}");
        let room = hub.room::<ChatMessage>(&name).unwrap();
        // Some history first, so `since` points into it.
        for i in 1..=50u64 {
            room.publish(ChatMessage {
                text: i.to_string(),
            })
            .await
            .unwrap();
        }
        let epoch = room.position().await.unwrap().unwrap().epoch;
        let stop = Arc::new(AtomicBool::new(false));
        let publisher = {
            let room = room.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                for i in 51..=50 + PER_ROUND {
                    room.publish(ChatMessage {
                        text: i.to_string(),
                    })
                    .await
                    .unwrap();
                    if i % 8 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                stop.store(true, Ordering::Release);
            })
        };
        // Two clients join at different moments, recovering from different places.
        let mut joiners = Vec::new();
        for (k, since) in [(0u64, 10 + round as u64), (1, 45)] {
            let url = url.clone();
            let name = name.clone();
            let epoch = epoch.clone();
            joiners.push(tokio::spawn(async move {
                for _ in 0..k * 3 + round as u64 % 5 {
                    tokio::task::yield_now().await;
                }
                let mut c = Client::connect(&url).await;
                c.send(json!({"op": "join", "room": name, "id": 1,
                              "since": {"seq": since, "epoch": &*epoch}}))
                    .await;
                let mut seen: Vec<u64> = Vec::new();
                let mut reply: Option<Value> = None;
                while seen.last().copied() != Some(50 + PER_ROUND) {
                    let m = c.recv().await;
                    match m["op"].as_str() {
                        Some("reply") => {
                            assert!(seen.is_empty(), "a message came before the reply");
                            assert_eq!(m["data"]["recovered"], true, "{m}");
                            reply = Some(m);
                        }
                        Some("message") => {
                            assert!(reply.is_some(), "a message before the reply: {m}");
                            let seq = m["seq"].as_u64().unwrap();
                            assert_eq!(m["data"]["text"], seq.to_string());
                            seen.push(seq);
                        }
                        _ => {}
                    }
                }
                let reply = reply.unwrap();
                let expected: Vec<u64> = (since + 1..=50 + PER_ROUND).collect();
                assert_eq!(seen, expected, "round {round}: a gap or a duplicate");
                let replayed = reply["data"]["replayed"].as_u64().unwrap();
                // The reply's position is where the replay ends and live begins.
                assert_eq!(reply["data"]["seq"].as_u64().unwrap(), since + replayed);
                replayed
            }));
        }
        for j in joiners {
            let replayed = j.await.unwrap();
            outcomes[usize::from(replayed > 0)] += 1;
        }
        publisher.await.unwrap();
        assert!(stop.load(Ordering::Acquire));
    }
    // Every join recovered from inside the history, so it replayed something.
    assert_eq!(outcomes[0], 0, "{outcomes:?}");
}
