//! Liveness and token expiry for all connections, from one task.
//!
//! No connection has a timer of its own: one sweep per `ping_interval` pings every
//! connection and closes those that sent nothing for `pong_timeout`, and the same task
//! sleeps until the earliest token expiry among all connections.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::Hub;
use crate::ws::CloseCode;

/// Token expiries to watch, ordered by time.
#[derive(Debug, Default)]
pub(crate) struct Reaper {
    expiries: Mutex<BTreeSet<(SystemTime, u64)>>,
    /// Wakes the task when an expiry earlier than all others is added.
    changed: Arc<Notify>,
}

impl Reaper {
    pub(crate) fn new() -> Self {
        Reaper::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<(SystemTime, u64)>> {
        self.expiries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes connection `conn_id` with 1008 at `at`.
    pub(crate) fn watch_expiry(&self, conn_id: u64, at: SystemTime) {
        let earliest = {
            let mut set = self.lock();
            set.insert((at, conn_id));
            set.first() == Some(&(at, conn_id))
        };
        if earliest {
            self.changed.notify_one();
        }
    }

    /// Stops watching a connection that has gone.
    pub(crate) fn forget_expiry(&self, conn_id: u64, at: Option<SystemTime>) {
        if let Some(at) = at {
            self.lock().remove(&(at, conn_id));
        }
    }

    /// Removes and returns the connections whose tokens expired by `now`.
    fn take_due(&self, now: SystemTime) -> Vec<u64> {
        let mut set = self.lock();
        let mut due = Vec::new();
        while let Some(&(at, id)) = set.first() {
            if at > now {
                break;
            }
            set.pop_first();
            due.push(id);
        }
        due
    }

    /// Time until the earliest expiry.
    fn next_expiry(&self) -> Option<Duration> {
        let set = self.lock();
        let &(at, _) = set.first()?;
        Some(
            at.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO),
        )
    }
}

/// Starts the hub's sweep task. It holds only a weak reference: dropping every `Hub`
/// handle ends it.
pub(crate) fn spawn(hub: &Hub) {
    let weak = Arc::downgrade(&hub.0);
    let interval = hub.config().ping_interval;
    let mut shutdown = hub.shutdown_signal();
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("Hub built outside a tokio runtime: no liveness sweep");
        return;
    };
    rt.spawn(async move {
        let mut next_sweep = Instant::now() + interval;
        loop {
            let Some(inner) = weak.upgrade() else { return };
            let notify = inner.reaper.changed.clone();
            let changed = notify.notified();
            let until_expiry = inner.reaper.next_expiry();
            drop(inner);
            let wake = match until_expiry {
                Some(d) => next_sweep.min(Instant::now() + d),
                None => next_sweep,
            };
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = changed => {}
                _ = shutdown.changed() => return,
            }
            let Some(inner) = weak.upgrade() else { return };
            let hub = Hub(inner);
            expire(&hub);
            if Instant::now() >= next_sweep {
                sweep(&hub);
                next_sweep = Instant::now() + interval;
            }
        }
    });
}

/// Closes connections whose token expired.
fn expire(hub: &Hub) {
    for conn_id in hub.0.reaper.take_due(SystemTime::now()) {
        if let Some(entry) = hub.0.conns.get(&conn_id).map(|e| e.clone()) {
            tracing::info!(conn_id, user = %entry.identity.user_id, "token expired (1008)");
            entry.outbound.close(CloseCode::Policy, "token expired");
            hub.0
                .expired
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            hub.disconnect(conn_id);
        }
    }
}

/// Pings every connection and reaps those silent for longer than `pong_timeout`.
pub(crate) fn sweep(hub: &Hub) {
    let timeout = hub.config().pong_timeout;
    let now = Instant::now();
    let mut dead = Vec::new();
    for entry in hub.0.conns.iter() {
        if now.saturating_duration_since(entry.outbound.last_seen()) > timeout {
            dead.push(entry.clone());
        } else {
            entry.outbound.ping();
        }
    }
    for entry in dead {
        tracing::info!(conn_id = entry.id, user = %entry.identity.user_id, "no pong: reaping");
        entry.outbound.close_now(CloseCode::Away, "ping timeout");
        hub.0
            .reaped
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        hub.disconnect(entry.id);
    }
    hub.prune_rooms();
    hub.prune_rate_limits();
    hub.0.history.sweep();
}

#[cfg(test)]
mod tests {
    //! The sweep on tokio's paused clock: connections run their real session over an
    //! in-memory pipe, and the test plays the peer, byte by byte.

    use std::time::Duration;

    use bytes::BytesMut;
    use futures_util::FutureExt;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};
    use tokio::time::{Instant, sleep_until, timeout};

    use super::*;
    use crate::auth::Identity;
    use crate::room::Namespace;
    use crate::ws::{Role, WebSocket};

    /// The test's end of a connection's pipe (buffered, so it can peek).
    type Peer = BufReader<DuplexStream>;

    const INTERVAL: Duration = Duration::from_secs(25);
    const TIMEOUT: Duration = Duration::from_secs(60);
    const PING: u8 = 0x9;
    const CLOSE: u8 = 0x8;
    const TEXT: u8 = 0x1;

    fn hub() -> Hub {
        Hub::builder()
            .namespace(Namespace::<String>::new("chat"))
            .configure(|c| {
                c.ping_interval = INTERVAL;
                c.pong_timeout = TIMEOUT;
            })
            .build()
    }

    /// Runs a session for `user` on one end of an in-memory pipe and returns the other
    /// end, where the test plays the client, after reading the welcome.
    async fn attach(hub: &Hub, user: &str) -> Peer {
        let (server, peer) = tokio::io::duplex(64 * 1024);
        let mut peer = BufReader::new(peer);
        let ws =
            WebSocket::from_parts(server, Role::Server, hub.ws_config(), None, BytesMut::new());
        let identity = Identity::new(user, user);
        let Ok(slot) = hub.reserve_slot(None) else {
            panic!("no connection slot")
        };
        tokio::spawn(crate::session::run(hub.clone(), ws, identity, None, slot));
        let (op, welcome) = read_frame(&mut peer).await;
        assert_eq!(op, TEXT);
        assert!(welcome.starts_with(br#"{"op":"welcome""#));
        peer
    }

    /// Reads one server frame (unmasked, under 64 KiB) that must already be on its way:
    /// the 1 ms limit never lets the paused clock jump to the next sweep.
    async fn read_frame(peer: &mut Peer) -> (u8, Vec<u8>) {
        read_frame_within(peer, Duration::from_millis(1)).await
    }

    /// [`read_frame`], for a frame that comes within `wait` (far less than a sweep
    /// interval, so the paused clock cannot reach the next sweep).
    async fn read_frame_within(peer: &mut Peer, wait: Duration) -> (u8, Vec<u8>) {
        timeout(wait, async {
            let mut head = [0; 2];
            peer.read_exact(&mut head).await.unwrap();
            assert_eq!(head[1] & 0x80, 0, "server frames are unmasked");
            let len = match head[1] & 0x7f {
                126 => usize::from(peer.read_u16().await.unwrap()),
                127 => panic!("unexpectedly large frame"),
                n => usize::from(n),
            };
            let mut payload = vec![0; len];
            peer.read_exact(&mut payload).await.unwrap();
            (head[0] & 0x0f, payload)
        })
        .await
        .expect("no frame waiting")
    }

    /// Whether the server has written something not yet read, checked without waiting
    /// (so without moving the paused clock) and without consuming it.
    fn waiting(peer: &mut Peer) -> bool {
        match peer.fill_buf().now_or_never() {
            None => false,
            Some(Ok([])) => panic!("unexpected EOF"),
            Some(Ok(_)) => true,
            Some(Err(e)) => panic!("{e}"),
        }
    }

    /// Reads and drops the text frames (presence diffs) the server has written.
    async fn drain_texts(peer: &mut Peer) {
        while waiting(peer) {
            assert_eq!(read_frame(peer).await.0, TEXT);
        }
    }

    /// Sends one masked frame from the peer.
    async fn send_frame(peer: &mut Peer, opcode: u8, payload: &[u8]) {
        assert!(payload.len() < 126);
        let key = [0x12, 0x34, 0x56, 0x78];
        let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        peer.write_all(&frame).await.unwrap();
    }

    /// Joins `chat:r` and reads up to the join reply and the presence diff announcing
    /// the join (sent on a later presence tick: the next one, or up to
    /// `presence_tick_max` later while the room keeps changing).
    async fn join(peer: &mut Peer) {
        send_frame(peer, TEXT, br#"{"op":"join","room":"chat:r","id":1}"#).await;
        let mut replied = false;
        loop {
            // Before the reply, only what is on its way; after it, the paused clock may
            // move on to the diff's tick.
            let wait = if replied {
                Duration::from_millis(1_200)
            } else {
                Duration::from_millis(1)
            };
            let (op, payload) = read_frame_within(peer, wait).await;
            assert_eq!(op, TEXT);
            if payload.starts_with(br#"{"op":"reply","id":1,"ok":true"#) {
                replied = true;
            } else if replied && payload.starts_with(br#"{"op":"presence_diff""#) {
                return;
            }
        }
    }

    fn reaped(hub: &Hub) -> u64 {
        hub.stats().reaped
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_pinged_then_reaped_after_the_timeout() {
        let start = Instant::now();
        let hub = hub();
        let room = hub.room::<String>("chat:r").unwrap();
        let mut peer = attach(&hub, "ann").await;
        join(&mut peer).await; // the last thing the peer ever sends
        assert!(room.presence().contains("ann"));

        // No ping before the first sweep.
        sleep_until(start + INTERVAL - Duration::from_secs(1)).await;
        assert!(!waiting(&mut peer));

        // Each sweep pings (the peer never answers): 25 s and 50 s are within the
        // timeout, so the connection stays.
        for sweep in [1, 2] {
            sleep_until(start + sweep * INTERVAL + Duration::from_millis(500)).await;
            assert_eq!(read_frame(&mut peer).await, (PING, vec![]), "sweep {sweep}");
            assert!(!waiting(&mut peer));
            assert_eq!(reaped(&hub), 0, "sweep {sweep}");
            assert_eq!(hub.stats().connections, 1);
        }

        // Past the timeout but before the next sweep: still there (no timer of its own).
        sleep_until(start + TIMEOUT + Duration::from_secs(1)).await;
        assert!(!waiting(&mut peer));
        assert_eq!(reaped(&hub), 0);
        assert!(room.presence().contains("ann"));

        // The third sweep (75 s) finds it silent for more than 60 s: closed with 1001,
        // out of the hub and of the room's presence.
        sleep_until(start + 3 * INTERVAL + Duration::from_millis(500)).await;
        assert_eq!(reaped(&hub), 1);
        assert_eq!(hub.stats().connections, 0);
        assert!(room.presence().is_empty());
        assert_eq!(room.member_count(), 0);
        let (op, payload) = read_frame(&mut peer).await;
        assert_eq!(op, CLOSE);
        assert_eq!(&payload[..2], 1001u16.to_be_bytes());
        assert_eq!(&payload[2..], b"ping timeout");

        // Reaped once only, whatever later sweeps see.
        sleep_until(start + 10 * INTERVAL).await;
        assert_eq!(reaped(&hub), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn answering_pings_keeps_a_connection_alive() {
        let start = Instant::now();
        let hub = hub();
        let mut peer = attach(&hub, "ann").await;
        join(&mut peer).await;

        // Ten sweeps (250 s, four timeouts): every ping answered with a pong.
        for sweep in 1..=10 {
            sleep_until(start + sweep * INTERVAL + Duration::from_millis(500)).await;
            assert_eq!(read_frame(&mut peer).await, (PING, vec![]), "sweep {sweep}");
            send_frame(&mut peer, 0xA, b"").await;
            assert_eq!(reaped(&hub), 0, "sweep {sweep}");
        }
        assert_eq!(hub.stats().connections, 1);
        let last_pong = start + 10 * INTERVAL + Duration::from_millis(500);

        // Then it falls silent: pinged at 275 s and 300 s, reaped at the 325 s sweep,
        // the first more than 60 s after the last pong.
        for sweep in [11, 12] {
            sleep_until(start + sweep * INTERVAL + Duration::from_millis(500)).await;
            assert_eq!(read_frame(&mut peer).await, (PING, vec![]), "sweep {sweep}");
            assert_eq!(reaped(&hub), 0, "sweep {sweep}");
        }
        sleep_until(start + 13 * INTERVAL + Duration::from_millis(500)).await;
        assert!(Instant::now() - last_pong <= INTERVAL + TIMEOUT);
        assert_eq!(reaped(&hub), 1);
        assert_eq!(read_frame(&mut peer).await.0, CLOSE);
    }

    #[tokio::test(start_paused = true)]
    async fn one_sweep_serves_every_connection() {
        let start = Instant::now();
        let hub = hub();
        let room = hub.room::<String>("chat:r").unwrap();
        let tasks_before = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        let mut live = attach(&hub, "live").await;
        let mut silent_a = attach(&hub, "silent-a").await;
        let mut silent_b = attach(&hub, "silent-b").await;
        for peer in [&mut live, &mut silent_a, &mut silent_b] {
            join(peer).await;
        }
        for peer in [&mut live, &mut silent_a, &mut silent_b] {
            drain_texts(peer).await;
            assert!(!waiting(peer));
        }
        // One task per connection (its session), and no timer task of its own.
        assert_eq!(
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
            tasks_before + 3
        );
        assert_eq!(room.presence().len(), 3);

        // A sweep pings every connection at once.
        for sweep in [1, 2] {
            sleep_until(start + sweep * INTERVAL + Duration::from_millis(500)).await;
            for peer in [&mut live, &mut silent_a, &mut silent_b] {
                assert_eq!(read_frame(peer).await, (PING, vec![]), "sweep {sweep}");
            }
            send_frame(&mut live, 0xA, b"").await;
        }
        // The third reaps both silent ones together, and only them.
        sleep_until(start + 3 * INTERVAL + Duration::from_millis(500)).await;
        assert_eq!(reaped(&hub), 2);
        assert_eq!(read_frame(&mut silent_a).await.0, CLOSE);
        assert_eq!(read_frame(&mut silent_b).await.0, CLOSE);
        // The live one got its ping, and both leaves in one diff (the same tick).
        let mut frames = Vec::new();
        while waiting(&mut live) {
            frames.push(read_frame(&mut live).await);
        }
        assert_eq!(
            frames.iter().filter(|f| f.0 == PING).count(),
            1,
            "{frames:?}"
        );
        let diffs: Vec<_> = frames.iter().filter(|f| f.0 == TEXT).collect();
        assert_eq!(diffs.len(), 1, "{frames:?}");
        let diff: serde_json::Value = serde_json::from_slice(&diffs[0].1).unwrap();
        assert_eq!(diff["op"], "presence_diff");
        assert_eq!(diff["joins"], serde_json::json!({}));
        let mut left: Vec<_> = diff["leaves"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        left.sort();
        assert_eq!(left, ["silent-a", "silent-b"]);
        let presence = room.presence();
        assert_eq!(
            presence.iter().map(|(u, _)| u).collect::<Vec<_>>(),
            ["live"]
        );
        assert_eq!(hub.stats().connections, 1);
    }
}
