//! Big rooms: the mode switch with its hysteresis, the count, pages of the member list,
//! and what one presence tick sends ([`Tick`]).
//!
//! A small room sends every member one diff of every change per tick: each change
//! costs the room's size in messages, and each join reply the room's size in entries,
//! so a storm of N joins costs N² entries. A big room sends every member a count at
//! most once per `count_interval` and the changes of the users interesting to it, and
//! answers a join with the count and one page: a join costs a page, a change costs its
//! watchers.
//!
//! The switch: a room turns big as soon as a join takes it over the threshold (so the
//! join replies stay small from then on), and turns small again on a tick once it has
//! at most three quarters of the threshold and has been big for `min_big` (so a room
//! hovering at the threshold does not flap, and the snapshot that a return to small
//! costs each member is paid at most once per `min_big`).

use std::collections::HashMap;
use std::ops::Bound;
use std::time::Duration;

use tokio::time::Instant;

use super::{PresenceSource, RoomPresence};
use crate::protocol::{Presence, PresenceCount, PresenceDiff, PresencePage};

/// A room's mode and what its members were last told.
#[derive(Debug)]
pub(crate) struct Mode {
    /// Big above this many users.
    threshold: usize,
    /// Whether the room is big now.
    big: bool,
    /// The mode changed since members were last told (by a count, or a state).
    announce: bool,
    /// When members were told the room is big, for `min_big`.
    big_since: Option<Instant>,
    /// The count members were last sent, and when.
    count_sent: Option<(PresenceCount, Instant)>,
}

impl Mode {
    /// A small room that turns big above `threshold` users.
    pub(crate) fn new(threshold: usize) -> Self {
        Mode {
            threshold,
            big: false,
            announce: false,
            big_since: None,
            count_sent: None,
        }
    }

    /// Whether the room is big.
    pub(crate) fn is_big(&self) -> bool {
        self.big
    }

    /// Turns the room big if a join took it over the threshold; returns whether it did.
    pub(crate) fn after_join(&mut self, users: usize) -> bool {
        if self.big || users <= self.threshold {
            return false;
        }
        self.big = true;
        self.announce = true;
        true
    }

    /// The size at or below which a big room may turn small again: a quarter below the
    /// threshold.
    fn low_water(&self) -> usize {
        self.threshold - self.threshold / 4
    }
}

/// The limits of one tick.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TickLimits {
    /// Most bytes of entries in one diff per tick it waited (one entry may pass it).
    pub(crate) budget: usize,
    /// The presence tick: a small room's least gap between diffs.
    pub(crate) tick: Duration,
    /// A small room's longest gap between diffs while it keeps changing.
    pub(crate) tick_max: Duration,
    /// Least time between two counts.
    pub(crate) count_interval: Duration,
    /// Least time a room stays big before it may turn small again.
    pub(crate) min_big: Duration,
}

/// What one presence tick sends a room's members. The hub encodes and queues it under
/// the room's presence lock.
#[derive(Debug, Default)]
pub(crate) struct Tick {
    /// The room turned small: its whole presence, to every member (`presence_state`).
    pub(crate) state: Option<Presence>,
    /// A big room's count, to every member (`presence_count`).
    pub(crate) count: Option<PresenceCount>,
    /// The diff every member gets (`presence_diff`): a small room's, or a big room's
    /// featured users' changes.
    pub(crate) diff: Option<PresenceDiff>,
    /// In a big room, the members told more than `diff`, by connection id: `diff`
    /// plus the changes of the users they watch, instead of `diff`.
    pub(crate) personal: HashMap<u64, PresenceDiff>,
    /// Whether the room needs another tick (changes left over, a count held back by
    /// `count_interval`, a return to small waiting for `min_big`).
    pub(crate) more: bool,
}

impl PresenceSource for RoomPresence {
    fn is_big(&self) -> bool {
        self.mode.big
    }

    fn count(&self) -> PresenceCount {
        PresenceCount::new(self.presence.len(), self.conns)
    }

    /// The cursor is the last user id of the previous page, so a user present through
    /// the whole paging is on exactly one page whatever joins and leaves meanwhile.
    /// Like [`snapshot_for_member`](Self::snapshot_for_member) the member now believes
    /// what the page shows of pending users: O(page), not O(room).
    fn page(&mut self, member: &str, after: Option<&str>, limit: usize) -> PresencePage {
        let lower = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        let mut users = self
            .presence
            .users
            .range::<str, _>((lower, Bound::Unbounded));
        let mut page = Presence::default();
        for (user, metas) in users.by_ref().take(limit.max(1)) {
            page.users.insert(user.clone(), metas.clone());
        }
        let next = match users.next() {
            Some(_) => page.users.keys().next_back().cloned(),
            None => None,
        };
        for user in page.users.keys() {
            if user == member {
                continue;
            }
            if let Some(pending) = self.pending.get_mut(user) {
                pending.beliefs |= super::BELIEVED_PRESENT;
            }
        }
        PresencePage {
            presence: page,
            count: self.count(),
            next,
        }
    }

    fn tick(&mut self, now: Instant, limits: TickLimits) -> Tick {
        let mut tick = Tick::default();
        if !self.mode.big {
            self.paced_diff(now, limits, &mut tick);
            return tick;
        }
        let count = self.count();
        if std::mem::take(&mut self.mode.announce) {
            self.mode.big_since = Some(now);
            tick.count = Some(count);
        } else if self.presence.len() <= self.mode.low_water()
            && self
                .mode
                .big_since
                .is_none_or(|since| now.duration_since(since) >= limits.min_big)
        {
            // Small again: every member gets the whole presence, which is the truth,
            // so nothing pending needs announcing.
            self.mode.big = false;
            self.mode.big_since = None;
            self.mode.count_sent = None;
            self.pending.clear();
            tick.state = Some(self.presence.clone());
            return tick;
        } else {
            match self.mode.count_sent {
                Some((sent, _)) if sent == count => {}
                Some((_, at)) if now.duration_since(at) < limits.count_interval => {
                    tick.more = true;
                }
                _ => tick.count = Some(count),
            }
        }
        if tick.count.is_some() {
            self.mode.count_sent = Some((count, now));
        }
        self.route_changes(limits.budget, &mut tick);
        // Waiting to turn small: tick again until `min_big` has passed.
        tick.more |= self.has_pending() || self.presence.len() <= self.mode.low_water();
        tick
    }
}

impl RoomPresence {
    /// Takes the changes of interesting users (at most `budget` bytes of entries) and
    /// routes each to its recipients: featured users to everyone, others to their
    /// watchers. Changes of users nobody watches are dropped: the count covers them.
    fn route_changes(&mut self, budget: usize, tick: &mut Tick) {
        // Split borrows: the index is read while `pending` is drained.
        let index = std::mem::take(&mut self.interest);
        let mut featured = Vec::new();
        let diff = self.take_diff_where(budget, 1, |user, was_featured| {
            if was_featured {
                featured.push(user.to_owned());
            }
            was_featured || !index.watchers(user).is_empty()
        });
        let mut shared = PresenceDiff::default();
        let mut personal: HashMap<u64, PresenceDiff> = HashMap::new();
        let sides = diff
            .iter()
            .flat_map(|d| [(&d.joins, false), (&d.leaves, true)]);
        for (set, leave) in sides {
            for (user, metas) in &set.users {
                let add = |d: &mut PresenceDiff| {
                    let side = if leave { &mut d.leaves } else { &mut d.joins };
                    side.users.insert(user.clone(), metas.clone());
                };
                if featured.contains(user) {
                    add(&mut shared);
                } else {
                    for &conn in index.watchers(user) {
                        add(personal.entry(conn).or_default());
                    }
                }
            }
        }
        self.interest = index;
        if !shared.is_empty() {
            for d in personal.values_mut() {
                merge(d, &shared);
            }
            tick.diff = Some(shared);
        }
        tick.personal = personal;
    }
}

/// Adds `from`'s entries to `into`.
fn merge(into: &mut PresenceDiff, from: &PresenceDiff) {
    for (u, m) in &from.joins.users {
        into.joins.users.insert(u.clone(), m.clone());
    }
    for (u, m) in &from.leaves.users {
        into.leaves.users.insert(u.clone(), m.clone());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::JoinInterest;
    use super::*;
    use crate::protocol::PresenceMeta;

    // No pacing (a gap of zero): these tests tick a room several times at once.
    const LIMITS: TickLimits = TickLimits {
        budget: usize::MAX,
        tick: Duration::ZERO,
        tick_max: Duration::ZERO,
        count_interval: Duration::from_secs(1),
        min_big: Duration::from_secs(10),
    };

    fn names(p: &Presence) -> Vec<&str> {
        p.iter().map(|(u, _)| u).collect()
    }

    #[test]
    fn pages_cover_every_user_once_under_churn() {
        let mut room = RoomPresence::new(usize::MAX);
        for i in 0..10u64 {
            room.join(&format!("u{i}"), i, json!({}));
        }
        let first = room.page("u0", None, 4);
        assert_eq!(names(&first.presence), ["u0", "u1", "u2", "u3"]);
        assert_eq!(first.count, PresenceCount::new(10, 10));
        // Churn between pages: u1 (seen) and u5 (not yet) leave, u10 and u25 join.
        room.leave("u1", 1);
        room.leave("u5", 5);
        room.join("u10", 10, json!({}));
        room.join("u25", 25, json!({}));
        let second = room.page("u0", first.next.as_deref(), 4);
        assert_eq!(names(&second.presence), ["u4", "u6", "u7", "u8"]);
        let third = room.page("u0", second.next.as_deref(), 4);
        assert_eq!(names(&third.presence), ["u9"]);
        assert_eq!(third.next, None);
        assert_eq!(third.count, PresenceCount::new(10, 10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_room_turns_big_above_the_threshold_and_small_a_quarter_below() {
        let mut room = RoomPresence::new(4);
        for i in 0..4u64 {
            room.join(&format!("u{i}"), i, json!({}));
        }
        assert!(!room.is_big());
        room.tick(Instant::now(), LIMITS);
        room.join("u4", 4, json!({}));
        assert!(room.is_big());
        let t = room.tick(Instant::now(), LIMITS);
        assert_eq!(t.count, Some(PresenceCount::new(5, 5)));
        assert!(t.diff.is_none() && t.state.is_none());
        // Back to 3 (three quarters of 4): small only once `min_big` has passed.
        room.leave("u4", 4);
        room.leave("u3", 3);
        let t = room.tick(Instant::now(), LIMITS);
        assert_eq!(t.count, None, "held back by the count interval");
        assert!(t.more);
        tokio::time::advance(Duration::from_secs(1)).await;
        let t = room.tick(Instant::now(), LIMITS);
        assert_eq!(t.count, Some(PresenceCount::new(3, 3)));
        tokio::time::advance(Duration::from_secs(9)).await;
        let t = room.tick(Instant::now(), LIMITS);
        assert_eq!(names(t.state.as_ref().unwrap()), ["u0", "u1", "u2"]);
        assert!(!room.is_big() && !t.more);
    }

    #[tokio::test(start_paused = true)]
    async fn a_big_room_routes_changes_to_watchers_and_featured_to_all() {
        let mut room = RoomPresence::new(0);
        let watch = |users: &[&str]| JoinInterest {
            watches: users.iter().map(|u| (*u).to_owned()).collect(),
            featured: false,
        };
        room.join_entry("fan", PresenceMeta::new(1, json!({})), watch(&["star"]));
        room.tick(Instant::now(), LIMITS);
        room.join("nobody", 2, json!({}));
        room.join_entry("star", PresenceMeta::new(3, json!({})), watch(&[]));
        room.join_entry(
            "host",
            PresenceMeta::new(4, json!({})),
            JoinInterest {
                watches: Vec::new(),
                featured: true,
            },
        );
        let t = room.tick(Instant::now(), LIMITS);
        assert_eq!(names(&t.diff.as_ref().unwrap().joins), ["host"]);
        assert_eq!(t.personal.len(), 1);
        assert_eq!(names(&t.personal[&1].joins), ["host", "star"]);
        room.leave("host", 4);
        room.leave("star", 3);
        let t = room.tick(Instant::now(), LIMITS);
        assert_eq!(names(&t.diff.as_ref().unwrap().leaves), ["host"]);
        assert_eq!(names(&t.personal[&1].leaves), ["host", "star"]);
    }
}
