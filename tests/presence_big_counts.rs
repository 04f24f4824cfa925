//! A big room's count stays exact through churn: users with several tabs, tabs that
//! close, users who leave and come back. Members get it at a steady cadence (at most
//! once per `presence_count_interval`, only when it changed), and the last count after
//! the churn, like every `presence_page` reply during it, is the truth.
//!
//! Paused clock, in-memory pipes, a deterministic pseudo-random walk.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::crowd::{connect, hub_builder, join};
use common::memory::MemClient;
use serde_json::json;
use tokio::time::Instant;

const ROOM: &str = "room:stadium";
const USERS: usize = 12;

#[tokio::test(start_paused = true)]
async fn counts_stay_exact_through_churn() {
    // Always big (above 0 users).
    let hub = hub_builder(USERS + 1, 0).build();
    let interval = hub.config().presence_count_interval;
    let mut watcher = connect(&hub, USERS, 0).await;
    let data = join(&mut watcher, ROOM).await;
    assert_eq!(data["count"], json!({"users": 1, "conns": 1}));

    // The model: open connections (in the room) per user.
    let mut open: BTreeMap<usize, Vec<MemClient>> = BTreeMap::new();
    let truth = |open: &BTreeMap<usize, Vec<MemClient>>| {
        let users = open.values().filter(|v| !v.is_empty()).count() + 1;
        let conns = open.values().map(Vec::len).sum::<usize>() + 1;
        json!({"users": users, "conns": conns})
    };
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut counts = Vec::new();
    let mut conn_no = 1;
    let start = Instant::now();
    for step in 0..120 {
        let user = (next() % USERS as u64) as usize;
        let tabs = open.entry(user).or_default();
        if tabs.len() < 3 && next() % 3 != 0 {
            let mut c = connect(&hub, user, conn_no).await;
            conn_no += 1;
            join(&mut c, ROOM).await;
            tabs.push(c);
        } else if let Some(mut c) = tabs.pop() {
            // Half leave the room, half close the connection.
            if next() % 2 == 0 {
                assert_eq!(
                    c.request(json!({"op": "leave", "room": ROOM})).await["ok"],
                    true
                );
            }
            drop(c);
        }
        if step % 10 == 0 {
            // A page reply's count is exact at the instant it is taken.
            let r = watcher
                .request_all(json!({"op": "presence_page", "room": ROOM}))
                .await;
            counts.extend(r.1.into_iter().map(|m| (Instant::now(), m)));
            // A closed pipe may still be leaving: let the hub see every close.
            tokio::task::yield_now().await;
            let r = watcher
                .request_all(json!({"op": "presence_page", "room": ROOM}))
                .await;
            counts.extend(r.1.into_iter().map(|m| (Instant::now(), m)));
            assert_eq!(r.0["data"]["count"], truth(&open), "step {step}");
        }
        let pause = Duration::from_millis(next() % 200);
        for (v, _, at) in watcher.drain(pause).await {
            counts.push((at, v));
        }
    }
    // After the churn the last count is the truth, within one interval and a tick.
    for (v, _, at) in watcher.drain(interval * 2).await {
        counts.push((at, v));
    }
    assert!(start.elapsed() > Duration::from_secs(10));
    assert!(
        counts.iter().all(|(_, m)| m["op"] == "presence_count"),
        "{counts:?}"
    );
    let last = &counts.last().unwrap().1;
    assert_eq!(
        json!({"users": last["users"], "conns": last["conns"]}),
        truth(&open)
    );
    // A steady cadence: never two counts within an interval, never the same twice.
    for pair in counts.windows(2) {
        assert!(
            pair[1].0 - pair[0].0 >= interval,
            "counts {:?} apart",
            pair[1].0 - pair[0].0
        );
        assert_ne!(pair[0].1, pair[1].1, "an unchanged count is not resent");
    }
    assert!(counts.len() >= 5, "{} counts", counts.len());
}
