//! Typed rooms: namespaces declared with a Rust message type, the per-room state
//! (members, presence), fan-out, and the typed [`Room`] handle.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;

use crate::auth::Identity;
use crate::hub::Hub;
use crate::presence::{Presence, PresenceDiff, RoomPresence};
use crate::protocol::{self, ErrorCode};
use crate::ws::{Message, Outbound, PreparedMessage, SendError};

/// What a room's message type must be: a serde type that can cross threads.
///
/// Implemented for every `Serialize + DeserializeOwned + Clone + Send + Sync + 'static`
/// type; there is nothing to implement by hand.
pub trait RoomMessage: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}
impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> RoomMessage for T {}

/// Options of one namespace. Every field has a default; see each.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NamespaceOptions {
    /// Whether clients may publish (`false`: server-publish only, a client publish is
    /// refused with `forbidden`). Default: `true`.
    pub client_publish: bool,
    /// Whether rooms track presence and send `presence_diff`s. Default: `true`.
    pub presence: bool,
    /// Messages kept per room for recovery after a reconnect (used by history and
    /// recovery). Default: 0.
    pub history: usize,
    /// Most connections one room accepts; a join over it gets `room_full`.
    /// Default: 10,000.
    pub max_subscribers: usize,
    /// Largest `data` of one client publish, in bytes of JSON; over it the publish gets
    /// `too_large` (the frame limit of the hub closes with 1009 before that).
    /// Default: 64 KiB.
    pub max_payload: usize,
}

impl Default for NamespaceOptions {
    fn default() -> Self {
        NamespaceOptions {
            client_publish: true,
            presence: true,
            history: 0,
            max_subscribers: 10_000,
            max_payload: 64 * 1024,
        }
    }
}

/// Why a publish hook refused a message: sent to the publisher as an error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The error code (`forbidden` or `invalid_data` are the usual ones).
    pub code: ErrorCode,
    /// A message for the client.
    pub message: String,
}

impl Refusal {
    /// Refuse as `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Refusal {
            code: ErrorCode::Forbidden,
            message: message.into(),
        }
    }
    /// Refuse as `invalid_data`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Refusal {
            code: ErrorCode::InvalidData,
            message: message.into(),
        }
    }
}

/// What a publish hook sees about a client publish.
#[derive(Debug)]
#[non_exhaustive]
pub struct PublishContext<'a> {
    /// The room published to.
    pub room: &'a str,
    /// The publisher.
    pub identity: &'a Identity,
    /// Whether the client marked the publish ephemeral.
    pub ephemeral: bool,
}

type Hook<M> = Arc<dyn Fn(&PublishContext<'_>, M) -> Result<M, Refusal> + Send + Sync>;

/// A namespace: the rooms `NAME:*`, all carrying messages of type `M`.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// use wshub::{Namespace, Refusal};
/// #[derive(Clone, Serialize, Deserialize)]
/// struct ChatMessage { text: String }
///
/// let chat = Namespace::<ChatMessage>::new("chat")
///     .max_subscribers(500)
///     .on_publish(|_ctx, msg| {
///         if msg.text.trim().is_empty() {
///             return Err(Refusal::invalid("empty message"));
///         }
///         Ok(ChatMessage { text: msg.text.trim().to_owned() })
///     });
/// ```
pub struct Namespace<M> {
    name: String,
    options: NamespaceOptions,
    hook: Option<Hook<M>>,
}

impl<M> fmt::Debug for Namespace<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.name)
            .field("type", &std::any::type_name::<M>())
            .field("options", &self.options)
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

impl<M: RoomMessage> Namespace<M> {
    /// The namespace `name`: rooms are named `name:anything`. `name` may not contain
    /// `:`.
    pub fn new(name: impl Into<String>) -> Self {
        Namespace {
            name: name.into(),
            options: NamespaceOptions::default(),
            hook: None,
        }
    }
    /// Replaces all options at once.
    pub fn options(mut self, options: NamespaceOptions) -> Self {
        self.options = options;
        self
    }
    /// Server-publish only: client publishes are refused with `forbidden`.
    pub fn server_only(mut self) -> Self {
        self.options.client_publish = false;
        self
    }
    /// Turns presence on or off.
    pub fn presence(mut self, on: bool) -> Self {
        self.options.presence = on;
        self
    }
    /// Messages kept per room for recovery.
    pub fn history(mut self, messages: usize) -> Self {
        self.options.history = messages;
        self
    }
    /// Most connections per room.
    pub fn max_subscribers(mut self, n: usize) -> Self {
        self.options.max_subscribers = n;
        self
    }
    /// Largest client publish payload, in bytes of JSON.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.options.max_payload = bytes;
        self
    }
    /// A hook run on every client publish after it decoded into `M`: return the message
    /// to broadcast (possibly changed) or a [`Refusal`]. Server publishes skip it.
    pub fn on_publish(
        mut self,
        hook: impl Fn(&PublishContext<'_>, M) -> Result<M, Refusal> + Send + Sync + 'static,
    ) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn erase(self) -> Arc<dyn ErasedNamespace> {
        Arc::new(TypedNamespace {
            options: self.options,
            hook: self.hook,
            _m: PhantomData::<fn() -> M>,
        })
    }
}

/// A namespace with its message type erased, so the hub can hold namespaces of
/// different types in one table.
pub(crate) trait ErasedNamespace: Send + Sync {
    fn options(&self) -> &NamespaceOptions;
    fn type_id(&self) -> TypeId;
    fn type_name(&self) -> &'static str;
    /// Decodes a client publish into the namespace type, runs the hook, and publishes
    /// it. Returns the number of connections it was queued for.
    fn client_publish(
        &self,
        hub: &Hub,
        room: &RoomState,
        ctx: &PublishContext<'_>,
        data: serde_json::Value,
    ) -> Result<usize, Refusal>;
}

struct TypedNamespace<M> {
    options: NamespaceOptions,
    hook: Option<Hook<M>>,
    _m: PhantomData<fn() -> M>,
}

impl<M: RoomMessage> ErasedNamespace for TypedNamespace<M> {
    fn options(&self) -> &NamespaceOptions {
        &self.options
    }
    fn type_id(&self) -> TypeId {
        TypeId::of::<M>()
    }
    fn type_name(&self) -> &'static str {
        std::any::type_name::<M>()
    }
    fn client_publish(
        &self,
        hub: &Hub,
        room: &RoomState,
        ctx: &PublishContext<'_>,
        data: serde_json::Value,
    ) -> Result<usize, Refusal> {
        let msg: M = serde_json::from_value(data).map_err(|e| {
            Refusal::invalid(format!("data does not fit {}: {e}", short_type_name::<M>()))
        })?;
        let msg = match &self.hook {
            Some(hook) => hook(ctx, msg)?,
            None => msg,
        };
        publish_typed(hub, room, Some(&ctx.identity.user_id), msg)
            .map_err(|e| Refusal::invalid(format!("cannot encode message: {e}")))
    }
}

/// The last path segment of a type name, for error messages.
fn short_type_name<M>() -> &'static str {
    let full = std::any::type_name::<M>();
    full.rsplit("::").next().unwrap_or(full)
}

/// Encodes `msg` once, queues it for every member, and hands it to server-side
/// subscribers. Returns how many connections it was queued for.
pub(crate) fn publish_typed<M: RoomMessage>(
    hub: &Hub,
    room: &RoomState,
    from: Option<&str>,
    msg: M,
) -> serde_json::Result<usize> {
    let text = protocol::try_encode_message(&room.name, from, &msg)?;
    let prepared = PreparedMessage::with_compression_level(
        Message::text(text),
        hub.config().compression_level,
    );
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
    /// Presence, locked for one join or leave at a time. Diffs are broadcast while it
    /// is held, so every member sees diffs in the order they were applied.
    pub(crate) presence: Mutex<RoomPresence>,
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

    /// Sends a presence diff to every member (call with the presence lock held).
    pub(crate) fn broadcast_diff(&self, hub: &Hub, diff: &PresenceDiff) {
        let text = protocol::encode_presence_diff(&self.name, diff);
        let prepared = PreparedMessage::with_compression_level(
            Message::text(text),
            hub.config().compression_level,
        );
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
