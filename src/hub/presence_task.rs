//! The hub's presence task: once per `presence_tick`, sends each room with pending
//! presence changes one `presence_diff` (see `presence`'s module docs). One task per
//! hub, asleep while no room has changes: no timer per room or connection.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Hub;
use crate::protocol;

/// Starts the task. It holds only a weak reference: dropping every `Hub` handle ends it.
pub(super) fn spawn(hub: &Hub) {
    let weak = Arc::downgrade(&hub.0);
    let tick = hub.config().presence_tick;
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        // `reaper::spawn` already warned; presence changes will stay pending.
        return;
    };
    rt.spawn(async move {
        loop {
            // Wait for the first change, then let the tick's changes gather.
            let Some(inner) = weak.upgrade() else { return };
            let wake = inner.presence_wake.clone();
            let notified = wake.notified();
            tokio::pin!(notified);
            // Registered before looking at the queue, so a change made in between
            // still wakes the task.
            notified.as_mut().enable();
            let idle = inner
                .presence_queue
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty();
            // Not held while asleep: the last `Hub` handle dropping must free the hub
            // (its `Drop` wakes this task, which then finds it gone).
            drop(inner);
            if idle {
                notified.await;
            }
            tokio::time::sleep(tick).await;
            let Some(inner) = weak.upgrade() else { return };
            flush(&Hub(inner));
        }
    });
}

/// Sends every queued room its diff; rooms with changes left over (a diff's byte
/// budget) go back in the queue for the next tick.
pub(crate) fn flush(hub: &Hub) {
    let rooms = std::mem::take(
        &mut *hub
            .0
            .presence_queue
            .lock()
            .unwrap_or_else(|p| p.into_inner()),
    );
    let budget = hub.config().presence_diff_budget;
    for room in rooms {
        // Cleared before taking the diff: a change made meanwhile queues the room
        // again rather than being missed.
        room.presence_dirty.store(false, Ordering::Release);
        let (more, slow) = {
            let mut presence = room.presence_lock();
            let mut slow = Vec::new();
            if let Some(diff) = presence.take_diff(budget) {
                // Sent with the lock held, so join replies (queued under the same
                // lock) and diffs reach each member in the order they were taken.
                let text = protocol::encode_presence_diff(&room.name, &diff);
                slow = room.broadcast(&hub.prepare(text)).slow;
            }
            (presence.has_pending(), slow)
        };
        hub.drop_slow_consumers(slow);
        if more {
            hub.presence_changed(&room);
        } else {
            let name = room.name.clone();
            drop(room);
            hub.prune_room(&name);
        }
    }
}
