//! A room's inbox on one node of a backplane (feature `redis`): the messages the bus
//! brought for the room, waiting for the room's turn to be fanned out, and the
//! position the room's members have everything through. The hub fills and drains it
//! (`hub/cluster`); the room only keeps it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::oneshot;

use crate::protocol::StreamPosition;

/// One message from the bus for this room.
#[derive(Debug)]
pub(crate) struct Inbound {
    /// Its position, if stored.
    pub(crate) position: Option<StreamPosition>,
    /// The `message` frame, position included.
    pub(crate) frame: String,
    /// This node published it: told how many of this node's connections it was
    /// queued for.
    pub(crate) waiter: Option<oneshot::Sender<usize>>,
}

/// See the module docs. Std mutexes held for a push, a swap or a copy, never across
/// an `.await`.
#[derive(Debug, Default)]
pub(crate) struct RoomInbox {
    queue: Mutex<VecDeque<Inbound>>,
    /// A drain task is scheduled or running (so the bus schedules at most one).
    pub(crate) draining: AtomicBool,
    /// Continuity must be checked against history before the next delivery (the bus
    /// was lost, or the queue overflowed).
    pub(crate) resync: AtomicBool,
    /// The position every member of the room on this node has everything through
    /// (`None`: no member has a position; the next message or join sets it). Written
    /// only under the room's turn.
    through: Mutex<Option<StreamPosition>>,
    /// Whether other nodes' presence entries were loaded (on the room's first join
    /// here; then bus events and reconciliations keep them).
    pub(crate) presence_loaded: AtomicBool,
    /// Other nodes' presence changes applied here from the bus, counted: a
    /// reconciliation that raced one (read Redis before it, applied after) leaves the
    /// room alone until the next one instead of undoing it.
    pub(crate) presence_events: std::sync::atomic::AtomicU64,
    /// The last remote leaves applied here (event number, connection id), so a
    /// reconciliation that read Redis before a leave does not bring the entry back.
    /// At most [`TOMBSTONES`], oldest dropped.
    pub(crate) presence_tombstones: Mutex<VecDeque<(u64, u64)>>,
}

/// How many remote leaves a room remembers for reconciliations in flight.
pub(crate) const TOMBSTONES: usize = 1024;

impl RoomInbox {
    /// Queues `item`, unless `cap` are waiting: then it is handed back, and the room
    /// is marked for a continuity check.
    pub(crate) fn push(&self, item: Inbound, cap: usize) -> Result<(), Inbound> {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= cap {
            self.resync.store(true, Ordering::Release);
            return Err(item);
        }
        q.push_back(item);
        Ok(())
    }

    /// Everything waiting, oldest first.
    pub(crate) fn take(&self) -> VecDeque<Inbound> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether a drain has anything to do.
    pub(crate) fn has_work(&self) -> bool {
        self.resync.load(Ordering::Acquire)
            || !self
                .queue
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
    }

    pub(crate) fn through(&self) -> Option<StreamPosition> {
        self.through
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_through(&self, position: Option<StreamPosition>) {
        *self.through.lock().unwrap_or_else(|p| p.into_inner()) = position;
    }
}
