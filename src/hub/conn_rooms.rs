//! [`ConnRooms`]: the rooms one connection is in.

use std::sync::Arc;

use crate::room::RoomState;

/// The rooms one connection joined, by name: a small vector searched from the front,
/// not a hash map.
///
/// Why: every open connection keeps one, and most are in one room or a few. A
/// `HashMap` with one entry costs 48 bytes inline and a 128-byte table on the heap;
/// this costs 24 bytes inline and exactly one 24-byte slot per room (grown one at a
/// time, shrunk when emptied). A look-up compares names one by one, which for the at
/// most `max_rooms_per_connection` rooms (100 by default) of a join or a publish
/// check is cheaper than it sounds: the names differ in their first bytes, and
/// there is no hashing.
#[derive(Default)]
pub(crate) struct ConnRooms(Vec<(Arc<str>, Arc<RoomState>)>);

impl ConnRooms {
    /// How many rooms.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the connection is in `room`.
    pub(crate) fn contains_key(&self, room: &str) -> bool {
        self.get(room).is_some()
    }

    /// `room`'s state, if the connection is in it.
    pub(crate) fn get(&self, room: &str) -> Option<&Arc<RoomState>> {
        self.0.iter().find(|(n, _)| **n == *room).map(|(_, s)| s)
    }

    /// Adds `room` (or replaces its state).
    pub(crate) fn insert(&mut self, name: Arc<str>, state: Arc<RoomState>) {
        if let Some(slot) = self.0.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = state;
            return;
        }
        // Exactly one more slot: a `Vec` would otherwise start at four.
        self.0.reserve_exact(1);
        self.0.push((name, state));
    }

    /// Takes `room` out, returning its state.
    pub(crate) fn remove(&mut self, room: &str) -> Option<Arc<RoomState>> {
        let i = self.0.iter().position(|(n, _)| **n == *room)?;
        let (_, state) = self.0.swap_remove(i);
        if self.0.is_empty() {
            self.0 = Vec::new();
        }
        Some(state)
    }

    /// The rooms' names, in no particular order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &Arc<str>> {
        self.0.iter().map(|(n, _)| n)
    }

    /// Takes every room out.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (Arc<str>, Arc<RoomState>)> {
        std::mem::take(&mut self.0).into_iter()
    }
}
