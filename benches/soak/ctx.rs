//! What every client task shares: where the server is, the stop signal, the
//! counters, and the few things clients tell each other.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::options::Options;
use crate::stats::Stats;

/// What every client task shares.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// The chat server.
    pub(crate) addr: SocketAddr,
    /// Cancelled when the run is over: every loop and every long wait watches it.
    pub(crate) stop: CancellationToken,
    /// What the load did.
    pub(crate) stats: Stats,
    /// The load's parameters.
    pub(crate) opts: Options,
    /// Makes display names unique per login (`soak1`, `soak2`, ...): plain ASCII
    /// letters and digits, which any name rule accepts, and never two logins with
    /// one name.
    next_name: AtomicU64,
    /// Names whose client has gone, with their still-valid tokens: the next login
    /// takes one back (the chat keeps a name for its token's holder), so the chat's
    /// registry of names (held until their tokens expire, at most 10,000) holds about
    /// as many names as there are clients, however long the churn runs. A std mutex
    /// held for a push or a pop.
    free_names: std::sync::Mutex<Vec<(String, String)>>,
    /// Makes the churners' private rooms unique (`chat:c1`, ...), so rooms are created
    /// and dropped all the time.
    next_room: AtomicU64,
    /// Slow consumers by user id, woken when a member of their room sees them leave
    /// (see `load::slow_consumer`). A std mutex: a lookup per presence diff, never
    /// held across an `.await`.
    watched: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Ctx {
    /// A context for a run against `addr`.
    pub(crate) fn new(addr: SocketAddr, opts: Options) -> Ctx {
        Ctx {
            addr,
            stop: CancellationToken::new(),
            stats: Stats::default(),
            opts,
            next_name: AtomicU64::new(1),
            free_names: std::sync::Mutex::new(Vec::new()),
            next_room: AtomicU64::new(1),
            watched: Mutex::new(HashMap::new()),
        }
    }

    /// Wakes the returned `Notify` when any client sees `user` leave a room.
    pub(crate) fn watch_leave(&self, user: &str) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        self.watched_map().insert(user.to_owned(), notify.clone());
        notify
    }

    /// Stops watching `user`.
    pub(crate) fn unwatch(&self, user: &str) {
        self.watched_map().remove(user);
    }

    /// The watched slow consumers (locked: keep it short, never across an `.await`).
    pub(crate) fn watched_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        self.watched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the run is over.
    pub(crate) fn stopped(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// A display name to log in with, and the token that holds it if it was used
    /// before.
    pub(crate) fn take_name(&self) -> (String, Option<String>) {
        let reused = self
            .free_names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        match reused {
            Some((name, token)) => (name, Some(token)),
            None => (
                format!("soak{}", self.next_name.fetch_add(1, Ordering::Relaxed)),
                None,
            ),
        }
    }

    /// Gives a name (and its token) back for a later login.
    pub(crate) fn release_name(&self, name: String, token: String) {
        self.free_names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((name, token));
    }

    /// A new room name for a churner.
    pub(crate) fn fresh_room(&self) -> String {
        format!("chat:c{}", self.next_room.fetch_add(1, Ordering::Relaxed))
    }

    /// Sleeps `d`, or less if the run ends; `false` if it ended.
    pub(crate) async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d) => true,
            () = self.stop.cancelled() => false,
        }
    }
}

/// Why a connection (or an attempt at one) ended. What happened is already counted.
#[derive(Debug)]
pub(crate) enum End {
    /// The run is over: close politely.
    Stopped,
    /// The server sent a close frame with this code (none: `None`).
    Closed(Option<u16>),
    /// Refused (429/503 to the login or the handshake): try again later.
    Refused,
    /// An error or a timeout.
    Failed,
}
