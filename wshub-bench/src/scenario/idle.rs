//! `idle`: connections that connect, join a room (presence on, if the namespace has
//! it) and hold, doing nothing else: what a quiet chat costs the server.
//!
//! Every connection keeps reading (the presence diffs of the joins keep coming) so the
//! server never sees a slow consumer. With the server's pid, the report shows its RSS
//! before the first connection, once every connection has joined, and at the end of
//! the hold, and the growth per connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{Semaphore, watch};

use super::proto::{Ended, join, read_until};
use super::{Live, wait_settled};
use crate::conn::{Proto, Target};
use crate::report::Report;
use crate::stats::{CpuTime, Stats, rss_kib};

/// The `idle` scenario's parameters.
#[derive(Debug, Clone, Serialize)]
pub struct IdleOpts {
    /// Connections to open and hold.
    pub connections: usize,
    /// Rooms they are spread over (connection i joins room i mod R).
    pub rooms: usize,
    /// Room names: `{r}` becomes the room's index.
    pub room_template: String,
    /// How long to hold once every connection has joined.
    #[serde(serialize_with = "crate::phases::ser_secs")]
    pub hold: Duration,
    /// The server's process id, to read its RSS from `/proc/PID/status`.
    pub server_pid: Option<u32>,
    /// Connections opened at once.
    pub connect_concurrency: usize,
    /// Show the live view.
    #[serde(skip)]
    pub progress: bool,
}

impl Default for IdleOpts {
    fn default() -> Self {
        IdleOpts {
            connections: 1000,
            rooms: 1,
            room_template: "bench:idle-{r}".into(),
            hold: Duration::from_secs(10),
            server_pid: None,
            connect_concurrency: 256,
            progress: true,
        }
    }
}

/// Runs the scenario against `target` (which should offer `wshub.v1`).
pub async fn run(target: Target, opts: IdleOpts) -> anyhow::Result<Report> {
    if opts.rooms == 0 {
        bail!("idle needs at least one room");
    }
    let rss = |pid: Option<u32>| pid.map(rss_kib).transpose();
    let rss_before = rss(opts.server_pid)?;
    let target = Arc::new(target);
    let stats = Arc::new(Stats::new());
    let live = Live::start(stats.clone(), opts.hold, opts.progress);
    let (stop_tx, stop_rx) = watch::channel(false);

    live.phase("connect");
    let connect_start = Instant::now();
    let gate = Arc::new(Semaphore::new(opts.connect_concurrency.max(1)));
    let with_presence = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(opts.connections);
    for index in 0..opts.connections {
        let room = opts
            .room_template
            .replace("{r}", &(index % opts.rooms).to_string());
        let (target, stats, gate) = (target.clone(), stats.clone(), gate.clone());
        let (mut stop, with_presence) = (stop_rx.clone(), with_presence.clone());
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.expect("never closed");
            let joined = async {
                let mut ws = target.connect(index).await?;
                // Plain WebSocket and Socket.IO peers have no rooms: an open
                // connection (for Socket.IO, connected to its namespace) is the hold.
                let reply = match target.proto {
                    Proto::Wshub => join(&mut ws, &room, 1).await?,
                    _ => serde_json::Value::Null,
                };
                anyhow::Ok((ws, reply))
            };
            let mut ws = match joined.await {
                Ok((ws, reply)) => {
                    // The join reply carries the room's presence only when the
                    // namespace tracks it: the report says whether it did.
                    if reply["presence"].is_object() {
                        with_presence.fetch_add(1, Ordering::Relaxed);
                    }
                    ws
                }
                Err(e) => {
                    stats.connect_failure(format!("connection {index}"), &e);
                    return;
                }
            };
            drop(permit);
            stats.connected.fetch_add(1, Ordering::Relaxed);
            if let Ended::Closed(why) = read_until(&mut ws, &mut stop, |_| {}).await {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                stats.error(format!("connection {index}: {why}"));
            }
        }));
    }
    wait_settled(&stats, opts.connections as u64).await;
    let connect = connect_start.elapsed();
    let rss_joined = rss(opts.server_pid)?;

    live.phase("hold");
    let cpu_start = CpuTime::now();
    let start = Instant::now();
    tokio::time::sleep(opts.hold).await;
    let rss_end = rss(opts.server_pid)?;
    let elapsed = start.elapsed();
    let cpu = CpuTime::now().since(cpu_start);
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    live.finish();

    let mut report = Report::new(
        "idle",
        &target.url,
        serde_json::to_value(&opts)?,
        &stats,
        0,
        connect,
        elapsed,
        elapsed,
        cpu,
    );
    let held = stats.connected.load(Ordering::Relaxed) - stats.dropped.load(Ordering::Relaxed);
    let d = &mut report.details;
    d.insert("held".into(), json!(held));
    d.insert(
        "joined_with_presence".into(),
        json!(with_presence.load(Ordering::Relaxed)),
    );
    if let (Some(before), Some(joined), Some(end)) = (rss_before, rss_joined, rss_end) {
        d.insert("server_rss_before_kib".into(), json!(before));
        d.insert("server_rss_joined_kib".into(), json!(joined));
        d.insert("server_rss_end_kib".into(), json!(end));
        // Per connection only when some were held: 0 would divide by nothing.
        if held > 0 {
            let per = |after: u64| after.saturating_sub(before) as f64 / held as f64;
            d.insert("server_rss_per_conn_kib".into(), json!(per(end)));
            d.insert("server_rss_per_conn_joined_kib".into(), json!(per(joined)));
        }
    }
    Ok(report)
}
