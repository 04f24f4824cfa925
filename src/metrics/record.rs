//! [`Metrics`]: the counters and histograms one hub records into, laid out in one
//! [`Sharded`] block, and what a scrape reads from the hub besides ([`Gauges`]).

use std::fmt;
use std::time::Duration;

use super::sharded::{Local, Sharded};
use super::{
    CLOSE_CODE_CLASSES, REFUSAL_STATUSES, RateLimit, ReplayOutcome, close_code_class, namespace_of,
    refusal_status_class,
};
use crate::ws::ConnObserver;

/// Upper bounds of `wshub_fanout_duration_seconds`, in nanoseconds (what an
/// observation is compared with: integers, no conversion on the publish path): 10 µs
/// (one member, nothing else waiting) to 1 s (a store that makes appends wait, 10,000s
/// of members).
const FANOUT_BUCKETS_NS: [u64; 16] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
];

/// [`FANOUT_BUCKETS_NS`] in seconds, as exported.
pub(super) const FANOUT_BUCKETS: [f64; 16] = seconds(FANOUT_BUCKETS_NS);

/// Upper bounds of `wshub_handshake_duration_seconds` and `wshub_ping_rtt_seconds`, in
/// nanoseconds: 0.5 ms (loopback) to 10 s (the default `handshake_timeout`; a pong
/// later than that is a connection about to be reaped).
const NETWORK_BUCKETS_NS: [u64; 14] = [
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// [`NETWORK_BUCKETS_NS`] in seconds, as exported.
pub(super) const NETWORK_BUCKETS: [f64; 14] = seconds(NETWORK_BUCKETS_NS);

/// Nanosecond bounds as seconds (each the nearest `f64` to the exact value, as the
/// decimal literal would be).
const fn seconds<const N: usize>(ns: [u64; N]) -> [f64; N] {
    let mut out = [0.0; N];
    let mut i = 0;
    while i < N {
        out[i] = ns[i] as f64 / 1e9;
        i += 1;
    }
    out
}

/// A histogram's place in the block: one counter per bucket, one for observations
/// over the last bound, and the sum in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub(super) struct HistogramIds {
    /// The first bucket's counter; the overflow follows the last bucket, the sum the
    /// overflow.
    first: usize,
    /// The bounds in seconds, as exported.
    bounds: &'static [f64],
    /// The same bounds in nanoseconds, as compared.
    bounds_ns: &'static [u64],
}

impl HistogramIds {
    fn width(bounds: &[f64]) -> usize {
        bounds.len() + 2
    }

    fn sum_id(&self) -> usize {
        self.first + self.bounds.len() + 1
    }
}

/// Where each counter sits in the block.
#[derive(Debug)]
struct Layout {
    opened: usize,
    client_messages: usize,
    received_bytes: usize,
    received_payload_bytes: usize,
    sent_bytes: usize,
    sent_payload_bytes: usize,
    flood_closes: usize,
    handshake_timeouts: usize,
    /// `CLOSE_CODE_CLASSES.len()` counters from here.
    closed: usize,
    /// `REFUSAL_STATUSES.len()` from here.
    refused: usize,
    /// `RateLimit::ALL.len()` from here.
    rate_limited: usize,
    /// `ReplayOutcome::ALL.len()` from here.
    replays: usize,
    /// One per namespace from each of these.
    publishes_received: usize,
    published: usize,
    deliveries: usize,
    fanout: HistogramIds,
    handshake: HistogramIds,
    ping_rtt: HistogramIds,
    width: usize,
}

impl Layout {
    fn new(namespaces: usize) -> Self {
        let mut next = 0;
        let mut take = |n: usize| {
            let id = next;
            next += n;
            id
        };
        let mut layout = Layout {
            opened: take(1),
            client_messages: take(1),
            received_bytes: take(1),
            received_payload_bytes: take(1),
            sent_bytes: take(1),
            sent_payload_bytes: take(1),
            flood_closes: take(1),
            handshake_timeouts: take(1),
            closed: take(CLOSE_CODE_CLASSES.len()),
            refused: take(REFUSAL_STATUSES.len()),
            rate_limited: take(RateLimit::ALL.len()),
            replays: take(ReplayOutcome::ALL.len()),
            publishes_received: take(namespaces),
            published: take(namespaces),
            deliveries: take(namespaces),
            fanout: HistogramIds {
                first: take(HistogramIds::width(&FANOUT_BUCKETS)),
                bounds: &FANOUT_BUCKETS,
                bounds_ns: &FANOUT_BUCKETS_NS,
            },
            handshake: HistogramIds {
                first: take(HistogramIds::width(&NETWORK_BUCKETS)),
                bounds: &NETWORK_BUCKETS,
                bounds_ns: &NETWORK_BUCKETS_NS,
            },
            ping_rtt: HistogramIds {
                first: take(HistogramIds::width(&NETWORK_BUCKETS)),
                bounds: &NETWORK_BUCKETS,
                bounds_ns: &NETWORK_BUCKETS_NS,
            },
            width: 0,
        };
        layout.width = next;
        layout
    }
}

/// What one hub records (feature `metrics`). Shared by the hub, its sessions and its
/// connections' engines (as their [`ConnObserver`]) through an `Arc`.
pub(crate) struct Metrics {
    /// The clock publishes are timed with.
    clock: quanta::Clock,
    counters: Sharded,
    layout: Layout,
    /// The declared namespaces, sorted: the `namespace` label values, and the index of
    /// each one's counters.
    namespaces: Box<[Box<str>]>,
}

/// When a timed operation started: a raw clock reading of [`Metrics`]'s clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timer(u64);

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("namespaces", &self.namespaces)
            .finish_non_exhaustive()
    }
}

/// A histogram as a scrape reads it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct HistogramValue {
    /// `(upper bound, observations in this bucket alone)`, then `(+Inf, overflow)`.
    pub(super) buckets: Vec<(f64, u64)>,
    pub(super) count: u64,
    /// In seconds.
    pub(super) sum: f64,
}

impl Metrics {
    /// Metrics for a hub with these namespaces (their names).
    pub(crate) fn new<'a>(namespaces: impl IntoIterator<Item = &'a str>) -> Self {
        let mut names: Vec<Box<str>> = namespaces.into_iter().map(Box::from).collect();
        names.sort_unstable();
        let layout = Layout::new(names.len());
        Metrics {
            clock: quanta::Clock::new(),
            counters: Sharded::new(layout.width),
            layout,
            namespaces: names.into_boxed_slice(),
        }
    }

    /// The declared namespaces, sorted.
    pub(super) fn namespaces(&self) -> &[Box<str>] {
        &self.namespaces
    }

    /// How many namespaces (the length [`Gauges::namespaces`] must have).
    pub(crate) fn namespace_count(&self) -> usize {
        self.namespaces.len()
    }

    /// The index of the namespace of room `room`. A handful of short string
    /// comparisons: cheaper than hashing, for the few namespaces a hub declares.
    #[inline]
    pub(crate) fn ns_index(&self, room: &str) -> Option<usize> {
        let ns = namespace_of(room);
        self.namespaces.iter().position(|n| **n == *ns)
    }

    fn observe(&self, h: HistogramIds, elapsed: Duration) {
        self.observe_in(&self.counters.local(), h, elapsed);
    }

    /// [`observe`](Self::observe) into a shard already looked up.
    #[inline]
    fn observe_in(&self, local: &Local<'_>, h: HistogramIds, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = h
            .bounds_ns
            .iter()
            .position(|b| nanos <= *b)
            .unwrap_or(h.bounds_ns.len());
        local.add(h.first + bucket, 1);
        local.add(h.sum_id(), nanos);
    }

    /// A connection was upgraded and its session started.
    pub(crate) fn connection_opened(&self) {
        self.counters.add(self.layout.opened, 1);
    }

    /// A connection ended with close `code` (1006 when it ended without a close frame).
    pub(crate) fn connection_closed(&self, code: u16) {
        self.counters
            .add(self.layout.closed + close_code_class(code), 1);
    }

    /// A handshake was refused with `status` (`None`: closed without an answer).
    pub(crate) fn handshake_refused(&self, status: Option<http::StatusCode>) {
        self.counters
            .add(self.layout.refused + refusal_status_class(status), 1);
    }

    /// A connection did not finish its handshake within `handshake_timeout`.
    pub(crate) fn handshake_timed_out(&self) {
        self.counters.add(self.layout.handshake_timeouts, 1);
    }

    /// A handshake succeeded, `elapsed` after the connection was accepted.
    pub(crate) fn handshake_done(&self, elapsed: Duration) {
        self.observe(self.layout.handshake, elapsed);
    }

    /// A client sent a message (any op).
    pub(crate) fn client_message(&self) {
        self.counters.add(self.layout.client_messages, 1);
    }

    /// A client's `publish` to `room` (a room it is in) arrived.
    pub(crate) fn publish_received(&self, room: &str) {
        if let Some(i) = self.ns_index(room) {
            self.counters.add(self.layout.publishes_received + i, 1);
        }
    }

    /// Starts timing a publish: one TSC read ([`quanta`]), about a quarter of a std
    /// clock read here, because a publish to one member takes only about 400 ns.
    pub(crate) fn start_timer(&self) -> Timer {
        Timer(self.clock.raw())
    }

    /// A message was published to `room` and queued for `delivered` connections,
    /// timed from `started` (the publish call) to the end of its fan-out. Once per
    /// publish, not per member.
    /// `ns` is the room's namespace slot ([`ns_index`](Self::ns_index), looked up
    /// once when the room was created).
    pub(crate) fn published(&self, ns: Option<usize>, delivered: usize, started: Timer) {
        let elapsed = self.clock.delta(started.0, self.clock.raw());
        self.published_in(ns, delivered, elapsed);
    }

    /// [`published`](Self::published), taking `elapsed`.
    pub(crate) fn published_in(&self, ns: Option<usize>, delivered: usize, elapsed: Duration) {
        // One shard look-up for the four adds: this runs once per publish.
        let local = self.counters.local();
        if let Some(i) = ns {
            local.add(self.layout.published + i, 1);
            local.add(self.layout.deliveries + i, delivered as u64);
        }
        self.observe_in(&local, self.layout.fanout, elapsed);
    }

    /// A client's message was refused by `limit` (answered `rate_limited`).
    pub(crate) fn rate_limited(&self, limit: RateLimit) {
        let i = RateLimit::ALL.iter().position(|l| *l == limit).unwrap_or(0);
        self.counters.add(self.layout.rate_limited + i, 1);
    }

    /// A connection was closed with 1008 for flooding.
    pub(crate) fn flood_closed(&self) {
        self.counters.add(self.layout.flood_closes, 1);
    }

    /// A join read the room's history with this outcome.
    pub(crate) fn replay(&self, outcome: ReplayOutcome) {
        let i = ReplayOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        self.counters.add(self.layout.replays + i, 1);
    }

    // What a scrape reads.

    pub(super) fn opened(&self) -> u64 {
        self.counters.get(self.layout.opened)
    }
    pub(super) fn client_messages(&self) -> u64 {
        self.counters.get(self.layout.client_messages)
    }
    pub(super) fn received_bytes(&self) -> (u64, u64) {
        (
            self.counters.get(self.layout.received_bytes),
            self.counters.get(self.layout.received_payload_bytes),
        )
    }
    pub(super) fn sent_bytes(&self) -> (u64, u64) {
        (
            self.counters.get(self.layout.sent_bytes),
            self.counters.get(self.layout.sent_payload_bytes),
        )
    }
    pub(super) fn flood_closes(&self) -> u64 {
        self.counters.get(self.layout.flood_closes)
    }
    pub(super) fn handshake_timeouts(&self) -> u64 {
        self.counters.get(self.layout.handshake_timeouts)
    }
    pub(super) fn closed(&self, class: usize) -> u64 {
        self.counters.get(self.layout.closed + class)
    }
    pub(super) fn refused(&self, class: usize) -> u64 {
        self.counters.get(self.layout.refused + class)
    }
    pub(super) fn rate_limited_count(&self, i: usize) -> u64 {
        self.counters.get(self.layout.rate_limited + i)
    }
    pub(super) fn replays(&self, i: usize) -> u64 {
        self.counters.get(self.layout.replays + i)
    }
    /// `(received, published, deliveries)` of namespace `i`.
    pub(super) fn namespace_counts(&self, i: usize) -> (u64, u64, u64) {
        (
            self.counters.get(self.layout.publishes_received + i),
            self.counters.get(self.layout.published + i),
            self.counters.get(self.layout.deliveries + i),
        )
    }
    pub(super) fn fanout(&self) -> HistogramValue {
        self.histogram(self.layout.fanout)
    }
    pub(super) fn handshake(&self) -> HistogramValue {
        self.histogram(self.layout.handshake)
    }
    pub(super) fn ping_rtt(&self) -> HistogramValue {
        self.histogram(self.layout.ping_rtt)
    }

    fn histogram(&self, h: HistogramIds) -> HistogramValue {
        let mut buckets: Vec<(f64, u64)> = h
            .bounds
            .iter()
            .enumerate()
            .map(|(i, b)| (*b, self.counters.get(h.first + i)))
            .collect();
        buckets.push((f64::INFINITY, self.counters.get(h.first + h.bounds.len())));
        // The count is the buckets' sum, read from the same loads, so `_count` always
        // equals the `+Inf` bucket.
        let count = buckets.iter().map(|b| b.1).fold(0u64, u64::wrapping_add);
        HistogramValue {
            buckets,
            count,
            sum: self.counters.get(h.sum_id()) as f64 / 1e9,
        }
    }
}

impl ConnObserver for Metrics {
    #[inline]
    fn read(&self, n: usize) {
        self.counters.add(self.layout.received_bytes, n as u64);
    }
    #[inline]
    fn message_received(&self, payload: usize) {
        self.counters
            .add(self.layout.received_payload_bytes, payload as u64);
    }
    #[inline]
    fn written(&self, n: usize) {
        self.counters.add(self.layout.sent_bytes, n as u64);
    }
    #[inline]
    fn payload_sent(&self, payload: usize) {
        self.counters
            .add(self.layout.sent_payload_bytes, payload as u64);
    }
    fn pong(&self, rtt: Duration) {
        self.observe(self.layout.ping_rtt, rtt);
    }
}

/// What a scrape reads from the hub itself rather than from counters: what is open
/// now, and the hub's own counts of rare events.
#[derive(Debug, Default)]
pub(crate) struct Gauges {
    /// Connections open now.
    pub(crate) connections: usize,
    /// Connections accepted and not yet upgraded.
    pub(crate) pending: usize,
    /// Distinct users with a connection open.
    pub(crate) users: usize,
    /// Per namespace, in the order of [`Metrics`]' namespaces (sorted).
    pub(crate) namespaces: Vec<NamespaceGauges>,
    /// Connections closed with 1013 (slow consumers), since the hub started.
    pub(crate) slow_consumers: u64,
    /// Connections closed by the liveness sweep (no pong).
    pub(crate) ping_timeouts: u64,
    /// Connections closed because their token expired.
    pub(crate) token_expiries: u64,
    /// Messages and bytes of stored history.
    pub(crate) history_messages: usize,
    pub(crate) history_bytes: usize,
    /// The backplane's counts; `None` without one (no backplane series then).
    pub(crate) backplane: Option<BackplaneGauges>,
}

/// What a backplane (feature `redis`) counted, read at scrape time from its atomics:
/// Redis failures and how far behind the bus is.
#[derive(Debug, Default, Clone, Copy)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct BackplaneGauges {
    /// Publishes that failed `unavailable` (Redis unreachable, or this node's
    /// subscription down).
    pub(crate) publish_errors: u64,
    /// Presence writes, heartbeats and re-syncs that failed, and writes dropped on a
    /// full queue (each repaired by the next re-sync).
    pub(crate) presence_errors: u64,
    /// Times the bus subscription was lost (each followed by a resubscription and a
    /// check of every room).
    pub(crate) subscription_losses: u64,
    /// Gaps in a room's stream on this node filled from history.
    pub(crate) gaps_filled: u64,
    /// Rooms whose members were closed with 1013 because history could not fill a gap.
    pub(crate) continuity_losses: u64,
    /// Bus messages received from Redis and not yet taken by the hub, as of the last
    /// one taken: how far behind the bus this node is.
    pub(crate) bus_queue: usize,
}

/// One namespace's gauges.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct NamespaceGauges {
    /// Rooms that exist now.
    pub(crate) rooms: usize,
    /// Users in its rooms' presence, summed over rooms (a user in two rooms counts
    /// twice; a user with two tabs in one room once).
    pub(crate) presence_users: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_in_nanoseconds_match_the_exported_seconds() {
        for (secs, nanos) in [
            (&FANOUT_BUCKETS[..], &FANOUT_BUCKETS_NS[..]),
            (&NETWORK_BUCKETS[..], &NETWORK_BUCKETS_NS[..]),
        ] {
            assert_eq!(secs.len(), nanos.len());
            for (s, n) in secs.iter().zip(nanos) {
                assert_eq!((s * 1e9).round() as u64, *n, "{s}");
            }
        }
    }
}
