//! The hub's side of a Redis backplane (feature `redis`): publishing through the bus,
//! fanning out what the bus brings, and keeping each room's members continuous.
//!
//! - **Publish.** A publish goes to Redis (stored and published in one script, or
//!   published alone when not stored) and is not fanned out here: this node fans it
//!   out when it comes back from the bus, like every other node, so all nodes deliver
//!   a room's messages in the bus's order. The publish waits for that echo (bounded by
//!   `echo_timeout`) to report this node's deliveries.
//! - **Fan-out.** The bus task hands messages to the hub's consumer task, which
//!   queues each in its room's inbox (rooms this node does not have are skipped) and
//!   schedules one drain task per room. The drain takes the room's turn, so it never
//!   runs beside a join reading history, and delivers in order.
//! - **Continuity.** `RoomInbox::through` is the position every member has everything
//!   through. Already had: dropped (a join's replay or a catch-up sent it). One past
//!   it: delivered. Further (a gap): the missing messages are read from history and
//!   delivered first; if history cannot supply them, the room's members are closed
//!   with 1013 so they re-join and learn `recovered: false`.
//! - **Joins.** With the turn held, a join first drains the inbox, then reads
//!   history (position P). Members already in the room are brought to P from history
//!   if the bus has not brought them there yet, then `through` = P, so what the bus
//!   later brings at or below P is not sent twice to the new member.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use dashmap::DashMap;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::{Hub, HubInner, Published};
use crate::history::{HistoryError, HistoryQuery};
use crate::protocol::StreamPosition;
use crate::redis::{BusEvent, BusMessage, RedisBackplane};
use crate::room::inbox::Inbound;
use crate::room::{Publication, RoomState};
use crate::ws::CloseCode;

/// A hub's backplane state.
pub(crate) struct Cluster {
    pub(crate) backplane: RedisBackplane,
    /// This node's publishes waiting for their echo, by publish id. Each publish
    /// removes its own entry when it ends, so this holds only publishes in flight.
    waiters: DashMap<u64, oneshot::Sender<usize>>,
    /// Whether the bus subscription is up. A publish waits for it (at most the
    /// command timeout: right after start, or during a reconnect) and fails if it
    /// stays down: this node would see neither its own message nor anyone else's.
    bus_up: watch::Sender<bool>,
    /// Cancelled when the hub is dropped: ends the consumer, which ends the bus task.
    stop: CancellationToken,
    /// This node's presence changes, to the writer task (`cluster_presence`).
    pub(crate) presence_tx: mpsc::Sender<super::cluster_presence::Write>,
    /// The writer's end, taken when the hub starts.
    presence_rx: std::sync::Mutex<Option<mpsc::Receiver<super::cluster_presence::Write>>>,
    /// What the metrics read; shared with the presence writer task.
    pub(crate) counts: Arc<BackplaneCounts>,
}

/// What the backplane counts for the metrics, read at scrape time. Plain atomics, not
/// the metrics' per-thread shards: these are rare events (failures, gaps) and one
/// gauge, never on a hot path.
#[derive(Debug, Default)]
pub(crate) struct BackplaneCounts {
    /// Publishes that failed `unavailable`.
    pub(crate) publish_errors: AtomicU64,
    /// Presence writes, heartbeats and re-syncs that failed, and writes dropped.
    pub(crate) presence_errors: AtomicU64,
    /// Times the bus subscription was lost.
    pub(crate) subscription_losses: AtomicU64,
    /// Gaps filled from history.
    pub(crate) gaps_filled: AtomicU64,
    /// Rooms whose members were closed with 1013 for lost continuity.
    pub(crate) continuity_losses: AtomicU64,
    /// Bus messages waiting for the consumer, as of the last one it took.
    pub(crate) bus_queue: AtomicUsize,
}

impl BackplaneCounts {
    /// Adds one to `counter`.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The values, for a scrape.
    #[cfg(feature = "metrics")]
    pub(crate) fn gauges(&self) -> crate::metrics::BackplaneGauges {
        crate::metrics::BackplaneGauges {
            publish_errors: self.publish_errors.load(Ordering::Relaxed),
            presence_errors: self.presence_errors.load(Ordering::Relaxed),
            subscription_losses: self.subscription_losses.load(Ordering::Relaxed),
            gaps_filled: self.gaps_filled.load(Ordering::Relaxed),
            continuity_losses: self.continuity_losses.load(Ordering::Relaxed),
            bus_queue: self.bus_queue.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Cluster {
    pub(crate) fn new(backplane: RedisBackplane) -> Self {
        let (presence_tx, presence_rx) = mpsc::channel(super::cluster_presence::WRITE_QUEUE);
        Cluster {
            presence_tx,
            presence_rx: std::sync::Mutex::new(Some(presence_rx)),
            backplane,
            waiters: DashMap::new(),
            bus_up: watch::Sender::new(false),
            stop: CancellationToken::new(),
            counts: Arc::default(),
        }
    }
}

/// Removes a publish's waiter however the publish ends.
struct WaiterGuard<'a> {
    cluster: &'a Cluster,
    id: u64,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.cluster.waiters.remove(&self.id);
    }
}

/// Subscribes to the bus and starts the task that consumes it.
pub(crate) fn start(hub: &Hub) {
    let Some(cluster) = &hub.0.cluster else {
        return;
    };
    let rx = cluster.backplane.subscribe();
    let stop = cluster.stop.clone();
    let weak = Arc::downgrade(&hub.0);
    tokio::spawn(consume(weak, rx, stop, cluster.counts.clone()));
    let presence_rx = cluster
        .presence_rx
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(rx) = presence_rx {
        super::cluster_presence::spawn(hub, cluster.backplane.clone(), rx, cluster.counts.clone());
    }
}

/// Takes bus events one at a time: this task only queues and schedules, never waits
/// for a room, so one busy room does not hold up the others.
async fn consume(
    weak: Weak<HubInner>,
    mut rx: mpsc::Receiver<BusEvent>,
    stop: CancellationToken,
    counts: Arc<BackplaneCounts>,
) {
    loop {
        let event = tokio::select! {
            e = rx.recv() => e,
            () = stop.cancelled() => return,
        };
        let Some(event) = event else { return };
        // What still waits behind this one: the bus lag the metrics show.
        counts.bus_queue.store(rx.len(), Ordering::Relaxed);
        let Some(inner) = weak.upgrade() else { return };
        Hub(inner).on_bus_event(event);
    }
}

impl Hub {
    fn cluster(&self) -> &Cluster {
        self.0.cluster.as_ref().expect("called with a backplane")
    }

    fn on_bus_event(&self, event: BusEvent) {
        let cluster = self.cluster();
        match event {
            BusEvent::Subscribed { after_loss } => {
                cluster.bus_up.send_replace(true);
                if after_loss {
                    // Anything may have been missed meanwhile: every room checks.
                    let rooms: Vec<_> = self.0.rooms.iter().map(|r| r.value().clone()).collect();
                    for room in rooms {
                        room.inbox.resync.store(true, Ordering::Release);
                        self.schedule_drain(room);
                    }
                    // Presence too: Redis may have lost this node's entries, and
                    // others' changes may have been missed.
                    let hub = self.clone();
                    tokio::spawn(async move { hub.reconcile_all().await });
                }
            }
            BusEvent::Lost => {
                cluster.bus_up.send_replace(false);
                BackplaneCounts::bump(&cluster.counts.subscription_losses);
            }
            BusEvent::Message(m) => self.on_bus_message(m),
            BusEvent::Presence(e) => self.on_presence_event(e, cluster.backplane.node()),
        }
    }

    fn on_bus_message(&self, m: BusMessage) {
        let cluster = self.cluster();
        let waiter = if m.node == cluster.backplane.node() {
            cluster.waiters.remove(&m.publish_id).map(|(_, tx)| tx)
        } else {
            None
        };
        let Some(room) = self.0.rooms.get(m.room.as_str()).map(|r| r.value().clone()) else {
            // Nobody here: nothing to deliver.
            if let Some(tx) = waiter {
                let _ = tx.send(0);
            }
            return;
        };
        let item = Inbound {
            position: m.position,
            frame: m.frame,
            waiter,
        };
        if let Err(item) = room
            .inbox
            .push(item, cluster.backplane.options().room_inbox)
        {
            // Dropped; the room checks its continuity on its next drain.
            if let Some(tx) = item.waiter {
                let _ = tx.send(0);
            }
        }
        self.schedule_drain(room);
    }

    /// Starts a drain task for `room` unless one is scheduled already.
    fn schedule_drain(&self, room: Arc<RoomState>) {
        if room.inbox.draining.swap(true, Ordering::AcqRel) {
            return;
        }
        let hub = self.clone();
        tokio::spawn(async move {
            loop {
                {
                    let _turn = room.turn.lock().await;
                    hub.drain_locked(&room).await;
                }
                room.inbox.draining.store(false, Ordering::Release);
                // A message queued after the last take and before the flag was
                // cleared found the flag set and scheduled nothing: look again.
                if !room.inbox.has_work() || room.inbox.draining.swap(true, Ordering::AcqRel) {
                    return;
                }
            }
        });
    }

    /// Delivers everything waiting in `room`'s inbox, in order. Call with the room's
    /// turn held.
    pub(crate) async fn drain_locked(&self, room: &RoomState) {
        if room.inbox.resync.swap(false, Ordering::AcqRel) {
            self.resync(room).await;
        }
        loop {
            let batch = room.inbox.take();
            if batch.is_empty() {
                return;
            }
            for item in batch {
                self.deliver_inbound(room, item).await;
            }
        }
    }

    /// Fans out one bus message, after filling a gap before it if there is one.
    async fn deliver_inbound(&self, room: &RoomState, item: Inbound) {
        let Inbound {
            position,
            frame,
            waiter,
        } = item;
        let tracked = room.ns.options().history.is_some();
        if let (Some(pos), true) = (&position, tracked) {
            match room.inbox.through() {
                Some(t) if t.epoch == pos.epoch && pos.seq <= t.seq => {
                    // Every member has it already (a replay or a catch-up sent it).
                    if let Some(tx) = waiter {
                        let _ = tx.send(room.members().conns.len());
                    }
                    return;
                }
                Some(t) if t.epoch == pos.epoch && pos.seq == t.seq + 1 => {}
                None => {}
                Some(t) => {
                    let since = if t.epoch == pos.epoch {
                        t
                    } else {
                        StreamPosition::new(0, pos.epoch.clone())
                    };
                    if pos.seq > since.seq + 1 {
                        self.catch_up(room, since, Some(pos.seq - 1)).await;
                    }
                }
            }
            room.inbox.set_through(Some(pos.clone()));
        }
        let fanout = room.broadcast(&self.prepare(frame));
        self.drop_slow_consumers(fanout.slow);
        if let Some(tx) = waiter {
            let _ = tx.send(fanout.delivered);
        }
    }

    /// After the bus was lost or a queue overflowed: brings the members up to date
    /// from history, or closes them if that cannot be done.
    async fn resync(&self, room: &RoomState) {
        if room.ns.options().history.is_none() {
            // No history: whatever was missed cannot be known, let alone sent.
            self.close_members(room, "backplane interrupted");
            return;
        }
        if let Some(since) = room.inbox.through() {
            self.catch_up(room, since, None).await;
        }
    }

    /// Delivers the stored messages after `since` (up to `until`) to the room's
    /// members; closes them (1013) if history no longer has all of them.
    async fn catch_up(&self, room: &RoomState, since: StreamPosition, until: Option<u64>) {
        let Some(limits) = room.ns.options().history else {
            return;
        };
        if room.is_idle() {
            room.inbox.set_through(None);
            return;
        }
        let query = HistoryQuery::After {
            since,
            max: self.config().max_recovery,
        };
        match self.0.history.read(&room.name, query, limits).await {
            Ok(read) if read.complete => {
                if !read.messages.is_empty() {
                    BackplaneCounts::bump(&self.cluster().counts.gaps_filled);
                }
                for m in read.messages {
                    if until.is_some_and(|u| m.seq > u) {
                        break;
                    }
                    let fanout = room.broadcast(&m.frame);
                    self.drop_slow_consumers(fanout.slow);
                    room.inbox
                        .set_through(Some(StreamPosition::new(m.seq, m.epoch.clone())));
                }
            }
            Ok(_) => self.close_members(room, "backplane continuity lost"),
            Err(e) => {
                tracing::warn!(room = &*room.name, error = %e, "backplane: cannot read history to fill a gap");
                self.close_members(room, "backplane continuity lost");
            }
        }
    }

    /// Closes every member of `room` with 1013: they reconnect, re-join with their
    /// position and are told whether they recovered.
    fn close_members(&self, room: &RoomState, reason: &str) {
        let members: Vec<_> = room
            .members()
            .conns
            .iter()
            .map(|(id, out)| (*id, out.clone()))
            .collect();
        room.inbox.set_through(None);
        if members.is_empty() {
            return;
        }
        BackplaneCounts::bump(&self.cluster().counts.continuity_losses);
        tracing::warn!(
            room = &*room.name,
            members = members.len(),
            reason,
            "backplane: closing the room's members (1013)"
        );
        for (conn_id, out) in members {
            if !out.is_closed() {
                out.close(CloseCode::Again, reason);
            }
            self.disconnect(conn_id);
        }
    }

    /// Before a join adds its member at history position `p` (turn held): brings the
    /// members already there up to `p`, then records `p`.
    pub(crate) async fn align_with(&self, room: &RoomState, p: &StreamPosition) {
        if let Some(t) = room.inbox.through()
            && !room.is_idle()
        {
            if t.epoch == p.epoch && t.seq < p.seq {
                self.catch_up(room, t, Some(p.seq)).await;
            } else if t.epoch != p.epoch && p.seq > 0 {
                self.catch_up(room, StreamPosition::new(0, p.epoch.clone()), Some(p.seq))
                    .await;
            }
        }
        room.inbox.set_through(Some(p.clone()));
    }

    /// A publish through the bus: see the module docs.
    pub(crate) async fn cluster_publish(
        &self,
        room: &RoomState,
        publication: Publication,
    ) -> Result<Published, HistoryError> {
        let cluster = self.cluster();
        if !*cluster.bus_up.borrow() {
            let mut up = cluster.bus_up.subscribe();
            let wait = cluster.backplane.options().command_timeout;
            if !matches!(
                tokio::time::timeout(wait, up.wait_for(|up| *up)).await,
                Ok(Ok(_))
            ) {
                BackplaneCounts::bump(&cluster.counts.publish_errors);
                return Err(HistoryError::Unavailable(
                    "the backplane's subscription is down".into(),
                ));
            }
        }
        let started = self.metrics().map(|m| m.start_timer());
        let Publication {
            msg,
            ephemeral,
            typed,
        } = publication;
        let backplane = &cluster.backplane;
        let id = backplane.next_publish_id();
        let (tx, rx) = oneshot::channel();
        cluster.waiters.insert(id, tx);
        let _guard = WaiterGuard { cluster, id };
        let failed = |_: &HistoryError| BackplaneCounts::bump(&cluster.counts.publish_errors);
        let position = match room.ns.options().history {
            Some(limits) if !ephemeral => {
                let (seq, epoch) = backplane
                    .append_publish(&room.name, &msg, limits, id)
                    .await
                    .inspect_err(failed)?;
                Some(StreamPosition::new(seq, epoch))
            }
            _ => {
                backplane
                    .publish_plain(&room.name, &msg.frame(None), id)
                    .await
                    .inspect_err(failed)?;
                None
            }
        };
        if let Some(typed) = typed {
            // This node's server-side subscribers.
            typed(position.clone());
        }
        let delivered = tokio::time::timeout(backplane.options().echo_timeout, rx)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(0);
        if let (Some(metrics), Some(started)) = (self.metrics(), started) {
            metrics.published(room.metrics_ns, delivered, started);
        }
        Ok(Published {
            delivered,
            position,
        })
    }
}
