//! `reconnect-storm`: N clients connected and joined; then all lose their connection
//! at once and reconnect (and rejoin) with full-jitter exponential backoff, as a
//! well-behaved client library does after a server restart or a network cut.
//!
//! What cuts them: the server (the user restarts it, or a load balancer drops the
//! connections; the run waits up to `wait` for every connection to end), or, with
//! `cut_after`, the generator itself, which drops its own sockets at once. Each
//! client's reconnect time runs from the moment it saw its connection end to its
//! join reply on the new one, backoff included: the latency histogram is that
//! distribution. Backoff before attempt n (from 0) is uniform in
//! `[0, min(cap, base * 2^n)]` ("full jitter"), so even the first attempts spread out.
//!
//! Recovery (`PROTOCOL.md` section 9): with `publish_rate`, one more connection (never
//! cut) joins every room and publishes into them throughout, so that messages are
//! missed while the clients are away. Each client keeps the position (`epoch`, `seq`)
//! of the last message it received and rejoins with `since` set to it; the report
//! counts the rejoins the server recovered and those it did not (another epoch after
//! a restart of a server keeping history in memory, or too much missed), the messages
//! replayed, and, over every client's whole run, the gaps (messages skipped within an
//! epoch) and duplicates (a `seq` received twice). A correct server shows no gap and
//! no duplicate after a recovered rejoin.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{Semaphore, watch};

use super::proto::{Ended, connect_and_join, join_with, read_until};
use super::{Live, wait_settled};
use crate::conn::{Incoming, Target, failure_kind};
use crate::report::Report;
use crate::stats::{CpuTime, Stats, now_ns};

/// The `reconnect-storm` scenario's parameters.
#[derive(Debug, Clone, Serialize)]
pub struct ReconnectStormOpts {
    /// Clients.
    pub connections: usize,
    /// Rooms they are spread over (client i joins room i mod R, again after
    /// reconnecting).
    pub rooms: usize,
    /// Room names: `{r}` becomes the room's index.
    pub room_template: String,
    /// Drop every connection this long after all have joined; `None`: wait for the
    /// server to end them.
    #[serde(serialize_with = "ser_opt_secs")]
    pub cut_after: Option<Duration>,
    /// Without `cut_after`, how long to wait for the server to end the connections.
    #[serde(serialize_with = "crate::phases::ser_secs")]
    pub wait: Duration,
    /// The first backoff's upper bound; it doubles with every failed attempt.
    #[serde(serialize_with = "crate::phases::ser_secs")]
    pub backoff_base: Duration,
    /// The largest backoff.
    #[serde(serialize_with = "crate::phases::ser_secs")]
    pub backoff_cap: Duration,
    /// How long a client keeps trying before it gives up.
    #[serde(serialize_with = "crate::phases::ser_secs")]
    pub give_up: Duration,
    /// Connections opened at once before the storm (the reconnects are not gated:
    /// their jitter is what spreads them).
    pub connect_concurrency: usize,
    /// Publishes per second (over all rooms, from one extra connection that is never
    /// cut) from the moment all have joined until the end; `None` publishes nothing
    /// and the rejoins test no recovery.
    pub publish_rate: Option<f64>,
    /// Show the live view.
    #[serde(skip)]
    pub progress: bool,
}

fn ser_opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

impl Default for ReconnectStormOpts {
    fn default() -> Self {
        ReconnectStormOpts {
            connections: 1000,
            rooms: 1,
            room_template: "bench:storm-{r}".into(),
            cut_after: None,
            wait: Duration::from_secs(60),
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(10),
            give_up: Duration::from_secs(60),
            connect_concurrency: 256,
            publish_rate: None,
            progress: true,
        }
    }
}

/// What the clients share besides [`Stats`].
#[derive(Debug)]
struct Storm {
    /// Failed reconnect attempts by kind (HTTP status, `refused`, `timeout`...).
    failures: Mutex<BTreeMap<String, u64>>,
    /// Clients that gave up.
    gave_up: AtomicU64,
    /// Connections lost again after reconnecting.
    dropped_again: AtomicU64,
    /// When the first connection ended ([`now_ns`]).
    first_drop_ns: AtomicU64,
    /// Rejoins with `since` that the server answered `recovered: true`.
    recovered: AtomicU64,
    /// Rejoins with `since` answered `recovered: false`.
    not_recovered: AtomicU64,
    /// Messages replayed after rejoin replies.
    replayed: AtomicU64,
    /// Messages with a position received, replayed or live.
    messages: AtomicU64,
    /// Messages skipped within an epoch: a `seq` more than one past the last.
    gaps: AtomicU64,
    /// Messages whose `seq` was not past the last one received (same epoch).
    duplicates: AtomicU64,
}

/// Where a client is in its room's stream: the last message it received.
#[derive(Debug, Clone)]
struct Position {
    epoch: String,
    seq: u64,
}

impl Position {
    /// The position a join reply gives (none when the namespace keeps no history).
    fn of_reply(data: &serde_json::Value) -> Option<Position> {
        Some(Position {
            epoch: data["epoch"].as_str()?.to_owned(),
            seq: data["seq"].as_u64()?,
        })
    }
}

/// The backoff before attempt `n` (from 0): uniform in `[0, min(cap, base * 2^n)]`.
pub fn full_jitter(base: Duration, cap: Duration, n: u32) -> Duration {
    let ceiling = base.saturating_mul(1u32 << n.min(20)).min(cap);
    Duration::from_nanos(fastrand::u64(0..=ceiling.as_nanos() as u64))
}

/// Runs the scenario against `target` (which should offer `wshub.v1`).
pub async fn run(target: Target, opts: ReconnectStormOpts) -> anyhow::Result<Report> {
    if opts.rooms == 0 {
        bail!("reconnect-storm needs at least one room");
    }
    let target = Arc::new(target);
    let stats = Arc::new(Stats::new());
    let storm = Arc::new(Storm {
        failures: Mutex::default(),
        gave_up: AtomicU64::new(0),
        dropped_again: AtomicU64::new(0),
        first_drop_ns: AtomicU64::new(u64::MAX),
        recovered: AtomicU64::new(0),
        not_recovered: AtomicU64::new(0),
        replayed: AtomicU64::new(0),
        messages: AtomicU64::new(0),
        gaps: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
    });
    let live = Live::start(
        stats.clone(),
        opts.cut_after.unwrap_or(opts.wait),
        opts.progress,
    );
    let (cut_tx, cut_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);

    live.phase("connect");
    let connect_start = Instant::now();
    let gate = Arc::new(Semaphore::new(opts.connect_concurrency.max(1)));
    let mut tasks = Vec::with_capacity(opts.connections);
    for index in 0..opts.connections {
        let room = opts
            .room_template
            .replace("{r}", &(index % opts.rooms).to_string());
        let client = Client {
            index,
            room,
            target: target.clone(),
            stats: stats.clone(),
            storm: storm.clone(),
            opts: opts.clone(),
        };
        let (gate, cut, stop) = (gate.clone(), cut_rx.clone(), stop_rx.clone());
        tasks.push(tokio::spawn(client.run(gate, cut, stop)));
    }
    wait_settled(&stats, opts.connections as u64).await;
    let connect = connect_start.elapsed();
    let connected = stats.connected.load(Ordering::Relaxed);
    let publisher = match opts.publish_rate {
        Some(rate) if rate > 0.0 => {
            let rooms: Vec<String> = (0..opts.rooms)
                .map(|r| opts.room_template.replace("{r}", &r.to_string()))
                .collect();
            let mut ws = connect_and_join(&target, opts.connections, &rooms[0]).await?;
            for (i, room) in rooms.iter().enumerate().skip(1) {
                join_with(&mut ws, room, 1 + i as u64, serde_json::Map::new()).await?;
            }
            Some(tokio::spawn(publish(ws, rooms, rate, stop_rx.clone())))
        }
        _ => None,
    };

    let cpu_start = CpuTime::now();
    match opts.cut_after {
        Some(after) => {
            live.phase("hold");
            tokio::time::sleep(after).await;
            live.phase("storm");
            let _ = cut_tx.send(true);
            // Every client drops its socket on the cut: count them all before
            // waiting for the reconnects, or the wait below could end before any drop.
            while stats.dropped.load(Ordering::Relaxed) < connected {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        None => {
            live.phase("wait");
            let deadline = Instant::now() + opts.wait;
            while stats.dropped.load(Ordering::Relaxed) < connected && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            live.phase("storm");
            // Whoever the server did not cut stops waiting.
            let _ = cut_tx.send(true);
        }
    }
    // Every dropped client either reconnects or gives up (bounded by `give_up`).
    loop {
        let dropped = stats.dropped.load(Ordering::Relaxed);
        let settled =
            stats.delivered.load(Ordering::Relaxed) + storm.gave_up.load(Ordering::Relaxed);
        if settled >= dropped {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cpu = CpuTime::now().since(cpu_start);
    let first = storm.first_drop_ns.load(Ordering::Relaxed);
    let last = stats.last_delivery_ns.load(Ordering::Relaxed);
    let storm_time = Duration::from_nanos(last.saturating_sub(first.min(last)));
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let published = match publisher {
        Some(p) => Some(p.await??),
        None => None,
    };
    live.finish();

    let dropped = stats.dropped.load(Ordering::Relaxed);
    let reconnected = stats.delivered.load(Ordering::Relaxed);
    let mut report = Report::new(
        "reconnect-storm",
        &target.url,
        serde_json::to_value(&opts)?,
        &stats,
        dropped,
        connect,
        storm_time,
        storm_time,
        cpu,
    );
    report.latency_of = "reconnect: connection lost to rejoined, backoff included".into();
    let d = &mut report.details;
    d.insert("reconnected".into(), json!(reconnected));
    d.insert("attempts".into(), json!(stats.sent.load(Ordering::Relaxed)));
    d.insert(
        "reconnect_failures".into(),
        json!(storm.failures.lock().unwrap().clone()),
    );
    d.insert(
        "gave_up".into(),
        json!(storm.gave_up.load(Ordering::Relaxed)),
    );
    d.insert(
        "dropped_again".into(),
        json!(storm.dropped_again.load(Ordering::Relaxed)),
    );
    d.insert("storm_s".into(), json!(storm_time.as_secs_f64()));
    if let Some(published) = published {
        let n = |c: &AtomicU64| json!(c.load(Ordering::Relaxed));
        d.insert("published".into(), json!(published));
        d.insert("messages_received".into(), n(&storm.messages));
        d.insert("recovered".into(), n(&storm.recovered));
        d.insert("not_recovered".into(), n(&storm.not_recovered));
        d.insert("replayed".into(), n(&storm.replayed));
        d.insert("gaps".into(), n(&storm.gaps));
        d.insert("duplicates".into(), n(&storm.duplicates));
    }
    Ok(report)
}

/// One client: connect and join, lose the connection, reconnect, hold until the end.
struct Client {
    index: usize,
    room: String,
    target: Arc<Target>,
    stats: Arc<Stats>,
    storm: Arc<Storm>,
    opts: ReconnectStormOpts,
}

impl Client {
    async fn run(
        self,
        gate: Arc<Semaphore>,
        mut cut: watch::Receiver<bool>,
        mut stop: watch::Receiver<bool>,
    ) {
        let (index, stats) = (self.index, &self.stats);
        let permit = gate.acquire_owned().await.expect("never closed");
        let mut ws = match connect_and_join(&self.target, index, &self.room).await {
            Ok(ws) => ws,
            Err(e) => {
                stats.connect_failure(format!("connection {index}"), &e);
                return;
            }
        };
        drop(permit);
        stats.connected.fetch_add(1, Ordering::Relaxed);
        // The first join's reply came and went inside `connect_and_join`: the
        // position starts at the first message received.
        let mut pos: Option<Position> = None;
        let ended = read_until(&mut ws, &mut cut, |t| self.track(t, &mut pos)).await;
        if matches!(ended, Ended::Stopped) && self.opts.cut_after.is_none() {
            // Waited for the server, which never cut this one.
            let _ = read_until(&mut ws, &mut stop, |t| self.track(t, &mut pos)).await;
            return;
        }
        // Cut: dropping the socket closes it without a close handshake, as a lost
        // network would leave it.
        drop(ws);
        let lost = now_ns();
        self.storm.first_drop_ns.fetch_min(lost, Ordering::Relaxed);
        stats.dropped.fetch_add(1, Ordering::Relaxed);

        let deadline = Instant::now() + self.opts.give_up;
        let mut attempt = 0u32;
        let mut ws = loop {
            let backoff = full_jitter(self.opts.backoff_base, self.opts.backoff_cap, attempt);
            tokio::time::sleep(backoff).await;
            stats.sent.fetch_add(1, Ordering::Relaxed);
            match self.rejoin(&mut pos).await {
                Ok(ws) => break ws,
                Err(e) => {
                    *self
                        .storm
                        .failures
                        .lock()
                        .unwrap()
                        .entry(failure_kind(&e))
                        .or_default() += 1;
                    if Instant::now() >= deadline {
                        self.storm.gave_up.fetch_add(1, Ordering::Relaxed);
                        stats.error(format!("connection {index} gave up: {e:#}"));
                        return;
                    }
                    attempt += 1;
                }
            }
        };
        stats.record(index, lost);
        if let Ended::Closed(why) =
            read_until(&mut ws, &mut stop, |t| self.track(t, &mut pos)).await
        {
            self.storm.dropped_again.fetch_add(1, Ordering::Relaxed);
            stats.error(format!("connection {index} after reconnecting: {why}"));
        }
    }
}

impl Client {
    /// Connects and joins again, with `since` at `pos` when it has one; counts the
    /// reply's verdict and moves `pos` to the reply's position when nothing (or not
    /// everything) is recovered.
    async fn rejoin(&self, pos: &mut Option<Position>) -> anyhow::Result<crate::conn::Ws> {
        let mut ws = self.target.connect(self.index).await?;
        let mut extra = serde_json::Map::new();
        if let Some(p) = pos.as_ref() {
            extra.insert("since".into(), json!({"seq": p.seq, "epoch": p.epoch}));
        }
        let reply = join_with(&mut ws, &self.room, 1, extra).await?;
        let replayed = reply["replayed"].as_u64().unwrap_or(0);
        self.storm.replayed.fetch_add(replayed, Ordering::Relaxed);
        match reply["recovered"].as_bool() {
            // The replayed messages follow, from `since` on: `pos` stays.
            Some(true) => {
                self.storm.recovered.fetch_add(1, Ordering::Relaxed);
            }
            Some(false) => {
                self.storm.not_recovered.fetch_add(1, Ordering::Relaxed);
                *pos = Position::of_reply(&reply);
            }
            None => *pos = Position::of_reply(&reply),
        }
        Ok(ws)
    }

    /// Follows the position through a received frame, counting gaps and duplicates.
    fn track(&self, text: &str, pos: &mut Option<Position>) {
        if !text.starts_with(r#"{"op":"message""#) {
            return;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
            return;
        };
        let (Some(seq), Some(epoch)) = (v["seq"].as_u64(), v["epoch"].as_str()) else {
            return;
        };
        self.storm.messages.fetch_add(1, Ordering::Relaxed);
        match pos {
            Some(p) if p.epoch == epoch => {
                if seq <= p.seq {
                    self.storm.duplicates.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                self.storm
                    .gaps
                    .fetch_add(seq - p.seq - 1, Ordering::Relaxed);
                p.seq = seq;
            }
            // The first message, or a new stream: nothing to compare with.
            _ => {
                *pos = Some(Position {
                    epoch: epoch.to_owned(),
                    seq,
                })
            }
        }
    }
}

/// Publishes `rate` messages per second round-robin over `rooms` until `stop` or until
/// its connection ends (a server restart ends it too: it does not reconnect, so the
/// rejoins then find only what was published before), reading (and ignoring) what
/// comes back; returns how many it published.
async fn publish(
    mut ws: crate::conn::Ws,
    rooms: Vec<String>,
    rate: f64,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<u64> {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent = 0u64;
    loop {
        // Only one of the two borrows `ws` at a time: the select yields what happened,
        // the send comes after.
        let publish_now = tokio::select! {
            _ = tick.tick() => true,
            m = ws.recv() => match m {
                Some(Ok(Incoming::Close(_)) | Err(_)) | None => return Ok(sent),
                Some(Ok(_)) => false,
            },
            _ = stop.wait_for(|s| *s) => return Ok(sent),
        };
        if publish_now {
            let room = &rooms[sent as usize % rooms.len()];
            let frame = json!({"op": "publish", "room": room, "data": {"n": sent}});
            if ws.send_text(frame.to_string()).await.is_err() {
                return Ok(sent);
            }
            sent += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn full_jitter_stays_under_the_ceiling() {
        let (base, cap) = (Duration::from_millis(100), Duration::from_secs(1));
        for n in 0..40 {
            let ceiling = (base * 2u32.pow(n.min(20))).min(cap);
            for _ in 0..50 {
                assert!(super::full_jitter(base, cap, n) <= ceiling);
            }
        }
    }
}
