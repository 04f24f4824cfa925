//! `broadcast`: subscribers spread over rooms, publishers publishing into them over
//! `wshub.v1`, at a scheduled rate or as fast as possible.
//!
//! Subscriber i joins room i mod R; publisher j joins room j mod R and publishes only
//! there. A publisher is a member of its room, so it gets its own messages back (as
//! `wshub.v1` does for every member): each publish to room r is expected
//! `members(r)` times. Publishes are fire-and-forget (no `id`, as real traffic sends
//! them): a refusal comes back as an `error` and is counted.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use memchr::memmem;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

use super::proto::connect_and_join;
use super::{Live, drain, share};
use crate::conn::{Incoming, Proto, Target, TungWs, Ws, from_tung};
use crate::phases::Schedule;
use crate::report::Report;
use crate::socketio;
use crate::stats::{CpuTime, Stats, now_ns, proc_cpu, rss_kib};

/// The `broadcast` scenario's parameters.
#[derive(Debug, Clone, Serialize)]
pub struct BroadcastOpts {
    /// Connections that only join and receive.
    pub subscribers: usize,
    /// Rooms the subscribers and publishers are spread over.
    pub rooms: usize,
    /// Connections that join and publish.
    pub publishers: usize,
    /// The total publish rate over time, shared by the publishers; `None` publishes as
    /// fast as the connections take it.
    pub schedule: Option<Schedule>,
    /// How long to publish as fast as possible (ignored with a schedule).
    #[serde(serialize_with = "crate::phases::ser_secs")]
    pub duration: Duration,
    /// At most this many publishes in all (a burst of N with no schedule).
    pub messages: Option<u64>,
    /// Approximate size of each publish's `data`, in bytes of JSON.
    pub size: usize,
    /// Room names: `{r}` becomes the room's index.
    pub room_template: String,
    /// The publish's `data`: `{t}` becomes the send time (ns, digits), `{pad}` enough
    /// `x`s to reach `size`. Must match the namespace's message type.
    pub data_template: String,
    /// How long to wait for the last deliveries once publishing ends.
    #[serde(serialize_with = "crate::phases::ser_secs")]
    pub drain: Duration,
    /// Connections opened at once.
    pub connect_concurrency: usize,
    /// The server's pid (on this machine): its CPU time (utime + stime from
    /// `/proc/PID/stat`) over the publishing phase and drain, per publish, and its RSS.
    pub server_pid: Option<u32>,
    /// Show the live view.
    #[serde(skip)]
    pub progress: bool,
}

impl Default for BroadcastOpts {
    fn default() -> Self {
        BroadcastOpts {
            subscribers: 100,
            rooms: 1,
            publishers: 1,
            schedule: None,
            duration: Duration::from_secs(10),
            messages: None,
            size: 64,
            room_template: "bench:room-{r}".into(),
            data_template: r#"{"t":{t},"p":"{pad}"}"#.into(),
            drain: Duration::from_secs(5),
            connect_concurrency: 256,
            server_pid: None,
            progress: true,
        }
    }
}

/// What finds the timestamp in a received frame: the template's text between the last
/// `{` or `,` before `{t}` and `{t}` (`"t":` by default). Servers re-serialize `data`,
/// but compactly, so that text survives.
#[derive(Clone)]
struct Stamp {
    /// The marker's searcher, built once: the generator looks for it in every frame.
    finder: memmem::Finder<'static>,
}

impl Stamp {
    fn new(template: &str) -> anyhow::Result<Stamp> {
        let at = template
            .find("{t}")
            .context("the data template needs a {t} placeholder")?;
        let before = &template[..at];
        let from = before.rfind([',', '{']).map_or(0, |i| i + 1);
        let marker = &before[from..];
        if marker.is_empty() {
            bail!("the data template needs a key before {{t}}");
        }
        Ok(Stamp {
            finder: memmem::Finder::new(marker.as_bytes()).into_owned(),
        })
    }

    /// The digits after the marker, on the frame's bytes (no UTF-8 check needed to
    /// find ASCII).
    fn find(&self, frame: &[u8]) -> Option<u64> {
        let at = self.finder.find(frame)? + self.finder.needle().len();
        let digits = &frame[at..];
        let end = digits
            .iter()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
    }
}

/// Runs the scenario against `target` (which should offer `wshub.v1`).
pub async fn run(target: Target, opts: BroadcastOpts) -> anyhow::Result<Report> {
    if opts.rooms == 0 || opts.publishers == 0 {
        bail!("broadcast needs at least one room and one publisher");
    }
    let stamp = Stamp::new(&opts.data_template)?;
    // Publishers split their connection into a sink and a stream, which only
    // tungstenite can: they never offer compression (only subscribers are measured
    // with it).
    let pub_target = Arc::new(Target {
        deflate: false,
        ..target.clone()
    });
    let target = Arc::new(target);
    let stats = Arc::new(Stats::new());
    let total = opts.subscribers + opts.publishers;
    let planned = opts
        .schedule
        .as_ref()
        .map_or(opts.duration, Schedule::duration);
    let live = Live::start(stats.clone(), planned, opts.progress);
    let (stop_tx, stop_rx) = watch::channel(false);

    // Members of each room: subscribers and publishers alike receive.
    let room_of_sub = |i: usize| i % opts.rooms;
    let room_of_pub = |j: usize| j % opts.rooms;
    let mut members = vec![0u64; opts.rooms];
    (0..opts.subscribers).for_each(|i| members[room_of_sub(i)] += 1);
    (0..opts.publishers).for_each(|j| members[room_of_pub(j)] += 1);
    let room_name = |r: usize| opts.room_template.replace("{r}", &r.to_string());

    // Connect and join everyone before the first publish.
    live.phase("connect");
    let connect_start = Instant::now();
    let gate = Arc::new(Semaphore::new(opts.connect_concurrency.max(1)));
    let mut joins = Vec::with_capacity(total);
    for index in 0..total {
        let room = if index < opts.subscribers {
            room_name(room_of_sub(index))
        } else {
            room_name(room_of_pub(index - opts.subscribers))
        };
        let target = if index < opts.subscribers {
            target.clone()
        } else {
            pub_target.clone()
        };
        let (stats, gate) = (stats.clone(), gate.clone());
        joins.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.expect("never closed");
            stats.opened(index, connect_and_join(&target, index, &room).await)
        }));
    }
    let mut sinks = Vec::new();
    let mut readers = Vec::with_capacity(total);
    let mut compressed = 0u64;
    for (index, join) in joins.into_iter().enumerate() {
        let Some(ws) = join.await? else {
            if index >= opts.subscribers {
                sinks.push(None);
            }
            continue;
        };
        compressed += u64::from(ws.compressed());
        let reader = if index >= opts.subscribers {
            let (sink, stream) = ws.into_tung()?.split();
            sinks.push(Some(sink));
            Reader::Half(stream)
        } else {
            Reader::Whole(ws)
        };
        readers.push(tokio::spawn(read_loop(
            reader,
            index,
            target.proto,
            stats.clone(),
            stamp.clone(),
            stop_rx.clone(),
        )));
    }
    let connect = connect_start.elapsed();

    // Publish.
    live.phase("publish");
    let server_cpu_start = opts.server_pid.map(proc_cpu).transpose()?;
    let cpu_start = CpuTime::now();
    let start = Instant::now();
    let start_ns = now_ns();
    let mut publishers = Vec::new();
    for (j, sink) in sinks.into_iter().enumerate() {
        let Some(sink) = sink else { continue };
        let room = serde_json::to_string(&room_name(room_of_pub(j)))?;
        let ctx = PublishCtx {
            proto: target.proto,
            index: j,
            count: opts.publishers,
            room,
            opts: opts.clone(),
            stats: stats.clone(),
        };
        publishers.push(tokio::spawn(ctx.publish(sink)));
    }
    let mut expected = 0;
    let mut sinks = Vec::new();
    for (j, p) in publishers.into_iter().enumerate() {
        let (sent, sink) = p.await?;
        expected += sent * members[room_of_pub(j)];
        sinks.push(sink);
    }
    let sending = start.elapsed();

    live.phase("drain");
    drain(&stats, expected, opts.drain).await;
    let end_ns = stats.last_delivery_ns.load(Ordering::Relaxed).max(start_ns);
    let elapsed = Duration::from_nanos(end_ns - start_ns).max(sending);
    let cpu = CpuTime::now().since(cpu_start);
    let server_cpu = match (opts.server_pid, server_cpu_start) {
        (Some(pid), Some(start)) => Some(proc_cpu(pid)?.saturating_sub(start)),
        _ => None,
    };
    let server_rss = opts.server_pid.map(rss_kib).transpose()?;
    let _ = stop_tx.send(true);
    for r in readers {
        let _ = r.await;
    }
    live.finish();
    drop(sinks);

    let mut report = Report::new(
        "broadcast",
        &target.url,
        serde_json::to_value(&opts)?,
        &stats,
        expected,
        connect,
        sending,
        elapsed,
        cpu,
    );
    if target.deflate {
        report
            .details
            .insert("compressed_subscribers".into(), json!(compressed));
    }
    if let Some(cpu) = server_cpu {
        let sent = report.sent.max(1) as f64;
        report
            .details
            .insert("server_cpu_s".into(), json!(cpu.as_secs_f64()));
        report.details.insert(
            "server_cpu_per_publish_ms".into(),
            json!(cpu.as_secs_f64() * 1000.0 / sent),
        );
    }
    if let Some(kib) = server_rss {
        report.details.insert("server_rss_kib".into(), json!(kib));
    }
    Ok(report)
}

/// A receiving connection: a subscriber's whole connection (it answers Socket.IO
/// pings), or the stream half of a publisher's.
#[allow(clippy::large_enum_variant)] // One per connection, moved once.
enum Reader {
    Whole(Ws),
    Half(SplitStream<TungWs>),
}

impl Reader {
    async fn recv(&mut self) -> Option<anyhow::Result<Incoming>> {
        match self {
            Reader::Whole(ws) => ws.recv().await,
            Reader::Half(stream) => from_tung(stream.next().await),
        }
    }
}

/// Receives until told to stop, recording each `message` with a timestamp.
async fn read_loop(
    mut reader: Reader,
    index: usize,
    proto: Proto,
    stats: Arc<Stats>,
    stamp: Stamp,
    mut stop: watch::Receiver<bool>,
) {
    // One wait for the stop signal for the whole loop, not one a message: a fresh
    // `changed()` each time registered and unregistered a waiter under the channel's
    // lock for every delivery, about 5% of the generator's time in a burst.
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        let msg = tokio::select! {
            biased;
            m = reader.recv() => m,
            _ = &mut stopped => return,
        };
        match msg {
            Some(Ok(Incoming::Text(text))) => {
                // A cheap look at the frame: full parsing would cost the generator
                // more than the server spends on it.
                let message = match proto {
                    Proto::Wshub => text.as_bytes().starts_with(br#"{"op":"message""#),
                    Proto::Plain => true,
                    Proto::SocketIo => socketio::is_event(&text),
                };
                if message {
                    match stamp.find(text.as_bytes()) {
                        Some(t) => stats.record(index, t),
                        None => stats.error(format!("message without a timestamp: {}", &*text)),
                    }
                } else if proto == Proto::SocketIo && socketio::is_ping(&text) {
                    // Only a whole connection can answer; a publisher's stream half
                    // cannot, which runs shorter than the ping timeout (45 s) do not
                    // notice.
                    if let Reader::Whole(ws) = &mut reader {
                        let _ = ws.send_text(socketio::PONG.into()).await;
                    }
                } else if text.starts_with(r#"{"op":"error""#) || text.contains(r#""ok":false"#) {
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    stats.error(&*text);
                }
            }
            Some(Ok(Incoming::Close(frame))) => {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                stats.error(format!("connection {index} closed by the server: {frame}"));
                return;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                stats.error(format!("connection {index}: {e}"));
                return;
            }
            None => {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
}

/// One publisher's share of the work.
struct PublishCtx {
    proto: Proto,
    index: usize,
    count: usize,
    /// The room name, as a JSON string.
    room: String,
    opts: BroadcastOpts,
    stats: Arc<Stats>,
}

type Sink = SplitSink<TungWs, Message>;

impl PublishCtx {
    /// Publishes its share; returns how many it sent, and the sink (dropped only once
    /// the run is over, so the connection stays open through the drain).
    async fn publish(self, mut sink: Sink) -> (u64, Sink) {
        let cap = self.opts.messages.map(|m| share(m, self.index, self.count));
        let mut frames = self.frames();
        let mut frame = |t: u64| Message::text(frames.next(t));
        let mut sent = 0u64;
        let start = Instant::now();
        let result: anyhow::Result<()> = async {
            match &self.opts.schedule {
                Some(schedule) => {
                    let total = cap.unwrap_or(u64::MAX);
                    let mut tick = tokio::time::interval(Duration::from_millis(1));
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                    loop {
                        tick.tick().await;
                        let elapsed = start.elapsed();
                        let due = share(schedule.due(elapsed), self.index, self.count).min(total);
                        if sent < due {
                            let before = sent;
                            while sent < due {
                                sink.feed(frame(now_ns())).await?;
                                sent += 1;
                            }
                            sink.flush().await?;
                            self.stats.sent.fetch_add(sent - before, Ordering::Relaxed);
                        }
                        if elapsed >= schedule.duration() || sent >= total {
                            break;
                        }
                    }
                }
                None => {
                    let total = cap.unwrap_or(u64::MAX);
                    let mut reported = 0;
                    while sent < total {
                        sink.feed(frame(now_ns())).await?;
                        sent += 1;
                        // Flushed in batches of 32: what a busy client's writes coalesce
                        // to, and 1/32 of the clock reads.
                        if sent % 32 == 0 {
                            sink.flush().await?;
                            self.stats
                                .sent
                                .fetch_add(sent - reported, Ordering::Relaxed);
                            reported = sent;
                            if start.elapsed() >= self.opts.duration {
                                break;
                            }
                        }
                    }
                    sink.flush().await?;
                    self.stats
                        .sent
                        .fetch_add(sent - reported, Ordering::Relaxed);
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            self.stats.error(format!("publisher {}: {e:#}", self.index));
        }
        (sent, sink)
    }

    /// The publish frames of this publisher.
    fn frames(&self) -> Frames {
        let (before, after) = self
            .opts
            .data_template
            .split_once("{t}")
            .expect("checked by Stamp::new");
        // 13 digits stand for the timestamp when sizing the padding.
        let bare = before.replace("{pad}", "").len() + 13 + after.replace("{pad}", "").len();
        let pad_len = self.opts.size.saturating_sub(bare);
        let (prefix, suffix) = match self.proto {
            Proto::Wshub => (
                format!(r#"{{"op":"publish","room":{},"data":{before}"#, self.room),
                format!("{after}}}"),
            ),
            Proto::Plain => (before.to_owned(), after.to_owned()),
            Proto::SocketIo => (format!(r#"42["msg",{before}"#), format!("{after}]")),
        };
        Frames::new(prefix, suffix, pad_len, self.index as u64)
    }
}

/// Builds publish frames: the template around the timestamp, its `{pad}` filled with
/// text that differs from message to message. Text, not one repeated byte: deflate
/// shrinks a run of `x`s to nearly nothing at nearly no cost, and a server keeping
/// its compression context across messages would find every message in the last
/// one; words drawn at random compress about as chat text does (3 to 4 times).
struct Frames {
    prefix: String,
    suffix: String,
    pad_len: usize,
    /// Random words to take each message's padding from, at a moving offset.
    text: String,
    count: usize,
}

impl Frames {
    fn new(prefix: String, suffix: String, pad_len: usize, seed: u64) -> Frames {
        const WORDS: &[&str] = &[
            "the", "room", "message", "hello", "world", "presence", "join", "leave", "chat",
            "user", "typing", "online", "away", "reply", "thread", "emoji", "link", "image",
            "today", "meeting", "later", "thanks", "yes", "no", "maybe", "build", "deploy",
            "server", "client", "socket", "latency", "queue", "batch", "ready", "done", "wait",
        ];
        let mut text = String::new();
        if prefix.contains("{pad}") || suffix.contains("{pad}") {
            let mut rng = fastrand::Rng::with_seed(seed);
            while text.len() < pad_len + 64 * 1024 {
                text.push_str(WORDS[rng.usize(..WORDS.len())]);
                text.push(' ');
            }
        }
        Frames {
            prefix,
            suffix,
            pad_len,
            text,
            count: 0,
        }
    }

    /// The next frame, carrying timestamp `t`.
    fn next(&mut self, t: u64) -> String {
        if self.text.is_empty() {
            return format!("{}{t}{}", self.prefix, self.suffix);
        }
        // A step that is not a multiple of a word's length, so offsets wander.
        let span = self.text.len() - self.pad_len;
        let at = (self.count * 7919) % span.max(1);
        self.count += 1;
        let pad = &self.text[at..at + self.pad_len];
        format!(
            "{}{t}{}",
            self.prefix.replace("{pad}", pad),
            self.suffix.replace("{pad}", pad)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Stamp;

    #[test]
    fn finds_stamps() {
        let s = Stamp::new(r#"{"t":{t},"p":"{pad}"}"#).unwrap();
        assert_eq!(
            s.find(br#"{"op":"message","room":"a","from":"u","data":{"p":"xx","t":123}}"#),
            Some(123)
        );
        let s = Stamp::new(r#"{"text":"{t} {pad}"}"#).unwrap();
        assert_eq!(s.find(br#"{"data":{"text":"42 xxx"}}"#), Some(42));
        assert!(Stamp::new(r#"{"p":"{pad}"}"#).is_err());
    }
}
