//! [`PresenceSource`]: the narrow interface the hub reads a room's presence through.
//!
//! The hub asks a room's source for its count, for pages of its member list and, once
//! per presence tick, for what to send members ([`Tick`]: the changes to announce, a
//! count, a switch of mode). [`RoomPresence`](super::RoomPresence) is the source of a
//! single hub: everything it knows came through this hub's joins and leaves.
//!
//! A cluster (a backplane such as Redis) answers the same calls from cluster-wide data:
//! the count summed over nodes, pages read from a shared sorted set keyed by user id
//! (so the cursor, the last user id of a page, keeps its meaning), and changes made on
//! other nodes fed into the tick as if they were local. The hub's side (encoding,
//! sending under the room's lock, queueing rooms for ticks) does not change.

use tokio::time::Instant;

use super::{Tick, TickLimits};
use crate::protocol::{PresenceCount, PresencePage};

/// Where a room's count, pages and presence changes come from (see the module docs).
///
/// Calls are made with the room's presence lock held and must not block: a source
/// backed by a remote store answers from what it has mirrored locally.
pub(crate) trait PresenceSource {
    /// Whether the room is big now: join replies then carry the count and a page.
    fn is_big(&self) -> bool;

    /// The users and connections present.
    fn count(&self) -> PresenceCount;

    /// Up to `limit` users after cursor `after`, in user id order, for a connection of
    /// `member`; the page carries the count and the next cursor. A user present
    /// through the whole paging is on exactly one page.
    fn page(&mut self, member: &str, after: Option<&str>, limit: usize) -> PresencePage;

    /// What this presence tick sends the room's members; `now` is the tick's time.
    fn tick(&mut self, now: Instant, limits: TickLimits) -> Tick;
}
