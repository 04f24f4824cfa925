//! `RedisHistory` keeps the history contract (feature `redis`): `seq` 1, 2, 3 within
//! one epoch kept in Redis, shared by every store on the same Redis; bounded by count
//! (a recovery past an evicted message is refused) and by age (a stream whose
//! messages all aged out is freed and comes back with another epoch).

mod common;

use std::time::Duration;

use common::services::RedisServer;
use wshub::history::{HistoryLimits, HistoryQuery, HistoryStore};
use wshub::protocol::EncodedMessage;
use wshub::redis::{RedisHistory, RedisOptions};

fn msg(text: &str) -> EncodedMessage {
    EncodedMessage::new("chat:h", Some("ann"), &serde_json::json!({ "text": text })).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seq_is_shared_and_history_is_bounded_by_count() {
    let redis = RedisServer::start();
    let one = RedisHistory::new(&redis.url(), &RedisOptions::default()).unwrap();
    let two = RedisHistory::new(&redis.url(), &RedisOptions::default()).unwrap();
    let limits = HistoryLimits::new(3, Duration::from_secs(60));
    let mut epoch = None;
    for i in 1..=5u64 {
        // Two stores, as two nodes: one sequence.
        let store = if i % 2 == 0 { &one } else { &two };
        let m = store
            .append("chat:h", &msg(&i.to_string()), 1, limits)
            .await
            .unwrap();
        assert_eq!(m.seq, i);
        assert_eq!(*epoch.get_or_insert(m.epoch.clone()), m.epoch);
        let text = std::str::from_utf8(m.frame.payload()).unwrap();
        assert!(
            text.contains(&format!(r#""seq":{i},"epoch":"{}""#, m.epoch)),
            "{text}"
        );
    }
    let epoch = epoch.unwrap();
    let last = one
        .read("chat:h", HistoryQuery::Last(10), limits)
        .await
        .unwrap();
    let seqs: Vec<u64> = last.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [3, 4, 5]);
    assert_eq!(last.position.seq, 5);
    // Everything after 2 is kept: complete.
    let after = |seq| HistoryQuery::After {
        since: wshub::StreamPosition::new(seq, epoch.clone()),
        max: 100,
    };
    let r = two.read("chat:h", after(2), limits).await.unwrap();
    assert!(r.complete);
    assert_eq!(r.messages.len(), 3);
    // Message 2 was evicted by count: after 1 is not complete.
    let r = two.read("chat:h", after(1), limits).await.unwrap();
    assert!(!r.complete);
    assert!(r.messages.is_empty());
    // Nothing after the top: complete and empty.
    let r = two.read("chat:h", after(5), limits).await.unwrap();
    assert!(r.complete && r.messages.is_empty());
    // Ahead of the stream: refused.
    assert!(!two.read("chat:h", after(9), limits).await.unwrap().complete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_messages_aged_out_gets_another_epoch() {
    let redis = RedisServer::start();
    let store = RedisHistory::new(&redis.url(), &RedisOptions::default()).unwrap();
    let limits = HistoryLimits::new(100, Duration::from_millis(200));
    let first = store.append("chat:h", &msg("x"), 1, limits).await.unwrap();
    assert_eq!(first.seq, 1);
    // Redis expires the keys by its own clock: wait for that event (polling Redis,
    // the only way to see it), bounded.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while redis.command("EXISTS wshub:m:chat:h").trim() != ":0" {
        assert!(std::time::Instant::now() < deadline, "keys never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = store
        .read("chat:h", HistoryQuery::Last(10), limits)
        .await
        .unwrap();
    assert!(r.messages.is_empty());
    assert_eq!(r.position.seq, 0);
    assert_ne!(
        r.position.epoch, first.epoch,
        "a freed stream comes back with another epoch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_is_unavailable_not_a_hang() {
    let mut redis = RedisServer::start();
    let mut options = RedisOptions::default();
    options.command_timeout = Duration::from_millis(500);
    let store = RedisHistory::new(&redis.url(), &options).unwrap();
    let limits = HistoryLimits::default();
    store.append("chat:h", &msg("x"), 1, limits).await.unwrap();
    redis.kill();
    let e = store
        .append("chat:h", &msg("y"), 1, limits)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("history store unavailable: redis"),
        "{e}"
    );
    redis.start_again();
    // Reconnects by itself; the restarted Redis lost everything: a new epoch at 1.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let m = loop {
        match store.append("chat:h", &msg("z"), 1, limits).await {
            Ok(m) => break m,
            Err(_) => assert!(std::time::Instant::now() < deadline, "never reconnected"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(m.seq, 1);
}
