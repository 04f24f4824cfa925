//! `presence-churn`: M members sit in one room (presence on) while K churners join
//! and leave it at a scheduled rate of join-leave cycles (or as fast as their replies
//! come back).
//!
//! Each member applies the `presence_diff`s it receives to its own view of the room
//! (as PROTOCOL.md section 6 says a client should), so the report shows what presence
//! costs a member (diffs and bytes per member per second, entries announced) and
//! whether the views ended right: after the drain every member must see exactly the
//! members, no churner. The latency histogram is the churners' join round trip.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};

use super::proto::{Ended, join, leave, read_until, welcome};
use super::{Live, share, wait_settled};
use crate::conn::{Target, Ws};
use crate::phases::Schedule;
use crate::report::Report;
use crate::stats::{CpuTime, Stats, now_ns};

/// The `presence-churn` scenario's parameters.
#[derive(Debug, Clone, Serialize)]
pub struct PresenceChurnOpts {
    /// Connections that join the room and stay.
    pub members: usize,
    /// Connections that join and leave it over and over (each its own user when the
    /// tokens say so: connection indexes run members first, then churners).
    pub churners: usize,
    /// The room.
    pub room: String,
    /// Join-leave cycles per second over time, shared by the churners; `None`: as
    /// fast as the replies come, for `duration`.
    pub schedule: Option<Schedule>,
    /// How long a churner stays in the room each cycle. With 0 (the default) it
    /// leaves as soon as the join is answered, and a join and leave within one
    /// presence tick is usually not announced at all (the server coalesces them):
    /// set it above the tick to make every cycle visible to the members.
    #[serde(serialize_with = "crate::phases::ser_secs")]
    pub dwell: Duration,
    /// How long to churn as fast as possible (ignored with a schedule).
    #[serde(serialize_with = "crate::phases::ser_secs")]
    pub duration: Duration,
    /// How long to wait for the last diffs once churning ends (wshub sends a room's
    /// diffs at most once per presence tick, 100 ms by default, and less often while
    /// the room keeps changing, down to once per `presence_tick_max`, 1 s).
    #[serde(serialize_with = "crate::phases::ser_secs")]
    pub drain: Duration,
    /// Connections opened at once.
    pub connect_concurrency: usize,
    /// Show the live view.
    #[serde(skip)]
    pub progress: bool,
}

impl Default for PresenceChurnOpts {
    fn default() -> Self {
        PresenceChurnOpts {
            members: 100,
            churners: 10,
            room: "bench:presence".into(),
            schedule: None,
            dwell: Duration::ZERO,
            duration: Duration::from_secs(10),
            drain: Duration::from_secs(2),
            connect_concurrency: 256,
            progress: true,
        }
    }
}

/// What the members receive, summed over all of them.
#[derive(Debug, Default)]
struct Received {
    diffs: AtomicU64,
    bytes: AtomicU64,
    joins: AtomicU64,
    leaves: AtomicU64,
}

/// A member's view of the room: user ids present. Locked briefly by the member's task
/// to apply a diff and by the run to compare; never across an await.
type View = Arc<Mutex<HashSet<String>>>;

/// Runs the scenario against `target` (which should offer `wshub.v1`).
pub async fn run(target: Target, opts: PresenceChurnOpts) -> anyhow::Result<Report> {
    if opts.members == 0 || opts.churners == 0 {
        bail!("presence-churn needs at least one member and one churner");
    }
    let target = Arc::new(target);
    let stats = Arc::new(Stats::new());
    let received = Arc::new(Received::default());
    let planned = opts
        .schedule
        .as_ref()
        .map_or(opts.duration, Schedule::duration);
    let live = Live::start(stats.clone(), planned, opts.progress);
    let (stop_tx, stop_rx) = watch::channel(false);

    live.phase("connect");
    let connect_start = Instant::now();
    let gate = Arc::new(Semaphore::new(opts.connect_concurrency.max(1)));
    let users = Arc::new(Mutex::new(HashSet::new()));
    let mut views: Vec<View> = Vec::new();
    let mut members = Vec::new();
    for index in 0..opts.members {
        let view = View::default();
        views.push(view.clone());
        let (target, stats, gate, received, users) = (
            target.clone(),
            stats.clone(),
            gate.clone(),
            received.clone(),
            users.clone(),
        );
        let (room, mut stop) = (opts.room.clone(), stop_rx.clone());
        members.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.expect("never closed");
            let mut ws = match member_join(&target, index, &room, &view).await {
                Ok((ws, user)) => {
                    users.lock().unwrap().insert(user);
                    ws
                }
                Err(e) => {
                    stats.connect_failure(format!("member {index}"), &e);
                    return;
                }
            };
            drop(permit);
            stats.connected.fetch_add(1, Ordering::Relaxed);
            let on_text = |text: &str| {
                if text.starts_with(r#"{"op":"presence_diff""#) {
                    apply_diff(text, &view, &received);
                }
            };
            if let Ended::Closed(why) = read_until(&mut ws, &mut stop, on_text).await {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                stats.error(format!("member {index}: {why}"));
            }
        }));
    }
    wait_settled(&stats, opts.members as u64).await;
    let mut churners = Vec::new();
    for k in 0..opts.churners {
        let index = opts.members + k;
        match target.connect(index).await {
            Ok(mut ws) => match welcome(&mut ws).await {
                Ok(_) => {
                    stats.connected.fetch_add(1, Ordering::Relaxed);
                    churners.push(ws);
                }
                Err(e) => {
                    stats.connect_failure(format!("churner {index}"), &e);
                }
            },
            Err(e) => {
                stats.connect_failure(format!("churner {index}"), &e);
            }
        }
    }
    let connect = connect_start.elapsed();
    let expected_users = users.lock().unwrap().clone();
    // The members' own joins are announced a tick later: wait for every view to hold
    // them all before measuring, so those diffs do not count as churn.
    let settle = Instant::now() + opts.drain;
    while stale(&views, &expected_users) > 0 && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    live.phase("churn");
    let before = snapshot(&received);
    let cpu_start = CpuTime::now();
    let start = Instant::now();
    let count = churners.len();
    let mut tasks = Vec::new();
    for (k, ws) in churners.into_iter().enumerate() {
        let (stats, opts) = (stats.clone(), opts.clone());
        tasks.push(tokio::spawn(churn(ws, k, count, opts, stats, start)));
    }
    let mut churn_ws = Vec::new();
    for t in tasks {
        churn_ws.push(t.await?);
    }
    let sending = start.elapsed();
    live.phase("drain");
    tokio::time::sleep(opts.drain).await;
    let elapsed = start.elapsed();
    let after = snapshot(&received);
    let cpu = CpuTime::now().since(cpu_start);
    let stale_views = stale(&views, &expected_users);
    let _ = stop_tx.send(true);
    for m in members {
        let _ = m.await;
    }
    drop(churn_ws);
    live.finish();

    let diffs = after[0] - before[0];
    let mut report = Report::new(
        "presence-churn",
        &target.url,
        serde_json::to_value(&opts)?,
        &stats,
        0,
        connect,
        sending,
        elapsed,
        cpu,
    );
    report.latency_of = "churner join round trip".into();
    let members_n = expected_users.len().max(1) as f64;
    let secs = elapsed.as_secs_f64().max(1e-9);
    let d = &mut report.details;
    d.insert("cycles".into(), json!(stats.sent.load(Ordering::Relaxed)));
    d.insert("diffs".into(), json!(diffs));
    d.insert("diff_bytes".into(), json!(after[1] - before[1]));
    d.insert("joins_announced".into(), json!(after[2] - before[2]));
    d.insert("leaves_announced".into(), json!(after[3] - before[3]));
    d.insert(
        "diffs_per_member_per_s".into(),
        json!(diffs as f64 / members_n / secs),
    );
    d.insert(
        "bytes_per_member_per_s".into(),
        json!((after[1] - before[1]) as f64 / members_n / secs),
    );
    d.insert("stale_views".into(), json!(stale_views));
    Ok(report)
}

/// Connects member `index`, reads its welcome (its user id), joins and takes the
/// join reply's presence as the view's start.
async fn member_join(
    target: &Target,
    index: usize,
    room: &str,
    view: &View,
) -> anyhow::Result<(Ws, String)> {
    let mut ws = target.connect(index).await?;
    let user = welcome(&mut ws).await?;
    let data = join(&mut ws, room, 1).await?;
    let presence = data["presence"]
        .as_object()
        .context("join reply without presence: is presence on for this namespace?")?;
    view.lock().unwrap().extend(presence.keys().cloned());
    Ok((ws, user))
}

/// Applies one `presence_diff` to `view`: leaves first, then joins (PROTOCOL.md 6).
fn apply_diff(text: &str, view: &View, received: &Received) {
    received.diffs.fetch_add(1, Ordering::Relaxed);
    received
        .bytes
        .fetch_add(text.len() as u64, Ordering::Relaxed);
    let Ok(diff) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let keys = |field: &str| -> Vec<String> {
        diff[field]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let (joins, leaves) = (keys("joins"), keys("leaves"));
    received
        .joins
        .fetch_add(joins.len() as u64, Ordering::Relaxed);
    received
        .leaves
        .fetch_add(leaves.len() as u64, Ordering::Relaxed);
    let mut view = view.lock().unwrap();
    for u in &leaves {
        view.remove(u);
    }
    view.extend(joins);
}

/// Members whose view is not exactly `expected`.
fn stale(views: &[View], expected: &HashSet<String>) -> usize {
    views
        .iter()
        .filter(|v| {
            let v = v.lock().unwrap();
            // A member that failed to connect has an empty view: not a member.
            !v.is_empty() && *v != *expected
        })
        .count()
}

fn snapshot(r: &Received) -> [u64; 4] {
    [
        r.diffs.load(Ordering::Relaxed),
        r.bytes.load(Ordering::Relaxed),
        r.joins.load(Ordering::Relaxed),
        r.leaves.load(Ordering::Relaxed),
    ]
}

/// Churner `k` of `count`: its share of the cycles (join, leave), each join timed.
/// Returns the connection, kept open until the run ends.
async fn churn(
    mut ws: Ws,
    k: usize,
    count: usize,
    opts: PresenceChurnOpts,
    stats: Arc<Stats>,
    start: Instant,
) -> Ws {
    let mut id = 1u64;
    let mut done = 0u64;
    let result: anyhow::Result<()> = async {
        match &opts.schedule {
            Some(schedule) => {
                let mut tick = tokio::time::interval(Duration::from_millis(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tick.tick().await;
                    let elapsed = start.elapsed();
                    let due = share(schedule.due(elapsed), k, count);
                    while done < due {
                        cycle(&mut ws, &opts, &mut id, k, &stats).await?;
                        done += 1;
                    }
                    if elapsed >= schedule.duration() {
                        break;
                    }
                }
            }
            None => {
                while start.elapsed() < opts.duration {
                    cycle(&mut ws, &opts, &mut id, k, &stats).await?;
                }
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        stats.error(format!("churner {k}: {e:#}"));
    }
    ws
}

/// One join-leave cycle (`dwell` apart), request ids `id` and `id + 1`; the join's
/// round trip is recorded.
async fn cycle(
    ws: &mut Ws,
    opts: &PresenceChurnOpts,
    id: &mut u64,
    k: usize,
    stats: &Stats,
) -> anyhow::Result<()> {
    let t0 = now_ns();
    join(ws, &opts.room, *id).await?;
    stats.record_latency(k, t0);
    if !opts.dwell.is_zero() {
        // The room's frames wait unread meanwhile; the next request skips them.
        tokio::time::sleep(opts.dwell).await;
    }
    leave(ws, &opts.room, *id + 1).await?;
    *id += 2;
    stats.sent.fetch_add(1, Ordering::Relaxed);
    Ok(())
}
