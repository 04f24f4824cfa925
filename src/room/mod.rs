//! Typed rooms: namespaces declared with a Rust message type ([`namespace`]), the
//! per-room state (members, presence), fan-out, and the typed [`Room`] handle.

mod namespace;

use std::any::Any;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use tokio::sync::broadcast;

pub(crate) use namespace::ErasedNamespace;
pub use namespace::{
    AsyncPublishContext, Namespace, NamespaceOptions, PublishContext, Refusal, RoomMessage,
};

use crate::hub::{ConnectionInfo, Hub, RoomInfo};
use crate::presence::{Presence, PresenceDiff, RoomPresence};
use crate::protocol;
use crate::ws::{Outbound, PreparedMessage, SendError};

/// Encodes `msg` once, queues it for every member, and hands it to server-side
/// subscribers. Returns how many connections it was queued for.
pub(crate) fn publish_typed<M: RoomMessage>(
    hub: &Hub,
    room: &RoomState,
    from: Option<&str>,
    msg: M,
) -> serde_json::Result<usize> {
    let text = protocol::try_encode_message(&room.name, from, &msg)?;
    let prepared = hub.prepare(text);
    let delivered = room.broadcast(hub, &prepared);
    if let Some(tx) = room.typed_tx.get()
        && let Some(tx) = tx.downcast_ref::<broadcast::Sender<Delivery<M>>>()
        && tx.receiver_count() > 0
    {
        let _ = tx.send(Delivery {
            room: room.name.clone(),
            from: from.map(Arc::from),
            data: msg,
        });
    }
    Ok(delivered)
}

/// The connections in a room. Held in a std `RwLock`: publishes (the hot path) only
/// read, joins and leaves write, and no lock is ever held across an `.await`.
#[derive(Default)]
pub(crate) struct Members {
    pub(crate) conns: HashMap<u64, Outbound>,
}

/// One room on this hub.
pub(crate) struct RoomState {
    pub(crate) name: Arc<str>,
    pub(crate) ns: Arc<dyn ErasedNamespace>,
    pub(crate) members: RwLock<Members>,
    /// Presence, locked for one join or leave at a time. Diffs, and the replies that
    /// carry a snapshot (join, presence), are queued while it is held, so every member
    /// gets them in the order they were taken.
    pub(crate) presence: Mutex<RoomPresence>,
    /// Whether the room is in the hub's presence queue (so it is queued once per tick).
    pub(crate) presence_dirty: AtomicBool,
    /// `broadcast::Sender<Delivery<M>>` for server-side subscribers, created by the
    /// first [`Room::subscribe`].
    typed_tx: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl fmt::Debug for RoomState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomState")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Capacity of a room's channel to server-side subscribers; one that falls further
/// behind misses messages and is told how many ([`RecvError::Lagged`]).
const TYPED_CHANNEL_CAPACITY: usize = 1024;

impl RoomState {
    pub(crate) fn new(name: &str, ns: Arc<dyn ErasedNamespace>) -> Self {
        RoomState {
            name: Arc::from(name),
            ns,
            members: RwLock::new(Members::default()),
            presence: Mutex::new(RoomPresence::default()),
            presence_dirty: AtomicBool::new(false),
            typed_tx: OnceLock::new(),
        }
    }

    pub(crate) fn members(&self) -> std::sync::RwLockReadGuard<'_, Members> {
        self.members.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn members_mut(&self) -> std::sync::RwLockWriteGuard<'_, Members> {
        self.members.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn presence_lock(&self) -> std::sync::MutexGuard<'_, RoomPresence> {
        self.presence.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `msg` for every member without waiting for any of them. A member whose
    /// queue is full is a slow consumer: it is closed with 1013 and removed from its
    /// rooms (after the read lock is released), and the others are not slowed.
    pub(crate) fn broadcast(&self, hub: &Hub, msg: &PreparedMessage) -> usize {
        let mut delivered = 0;
        let mut slow = Vec::new();
        {
            let members = self.members();
            for (&conn_id, out) in &members.conns {
                match out.try_send(msg) {
                    Ok(()) => delivered += 1,
                    Err(SendError::Full) => slow.push((conn_id, out.clone())),
                    Err(SendError::Closed) => {}
                }
            }
        }
        for (conn_id, out) in slow {
            hub.close_slow_consumer(conn_id, &out);
        }
        delivered
    }

    /// Sends a presence diff to every member (call with the presence lock held, so
    /// diffs and snapshot replies keep their order).
    pub(crate) fn broadcast_diff(&self, hub: &Hub, diff: &PresenceDiff) {
        let text = protocol::encode_presence_diff(&self.name, diff);
        let prepared = hub.prepare(text);
        self.broadcast(hub, &prepared);
    }

    pub(crate) fn snapshot(&self) -> Presence {
        self.presence_lock().snapshot()
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.members().conns.is_empty()
    }
}

/// A message delivered to a server-side [`RoomSubscription`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Delivery<M> {
    /// The room it was published to.
    pub room: Arc<str>,
    /// The publishing user, `None` for a server publish.
    pub from: Option<Arc<str>>,
    /// The message.
    pub data: M,
}

impl<M> Delivery<M> {
    /// A delivery of `data` to `room` from `from` (`None`: a server publish). The
    /// struct is `#[non_exhaustive]`, so outside this crate it is built with this (to
    /// test code that consumes a [`RoomSubscription`], say), not with a literal.
    pub fn new(room: impl Into<Arc<str>>, from: Option<&str>, data: M) -> Self {
        Delivery {
            room: room.into(),
            from: from.map(Arc::from),
            data,
        }
    }
}

/// A typed handle on one room, from [`Hub::room`]. Cheap to clone.
pub struct Room<M> {
    hub: Hub,
    state: Arc<RoomState>,
    _m: PhantomData<fn() -> M>,
}

impl<M> Clone for Room<M> {
    fn clone(&self) -> Self {
        Room {
            hub: self.hub.clone(),
            state: self.state.clone(),
            _m: PhantomData,
        }
    }
}

impl<M> fmt::Debug for Room<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Room")
            .field("name", &self.state.name)
            .field("type", &std::any::type_name::<M>())
            .finish()
    }
}

impl<M: RoomMessage> Room<M> {
    pub(crate) fn new(hub: Hub, state: Arc<RoomState>) -> Self {
        Room {
            hub,
            state,
            _m: PhantomData,
        }
    }

    /// The room's name.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Publishes `msg` from the server (`"from": null` on the wire) to every member and
    /// server-side subscriber. Returns the number of connections it was queued for. The
    /// namespace's publish hook does not run for server publishes.
    pub fn publish(&self, msg: M) -> crate::Result<usize> {
        publish_typed(&self.hub, &self.state, None, msg).map_err(crate::Error::Encode)
    }

    /// Publishes `msg` in the name of user `from`.
    pub fn publish_as(&self, from: &str, msg: M) -> crate::Result<usize> {
        publish_typed(&self.hub, &self.state, Some(from), msg).map_err(crate::Error::Encode)
    }

    /// Who is in the room now.
    pub fn presence(&self) -> Presence {
        self.state.snapshot()
    }

    /// How many connections are in the room.
    pub fn member_count(&self) -> usize {
        self.state.members().conns.len()
    }

    /// The room's name, namespace, and connection and user counts, read together (as
    /// [`Hub::rooms`] reports them). O(1).
    pub fn info(&self) -> RoomInfo {
        RoomInfo::of(&self.state)
    }

    /// The connections in the room now, each with its user, address and rooms, ordered
    /// by connection id (oldest first).
    ///
    /// Cost: O(members × rooms per member). The member list is copied under the room's
    /// read lock, which is then released before each connection is looked up, so a
    /// publish to this room or a join is held up only by that copy.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        self.hub.connection_infos(self.member_ids())
    }

    /// The users with a connection in the room now (a user with several tabs appears
    /// once), sorted by id. With presence on these are the users of
    /// [`presence`](Self::presence); this also works in namespaces without presence.
    /// Cost as [`connections`](Self::connections), without the rooms.
    pub fn users(&self) -> Vec<String> {
        let users: BTreeSet<String> = self
            .hub
            .connection_infos(self.member_ids())
            .into_iter()
            .map(|c| c.user_id)
            .collect();
        users.into_iter().collect()
    }

    /// The members' connection ids, sorted, copied under the read lock.
    fn member_ids(&self) -> BTreeSet<u64> {
        self.state.members().conns.keys().copied().collect()
    }

    /// A server-side stream of the room's messages (for bots, logging, bridges).
    pub fn subscribe(&self) -> RoomSubscription<M> {
        let tx = self.state.typed_tx.get_or_init(|| {
            let (tx, _) = broadcast::channel::<Delivery<M>>(TYPED_CHANNEL_CAPACITY);
            Box::new(tx)
        });
        let tx = tx
            .downcast_ref::<broadcast::Sender<Delivery<M>>>()
            .expect("Hub::room checked the namespace type");
        RoomSubscription {
            rx: tx.subscribe(),
            _room: self.state.clone(),
        }
    }
}

/// Why [`RoomSubscription::recv`] returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// The subscriber fell more than 1,024 messages behind and missed this many.
    /// The subscription still works; the next call returns the oldest kept message.
    #[error("subscriber lagged and missed {0} messages")]
    Lagged(u64),
    /// The room is gone (the hub was dropped).
    #[error("room closed")]
    Closed,
}

/// A server-side subscription to a room, from [`Room::subscribe`].
pub struct RoomSubscription<M> {
    rx: broadcast::Receiver<Delivery<M>>,
    /// Keeps the room alive while subscribed.
    _room: Arc<RoomState>,
}

impl<M> fmt::Debug for RoomSubscription<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomSubscription").finish_non_exhaustive()
    }
}

impl<M: RoomMessage> RoomSubscription<M> {
    /// The next message published to the room.
    pub async fn recv(&mut self) -> Result<Delivery<M>, RecvError> {
        self.rx.recv().await.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(n) => RecvError::Lagged(n),
            broadcast::error::RecvError::Closed => RecvError::Closed,
        })
    }
}
