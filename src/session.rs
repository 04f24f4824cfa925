//! One client connection speaking `wshub.v1`: parses ops, applies them to the hub,
//! replies, and rate-limits. Runs as one task per connection.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tracing::Instrument;

use crate::auth::{Action, Identity};
use crate::error::Error;
use crate::hub::{ConnEntry, Hub};
use crate::protocol::{self, ClientOp, ErrorCode};
use crate::room::PublishContext;
use crate::ws::{CloseCode, Message, Outbound, SendError, WebSocket};

/// A token bucket with no timer: tokens are topped up from the elapsed time whenever a
/// message arrives.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl TokenBucket {
    pub(crate) fn new(rate: f64, burst: f64) -> Self {
        TokenBucket {
            tokens: burst,
            last: Instant::now(),
            rate,
            burst,
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// An error reply: code and message.
type OpError = (ErrorCode, String);

fn err(code: ErrorCode, message: impl Into<String>) -> OpError {
    (code, message.into())
}

/// Serves one upgraded connection until it closes, then takes it out of its rooms.
///
/// Not an `async fn`: registering happens now and the returned future is `serve` itself,
/// so the `WebSocket` is moved once into the connection's future instead of being
/// carried by two nested ones (which would hold a copy each).
pub(crate) fn run<S>(
    hub: Hub,
    ws: WebSocket<S>,
    identity: Identity,
    peer: Option<std::net::SocketAddr>,
) -> impl std::future::Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let entry = hub.register(Arc::new(identity), ws.outbound());
    let span = tracing::debug_span!("conn", conn_id = entry.id, user = %entry.identity.user_id);
    serve(hub, ws, entry, peer).instrument(span)
}

async fn serve<S>(
    hub: Hub,
    mut ws: WebSocket<S>,
    entry: Arc<ConnEntry>,
    peer: Option<std::net::SocketAddr>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let conn_id = entry.id;
    tracing::debug!(?peer, "connected");
    // A client closed for an error leaves its rooms at once, not after the closing
    // handshake's grace period.
    let on_error = hub.clone();
    ws.on_error_close(move || on_error.disconnect(conn_id));
    let mut session = Session {
        hub: hub.clone(),
        entry: entry.clone(),
        bucket: TokenBucket::new(hub.config().rate_per_second, hub.config().rate_burst),
        strikes: 0,
    };
    session.send_text(protocol::encode_welcome(&entry.identity.user_id, conn_id));
    if hub.is_shutting_down() {
        entry
            .outbound
            .close(CloseCode::Away, "server shutting down");
    }
    let result = loop {
        match ws.recv().await {
            Ok(Some(msg)) => session.handle(msg),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    hub.disconnect(conn_id);
    // Rooms joined after a disconnect from another task (slow consumer, reaper) are
    // left here; nothing else adds rooms once this task ends.
    hub.leave_all(&entry);
    match result {
        Ok(()) => tracing::debug!("closed"),
        Err(Error::Protocol(e)) => tracing::debug!(error = %e, "closed: protocol error"),
        Err(e) => tracing::debug!(error = %e, "closed with error"),
    }
}

struct Session {
    hub: Hub,
    entry: Arc<ConnEntry>,
    bucket: TokenBucket,
    /// Rate-limited messages in a row.
    strikes: u32,
}

impl Session {
    fn out(&self) -> &Outbound {
        &self.entry.outbound
    }

    /// Queues a message to this connection; one that cannot keep up with its own
    /// replies is a slow consumer like any other.
    fn send_text(&self, text: String) {
        let msg = self.hub.prepare(text);
        if let Err(SendError::Full) = self.out().try_send(&msg) {
            self.hub.close_slow_consumer(self.entry.id, self.out());
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

    fn handle(&mut self, msg: Message) {
        if !self.bucket.take() {
            self.strikes += 1;
            if self.strikes >= self.hub.config().flood_limit {
                tracing::info!(conn_id = self.entry.id, "flooding: closing (1008)");
                self.out().close(CloseCode::Policy, "flooding");
                // Leave the rooms now, as for an expired token: a flooder need not
                // answer the close, and its presence must not outlive it.
                self.hub.disconnect(self.entry.id);
                return;
            }
            let id = msg.as_text().and_then(peek_id);
            self.reply(
                id,
                Err(err(ErrorCode::RateLimited, "too many messages, slow down")),
            );
            return;
        }
        self.strikes = 0;
        let Some(text) = msg.as_text() else {
            self.reply(
                None,
                Err(err(
                    ErrorCode::BadRequest,
                    "binary frames are not part of wshub.v1; send JSON text",
                )),
            );
            return;
        };
        let op = match protocol::parse_client_op(text) {
            Ok(op) => op,
            Err(violation) => {
                self.send_text(violation.encode());
                return;
            }
        };
        let id = op.id();
        let result = match op {
            ClientOp::Join { room, meta, .. } => self.join(&room, meta),
            ClientOp::Leave { room, .. } => self.leave(&room),
            ClientOp::Publish {
                room,
                data,
                ephemeral,
                ..
            } => self.publish(&room, data, ephemeral),
            ClientOp::Presence { room, .. } => self.presence(&room),
            #[allow(unreachable_patterns)]
            other => Err(err(
                ErrorCode::BadRequest,
                format!("unsupported op {}", other.name()),
            )),
        };
        self.reply(id, result);
    }

    fn join(&mut self, room: &str, meta: Option<Value>) -> Result<Value, OpError> {
        let hub = &self.hub;
        let ns = hub
            .namespace_of(room)
            .ok_or_else(|| err(ErrorCode::NotFound, format!("no such room: {room}")))?;
        let identity = &self.entry.identity;
        if !hub.authorize(identity, room, Action::Join) {
            return Err(err(
                ErrorCode::Forbidden,
                format!("not allowed to join {room}"),
            ));
        }
        let meta = meta.unwrap_or_else(|| json!({}));
        let meta_len = protocol::encoded_len(&meta);
        if meta_len > hub.config().max_presence_meta {
            return Err(err(
                ErrorCode::TooLarge,
                format!(
                    "presence meta is {meta_len} bytes, the limit is {}",
                    hub.config().max_presence_meta
                ),
            ));
        }
        {
            let rooms = self.entry.rooms();
            if let Some(state) = rooms.get(room) {
                // Joining twice is harmless: answer with the current presence.
                return Ok(json!({ "presence": state.snapshot() }));
            }
            if rooms.len() >= hub.config().max_rooms_per_connection {
                return Err(err(
                    ErrorCode::TooManyRooms,
                    format!(
                        "a connection may join at most {} rooms",
                        hub.config().max_rooms_per_connection
                    ),
                ));
            }
        }
        let state = hub.room_state(room, ns.clone());
        let options = ns.options();
        let snapshot = {
            let mut presence = state.presence_lock();
            {
                let mut members = state.members_mut();
                if members.conns.len() >= options.max_subscribers {
                    return Err(err(ErrorCode::RoomFull, format!("{room} is full")));
                }
                members
                    .conns
                    .insert(self.entry.id, self.entry.outbound.clone());
            }
            if options.presence {
                if let Some(diff) = presence.join(&identity.user_id, self.entry.id, meta) {
                    state.broadcast_diff(hub, &diff);
                }
                Some(presence.snapshot())
            } else {
                None
            }
        };
        self.entry.rooms().insert(state.name.clone(), state);
        Ok(match snapshot {
            Some(p) => json!({ "presence": p }),
            None => json!({}),
        })
    }

    fn leave(&mut self, room: &str) -> Result<Value, OpError> {
        let state = self
            .entry
            .rooms()
            .remove(room)
            .ok_or_else(|| err(ErrorCode::NotJoined, format!("not in {room}")))?;
        self.hub.leave_room(&self.entry, &state);
        drop(state);
        self.hub.prune_room(room);
        Ok(json!({}))
    }

    fn publish(&mut self, room: &str, data: Value, ephemeral: bool) -> Result<Value, OpError> {
        let state = self.entry.rooms().get(room).cloned();
        let Some(state) = state else {
            return Err(match self.hub.namespace_of(room) {
                None => err(ErrorCode::NotFound, format!("no such room: {room}")),
                Some(_) => err(
                    ErrorCode::NotJoined,
                    format!("join {room} before publishing"),
                ),
            });
        };
        let options = state.ns.options();
        if !options.client_publish {
            return Err(err(
                ErrorCode::Forbidden,
                format!("{room} accepts publishes from the server only"),
            ));
        }
        if !self
            .hub
            .authorize(&self.entry.identity, room, Action::Publish)
        {
            return Err(err(
                ErrorCode::Forbidden,
                format!("not allowed to publish to {room}"),
            ));
        }
        let size = protocol::encoded_len(&data);
        if size > options.max_payload {
            return Err(err(
                ErrorCode::TooLarge,
                format!(
                    "data is {size} bytes, the limit for {room} is {}",
                    options.max_payload
                ),
            ));
        }
        let ctx = PublishContext {
            room,
            identity: &self.entry.identity,
            ephemeral,
        };
        let delivered = state
            .ns
            .client_publish(&self.hub, &state, &ctx, data)
            .map_err(|r| (r.code, r.message))?;
        Ok(json!({ "delivered": delivered }))
    }

    fn presence(&mut self, room: &str) -> Result<Value, OpError> {
        let state = self.entry.rooms().get(room).cloned();
        let Some(state) = state else {
            return Err(match self.hub.namespace_of(room) {
                None => err(ErrorCode::NotFound, format!("no such room: {room}")),
                Some(_) => err(
                    ErrorCode::NotJoined,
                    format!("join {room} to see its presence"),
                ),
            });
        };
        Ok(json!({ "presence": state.snapshot() }))
    }
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

    #[tokio::test(start_paused = true)]
    async fn token_bucket_refills_with_time() {
        let mut b = TokenBucket::new(10.0, 3.0);
        assert!(b.take() && b.take() && b.take());
        assert!(!b.take());
        tokio::time::advance(std::time::Duration::from_millis(100)).await;
        assert!(b.take());
        assert!(!b.take());
        tokio::time::advance(std::time::Duration::from_secs(10)).await;
        // Capped at the burst.
        assert!(b.take() && b.take() && b.take());
        assert!(!b.take());
    }

    #[test]
    fn peek_id_reads_only_the_id() {
        assert_eq!(peek_id(r#"{"op":"publish","id":7,"room":"x"}"#), Some(7));
        assert_eq!(peek_id(r#"{"op":"publish"}"#), None);
        assert_eq!(peek_id("not json"), None);
    }
}
