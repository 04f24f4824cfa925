//! [`Subscription`]: a followed room, as the application holds it.

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Client;
use super::error::ClientError;
use super::event::{Message, Published, RoomEvent};
use super::queue::{Popped, RawEvent, RoomShared};
use super::task::Command;
use crate::protocol::StreamPosition;
use crate::protocol::{Presence, PresenceCount, PresencePage};

/// A room this client follows, from [`Client::join`]: its events as a stream of the
/// room's message type `M`, its presence, its position.
///
/// The client keeps the room joined across reconnects (joining again with `since`, so
/// each stored message arrives once and in order) until [`leave`](Self::leave), until
/// the subscription is dropped (the room is then left on the server), or until the
/// server takes the connection out of the room ([`RoomEvent::Left`]).
///
/// Events wait in a bounded buffer ([`ClientOptions::room_buffer`]): a subscription
/// that is not read loses its oldest events and then gets [`RoomEvent::Lagged`]; it
/// never slows the connection, the other rooms or the replies down.
///
/// [`ClientOptions::room_buffer`]: super::ClientOptions::room_buffer
pub struct Subscription<M> {
    pub(crate) room: String,
    pub(crate) generation: u64,
    pub(crate) shared: Arc<RoomShared>,
    pub(crate) client: Client,
    /// Set once [`leave`](Self::leave) sent its own leave, so `Drop` does not.
    pub(crate) left: bool,
    pub(crate) _type: PhantomData<fn() -> M>,
}

impl<M> fmt::Debug for Subscription<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("room", &self.room)
            .field("position", &self.shared.position())
            .finish_non_exhaustive()
    }
}

impl<M> Subscription<M> {
    /// The room's name.
    pub fn room(&self) -> &str {
        &self.room
    }

    /// Who is in the room: the last join's snapshot with every diff since applied
    /// ([`Presence::apply`]). Empty in a namespace without presence.
    pub fn presence(&self) -> Presence {
        self.shared.presence()
    }

    /// How many users and connections are in the room: exact in a big room (its last
    /// count from the server), counted from [`presence`](Self::presence) in a small
    /// one, which holds everyone.
    pub fn count(&self) -> PresenceCount {
        self.shared.count().unwrap_or_else(|| {
            let presence = self.shared.presence();
            let conns = presence.iter().map(|(_, metas)| metas.len()).sum();
            PresenceCount::new(presence.len(), conns)
        })
    }

    /// Whether the room is big (`PROTOCOL.md` section 6): counts and pages instead of
    /// every join and leave.
    pub fn is_big(&self) -> bool {
        self.shared.count().is_some()
    }

    /// One page of the room's member list: [`Client::presence_page`].
    pub async fn page(
        &self,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<PresencePage, ClientError> {
        self.client.presence_page(&self.room, after, limit).await
    }

    /// The position of the last stored message the client received from the room (or
    /// of the last join, if later): where a re-join continues from. It may be ahead of
    /// what this subscription has read.
    pub fn position(&self) -> Option<StreamPosition> {
        self.shared.position()
    }

    /// The client this subscription belongs to.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Leaves the room (on the server too) and ends the subscription. Waits for the
    /// reply within the request timeout. A connection that ends meanwhile left the
    /// room as well: that is a success.
    pub async fn leave(mut self) -> Result<(), ClientError> {
        self.left = true;
        self.shared.abandon();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let cmd = Command::Leave {
            room: self.room.clone(),
            generation: self.generation,
            reply: Some(tx),
        };
        self.client.round_trip(cmd, rx).await
    }
}

impl<M: DeserializeOwned> Subscription<M> {
    /// The next event; `None` once the subscription has ended (left, refused on a
    /// re-join, or the client closed or gave up) and every event before has been read.
    pub async fn recv(&mut self) -> Option<RoomEvent<M>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next event, as [`recv`](Self::recv).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<RoomEvent<M>>> {
        self.shared.poll_next(cx).map(|popped| popped.map(decode))
    }
}

impl<M: Serialize> Subscription<M> {
    /// Publishes `data` to the room and waits for the reply: [`Client::publish`].
    pub async fn publish(&self, data: &M) -> Result<Published, ClientError> {
        self.client.publish(&self.room, data).await
    }

    /// Publishes `data` as an ephemeral message, fire and forget:
    /// [`Client::publish_ephemeral`].
    pub async fn publish_ephemeral(&self, data: &M) -> Result<(), ClientError> {
        self.client.publish_ephemeral(&self.room, data).await
    }
}

impl<M: DeserializeOwned> futures_core::Stream for Subscription<M> {
    type Item = RoomEvent<M>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

impl<M> Drop for Subscription<M> {
    fn drop(&mut self) {
        if self.left {
            return;
        }
        self.shared.abandon();
        // Best effort: if the command queue is full, the task notices the abandoned
        // subscription on the room's next event and leaves then.
        let _ = self.client.inner.commands.try_send(Command::Leave {
            room: std::mem::take(&mut self.room),
            generation: self.generation,
            reply: None,
        });
    }
}

/// A queued event, its data decoded into `M` in the application's task.
fn decode<M: DeserializeOwned>(popped: Popped) -> RoomEvent<M> {
    let event = match popped {
        Popped::Lagged(missed) => return RoomEvent::Lagged { missed },
        Popped::Event(event) => event,
    };
    match event {
        RawEvent::Message {
            seq,
            epoch,
            from,
            data,
        } => match M::deserialize(&data) {
            Ok(data) => RoomEvent::Message(Message {
                seq,
                epoch,
                from,
                data,
            }),
            Err(e) => RoomEvent::Undecodable {
                message: Message {
                    seq,
                    epoch,
                    from,
                    data,
                },
                error: e.to_string(),
            },
        },
        RawEvent::PresenceDiff(diff) => RoomEvent::PresenceDiff(diff),
        RawEvent::PresenceReset(presence) => RoomEvent::PresenceReset(presence),
        RawEvent::PresenceCount(count) => RoomEvent::PresenceCount(count),
        RawEvent::Recovered { position, replayed } => RoomEvent::Recovered { position, replayed },
        RawEvent::NotRecovered { position, replayed } => {
            RoomEvent::NotRecovered { position, replayed }
        }
        RawEvent::Left { reason } => RoomEvent::Left { reason },
        RawEvent::RejoinFailed(e) => RoomEvent::RejoinFailed(e),
    }
}
