//! What the load did: counters the client tasks bump and the sampler takes every
//! interval, the legitimate clients' round trips, and a short list of what went wrong.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// One thing the load counts. The order is the CSV's column order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Count {
    /// `POST /login` answered with a token.
    Logins,
    /// `POST /login` refused with 429 or 503 (a limit, not a failure).
    LoginsRefused,
    /// WebSocket handshakes that succeeded.
    Connects,
    /// WebSocket handshakes refused with 429 or 503.
    HandshakesRefused,
    /// Joins answered `ok`.
    Joins,
    /// Leaves answered `ok`.
    Leaves,
    /// Publishes sent (with or without an id).
    Publishes,
    /// Publish replies with `ok: true`.
    Acks,
    /// `message`s received (the fan-out).
    Received,
    /// `presence_diff`s received.
    Diffs,
    /// `rate_limited` replies and errors (an outcome: the limit working).
    RateLimited,
    /// Connections the server closed with 1013 (slow consumer).
    Closed1013,
    /// Connections the server closed with 1008 (flooding, expired token).
    Closed1008,
    /// Connections the server closed with another code.
    ClosedOther,
    /// Slow consumers still open after `--slow-max-secs` (they close and come back).
    SlowSurvived,
    /// Legitimate round trips with no echo within 10 s.
    LegitLost,
    /// Legitimate clients the server closed (they should never be).
    LegitClosed,
    /// Everything else that went wrong: I/O errors, timeouts, unexpected statuses.
    Errors,
}

impl Count {
    /// Every counter, in column order.
    pub(crate) const ALL: [Count; 18] = [
        Count::Logins,
        Count::LoginsRefused,
        Count::Connects,
        Count::HandshakesRefused,
        Count::Joins,
        Count::Leaves,
        Count::Publishes,
        Count::Acks,
        Count::Received,
        Count::Diffs,
        Count::RateLimited,
        Count::Closed1013,
        Count::Closed1008,
        Count::ClosedOther,
        Count::SlowSurvived,
        Count::LegitLost,
        Count::LegitClosed,
        Count::Errors,
    ];

    /// The CSV column name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Count::Logins => "logins",
            Count::LoginsRefused => "logins_refused",
            Count::Connects => "connects",
            Count::HandshakesRefused => "handshakes_refused",
            Count::Joins => "joins",
            Count::Leaves => "leaves",
            Count::Publishes => "publishes",
            Count::Acks => "acks",
            Count::Received => "received",
            Count::Diffs => "presence_diffs",
            Count::RateLimited => "rate_limited",
            Count::Closed1013 => "closed_1013",
            Count::Closed1008 => "closed_1008",
            Count::ClosedOther => "closed_other",
            Count::SlowSurvived => "slow_survived",
            Count::LegitLost => "legit_lost",
            Count::LegitClosed => "legit_closed",
            Count::Errors => "errors",
        }
    }
}

/// Counters per interval, indexed like [`Count::ALL`].
pub(crate) type Counts = [u64; Count::ALL.len()];

/// Most distinct entries in the details list; later ones are lumped together, so a
/// run that fails in many ways cannot grow it without bound.
const MAX_DETAILS: usize = 64;
/// Most round trips kept between two samples (far more than the defaults produce).
const MAX_RTTS: usize = 100_000;

/// Shared by every client task. Atomics for the hot counters (bumped on every message,
/// by tasks on every worker thread); mutexes only for the rare or small lists, never
/// held across an `.await`.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    counts: [AtomicU64; Count::ALL.len()],
    /// Client connections open now.
    open: AtomicI64,
    /// Round trips of the legitimate clients since the last sample, in microseconds.
    rtts: Mutex<Vec<u32>>,
    /// What went wrong or ended unusually, by kind, for the whole run.
    details: Mutex<BTreeMap<String, u64>>,
}

impl Stats {
    /// Counts one `c`.
    pub(crate) fn add(&self, c: Count) {
        self.add_n(c, 1);
    }

    /// Counts `n` of `c`.
    pub(crate) fn add_n(&self, c: Count, n: u64) {
        self.counts[c as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Counts an error and remembers its kind (keep `what` free of ids and numbers
    /// that change every time, or the list fills with one entry per error).
    pub(crate) fn error(&self, what: impl Into<String>) {
        self.add(Count::Errors);
        self.detail(what);
    }

    /// Remembers something unusual that is not an error (a close code, a refusal).
    pub(crate) fn detail(&self, what: impl Into<String>) {
        let mut details = self.details.lock().unwrap_or_else(|e| e.into_inner());
        let what = what.into();
        let key = if details.len() < MAX_DETAILS || details.contains_key(&what) {
            what
        } else {
            "(other kinds)".to_owned()
        };
        *details.entry(key).or_insert(0) += 1;
    }

    /// Records a legitimate client's round trip.
    pub(crate) fn rtt(&self, micros: u32) {
        let mut rtts = self.rtts.lock().unwrap_or_else(|e| e.into_inner());
        if rtts.len() < MAX_RTTS {
            rtts.push(micros);
        }
    }

    /// A connection opened; the guard counts it closed when dropped.
    pub(crate) fn opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection closed.
    pub(crate) fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> i64 {
        self.open.load(Ordering::Relaxed)
    }

    /// The counts since the last call (and resets them).
    pub(crate) fn take(&self) -> Counts {
        std::array::from_fn(|i| self.counts[i].swap(0, Ordering::Relaxed))
    }

    /// The round trips since the last call.
    pub(crate) fn take_rtts(&self) -> Vec<u32> {
        std::mem::take(&mut *self.rtts.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The details list.
    pub(crate) fn details(&self) -> BTreeMap<String, u64> {
        self.details
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The `p`th percentile (nearest rank) of sorted `v`, in milliseconds.
pub(crate) fn percentile_ms(sorted: &[u32], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted.len()) - 1;
    Some(f64::from(sorted[i]) / 1000.0)
}

/// Least-squares slope of `y` over `x`; `None` with fewer than two distinct `x`.
pub(crate) fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}
