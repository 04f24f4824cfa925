//! What a client tells the application: room events ([`RoomEvent`]), the connection's
//! state ([`ConnectionState`]) and client-wide events ([`ClientEvent`]).

use std::time::Duration;

use serde_json::Value;

use super::error::{Disconnect, ServerError};
use crate::protocol::{Presence, PresenceCount, PresenceDiff, StreamPosition};

/// A message published to a room, its data decoded into the room's type `M`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Message<M> {
    /// Its place in the room's stream; `None` for an ephemeral message, or in a room
    /// (or on a server) without history.
    pub seq: Option<u64>,
    /// The stream's epoch, with `seq`.
    pub epoch: Option<String>,
    /// The publisher's user id, as the server authenticated it; `None` for a message
    /// the application published from the server.
    pub from: Option<String>,
    /// The payload.
    pub data: M,
}

impl<M> Message<M> {
    /// `seq` and `epoch` together, when the message has them.
    pub fn position(&self) -> Option<StreamPosition> {
        Some(StreamPosition::new(self.seq?, self.epoch.clone()?))
    }
}

/// What a room's [`Subscription`](super::Subscription) yields, in the order the
/// server sent it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RoomEvent<M> {
    /// A message. Across reconnects each stored message (one with a `seq`) arrives
    /// once and in order: a re-join asks for what came after the last one received,
    /// and a `seq` at or below it (same epoch) is dropped.
    Message(Message<M>),
    /// A message whose data did not decode into `M` (the room carries another type
    /// than the application expects). It counts as received.
    Undecodable {
        /// The message as it came, data untouched.
        message: Message<Value>,
        /// Why it did not decode.
        error: String,
    },
    /// Users came into or left the room's presence. It is applied to
    /// [`Subscription::presence`](super::Subscription::presence) already.
    PresenceDiff(PresenceDiff),
    /// The room was joined again (after a reconnect), or a big room became small again
    /// (`presence_state`), and its presence view was replaced by the server's
    /// snapshot: anyone may have come or gone meanwhile.
    PresenceReset(Presence),
    /// A big room's exact count (`PROTOCOL.md` section 6), at most once per count
    /// interval while it changes; the first after a small room grew big says it is big
    /// now ([`Subscription::is_big`](super::Subscription::is_big)). In a big room
    /// [`Subscription::presence`](super::Subscription::presence) holds the users shown
    /// (the join's first page, and the users of interest), not everyone.
    PresenceCount(PresenceCount),
    /// After a re-join: nothing was missed. `replayed` stored messages that arrived
    /// while the client was away follow (then live ones).
    Recovered {
        /// The stream position once the replayed messages have arrived.
        position: Option<StreamPosition>,
        /// How many missed messages follow.
        replayed: u64,
    },
    /// After a re-join: messages published while the client was away may be missing
    /// (the server no longer has them, the stream's epoch changed, the server keeps
    /// no history, or no position was known). Treat what you show of the room as
    /// stale. `replayed` messages of the room's recent history follow when the join
    /// asked for `history`. Never a silent gap: every re-join that cannot vouch for
    /// continuity says so with this event.
    NotRecovered {
        /// The stream position the room is at now, when the server keeps one.
        position: Option<StreamPosition>,
        /// How many messages of recent history follow.
        replayed: u64,
    },
    /// The application did not read fast enough: this many older events were dropped
    /// to make room ([`ClientOptions::room_buffer`](super::ClientOptions::room_buffer)).
    /// The next message's `seq` shows where the stream resumes.
    Lagged {
        /// Events dropped.
        missed: u64,
    },
    /// The application took this connection out of the room from the server (a ban,
    /// say). The subscription ends; the room is not joined again.
    Left {
        /// The application's reason (`"server"` unless it gave one).
        reason: String,
    },
    /// Joining the room again after a reconnect was refused (now `forbidden`,
    /// `room_full`, ...). The subscription ends.
    RejoinFailed(ServerError),
}

/// The answer to a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Published {
    /// How many connections the message was queued for (the publisher included).
    pub delivered: u64,
    /// Where the message was stored, in a room that keeps history.
    pub position: Option<StreamPosition>,
}

/// The state of a client's connection. Read the current one with
/// [`Client::state`](super::Client::state); every change is also a
/// [`ClientEvent::State`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Connecting: attempt `attempt` (1 for the first since the last connection that
    /// was established).
    Connecting {
        /// The attempt, from 1.
        attempt: u32,
    },
    /// Connected: the server's `welcome` arrived.
    Connected {
        /// This connection's id, as in its presence metas.
        conn_id: String,
        /// The user id the server authenticated.
        user: String,
    },
    /// The connection ended (or an attempt failed); the next attempt starts after
    /// `retry_in` (zero after a token refresh).
    Disconnected {
        /// Why.
        reason: Disconnect,
        /// The wait before the next attempt, drawn from
        /// [`Backoff`](super::Backoff).
        retry_in: Duration,
    },
    /// Terminal: the client stopped reconnecting, by policy (close 1000 or 4000-4999,
    /// HTTP 401/403, a token the provider could not renew) or after
    /// [`Backoff::max_attempts`](super::Backoff::max_attempts) failures.
    GaveUp {
        /// The last disconnect.
        reason: Disconnect,
        /// Failed attempts in a row when it gave up (0 when it gave up on a close).
        attempts: u32,
    },
    /// Terminal: the application closed the client.
    Closed,
}

impl ConnectionState {
    /// Whether the client is connected (the `welcome` arrived).
    pub fn is_connected(&self) -> bool {
        matches!(self, ConnectionState::Connected { .. })
    }

    /// Whether the client has stopped for good (gave up or closed).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            ConnectionState::GaveUp { .. } | ConnectionState::Closed
        )
    }
}

/// Client-wide events, from [`Client::events`](super::Client::events).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The connection's state changed.
    State(ConnectionState),
    /// The application sent this connection a message outside any room (`direct`).
    Direct {
        /// `None`: the server.
        from: Option<String>,
        /// The payload, in the application's shape.
        data: Value,
    },
    /// An error that answers no request (a failed ephemeral publish).
    Error(ServerError),
    /// The application joined this connection to a room from the server. The client
    /// does not follow it: [`Client::join`](super::Client::join) it to get its events
    /// (a join of a room the connection is in already replies with its snapshot).
    Joined {
        /// The room.
        room: String,
    },
    /// This receiver did not keep up: this many older events were dropped
    /// ([`ClientOptions::event_buffer`](super::ClientOptions::event_buffer)).
    Lagged {
        /// Events dropped.
        missed: u64,
    },
}
