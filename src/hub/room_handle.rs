//! The typed [`Room`] handle: what the application holds to publish to a room and look
//! at it from Rust.

use std::collections::BTreeSet;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use super::{ConnectionInfo, Hub, RoomInfo};
use crate::protocol::Presence;
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
    /// server-side subscriber. Returns the number of connections it was queued for. The
    /// namespace's publish hook does not run for server publishes.
    pub fn publish(&self, msg: M) -> crate::Result<usize> {
        self.publish_from(None, msg)
    }

    /// Publishes `msg` in the name of user `from`.
    pub fn publish_as(&self, from: &str, msg: M) -> crate::Result<usize> {
        self.publish_from(Some(from), msg)
    }

    fn publish_from(&self, from: Option<&str>, msg: M) -> crate::Result<usize> {
        let publication =
            Publication::encode(&self.state, from, msg).map_err(crate::Error::Encode)?;
        Ok(self.hub.publish(&self.state, publication))
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
