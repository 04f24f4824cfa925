//! The typed [`Room`] handle: what the application holds to publish to a room and look
//! at it from Rust.

use std::collections::BTreeSet;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Deserialize;

use super::rooms::Published;
use super::{ConnectionInfo, Hub, RoomInfo};
use crate::history::{HistoryQuery, StoredMessage};
use crate::protocol::{Presence, StreamPosition};
use crate::room::{Publication, RoomMessage, RoomState, RoomSubscription};

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
    /// server-side subscriber. In a namespace with history it is stored first and
    /// gets the room's next `seq`; [`Published`] says how many connections it was
    /// queued for and where it was stored. The namespace's publish hook does not run
    /// for server publishes.
    ///
    /// Publishes to one room are delivered one after the other, in the order they
    /// reach the room's turn; the call waits only for the store (no wait with the
    /// default in-memory history), never for a subscriber.
    /// [`Error::Unavailable`](crate::Error::Unavailable) if the history store failed:
    /// nothing was published.
    pub async fn publish(&self, msg: M) -> crate::Result<Published> {
        self.publish_from(None, msg, false).await
    }

    /// Publishes `msg` in the name of user `from`.
    pub async fn publish_as(&self, from: &str, msg: M) -> crate::Result<Published> {
        self.publish_from(Some(from), msg, false).await
    }

    /// Publishes `msg` from the server without storing it: it gets no `seq` and is
    /// never replayed (typing indicators, cursors, a value the next one replaces).
    pub async fn publish_ephemeral(&self, msg: M) -> crate::Result<Published> {
        self.publish_from(None, msg, true).await
    }

    async fn publish_from(
        &self,
        from: Option<&str>,
        msg: M,
        ephemeral: bool,
    ) -> crate::Result<Published> {
        let publication =
            Publication::encode(&self.state, from, msg, ephemeral).map_err(crate::Error::Encode)?;
        self.hub
            .publish(&self.state, publication)
            .await
            .map_err(|e| crate::Error::Unavailable(e.to_string()))
    }

    /// The room's stream position: its last stored message's `seq` (0 if none yet)
    /// and epoch. `None` if the namespace keeps no history.
    pub async fn position(&self) -> crate::Result<Option<StreamPosition>> {
        let Some(limits) = self.state.ns.options().history else {
            return Ok(None);
        };
        let read = self
            .hub
            .0
            .history
            .read(&self.state.name, HistoryQuery::Position, limits)
            .await
            .map_err(|e| crate::Error::Unavailable(e.to_string()))?;
        Ok(Some(read.position))
    }

    /// The room's last `n` stored messages, oldest first (fewer if fewer are kept;
    /// none if the namespace keeps no history).
    pub async fn history(&self, n: usize) -> crate::Result<Vec<HistoryEntry<M>>> {
        Ok(self
            .read_history(HistoryQuery::Last(n))
            .await?
            .map(|(entries, _)| entries)
            .unwrap_or_default())
    }

    /// Every stored message after `since`, oldest first, if the room still has all of
    /// them (the same epoch, none aged out or evicted, at most
    /// [`HubConfig::max_recovery`](crate::HubConfig::max_recovery)); `None` if not,
    /// as a client's recovering join would get `recovered: false`.
    pub async fn history_since(
        &self,
        since: &StreamPosition,
    ) -> crate::Result<Option<Vec<HistoryEntry<M>>>> {
        let query = HistoryQuery::After {
            since: since.clone(),
            max: self.hub.config().max_recovery,
        };
        Ok(self
            .read_history(query)
            .await?
            .and_then(|(entries, complete)| complete.then_some(entries)))
    }

    async fn read_history(
        &self,
        query: HistoryQuery,
    ) -> crate::Result<Option<(Vec<HistoryEntry<M>>, bool)>> {
        let Some(limits) = self.state.ns.options().history else {
            return Ok(None);
        };
        let read = self
            .hub
            .0
            .history
            .read(&self.state.name, query, limits)
            .await
            .map_err(|e| crate::Error::Unavailable(e.to_string()))?;
        let entries = read
            .messages
            .iter()
            .map(HistoryEntry::decode)
            .collect::<Result<Vec<_>, _>>()
            .map_err(crate::Error::Encode)?;
        Ok(Some((entries, read.complete)))
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
        self.state.subscribe()
    }
}

/// One stored message of a room, as [`Room::history`] reads it back.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HistoryEntry<M> {
    /// Its position in the room's stream.
    pub position: StreamPosition,
    /// The publishing user, `None` for a server publish.
    pub from: Option<String>,
    /// The message.
    pub data: M,
}

impl<M: RoomMessage> HistoryEntry<M> {
    /// Decodes a stored frame (the `message` as subscribers got it).
    fn decode(stored: &StoredMessage) -> serde_json::Result<Self> {
        #[derive(Deserialize)]
        struct Frame<M> {
            from: Option<String>,
            data: M,
        }
        let frame: Frame<M> = serde_json::from_slice(stored.frame.payload())?;
        Ok(HistoryEntry {
            position: StreamPosition::new(stored.seq, stored.epoch.clone()),
            from: frame.from,
            data: frame.data,
        })
    }
}
