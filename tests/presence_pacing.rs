//! A room that keeps changing gets its presence diffs less and less often, down to one
//! per `presence_tick_max` (1 s), each carrying every change it waited for; after a
//! quiet spell the next change goes out on the next tick again. A join storm then
//! costs each member a few messages instead of ten a second, and nobody misses a join.
//!
//! Paused clock, in-memory pipes: arrival times are exact, not timing windows.

mod common;

use std::time::Duration;

use common::crowd::{connect, hub_builder, ids, join, ops, user};
use common::memory::MemClient;
use serde_json::Value;
use tokio::time::Instant;

const ROOM: &str = "room:storm";
const JOINERS: usize = 40;

/// An observer in the room, then `JOINERS` users joining one every half tick (over two
/// seconds). Returns the observer's diffs during the storm and after it, with when
/// each arrived, and the hub.
async fn storm(tick_max: Option<Duration>) -> (wshub::Hub, MemClient, Vec<(Value, Instant)>) {
    storm_with(move |c| {
        if let Some(max) = tick_max {
            c.presence_tick_max = max;
        }
    })
    .await
}

/// [`storm`] on a hub configured by `configure`.
async fn storm_with(
    configure: impl FnOnce(&mut wshub::HubConfig) + Send + 'static,
) -> (wshub::Hub, MemClient, Vec<(Value, Instant)>) {
    let builder = hub_builder(JOINERS + 10, 200).configure(configure);
    let hub = builder.build();
    let tick = hub.config().presence_tick;
    let mut observer = connect(&hub, 0, 0).await;
    join(&mut observer, ROOM).await;
    assert_eq!(ops(&observer.drain_json(tick * 3).await), ["presence_diff"]);

    let watch = tokio::spawn(async move {
        let got = observer.drain(Duration::from_secs(5)).await;
        (observer, got)
    });
    let mut joiners = Vec::new();
    for i in 1..=JOINERS {
        let mut c = connect(&hub, i, i).await;
        join(&mut c, ROOM).await;
        joiners.push(c);
        tokio::time::sleep(tick / 2).await;
    }
    let (observer, got) = watch.await.unwrap();
    let diffs = got
        .into_iter()
        .map(|(v, _, at)| {
            assert_eq!(v["op"], "presence_diff", "{v}");
            (v, at)
        })
        .collect();
    drop(joiners);
    (hub, observer, diffs)
}

fn joined(diffs: &[(Value, Instant)]) -> Vec<String> {
    let mut all: Vec<String> = diffs.iter().flat_map(|(d, _)| ids(&d["joins"])).collect();
    all.sort();
    all
}

#[tokio::test(start_paused = true)]
async fn a_join_storm_costs_few_diffs_and_loses_no_join() {
    let (hub, mut observer, diffs) = storm(None).await;
    let (tick, tick_max) = (hub.config().presence_tick, hub.config().presence_tick_max);
    assert_eq!(tick_max, Duration::from_secs(1), "the default");

    // Every joiner announced exactly once.
    let mut expected: Vec<String> = (1..=JOINERS).map(user).collect();
    expected.sort();
    assert_eq!(joined(&diffs), expected);
    // Twenty ticks of changes: a diff per tick would be 20; paced (100, 200, 400, 800,
    // 1,000 ms apart) it is at most 6, the gaps growing and never above the maximum.
    assert!(diffs.len() <= 6, "{} diffs", diffs.len());
    let gaps: Vec<Duration> = diffs.windows(2).map(|w| w[1].1 - w[0].1).collect();
    assert!(gaps.windows(2).all(|g| g[1] >= g[0]), "{gaps:?}");
    assert!(gaps.iter().all(|g| *g <= tick_max + tick), "{gaps:?}");
    // The waits carried the budget of the ticks they waited: a later diff holds more.
    assert!(ids(&diffs.last().unwrap().0["joins"]).len() > 1);

    // Quiet since the storm: the next join is announced on the next tick again.
    let mut late = connect(&hub, JOINERS + 1, JOINERS + 1).await;
    let start = Instant::now();
    join(&mut late, ROOM).await;
    let got = observer.drain(tick * 3).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(ids(&got[0].0["joins"]), [user(JOINERS + 1)]);
    assert!(got[0].2 - start <= tick * 2, "{:?}", got[0].2 - start);
}

#[tokio::test(start_paused = true)]
async fn tick_max_equal_to_the_tick_sends_a_diff_every_tick() {
    let (hub, _observer, diffs) = storm(Some(Duration::from_millis(100))).await;
    assert_eq!(hub.config().presence_tick, Duration::from_millis(100));
    let mut expected: Vec<String> = (1..=JOINERS).map(user).collect();
    expected.sort();
    assert_eq!(joined(&diffs), expected);
    // Joins over twenty ticks: a diff for each tick that had one.
    assert!(diffs.len() >= 19, "{} diffs", diffs.len());
}

#[tokio::test(start_paused = true)]
async fn a_paced_diff_carries_the_budget_of_the_ticks_it_waited() {
    // A budget of one byte a tick: each diff holds one entry per tick it waited (an
    // entry may pass the budget), so a diff that waited a second holds ten joins. With
    // the budget of a single tick, 40 joins would take 40 diffs, most of them after
    // the storm.
    let (hub, _observer, diffs) = storm_with(|c| c.presence_diff_budget = 1).await;
    let mut expected: Vec<String> = (1..=JOINERS).map(user).collect();
    expected.sort();
    assert_eq!(joined(&diffs), expected, "every join within the drain");
    let sizes: Vec<usize> = diffs.iter().map(|(d, _)| ids(&d["joins"]).len()).collect();
    assert!(sizes.iter().any(|&n| n >= 8), "{sizes:?}");
    assert!(diffs.len() <= 12, "{sizes:?}");
    drop(hub);
}
