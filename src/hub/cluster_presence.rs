//! Cluster-wide presence (feature `redis`), behind a narrow interface so it stays
//! apart from how a room keeps its presence (`crate::presence`):
//!
//! - this node's changes go out through [`Hub::cluster_presence_joined`] and
//!   [`Hub::cluster_presence_left`] (called by `hub/rooms` next to the local change),
//!   written to Redis in order by one task and announced on the bus;
//! - other nodes' changes come in as bus events ([`Hub::on_presence_event`]) and are
//!   applied to the room's `RoomPresence` like local ones, as entries with a
//!   connection id of their own (the node's tag in the high bits), so a user's first
//!   connection anywhere announces the join and their last anywhere the leave, and
//!   big rooms count, page and route the whole cluster;
//! - the interest hook is asked on the node that has the connection (where its whole
//!   identity is): whether its user is featured travels with the entry, and the
//!   watchers of a user are found by user id, so local watchers hear of a watched
//!   user on any node. What a remote connection watches is not needed here: only its
//!   own node sends it anything;
//! - [`Hub::reconcile_presence`] makes a room's view equal to Redis's (entries of
//!   nodes whose heartbeat expired are dropped there, and their leaves announced
//!   here), and rewrites this node's own entries if Redis lost them. It runs on a
//!   room's first join on this node, on every heartbeat (a third of `presence_ttl`)
//!   and after the bus came back.

use std::sync::Arc;
use std::sync::Weak;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::cluster::BackplaneCounts;
use super::{ConnEntry, Hub, HubInner};
use crate::presence::JoinInterest;
use crate::protocol::PresenceMeta;
use crate::redis::{PresenceEvent, RedisBackplane};
use crate::room::RoomState;

/// Presence writes waiting for Redis, at most. Over it a write is dropped and logged:
/// the next reconciliation (a third of `presence_ttl` later) writes what is missing.
pub(crate) const WRITE_QUEUE: usize = 16_384;

/// Local connection ids stay below this; remote entries carry the node's tag above.
const TAG_SHIFT: u32 = 40;

/// A remote node's tag: 24 bits of its id, never 0 (0 is this node's own range).
fn node_tag(node: u64) -> u64 {
    (node & 0xFF_FFFF).max(1)
}

/// The connection id under which connection `conn` of node `node` is kept here.
pub(crate) fn remote_conn_id(node: u64, conn: u64) -> u64 {
    (node_tag(node) << TAG_SHIFT) | (conn & ((1 << TAG_SHIFT) - 1))
}

fn is_remote(conn_id: u64) -> bool {
    conn_id >> TAG_SHIFT != 0
}

/// What the room's interest index records for another node's connection: whether its
/// user is featured, as that node's hook said. It watches nobody here (its watchers'
/// diffs are sent by its own node).
fn remote_interest(featured: bool) -> JoinInterest {
    JoinInterest {
        watches: Vec::new(),
        featured,
    }
}

/// One write to Redis, in the order the changes happened here.
#[derive(Debug)]
pub(crate) enum Write {
    Join {
        room: Arc<str>,
        conn: u64,
        user: String,
        meta: String,
        /// What the interest hook said of the user (see the module docs).
        featured: bool,
    },
    Leave {
        room: Arc<str>,
        conn: u64,
        user: String,
    },
}

/// Starts the writer and the heartbeat tasks.
pub(crate) fn spawn(
    hub: &Hub,
    backplane: RedisBackplane,
    rx: mpsc::Receiver<Write>,
    counts: Arc<BackplaneCounts>,
) {
    tokio::spawn(writer(backplane.clone(), rx, counts));
    tokio::spawn(heartbeat(Arc::downgrade(&hub.0), backplane));
}

/// Writes this node's presence changes to Redis, one after the other (a join and the
/// leave that follows it must not swap). Ends when the hub is dropped.
async fn writer(
    backplane: RedisBackplane,
    mut rx: mpsc::Receiver<Write>,
    counts: Arc<BackplaneCounts>,
) {
    while let Some(w) = rx.recv().await {
        let result = match &w {
            Write::Join {
                room,
                conn,
                user,
                meta,
                featured,
            } => {
                backplane
                    .presence_join(room, *conn, user, meta, *featured)
                    .await
            }
            Write::Leave { room, conn, user } => backplane.presence_leave(room, *conn, user).await,
        };
        if let Err(e) = result {
            // Redis is down: the reconciliation after it is back writes what is missing.
            tracing::debug!(error = %e, "presence write failed");
            BackplaneCounts::bump(&counts.presence_errors);
        }
    }
}

/// Says this node is alive every third of `presence_ttl`, and reconciles every room.
async fn heartbeat(weak: Weak<HubInner>, backplane: RedisBackplane) {
    // Never a busy loop, whatever the setting.
    let period = (backplane.options().presence_ttl / 3).max(std::time::Duration::from_millis(10));
    loop {
        {
            let Some(inner) = weak.upgrade() else { return };
            let hub = Hub(inner);
            if hub.is_shutting_down() {
                return;
            }
            if let Err(e) = backplane.heartbeat().await {
                tracing::debug!(error = %e, "presence heartbeat failed");
                if let Some(cluster) = hub.backplane() {
                    BackplaneCounts::bump(&cluster.counts.presence_errors);
                }
            }
            hub.reconcile_all().await;
        }
        tokio::time::sleep(period).await;
    }
}

impl Hub {
    fn backplane(&self) -> Option<&super::cluster::Cluster> {
        self.0.cluster.as_ref()
    }

    fn queue_write(&self, w: Write) {
        if let Some(cluster) = self.backplane()
            && cluster.presence_tx.try_send(w).is_err()
        {
            BackplaneCounts::bump(&cluster.counts.presence_errors);
            tracing::warn!("presence write queue full; the next reconciliation catches up");
        }
    }

    /// This node's connection `entry` joined `room` with `meta` (as stamped);
    /// `featured`: what the interest hook said of its user.
    pub(crate) fn cluster_presence_joined(
        &self,
        room: &Arc<str>,
        entry: &ConnEntry,
        meta: &PresenceMeta,
        featured: bool,
    ) {
        let Ok(meta) = serde_json::to_string(meta) else {
            return;
        };
        self.queue_write(Write::Join {
            room: room.clone(),
            conn: entry.id,
            user: entry.identity.user_id.clone(),
            meta,
            featured,
        });
    }

    /// This node's connection `entry` left `room`.
    pub(crate) fn cluster_presence_left(&self, room: &Arc<str>, entry: &ConnEntry) {
        self.queue_write(Write::Leave {
            room: room.clone(),
            conn: entry.id,
            user: entry.identity.user_id.clone(),
        });
    }

    /// Applies another node's presence change to this node's copy of the room.
    pub(crate) fn on_presence_event(&self, event: PresenceEvent, me: u64) {
        match event {
            PresenceEvent::Join {
                node,
                conn,
                room,
                user,
                meta,
                featured,
            } if node != me => {
                let Some(state) = self.presence_room(&room) else {
                    return;
                };
                let Ok(mut meta) = serde_json::from_str::<PresenceMeta>(&meta) else {
                    return;
                };
                meta.conn_id = remote_conn_id(node, conn);
                let announced = {
                    let mut presence = state.presence_lock();
                    state.inbox.presence_events.fetch_add(1, Ordering::AcqRel);
                    presence.join_entry(&user, meta, remote_interest(featured))
                };
                if announced {
                    self.presence_changed(&state);
                }
            }
            PresenceEvent::Leave {
                node,
                conn,
                room,
                user,
            } if node != me => {
                let Some(state) = self.presence_room(&room) else {
                    return;
                };
                let id = remote_conn_id(node, conn);
                let left = {
                    let mut presence = state.presence_lock();
                    let n = state.inbox.presence_events.fetch_add(1, Ordering::AcqRel) + 1;
                    let mut tombs = state
                        .inbox
                        .presence_tombstones
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    if tombs.len() >= crate::room::inbox::TOMBSTONES {
                        tombs.pop_front();
                    }
                    tombs.push_back((n, id));
                    drop(tombs);
                    presence.leave(&user, id)
                };
                if left {
                    self.presence_changed(&state);
                }
            }
            PresenceEvent::Gone { node } if node != me => {
                let tag = node_tag(node);
                let rooms: Vec<_> = self.0.rooms.iter().map(|r| r.value().clone()).collect();
                for state in rooms {
                    if state.ns.options().presence {
                        self.drop_remote(&state, |id| id >> TAG_SHIFT == tag);
                    }
                }
            }
            _ => {}
        }
    }

    /// Room `name` if this node has it and it keeps presence.
    fn presence_room(&self, name: &str) -> Option<Arc<RoomState>> {
        let state = self.0.rooms.get(name).map(|r| r.value().clone())?;
        state.ns.options().presence.then_some(state)
    }

    /// Removes the remote entries `gone` selects; announces the leaves.
    fn drop_remote(&self, state: &Arc<RoomState>, gone: impl Fn(u64) -> bool) {
        let changed = {
            let mut presence = state.presence_lock();
            let doomed: Vec<(String, u64)> = presence
                .snapshot()
                .iter()
                .flat_map(|(user, metas)| {
                    metas
                        .iter()
                        .filter(|m| is_remote(m.conn_id) && gone(m.conn_id))
                        .map(move |m| (user.to_owned(), m.conn_id))
                })
                .collect();
            let mut changed = false;
            for (user, id) in doomed {
                changed |= presence.leave(&user, id);
            }
            changed
        };
        if changed {
            self.presence_changed(state);
        }
    }

    /// Reconciles every room of a namespace with presence (see the module docs).
    pub(crate) async fn reconcile_all(&self) {
        let rooms: Vec<_> = self
            .0
            .rooms
            .iter()
            .map(|r| r.value().clone())
            .filter(|r| r.ns.options().presence)
            .collect();
        for state in rooms {
            self.reconcile_presence(&state).await;
        }
    }

    /// Makes `state`'s presence equal to Redis's for other nodes' entries, and Redis's
    /// equal to this node's for its own.
    pub(crate) async fn reconcile_presence(&self, state: &Arc<RoomState>) {
        let Some(cluster) = self.backplane() else {
            return;
        };
        let me = cluster.backplane.node();
        let events_before = state.inbox.presence_events.load(Ordering::Acquire);
        let entries = match cluster.backplane.presence_entries(&state.name).await {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(room = &*state.name, error = %e, "presence reconciliation failed");
                BackplaneCounts::bump(&cluster.counts.presence_errors);
                return;
            }
        };
        let mut remote = std::collections::HashMap::new();
        let mut own_in_redis = std::collections::HashMap::new();
        for e in entries {
            if e.node == me {
                own_in_redis.insert(e.conn, e.user);
            } else if let Ok(mut meta) = serde_json::from_str::<PresenceMeta>(&e.meta) {
                meta.conn_id = remote_conn_id(e.node, e.conn);
                remote.insert(meta.conn_id, (e.user, meta, e.featured));
            }
        }
        let mut own_local = Vec::new();
        let changed = {
            let mut presence = state.presence_lock();
            let snapshot = presence.snapshot();
            // A change from the bus landed between the read and now: the read may be
            // older than this room's view. Entries it lacks are then kept (the next
            // reconciliation looks again), and entries that left meanwhile are not
            // brought back.
            let raced = state.inbox.presence_events.load(Ordering::Acquire) != events_before;
            if raced {
                let tombs = state
                    .inbox
                    .presence_tombstones
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                for (n, id) in tombs.iter() {
                    if *n > events_before {
                        remote.remove(id);
                    }
                }
            }
            let mut changed = false;
            for (user, metas) in snapshot.iter() {
                for m in metas {
                    if !is_remote(m.conn_id) {
                        own_local.push((user.to_owned(), m.clone(), presence.is_featured(user)));
                    } else if !raced && !remote.contains_key(&m.conn_id) {
                        changed |= presence.leave(user, m.conn_id);
                    }
                }
            }
            for (id, (user, meta, featured)) in remote {
                if snapshot
                    .get(&user)
                    .is_none_or(|ms| ms.iter().all(|m| m.conn_id != id))
                {
                    changed |= presence.join_entry(&user, meta, remote_interest(featured));
                }
            }
            changed
        };
        state.inbox.presence_loaded.store(true, Ordering::Release);
        if changed {
            self.presence_changed(state);
        }
        // This node's own entries, as Redis should have them (after a Redis restart,
        // or a write dropped).
        for (user, meta, featured) in &own_local {
            if own_in_redis.remove(&meta.conn_id).is_none()
                && let Ok(json) = serde_json::to_string(meta)
            {
                self.queue_write(Write::Join {
                    room: state.name.clone(),
                    conn: meta.conn_id,
                    user: user.clone(),
                    meta: json,
                    featured: *featured,
                });
            }
        }
        for (conn, user) in own_in_redis {
            // Left here; the leave did not reach Redis.
            self.queue_write(Write::Leave {
                room: state.name.clone(),
                conn,
                user,
            });
        }
    }

    /// Graceful shutdown: every node drops this node's entries at once.
    pub(crate) async fn cluster_goodbye(&self) {
        if let Some(cluster) = self.backplane()
            && let Err(e) = cluster.backplane.goodbye().await
        {
            tracing::debug!(error = %e, "presence goodbye failed");
        }
    }
}
