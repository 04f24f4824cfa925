//! Prometheus metrics (feature `metrics`): what the hub, its sessions and its
//! connections record, and the text exposition of it.
//!
//! Recording is built for the hot paths: every counter lives in per-thread shards
//! ([`sharded`]), so connections on different cores never add to the same cache line,
//! and a fan-out adds its deliveries once per publish (it knows how many it queued),
//! never once per member. Gauges (connections, rooms, users in presence) are not
//! recorded at all: a scrape reads them from the hub's own tables.
//!
//! No label takes unbounded values: there are no room, user or connection labels;
//! `namespace` (declared when the hub is built), close codes by class, HTTP statuses of
//! refusals, the limit that refused a message and a join's replay outcome are fixed
//! sets, each series exported from the start at zero.
//!
//! Without the feature, [`Metrics`] is an empty enum: the hub holds `None` of it and
//! every recording call compiles to nothing.
//!
//! With a backplane (feature `redis`) a scrape also reads its counts (Redis failures
//! by operation, gaps filled, continuity lost) and how many bus messages wait: kept as
//! atomics on the backplane's own state, since they are rare or read as a gauge.

#[cfg(feature = "metrics")]
mod expose;
#[cfg(feature = "metrics")]
mod record;
#[cfg(feature = "metrics")]
mod sharded;

#[cfg(all(feature = "metrics", feature = "axum"))]
pub(crate) use expose::CONTENT_TYPE;
#[cfg(all(feature = "metrics", feature = "redis"))]
pub(crate) use record::BackplaneGauges;
#[cfg(feature = "metrics")]
pub(crate) use record::{Gauges, Metrics, NamespaceGauges};

/// When a timed operation started (nothing without the feature).
#[cfg(not(feature = "metrics"))]
pub(crate) type Timer = ();

/// Stands for the metrics without the `metrics` feature: no value of it exists, so
/// the hub's `Option<Arc<Metrics>>` is always `None` and nothing is recorded.
#[cfg(not(feature = "metrics"))]
#[derive(Debug)]
pub(crate) enum Metrics {}

#[cfg(not(feature = "metrics"))]
#[allow(dead_code)]
impl Metrics {
    pub(crate) fn connection_opened(&self) {
        match *self {}
    }
    pub(crate) fn connection_closed(&self, _code: u16) {
        match *self {}
    }
    pub(crate) fn handshake_refused(&self, _status: Option<http::StatusCode>) {
        match *self {}
    }
    pub(crate) fn handshake_timed_out(&self) {
        match *self {}
    }
    pub(crate) fn handshake_done(&self, _elapsed: std::time::Duration) {
        match *self {}
    }
    pub(crate) fn client_message(&self) {
        match *self {}
    }
    pub(crate) fn publish_received(&self, _room: &str) {
        match *self {}
    }
    pub(crate) fn start_timer(&self) -> Timer {
        match *self {}
    }
    pub(crate) fn ns_index(&self, _room: &str) -> Option<usize> {
        match *self {}
    }
    pub(crate) fn published(&self, _ns: Option<usize>, _delivered: usize, _started: Timer) {
        match *self {}
    }
    pub(crate) fn rate_limited(&self, _limit: RateLimit) {
        match *self {}
    }
    pub(crate) fn flood_closed(&self) {
        match *self {}
    }
    pub(crate) fn replay(&self, _outcome: ReplayOutcome) {
        match *self {}
    }
}

/// The close-code classes `wshub_connections_closed_total` counts by (label `code`):
/// each code RFC 6455 defines (1004 and 1015 are never sent), then ranges.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) const CLOSE_CODE_CLASSES: [&str; 17] = [
    "1000", "1001", "1002", "1003", "1005", "1006", "1007", "1008", "1009", "1010", "1011", "1012",
    "1013", "1014", "3xxx", "4xxx", "other",
];

/// The `code` label of a close code: itself when RFC 6455 defines it, `3xxx` for the
/// codes registered with IANA (libraries, frameworks), `4xxx` for the application's
/// own (`Connection::close`, `Hub::disconnect_user`), `other` for anything else. As
/// an index into [`CLOSE_CODE_CLASSES`].
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) fn close_code_class(code: u16) -> usize {
    match code {
        1000..=1003 => usize::from(code - 1000),
        1005..=1014 => usize::from(code - 1005) + 4,
        3000..=3999 => 14,
        4000..=4999 => 15,
        _ => 16,
    }
}

/// The `status` label values of `wshub_handshakes_refused_total`: the HTTP statuses
/// the hub refuses handshakes with, `other` for any other (an authenticator's own),
/// and `none` for a connection closed without an answer (a TLS connection over a
/// pending cap).
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) const REFUSAL_STATUSES: [&str; 13] = [
    "400", "401", "403", "404", "405", "408", "426", "429", "431", "500", "503", "other", "none",
];

/// The `status` label of a refusal, as an index into [`REFUSAL_STATUSES`].
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) fn refusal_status_class(status: Option<http::StatusCode>) -> usize {
    let Some(status) = status else {
        return REFUSAL_STATUSES.len() - 1;
    };
    let code = status.as_str();
    REFUSAL_STATUSES[..REFUSAL_STATUSES.len() - 2]
        .iter()
        .position(|s| *s == code)
        .unwrap_or(REFUSAL_STATUSES.len() - 2)
}

/// Which limit refused a client's message (`wshub_rate_limited_total`, label `limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) enum RateLimit {
    /// The connection's own message rate (`rate_per_second`).
    Connection,
    /// The user's, across their connections (`user_rate_per_second`).
    User,
    /// The host's, across its connections (`host_rate_per_second`).
    Host,
    /// Joins and leaves (`membership_rate_per_second`).
    Membership,
    /// Publishes waiting for an async hook (`max_pending_publishes`).
    PendingPublishes,
    /// RPCs running at once (`max_rpc_in_flight`).
    RpcInFlight,
}

impl RateLimit {
    /// Every limit, in label order.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) const ALL: [RateLimit; 6] = [
        RateLimit::Connection,
        RateLimit::User,
        RateLimit::Host,
        RateLimit::Membership,
        RateLimit::PendingPublishes,
        RateLimit::RpcInFlight,
    ];

    /// The `limit` label.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn label(self) -> &'static str {
        match self {
            RateLimit::Connection => "connection",
            RateLimit::User => "user",
            RateLimit::Host => "host",
            RateLimit::Membership => "membership",
            RateLimit::PendingPublishes => "pending_publishes",
            RateLimit::RpcInFlight => "rpc_in_flight",
        }
    }
}

/// What a join got from the room's history (`wshub_join_replays_total`, label
/// `outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) enum ReplayOutcome {
    /// A join with `since` got everything after it (`recovered: true`).
    Recovered,
    /// A join with `since` could not be given everything (`recovered: false`).
    NotRecovered,
    /// A fresh join asked for the last N messages (`history`).
    History,
}

impl ReplayOutcome {
    /// Every outcome, in label order.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) const ALL: [ReplayOutcome; 3] = [
        ReplayOutcome::Recovered,
        ReplayOutcome::NotRecovered,
        ReplayOutcome::History,
    ];

    /// The `outcome` label.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn label(self) -> &'static str {
        match self {
            ReplayOutcome::Recovered => "recovered",
            ReplayOutcome::NotRecovered => "not_recovered",
            ReplayOutcome::History => "history",
        }
    }
}

/// The namespace part of a room name (`chat` of `chat:lobby`).
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) fn namespace_of(room: &str) -> &str {
    room.split_once(':').map_or(room, |(ns, _)| ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_fall_in_bounded_classes() {
        let class = |code| CLOSE_CODE_CLASSES[close_code_class(code)];
        assert_eq!(class(1000), "1000");
        assert_eq!(class(1001), "1001");
        assert_eq!(class(1003), "1003");
        assert_eq!(class(1004), "other"); // reserved, never sent
        assert_eq!(class(1005), "1005");
        assert_eq!(class(1006), "1006");
        assert_eq!(class(1008), "1008");
        assert_eq!(class(1013), "1013");
        assert_eq!(class(1014), "1014");
        assert_eq!(class(1015), "other");
        assert_eq!(class(2999), "other");
        assert_eq!(class(3000), "3xxx");
        assert_eq!(class(3999), "3xxx");
        assert_eq!(class(4000), "4xxx");
        assert_eq!(class(4003), "4xxx");
        assert_eq!(class(4999), "4xxx");
        assert_eq!(class(5000), "other");
        assert_eq!(class(0), "other");
        assert_eq!(class(u16::MAX), "other");
        // Every class is reached by some code, and each code lands in exactly one.
        let mut seen = [false; CLOSE_CODE_CLASSES.len()];
        for code in 0..=u16::MAX {
            seen[close_code_class(code)] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn refusal_statuses_are_bounded() {
        use http::StatusCode;
        let class = |s: Option<StatusCode>| REFUSAL_STATUSES[refusal_status_class(s)];
        assert_eq!(class(Some(StatusCode::UNAUTHORIZED)), "401");
        assert_eq!(class(Some(StatusCode::FORBIDDEN)), "403");
        assert_eq!(class(Some(StatusCode::TOO_MANY_REQUESTS)), "429");
        assert_eq!(class(Some(StatusCode::SERVICE_UNAVAILABLE)), "503");
        assert_eq!(
            class(Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)),
            "431"
        );
        assert_eq!(class(Some(StatusCode::UPGRADE_REQUIRED)), "426");
        assert_eq!(class(Some(StatusCode::IM_A_TEAPOT)), "other");
        assert_eq!(class(Some(StatusCode::PAYMENT_REQUIRED)), "other");
        assert_eq!(class(None), "none");
    }

    #[test]
    fn namespace_of_a_room() {
        assert_eq!(namespace_of("chat:lobby"), "chat");
        assert_eq!(namespace_of("chat:a:b"), "chat");
        assert_eq!(namespace_of("nocolon"), "nocolon");
    }
}
