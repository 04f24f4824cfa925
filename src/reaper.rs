//! Liveness and token expiry for all connections, from one task.
//!
//! No connection has a timer of its own: one sweep per `ping_interval` pings every
//! connection and closes those that sent nothing for `pong_timeout`, and the same task
//! sleeps until the earliest token expiry among all connections.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::hub::Hub;
use crate::ws::CloseCode;

/// Token expiries to watch, ordered by time.
#[derive(Debug, Default)]
pub(crate) struct Reaper {
    expiries: Mutex<BTreeSet<(SystemTime, u64)>>,
    /// Wakes the task when an expiry earlier than all others is added.
    changed: Arc<Notify>,
}

impl Reaper {
    pub(crate) fn new() -> Self {
        Reaper::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<(SystemTime, u64)>> {
        self.expiries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes connection `conn_id` with 1008 at `at`.
    pub(crate) fn watch_expiry(&self, conn_id: u64, at: SystemTime) {
        let earliest = {
            let mut set = self.lock();
            set.insert((at, conn_id));
            set.first() == Some(&(at, conn_id))
        };
        if earliest {
            self.changed.notify_one();
        }
    }

    /// Stops watching a connection that has gone.
    pub(crate) fn forget_expiry(&self, conn_id: u64, at: Option<SystemTime>) {
        if let Some(at) = at {
            self.lock().remove(&(at, conn_id));
        }
    }

    /// Removes and returns the connections whose tokens expired by `now`.
    fn take_due(&self, now: SystemTime) -> Vec<u64> {
        let mut set = self.lock();
        let mut due = Vec::new();
        while let Some(&(at, id)) = set.first() {
            if at > now {
                break;
            }
            set.pop_first();
            due.push(id);
        }
        due
    }

    /// Time until the earliest expiry.
    fn next_expiry(&self) -> Option<Duration> {
        let set = self.lock();
        let &(at, _) = set.first()?;
        Some(
            at.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO),
        )
    }
}

/// Starts the hub's sweep task. It holds only a weak reference: dropping every `Hub`
/// handle ends it.
pub(crate) fn spawn(hub: &Hub) {
    let weak = Arc::downgrade(&hub.0);
    let interval = hub.config().ping_interval;
    let mut shutdown = hub.shutdown_signal();
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("Hub built outside a tokio runtime: no liveness sweep");
        return;
    };
    rt.spawn(async move {
        let mut next_sweep = Instant::now() + interval;
        loop {
            let Some(inner) = weak.upgrade() else { return };
            let notify = inner.reaper.changed.clone();
            let changed = notify.notified();
            let until_expiry = inner.reaper.next_expiry();
            drop(inner);
            let wake = match until_expiry {
                Some(d) => next_sweep.min(Instant::now() + d),
                None => next_sweep,
            };
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = changed => {}
                _ = shutdown.changed() => return,
            }
            let Some(inner) = weak.upgrade() else { return };
            let hub = Hub(inner);
            expire(&hub);
            if Instant::now() >= next_sweep {
                sweep(&hub);
                next_sweep = Instant::now() + interval;
            }
        }
    });
}

/// Closes connections whose token expired.
fn expire(hub: &Hub) {
    for conn_id in hub.0.reaper.take_due(SystemTime::now()) {
        if let Some(entry) = hub.0.conns.get(&conn_id).map(|e| e.clone()) {
            tracing::info!(conn_id, user = %entry.identity.user_id, "token expired (1008)");
            entry.outbound.close_now(CloseCode::Policy, "token expired");
            hub.0
                .expired
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            hub.disconnect(conn_id);
        }
    }
}

/// Pings every connection and reaps those silent for longer than `pong_timeout`.
pub(crate) fn sweep(hub: &Hub) {
    let timeout = hub.config().pong_timeout;
    let now = Instant::now();
    let mut dead = Vec::new();
    for entry in hub.0.conns.iter() {
        if now.saturating_duration_since(entry.outbound.last_seen()) > timeout {
            dead.push(entry.clone());
        } else {
            entry.outbound.ping();
        }
    }
    for entry in dead {
        tracing::info!(conn_id = entry.id, user = %entry.identity.user_id, "no pong: reaping");
        entry.outbound.close_now(CloseCode::Away, "ping timeout");
        hub.0
            .reaped
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        hub.disconnect(entry.id);
    }
    hub.prune_rooms();
}
