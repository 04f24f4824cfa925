//! What a member of a big room receives about presence is bounded per second whatever
//! the churn (`HubConfig::presence_big_room`, `PROTOCOL.md` section 6): at most one
//! `presence_diff` of `presence_diff_budget` bytes plus one entry per `presence_tick`,
//! and one `presence_count` per `presence_count_interval`. A member who watches
//! everyone (the worst case) stays within it under a churn that would send it far
//! more; a member who watches nobody gets one count a second.
//!
//! Paused clock, in-memory pipes, forty churners with the largest meta allowed.

mod common;

use std::time::Duration;

use common::crowd::{connect, hub_builder, join, user};
use common::memory::MemClient;
use serde_json::json;
use tokio::time::{Instant, sleep_until};
use wshub::{Identity, PresenceInterest};

const ROOM: &str = "room:arena";
const CHURNERS: usize = 40;
const RUN: Duration = Duration::from_secs(10);

/// `u00` watches everyone.
struct WatchAll;
impl PresenceInterest for WatchAll {
    fn watches(&self, _room: &str, member: &Identity) -> Vec<String> {
        if member.user_id == "u00" {
            (0..=CHURNERS + 2).map(user).collect()
        } else {
            Vec::new()
        }
    }
}

/// Counts the presence messages and bytes `c` receives until `until`.
fn spawn_counter(mut c: MemClient, until: Instant) -> tokio::task::JoinHandle<(u64, u64, u64)> {
    tokio::spawn(async move {
        let (mut diffs, mut counts, mut bytes) = (0, 0, 0);
        for (v, len, _) in c.drain(until - Instant::now()).await {
            let op = v["op"].as_str().unwrap_or_default();
            assert!(op.starts_with("presence_"), "{v}");
            if op == "presence_diff" {
                diffs += 1;
            } else {
                counts += 1;
            }
            bytes += len as u64;
        }
        (diffs, counts, bytes)
    })
}

#[tokio::test(start_paused = true)]
async fn a_members_presence_bytes_are_bounded_whatever_the_churn() {
    let hub = hub_builder(CHURNERS + 3, 0)
        .presence_interest(WatchAll)
        .configure(|c| c.presence_diff_budget = 1024)
        .build();
    let config = hub.config().clone();
    let mut watcher = connect(&hub, 0, 0).await;
    join(&mut watcher, ROOM).await;
    let mut idle = connect(&hub, 1, 1).await;
    join(&mut idle, ROOM).await;
    let _ = watcher.drain(config.presence_tick * 3).await;
    let _ = idle.drain(config.presence_tick * 3).await;

    let start = Instant::now();
    let end = start + RUN + config.presence_count_interval;
    let watched = spawn_counter(watcher, end);
    let unwatched = spawn_counter(idle, end);
    // Churners join and leave as fast as the membership limit lets them (5 a second
    // each), with the largest meta allowed.
    let meta = json!({"pad": "x".repeat(config.max_presence_meta - 10)});
    let mut tasks = Vec::new();
    for i in 0..CHURNERS {
        let mut c = connect(&hub, i + 2, i + 2).await;
        let meta = meta.clone();
        tasks.push(tokio::spawn(async move {
            let mut next = start;
            let mut joined = false;
            let mut accepted = 0;
            while next < start + RUN {
                let op = if joined {
                    json!({"op": "leave", "room": ROOM})
                } else {
                    json!({"op": "join", "room": ROOM, "meta": meta})
                };
                if c.request(op).await["ok"] == true {
                    joined = !joined;
                    accepted += 1;
                }
                next += Duration::from_millis(200);
                sleep_until(next).await;
            }
            accepted
        }));
    }
    let mut changes = 0;
    for t in tasks {
        changes += t.await.unwrap();
    }
    let (diffs, counts, bytes) = watched.await.unwrap();
    let (idle_diffs, idle_counts, idle_bytes) = unwatched.await.unwrap();
    let secs = (end - start).as_secs_f64();

    // The documented bound, per second: a diff of the budget plus one entry (the
    // largest meta, its server fields and the envelope) per tick, and a count
    // message per interval.
    let entry = (config.max_presence_meta + 120) as f64;
    let envelope = 64.0 + ROOM.len() as f64;
    let per_tick = config.presence_diff_budget as f64 + entry + envelope;
    let ticks_per_sec = 1.0 / config.presence_tick.as_secs_f64();
    let counts_per_sec = 1.0 / config.presence_count_interval.as_secs_f64();
    let bound = per_tick * ticks_per_sec + envelope * counts_per_sec;
    let rate = bytes as f64 / secs;
    eprintln!(
        "{changes} joins and leaves in {secs:.1} s; watcher: {diffs} diffs, {counts} counts, \
         {rate:.0} B/s (bound {bound:.0}); idle member: {idle_counts} counts, {idle_bytes} B"
    );
    // The churn is far above what the bound lets through: announcing every change
    // would be `changes` entries.
    assert!(
        changes as f64 * entry / secs > 2.0 * bound,
        "{changes} changes"
    );
    assert!(rate <= bound, "{rate:.0} B/s over the bound {bound:.0}");
    assert!(diffs as f64 <= secs * ticks_per_sec + 1.0, "{diffs} diffs");
    assert!(
        rate > bound / 4.0,
        "the watcher did hear of the churn: {rate:.0} B/s"
    );
    // A member who watches nobody: counts only, at most one per interval.
    assert_eq!(idle_diffs, 0);
    assert!(
        idle_counts as f64 <= secs * counts_per_sec + 1.0,
        "{idle_counts}"
    );
    assert!(idle_bytes as f64 / secs <= envelope * counts_per_sec + 20.0);
}
