//! The hub's presence task: once per `presence_tick`, sends each room with pending
//! presence changes one `presence_diff` (see `presence`'s module docs). One task per
//! hub, asleep while no room has changes: no timer per room or connection.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Hub;
use crate::presence::{PresenceSource, Tick, TickLimits};
use crate::protocol;
use crate::room::RoomState;
use crate::ws::{Outbound, SendError};

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

/// Sends every queued room what its tick holds (`presence::Tick`: a diff, a big
/// room's count and the diffs of its watchers, the state of a room turned small);
/// rooms that need another tick (a diff's byte budget, a count held back by its
/// interval) go back in the queue.
pub(crate) fn flush(hub: &Hub) {
    let rooms = std::mem::take(
        &mut *hub
            .0
            .presence_queue
            .lock()
            .unwrap_or_else(|p| p.into_inner()),
    );
    let config = hub.config();
    let limits = TickLimits {
        budget: config.presence_diff_budget,
        tick: config.presence_tick,
        tick_max: config.presence_tick_max.max(config.presence_tick),
        count_interval: config.presence_count_interval,
        min_big: config.presence_min_big,
    };
    let now = tokio::time::Instant::now();
    for room in rooms {
        // Cleared before taking the tick: a change made meanwhile queues the room
        // again rather than being missed.
        room.presence_dirty.store(false, Ordering::Release);
        let (more, slow) = {
            let mut presence = room.presence_lock();
            let tick = presence.tick(now, limits);
            // Sent with the lock held, so join replies (queued under the same lock)
            // and what a tick sends reach each member in the order they were taken.
            let slow = send_tick(hub, &room, &tick);
            (tick.more, slow)
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

/// Queues what `tick` holds for `room`'s members; returns the slow consumers found.
/// Every message for all members is encoded once; only a big room's watchers get
/// messages of their own, each encoded once for its connection.
fn send_tick(hub: &Hub, room: &RoomState, tick: &Tick) -> Vec<(u64, Outbound)> {
    let mut slow = Vec::new();
    let mut to_all = |text: String| {
        slow.extend(room.broadcast(&hub.prepare(text)).slow);
    };
    if let Some(state) = &tick.state {
        to_all(protocol::encode_presence_state(&room.name, state));
    }
    if let Some(count) = tick.count {
        to_all(protocol::encode_presence_count(&room.name, count));
    }
    if tick.personal.is_empty() {
        if let Some(diff) = &tick.diff {
            to_all(protocol::encode_presence_diff(&room.name, diff));
        }
        return slow;
    }
    let shared = tick
        .diff
        .as_ref()
        .map(|d| hub.prepare(protocol::encode_presence_diff(&room.name, d)));
    let members = room.members();
    for (&conn_id, out) in &members.conns {
        let result = match (tick.personal.get(&conn_id), &shared) {
            (Some(diff), _) => {
                out.try_send(&hub.prepare(protocol::encode_presence_diff(&room.name, diff)))
            }
            (None, Some(shared)) => out.try_send(shared),
            (None, None) => continue,
        };
        if let Err(SendError::Full) = result {
            slow.push((conn_id, out.clone()));
        }
    }
    slow
}
