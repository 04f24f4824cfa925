//! The hub's side of its Prometheus metrics (feature `metrics`): building them, and
//! what a scrape reads from the hub's own tables (connections, rooms, presence). What
//! is recorded, and how cheaply, is `crate::metrics`'s.

use std::sync::Arc;

use super::{Hub, HubConfig};
use crate::metrics::Metrics;

/// The metrics of a hub with `config` and these namespaces: `None` without the
/// feature, or with [`HubConfig::metrics`] off.
pub(super) fn build<'a>(
    config: &HubConfig,
    namespaces: impl Iterator<Item = &'a String>,
) -> Option<Arc<Metrics>> {
    #[cfg(feature = "metrics")]
    if config.metrics {
        return Some(Arc::new(Metrics::new(namespaces.map(String::as_str))));
    }
    let _ = (config, namespaces);
    None
}

impl Hub {
    /// What to record into, if anything.
    #[inline]
    pub(crate) fn metrics(&self) -> Option<&Arc<Metrics>> {
        self.0.metrics.as_ref()
    }

    /// Every metric of this hub in the Prometheus text exposition format (version
    /// 0.0.4, `text/plain; version=0.0.4`), for an endpoint of the application's own;
    /// `None` when [`HubConfig::metrics`] is off. With axum,
    /// [`metrics_route`](Hub::metrics_route) serves it.
    ///
    /// Names follow Prometheus' conventions: a `wshub_` prefix, `_total` on counters,
    /// seconds and bytes. No label takes a room, user or connection: the labels are
    /// `namespace`, close `code` (by class), refusal `status`, rate `limit` and replay
    /// `outcome`, each a fixed set. Counters are summed from per-thread shards and the
    /// gauges read from the hub's tables as this runs: O(rooms) (each room's presence
    /// is counted, as [`Hub::rooms`] does), nothing held across it.
    ///
    /// | metric | type | labels | what |
    /// | --- | --- | --- | --- |
    /// | `wshub_connections` | gauge | | connections open |
    /// | `wshub_pending_connections` | gauge | | accepted, not yet upgraded |
    /// | `wshub_users` | gauge | | distinct users connected |
    /// | `wshub_connections_opened_total` | counter | | connections upgraded |
    /// | `wshub_connections_closed_total` | counter | `code` | connections ended, by the close code that began the closing (1006: none) |
    /// | `wshub_handshakes_refused_total` | counter | `status` | handshakes refused, by HTTP status (`none`: closed unanswered) |
    /// | `wshub_handshake_timeouts_total` | counter | | handshakes cut at `handshake_timeout` |
    /// | `wshub_handshake_duration_seconds` | histogram | | accept to upgrade |
    /// | `wshub_ping_rtt_seconds` | histogram | | liveness ping to pong |
    /// | `wshub_client_messages_total` | counter | | messages from clients (every op) |
    /// | `wshub_messages_received_total` | counter | `namespace` | client publishes to rooms they are in (past the rate limits, before the hook) |
    /// | `wshub_messages_published_total` | counter | `namespace` | publishes fanned out (client and server) |
    /// | `wshub_deliveries_total` | counter | `namespace` | messages queued for members |
    /// | `wshub_fanout_duration_seconds` | histogram | | one publish, call to every queue |
    /// | `wshub_received_bytes_total`, `wshub_sent_bytes_total` | counter | | bytes on the wire (compressed) |
    /// | `wshub_received_payload_bytes_total`, `wshub_sent_payload_bytes_total` | counter | | message payloads (uncompressed) |
    /// | `wshub_slow_consumers_total` | counter | | closed with 1013 |
    /// | `wshub_rate_limited_total` | counter | `limit` | messages refused `rate_limited` |
    /// | `wshub_rate_limit_closes_total` | counter | | closed with 1008 for flooding |
    /// | `wshub_ping_timeouts_total`, `wshub_token_expiries_total` | counter | | closed by the liveness sweep, by token expiry |
    /// | `wshub_rooms`, `wshub_presence_users` | gauge | `namespace` | rooms, users in presence (summed over rooms) |
    /// | `wshub_join_replays_total` | counter | `outcome` | joins given history: `recovered`, `not_recovered`, `history` |
    /// | `wshub_history_messages`, `wshub_history_bytes` | gauge | | stored history |
    /// | `wshub_backplane_errors_total` | counter | `op` | with a backplane: Redis failures, by `publish` (answered `unavailable`), `presence` (writes, heartbeats, re-syncs), `subscription` (the bus lost) |
    /// | `wshub_backplane_gaps_filled_total`, `wshub_backplane_continuity_losses_total` | counter | | with a backplane: gaps in a room's stream filled from history; rooms closed with 1013 because history could not fill one |
    /// | `wshub_backplane_bus_queue` | gauge | | with a backplane: bus messages waiting for this node, as of the last one taken |
    ///
    /// Behind the numbers, from Rust: [`Hub::rooms`] (each room's connections and
    /// users), [`Room::connections`](crate::Room::connections) (who is in a room),
    /// [`Hub::user_connections`] and [`Hub::stats`].
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// let hub = wshub::Hub::builder().build();
    /// let text = hub.metrics_text().expect("metrics are on by default");
    /// assert!(text.contains("# TYPE wshub_connections_opened_total counter"));
    /// # }
    /// ```
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn metrics_text(&self) -> Option<String> {
        let metrics = self.metrics()?;
        Some(metrics.render(self.gauges(metrics)))
    }

    /// What a scrape reads from the hub rather than from counters.
    #[cfg(feature = "metrics")]
    fn gauges(&self, metrics: &Metrics) -> crate::metrics::Gauges {
        use std::sync::atomic::Ordering;

        use crate::metrics::{Gauges, NamespaceGauges};

        let mut namespaces = vec![NamespaceGauges::default(); metrics.namespace_count()];
        for room in self.rooms() {
            if let Some(i) = metrics.ns_index(&room.name) {
                namespaces[i].rooms += 1;
                namespaces[i].presence_users += room.users.unwrap_or(0);
            }
        }
        let history = self.0.history.usage();
        Gauges {
            connections: self.0.conns.len(),
            pending: self.0.pending.current(),
            users: self.0.user_conns.len(),
            namespaces,
            slow_consumers: self.0.slow_consumers.load(Ordering::Relaxed),
            ping_timeouts: self.0.reaped.load(Ordering::Relaxed),
            token_expiries: self.0.expired.load(Ordering::Relaxed),
            history_messages: history.messages,
            history_bytes: history.bytes,
            #[cfg(feature = "redis")]
            backplane: self.0.cluster.as_ref().map(|c| c.counts.gauges()),
            #[cfg(not(feature = "redis"))]
            backplane: None,
        }
    }
}
