//! `echo`: round trips over plain WebSocket against an echo server.
//!
//! Each request is a binary message whose first 8 bytes are the send time
//! (little-endian nanoseconds, [`now_ns`]), padded to the message size; the latency is
//! the round trip. Without a schedule every connection keeps one request in flight
//! (closed loop: the next goes when the echo is back); with one, the connections share
//! the scheduled rate and send without waiting (open loop).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

use super::{Live, drain, share};
use crate::conn::{Incoming, Target, Ws};
use crate::phases::Schedule;
use crate::report::Report;
use crate::stats::{CpuTime, Stats, now_ns};

/// The `echo` scenario's parameters.
#[derive(Debug, Clone, Serialize)]
pub struct EchoOpts {
    /// Connections.
    pub connections: usize,
    /// The total request rate over time; `None` runs a closed loop on each connection.
    pub schedule: Option<Schedule>,
    /// How long the closed loop runs (ignored with a schedule).
    #[serde(serialize_with = "crate::phases::ser_secs")]
    pub duration: Duration,
    /// Message size in bytes (at least 8, the timestamp).
    pub size: usize,
    /// How long to wait for the last echoes once sending ends.
    #[serde(serialize_with = "crate::phases::ser_secs")]
    pub drain: Duration,
    /// Connections opened at once.
    pub connect_concurrency: usize,
    /// Show the live view.
    #[serde(skip)]
    pub progress: bool,
}

impl Default for EchoOpts {
    fn default() -> Self {
        EchoOpts {
            connections: 10,
            schedule: None,
            duration: Duration::from_secs(10),
            size: 64,
            drain: Duration::from_secs(5),
            connect_concurrency: 256,
            progress: true,
        }
    }
}

fn request(size: usize) -> Vec<u8> {
    let mut buf = vec![b'x'; size.max(8)];
    buf[..8].copy_from_slice(&now_ns().to_le_bytes());
    buf
}

fn stamp(data: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(..8)?.try_into().ok()?))
}

/// Runs the scenario against `target` (a plain WebSocket echo server).
pub async fn run(target: Target, opts: EchoOpts) -> anyhow::Result<Report> {
    if opts.connections == 0 {
        bail!("echo needs at least one connection");
    }
    let target = Arc::new(target);
    let stats = Arc::new(Stats::new());
    let planned = opts
        .schedule
        .as_ref()
        .map_or(opts.duration, Schedule::duration);
    let live = Live::start(stats.clone(), planned, opts.progress);

    live.phase("connect");
    let connect_start = Instant::now();
    let gate = Arc::new(Semaphore::new(opts.connect_concurrency.max(1)));
    let mut opening = Vec::with_capacity(opts.connections);
    for index in 0..opts.connections {
        let (target, stats, gate) = (target.clone(), stats.clone(), gate.clone());
        opening.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.expect("never closed");
            stats.opened(index, target.connect(index).await)
        }));
    }
    let mut conns = Vec::new();
    for o in opening {
        if let Some(ws) = o.await? {
            conns.push(ws);
        }
    }
    let connect = connect_start.elapsed();

    live.phase("echo");
    let cpu_start = CpuTime::now();
    let start = Instant::now();
    let start_ns = now_ns();
    let (stop_tx, stop_rx) = watch::channel(false);
    let count = conns.len();
    let mut tasks = Vec::new();
    for (index, ws) in conns.into_iter().enumerate() {
        let (stats, opts, stop) = (stats.clone(), opts.clone(), stop_rx.clone());
        tasks.push(tokio::spawn(async move {
            let r = match &opts.schedule {
                None => closed_loop(ws, index, &opts, &stats).await,
                Some(s) => open_loop(ws, index, count, s, &opts, &stats, stop).await,
            };
            if let Err(e) = r {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                stats.error(format!("connection {index}: {e:#}"));
            }
        }));
    }
    // Open-loop senders return once their share is sent; their readers run until the
    // stop below.
    for t in tasks {
        t.await?;
    }
    let sending = start.elapsed();
    let expected = stats.sent.load(Ordering::Relaxed);
    live.phase("drain");
    drain(&stats, expected, opts.drain).await;
    let end_ns = stats.last_delivery_ns.load(Ordering::Relaxed).max(start_ns);
    let elapsed = Duration::from_nanos(end_ns - start_ns).max(sending);
    let cpu = CpuTime::now().since(cpu_start);
    let _ = stop_tx.send(true);
    live.finish();

    Ok(Report::new(
        "echo",
        &target.url,
        serde_json::to_value(&opts)?,
        &stats,
        expected,
        connect,
        sending,
        elapsed,
        cpu,
    ))
}

/// One request in flight until the duration is over.
async fn closed_loop(
    mut ws: Ws,
    index: usize,
    opts: &EchoOpts,
    stats: &Stats,
) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < opts.duration {
        ws.send_binary(request(opts.size)).await?;
        stats.sent.fetch_add(1, Ordering::Relaxed);
        loop {
            match ws.recv().await.context("closed by the server")?? {
                Incoming::Binary(data) => {
                    stats.record(index, stamp(&data).context("echo too short")?);
                    break;
                }
                Incoming::Close(frame) => bail!("closed by the server: {frame}"),
                _ => {}
            }
        }
    }
    ws.close().await;
    Ok(())
}

/// Sends this connection's share of the schedule while a reader task records echoes;
/// the reader ends at `stop`.
async fn open_loop(
    ws: Ws,
    index: usize,
    count: usize,
    schedule: &Schedule,
    opts: &EchoOpts,
    stats: &Arc<Stats>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (mut sink, mut stream) = ws.into_tung()?.split();
    let reader_stats = stats.clone();
    tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                m = stream.next() => m,
                _ = stop.changed() => return,
            };
            match msg {
                Some(Ok(Message::Binary(data))) => match stamp(&data) {
                    Some(t) => reader_stats.record(index, t),
                    None => reader_stats.error("echo too short"),
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    reader_stats.dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Some(Ok(_)) => {}
            }
        }
    });
    let start = Instant::now();
    let mut sent = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let elapsed = start.elapsed();
        let due = share(schedule.due(elapsed), index, count);
        if sent < due {
            let before = sent;
            while sent < due {
                sink.feed(Message::binary(request(opts.size))).await?;
                sent += 1;
            }
            sink.flush().await?;
            stats.sent.fetch_add(sent - before, Ordering::Relaxed);
        }
        if elapsed >= schedule.duration() {
            break;
        }
    }
    // Dropping the sink half sends nothing: the reader half keeps the connection open
    // through the drain.
    Ok(())
}
