//! Typed rooms: namespaces declared with a Rust message type ([`namespace`]), and the
//! per-room state (members, presence, server-side subscribers) with its fan-out, which
//! returns what happened (deliveries, slow consumers) for the hub to act on. The typed
//! [`Room`](crate::Room) handle lives in the hub, which owns publishing.

#[cfg(feature = "redis")]
pub(crate) mod inbox;
mod namespace;

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use tokio::sync::broadcast;

pub(crate) use namespace::ErasedNamespace;
pub use namespace::{
    AsyncPublishContext, Namespace, NamespaceOptions, PublishContext, Refusal, RoomMessage,
};

use crate::presence::RoomPresence;
use crate::protocol::Presence;
use crate::protocol::{EncodedMessage, StreamPosition};
use crate::ws::{Outbound, PreparedMessage, SendError};

/// Hands a published message, with the position it was stored at, to the room's
/// server-side subscribers.
pub(crate) type TypedHandOff = Box<dyn FnOnce(Option<StreamPosition>) + Send>;

/// A message on its way to a room: the `message` frame encoded once, and the hand-off
/// of the typed value to the room's server-side subscribers. Built by the typed side
/// (a namespace's publish check, a [`Room`](crate::Room) handle), delivered by the hub.
pub(crate) struct Publication {
    /// The `message` frame, with a place for its stream position.
    pub(crate) msg: EncodedMessage,
    /// Delivered but never stored (no position, never replayed).
    pub(crate) ephemeral: bool,
    /// Hands the typed message to the room's server-side subscribers; `None` when the
    /// room has none (the message is then not kept).
    pub(crate) typed: Option<TypedHandOff>,
}

impl fmt::Debug for Publication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publication")
            .field("len", &self.msg.len())
            .field("ephemeral", &self.ephemeral)
            .field("typed", &self.typed.is_some())
            .finish()
    }
}

impl Publication {
    /// Encodes `msg`, published to `room` by `from` (`None`: the server).
    pub(crate) fn encode<M: RoomMessage>(
        room: &RoomState,
        from: Option<&str>,
        msg: M,
        ephemeral: bool,
    ) -> serde_json::Result<Self> {
        let encoded = EncodedMessage::new(&room.name, from, &msg)?;
        let typed = room.typed_sender::<M>().map(|tx| {
            let mut delivery = Delivery {
                room: room.name.clone(),
                from: from.map(Arc::from),
                data: msg,
                position: None,
            };
            Box::new(move |position| {
                delivery.position = position;
                // An error means every subscriber left meanwhile: nobody to tell.
                let _ = tx.send(delivery);
            }) as TypedHandOff
        });
        Ok(Publication {
            msg: encoded,
            ephemeral,
            typed,
        })
    }
}

/// What one fan-out did: how many connections the message was queued for, and the
/// members whose queue was full (slow consumers, for the hub to close).
#[derive(Debug, Default)]
pub(crate) struct Fanout {
    pub(crate) delivered: usize,
    pub(crate) slow: Vec<(u64, Outbound)>,
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
    /// The namespace's slot in the hub's metrics, looked up once when the room is
    /// created rather than on every publish (`None` without metrics).
    pub(crate) metrics_ns: Option<usize>,
    pub(crate) members: RwLock<Members>,
    /// Presence, locked for one join or leave at a time. Diffs, and the replies that
    /// carry a snapshot (join, presence), are queued while it is held, so every member
    /// gets them in the order they were taken.
    pub(crate) presence: Mutex<RoomPresence>,
    /// Whether the room is in the hub's presence queue (so it is queued once per tick).
    pub(crate) presence_dirty: AtomicBool,
    /// The room's turn for its stream, in a namespace with history: a publish holds it
    /// from the store's append until its fan-out is queued, and a join that reads
    /// history holds it from the read until its replay is queued. So every member gets
    /// the stored messages in `seq` order, and a join's replay meets the live stream
    /// with no gap and no duplicate. An async mutex (fair, FIFO): the store's calls
    /// may wait, and nothing else is held meanwhile.
    pub(crate) turn: tokio::sync::Mutex<()>,
    /// `broadcast::Sender<Delivery<M>>` for server-side subscribers, created by the
    /// first [`Room::subscribe`](crate::Room::subscribe).
    typed_tx: OnceLock<Box<dyn Any + Send + Sync>>,
    /// What the backplane's bus brought for this room, and how far its members are.
    #[cfg(feature = "redis")]
    pub(crate) inbox: inbox::RoomInbox,
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
    /// Room `name` of namespace `ns`, big above `big_room` users.
    pub(crate) fn new(
        name: &str,
        ns: Arc<dyn ErasedNamespace>,
        metrics_ns: Option<usize>,
        big_room: usize,
    ) -> Self {
        RoomState {
            metrics_ns,
            name: Arc::from(name),
            ns,
            members: RwLock::new(Members::default()),
            presence: Mutex::new(RoomPresence::new(big_room)),
            presence_dirty: AtomicBool::new(false),
            turn: tokio::sync::Mutex::new(()),
            typed_tx: OnceLock::new(),
            #[cfg(feature = "redis")]
            inbox: inbox::RoomInbox::default(),
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
    /// queue is full is a slow consumer: it is returned for the caller to close (with
    /// 1013), and the others are not slowed.
    pub(crate) fn broadcast(&self, msg: &PreparedMessage) -> Fanout {
        let mut fanout = Fanout::default();
        let members = self.members();
        for (&conn_id, out) in &members.conns {
            match out.try_send(msg) {
                Ok(()) => fanout.delivered += 1,
                Err(SendError::Full) => fanout.slow.push((conn_id, out.clone())),
                Err(SendError::Closed) => {}
            }
        }
        fanout
    }

    /// The channel to server-side subscribers of type `M`, if any is listening.
    fn typed_sender<M: RoomMessage>(&self) -> Option<broadcast::Sender<Delivery<M>>> {
        let tx = self.typed_tx.get()?;
        let tx = tx.downcast_ref::<broadcast::Sender<Delivery<M>>>()?;
        (tx.receiver_count() > 0).then(|| tx.clone())
    }

    /// A server-side subscription to this room's messages of type `M` (the
    /// namespace's type, checked by the caller).
    pub(crate) fn subscribe<M: RoomMessage>(self: &Arc<Self>) -> RoomSubscription<M> {
        let tx = self.typed_tx.get_or_init(|| {
            let (tx, _) = broadcast::channel::<Delivery<M>>(TYPED_CHANNEL_CAPACITY);
            Box::new(tx)
        });
        let tx = tx
            .downcast_ref::<broadcast::Sender<Delivery<M>>>()
            .expect("Hub::room checked the namespace type");
        RoomSubscription {
            rx: tx.subscribe(),
            _room: self.clone(),
        }
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
    /// Where it was stored in the room's history; `None` for an ephemeral message or
    /// a namespace without history.
    pub position: Option<StreamPosition>,
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
            position: None,
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

/// A server-side subscription to a room, from [`Room::subscribe`](crate::Room::subscribe).
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
