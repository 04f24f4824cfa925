//! The kinds of load, one task per client, each a loop that reconnects after whatever
//! ended its connection (with a pause, so nothing spins) until the run stops.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use crate::client::{Conn, with_conn};
use crate::ctx::{Ctx, End};
use crate::stats::Count;

/// The room where presence churns, slow consumers sit and round trips are measured.
pub(crate) const BUSY_ROOM: &str = "chat:busy";
/// Pause before a client whose connection ended comes back (plus up to as much
/// again at random, so clients closed together do not come back together).
const BACKOFF: Duration = Duration::from_secs(1);
/// A legitimate round trip not back after this long is counted lost.
const RTT_LOST_AFTER: Duration = Duration::from_secs(10);
/// How long a slow consumer reads its backlog, looking for its close frame.
const SLOW_DRAIN: Duration = Duration::from_secs(5);
/// Frames a flooder sends at once: more than the default burst (100) plus the
/// refusals in a row that close a flooder (100). Smaller batches with gaps between them
/// are never closed: a frame let through by the refill in each gap resets the count.
const FLOOD_BATCH: usize = 500;
/// How long a flooder reads between two batches.
const FLOOD_BATCH_GAP: Duration = Duration::from_millis(20);
/// How long a flooder waits for its close after its last frame.
const FLOOD_CLOSE_WAIT: Duration = Duration::from_secs(15);

/// The `i`th publish room.
fn publish_room(i: usize) -> String {
    format!("chat:soak-{i}")
}

/// One period of `rate` a second.
fn period(rate: f64) -> Duration {
    Duration::from_secs_f64(1.0 / rate)
}

/// Starts every client task, spread over the first seconds (a thundering herd of
/// logins would measure the login route, not the soak).
pub(crate) fn spawn_all(ctx: &Arc<Ctx>, tasks: &mut JoinSet<()>) {
    let o = &ctx.opts;
    let mut n = 0;
    for i in 0..o.readers {
        let busy = i < o.busy_readers;
        spawn_after(tasks, ctx, &mut n, reader(ctx.clone(), i, busy));
    }
    for i in 0..o.publishers {
        spawn_after(tasks, ctx, &mut n, publisher(ctx.clone(), i));
    }
    for _ in 0..o.busy_publishers {
        spawn_after(tasks, ctx, &mut n, busy_publisher(ctx.clone()));
    }
    for _ in 0..o.legit {
        spawn_after(tasks, ctx, &mut n, legit(ctx.clone()));
    }
    for _ in 0..o.churners {
        spawn_after(tasks, ctx, &mut n, churner(ctx.clone()));
    }
    for _ in 0..o.presence {
        spawn_after(tasks, ctx, &mut n, presence(ctx.clone()));
    }
    for _ in 0..o.slow {
        spawn_after(tasks, ctx, &mut n, slow_consumer(ctx.clone()));
    }
    for i in 0..o.flooders {
        spawn_after(tasks, ctx, &mut n, flooder(ctx.clone(), i));
    }
}

/// Spawns the `n`th client task, starting 10 ms after the one before.
fn spawn_after<F>(tasks: &mut JoinSet<()>, ctx: &Arc<Ctx>, n: &mut u32, task: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let delay = Duration::from_millis(10) * *n;
    *n += 1;
    let ctx = ctx.clone();
    tasks.spawn(async move {
        if ctx.pause(delay).await {
            task.await;
        }
    });
}

/// Pause after a connection ended: `pause` after a clean cycle, [`BACKOFF`] (plus
/// jitter) after anything else. `false` once the run is over.
async fn after(ctx: &Ctx, end: Option<End>, pause: Duration) -> bool {
    let d = match end {
        None => pause,
        Some(End::Stopped) => return false,
        Some(_) => BACKOFF + BACKOFF.mul_f64(rand::random::<f64>()),
    };
    ctx.pause(d).await
}

/// A standing reader: joins its publish room (and the busy room), then reads.
async fn reader(ctx: Arc<Ctx>, i: usize, busy: bool) {
    let room = publish_room(i % ctx.opts.rooms);
    while !ctx.stopped() {
        let end = with_conn(&ctx, false, async |c: &mut Conn| {
            if !c.join(&room).await? || (busy && !c.join(BUSY_ROOM).await?) {
                return Err(End::Refused);
            }
            loop {
                c.skim().await?;
            }
        })
        .await;
        if !after(&ctx, end, BACKOFF).await {
            break;
        }
    }
}

/// Publishes `text` in `room` at `rate` a second, with an id (its reply counted),
/// reading the fan-out meanwhile.
async fn publish_steadily(c: &mut Conn, room: &str, rate: f64, text: &str) -> Result<(), End> {
    if !c.join(room).await? {
        return Err(End::Refused);
    }
    let mut tick = tokio::time::interval(period(rate));
    // After a stall, carry on at the rate instead of catching up in a burst.
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let mut msg = c.publish(room, text);
                // An id the publisher never waits for (requests start at 1): its
                // reply is counted as an ack when it comes.
                msg["id"] = 0.into();
                c.send(msg).await?;
            }
            r = c.skim() => r?,
        }
    }
}

/// A steady publisher in publish room `i % rooms`.
async fn publisher(ctx: Arc<Ctx>, i: usize) {
    let room = publish_room(i % ctx.opts.rooms);
    let rate = ctx.opts.publish_rate;
    while !ctx.stopped() {
        let end = with_conn(&ctx, false, async |c: &mut Conn| {
            publish_steadily(c, &room, rate, "a steady soak message").await
        })
        .await;
        if !after(&ctx, end, BACKOFF).await {
            break;
        }
    }
}

/// A publisher of large messages in the busy room: what fills slow consumers' queues.
async fn busy_publisher(ctx: Arc<Ctx>) {
    let text = "b".repeat(ctx.opts.busy_bytes);
    let rate = ctx.opts.busy_rate;
    while !ctx.stopped() {
        let end = with_conn(&ctx, false, async |c: &mut Conn| {
            publish_steadily(c, BUSY_ROOM, rate, &text).await
        })
        .await;
        if !after(&ctx, end, BACKOFF).await {
            break;
        }
    }
}

/// A legitimate member of the busy room: publishes `rtt N` at `--legit-rate` and
/// times each until its own message comes back through the fan-out.
async fn legit(ctx: Arc<Ctx>) {
    let rate = ctx.opts.legit_rate;
    while !ctx.stopped() {
        let end = with_conn(&ctx, false, async |c: &mut Conn| {
            if !c.join(BUSY_ROOM).await? {
                return Err(End::Refused);
            }
            let mut tick = tokio::time::interval(period(rate));
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            // At most rate x 10 s entries: older ones are dropped as lost.
            let mut pending: VecDeque<(u64, Instant)> = VecDeque::new();
            let mut seq = 0u64;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        while pending.front().is_some_and(|p| p.1.elapsed() > RTT_LOST_AFTER) {
                            pending.pop_front();
                            ctx.stats.add(Count::LegitLost);
                        }
                        seq += 1;
                        let msg = c.publish(BUSY_ROOM, &format!("rtt {seq}"));
                        pending.push_back((seq, Instant::now()));
                        c.send(msg).await?;
                    }
                    r = c.recv() => {
                        let v = r?;
                        if v["op"] != "message" || v["room"] != BUSY_ROOM || v["from"] != c.user.as_str() {
                            continue;
                        }
                        let Some(n) = v["data"]["text"].as_str()
                            .and_then(|t| t.strip_prefix("rtt "))
                            .and_then(|n| n.parse::<u64>().ok()) else { continue };
                        if let Some(at) = pending.iter().position(|p| p.0 == n) {
                            let (_, sent) = pending.remove(at).expect("found");
                            let micros = sent.elapsed().as_micros().min(u128::from(u32::MAX));
                            ctx.stats.rtt(micros as u32);
                        }
                    }
                }
            }
        })
        .await;
        if matches!(end, Some(End::Closed(_))) {
            ctx.stats.add(Count::LegitClosed);
        }
        if !after(&ctx, end, BACKOFF).await {
            break;
        }
    }
}

/// Churn: log in, connect, join a publish room and a brand-new room, publish once,
/// stay a moment, leave both, disconnect; again and again.
async fn churner(ctx: Arc<Ctx>) {
    let hold = Duration::from_millis(ctx.opts.churn_hold_ms);
    let pause = Duration::from_millis(ctx.opts.churn_pause_ms);
    while !ctx.stopped() {
        let shared = publish_room(rand::random_range(0..ctx.opts.rooms));
        let own = ctx.fresh_room();
        let end = with_conn(&ctx, false, async |c: &mut Conn| {
            if !c.join(&shared).await? || !c.join(&own).await? {
                return Err(End::Refused);
            }
            let msg = c.publish(&own, "hello from a churner");
            c.request(msg).await?;
            c.idle(hold).await?;
            c.leave(&shared).await?;
            c.leave(&own).await?;
            Ok(())
        })
        .await;
        if !after(&ctx, end, pause).await {
            break;
        }
    }
}

/// Presence churn: one connection joining and leaving the busy room (with a padded
/// meta) `--presence-rate` times a second, reading the room meanwhile.
async fn presence(ctx: Arc<Ctx>) {
    let half = period(ctx.opts.presence_rate) / 2;
    while !ctx.stopped() {
        let end = with_conn(&ctx, false, async |c: &mut Conn| {
            loop {
                // A refused join or leave (a presence rate limit) is an outcome, counted
                // from the reply; the loop just goes on at its pace.
                c.join(BUSY_ROOM).await?;
                c.idle(half).await?;
                c.leave(BUSY_ROOM).await?;
                c.idle(half).await?;
            }
        })
        .await;
        if !after(&ctx, end, BACKOFF).await {
            break;
        }
    }
}

/// A slow consumer: a small receive buffer, joins the busy room and stops reading,
/// until the server closes it (1013 once its queue is over the limit) or
/// `--slow-max-secs` pass (counted as `slow_survived`); then it reconnects.
///
/// A client that reads nothing cannot see its close frame: the server's kernel buffer
/// in front of it is full, and the server gives up the closing handshake after a few
/// seconds. So the others tell it: the server takes a closed connection out of its
/// rooms at once, the members see the user leave in a `presence_diff`, and the slow
/// consumer then reads everything at full speed, up to the close frame, while the
/// server still waits to send it.
async fn slow_consumer(ctx: Arc<Ctx>) {
    let give_up = Duration::from_secs(ctx.opts.slow_max_secs);
    while !ctx.stopped() {
        let end = with_conn(&ctx, true, async |c: &mut Conn| {
            let left = ctx.watch_leave(&c.user);
            let result = async {
                if !c.join(BUSY_ROOM).await? {
                    return Err(End::Refused);
                }
                c.expect_drop = true;
                let closed = tokio::select! {
                    () = left.notified() => true,
                    () = tokio::time::sleep(give_up) => false,
                    () = ctx.stop.cancelled() => return Err(End::Stopped),
                };
                // Read the backlog and the close frame (if one comes).
                let drained = tokio::time::timeout(SLOW_DRAIN, async {
                    loop {
                        c.skim().await?;
                    }
                })
                .await;
                match drained {
                    Ok(r) => r,
                    Err(_) => {
                        if closed {
                            ctx.stats
                                .detail("slow consumer: left its room but not closed");
                        }
                        ctx.stats.add(Count::SlowSurvived);
                        c.expect_drop = false;
                        Ok(())
                    }
                }
            }
            .await;
            ctx.unwatch(&c.user);
            result
        })
        .await;
        if !after(&ctx, end, BACKOFF).await {
            break;
        }
    }
}

/// A flooder: joins its own room and publishes far past the rate limit until the
/// server closes it (1008 by default; at most `--flood-frames`, then it waits for the
/// close).
async fn flooder(ctx: Arc<Ctx>, i: usize) {
    let room = format!("chat:flood-{i}");
    let pause = Duration::from_millis(ctx.opts.flood_pause_ms);
    let frames = ctx.opts.flood_frames;
    while !ctx.stopped() {
        let end = with_conn(&ctx, false, async |c: &mut Conn| {
            if !c.join(&room).await? {
                return Err(End::Refused);
            }
            // Fire and forget: the accepted ones are silent, the others come back as
            // `rate_limited` errors. In batches, reading what came back between them,
            // until the server closes the connection or `--flood-frames` are sent.
            let mut left = frames;
            while left > 0 {
                let batch = left.min(FLOOD_BATCH);
                left -= batch;
                let msgs = (0..batch).map(|_| c.publish(&room, "flood")).collect();
                c.send_all(msgs).await?;
                c.idle(FLOOD_BATCH_GAP).await?;
            }
            match tokio::time::timeout(FLOOD_CLOSE_WAIT, async {
                loop {
                    c.recv().await?;
                }
            })
            .await
            {
                Ok(r) => r,
                Err(_) => {
                    ctx.stats.detail("flooder not closed");
                    Ok(())
                }
            }
        })
        .await;
        // A flooder's close is the expected end of its cycle: come back after the pause.
        let end = match end {
            Some(End::Closed(Some(1008))) => None,
            other => other,
        };
        if !after(&ctx, end, pause).await {
            break;
        }
    }
}
