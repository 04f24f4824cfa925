//! One client connection speaking `wshub.v1`: parses ops, applies them to the hub,
//! replies, and rate-limits. Runs as one task per connection.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use crate::BoxFuture;
use crate::auth::{Action, Identity};
use crate::history::HistoryError;
use crate::hub::rooms::{JoinAck, MembershipError, Published, Replay, Shown};
use crate::hub::rpc::{self, RpcContext};
use crate::hub::{CloseInfo, ConnEntry, Connection, Hub, Slot};
use crate::metrics::RateLimit;
use crate::presence::PresenceSource;
use crate::protocol::{self, ClientOp, ErrorCode, quote};
use crate::rate::{SharedBucket, TokenBucket};
use crate::room::{AsyncPublishContext, PublishContext};
use crate::ws::{CloseCode, Message, Outbound, WebSocket};

/// An error reply: code and message.
type OpError = (ErrorCode, String);

fn err(code: ErrorCode, message: impl Into<String>) -> OpError {
    (code, message.into())
}

/// Serves one upgraded connection until it closes, then takes it out of its rooms and
/// gives its connection `slot` back.
///
/// Spawned as a task of its own by the listeners, once the handshake's task is done,
/// so that an open connection's task is this future and nothing else.
///
/// Not an `async fn`: registering happens now and the returned future is `serve` itself,
/// so the `WebSocket` is moved once into the connection's future instead of being
/// carried by two nested ones (which would hold a copy each).
pub(crate) fn run<S>(
    hub: Hub,
    ws: WebSocket<S>,
    identity: Identity,
    peer: Option<std::net::SocketAddr>,
    slot: Slot,
) -> impl std::future::Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let entry = hub.register(Arc::new(identity), ws.outbound(), peer);
    // At `info`, so that the connection's events at `info` (connected, closed, flood,
    // slow consumer) carry who and where from. No token, cookie or header: only the
    // ids the hub assigned, the user id the authenticator chose, and the address.
    let span = tracing::info_span!(
        "conn",
        conn_id = entry.id,
        user = %entry.identity.user_id,
        peer = %PeerAddr(peer),
    );
    serve(hub, ws, entry, slot).instrument(span)
}

/// A connection's address in its logs: `-` when served over a stream without one.
struct PeerAddr(Option<std::net::SocketAddr>);

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// The connection's life, from welcome to disconnect hook.
///
/// Not an `async fn` but a function returning an `async move` block: an `async fn`
/// keeps its arguments where they were passed and moves them into its body's own
/// locals, so every argument (the 360-byte `WebSocket` first) would take room twice in
/// the future each open connection keeps. The block uses what it captured in place.
#[allow(clippy::manual_async_fn)]
fn serve<S>(
    hub: Hub,
    mut ws: WebSocket<S>,
    entry: Arc<ConnEntry>,
    slot: Slot,
) -> impl std::future::Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    async move {
        // In a block: what setting up needs is gone before the first `.await`, so it
        // takes no room in the future (a local's storage lasts to the end of its scope,
        // across every `.await` in it).
        let mut session = {
            let conn_id = entry.id;
            tracing::info!("connected");
            if let Some(metrics) = hub.metrics() {
                metrics.connection_opened();
                #[cfg(feature = "metrics")]
                ws.set_observer(metrics.clone());
            }
            // A client closed for an error leaves its rooms at once, not after the
            // closing handshake's grace period.
            let on_error = hub.clone();
            ws.on_error_close(move || on_error.disconnect(conn_id));
            let config = hub.config();
            let session = Session {
                hub: hub.clone(),
                entry: entry.clone(),
                bucket: TokenBucket::new(config.rate_per_second, config.rate_burst),
                user_bucket: hub.user_bucket(&entry.identity.user_id),
                host_bucket: entry.peer.map(|p| hub.host_bucket(p.ip())),
                membership: TokenBucket::new(
                    config.membership_rate_per_second,
                    config.membership_burst,
                ),
                strikes: 0,
                calls: None,
                publisher: None,
            };
            session.send_text(protocol::encode_welcome(&entry.identity.user_id, conn_id));
            session
        };
        if hub.is_shutting_down() {
            entry
                .outbound
                .close(CloseCode::Away, "server shutting down");
        }
        // Boxed, and only when there is a hook: its state (a timer, the hook's task) is
        // needed once, and inline it would take room in every connection's future.
        if hub.0.on_connect.is_some() {
            Box::pin(run_connect_hook(&hub, &mut ws, &entry)).await;
        }
        let result = loop {
            match ws.recv().await {
                Ok(Some(msg)) => {
                    // Ops that wait (a join reading history, a publish appending to it)
                    // come back as a boxed future: the connection's future stays small
                    // while idle, and input is read again once the op is done.
                    if let Some(op) = session.handle(msg) {
                        op.await;
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        hub.disconnect(entry.id);
        // Rooms joined after a disconnect from another task (slow consumer, reaper) are
        // left here; nothing else adds rooms once this task ends.
        hub.leave_all(&entry);
        drop(session);
        // The peer is read from the entry, not kept in this future: 32 bytes less in
        // every open connection's task.
        hub.release_rate_limits(&entry.identity.user_id, entry.peer.map(|p| p.ip()));
        let close = CloseInfo::from_record(entry.outbound.close_record());
        // The socket goes now, not after the disconnect hook.
        drop(ws);
        if let Some(metrics) = hub.metrics() {
            metrics.connection_closed(close.code);
        }
        // One event per connection, with the close that ended it (the reason is the close
        // frame's text: ours, or what the client wrote in its own), and the error that
        // ended the task if one did (a reset, a protocol violation).
        tracing::info!(
            code = close.code,
            reason = %close.reason,
            initiator = ?close.initiator,
            error = result.err().map(tracing::field::display),
            "closed"
        );
        spawn_disconnect_hook(&hub, entry, close);
        drop(slot);
    }
}

/// Runs the application's connect hook, if any, after the welcome is written and before
/// the first message is read, so what it sets up is in place for the client's first op.
///
/// In a task of its own, awaited here: a hook that panics ends that task, not this
/// connection's (whose room and hub bookkeeping must still be undone when it ends).
async fn run_connect_hook<S>(hub: &Hub, ws: &mut WebSocket<S>, entry: &Arc<ConnEntry>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(hook) = hub.0.on_connect.clone() else {
        return;
    };
    // Write the welcome first, so a client hears it before a slow hook returns. A tiny
    // write on a fresh connection; bounded all the same, by the handshake's deadline.
    let _ = tokio::time::timeout(hub.config().handshake_timeout, ws.flush()).await;
    let conn = Connection::new(hub.clone(), entry.clone());
    if let Err(e) = tokio::spawn(hook(conn)).await {
        tracing::warn!(conn_id = entry.id, error = %e, "connect hook failed");
    }
}

/// Spawns the application's disconnect hook, if any, for a connection that has ended
/// and left its rooms. Tracked, so `Hub::shutdown` waits for it; spawned rather than
/// awaited, so the connection's slot is given back without waiting for it.
fn spawn_disconnect_hook(hub: &Hub, entry: Arc<ConnEntry>, close: CloseInfo) {
    let Some(hook) = hub.0.on_disconnect.clone() else {
        return;
    };
    let conn = Connection::new(hub.clone(), entry);
    hub.spawn_tracked(hook(conn, close));
}

struct Session {
    hub: Hub,
    entry: Arc<ConnEntry>,
    /// This connection's message rate limit.
    bucket: TokenBucket,
    /// The limit shared by every connection of this user.
    user_bucket: Arc<SharedBucket>,
    /// The limit shared by every connection from this host (none without a peer
    /// address, e.g. `serve_stream` over a pipe).
    host_bucket: Option<Arc<SharedBucket>>,
    /// This connection's limit on joins and leaves (what presence announces).
    membership: TokenBucket,
    /// Rate-limited messages, less a quarter for each message that passed since.
    strikes: u32,
    /// The RPCs of this connection that are running, one task each so that a slow
    /// method never holds up the connection's reads and writes. At most
    /// `max_rpc_in_flight` (finished ones are reaped before each new call). A
    /// `JoinSet`, so the calls still running when the connection ends are aborted with
    /// the session instead of outliving it. Created by the first call: most
    /// connections never make one, and an idle connection should cost nothing for it.
    calls: Option<Box<JoinSet<()>>>,
    /// The queue of publishes waiting for an async publish hook, created by the
    /// first such publish. Boxed, as `calls` is: most connections never need
    /// either, and the session is part of every open connection's future.
    publisher: Option<Box<Publisher>>,
}

/// One connection's publishes to namespaces with an async hook, checked and
/// broadcast one at a time, in arrival order, by a task of their own: the
/// connection's order is kept while its task goes on reading, and other connections
/// never wait for it.
struct Publisher {
    /// Capacity `max_pending_publishes`, so with a permit in hand `try_send` never
    /// finds it full.
    tx: mpsc::Sender<PublishJob>,
    /// `max_pending_publishes` permits; a publish holds one from arrival until it is
    /// answered. Over it, the publish is refused (`rate_limited`), never waited for.
    permits: Arc<Semaphore>,
    /// The task; aborted when the session ends, dropping the publishes still waiting.
    _task: AbortOnDropHandle<()>,
}

/// One queued publish: the future that runs the hook and publishes, and what is
/// owed to the client.
struct PublishJob {
    publish: BoxFuture<Result<Published, OpError>>,
    reply: Reply,
    _permit: OwnedSemaphorePermit,
}

/// The one answer a request still owes, for work done outside the session (an RPC, a
/// queued publish). If it is dropped unsent (its task panicked, or was aborted), it
/// answers `internal`: every request with an id gets exactly one reply.
struct Reply {
    hub: Hub,
    entry: Arc<ConnEntry>,
    id: Option<u64>,
    sent: bool,
}

impl Reply {
    /// Sends the answer: `Ok` carries the reply's `data` as JSON text.
    fn send(mut self, result: Result<String, OpError>) {
        self.send_once(result);
    }

    fn send_once(&mut self, result: Result<String, OpError>) {
        if std::mem::replace(&mut self.sent, true) {
            return;
        }
        let text = match (self.id, result) {
            (Some(id), Ok(data)) => protocol::encode_reply_raw(id, &data),
            (Some(id), Err((code, message))) => protocol::encode_reply_err(id, code, &message),
            (None, Ok(_)) => return,
            (None, Err((code, message))) => protocol::encode_error(code, &message),
        };
        self.hub.send_text_to(&self.entry, text);
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        // A no-op once sent. Otherwise the task answering it panicked or was aborted
        // (its connection is closing, and the reply goes nowhere).
        self.send_once(Err(err(
            ErrorCode::Internal,
            "the server failed while handling this request",
        )));
    }
}

/// Runs a connection's queued publishes one after the other, answering each.
async fn run_publisher(mut rx: mpsc::Receiver<PublishJob>) {
    while let Some(job) = rx.recv().await {
        let PublishJob {
            publish,
            reply,
            _permit,
        } = job;
        reply.send(publish.await.map(|p| publish_reply(&p)));
    }
}

impl Session {
    fn out(&self) -> &Outbound {
        &self.entry.outbound
    }

    /// Queues a message to this connection.
    fn send_text(&self, text: String) {
        self.hub.send_text_to(&self.entry, text);
    }

    /// An answer owed to request `id`, to be sent from another task.
    fn owed_reply(&self, id: Option<u64>) -> Reply {
        Reply {
            hub: self.hub.clone(),
            entry: self.entry.clone(),
            id,
            sent: false,
        }
    }

    fn reply(&self, id: Option<u64>, result: Result<Value, OpError>) {
        let text = match (id, result) {
            (Some(id), Ok(data)) => protocol::encode_reply_ok(id, &data),
            (Some(id), Err((code, message))) => protocol::encode_reply_err(id, code, &message),
            (None, Ok(_)) => return,
            (None, Err((code, message))) => protocol::encode_error(code, &message),
        };
        self.send_text(text);
    }

    /// Takes a token from each rate limit the message counts against: this
    /// connection's, its user's and its host's; the first that has none refuses it.
    fn admit_message(&mut self) -> Result<(), RateLimit> {
        if !self.bucket.take() {
            return Err(RateLimit::Connection);
        }
        if !self.user_bucket.lock().take() {
            return Err(RateLimit::User);
        }
        if let Some(host) = &self.host_bucket
            && !host.lock().take()
        {
            return Err(RateLimit::Host);
        }
        Ok(())
    }

    /// Counts a message refused by `limit`.
    fn record_rate_limited(&self, limit: RateLimit) {
        if let Some(metrics) = self.hub.metrics() {
            metrics.rate_limited(limit);
        }
    }

    /// Handles one message from the client. Ops that must wait for the room's history
    /// return a future that finishes them (and sends their reply).
    fn handle(&mut self, msg: Message) -> Option<BoxFuture<()>> {
        // Once the connection is closing (flood, slow consumer, expiry), the engine
        // hands no more messages over (`WebSocket::recv`): no check of our own here.
        if let Some(metrics) = self.hub.metrics() {
            metrics.client_message();
        }
        if let Err(limit) = self.admit_message() {
            self.record_rate_limited(limit);
            self.strikes += 1;
            if self.strikes >= self.hub.config().flood_limit {
                tracing::info!(
                    code = 1008,
                    strikes = self.strikes,
                    limit = limit.label(),
                    "flooding: closing (1008)"
                );
                if let Some(metrics) = self.hub.metrics() {
                    metrics.flood_closed();
                }
                self.out().close(CloseCode::Policy, "flooding");
                // Leave the rooms now, as for an expired token: a flooder need not
                // answer the close, and its presence must not outlive it.
                self.hub.disconnect(self.entry.id);
                return None;
            }
            let id = msg.as_text().and_then(peek_id);
            self.reply(
                id,
                Err(err(ErrorCode::RateLimited, "too many messages, slow down")),
            );
            return None;
        }
        // A message that passes forgives a quarter of the strikes, not all of them: a
        // client that overflows now and then recovers quickly, but one that floods in
        // batches, letting a message through between them, still reaches the limit.
        self.strikes -= self.strikes.div_ceil(4);
        let Some(text) = msg.as_text() else {
            self.reply(
                None,
                Err(err(
                    ErrorCode::BadRequest,
                    "binary frames are not part of wshub.v1; send JSON text",
                )),
            );
            return None;
        };
        let op = match protocol::parse_client_op(text) {
            Ok(op) => op,
            Err(violation) => {
                self.send_text(violation.encode());
                return None;
            }
        };
        let id = op.id();
        if let Some(room) = op.room()
            && let Err(e) = self.check_room_name(room)
        {
            self.reply(id, Err(e));
            return None;
        }
        if matches!(op, ClientOp::Join { .. } | ClientOp::Leave { .. }) && !self.membership.take() {
            self.record_rate_limited(RateLimit::Membership);
            let limit = self.hub.config().membership_rate_per_second;
            self.reply(
                id,
                Err(err(
                    ErrorCode::RateLimited,
                    format!("too many joins and leaves: at most {limit} per second"),
                )),
            );
            return None;
        }
        let result = match op {
            ClientOp::Join {
                room,
                meta,
                id,
                since,
                history,
            } => {
                // Answered by the join itself, under the room's presence lock.
                return match self.join(room, meta, id, Replay { since, history }) {
                    Ok(join) => Some(join),
                    Err(e) => {
                        self.reply(Some(id), Err(e));
                        None
                    }
                };
            }
            ClientOp::Leave { room, .. } => self.leave(&room),
            ClientOp::Publish {
                room,
                data,
                ephemeral,
                id,
            } => match self.publish(&room, data, ephemeral, id) {
                // Queued for an async hook: answered when it is done.
                Ok(None) => return None,
                // Stored and delivered by the future, which answers.
                Ok(Some(publish)) => return Some(publish),
                Err(e) => Err(e),
            },
            ClientOp::Call { method, data, id } => {
                if let Err(e) = self.call(method, data, id) {
                    self.reply(Some(id), Err(e));
                }
                return None;
            }
            ClientOp::Presence { room, id } => {
                if let Err(e) = self.presence(&room, id, None) {
                    self.reply(Some(id), Err(e));
                }
                return None;
            }
            ClientOp::PresencePage {
                room,
                id,
                after,
                limit,
            } => {
                let page = (after, limit);
                if let Err(e) = self.presence(&room, id, Some(page)) {
                    self.reply(Some(id), Err(e));
                }
                return None;
            }
            #[allow(unreachable_patterns)]
            other => Err(err(
                ErrorCode::BadRequest,
                format!("unsupported op {}", other.name()),
            )),
        };
        self.reply(id, result);
        None
    }

    /// Refuses room names over the length limit or with characters the hub does not
    /// allow, quoting at most a short prefix of the name.
    fn check_room_name(&self, room: &str) -> Result<(), OpError> {
        let config = self.hub.config();
        if room.len() > config.max_room_name_len {
            return Err(err(
                ErrorCode::BadRequest,
                format!(
                    "room name {} is {} bytes, the limit is {}",
                    quote(room),
                    room.len(),
                    config.max_room_name_len
                ),
            ));
        }
        if let Some(c) = room.chars().find(|&c| !(config.room_name_chars)(c)) {
            return Err(err(
                ErrorCode::BadRequest,
                format!(
                    "room name {} contains U+{:04X}, not allowed in room names",
                    quote(room),
                    u32::from(c)
                ),
            ));
        }
        Ok(())
    }

    /// Checks a join, and returns the future that joins `room` and queues the reply
    /// (with the presence snapshot and the stream position), then the replay, itself:
    /// under the room's presence lock, so no presence diff taken after the snapshot
    /// can reach this connection before it, and with the room's turn, so the replay
    /// meets the live stream exactly. The membership itself is the hub's
    /// (`hub/rooms.rs`), shared with joins from the server.
    fn join(
        &mut self,
        room: String,
        meta: Option<Value>,
        id: u64,
        replay: Replay,
    ) -> Result<BoxFuture<()>, OpError> {
        let hub = &self.hub;
        if hub.namespace_of(&room).is_none() {
            return Err(membership_error(MembershipError::NotFound(room)));
        }
        if !hub.authorize(&self.entry.identity, &room, Action::Join) {
            return Err(err(
                ErrorCode::Forbidden,
                format!("not allowed to join {}", quote(&room)),
            ));
        }
        let meta = meta.unwrap_or_else(|| json!({}));
        let hub = hub.clone();
        let entry = self.entry.clone();
        Ok(Box::pin(async move {
            if let Err(e) = hub
                .join_conn(&entry, &room, meta, JoinAck::Reply(id), replay)
                .await
            {
                hub.send_text_to(
                    &entry,
                    protocol::encode_reply_err(id, e.code(), &e.to_string()),
                );
            }
        }))
    }

    fn leave(&mut self, room: &str) -> Result<Value, OpError> {
        self.hub
            .leave_conn(&self.entry, room, None)
            .map_err(membership_error)?;
        Ok(json!({}))
    }

    /// Checks a client's publish (and runs the namespace's hook if it is not async):
    /// `Some(future)` that stores, delivers and answers it; `None` when queued for the
    /// namespace's async hook (the queue answers it).
    fn publish(
        &mut self,
        room: &str,
        data: Value,
        ephemeral: bool,
        id: Option<u64>,
    ) -> Result<Option<BoxFuture<()>>, OpError> {
        let state = self.entry.rooms().get(room).cloned();
        let Some(state) = state else {
            return Err(match self.hub.namespace_of(room) {
                None => err(
                    ErrorCode::NotFound,
                    format!("no such room: {}", quote(room)),
                ),
                Some(_) => err(
                    ErrorCode::NotJoined,
                    format!("join {} before publishing", quote(room)),
                ),
            });
        };
        if let Some(metrics) = self.hub.metrics() {
            metrics.publish_received(&state.name);
        }
        let options = state.ns.options();
        if !options.client_publish {
            return Err(err(
                ErrorCode::Forbidden,
                format!("{} accepts publishes from the server only", quote(room)),
            ));
        }
        if !self
            .hub
            .authorize(&self.entry.identity, room, Action::Publish)
        {
            return Err(err(
                ErrorCode::Forbidden,
                format!("not allowed to publish to {}", quote(room)),
            ));
        }
        let size = protocol::encoded_len(&data);
        if size > options.max_payload {
            return Err(err(
                ErrorCode::TooLarge,
                format!(
                    "data is {size} bytes, the limit for {} is {}",
                    quote(room),
                    options.max_payload
                ),
            ));
        }
        if state.ns.has_async_hook() {
            let ctx = AsyncPublishContext {
                room: state.name.clone(),
                identity: self.entry.identity.clone(),
                conn_id: self.entry.id,
                ephemeral,
            };
            let check = state.ns.client_publish_async(state.clone(), ctx, data);
            let hub = self.hub.clone();
            let limit = hub.config().publish_hook_timeout;
            let publish: BoxFuture<Result<Published, OpError>> = Box::pin(async move {
                let publication = tokio::time::timeout(limit, check)
                    .await
                    .map_err(|_| {
                        err(
                            ErrorCode::Timeout,
                            format!(
                                "the publish check did not answer within {}; not published",
                                humanize(limit)
                            ),
                        )
                    })?
                    .map_err(|r| (r.code, r.message))?;
                hub.publish(&state, publication).await.map_err(unavailable)
            });
            self.queue_publish(publish, id)?;
            return Ok(None);
        }
        let ctx = PublishContext {
            room,
            identity: &self.entry.identity,
            ephemeral,
        };
        let publication = state
            .ns
            .client_publish(&state, &ctx, data)
            .map_err(|r| (r.code, r.message))?;
        let reply = self.owed_reply(id);
        let hub = self.hub.clone();
        Ok(Some(Box::pin(async move {
            let result = hub.publish(&state, publication).await;
            reply.send(result.map(|p| publish_reply(&p)).map_err(unavailable));
        })))
    }

    /// Queues a publish behind this connection's earlier ones that wait for an async
    /// hook, or refuses it when `max_pending_publishes` are waiting already.
    fn queue_publish(
        &mut self,
        publish: BoxFuture<Result<Published, OpError>>,
        id: Option<u64>,
    ) -> Result<(), OpError> {
        let max = self.hub.config().max_pending_publishes;
        // A task that ended (a hook panicked) is replaced; what it held was answered
        // `internal` as it was dropped.
        if self.publisher.as_ref().is_none_or(|p| p.tx.is_closed()) {
            let (tx, rx) = mpsc::channel(max.max(1));
            let task = tokio::spawn(run_publisher(rx).in_current_span());
            self.publisher = Some(Box::new(Publisher {
                tx,
                permits: Arc::new(Semaphore::new(max)),
                _task: AbortOnDropHandle::new(task),
            }));
        }
        let publisher = self.publisher.as_ref().expect("created above");
        let Ok(permit) = publisher.permits.clone().try_acquire_owned() else {
            self.record_rate_limited(RateLimit::PendingPublishes);
            return Err(err(
                ErrorCode::RateLimited,
                format!("{max} publishes are waiting to be checked already; slow down"),
            ));
        };
        let job = PublishJob {
            publish,
            reply: self.owed_reply(id),
            _permit: permit,
        };
        if let Err(e) = publisher.tx.try_send(job) {
            // Full cannot happen (a permit per place); Closed only if the task died
            // just now. The job's reply answers `internal` as it is dropped here.
            drop(e);
        }
        Ok(())
    }

    /// Starts an RPC in a task of its own, or refuses it at once: unknown method
    /// (`not_found`), or `max_rpc_in_flight` calls of this connection running already
    /// (`rate_limited`). The task sends the reply.
    fn call(&mut self, name: String, data: Value, id: u64) -> Result<(), OpError> {
        let Some(method) = self.hub.method(&name) else {
            return Err(err(
                ErrorCode::NotFound,
                format!("no such method: {}", quote(&name)),
            ));
        };
        let calls = self.calls.get_or_insert_with(Box::default);
        while calls.try_join_next().is_some() {}
        let max = self.hub.config().max_rpc_in_flight;
        if calls.len() >= max {
            self.record_rate_limited(RateLimit::RpcInFlight);
            return Err(err(
                ErrorCode::RateLimited,
                format!("{max} calls are running already; wait for their replies"),
            ));
        }
        let ctx = RpcContext {
            hub: self.hub.clone(),
            identity: self.entry.identity.clone(),
            conn_id: self.entry.id,
            peer: self.entry.peer,
        };
        let reply = self.owed_reply(Some(id));
        let calls = self.calls.get_or_insert_with(Box::default);
        calls.spawn(
            async move {
                let result = rpc::run(method, &name, ctx, data).await;
                reply.send(result.map_err(|e| (e.code, e.message)));
            }
            .in_current_span(),
        );
        Ok(())
    }

    /// Answers a `presence` request (`page`: `None`), or a `presence_page` with its
    /// cursor and limit, under the room's presence lock (as `join`). A `presence`
    /// request of a big room is answered like its join: the count and the first page.
    fn presence(
        &mut self,
        room: &str,
        id: u64,
        page: Option<(Option<String>, Option<usize>)>,
    ) -> Result<(), OpError> {
        let state = self.entry.rooms().get(room).cloned();
        let Some(state) = state else {
            return Err(match self.hub.namespace_of(room) {
                None => err(
                    ErrorCode::NotFound,
                    format!("no such room: {}", quote(room)),
                ),
                Some(_) => err(
                    ErrorCode::NotJoined,
                    format!("join {} to see its presence", quote(room)),
                ),
            });
        };
        if !state.ns.options().presence {
            // A namespace without presence has an empty one.
            self.reply(Some(id), Ok(json!({ "presence": {} })));
            return Ok(());
        }
        let member = &self.entry.identity.user_id;
        let mut presence = state.presence_lock();
        let shown = match page {
            None => self.hub.presence_for(&mut presence, member),
            Some((after, limit)) => {
                // At least one user a page, whatever the configuration says.
                let max = self.hub.config().presence_page_size.max(1);
                let limit = limit.unwrap_or(max).clamp(1, max);
                Shown::Page(presence.page(member, after.as_deref(), limit))
            }
        };
        let data = match &shown {
            Shown::All(all) => json!({ "presence": all }),
            Shown::Page(page) => serde_json::to_value(page).expect("a page always encodes"),
        };
        self.reply(Some(id), Ok(data));
        Ok(())
    }
}

/// A publish reply's `data`: how many it was queued for, and where it was stored.
fn publish_reply(p: &Published) -> String {
    match &p.position {
        Some(pos) => format!(
            r#"{{"delivered":{},"seq":{},"epoch":{}}}"#,
            p.delivered,
            pos.seq,
            serde_json::to_string(&*pos.epoch).expect("a string encodes")
        ),
        None => format!(r#"{{"delivered":{}}}"#, p.delivered),
    }
}

/// `d` for people: whole seconds as "10 s", shorter as "250 ms".
fn humanize(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// A history store failure as the client's reply.
fn unavailable(e: HistoryError) -> OpError {
    err(ErrorCode::Unavailable, e.to_string())
}

/// A membership failure as the client's reply: its code and message.
fn membership_error(e: MembershipError) -> OpError {
    (e.code(), e.to_string())
}

/// The `id` of a message we will not parse fully (rate-limited), so the refusal can
/// still answer it.
fn peek_id(text: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Peek {
        id: Option<u64>,
    }
    serde_json::from_str::<Peek>(text).ok()?.id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_id_reads_only_the_id() {
        assert_eq!(peek_id(r#"{"op":"publish","id":7,"room":"x"}"#), Some(7));
        assert_eq!(peek_id(r#"{"op":"publish"}"#), None);
        assert_eq!(peek_id("not json"), None);
    }
}

#[cfg(test)]
mod size_tests {
    use bytes::{Bytes, BytesMut};
    use tokio::net::{TcpListener, TcpStream};

    use crate::auth::Identity;
    use crate::hub::Hub;
    use crate::net::rewind::Rewind;
    use crate::ws::{Role, WebSocket};

    /// Every open connection keeps this future (in its task) for as long as it is open:
    /// 10,000 idle connections hold 10,000 of them. It was 1,288 bytes (the `WebSocket`
    /// 360) before the `WebSocket` stopped being stored twice (see `serve`) and what
    /// few connections use was boxed; 680 with every feature. tokio rounds a task's
    /// memory up to a multiple of 128 bytes, so a few bytes more can cost 128 per
    /// connection (going from 816 to 688 took the idle benchmark from 3.08 to 2.94
    /// KiB per connection): the bound leaves little room, so a regression shows here.
    #[tokio::test]
    async fn an_open_connections_future_stays_small() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (tcp, peer) = listener.accept().await.unwrap();
        let hub = Hub::builder().build();
        // The stream type `Hub::serve` runs connections over.
        let stream = Rewind::new(tcp, Bytes::new());
        let ws =
            WebSocket::from_parts(stream, Role::Server, hub.ws_config(), None, BytesMut::new());
        let ws_size = std::mem::size_of_val(&ws);
        let Ok(slot) = hub.reserve_slot(Some(peer)) else {
            panic!("no connection slot")
        };
        let future = super::run(hub.clone(), ws, Identity::new("u", "u"), Some(peer), slot);
        let size = std::mem::size_of_val(&future);
        assert!(ws_size <= 320, "WebSocket is {ws_size} bytes");
        assert!(size <= 704, "the connection's future is {size} bytes");
        // The `WebSocket` is in it once.
        assert!(
            size < 2 * ws_size + 200,
            "{size} bytes for a {ws_size}-byte WebSocket"
        );
    }
}
