//! [`Connection`]: the application's handle on one client connection, and the
//! lifecycle hooks ([`HubBuilder::on_connect`], [`HubBuilder::on_disconnect`]) that
//! hand it over.

use std::any::{Any, TypeId};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};

use super::rooms::{JoinAck, Joined, MembershipError, Replay};
use super::{ConnEntry, ConnectionInfo, Hub, HubBuilder};
use crate::auth::Identity;
use crate::protocol;
use crate::ws::{CloseCode, CloseRecord, SendError, clip_close_reason};

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The stored connect hook.
pub(crate) type ConnectHook = Arc<dyn Fn(Connection) -> BoxFuture + Send + Sync>;

/// The stored disconnect hook.
pub(crate) type DisconnectHook = Arc<dyn Fn(Connection, CloseInfo) -> BoxFuture + Send + Sync>;

/// The application's typed values on one connection, one per type.
pub(crate) type DataMap = Vec<(TypeId, Arc<dyn Any + Send + Sync>)>;

impl HubBuilder {
    /// Runs `hook` once for every connection, after its `welcome` has been written,
    /// before the first message from the client is read.
    ///
    /// The hook runs in a task of its own, which the connection's task waits for: a slow
    /// hook (a database lookup) delays only this connection, whose ops wait unread
    /// until it returns, and everything it does (set data with
    /// [`Connection::set_data`], join rooms with [`Connection::join`]) is in place
    /// before the client's first op is served. A hook that panics is logged and the
    /// connection is served anyway; one that never returns holds its connection (not
    /// others) until the liveness sweep closes it. Close the connection from the hook
    /// ([`Connection::close`]) to turn it away.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// #[derive(Debug)]
    /// struct Session { plan: &'static str }
    ///
    /// let hub = wshub::Hub::builder()
    ///     .on_connect(|conn: wshub::Connection| async move {
    ///         conn.set_data(Session { plan: "free" });
    ///     })
    ///     .build();
    /// # let _ = hub; }
    /// ```
    pub fn on_connect<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Connection) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_connect = Some(Arc::new(move |conn| Box::pin(hook(conn))));
        self
    }

    /// Runs `hook` once for every connection that got a `welcome` (and so ran the
    /// connect hook), once it has ended: it has left every room (presence leaves are
    /// on their way), its socket is closed, and [`Hub::connection`] no longer finds it.
    /// For a connection the server closed, that is when the client has answered the
    /// close frame, or `close_timeout` (5 s by default) after the close if it does not.
    /// (The rooms are left at once in either case.)
    /// The [`Connection`] still gives its identity, address and data; joins and sends
    /// on it fail. [`CloseInfo`] says how it closed.
    ///
    /// The hook runs in a task of its own, spawned as the connection's task ends: the
    /// connection's slot (its place under `max_connections` and the per-host, network
    /// and user caps) is given back at once, not after the hook. [`Hub::shutdown`]
    /// waits for running disconnect hooks too (within `shutdown_timeout`).
    pub fn on_disconnect<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Connection, CloseInfo) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_disconnect = Some(Arc::new(move |conn, close| Box::pin(hook(conn, close))));
        self
    }
}

/// Which side ended a connection ([`CloseInfo::initiator`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CloseInitiator {
    /// The server sent the first close frame: the application ([`Connection::close`],
    /// [`Hub::disconnect_user`]), a policy (flooding or an expired token 1008, a slow
    /// consumer 1013), the liveness sweep or shutdown (1001), or a protocol error of
    /// the client's (1002, 1007, 1009).
    Server,
    /// The client sent the first close frame.
    Client,
    /// Nobody: the connection dropped without a close frame (code 1006).
    Lost,
}

/// How a connection ended, as the disconnect hook sees it.
///
/// The code and reason are those of the close that began the closing handshake: as the
/// server sent them when the server closed first, as the client sent them when the
/// client did (1005 and an empty reason when its close frame had no code). A connection
/// that dropped without any close frame gets 1006 (which is never sent on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CloseInfo {
    /// The close code (1000 normal, 1001 going away, 1008 policy, 1013 slow consumer,
    /// 4000-4999 the application's own, ...).
    pub code: u16,
    /// The close reason, as sent (at most 123 bytes).
    pub reason: String,
    /// Who closed first.
    pub initiator: CloseInitiator,
}

impl CloseInfo {
    /// A close with `code`, `reason` and `initiator` (for tests of a disconnect hook).
    pub fn new(code: u16, reason: impl Into<String>, initiator: CloseInitiator) -> Self {
        CloseInfo {
            code,
            reason: reason.into(),
            initiator,
        }
    }

    pub(crate) fn from_record(record: Option<CloseRecord>) -> Self {
        match record {
            Some(r) => CloseInfo {
                code: r.code,
                reason: r.reason.into(),
                initiator: if r.by_peer {
                    CloseInitiator::Client
                } else {
                    CloseInitiator::Server
                },
            },
            None => CloseInfo::new(1006, "", CloseInitiator::Lost),
        }
    }
}

/// One client connection, for the application: who it is, where from, which rooms it
/// is in, the application's own data on it, and what the server can do to it (join it
/// to rooms, take it out, send to it, close it).
///
/// A cheap `Clone` handle (two `Arc`s). From the hooks ([`HubBuilder::on_connect`],
/// [`HubBuilder::on_disconnect`]) or [`Hub::connection`]. Holding one keeps the
/// connection's small bookkeeping alive, not its socket: once the connection has
/// closed, [`is_open`](Self::is_open) is `false`, [`rooms`](Self::rooms) is empty,
/// and joins and sends fail.
#[derive(Clone)]
pub struct Connection {
    hub: Hub,
    entry: Arc<ConnEntry>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.entry.id)
            .field("user", &self.entry.identity.user_id)
            .field("peer", &self.entry.peer)
            .field("open", &self.is_open())
            .finish()
    }
}

impl Connection {
    pub(crate) fn new(hub: Hub, entry: Arc<ConnEntry>) -> Self {
        Connection { hub, entry }
    }

    /// The connection's id: the `conn_id` of its `welcome` and presence metas, unique
    /// on this hub.
    pub fn id(&self) -> u64 {
        self.entry.id
    }

    /// Who the authenticator said the client is.
    pub fn identity(&self) -> &Identity {
        &self.entry.identity
    }

    /// The client's address as the hub's limits see it (the TCP peer, or the client a
    /// trusted proxy named); `None` when served over a stream without one.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.entry.peer
    }

    /// The rooms the connection is in now, sorted by name.
    pub fn rooms(&self) -> Vec<String> {
        let mut rooms: Vec<String> = self.entry.rooms().keys().map(|r| r.to_string()).collect();
        rooms.sort_unstable();
        rooms
    }

    /// A snapshot of the connection as [`Hub::user_connections`] reports it.
    pub fn info(&self) -> ConnectionInfo {
        ConnectionInfo::of(&self.entry)
    }

    /// Whether the connection is still open: not closing and not gone.
    pub fn is_open(&self) -> bool {
        !self.entry.is_gone() && !self.entry.outbound.is_closed()
    }

    /// Stores `value` on the connection, replacing (and returning) the value of the
    /// same type stored before. One value per type: wrap what you store in a type of
    /// your own. Readable from any task with [`data`](Self::data), and from the
    /// disconnect hook.
    pub fn set_data<T: Send + Sync + 'static>(&self, value: T) -> Option<Arc<T>> {
        let value: Arc<dyn Any + Send + Sync> = Arc::new(value);
        let mut data = self.entry.data.lock().unwrap_or_else(|p| p.into_inner());
        let id = TypeId::of::<T>();
        let old = match data.iter_mut().find(|(t, _)| *t == id) {
            Some(slot) => Some(std::mem::replace(&mut slot.1, value)),
            None => {
                data.push((id, value));
                None
            }
        };
        drop(data);
        old.and_then(|v| v.downcast::<T>().ok())
    }

    /// The value of type `T` stored with [`set_data`](Self::set_data), if any. An
    /// `Arc`: the lock on the connection's data is held only to clone it.
    pub fn data<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let data = self.entry.data.lock().unwrap_or_else(|p| p.into_inner());
        let value = data
            .iter()
            .find(|(t, _)| *t == TypeId::of::<T>())
            .map(|(_, v)| v.clone())?;
        drop(data);
        value.downcast::<T>().ok()
    }

    /// Joins the connection to `room` from the server, with an empty presence meta:
    /// see [`join_with_meta`](Self::join_with_meta).
    pub async fn join(&self, room: &str) -> Result<bool, MembershipError> {
        self.join_with_meta(room, json!({})).await
    }

    /// Joins the connection to `room` from the server, with presence `meta`, exactly as
    /// a client `join` would: the room's members get the same `presence_diff` on the
    /// next tick, and the connection gets a `joined` message with the room's presence
    /// and stream position, then the room's messages. Returns `Ok(false)` if it was in
    /// the room already (nothing is sent then). Async because in a namespace with
    /// history it reads the room's position (at once with the default in-memory store).
    ///
    /// The server decides: the authenticator's `authorize` is not asked. The room's
    /// and connection's limits apply (`max_subscribers`, `max_rooms_per_connection`,
    /// `max_presence_meta`), but not the client's join rate limit.
    pub async fn join_with_meta(&self, room: &str, meta: Value) -> Result<bool, MembershipError> {
        let joined = self
            .hub
            .join_conn(&self.entry, room, meta, JoinAck::Joined, Replay::default())
            .await?;
        Ok(joined == Joined::New)
    }

    /// Takes the connection out of `room` from the server, exactly as a client `leave`
    /// would (its presence leaves on the next tick if it was the user's last connection
    /// there); the connection gets a `left` message with reason `"server"`.
    pub fn leave(&self, room: &str) -> Result<(), MembershipError> {
        self.hub.leave_conn(&self.entry, room, Some("server"))
    }

    /// Sends `msg` to this connection alone, as a `direct` message
    /// (`{"op":"direct","from":null,"data":...}`). It goes through the connection's
    /// bounded queue like everything else: if the queue is full the connection is a
    /// slow consumer, closed with 1013, and this returns
    /// [`Error::ConnectionClosed`](crate::Error::ConnectionClosed), as it does for a
    /// closed connection. [`Error::Encode`](crate::Error::Encode) if `msg` does not
    /// serialize.
    pub fn send<M: Serialize + ?Sized>(&self, msg: &M) -> crate::Result<()> {
        let text = protocol::try_encode_direct(msg).map_err(crate::Error::Encode)?;
        let prepared = self.hub.prepare(text);
        match self.entry.outbound.try_send(&prepared) {
            Ok(()) => Ok(()),
            Err(SendError::Full) => {
                self.hub
                    .drop_slow_consumers(vec![(self.entry.id, self.entry.outbound.clone())]);
                Err(crate::Error::ConnectionClosed)
            }
            Err(SendError::Closed) => Err(crate::Error::ConnectionClosed),
        }
    }

    /// Closes the connection with `code` and `reason` (clipped to the 123 bytes a close
    /// frame holds), after what is already queued for it, and takes it out of its rooms
    /// at once (presence leaves on the next tick). Use 1000 for a normal end, 1008 for
    /// a policy decision, or a code of your own in 4000-4999. A no-op on a connection
    /// that is already closing.
    ///
    /// Codes that may not be sent (1005, 1006, 1015, under 1000) become 1008.
    pub fn close(&self, code: impl Into<CloseCode>, reason: &str) {
        let code: CloseCode = code.into();
        let code = if crate::ws::close_code_is_sendable(code.into()) {
            code
        } else {
            CloseCode::Policy
        };
        self.entry.outbound.close(code, clip_close_reason(reason));
        self.hub.disconnect(self.entry.id);
    }
}

impl Hub {
    /// The connection with id `id` (its `welcome`'s `conn_id`), if it is open.
    pub fn connection(&self, id: u64) -> Option<Connection> {
        let entry = self.0.conns.get(&id).map(|e| e.value().clone())?;
        Some(Connection::new(self.clone(), entry))
    }
}
