//! Introspection: snapshots of the hub's rooms and connections for the application
//! (an admin page, an RPC that lists rooms, a health check).
//!
//! Every call here copies what it reports into plain values and returns them; no lock
//! is held once it returns, and none across anything slow while it runs: each room or
//! connection is locked on its own, for the time it takes to read a few counts or names.
//! A snapshot is therefore consistent per room (its connection and user counts are read
//! together) but not across rooms: connections joining and leaving meanwhile may be
//! seen in one room and not yet in another.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;

use super::{ConnEntry, Hub};
use crate::room::RoomState;

/// One room, as [`Hub::rooms`] and [`Room::info`](crate::Room::info) see it.
///
/// Serializes (serde) as `{"name": "chat:lobby", "namespace": "chat", "connections":
/// 3, "users": 2}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RoomInfo {
    /// The room's full name, `NAMESPACE:room`.
    pub name: String,
    /// The namespace part of the name: which [`Namespace`](crate::Namespace) (and so
    /// which message type) the room belongs to.
    pub namespace: String,
    /// Connections in the room (members): what a publish is queued for. A user with
    /// two tabs in the room counts twice.
    pub connections: usize,
    /// Users in the room's presence (a user with several tabs counts once): the number
    /// of entries clients see in a join reply's `presence`. `None` when the namespace
    /// keeps no presence ([`NamespaceOptions::presence`](crate::NamespaceOptions)
    /// off); [`Room::users`](crate::Room::users) still lists the users there.
    pub users: Option<usize>,
}

/// One connection, as [`Hub::user_connections`] and
/// [`Room::connections`](crate::Room::connections) see it.
///
/// Serializes (serde) with `conn_id` as a decimal string, as in the protocol's
/// `welcome` and presence metas (a JavaScript number cannot hold every `u64`):
/// `{"conn_id": "17", "user_id": "alice", "name": "Alice", "peer": "203.0.113.9:51234",
/// "rooms": ["chat:lobby"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The connection's id, the `conn_id` of its `welcome` and of its presence metas;
    /// unique on this hub.
    #[serde(with = "crate::protocol::conn_id_string")]
    pub conn_id: u64,
    /// The user it is authenticated as ([`Identity::user_id`](crate::Identity)).
    pub user_id: String,
    /// The user's display name ([`Identity::name`](crate::Identity)); not unique, not
    /// trusted for decisions.
    pub name: String,
    /// The client's address as the hub's limits see it: the TCP peer, or the client a
    /// trusted proxy named ([`HubConfig::trusted_proxies`](crate::HubConfig)). `None`
    /// when the hub serves a stream without an address (`Hub::serve_stream`).
    pub peer: Option<SocketAddr>,
    /// The rooms the connection is in now, sorted by name.
    pub rooms: Vec<String>,
}

impl ConnectionInfo {
    pub(super) fn of(entry: &ConnEntry) -> Self {
        // The connection's room map is locked for the copy of a few names (at most
        // `max_rooms_per_connection`), never while a room lock is held: joins and
        // leaves take it and the room locks one after the other, not nested.
        let mut rooms: Vec<String> = entry.rooms().keys().map(|r| r.to_string()).collect();
        rooms.sort_unstable();
        ConnectionInfo {
            conn_id: entry.id,
            user_id: entry.identity.user_id.clone(),
            name: entry.identity.name.clone(),
            peer: entry.peer,
            rooms,
        }
    }
}

impl RoomInfo {
    pub(crate) fn of(room: &RoomState) -> Self {
        let namespace = room
            .name
            .split_once(':')
            .map_or("", |(ns, _)| ns)
            .to_owned();
        // Presence, then members: the order joins and leaves take them in, so both
        // counts come from the same moment and the two locks cannot deadlock.
        let (connections, users) = if room.ns.options().presence {
            let presence = room.presence_lock();
            let connections = room.members().conns.len();
            (connections, Some(presence.len_users()))
        } else {
            (room.members().conns.len(), None)
        };
        RoomInfo {
            name: room.name.to_string(),
            namespace,
            connections,
            users,
        }
    }
}

impl Hub {
    /// Every room that exists now, with its connection and user counts, in no
    /// particular order. A room exists while a connection is in it or a [`Room`]
    /// handle keeps it ([`Hub::room`] creates one), so this lists what
    /// [`HubStats::rooms`](crate::HubStats) counts.
    ///
    /// Cost: O(rooms). One pass over the room table copies out the rooms' handles (no
    /// room is locked during it); then each room's presence and member locks are taken
    /// in turn, for as long as reading two lengths takes. Nothing is held across an
    /// `.await` or I/O, and no connection is looked at.
    ///
    /// [`Room`]: crate::Room
    pub fn rooms(&self) -> Vec<RoomInfo> {
        let rooms: Vec<Arc<RoomState>> = self.0.rooms.iter().map(|r| r.value().clone()).collect();
        let infos: Vec<RoomInfo> = rooms.iter().map(|r| RoomInfo::of(r)).collect();
        // While the handles above were held, a room emptied meanwhile could not be
        // dropped (`prune_room` keeps rooms someone holds). Drop ours and prune those
        // rooms now, so listing rooms never keeps an empty one alive until the sweep.
        drop(rooms);
        for info in infos.iter().filter(|i| i.connections == 0) {
            self.prune_room(&info.name);
        }
        infos
    }

    /// The connections user `user_id` has open now (every tab and device), each with
    /// its address and the rooms it is in, ordered by connection id (oldest first).
    /// Empty if the user has none.
    ///
    /// Cost: O(the user's connections × their rooms), through a per-user index the hub
    /// keeps; the other connections are not looked at.
    pub fn user_connections(&self, user_id: &str) -> Vec<ConnectionInfo> {
        self.user_entries(user_id)
            .iter()
            .map(|entry| ConnectionInfo::of(entry))
            .collect()
    }

    /// The connections with these ids that are still open, in the order given. A
    /// connection that closed since its id was read is skipped.
    pub(crate) fn connection_infos(
        &self,
        ids: impl IntoIterator<Item = u64>,
    ) -> Vec<ConnectionInfo> {
        ids.into_iter()
            .filter_map(|id| self.0.conns.get(&id).map(|e| e.value().clone()))
            .map(|entry| ConnectionInfo::of(&entry))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::auth::Identity;
    use crate::ws::{Role, WebSocket};

    /// The per-user index holds one entry per user with a connection open, and none
    /// once they have all closed: its memory follows the open connections.
    #[tokio::test]
    async fn the_user_index_follows_register_and_disconnect() {
        let hub = Hub::builder().build();
        let register = |user: &str| {
            let (server, _client) = tokio::io::duplex(1024);
            let ws =
                WebSocket::from_parts(server, Role::Server, hub.ws_config(), None, BytesMut::new());
            let peer = "192.0.2.7:4000".parse().ok();
            hub.register(Arc::new(Identity::new(user, user)), ws.outbound(), peer)
                .id
        };
        let a1 = register("ann");
        let a2 = register("ann");
        let b = register("bob");
        assert_eq!(hub.0.user_conns.len(), 2);
        let ann = hub.user_connections("ann");
        assert_eq!(ann.iter().map(|c| c.conn_id).collect::<Vec<_>>(), [a1, a2]);
        assert_eq!(ann[0].peer, "192.0.2.7:4000".parse().ok());
        assert!(ann[0].rooms.is_empty());

        hub.disconnect(a1);
        hub.disconnect(a1); // idempotent, as the hub may call it from several places
        assert_eq!(
            hub.user_connections("ann")
                .iter()
                .map(|c| c.conn_id)
                .collect::<Vec<_>>(),
            [a2]
        );
        hub.disconnect(a2);
        hub.disconnect(b);
        assert!(hub.user_connections("ann").is_empty());
        assert_eq!(hub.0.user_conns.len(), 0);
        assert_eq!(hub.stats().connections, 0);
    }
}
