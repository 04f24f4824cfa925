//! Presence: who is in a room, as user id -> one meta per connection.
//!
//! A user with several tabs or devices in a room has several metas but is announced
//! once: the first connection to join produces a `joins` diff, the last one to leave a
//! `leaves` diff, and the connections in between change the room's state silently (a
//! `presence` request or a join reply shows them). Other members therefore see users
//! come and go, not tabs open and close.
//!
//! [`RoomPresence`] is plain data, not thread-safe on its own: the hub keeps one per
//! room behind a short-held lock. Each call is a few map operations: no I/O, no
//! `.await`.
//!
//! ## Coalescing
//!
//! Joins and leaves are not announced one by one: they are recorded as *pending*, and
//! the hub's presence task takes one diff per room per tick ([`RoomPresence::take_diff`])
//! and sends it to every member. N changes in a tick cost each member one message, and
//! a user who joins and leaves within one tick costs nothing.
//!
//! A diff must bring every member's view to the room's state. Members who were in the
//! room at the last diff believe what it announced; a member who joined since holds
//! the snapshot of its join reply, which already shows the pending changes made before
//! it. So each pending user records every belief members may hold about them (present,
//! absent), and the next diff announces the user when some member may believe
//! otherwise than the truth. Applying a diff is idempotent ([`Presence::apply`]), so a
//! member told what it already knew is not confused.
//!
//! A diff is also bounded in size (`budget` bytes, plus at most one entry): users left
//! over stay pending for the next tick, so a churning room cannot push more presence
//! bytes per second to a member than `budget` per tick.
//!
//! ## Big rooms
//!
//! Above a size (`HubConfig::presence_big_room`, per namespace too) a room switches to
//! *big* mode ([`big`]): members get an exact count at a steady cadence instead of
//! every change, the changes of the users the application marks as interesting to them
//! ([`interest`]), and pages of the member list on request. The room leaves big mode
//! only once it has shrunk by a quarter below the threshold and stayed big a while, so
//! a room at the threshold does not flap.
//!
//! The hub reaches a room's presence through [`PresenceSource`] (join, leave, count,
//! page, the tick's changes): this module is the single-node source; a cluster-wide
//! one (a backplane) implements the same calls.
//!
//! The wire shapes ([`Presence`], [`PresenceDiff`], [`PresenceMeta`]) live in
//! [`protocol`](crate::protocol); this module keeps a room's state.

mod big;
mod interest;
mod pace;
mod source;

use std::collections::BTreeMap;

pub(crate) use big::{Mode, Tick, TickLimits};
pub use interest::PresenceInterest;
pub(crate) use interest::{InterestIndex, JoinInterest};
pub(crate) use source::PresenceSource;

use tokio::time::Instant;

#[cfg(test)]
use serde_json::Value;

use crate::protocol::presence::UserMetas;
use crate::protocol::{Presence, PresenceDiff, PresenceMeta};

/// A member may believe the user absent.
const BELIEVED_ABSENT: u8 = 1;
/// A member may believe the user present.
const BELIEVED_PRESENT: u8 = 2;

/// A user whose presence changed since the last diff (see the module docs).
///
/// A snapshot marks what its member now believes about every pending user, and a
/// join reply is a snapshot: marking them all on each join made joins cost as many
/// pending users as the last tick saw come and go, quadratic in a churning room
/// (`BENCHMARKS.md`, churn). So the marks are folded in lazily: the room counts its
/// snapshots, each entry remembers the count when its current state began and how
/// many of the snapshots since were its own user's (which do not count for it), and
/// some other member saw the current state exactly when the count moved by more than
/// those. Folded whenever the state changes, and before the entry is read.
#[derive(Debug)]
struct Pending {
    /// `BELIEVED_*` bits: what members may believe about this user, as of the last
    /// fold.
    beliefs: u8,
    /// Whether the user is present now (mirrors `presence.users`): the state the
    /// snapshots since `since` saw.
    present: bool,
    /// The room's snapshot count when the current state began (or the last fold).
    since: u64,
    /// Snapshots taken since `since` by this user's own connections.
    own: u64,
    /// The meta of the user's last connection to leave, for the leave entry.
    left: Option<PresenceMeta>,
    /// Whether the user was featured (interesting to every member of a big room) when
    /// the change was made: a featured user who left is no longer in the index.
    featured: bool,
}

/// The presence state of one room on this hub.
///
/// Not thread-safe by design: the hub serializes access with its own short-held lock
/// (see the module docs).
#[derive(Debug)]
pub(crate) struct RoomPresence {
    presence: Presence,
    /// Total metas across users, kept so `len_conns` is O(1) for limits and metrics.
    conns: usize,
    /// Users changed since the last diff. At most one entry per user, so it is
    /// bounded by the users who were in the room during the tick, however many times
    /// they came and went.
    pending: BTreeMap<String, Pending>,
    /// Small or big, and what members were last told (see [`big`]).
    mode: Mode,
    /// Who is interesting to whom, for big rooms.
    interest: InterestIndex,
    /// Snapshots taken for members ([`snapshot_for_member`](Self::snapshot_for_member)).
    snapshots: u64,
    /// How often this room's diffs go out while it is small ([`pace`]).
    pace: pace::Pace,
}

impl Default for RoomPresence {
    /// A room that never turns big.
    fn default() -> Self {
        RoomPresence::new(usize::MAX)
    }
}

impl Pending {
    /// A user whose state changes now, with what members may believe so far.
    fn new(beliefs: u8, present: bool, snapshots: u64) -> Pending {
        Pending {
            beliefs,
            present,
            since: snapshots,
            own: 0,
            left: None,
            featured: false,
        }
    }

    /// Adds what the snapshots taken since `since` showed (the current state, if some
    /// member other than the user's own took one), and starts counting afresh.
    fn fold(&mut self, snapshots: u64) {
        if snapshots - self.since > self.own {
            self.beliefs |= if self.present {
                BELIEVED_PRESENT
            } else {
                BELIEVED_ABSENT
            };
        }
        self.since = snapshots;
        self.own = 0;
    }
}

impl RoomPresence {
    /// An empty room that turns big above `big_room` users.
    pub(crate) fn new(big_room: usize) -> Self {
        RoomPresence {
            presence: Presence::default(),
            conns: 0,
            pending: BTreeMap::new(),
            mode: Mode::new(big_room),
            interest: InterestIndex::default(),
            snapshots: 0,
            pace: pace::Pace::default(),
        }
    }

    /// A small room's tick: the diff, when the room's pace lets one go out now (it
    /// holds what the ticks it waited would have: their byte budgets, and at least an
    /// entry each); the room ticks again while changes are pending.
    fn paced_diff(&mut self, now: Instant, limits: TickLimits, tick: &mut Tick) {
        if let Some(ticks) = self.pace.due(now, limits) {
            tick.diff = self.take_diff_where(limits.budget, ticks, |_, _| true);
            if tick.diff.is_some() {
                self.pace.sent(now, limits);
            }
        }
        tick.more = self.has_pending();
    }

    /// Adds connection `conn_id` of `user` with `meta` (`null` is stored as `{}`).
    ///
    /// Returns `true` if this is the user's first connection in the room: the join is
    /// then pending, announced by the next [`take_diff`](Self::take_diff). A connection
    /// that is already present has its meta replaced in place (keeping its position)
    /// and announces nothing.
    #[cfg(test)]
    pub(crate) fn join(&mut self, user: &str, conn_id: u64, meta: Value) -> bool {
        self.join_entry(
            user,
            PresenceMeta::new(conn_id, meta),
            JoinInterest::default(),
        )
    }

    /// [`join`](Self::join) with a whole entry (server fields stamped by the caller)
    /// and what the application's hook said about the connection. Returns whether the
    /// room needs the presence task: a first connection (a pending join), or any
    /// change of a big room's count.
    pub(crate) fn join_entry(
        &mut self,
        user: &str,
        meta: PresenceMeta,
        interest: JoinInterest,
    ) -> bool {
        let conn_id = meta.conn_id;
        self.interest.add(user, conn_id, interest);
        let first = self.insert_entry(user, meta);
        let switched = self.mode.after_join(self.presence.len());
        first || switched || self.mode.is_big()
    }

    /// Adds the entry; returns whether it is the user's first connection.
    fn insert_entry(&mut self, user: &str, meta: PresenceMeta) -> bool {
        let conn_id = meta.conn_id;
        // Look up by `&str` first so the common case (a known user) allocates nothing.
        if let Some(known) = self.presence.users.get_mut(user) {
            match known.metas.iter_mut().find(|m| m.conn_id == conn_id) {
                Some(existing) => *existing = meta,
                None => {
                    known.metas.push(meta);
                    self.conns += 1;
                }
            }
            return false;
        }
        self.presence
            .users
            .insert(user.to_owned(), UserMetas { metas: vec![meta] });
        self.conns += 1;
        let featured = self.interest.is_featured(user);
        let snapshots = self.snapshots;
        let pending = self
            .pending
            .entry(user.to_owned())
            .or_insert_with(|| Pending::new(BELIEVED_ABSENT, false, snapshots));
        pending.fold(snapshots);
        pending.present = true;
        pending.featured |= featured;
        true
    }

    /// Removes connection `conn_id` of `user`.
    ///
    /// Returns whether the room needs the presence task: the user's last connection
    /// left (the leave is then pending), or a big room's count changed. Removing a
    /// connection that is not present is a no-op (the hub may call this for every
    /// room a closing connection might have joined).
    pub(crate) fn leave(&mut self, user: &str, conn_id: u64) -> bool {
        let Some(known) = self.presence.users.get(user) else {
            return false;
        };
        if !known.metas.iter().any(|m| m.conn_id == conn_id) {
            return false;
        }
        self.interest.forget_conn(conn_id);
        self.remove_entry(user, conn_id) || self.mode.is_big()
    }

    /// Removes the entry; returns whether it was the user's last connection.
    fn remove_entry(&mut self, user: &str, conn_id: u64) -> bool {
        let Some(known) = self.presence.users.get_mut(user) else {
            return false;
        };
        let metas = &mut known.metas;
        let Some(pos) = metas.iter().position(|m| m.conn_id == conn_id) else {
            return false;
        };
        // `remove`, not `swap_remove`: the remaining metas keep their join order.
        let meta = metas.remove(pos);
        self.conns -= 1;
        if !metas.is_empty() {
            return false;
        }
        self.presence.users.remove(user);
        let featured = self.interest.forget_user(user);
        let snapshots = self.snapshots;
        let pending = self
            .pending
            .entry(user.to_owned())
            .or_insert_with(|| Pending::new(BELIEVED_PRESENT, true, snapshots));
        pending.fold(snapshots);
        pending.present = false;
        pending.left = Some(meta);
        pending.featured |= featured;
        true
    }

    /// Whether changes wait for the next diff.
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Takes the diff that brings every member's view to the room's state: users
    /// whose presence changed since the last diff and whom some member may believe
    /// otherwise. Stops once the diff holds `budget` bytes of entries (users left over
    /// stay pending; the entry that reaches the budget may pass it). `None` if there is
    /// nothing to announce. (The hub's ticks take theirs through `tick`.)
    #[cfg(test)]
    pub(crate) fn take_diff(&mut self, budget: usize) -> Option<PresenceDiff> {
        self.take_diff_where(budget, 1, |_, _| true)
    }

    /// [`take_diff`](Self::take_diff) of the users `wanted` keeps (given the user and
    /// whether they were featured); the others are dropped from `pending` unannounced
    /// and cost no budget. The diff stands for `ticks` ticks (a paced diff, `pace`):
    /// it holds what that many diffs would, `ticks` budgets and at least `ticks`
    /// entries, so pacing never announces less than a diff every tick would.
    fn take_diff_where(
        &mut self,
        budget: usize,
        ticks: usize,
        mut wanted: impl FnMut(&str, bool) -> bool,
    ) -> Option<PresenceDiff> {
        let mut diff = PresenceDiff::default();
        let mut bytes = 0;
        let mut entries = 0;
        let budget = budget.saturating_mul(ticks);
        while bytes < budget || entries < ticks {
            let Some((user, mut pending)) = self.pending.pop_first() else {
                break;
            };
            pending.fold(self.snapshots);
            if !wanted(&user, pending.featured) {
                continue;
            }
            match self.presence.users.get(&user) {
                Some(now) if pending.beliefs & BELIEVED_ABSENT != 0 => {
                    bytes += entry_len(&user, &now.metas);
                    entries += 1;
                    diff.joins.users.insert(user, now.clone());
                }
                None if pending.beliefs & BELIEVED_PRESENT != 0 => {
                    // A leave always has the meta of the connection that left last.
                    let metas = pending.left.into_iter().collect::<Vec<_>>();
                    bytes += entry_len(&user, &metas);
                    entries += 1;
                    diff.leaves.users.insert(user, UserMetas { metas });
                }
                // Every member already believes the truth: a join and a leave within
                // one tick, or a user back before anyone saw them go.
                _ => {}
            }
        }
        (!diff.is_empty()).then_some(diff)
    }

    /// A copy of the room's presence for a connection of `member` (a join reply or a
    /// `presence` request). It now believes the current state of every pending user,
    /// so the next diff corrects it if that changes again before the diff.
    ///
    /// Except its own user: while the connection is in the room its user is present,
    /// as it believes, and once its user is gone so is the connection, whose belief no
    /// longer matters. So a user who joins and leaves within a tick is not announced,
    /// although their join reply showed them.
    pub(crate) fn snapshot_for_member(&mut self, member: &str) -> Presence {
        // Every pending user but the member's own now counts as seen (see `Pending`):
        // one count, not a mark on each of them.
        self.snapshots += 1;
        if let Some(own) = self.pending.get_mut(member) {
            own.own += 1;
        }
        self.presence.clone()
    }

    /// A copy of the room's presence for the server (no member's view changes).
    pub(crate) fn snapshot(&self) -> Presence {
        self.presence.clone()
    }

    /// Whether `user` is featured in the room now (the interest hook said so of one
    /// of their connections, and one is still here).
    #[cfg(feature = "redis")]
    pub(crate) fn is_featured(&self, user: &str) -> bool {
        self.interest.is_featured(user)
    }

    /// The number of users present.
    pub(crate) fn len_users(&self) -> usize {
        self.presence.len()
    }

    /// The number of connections present, across all users.
    #[allow(dead_code, reason = "the hub reads the count through `PresenceSource`")]
    pub(crate) fn len_conns(&self) -> usize {
        self.conns
    }
}

/// The bytes `user`'s entry takes in an encoded diff: `"USER":{"metas":[..]},`.
fn entry_len(user: &str, metas: &[PresenceMeta]) -> usize {
    crate::protocol::encoded_len(user) + crate::protocol::encoded_len(metas) + 12
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ALL: usize = usize::MAX;

    fn conn_ids(p: &Presence, user: &str) -> Vec<u64> {
        p.get(user)
            .unwrap_or_default()
            .iter()
            .map(|m| m.conn_id)
            .collect()
    }

    fn users(p: &Presence) -> Vec<String> {
        p.iter().map(|(u, _)| u.to_owned()).collect()
    }

    #[test]
    fn a_presence_built_by_hand_encodes_like_the_hubs() {
        let mut built = Presence::new()
            .with("bob", PresenceMeta::new(2, Value::Null))
            .with("ann", PresenceMeta::new(1, json!({"status": "away"})));
        // The same connection again replaces its meta rather than adding one.
        built.insert("ann", PresenceMeta::new(1, json!({"status": "here"})));
        assert_eq!(
            serde_json::to_value(&built).unwrap(),
            json!({
                "ann": {"metas": [{"conn_id": "1", "meta": {"status": "here"}}]},
                "bob": {"metas": [{"conn_id": "2", "meta": {}}]},
            })
        );
        let diff = PresenceDiff::new(Presence::new(), built.clone());
        let mut view = built;
        view.apply(&diff);
        assert!(view.is_empty(), "{view:?}");
    }

    #[test]
    fn first_tab_joins_and_last_tab_leaves() {
        let mut room = RoomPresence::default();

        assert!(room.join("ann", 1, json!({"device": "laptop"})));
        let diff = room.take_diff(ALL).unwrap();
        assert_eq!(conn_ids(&diff.joins, "ann"), [1]);
        assert_eq!(
            diff.joins.get("ann").unwrap()[0].meta,
            json!({"device": "laptop"})
        );
        assert!(diff.leaves.is_empty());
        assert_eq!(room.take_diff(ALL), None, "a diff is taken once");

        // Second tab: present in the room, but not announced.
        assert!(!room.join("ann", 2, json!({"device": "phone"})));
        assert_eq!(room.take_diff(ALL), None);
        assert_eq!((room.len_users(), room.len_conns()), (1, 2));
        assert_eq!(conn_ids(&room.snapshot(), "ann"), [1, 2]);

        // Closing one of two tabs is not announced either.
        assert!(!room.leave("ann", 1));
        assert_eq!(room.take_diff(ALL), None);
        assert_eq!((room.len_users(), room.len_conns()), (1, 1));

        // The last tab is, carrying its own meta.
        assert!(room.leave("ann", 2));
        let diff = room.take_diff(ALL).unwrap();
        assert!(diff.joins.is_empty());
        let left = diff.leaves.get("ann").unwrap();
        assert_eq!(
            (left[0].conn_id, &left[0].meta),
            (2, &json!({"device": "phone"}))
        );
        assert_eq!((room.len_users(), room.len_conns()), (0, 0));

        // And the user can come back with a fresh join.
        assert!(room.join("ann", 3, Value::Null));
        assert!(room.take_diff(ALL).is_some());
    }

    #[test]
    fn changes_in_one_tick_make_one_diff() {
        let mut room = RoomPresence::default();
        room.join("ann", 1, json!({}));
        room.take_diff(ALL);
        room.join("bob", 2, json!({}));
        room.join("cyd", 3, json!({}));
        room.leave("ann", 1);
        let diff = room.take_diff(ALL).unwrap();
        assert_eq!(users(&diff.joins), ["bob", "cyd"]);
        assert_eq!(users(&diff.leaves), ["ann"]);
        assert!(!room.has_pending());
    }

    #[test]
    fn a_join_and_a_leave_within_a_tick_cost_nothing() {
        let mut room = RoomPresence::default();
        room.join("ann", 1, json!({}));
        room.take_diff(ALL);
        for conn in 2..100 {
            assert!(room.join("bob", conn, json!({"big": "x".repeat(100)})));
            assert!(room.leave("bob", conn));
        }
        assert_eq!(room.take_diff(ALL), None);
        // The other way round: a user seen present who leaves and comes back.
        room.leave("ann", 1);
        room.join("ann", 7, json!({}));
        assert_eq!(room.take_diff(ALL), None);
        assert_eq!(conn_ids(&room.snapshot(), "ann"), [7]);
    }

    #[test]
    fn a_joiner_who_leaves_within_the_tick_costs_nothing() {
        let mut room = RoomPresence::default();
        room.join("ann", 1, json!({}));
        room.take_diff(ALL);
        room.join("bob", 2, json!({}));
        // bob's join reply shows bob; only bob saw it, and bob is gone with it.
        assert!(room.snapshot_for_member("bob").contains("bob"));
        room.leave("bob", 2);
        assert_eq!(room.take_diff(ALL), None);
    }

    #[test]
    fn a_member_who_saw_a_pending_join_is_told_of_its_leave() {
        let mut room = RoomPresence::default();
        room.join("ann", 1, json!({}));
        room.take_diff(ALL);
        room.join("bob", 2, json!({}));
        // A member joins and its snapshot shows bob, not yet announced.
        let mut newcomer = room.snapshot_for_member("cyd");
        assert!(newcomer.contains("bob"));
        room.leave("bob", 2);
        // Old members never heard of bob; the newcomer did: the leave is announced.
        let diff = room.take_diff(ALL).unwrap();
        assert_eq!(users(&diff.leaves), ["bob"]);
        newcomer.apply(&diff);
        assert_eq!(users(&newcomer), ["ann"]);
    }

    #[test]
    fn only_snapshots_of_other_users_count_for_a_pending_user() {
        let mut room = RoomPresence::default();
        room.join("ann", 1, json!({}));
        room.take_diff(ALL);
        // bob joins with two tabs, each join reply his own snapshot, then leaves.
        room.join("bob", 2, json!({}));
        room.snapshot_for_member("bob");
        room.join("bob", 3, json!({}));
        room.snapshot_for_member("bob");
        room.leave("bob", 2);
        room.leave("bob", 3);
        assert_eq!(room.take_diff(ALL), None);
        // The same, with one snapshot by someone else among his own: announced.
        room.join("bob", 4, json!({}));
        room.snapshot_for_member("bob");
        room.snapshot_for_member("cyd");
        room.snapshot_for_member("bob");
        room.leave("bob", 4);
        let diff = room.take_diff(ALL).unwrap();
        assert_eq!(users(&diff.leaves), ["bob"]);
    }

    #[test]
    fn a_member_who_saw_a_user_back_within_the_tick_is_told_nothing() {
        let mut room = RoomPresence::default();
        room.join("ann", 1, json!({}));
        room.take_diff(ALL);
        // ann reloads her page: gone and back within one tick.
        room.leave("ann", 1);
        room.join("ann", 2, json!({}));
        // A newcomer's snapshot shows ann present, as everyone already believes: no
        // diff is owed (a snapshot taken while ann was away would owe one).
        assert!(room.snapshot_for_member("cyd").contains("ann"));
        assert_eq!(room.take_diff(ALL), None);
        room.leave("ann", 2);
        assert!(!room.snapshot_for_member("cyd").contains("ann"));
        room.join("ann", 3, json!({}));
        let diff = room.take_diff(ALL).unwrap();
        assert_eq!(users(&diff.joins), ["ann"]);
    }

    #[test]
    fn a_diff_is_bounded_by_its_budget_and_the_rest_follows() {
        let mut room = RoomPresence::default();
        for i in 0..100u64 {
            room.join(&format!("user{i:03}"), i, json!({"pad": "x".repeat(50)}));
        }
        let mut seen = Vec::new();
        let mut diffs = 0;
        while let Some(diff) = room.take_diff(1000) {
            let text = serde_json::to_string(&diff).unwrap();
            // The budget, plus at most one entry past it.
            assert!(text.len() <= 1000 + 120, "{} bytes", text.len());
            seen.extend(users(&diff.joins));
            diffs += 1;
        }
        assert!(diffs > 5, "{diffs} diffs");
        assert_eq!(seen.len(), 100, "every join announced exactly once");
        seen.dedup();
        assert_eq!(seen.len(), 100);
    }

    /// Members who joined at different times, each applying every diff to its join
    /// snapshot, always agree with the room after a diff, whatever happened in the
    /// tick (a small deterministic pseudo-random walk).
    #[test]
    fn every_member_view_converges_after_each_diff() {
        let mut room = RoomPresence::default();
        let mut views: Vec<Presence> = Vec::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut conns: Vec<(String, u64)> = Vec::new();
        let mut next_conn = 1;
        for _tick in 0..300 {
            for _ in 0..(next() % 6) {
                match next() % 4 {
                    0 | 1 => {
                        let user = format!("u{}", next() % 5);
                        room.join(&user, next_conn, json!({}));
                        conns.push((user, next_conn));
                        next_conn += 1;
                    }
                    2 if !conns.is_empty() => {
                        let (user, conn) = conns.swap_remove((next() as usize) % conns.len());
                        room.leave(&user, conn);
                    }
                    _ => views.push(room.snapshot_for_member("viewer")),
                }
            }
            if let Some(diff) = room.take_diff(ALL) {
                for v in &mut views {
                    v.apply(&diff);
                }
            }
            let truth = users(&room.snapshot());
            for v in &views {
                assert_eq!(users(v), truth);
            }
        }
        assert!(views.len() > 20);
    }

    #[test]
    fn leaving_an_unknown_connection_is_a_no_op() {
        let mut room = RoomPresence::default();
        assert!(!room.leave("ghost", 1));
        room.join("ann", 1, json!({}));
        // Unknown conn of a known user, and a known conn under the wrong user.
        assert!(!room.leave("ann", 99));
        room.join("bob", 2, json!({}));
        assert!(!room.leave("ann", 2));
        assert_eq!((room.len_users(), room.len_conns()), (2, 2));
        // Leaving twice counts once.
        assert!(room.leave("ann", 1));
        assert!(!room.leave("ann", 1));
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
        assert!(!room.join("ann", 1, json!({"status": "away"})));
        assert_eq!(room.len_conns(), 2);
        let metas = room.snapshot().get("ann").unwrap().to_vec();
        assert_eq!(metas[0].conn_id, 1);
        assert_eq!(metas[0].meta, json!({"status": "away"}));
        // The count stayed right: two leaves empty the room.
        room.leave("ann", 1);
        assert!(room.leave("ann", 2));
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
        room.take_diff(ALL);
        room.leave("bob", 2);
        let diff = room.take_diff(ALL).unwrap();
        assert_eq!(
            serde_json::to_value(&diff).unwrap(),
            json!({"joins": {}, "leaves": {"bob": {"metas": [{"conn_id": "2", "meta": {"status": "away"}}]}}})
        );
    }

    #[test]
    fn apply_does_not_duplicate_known_metas() {
        let mut room = RoomPresence::default();
        room.join("ann", 1, json!({}));
        let mut client = room.snapshot_for_member("ann");
        let diff = room.take_diff(ALL).unwrap();
        client.apply(&diff);
        assert_eq!(conn_ids(&client, "ann"), [1]);
        assert_eq!(client.len(), 1);
    }
}
