//! Room history: every stored message of a room gets a position ([`StreamPosition`]:
//! a `seq` within an `epoch`), kept by a [`HistoryStore`] so a client that reconnects
//! gets what it missed (`PROTOCOL.md`, section 9).
//!
//! The store is a trait so that history can live elsewhere than in this process (a
//! Redis backplane implements the same contract); [`MemoryHistory`] is the default.
//!
//! # The contract
//!
//! - **Atomic append.** [`append`](HistoryStore::append) gives the message the next
//!   `seq` of the room's stream (1 for the first message of an epoch, then +1, no gaps,
//!   never reused within an epoch) and stores the frame written for that position, in
//!   one step: two appends never get the same `seq`, and a reader never sees a `seq`
//!   without its message.
//! - **Range read.** [`read`](HistoryStore::read) returns the stored messages after a
//!   position, in order, and says whether that is *everything* after it
//!   ([`HistoryRead::complete`]): the same epoch, nothing after the position evicted
//!   yet, and no more than the caller's cap. Or the last N messages.
//! - **An epoch per room.** It changes whenever the store cannot vouch for continuity:
//!   a store that restarts without its data, a stream freed because its last message
//!   aged out, a reset. Epochs are opaque strings of at most
//!   [`MAX_EPOCH_LEN`](crate::protocol::MAX_EPOCH_LEN) characters.
//! - **Bounds.** A store keeps at most [`HistoryLimits::max_messages`] per room and
//!   nothing older than [`HistoryLimits::max_age`], oldest first.
//! - **Async, not ordered by the hub's clock.** Methods return futures; the hub calls
//!   `append` for one room at a time (one publish after the other) and holds the same
//!   turn across a recovering join's `read`, so a store needs no ordering of its own
//!   between the rooms' calls.
//!
//! Frames are stored as encoded for fan-out ([`PreparedMessage`]): a replay sends the
//! same bytes (compressed once, too) and serializes nothing again.

mod memory;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use memory::MemoryHistory;

use crate::protocol::EncodedMessage;
pub use crate::protocol::StreamPosition;
use crate::ws::PreparedMessage;

/// A boxed future borrowing from the store, as [`HistoryStore`] methods return.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How much history a namespace keeps per room. Set with
/// [`Namespace::history`](crate::Namespace::history).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryLimits {
    /// Most messages kept per room; older ones are dropped as new ones arrive.
    /// Default: 100, enough to refill a chat page or a feed after a reload.
    pub max_messages: usize,
    /// Messages older than this are dropped. Default: 10 minutes, longer than any
    /// network blip or server restart a client reconnects through.
    pub max_age: Duration,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            max_messages: 100,
            max_age: Duration::from_secs(600),
        }
    }
}

impl HistoryLimits {
    /// `max_messages` per room, none older than `max_age`.
    pub fn new(max_messages: usize, max_age: Duration) -> Self {
        HistoryLimits {
            max_messages,
            max_age,
        }
    }
}

/// One stored message: its position and its frame as sent to subscribers.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// Its `seq` in the stream.
    pub seq: u64,
    /// The stream's epoch.
    pub epoch: std::sync::Arc<str>,
    /// The `message` frame, position included.
    pub frame: PreparedMessage,
}

/// What [`HistoryStore::read`] is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryQuery {
    /// Every stored message after this position, if the store has all of them and
    /// there are at most `max` (otherwise none, and the read is not
    /// [`complete`](HistoryRead::complete)).
    After {
        /// The position of the last message the client has.
        since: StreamPosition,
        /// The most messages to return; more than that is not a recovery.
        max: usize,
    },
    /// The last `n` stored messages (fewer if fewer are kept).
    Last(usize),
    /// No messages: only the stream's position.
    Position,
}

/// What [`HistoryStore::read`] found.
#[derive(Debug, Clone)]
pub struct HistoryRead {
    /// The stream's position now: the `seq` of its last message (0 if it has had
    /// none) and its epoch.
    pub position: StreamPosition,
    /// The messages asked for, oldest first.
    pub messages: Vec<StoredMessage>,
    /// For [`HistoryQuery::After`]: whether `messages` is everything after `since`
    /// (same epoch, nothing evicted, within `max`). Always `true` for the others.
    pub complete: bool,
}

/// Why a store could not do what it was asked.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// The store is unreachable or failed (a remote store); the operation did not
    /// happen.
    #[error("history store unavailable: {0}")]
    Unavailable(String),
}

/// How much a store holds, for [`HubStats`](crate::HubStats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryUsage {
    /// Rooms with a stream.
    pub rooms: usize,
    /// Messages stored.
    pub messages: usize,
    /// Bytes of stored frames.
    pub bytes: usize,
}

/// Where room history lives. See the [module docs](self) for the contract.
pub trait HistoryStore: Send + Sync + 'static {
    /// Appends a message to `room`'s stream: assigns the next `seq`, writes the frame
    /// for that position (`msg.frame(Some((seq, epoch)))`, prepared at
    /// `compression_level`), stores it, drops what is over `limits`, and returns it.
    fn append<'a>(
        &'a self,
        room: &'a str,
        msg: &'a EncodedMessage,
        compression_level: u32,
        limits: HistoryLimits,
    ) -> StoreFuture<'a, Result<StoredMessage, HistoryError>>;

    /// Reads `room`'s stream as `query` asks. A room with no stream yet gets one (with
    /// its epoch, at `seq` 0), so a client that joins an empty room has a position to
    /// recover from.
    fn read<'a>(
        &'a self,
        room: &'a str,
        query: HistoryQuery,
        limits: HistoryLimits,
    ) -> StoreFuture<'a, Result<HistoryRead, HistoryError>>;

    /// Drops what has aged out, and frees streams left empty. Called by the hub's
    /// liveness sweep (every `ping_interval`); a store that expires entries by itself
    /// need not do anything.
    fn sweep(&self) {}

    /// How much the store holds (zeros if it does not know).
    fn usage(&self) -> HistoryUsage {
        HistoryUsage::default()
    }
}

impl fmt::Debug for dyn HistoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HistoryStore")
            .field("usage", &self.usage())
            .finish()
    }
}
