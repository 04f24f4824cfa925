//! Presence: who is in a room, as user id -> one meta per connection.
//!
//! A user with several tabs or devices in a room has several metas but is announced
//! once: the first connection to join produces a `joins` diff, the last one to leave a
//! `leaves` diff, and the connections in between change the room's state silently (a
//! `presence` request or a join reply shows them). Other members therefore see users
//! come and go, not tabs open and close.
//!
//! [`RoomPresence`] is plain data, not thread-safe on its own: the hub keeps one per
//! room behind a lock held for one `join` or `leave` call and the broadcast of the diff
//! it returns (so every member sees a room's diffs in the order they happened). Each
//! call is a few map operations: no I/O, no `.await`.
//!
//! On the wire a presence set is `{USER: {"metas": [META, ..]}}` and a meta is
//! `{"conn_id": "17", "meta": {..client meta..}}`. The client's meta is nested rather
//! than flattened into the entry so that a client can never overwrite a field the server
//! sets (`conn_id` today, more later).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::protocol::empty_object;

/// One connection's entry in a room's presence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PresenceMeta {
    /// The connection's id (the one in its `welcome`), unique on this hub: it tells a
    /// user's tabs apart. A decimal string on the wire.
    #[serde(with = "crate::protocol::conn_id_string")]
    pub conn_id: u64,
    /// The meta object the client sent with its join (`{}` if none), size-bounded by
    /// the hub.
    pub meta: Value,
}

/// The metas of one user, in the wire shape `{"metas": [..]}`. Private so the public
/// API can hand out plain slices and grow without breaking.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct UserMetas {
    metas: Vec<PresenceMeta>,
}

/// A set of users present in a room, each with the metas of their connections: a
/// room's snapshot, or one side of a [`PresenceDiff`].
///
/// Serializes as `{USER: {"metas": [..]}}`. Users are ordered by id and each user's
/// metas in the order their connections joined, so the same state always encodes to
/// the same bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Presence {
    /// A `BTreeMap` rather than a hash map: deterministic output, and rooms are small
    /// enough that `O(log n)` lookups cost nothing next to the network.
    users: BTreeMap<String, UserMetas>,
}

impl Presence {
    /// An empty set.
    pub fn new() -> Self {
        Presence::default()
    }

    /// The number of users (not connections).
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether no user is present.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `user` is present.
    pub fn contains(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// The metas of `user`'s connections, oldest first.
    pub fn get(&self, user: &str) -> Option<&[PresenceMeta]> {
        self.users.get(user).map(|u| u.metas.as_slice())
    }

    /// Every user with their metas, ordered by user id.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[PresenceMeta])> + '_ {
        self.users
            .iter()
            .map(|(user, u)| (user.as_str(), u.metas.as_slice()))
    }

    /// Applies a diff received from the hub to a snapshot, the way a client keeps its
    /// view of a room current.
    ///
    /// Leaves are applied first and remove the user entirely: a leave means the user's
    /// last connection is gone, including connections whose joins were never announced.
    /// Joins then add the user (or, if already present, the metas not yet known).
    pub fn apply(&mut self, diff: &PresenceDiff) {
        for user in diff.leaves.users.keys() {
            self.users.remove(user);
        }
        for (user, joined) in &diff.joins.users {
            let known = self.users.entry(user.clone()).or_default();
            for meta in &joined.metas {
                if !known.metas.iter().any(|m| m.conn_id == meta.conn_id) {
                    known.metas.push(meta.clone());
                }
            }
        }
    }

    /// A set holding one user with one meta: each side of a diff.
    fn single(user: &str, meta: PresenceMeta) -> Self {
        let mut users = BTreeMap::new();
        users.insert(user.to_owned(), UserMetas { metas: vec![meta] });
        Presence { users }
    }
}

/// A change to a room's presence, sent to its members as a `presence_diff`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PresenceDiff {
    /// Users whose first connection joined, with that connection's meta.
    pub joins: Presence,
    /// Users whose last connection left, with that connection's meta.
    pub leaves: Presence,
}

impl PresenceDiff {
    /// Whether the diff announces nothing.
    pub fn is_empty(&self) -> bool {
        self.joins.is_empty() && self.leaves.is_empty()
    }
}

/// The presence state of one room on this hub.
///
/// Not thread-safe by design: the hub serializes access with its own short-held lock
/// (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct RoomPresence {
    presence: Presence,
    /// Total metas across users, kept so `len_conns` is O(1) for limits and metrics.
    conns: usize,
}

impl RoomPresence {
    /// Adds connection `conn_id` of `user` with `meta` (`null` is stored as `{}`).
    ///
    /// Returns a diff only if this is the user's first connection in the room. A
    /// connection that is already present has its meta replaced in place (keeping its
    /// position) and announces nothing.
    pub(crate) fn join(&mut self, user: &str, conn_id: u64, meta: Value) -> Option<PresenceDiff> {
        let meta = PresenceMeta {
            conn_id,
            meta: if meta.is_null() { empty_object() } else { meta },
        };
        // Look up by `&str` first so the common case (a known user) allocates nothing.
        if let Some(known) = self.presence.users.get_mut(user) {
            match known.metas.iter_mut().find(|m| m.conn_id == conn_id) {
                Some(existing) => *existing = meta,
                None => {
                    known.metas.push(meta);
                    self.conns += 1;
                }
            }
            return None;
        }
        self.presence.users.insert(
            user.to_owned(),
            UserMetas {
                metas: vec![meta.clone()],
            },
        );
        self.conns += 1;
        Some(PresenceDiff {
            joins: Presence::single(user, meta),
            leaves: Presence::new(),
        })
    }

    /// Removes connection `conn_id` of `user`.
    ///
    /// Returns a diff only if it was the user's last connection in the room. Removing a
    /// connection that is not present is a no-op (the hub may call this for every room a
    /// closing connection might have joined).
    pub(crate) fn leave(&mut self, user: &str, conn_id: u64) -> Option<PresenceDiff> {
        let metas = &mut self.presence.users.get_mut(user)?.metas;
        let pos = metas.iter().position(|m| m.conn_id == conn_id)?;
        // `remove`, not `swap_remove`: the remaining metas keep their join order.
        let meta = metas.remove(pos);
        self.conns -= 1;
        if !metas.is_empty() {
            return None;
        }
        self.presence.users.remove(user);
        Some(PresenceDiff {
            joins: Presence::new(),
            leaves: Presence::single(user, meta),
        })
    }

    /// A copy of the room's presence, for a join reply or a `presence` request. The hub
    /// clones under its lock and encodes after releasing it.
    pub(crate) fn snapshot(&self) -> Presence {
        self.presence.clone()
    }

    /// The number of users present.
    #[allow(
        dead_code,
        reason = "for limits and metrics, not wired into the hub yet"
    )]
    pub(crate) fn len_users(&self) -> usize {
        self.presence.len()
    }

    /// The number of connections present, across all users.
    #[allow(
        dead_code,
        reason = "for limits and metrics, not wired into the hub yet"
    )]
    pub(crate) fn len_conns(&self) -> usize {
        self.conns
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn conn_ids(p: &Presence, user: &str) -> Vec<u64> {
        p.get(user)
            .unwrap_or_default()
            .iter()
            .map(|m| m.conn_id)
            .collect()
    }

    #[test]
    fn first_tab_joins_and_last_tab_leaves() {
        let mut room = RoomPresence::default();

        let diff = room.join("ann", 1, json!({"device": "laptop"})).unwrap();
        assert_eq!(conn_ids(&diff.joins, "ann"), [1]);
        assert_eq!(
            diff.joins.get("ann").unwrap()[0].meta,
            json!({"device": "laptop"})
        );
        assert!(diff.leaves.is_empty());

        // Second tab: present in the room, but not announced.
        assert_eq!(room.join("ann", 2, json!({"device": "phone"})), None);
        assert_eq!((room.len_users(), room.len_conns()), (1, 2));
        assert_eq!(conn_ids(&room.snapshot(), "ann"), [1, 2]);

        // Closing one of two tabs is not announced either.
        assert_eq!(room.leave("ann", 1), None);
        assert_eq!((room.len_users(), room.len_conns()), (1, 1));

        // The last tab is, carrying its own meta.
        let diff = room.leave("ann", 2).unwrap();
        assert!(diff.joins.is_empty());
        let left = diff.leaves.get("ann").unwrap();
        assert_eq!(
            (left[0].conn_id, &left[0].meta),
            (2, &json!({"device": "phone"}))
        );
        assert!(room.len_conns() == 0);
        assert_eq!((room.len_users(), room.len_conns()), (0, 0));

        // And the user can come back with a fresh join.
        assert!(room.join("ann", 3, Value::Null).is_some());
    }

    #[test]
    fn users_are_independent() {
        let mut room = RoomPresence::default();
        assert!(room.join("ann", 1, json!({})).is_some());
        assert!(room.join("bob", 2, json!({})).is_some());
        assert!(room.join("bob", 3, json!({})).is_none());
        assert_eq!((room.len_users(), room.len_conns()), (2, 3));
        assert!(room.leave("ann", 1).is_some());
        assert_eq!(room.leave("bob", 2), None);
        assert_eq!(
            room.snapshot().iter().map(|(u, _)| u).collect::<Vec<_>>(),
            ["bob"]
        );
    }

    #[test]
    fn leaving_an_unknown_connection_is_a_no_op() {
        let mut room = RoomPresence::default();
        assert_eq!(room.leave("ghost", 1), None);
        room.join("ann", 1, json!({}));
        // Unknown conn of a known user, and a known conn under the wrong user.
        assert_eq!(room.leave("ann", 99), None);
        room.join("bob", 2, json!({}));
        assert_eq!(room.leave("ann", 2), None);
        assert_eq!((room.len_users(), room.len_conns()), (2, 2));
        // Leaving twice announces once.
        assert!(room.leave("ann", 1).is_some());
        assert_eq!(room.leave("ann", 1), None);
        assert_eq!((room.len_users(), room.len_conns()), (1, 1));
    }

    #[test]
    fn metas_keep_join_order() {
        let mut room = RoomPresence::default();
        for conn in [5, 3, 9, 1, 7] {
            room.join("ann", conn, json!({ "n": conn }));
        }
        assert_eq!(conn_ids(&room.snapshot(), "ann"), [5, 3, 9, 1, 7]);
        room.leave("ann", 9);
        room.leave("ann", 5);
        assert_eq!(conn_ids(&room.snapshot(), "ann"), [3, 1, 7]);
        room.join("ann", 4, json!({}));
        assert_eq!(conn_ids(&room.snapshot(), "ann"), [3, 1, 7, 4]);
    }

    #[test]
    fn rejoining_a_connection_replaces_its_meta_in_place() {
        let mut room = RoomPresence::default();
        room.join("ann", 1, json!({"status": "online"}));
        room.join("ann", 2, json!({}));
        assert_eq!(room.join("ann", 1, json!({"status": "away"})), None);
        assert_eq!(room.len_conns(), 2);
        let metas = room.snapshot().get("ann").unwrap().to_vec();
        assert_eq!(metas[0].conn_id, 1);
        assert_eq!(metas[0].meta, json!({"status": "away"}));
        // The count stayed right: two leaves empty the room.
        room.leave("ann", 1);
        assert!(room.leave("ann", 2).is_some());
        assert!(room.len_conns() == 0);
    }

    #[test]
    fn serializes_in_the_wire_shape() {
        let mut room = RoomPresence::default();
        room.join("bob", 2, json!({"status": "away"}));
        room.join("ann", 1, Value::Null);
        room.join("ann", 3, json!({"status": "online"}));
        let text = serde_json::to_string(&room.snapshot()).unwrap();
        assert_eq!(
            text,
            r#"{"ann":{"metas":[{"conn_id":"1","meta":{}},{"conn_id":"3","meta":{"status":"online"}}]},"bob":{"metas":[{"conn_id":"2","meta":{"status":"away"}}]}}"#
        );
        let back: Presence = serde_json::from_str(&text).unwrap();
        assert_eq!(back, room.snapshot());
        assert_eq!(serde_json::to_string(&Presence::new()).unwrap(), "{}");
        let diff = room.leave("bob", 2).unwrap();
        assert_eq!(
            serde_json::to_value(&diff).unwrap(),
            json!({"joins": {}, "leaves": {"bob": {"metas": [{"conn_id": "2", "meta": {"status": "away"}}]}}})
        );
    }

    #[test]
    fn a_snapshot_plus_diffs_tracks_who_is_present() {
        // A client that took a snapshot and applies every later diff must agree with
        // the room about which users are present, even though tabs come and go silently.
        let mut room = RoomPresence::default();
        room.join("ann", 1, json!({}));
        room.join("ann", 2, json!({}));
        let mut client = room.snapshot();

        let steps: [(&str, u64, bool); 8] = [
            ("bob", 3, true),
            ("ann", 1, false),
            ("bob", 4, true),
            ("ann", 2, false), // ann's last tab: leave announced
            ("bob", 3, false),
            ("ann", 5, true),  // ann back
            ("bob", 4, false), // bob's last tab
            ("cyd", 6, true),
        ];
        for (user, conn, join) in steps {
            let diff = if join {
                room.join(user, conn, json!({}))
            } else {
                room.leave(user, conn)
            };
            if let Some(diff) = diff {
                assert!(!diff.is_empty());
                client.apply(&diff);
            }
            let want: Vec<_> = room.snapshot().iter().map(|(u, _)| u.to_owned()).collect();
            let have: Vec<_> = client.iter().map(|(u, _)| u.to_owned()).collect();
            assert_eq!(have, want, "after {user} {conn} {join}");
        }
        assert_eq!(conn_ids(&client, "ann"), [5]);
        assert!(!client.contains("bob"));
    }

    #[test]
    fn apply_does_not_duplicate_known_metas() {
        let mut room = RoomPresence::default();
        let diff = room.join("ann", 1, json!({})).unwrap();
        let mut client = room.snapshot();
        client.apply(&diff);
        assert_eq!(conn_ids(&client, "ann"), [1]);
        assert_eq!(client.len(), 1);
    }
}
