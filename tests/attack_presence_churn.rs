//! Issue 7, attack 4: presence churn amplification. Fifty accounts each join and leave a
//! busy room twenty times a second with the largest allowed meta, next to two hundred
//! members, one of whom reads at only 100 KB/s. Before, every join and leave was a diff
//! to every member (2,000 diffs a second, each with a 1 KiB meta) and the slow reader
//! was closed with 1013 within 10 s.
//!
//! Defended: joins and leaves are rate-limited per connection, and presence is
//! coalesced per tick with a byte budget, so what one member receives about presence is
//! bounded (documented on `HubConfig::presence_diff_budget`: at most
//! `presence_diff_budget` plus one entry per `presence_tick`). The slow reader stays
//! connected and usable.
//!
//! Runs on tokio's paused clock over in-memory pipes: deterministic, no sockets.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::hub::test_hub_builder;
use common::memory::{Incoming, MemClient, peer};
use serde_json::json;
use tokio::time::{Instant, sleep, sleep_until};

const ROOM: &str = "chat:busy";
const MEMBERS: usize = 200;
const CHURNERS: usize = 50;
const RUN: Duration = Duration::from_secs(10);

/// What one reader saw of presence.
#[derive(Default)]
struct Seen {
    messages: AtomicU64,
    diffs: AtomicU64,
    diff_bytes: AtomicU64,
    closed: AtomicBool,
}

/// Reads `c` until the pipe ends, counting presence diffs; with `rate`, reads no faster
/// than `rate` bytes per second (a slow reader: its pipe is small, so the server's
/// writes wait for it, and its outbound queue holds the rest).
fn spawn_reader(mut c: MemClient, seen: Arc<Seen>, rate: Option<f64>) {
    tokio::spawn(async move {
        loop {
            match c.recv().await {
                Incoming::Json(v, len) => {
                    if v["op"] == "message" {
                        seen.messages.fetch_add(1, Ordering::Relaxed);
                    }
                    if v["op"] == "presence_diff" {
                        seen.diffs.fetch_add(1, Ordering::Relaxed);
                        seen.diff_bytes.fetch_add(len as u64, Ordering::Relaxed);
                    }
                    if let Some(rate) = rate {
                        sleep(Duration::from_secs_f64(len as f64 / rate)).await;
                    }
                }
                Incoming::Close(code, reason) => {
                    eprintln!("reader closed: {code} {reason}");
                    seen.closed.store(true, Ordering::Relaxed);
                    return;
                }
                Incoming::End => return,
            }
        }
    });
}

#[tokio::test(start_paused = true)]
async fn presence_churn_is_coalesced_and_bounded_per_member() {
    // Exact presence at this size (200 members is the default big-room threshold, over
    // which members get counts instead of diffs: `presence_big_bound.rs`): this test is
    // about the byte budget of exact diffs, which an application may keep for rooms
    // this big.
    let hub = test_hub_builder()
        .configure(|c| c.presence_big_room = 1_000)
        .build();
    let config = hub.config().clone();
    let max_meta = config.max_presence_meta;

    // The busy room: members from many hosts, each reading everything.
    let member_seen = Arc::new(Seen::default());
    for i in 0..MEMBERS {
        let mut c = MemClient::connect(
            &hub,
            peer(&format!("127.1.{}.{}", i / 200, i % 200 + 1), 1),
            None,
            64 << 10,
        )
        .await;
        let r = c.request(json!({"op": "join", "room": ROOM})).await;
        assert_eq!(r["ok"], true, "{r}");
        spawn_reader(c, member_seen.clone(), None);
    }
    // The legitimate member who reads at 100 KB/s through a 16 KiB pipe.
    let mut slow = MemClient::connect(&hub, peer("127.2.0.1", 1), None, 16 << 10).await;
    let r = slow
        .request(json!({"op": "join", "room": ROOM, "meta": {"name": "slow"}}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let slow_seen = Arc::new(Seen::default());
    // Let the joins above settle into one announced state before measuring.
    sleep(config.presence_tick * 3).await;

    // The attack's 1 KiB metas are refused now (the default limit is 256 bytes).
    let mut probe = MemClient::connect(&hub, peer("127.4.0.1", 1), None, 64 << 10).await;
    let r = probe
        .request(json!({"op": "join", "room": ROOM, "meta": {"pad": "x".repeat(1000)}}))
        .await;
    assert_eq!(r["error"]["code"], "too_large", "{r}");

    // Fifty churners from fifty hosts, each trying 20 joins and 20 leaves a second
    // with the largest meta allowed.
    let meta = json!({"pad": "x".repeat(max_meta - 10)});
    assert!(meta.to_string().len() <= max_meta);
    let accepted = Arc::new(AtomicU64::new(0));
    let limited = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    spawn_reader(slow, slow_seen.clone(), Some(100_000.0));
    let mut churners = Vec::new();
    for i in 0..CHURNERS {
        let mut c =
            MemClient::connect(&hub, peer(&format!("127.3.{i}.1"), 1), None, 64 << 10).await;
        let (meta, accepted, limited) = (meta.clone(), accepted.clone(), limited.clone());
        churners.push(tokio::spawn(async move {
            let mut next = start;
            let mut join = true;
            while next < start + RUN {
                next += Duration::from_millis(25);
                let op = if join {
                    json!({"op": "join", "room": ROOM, "meta": meta})
                } else {
                    json!({"op": "leave", "room": ROOM})
                };
                let r = c.request(op).await;
                if r["ok"] == true {
                    accepted.fetch_add(1, Ordering::Relaxed);
                    join = !join;
                } else {
                    let code = r["error"]["code"].as_str().unwrap_or_default().to_owned();
                    assert!(code == "rate_limited" || code == "not_joined", "{r}");
                    limited.fetch_add(1, Ordering::Relaxed);
                }
                sleep_until(next).await;
            }
            c
        }));
    }
    let mut churners_done = Vec::new();
    for t in churners {
        churners_done.push(t.await.unwrap());
    }
    sleep(config.presence_tick * 3).await;
    let elapsed = start.elapsed().as_secs_f64();

    // Joins and leaves are limited per connection: burst + rate x time each.
    let per_conn_max = config.membership_burst + config.membership_rate_per_second * elapsed;
    let accepted = accepted.load(Ordering::Relaxed);
    assert!(
        accepted as f64 <= CHURNERS as f64 * (per_conn_max + 1.0),
        "{accepted} joins and leaves accepted"
    );
    assert!(
        limited.load(Ordering::Relaxed) > accepted,
        "the limit did refuse"
    );

    // What one member received about presence: at most one diff per tick, and at most
    // the budget plus one entry per diff.
    let ticks = elapsed / config.presence_tick.as_secs_f64() + 2.0;
    let entry_max = (max_meta + 100) as f64;
    let bound_bytes = ticks * (config.presence_diff_budget as f64 + entry_max);
    {
        let (who, seen) = ("slow member", &slow_seen);
        let diffs = seen.diffs.load(Ordering::Relaxed) as f64;
        let bytes = seen.diff_bytes.load(Ordering::Relaxed) as f64;
        assert!(diffs <= ticks, "{who}: {diffs} diffs in {elapsed} s");
        assert!(
            bytes <= bound_bytes,
            "{who}: {bytes} bytes of presence in {elapsed} s"
        );
        assert!(diffs > 0.0, "{who} saw the churn");
        assert!(!seen.closed.load(Ordering::Relaxed), "{who} was closed");
        eprintln!("{who}: {diffs} diffs, {bytes} bytes in {elapsed:.1} s (bound {bound_bytes:.0})");
    }
    // The other members too, together.
    let member_diffs = member_seen.diffs.load(Ordering::Relaxed) as f64;
    assert!(member_diffs <= ticks * MEMBERS as f64, "{member_diffs}");
    assert!(
        !member_seen.closed.load(Ordering::Relaxed),
        "a member was closed"
    );
    assert_eq!(hub.stats().slow_consumers, 0);

    // The slow member is still served: a server publish reaches it.
    let room = hub.room::<common::hub::ChatMessage>(ROOM).unwrap();
    let n = room
        .publish(common::hub::ChatMessage {
            text: "still here".into(),
        })
        .await
        .unwrap()
        .delivered;
    assert!(n > MEMBERS, "delivered to {n}");
    sleep(Duration::from_secs(1)).await;
    assert_eq!(slow_seen.messages.load(Ordering::Relaxed), 1);
    assert!(!slow_seen.closed.load(Ordering::Relaxed));
    drop(churners_done);
}
