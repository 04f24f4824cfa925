//! `connect-rate`: connections opened at a scheduled rate (or as fast as
//! `connect_concurrency` connections in flight allow), each authenticating (a static
//! token or a JWT minted for it), reading its welcome, joining a room and closing.
//!
//! The latency histogram is the handshake time: from the start of the TCP connect to
//! the `welcome` (so it includes the server's token check). Failures are counted by
//! kind: the HTTP status of a refused upgrade (`401`, `429`, `503`...), `timeout`,
//! `refused`, `connect_error` (a Socket.IO server refused the namespace connect), `io`,
//! `join` (the join was refused) or `other`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use tokio::sync::Semaphore;

use super::Live;
use super::proto::{join, welcome};
use crate::conn::{Proto, Target, failure_kind};
use crate::phases::Schedule;
use crate::report::Report;
use crate::stats::{CpuTime, Stats, now_ns};

/// The `connect-rate` scenario's parameters.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectRateOpts {
    /// Connections opened per second over time; `None` keeps `connect_concurrency`
    /// connections in flight for `duration`.
    pub schedule: Option<Schedule>,
    /// How long to connect as fast as possible (ignored with a schedule).
    #[serde(serialize_with = "crate::phases::ser_secs")]
    pub duration: Duration,
    /// The room each connection joins: `{i}` becomes the connection's index.
    pub room_template: String,
    /// How long each connection stays joined before closing.
    #[serde(serialize_with = "crate::phases::ser_secs")]
    pub hold: Duration,
    /// Connections in flight at most: with a schedule, arrivals beyond it wait for a
    /// slot (the schedule then catches up), so a slow server cannot make the
    /// generator open unbounded sockets.
    pub connect_concurrency: usize,
    /// Show the live view.
    #[serde(skip)]
    pub progress: bool,
}

impl Default for ConnectRateOpts {
    fn default() -> Self {
        ConnectRateOpts {
            schedule: None,
            duration: Duration::from_secs(10),
            room_template: "bench:lobby".into(),
            hold: Duration::ZERO,
            connect_concurrency: 256,
            progress: true,
        }
    }
}

/// Counts shared by the attempts.
#[derive(Debug, Default)]
struct Counts {
    next_index: AtomicU64,
}

/// Runs the scenario against `target` (which should offer `wshub.v1`).
pub async fn run(target: Target, opts: ConnectRateOpts) -> anyhow::Result<Report> {
    let target = Arc::new(target);
    let stats = Arc::new(Stats::new());
    let counts = Arc::new(Counts::default());
    let planned = opts
        .schedule
        .as_ref()
        .map_or(opts.duration, Schedule::duration);
    let live = Live::start(stats.clone(), planned, opts.progress);
    live.phase("connect");
    let gate = Arc::new(Semaphore::new(opts.connect_concurrency.max(1)));
    let cpu_start = CpuTime::now();
    let start = Instant::now();
    let mut tasks = Vec::new();
    match &opts.schedule {
        Some(schedule) => {
            let mut started = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let elapsed = start.elapsed();
                let due = schedule.due(elapsed);
                while started < due {
                    let permit = gate.clone().acquire_owned().await.expect("never closed");
                    let (target, stats, counts, opts) =
                        (target.clone(), stats.clone(), counts.clone(), opts.clone());
                    tasks.push(tokio::spawn(async move {
                        attempt(&target, &stats, &counts, &opts).await;
                        drop(permit);
                    }));
                    started += 1;
                }
                if elapsed >= schedule.duration() {
                    break;
                }
            }
        }
        None => {
            for _ in 0..opts.connect_concurrency.max(1) {
                let (target, stats, counts, opts) =
                    (target.clone(), stats.clone(), counts.clone(), opts.clone());
                tasks.push(tokio::spawn(async move {
                    while start.elapsed() < opts.duration {
                        attempt(&target, &stats, &counts, &opts).await;
                    }
                }));
            }
        }
    }
    live.phase("finish");
    let scheduling = start.elapsed();
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed();
    // With a schedule, attempts were made over the schedule; without, by the workers
    // until they all finished.
    let sending = if opts.schedule.is_some() {
        scheduling
    } else {
        elapsed
    };
    let cpu = CpuTime::now().since(cpu_start);
    live.finish();

    let attempts = stats.sent.load(Ordering::Relaxed);
    let completed = stats.delivered.load(Ordering::Relaxed);
    let mut report = Report::new(
        "connect-rate",
        &target.url,
        serde_json::to_value(&opts)?,
        &stats,
        attempts,
        Duration::ZERO,
        sending,
        elapsed,
        cpu,
    );
    report.latency_of = "handshake: TCP connect start to welcome".into();
    report.details.insert("attempts".into(), json!(attempts));
    report.details.insert("completed".into(), json!(completed));
    report.details.insert(
        "connects_per_s".into(),
        json!(completed as f64 / elapsed.as_secs_f64().max(1e-9)),
    );
    Ok(report)
}

/// One connection's life: connect, welcome, join, hold, close. Counts an attempt
/// (`sent`), a handshake (`connected`, with its latency) and a completed cycle
/// (`delivered`), or the failure's kind.
async fn attempt(target: &Target, stats: &Stats, counts: &Counts, opts: &ConnectRateOpts) {
    let index = counts.next_index.fetch_add(1, Ordering::Relaxed) as usize;
    stats.sent.fetch_add(1, Ordering::Relaxed);
    let fail = |kind: String, e: anyhow::Error| {
        stats.fail(kind, format!("connection {index}: {e:#}"));
    };
    let t0 = now_ns();
    let mut ws = match target.connect(index).await {
        Ok(ws) => ws,
        Err(e) => return fail(failure_kind(&e), e),
    };
    // Plain WebSocket peers have neither welcome nor rooms: the authenticated
    // handshake is the whole cycle (Socket.IO's namespace connect is part of
    // `connect`).
    let wshub = target.proto == Proto::Wshub;
    if wshub {
        if let Err(e) = welcome(&mut ws).await {
            return fail("welcome".into(), e);
        }
    }
    stats.record_latency(index, t0);
    stats.connected.fetch_add(1, Ordering::Relaxed);
    let room = opts.room_template.replace("{i}", &index.to_string());
    if wshub {
        if let Err(e) = join(&mut ws, &room, 1).await {
            return fail("join".into(), e);
        }
    }
    if !opts.hold.is_zero() {
        tokio::time::sleep(opts.hold).await;
    }
    // A clean close, waiting (briefly) for the server's close and end of stream: the
    // server then closes the TCP connection first and keeps the TIME_WAIT, not the
    // generator, whose ephemeral ports a long run would otherwise exhaust.
    ws.close().await;
    stats.delivered.fetch_add(1, Ordering::Relaxed);
}
