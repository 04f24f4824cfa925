//! The presence wire shapes: a room's presence set ([`Presence`]), one connection's
//! entry ([`PresenceMeta`]) and a diff ([`PresenceDiff`]), with the rule a client
//! applies diffs by ([`Presence::apply`]).
//!
//! On the wire a presence set is `{USER: {"metas": [META, ..]}}` and a meta is
//! `{"conn_id": "17", "name": "Ann", "meta": {..client meta..}}`. The client's meta is
//! nested rather than flattened into the entry so that a client can never overwrite a
//! field the server sets.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::empty_object;

/// One connection's entry in a room's presence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PresenceMeta {
    /// The connection's id (the one in its `welcome`), unique on this hub: it tells a
    /// user's tabs apart. A decimal string on the wire.
    #[serde(with = "super::conn_id_string")]
    pub conn_id: u64,
    /// The user's display name, stamped by the server from the connection's
    /// [`Identity`](crate::Identity): pages can show it without checking that a client
    /// did not claim someone else's name. Absent on the wire when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// What the application adds to every entry of this connection
    /// ([`HubBuilder::presence_info`](crate::HubBuilder::presence_info)): a role, an
    /// avatar URL. Absent when the application adds nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<Value>,
    /// The meta object the client sent with its join (`{}` if none), size-bounded by
    /// the hub. Nested, so a client can never overwrite a field the server sets.
    pub meta: Value,
}

impl PresenceMeta {
    /// The entry of connection `conn_id` with the client's `meta` (`{}` on the wire for
    /// [`Value::Null`], as the hub stores a join without meta). For tests and for
    /// clients written in Rust that keep their own view of a room: the struct is
    /// `#[non_exhaustive]`, so it cannot be built with a literal outside this crate.
    pub fn new(conn_id: u64, meta: Value) -> Self {
        let meta = if meta.is_null() { empty_object() } else { meta };
        PresenceMeta {
            conn_id,
            name: String::new(),
            info: None,
            meta,
        }
    }

    /// The same entry with the server-stamped display `name`.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The same entry with the application's `info`.
    pub fn with_info(mut self, info: Value) -> Self {
        self.info = Some(info);
        self
    }
}

/// The metas of one user, in the wire shape `{"metas": [..]}`. Private so the public
/// API can hand out plain slices and grow without breaking.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct UserMetas {
    pub(crate) metas: Vec<PresenceMeta>,
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
    pub(crate) users: BTreeMap<String, UserMetas>,
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

    /// Adds one connection's `meta` to `user` (adding the user if absent), after the
    /// metas already there; a meta with the `conn_id` of one the user already has
    /// replaces it. This builds a set the way the hub does, for tests and for comparing
    /// with what a room reports.
    pub fn insert(&mut self, user: impl Into<String>, meta: PresenceMeta) {
        let metas = &mut self.users.entry(user.into()).or_default().metas;
        match metas.iter_mut().find(|m| m.conn_id == meta.conn_id) {
            Some(known) => *known = meta,
            None => metas.push(meta),
        }
    }

    /// [`insert`](Self::insert), by value, for building a set in one expression:
    ///
    /// ```
    /// use serde_json::json;
    /// use wshub::{Presence, PresenceDiff, PresenceMeta};
    ///
    /// let joins = Presence::new().with("ann", PresenceMeta::new(1, json!({"status": "away"})));
    /// let diff = PresenceDiff::new(joins, Presence::new());
    /// let mut view = Presence::new();
    /// view.apply(&diff);
    /// assert_eq!(view.get("ann").unwrap()[0].conn_id, 1);
    /// ```
    pub fn with(mut self, user: impl Into<String>, meta: PresenceMeta) -> Self {
        self.insert(user, meta);
        self
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
}

/// How many users and connections are in a room's presence: what a member of a big room
/// is sent (`presence_count`) instead of every join and leave, and what join replies
/// and pages of a big room carry as `count`. On the wire `{"users": N, "conns": M}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PresenceCount {
    /// Users present (a user with several connections counts once).
    pub users: usize,
    /// Connections present, across all users.
    pub conns: usize,
}

impl PresenceCount {
    /// `users` users with `conns` connections between them.
    pub fn new(users: usize, conns: usize) -> Self {
        PresenceCount { users, conns }
    }
}

/// One page of a room's member list, in user id order: a big room's join reply and
/// `presence` reply carry the first, `presence_page` answers any.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PresencePage {
    /// The users of the page, with the metas of their connections.
    pub presence: Presence,
    /// The room's count when the page was taken.
    pub count: PresenceCount,
    /// The cursor of the next page (pass it as `after`); `None` after the last page.
    /// Opaque: a client passes it back unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A change to a room's presence, sent to its members as a `presence_diff`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PresenceDiff {
    /// Users whose first connection joined, with the metas of their connections.
    pub joins: Presence,
    /// Users whose last connection left, with that connection's meta.
    pub leaves: Presence,
}

impl PresenceDiff {
    /// A diff announcing `joins` and `leaves`. The struct is `#[non_exhaustive]` (it
    /// may grow), so outside this crate it is built with this, not a literal; for
    /// tests of code that consumes diffs, and for Rust clients.
    pub fn new(joins: Presence, leaves: Presence) -> Self {
        PresenceDiff { joins, leaves }
    }

    /// Whether the diff announces nothing.
    pub fn is_empty(&self) -> bool {
        self.joins.is_empty() && self.leaves.is_empty()
    }
}
