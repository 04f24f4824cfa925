//! The server in control of users: join, leave, remove, disconnect and send to every
//! connection of one user (all their tabs and devices), through the per-user index the
//! hub keeps (see [`Hub::user_connections`]).
//!
//! Revoking a user's rights takes two steps, because the authenticator only decides
//! what comes next: make `Authenticator::authorize` refuse the user's future joins (or
//! `authenticate` refuse their future connections), then remove what they hold now with
//! [`Hub::remove_user_from_rooms`] (their current memberships) or
//! [`Hub::disconnect_user`] (their connections). Both take effect before they return.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use super::rooms::{JoinAck, Joined, MembershipError, Replay};
use super::{ConnEntry, Hub};
use crate::protocol;
use crate::ws::{CloseCode, SendError};

impl Hub {
    /// The open connections of `user`, oldest first (copied out of the index, so no
    /// lock of the index is held while they are used).
    pub(super) fn user_entries(&self, user: &str) -> Vec<Arc<ConnEntry>> {
        let Some(ids) = self
            .0
            .user_conns
            .get(user)
            .map(|ids| ids.iter().copied().collect::<BTreeSet<u64>>())
        else {
            return Vec::new();
        };
        ids.into_iter()
            .filter_map(|id| self.0.conns.get(&id).map(|e| e.value().clone()))
            .collect()
    }

    /// Joins every open connection of `user` to `room` from the server, each exactly as
    /// [`Connection::join`](crate::Connection::join) does (a `joined` message to each
    /// tab; the room's members see the user's presence join once, on the next tick).
    /// Returns how many connections joined now (those already in are not counted).
    ///
    /// If some connection cannot join (the room is full, it is in too many rooms) the
    /// others still do, and the first such error is returned. Connections that close
    /// meanwhile are skipped.
    pub async fn join_user(&self, user: &str, room: &str) -> Result<usize, MembershipError> {
        if self.namespace_of(room).is_none() {
            return Err(MembershipError::NotFound(room.to_owned()));
        }
        let mut joined = 0;
        let mut first_err = None;
        for entry in self.user_entries(user) {
            match self
                .join_conn(&entry, room, json!({}), JoinAck::Joined, Replay::default())
                .await
            {
                Ok(Joined::New) => joined += 1,
                Ok(Joined::Already) | Err(MembershipError::Closed) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(joined),
        }
    }

    /// Takes every connection of `user` out of `room` from the server, as
    /// [`Connection::leave`](crate::Connection::leave) does (each gets a `left` with
    /// reason `"server"`). Returns how many connections left; 0 if none was in it.
    pub fn leave_user(&self, user: &str, room: &str) -> usize {
        self.remove_user_from_rooms(user, |r| r == room, "server")
    }

    /// Takes every connection of `user` out of every room `filter` accepts (given the
    /// room's full name), at once: when this returns, publishes to those rooms no
    /// longer reach the user, the user's own publishes there are refused
    /// (`not_joined`), and [`Room::users`](crate::Room::users) no longer lists them;
    /// their presence leave is announced on the next tick. Each connection gets a
    /// `left` message per room, with `reason`. Returns how many memberships were
    /// removed (a user with two tabs in one room counts two).
    ///
    /// This is how a ban takes effect now rather than at the next join: pair it with
    /// an `Authenticator::authorize` that refuses the user's future joins.
    pub fn remove_user_from_rooms(
        &self,
        user: &str,
        filter: impl Fn(&str) -> bool,
        reason: &str,
    ) -> usize {
        let mut removed = 0;
        for entry in self.user_entries(user) {
            // Names copied out first: leaving takes the connection's room lock again.
            let rooms: Vec<Arc<str>> = entry
                .rooms()
                .keys()
                .filter(|r| filter(r))
                .cloned()
                .collect();
            for room in rooms {
                if self.leave_conn(&entry, &room, Some(reason)).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }

    /// Closes every open connection of `user` (all tabs and devices) with `code` and
    /// `reason`, as [`Connection::close`](crate::Connection::close) does: each leaves
    /// its rooms before this returns (presence leaves on the next tick), then gets
    /// what was already queued for it and the close frame. Returns how many
    /// connections were closed.
    ///
    /// The user may connect again unless the authenticator now refuses them.
    pub fn disconnect_user(&self, user: &str, code: impl Into<CloseCode>, reason: &str) -> usize {
        let code: CloseCode = code.into();
        let entries = self.user_entries(user);
        for entry in &entries {
            super::Connection::new(self.clone(), entry.clone()).close(code, reason);
        }
        entries.len()
    }

    /// Sends `msg` to every open connection of `user` (all tabs and devices) as a
    /// `direct` message (`{"op":"direct","from":null,"data":...}`), encoded once for
    /// all of them. Each copy goes through that connection's bounded queue: one whose
    /// queue is full is closed with 1013 (slow consumer) and the others still get it.
    /// Returns how many connections it was queued for (0 if the user has none open).
    /// [`Error::Encode`](crate::Error::Encode) if `msg` does not serialize.
    ///
    /// No room is involved: the message carries no room or namespace. Tell kinds of
    /// direct messages apart inside `msg` (a tagged serde enum, say).
    pub fn send_to_user<M: Serialize + ?Sized>(&self, user: &str, msg: &M) -> crate::Result<usize> {
        let entries = self.user_entries(user);
        if entries.is_empty() {
            return Ok(0);
        }
        let text = protocol::try_encode_direct(msg).map_err(crate::Error::Encode)?;
        let prepared = self.prepare(text);
        let mut delivered = 0;
        for entry in entries {
            match entry.outbound.try_send(&prepared) {
                Ok(()) => delivered += 1,
                Err(SendError::Full) => {
                    self.drop_slow_consumers(vec![(entry.id, entry.outbound.clone())]);
                }
                Err(SendError::Closed) => {}
            }
        }
        Ok(delivered)
    }
}
