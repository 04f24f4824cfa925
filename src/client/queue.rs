//! What the client task shares with a room's [`Subscription`](super::Subscription)
//! ([`RoomShared`]): the bounded event queue (drop-oldest), the presence view and the
//! position.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use serde_json::Value;

use super::error::ServerError;
use crate::protocol::StreamPosition;
use crate::protocol::{Presence, PresenceCount, PresenceDiff};

/// An event on its way to a subscription, data not yet decoded (the application's
/// task decodes it into its type, so the client task never does that work).
#[derive(Debug)]
pub(crate) enum RawEvent {
    Message {
        seq: Option<u64>,
        epoch: Option<String>,
        from: Option<String>,
        data: Value,
    },
    PresenceDiff(PresenceDiff),
    PresenceReset(Presence),
    PresenceCount(PresenceCount),
    Recovered {
        position: Option<StreamPosition>,
        replayed: u64,
    },
    NotRecovered {
        position: Option<StreamPosition>,
        replayed: u64,
    },
    Left {
        reason: String,
    },
    RejoinFailed(ServerError),
}

/// What [`RoomShared::poll_next`] hands out.
#[derive(Debug)]
pub(crate) enum Popped {
    Event(RawEvent),
    Lagged(u64),
}

/// What the client task and a room's subscription share.
///
/// The queue drops its oldest event when full and counts it: the client task never
/// waits for an application that does not read (which would stall every room and
/// every reply on the connection), and the application is told exactly how much it
/// missed. A std mutex: held for a push or a pop, never across an `.await`.
#[derive(Debug)]
pub(crate) struct RoomShared {
    queue: Mutex<Queue>,
    waker: AtomicWaker,
    capacity: usize,
    presence: Mutex<Presence>,
    /// A big room's count, from its join reply and `presence_count`s; `None` while
    /// the room is small.
    count: Mutex<Option<PresenceCount>>,
    position: Mutex<Option<StreamPosition>>,
}

#[derive(Debug, Default)]
struct Queue {
    events: VecDeque<RawEvent>,
    /// Events dropped since the application last read.
    missed: u64,
    /// No more events will come (the room was left, the client ended).
    ended: bool,
    /// The subscription was dropped: nobody reads.
    abandoned: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a push, a pop or a swap: a panic cannot leave the data
    // half-changed, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RoomShared {
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(RoomShared {
            queue: Mutex::new(Queue::default()),
            waker: AtomicWaker::new(),
            capacity: capacity.max(1),
            presence: Mutex::new(Presence::new()),
            count: Mutex::new(None),
            position: Mutex::new(None),
        })
    }

    /// Queues `event`, dropping the oldest if full. `false`: the subscription is gone.
    pub(crate) fn push(&self, event: RawEvent) -> bool {
        {
            let mut q = lock(&self.queue);
            if q.abandoned {
                return false;
            }
            if q.ended {
                return true;
            }
            if q.events.len() >= self.capacity {
                q.events.pop_front();
                q.missed += 1;
            }
            q.events.push_back(event);
        }
        self.waker.wake();
        true
    }

    /// No more events: the subscription drains what is queued, then ends.
    pub(crate) fn end(&self) {
        lock(&self.queue).ended = true;
        self.waker.wake();
    }

    /// The subscription was dropped.
    pub(crate) fn abandon(&self) {
        let mut q = lock(&self.queue);
        q.abandoned = true;
        q.events.clear();
    }

    pub(crate) fn is_abandoned(&self) -> bool {
        lock(&self.queue).abandoned
    }

    /// The next event: a `Lagged` first if events were dropped; `None` once ended and
    /// drained.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Popped>> {
        if let Some(p) = self.try_next() {
            return Poll::Ready(p);
        }
        self.waker.register(cx.waker());
        // Again after registering: a push between the two looks would be missed.
        match self.try_next() {
            Some(p) => Poll::Ready(p),
            None => Poll::Pending,
        }
    }

    fn try_next(&self) -> Option<Option<Popped>> {
        let mut q = lock(&self.queue);
        if q.missed > 0 {
            return Some(Some(Popped::Lagged(std::mem::take(&mut q.missed))));
        }
        match q.events.pop_front() {
            Some(e) => Some(Some(Popped::Event(e))),
            None if q.ended => Some(None),
            None => None,
        }
    }

    pub(crate) fn presence(&self) -> Presence {
        lock(&self.presence).clone()
    }

    pub(crate) fn set_presence(&self, presence: Presence) {
        *lock(&self.presence) = presence;
    }

    pub(crate) fn apply_diff(&self, diff: &PresenceDiff) {
        lock(&self.presence).apply(diff);
    }

    pub(crate) fn count(&self) -> Option<PresenceCount> {
        *lock(&self.count)
    }

    pub(crate) fn set_count(&self, count: Option<PresenceCount>) {
        *lock(&self.count) = count;
    }

    pub(crate) fn position(&self) -> Option<StreamPosition> {
        lock(&self.position).clone()
    }

    pub(crate) fn set_position(&self, position: Option<StreamPosition>) {
        *lock(&self.position) = position;
    }
}
