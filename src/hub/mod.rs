//! The [`Hub`]: namespaces, rooms, connections, limits and shutdown.

#[cfg(feature = "redis")]
mod cluster;
#[cfg(feature = "redis")]
mod cluster_presence;
mod config;
mod conn_rooms;
mod connection;
mod control;
mod introspect;
mod liveness;
mod metrics;
mod pending;
mod presence_task;
mod room_handle;
pub(crate) mod rooms;
pub(crate) mod rpc;

use std::any::TypeId;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use conn_rooms::ConnRooms;
use dashmap::DashMap;
use tokio::sync::{Notify, watch};
use tokio_util::task::TaskTracker;

pub use config::{HubConfig, default_room_name_char};
pub use connection::{CloseInfo, CloseInitiator, Connection};
pub(crate) use connection::{ConnectHook, DisconnectHook};
pub use introspect::{ConnectionInfo, RoomInfo};
pub(crate) use pending::{PendingGuard, PendingRefused};
pub use rooms::{MembershipError, Published};

use crate::auth::{Action, AllowAnonymous, Authenticator, DynAuthenticator, Identity};
use crate::history::{HistoryStore, MemoryHistory};
use crate::rate::SharedBucket;
use crate::room::{ErasedNamespace, Namespace, RoomMessage, RoomState};
use crate::ws::{CloseCode, Message, Outbound, PreparedMessage};
use liveness::Reaper;
pub use room_handle::{HistoryEntry, Room};
use rpc::ErasedMethod;
pub use rpc::{RpcContext, RpcError};

/// Why [`Hub::room`] or [`Hub::find_room`] returned no room.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoomError {
    /// No namespace was declared for this room name (`NAMESPACE:room`).
    #[error("no namespace for room {0:?}")]
    NotFound(String),
    /// The namespace carries another message type.
    #[error("room {room:?} carries {expected}, not {requested}")]
    WrongType {
        /// The room asked for.
        room: String,
        /// The namespace's message type.
        expected: &'static str,
        /// The type asked for.
        requested: &'static str,
    },
}

/// Counters a hub keeps (a snapshot, from [`Hub::stats`]).
///
/// Serializes (serde) as a JSON object whose keys are the field names, for a status
/// endpoint or a log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct HubStats {
    /// Connections open now.
    pub connections: usize,
    /// Rooms that exist now.
    pub rooms: usize,
    /// Connections closed with 1013 because their queue filled up.
    pub slow_consumers: u64,
    /// Connections closed by the liveness sweep.
    pub reaped: u64,
    /// Connections closed because their token expired.
    pub expired: u64,
    /// Handshakes refused by a connection limit (503 or 429).
    pub refused_by_limits: u64,
    /// Connections accepted but not yet upgraded, now: in their TLS handshake, HTTP
    /// request head or authentication, or (under `Hub::serve_axum`) plain HTTP
    /// connections. At most [`HubConfig::max_pending_connections`].
    pub pending: usize,
    /// Connections turned away at accept, before anything was read from them, because
    /// a pending cap was full (`max_pending_connections`, `max_pending_per_host` or
    /// `max_pending_per_network`).
    pub refused_pending: u64,
    /// Entries in the hub's per-host, per-network and per-user connection counts: one
    /// per host, network and (with `max_connections_per_user`) user that has a
    /// connection open or in its handshake. At most three per such connection, and
    /// zero once all have closed: the memory these limits cost follows the open
    /// connections, not the addresses ever seen.
    pub limit_entries: usize,
    /// Rooms with a history stream in the store (rooms nobody is in count until their
    /// history ages out).
    pub history_rooms: usize,
    /// Messages stored as history.
    pub history_messages: usize,
    /// Bytes of stored history (frames plus a small per-message overhead).
    pub history_bytes: usize,
}

/// One connection as the hub sees it.
pub(crate) struct ConnEntry {
    pub(crate) id: u64,
    pub(crate) identity: Arc<Identity>,
    pub(crate) outbound: Outbound,
    /// The client's address as the hub's limits see it (the TCP peer, or the client a
    /// trusted proxy named); `None` when served over a stream without one. Kept for
    /// introspection ([`ConnectionInfo::peer`]).
    pub(crate) peer: Option<SocketAddr>,
    /// The rooms this connection joined. Locked briefly by its own task (join, leave,
    /// publish checks) and by the hub when it disconnects the connection.
    pub(crate) rooms: Mutex<ConnRooms>,
    /// Set (under the `rooms` lock) once the connection has left its rooms for good
    /// (`leave_all`): a server-side join racing the disconnect sees it under the same
    /// lock and undoes itself, so no room keeps a connection that has gone.
    pub(crate) gone: AtomicBool,
    /// The application's typed data ([`Connection::set_data`]). A small vector rather
    /// than a map: an application keeps a type or two per connection, and an empty
    /// vector costs an idle connection nothing on the heap.
    pub(crate) data: Mutex<connection::DataMap>,
}

impl ConnEntry {
    pub(crate) fn rooms(&self) -> std::sync::MutexGuard<'_, ConnRooms> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the connection has left its rooms for good (it disconnected).
    pub(crate) fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }
}

pub(crate) struct HubInner {
    pub(crate) config: HubConfig,
    namespaces: HashMap<String, Arc<dyn ErasedNamespace>>,
    /// The RPC methods clients may `call`, by name. Fixed when the hub is built.
    methods: HashMap<String, ErasedMethod>,
    rooms: DashMap<Arc<str>, Arc<RoomState>>,
    pub(crate) conns: DashMap<u64, Arc<ConnEntry>>,
    /// The ids of each user's open connections, so [`Hub::user_connections`] costs the
    /// user's connections rather than a scan of every connection. Maintained by
    /// `register` and `disconnect` (each once per connection); an entry is removed with
    /// the user's last connection, so the map holds only users with a connection open.
    /// A `HashSet` per user: removal stays O(1) however many tabs one user has (nothing
    /// bounds that without `max_connections_per_user`).
    user_conns: DashMap<Arc<str>, HashSet<u64>>,
    /// Open connections (and handshakes past the request) per host key
    /// ([`AddrGrouping::host`](crate::AddrGrouping::host)), per network key and per
    /// user. DashMap: every handshake and every close touches them, from any task; an
    /// entry is removed when its count reaches zero, so they hold only keys with a
    /// connection open.
    per_host: DashMap<IpAddr, usize>,
    per_network: DashMap<IpAddr, usize>,
    per_user: DashMap<Arc<str>, usize>,
    open: AtomicUsize,
    next_conn_id: AtomicU64,
    pub(crate) auth: Arc<dyn DynAuthenticator>,
    pub(crate) tracker: TaskTracker,
    pub(crate) shutdown_tx: watch::Sender<bool>,
    pub(crate) reaper: Reaper,
    /// Where room history lives ([`MemoryHistory`] unless the application gave a store).
    pub(crate) history: Arc<dyn HistoryStore>,
    slow_consumers: AtomicU64,
    pub(crate) reaped: AtomicU64,
    pub(crate) expired: AtomicU64,
    refused: AtomicU64,
    /// Rooms with presence changes waiting for the next tick (each at most once: see
    /// `RoomState::presence_dirty`). A std mutex held for a push or a swap.
    presence_queue: Mutex<Vec<Arc<RoomState>>>,
    /// Wakes the presence task when the queue stops being empty, and when the hub is
    /// dropped (so the task ends). An `Arc` so the task can wait without holding the hub.
    presence_wake: Arc<Notify>,
    /// Rate limits shared by all the connections of one user, and of one host (keyed
    /// by `addr_grouping.host`). A connection holds its buckets' `Arc`s; a bucket
    /// nobody holds is forgotten once full again (`prune_rate_limits`).
    user_buckets: DashMap<Arc<str>, Arc<SharedBucket>>,
    host_buckets: DashMap<IpAddr, Arc<SharedBucket>>,
    /// Connections not yet upgraded, counted in all, per host and per network.
    pending: pending::PendingCounts,
    /// The application's connect hook ([`HubBuilder::on_connect`]).
    pub(crate) on_connect: Option<ConnectHook>,
    /// The application's disconnect hook ([`HubBuilder::on_disconnect`]).
    pub(crate) on_disconnect: Option<DisconnectHook>,
    /// What the application stamps into every presence entry of a connection.
    pub(crate) presence_info: Option<PresenceInfoFn>,
    /// Who is interesting to whom in big rooms ([`HubBuilder::presence_interest`]).
    pub(crate) presence_interest: Option<Arc<dyn crate::PresenceInterest>>,
    /// What this hub records for Prometheus (feature `metrics`, unless
    /// [`HubConfig::metrics`] is off). `None` costs one branch where something would
    /// be recorded; without the feature it is always `None`.
    pub(crate) metrics: Option<Arc<crate::metrics::Metrics>>,
    /// The Redis backplane, if attached ([`HubBuilder::backplane`]).
    #[cfg(feature = "redis")]
    pub(crate) cluster: Option<cluster::Cluster>,
}

/// [`HubBuilder::presence_info`]'s function.
pub(crate) type PresenceInfoFn = Arc<dyn Fn(&Identity) -> Option<serde_json::Value> + Send + Sync>;

impl Drop for HubInner {
    fn drop(&mut self) {
        // Lets the presence task see that the hub is gone and end.
        self.presence_wake.notify_one();
    }
}

/// The pub/sub hub: a cheap-to-clone handle (an `Arc`) shared by every connection task
/// and by the application.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use wshub::{Hub, Namespace};
///
/// #[derive(Clone, Serialize, Deserialize)]
/// struct ChatMessage { text: String }
///
/// # #[tokio::main] async fn main() {
/// let hub = Hub::builder()
///     .namespace(Namespace::<ChatMessage>::new("chat"))
///     .build();
/// let lobby = hub.room::<ChatMessage>("chat:lobby").unwrap();
/// let published = lobby.publish(ChatMessage { text: "hello".into() }).await.unwrap();
/// assert_eq!(published.position.unwrap().seq, 1); // the room's first stored message
/// assert!(hub.room::<String>("chat:lobby").is_err()); // wrong type: an error, not a panic
/// # }
/// ```
#[derive(Clone)]
pub struct Hub(pub(crate) Arc<HubInner>);

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("namespaces", &self.0.namespaces.keys().collect::<Vec<_>>())
            .field("stats", &self.stats())
            .finish()
    }
}

/// Builds a [`Hub`].
pub struct HubBuilder {
    config: HubConfig,
    namespaces: HashMap<String, Arc<dyn ErasedNamespace>>,
    methods: HashMap<String, ErasedMethod>,
    auth: Arc<dyn DynAuthenticator>,
    on_connect: Option<ConnectHook>,
    on_disconnect: Option<DisconnectHook>,
    presence_info: Option<PresenceInfoFn>,
    presence_interest: Option<Arc<dyn crate::PresenceInterest>>,
    history: Option<Arc<dyn HistoryStore>>,
    #[cfg(feature = "redis")]
    backplane: Option<crate::redis::RedisBackplane>,
}

impl fmt::Debug for HubBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubBuilder")
            .field("config", &self.config)
            .field("namespaces", &self.namespaces.keys().collect::<Vec<_>>())
            .field("methods", &self.methods.keys().collect::<Vec<_>>())
            .field("on_connect", &self.on_connect.is_some())
            .field("on_disconnect", &self.on_disconnect.is_some())
            .finish_non_exhaustive()
    }
}

impl HubBuilder {
    /// Declares a namespace. Panics if the name is empty, contains `:`, or is declared
    /// twice (a programming error, caught at start-up).
    pub fn namespace<M: RoomMessage>(mut self, ns: Namespace<M>) -> Self {
        let name = ns.name().to_owned();
        assert!(
            !name.is_empty() && !name.contains(':'),
            "namespace name {name:?} must be non-empty and contain no ':'"
        );
        let prev = self.namespaces.insert(name.clone(), ns.erase());
        assert!(prev.is_none(), "namespace {name:?} declared twice");
        self
    }

    /// Registers an RPC method that clients call with
    /// `{"op":"call","method":NAME,"data":..,"id":N}` and that answers with exactly one
    /// `reply`. The request (`data`, `null` when absent) is decoded into `Req`; one that
    /// does not fit gets `invalid_data` without running the handler. The handler's
    /// `Ok` is encoded as the reply's `data`, its [`RpcError`] sent as the reply's
    /// error.
    ///
    /// Each call runs in a task of its own, so a slow handler never holds up its
    /// connection. Calls count against the connection's, user's and host's message
    /// rate limits like any op, and are bounded by
    /// [`HubConfig::max_rpc_in_flight`] (`rate_limited`),
    /// [`HubConfig::rpc_timeout`] (`timeout`) and [`HubConfig::max_rpc_response`]
    /// (`too_large`); an unknown method is `not_found`. A handler that panics answers
    /// `internal`. A call still running when its connection closes is dropped.
    ///
    /// Panics if `name` is empty or registered twice (a programming error, caught at
    /// start-up).
    ///
    /// ```
    /// use wshub::{Hub, RpcContext, RpcError};
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Add { a: i64, b: i64 }
    ///
    /// let hub = Hub::builder()
    ///     .rpc("math.add", |_ctx: RpcContext, req: Add| async move {
    ///         req.a.checked_add(req.b).ok_or_else(|| RpcError::invalid("overflow"))
    ///     })
    ///     .rpc("whoami", |ctx: RpcContext, _: ()| async move {
    ///         Ok::<_, RpcError>(ctx.identity().user_id.clone())
    ///     });
    /// ```
    pub fn rpc<Req, Resp, F, Fut>(mut self, name: impl Into<String>, handler: F) -> Self
    where
        Req: serde::de::DeserializeOwned + Send + 'static,
        Resp: serde::Serialize + Send + 'static,
        F: Fn(RpcContext, Req) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Resp, RpcError>> + Send + 'static,
    {
        let name = name.into();
        assert!(!name.is_empty(), "RPC method names must be non-empty");
        let method = rpc::erase(&name, handler);
        let prev = self.methods.insert(name.clone(), method);
        assert!(prev.is_none(), "RPC method {name:?} registered twice");
        self
    }

    /// The authenticator (default: [`AllowAnonymous`], every client a guest).
    pub fn authenticator(mut self, auth: impl Authenticator) -> Self {
        self.auth = Arc::new(auth);
        self
    }

    /// What the server adds to every presence entry of a connection, next to the
    /// display name it stamps from the [`Identity`] (`info` on the wire): a role, an
    /// avatar URL. Clients cannot overwrite it (their own meta is nested under
    /// `meta`). Keep it small: every member receives it with each join. Default:
    /// nothing.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// let hub = wshub::Hub::builder()
    ///     .presence_info(|identity| identity.claims.get("role").map(|r| serde_json::json!({ "role": r })))
    ///     .build();
    /// # let _ = hub; }
    /// ```
    pub fn presence_info(
        mut self,
        info: impl Fn(&Identity) -> Option<serde_json::Value> + Send + Sync + 'static,
    ) -> Self {
        self.presence_info = Some(Arc::new(info));
        self
    }

    /// Which joins and leaves each member of a big room is told of
    /// ([`PresenceInterest`](crate::PresenceInterest)): the people it follows, a room's
    /// hosts. Default: none; members of big rooms then see the count and pages only.
    pub fn presence_interest(mut self, interest: impl crate::PresenceInterest) -> Self {
        self.presence_interest = Some(Arc::new(interest));
        self
    }

    /// Where room history lives. Default: a [`MemoryHistory`] of
    /// [`HubConfig::history_budget`] bytes, which a restart empties (clients then get
    /// `recovered: false` with a new epoch). A store shared by several nodes (Redis)
    /// goes here.
    pub fn history_store(mut self, store: impl HistoryStore) -> Self {
        self.history = Some(Arc::new(store));
        self
    }

    /// Attaches a Redis backplane (feature `redis`): publishes on any node reach the
    /// room's members on every node, in one per-room order, and room history lives in
    /// Redis (this replaces any [`history_store`](Self::history_store)), so a client
    /// recovers on any node. See [`crate::redis`].
    ///
    /// With a backplane a publish's `delivered` counts this node's connections, and
    /// [`Room::subscribe`] sees the messages published on this node only.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn backplane(mut self, backplane: crate::redis::RedisBackplane) -> Self {
        self.history = Some(Arc::new(backplane.history()));
        self.backplane = Some(backplane);
        self
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: HubConfig) -> Self {
        self.config = config;
        self
    }

    /// Changes the configuration in place: `.configure(|c| c.max_connections = 500)`.
    pub fn configure(mut self, f: impl FnOnce(&mut HubConfig)) -> Self {
        f(&mut self.config);
        self
    }

    /// Builds the hub and starts its liveness sweep (needs a tokio runtime).
    pub fn build(self) -> Hub {
        let (shutdown_tx, _) = watch::channel(false);
        let history = self.history.unwrap_or_else(|| {
            Arc::new(MemoryHistory::new(self.config.history_budget)) as Arc<dyn HistoryStore>
        });
        let metrics = metrics::build(&self.config, self.namespaces.keys());
        let hub = Hub(Arc::new(HubInner {
            metrics,
            reaper: Reaper::new(),
            history,
            config: self.config,
            namespaces: self.namespaces,
            methods: self.methods,
            rooms: DashMap::new(),
            conns: DashMap::new(),
            user_conns: DashMap::new(),
            per_host: DashMap::new(),
            per_network: DashMap::new(),
            per_user: DashMap::new(),
            open: AtomicUsize::new(0),
            next_conn_id: AtomicU64::new(1),
            auth: self.auth,
            tracker: TaskTracker::new(),
            shutdown_tx,
            slow_consumers: AtomicU64::new(0),
            reaped: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            presence_queue: Mutex::new(Vec::new()),
            presence_wake: Arc::new(Notify::new()),
            user_buckets: DashMap::new(),
            host_buckets: DashMap::new(),
            pending: pending::PendingCounts::default(),
            on_connect: self.on_connect,
            on_disconnect: self.on_disconnect,
            presence_info: self.presence_info,
            #[cfg(feature = "redis")]
            cluster: self.backplane.map(cluster::Cluster::new),
            presence_interest: self.presence_interest,
        }));
        #[cfg(feature = "redis")]
        cluster::start(&hub);
        liveness::spawn(&hub);
        presence_task::spawn(&hub);
        hub
    }
}

/// A reserved connection slot; gives back every count it took when dropped.
///
/// Every open connection's task holds one, so it is kept small: the client's address
/// once, not its host and network groups (recomputed from it when the slot is given
/// back: `addr_grouping` does not change after the hub is built).
pub(crate) struct Slot {
    hub: Hub,
    /// The address the per-host and per-network counts were taken for.
    ip: Option<IpAddr>,
    /// Which of them this slot holds: 0 none, 1 the host's, 2 the host's and the
    /// network's.
    counted: u8,
    user: Option<Arc<str>>,
}

/// Takes one from `key`'s count, removing the entry at zero (under the entry's shard
/// lock, so a concurrent increment either sees the entry or creates a new one).
fn release<K, Q>(map: &DashMap<K, usize>, key: &Q)
where
    K: Eq + std::hash::Hash + std::borrow::Borrow<Q>,
    Q: Eq + std::hash::Hash + ?Sized,
{
    map.remove_if_mut(key, |_, n| {
        *n -= 1;
        *n == 0
    });
}

/// Adds one to `key`'s count unless it is at `max`. Check and increment happen under
/// the entry's shard lock (held for these few instructions, never across an await), so
/// concurrent handshakes cannot both take the last place.
fn acquire<K: Eq + std::hash::Hash>(map: &DashMap<K, usize>, key: K, max: usize) -> bool {
    if max == 0 {
        return false;
    }
    let mut n = map.entry(key).or_insert(0);
    if *n >= max {
        return false;
    }
    *n += 1;
    true
}

impl Drop for Slot {
    fn drop(&mut self) {
        let inner = &self.hub.0;
        inner.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.ip {
            let grouping = &inner.config.addr_grouping;
            if self.counted >= 1 {
                release(&inner.per_host, &grouping.host(ip));
            }
            if self.counted >= 2 {
                release(&inner.per_network, &grouping.network(ip));
            }
        }
        if let Some(user) = &self.user {
            release(&inner.per_user, &**user);
        }
    }
}

/// Why a slot could not be reserved.
pub(crate) enum SlotError {
    /// `max_connections` reached (HTTP 503).
    Full,
    /// `max_connections_per_ip` reached for the client's host (HTTP 429).
    PerIp,
    /// `max_connections_per_network` reached for the client's network (HTTP 429).
    PerNetwork,
    /// `max_connections_per_user` reached (HTTP 429).
    PerUser,
}

impl Hub {
    /// Starts building a hub.
    pub fn builder() -> HubBuilder {
        HubBuilder {
            config: HubConfig::default(),
            namespaces: HashMap::new(),
            methods: HashMap::new(),
            auth: Arc::new(AllowAnonymous::new()),
            on_connect: None,
            on_disconnect: None,
            presence_info: None,
            presence_interest: None,
            history: None,
            #[cfg(feature = "redis")]
            backplane: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &HubConfig {
        &self.0.config
    }

    /// A typed handle on room `name` (`NAMESPACE:room`), created if needed.
    ///
    /// This creates the room (it then counts in [`HubStats::rooms`] and
    /// [`Hub::rooms`]) even if nobody ever joins it; it is dropped by the liveness
    /// sweep once no member and no handle is left. To look at a room without creating
    /// it, use [`Hub::find_room`].
    pub fn room<M: RoomMessage>(&self, name: &str) -> Result<Room<M>, RoomError> {
        let ns = self.typed_namespace::<M>(name)?;
        Ok(Room::new(self.clone(), self.room_state(name, ns)))
    }

    /// A typed handle on room `name` if it exists now (some connection is in it, or a
    /// handle keeps it), `Ok(None)` if not. Unlike [`Hub::room`] this never creates
    /// the room: use it to read (members, presence, counts) without leaving rooms
    /// behind. The errors are [`Hub::room`]'s: an undeclared namespace or the wrong
    /// message type.
    ///
    /// The handle keeps the room alive while held, as one from [`Hub::room`] does.
    pub fn find_room<M: RoomMessage>(&self, name: &str) -> Result<Option<Room<M>>, RoomError> {
        self.typed_namespace::<M>(name)?;
        // Cloned out of the map under its shard lock, like `room_state`, so `prune_room`
        // sees this handle and keeps the room.
        let state = self.0.rooms.get(name).map(|r| r.value().clone());
        Ok(state.map(|state| Room::new(self.clone(), state)))
    }

    /// The namespace of room `name`, checked to carry `M`.
    fn typed_namespace<M: RoomMessage>(
        &self,
        name: &str,
    ) -> Result<Arc<dyn ErasedNamespace>, RoomError> {
        let ns = self
            .namespace_of(name)
            .ok_or_else(|| RoomError::NotFound(name.to_owned()))?;
        if ns.type_id() != TypeId::of::<M>() {
            return Err(RoomError::WrongType {
                room: name.to_owned(),
                expected: ns.type_name(),
                requested: std::any::type_name::<M>(),
            });
        }
        Ok(ns)
    }

    /// Prepares one server message (JSON text) for any number of connections, at the
    /// hub's compression level.
    pub(crate) fn prepare(&self, text: String) -> PreparedMessage {
        PreparedMessage::with_compression_level(
            Message::text(text),
            self.0.config.ws.compression_level,
        )
    }

    /// Counters.
    pub fn stats(&self) -> HubStats {
        let history = self.0.history.usage();
        HubStats {
            history_rooms: history.rooms,
            history_messages: history.messages,
            history_bytes: history.bytes,
            connections: self.0.conns.len(),
            rooms: self.0.rooms.len(),
            slow_consumers: self.0.slow_consumers.load(Ordering::Relaxed),
            reaped: self.0.reaped.load(Ordering::Relaxed),
            expired: self.0.expired.load(Ordering::Relaxed),
            refused_by_limits: self.0.refused.load(Ordering::Relaxed),
            pending: self.0.pending.current(),
            refused_pending: self.0.pending.refused(),
            limit_entries: self.0.per_host.len() + self.0.per_network.len() + self.0.per_user.len(),
        }
    }

    /// Whether [`shutdown`](Self::shutdown) has begun.
    pub fn is_shutting_down(&self) -> bool {
        *self.0.shutdown_tx.borrow()
    }

    /// Graceful shutdown: stop accepting, close every connection with 1001 after its
    /// queued messages, and wait (up to `shutdown_timeout`) for every connection to
    /// finish. Returns `true` if all finished in time.
    pub async fn shutdown(&self) -> bool {
        self.0.shutdown_tx.send_replace(true);
        for entry in self.0.conns.iter() {
            entry
                .outbound
                .close(CloseCode::Away, "server shutting down");
        }
        self.0.tracker.close();
        let done = tokio::time::timeout(self.0.config.shutdown_timeout, self.0.tracker.wait())
            .await
            .is_ok();
        // Other nodes drop this one's presence entries at once, not after its
        // heartbeat expires.
        #[cfg(feature = "redis")]
        self.cluster_goodbye().await;
        done
    }

    /// Resolves when [`shutdown`](Self::shutdown) begins (at once if it has): for an
    /// application's own accept loops and background tasks.
    pub async fn shutdown_started(&self) {
        let mut rx = self.shutdown_signal();
        // An error means the sender is gone, which cannot happen while `self` lives.
        let _ = rx.wait_for(|started| *started).await;
    }

    /// A receiver that turns `true` when shutdown begins (for serve loops).
    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.0.shutdown_tx.subscribe()
    }

    /// The namespace of a room name, if declared.
    pub(crate) fn namespace_of(&self, room: &str) -> Option<Arc<dyn ErasedNamespace>> {
        let (ns, rest) = room.split_once(':')?;
        if rest.is_empty() {
            return None;
        }
        self.0.namespaces.get(ns).cloned()
    }

    /// The RPC method registered as `name`, if any.
    pub(crate) fn method(&self, name: &str) -> Option<ErasedMethod> {
        self.0.methods.get(name).cloned()
    }

    /// The state of room `name`, created if needed.
    pub(crate) fn room_state(&self, name: &str, ns: Arc<dyn ErasedNamespace>) -> Arc<RoomState> {
        if let Some(r) = self.0.rooms.get(name) {
            return r.clone();
        }
        self.0
            .rooms
            .entry(Arc::from(name))
            .or_insert_with(|| {
                let metrics_ns = self.metrics().and_then(|m| m.ns_index(name));
                let big_room = ns
                    .options()
                    .big_room
                    .unwrap_or(self.0.config.presence_big_room);
                Arc::new(RoomState::new(name, ns, metrics_ns, big_room))
            })
            .clone()
    }

    /// Drops room `name` if nothing uses it: no member and no handle other than the map's.
    /// Checked under the map's shard lock, and handles are only cloned out of the map
    /// under that lock too, so a room in use is never dropped.
    pub(crate) fn prune_room(&self, name: &str) {
        self.0
            .rooms
            .remove_if(name, |_, r| Arc::strong_count(r) == 1 && r.is_idle());
    }

    /// Drops every unused room (called by the liveness sweep).
    pub(crate) fn prune_rooms(&self) {
        self.0
            .rooms
            .retain(|_, r| !(Arc::strong_count(r) == 1 && r.is_idle()));
    }

    /// Reserves a connection slot for a client at `peer` (the address the limits see:
    /// the TCP peer, or the client a trusted proxy named), or says which limit refuses
    /// it: the global cap, then the client's host, then its network.
    pub(crate) fn reserve_slot(&self, peer: Option<SocketAddr>) -> Result<Slot, SlotError> {
        let config = &self.0.config;
        let max = config.max_connections;
        if self
            .0
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            self.0.refused.fetch_add(1, Ordering::Relaxed);
            return Err(SlotError::Full);
        }
        // From here on the slot gives its counts back if we refuse.
        let mut slot = Slot {
            hub: self.clone(),
            ip: peer.map(|p| p.ip()),
            counted: 0,
            user: None,
        };
        if let Some(ip) = peer.map(|p| p.ip()) {
            let host = config.addr_grouping.host(ip);
            if !acquire(&self.0.per_host, host, config.max_connections_per_ip) {
                self.0.refused.fetch_add(1, Ordering::Relaxed);
                return Err(SlotError::PerIp);
            }
            slot.counted = 1;
            let network = config.addr_grouping.network(ip);
            if !acquire(
                &self.0.per_network,
                network,
                config.max_connections_per_network,
            ) {
                self.0.refused.fetch_add(1, Ordering::Relaxed);
                return Err(SlotError::PerNetwork);
            }
            slot.counted = 2;
        }
        Ok(slot)
    }

    /// Counts `slot` against its user's `max_connections_per_user`, once the
    /// authenticator has said who it is. Without that limit nothing is tracked.
    pub(crate) fn reserve_user(&self, slot: &mut Slot, user_id: &str) -> Result<(), SlotError> {
        let Some(max) = self.0.config.max_connections_per_user else {
            return Ok(());
        };
        let user: Arc<str> = Arc::from(user_id);
        if !acquire(&self.0.per_user, user.clone(), max) {
            self.0.refused.fetch_add(1, Ordering::Relaxed);
            return Err(SlotError::PerUser);
        }
        slot.user = Some(user);
        Ok(())
    }

    /// Registers an accepted connection from `peer` (the address the limits saw).
    pub(crate) fn register(
        &self,
        identity: Arc<Identity>,
        outbound: Outbound,
        peer: Option<SocketAddr>,
    ) -> Arc<ConnEntry> {
        let id = self.0.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(ConnEntry {
            id,
            identity,
            outbound,
            peer,
            rooms: Mutex::new(ConnRooms::default()),
            gone: AtomicBool::new(false),
            data: Mutex::new(connection::DataMap::default()),
        });
        self.0.conns.insert(id, entry.clone());
        self.0
            .user_conns
            .entry(Arc::from(entry.identity.user_id.as_str()))
            .or_default()
            .insert(id);
        if let Some(exp) = entry.identity.expires_at {
            self.0.reaper.watch_expiry(id, exp);
        }
        entry
    }

    /// Removes a connection from every room it joined (presence leaves follow) and
    /// from the hub. Idempotent (only the call that removes the entry from the map does
    /// anything): the connection task, the liveness sweep and the slow-consumer path
    /// may all call it.
    pub(crate) fn disconnect(&self, conn_id: u64) {
        let Some((_, entry)) = self.0.conns.remove(&conn_id) else {
            return;
        };
        self.0
            .reaper
            .forget_expiry(conn_id, entry.identity.expires_at);
        // Before leaving the rooms, so once a `presence_diff` announces the leave the
        // user's connection list no longer shows this connection either. Removed under
        // the entry's shard lock with the user's last connection, as `release` does.
        self.0
            .user_conns
            .remove_if_mut(entry.identity.user_id.as_str(), |_, ids| {
                ids.remove(&conn_id);
                ids.is_empty()
            });
        self.leave_all(&entry);
    }

    /// Schedules `room`'s pending presence changes for the next tick.
    pub(crate) fn presence_changed(&self, room: &Arc<RoomState>) {
        if room.presence_dirty.swap(true, Ordering::AcqRel) {
            return; // already queued
        }
        let was_empty = {
            let mut queue = self
                .0
                .presence_queue
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            queue.push(room.clone());
            queue.len() == 1
        };
        if was_empty {
            self.0.presence_wake.notify_one();
        }
    }

    /// The rate limit shared by every connection of `user`.
    pub(crate) fn user_bucket(&self, user: &str) -> Arc<SharedBucket> {
        if let Some(b) = self.0.user_buckets.get(user) {
            return b.clone();
        }
        let c = &self.0.config;
        self.0
            .user_buckets
            .entry(Arc::from(user))
            .or_insert_with(|| SharedBucket::new(c.user_rate_per_second, c.user_rate_burst))
            .clone()
    }

    /// The rate limit shared by every connection from the host of `ip`.
    pub(crate) fn host_bucket(&self, ip: IpAddr) -> Arc<SharedBucket> {
        let key = self.0.config.addr_grouping.host(ip);
        let c = &self.0.config;
        self.0
            .host_buckets
            .entry(key)
            .or_insert_with(|| SharedBucket::new(c.host_rate_per_second, c.host_rate_burst))
            .clone()
    }

    /// Forgets shared rate limits that no connection holds and that are full again
    /// (forgetting a bucket that still remembers recent traffic would hand a
    /// reconnecting flooder a fresh burst). Run by the liveness sweep and when a
    /// connection ends, so the maps hold only live users and hosts and those seen in
    /// the last `burst / rate` seconds.
    pub(crate) fn prune_rate_limits(&self) {
        self.0
            .user_buckets
            .retain(|_, b| Arc::strong_count(b) > 1 || !b.lock().is_full());
        self.0
            .host_buckets
            .retain(|_, b| Arc::strong_count(b) > 1 || !b.lock().is_full());
    }

    /// Forgets the shared rate limits of one ended connection, if unused and full.
    pub(crate) fn release_rate_limits(&self, user: &str, host: Option<IpAddr>) {
        self.0
            .user_buckets
            .remove_if(user, |_, b| Arc::strong_count(b) == 1 && b.lock().is_full());
        if let Some(ip) = host {
            let key = self.0.config.addr_grouping.host(ip);
            self.0
                .host_buckets
                .remove_if(&key, |_, b| Arc::strong_count(b) == 1 && b.lock().is_full());
        }
    }

    /// How many users and hosts have a shared rate limit in memory (tests: it must not
    /// grow with traffic).
    #[doc(hidden)]
    pub fn rate_limit_entries(&self) -> (usize, usize) {
        (self.0.user_buckets.len(), self.0.host_buckets.len())
    }

    /// Whether the authenticator lets `identity` do `action` in `room`.
    pub(crate) fn authorize(&self, identity: &Identity, room: &str, action: Action) -> bool {
        self.0.auth.authorize(identity, room, action)
    }

    /// Spawns a connection task tracked for graceful shutdown.
    pub(crate) fn spawn_tracked<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.0.tracker.spawn(fut);
    }
}
