//! The text exposition: every metric of one hub, encoded by prometheus-client in the
//! Prometheus text format (version 0.0.4).
//!
//! prometheus-client writes the names (`_total` on counters, the unit before it), the
//! `# HELP` and `# TYPE` lines, escaping and histogram buckets; the values come from a
//! [`Collector`] that reads the sharded counters and the hub's [`Gauges`] at scrape
//! time (the counters are not prometheus-client's own types: theirs are one shared
//! atomic, or a lock per histogram, per metric).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::record::{Gauges, HistogramValue, Metrics};
use super::{CLOSE_CODE_CLASSES, REFUSAL_STATUSES, RateLimit, ReplayOutcome};

/// The `Content-Type` of what [`Metrics::render`] returns (`/metrics` answers with it).
#[cfg(feature = "axum")]
pub(crate) const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

impl Metrics {
    /// Every metric, with the hub's `gauges`, in the Prometheus text format.
    pub(crate) fn render(self: &Arc<Self>, gauges: Gauges) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Scrape {
            metrics: self.clone(),
            gauges,
        }));
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// One scrape: the counters, and the gauges read from the hub for it.
#[derive(Debug)]
struct Scrape {
    metrics: Arc<Metrics>,
    gauges: Gauges,
}

/// Writes one metric: its `# HELP` and `# TYPE` lines, then `samples`.
fn metric(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    metric_type: MetricType,
    samples: impl FnOnce(&mut MetricEncoder<'_>) -> Result<(), std::fmt::Error>,
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, unit.as_ref(), metric_type)?;
    samples(&mut m)
}

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    value: u64,
) -> Result<(), std::fmt::Error> {
    metric(encoder, name, help, unit, MetricType::Counter, |m| {
        m.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&value, None)
    })
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    metric(encoder, name, help, None, MetricType::Gauge, |m| {
        m.encode_gauge(&value)
    })
}

/// A counter with one label, a series per value.
fn labelled_counter<'v>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &str,
    series: impl IntoIterator<Item = (&'v str, u64)>,
) -> Result<(), std::fmt::Error> {
    metric(encoder, name, help, None, MetricType::Counter, |m| {
        for (value, count) in series {
            let labels = [(label, value)];
            m.encode_family(&labels)?
                .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&count, None)?;
        }
        Ok(())
    })
}

/// A gauge with one label, a series per value.
fn labelled_gauge<'v>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &str,
    series: impl IntoIterator<Item = (&'v str, u64)>,
) -> Result<(), std::fmt::Error> {
    metric(encoder, name, help, None, MetricType::Gauge, |m| {
        for (value, v) in series {
            let labels = [(label, value)];
            m.encode_family(&labels)?.encode_gauge(&v)?;
        }
        Ok(())
    })
}

fn histogram(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    h: &HistogramValue,
) -> Result<(), std::fmt::Error> {
    metric(
        encoder,
        name,
        help,
        Some(Unit::Seconds),
        MetricType::Histogram,
        |m| {
            m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                h.sum, h.count, &h.buckets, None,
            )
        },
    )
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let m = &self.metrics;
        let g = &self.gauges;
        let e = &mut e;

        // Connections.
        gauge(
            e,
            "wshub_connections",
            "WebSocket connections open now.",
            g.connections as u64,
        )?;
        gauge(
            e,
            "wshub_pending_connections",
            "Connections accepted and not yet upgraded (TLS, request head, authentication).",
            g.pending as u64,
        )?;
        gauge(
            e,
            "wshub_users",
            "Distinct users with a connection open now.",
            g.users as u64,
        )?;
        counter(
            e,
            "wshub_connections_opened",
            "Connections upgraded (sessions started).",
            None,
            m.opened(),
        )?;
        labelled_counter(
            e,
            "wshub_connections_closed",
            "Connections ended, by close code (the code that began the closing handshake, \
             either side's; 1006: no close frame; 3xxx, 4xxx: ranges; other: anything else).",
            "code",
            CLOSE_CODE_CLASSES
                .iter()
                .enumerate()
                .map(|(i, c)| (*c, m.closed(i))),
        )?;
        labelled_counter(
            e,
            "wshub_handshakes_refused",
            "Handshakes refused, by HTTP status (none: closed without an answer).",
            "status",
            REFUSAL_STATUSES
                .iter()
                .enumerate()
                .map(|(i, s)| (*s, m.refused(i))),
        )?;
        counter(
            e,
            "wshub_handshake_timeouts",
            "Connections closed for not finishing their handshake within handshake_timeout.",
            None,
            m.handshake_timeouts(),
        )?;
        histogram(
            e,
            "wshub_handshake_duration",
            "Time from accepting a connection (or the request reaching the axum route) to \
             its upgrade, for handshakes that succeeded.",
            &m.handshake(),
        )?;
        histogram(
            e,
            "wshub_ping_rtt",
            "Time from writing a liveness ping to reading a pong (timed from the latest ping).",
            &m.ping_rtt(),
        )?;

        // Messages.
        counter(
            e,
            "wshub_client_messages",
            "WebSocket messages received from clients (every op, before rate limits).",
            None,
            m.client_messages(),
        )?;
        let ns = m.namespaces();
        let per_ns: Vec<(u64, u64, u64)> = (0..ns.len()).map(|i| m.namespace_counts(i)).collect();
        labelled_counter(
            e,
            "wshub_messages_received",
            "Publishes received from clients to rooms they are in, by namespace (past the rate \
             limits, before the publish hook and payload checks).",
            "namespace",
            ns.iter().zip(&per_ns).map(|(n, c)| (&**n, c.0)),
        )?;
        labelled_counter(
            e,
            "wshub_messages_published",
            "Messages published to rooms (from clients and from the server), by namespace.",
            "namespace",
            ns.iter().zip(&per_ns).map(|(n, c)| (&**n, c.1)),
        )?;
        labelled_counter(
            e,
            "wshub_deliveries",
            "Messages queued for connections by fan-outs (one per member a publish reached), \
             by namespace.",
            "namespace",
            ns.iter().zip(&per_ns).map(|(n, c)| (&**n, c.2)),
        )?;
        histogram(
            e,
            "wshub_fanout_duration",
            "Time of one publish: from the call to every member's queue (storing in history \
             included).",
            &m.fanout(),
        )?;
        let (received, received_payload) = m.received_bytes();
        let (sent, sent_payload) = m.sent_bytes();
        counter(
            e,
            "wshub_received",
            "Bytes read from clients' connections, as on the wire (compressed, framed).",
            Some(Unit::Bytes),
            received,
        )?;
        counter(
            e,
            "wshub_received_payload",
            "Payload bytes of the messages received, after decompression.",
            Some(Unit::Bytes),
            received_payload,
        )?;
        counter(
            e,
            "wshub_sent",
            "Bytes written to clients' connections, as on the wire (compressed, framed).",
            Some(Unit::Bytes),
            sent,
        )?;
        counter(
            e,
            "wshub_sent_payload",
            "Payload bytes of the messages sent, before compression.",
            Some(Unit::Bytes),
            sent_payload,
        )?;

        // Who is cut off, and why.
        counter(
            e,
            "wshub_slow_consumers",
            "Connections closed with 1013 because their outbound queue was full.",
            None,
            g.slow_consumers,
        )?;
        labelled_counter(
            e,
            "wshub_rate_limited",
            "Client messages refused with rate_limited, by the limit that refused them.",
            "limit",
            RateLimit::ALL
                .iter()
                .enumerate()
                .map(|(i, l)| (l.label(), m.rate_limited_count(i))),
        )?;
        counter(
            e,
            "wshub_rate_limit_closes",
            "Connections closed with 1008 for flooding (flood_limit rate-limited messages).",
            None,
            m.flood_closes(),
        )?;
        counter(
            e,
            "wshub_ping_timeouts",
            "Connections closed with 1001 by the liveness sweep (no pong within pong_timeout).",
            None,
            g.ping_timeouts,
        )?;
        counter(
            e,
            "wshub_token_expiries",
            "Connections closed with 1008 because their token expired.",
            None,
            g.token_expiries,
        )?;

        // Rooms, presence, history.
        labelled_gauge(
            e,
            "wshub_rooms",
            "Rooms that exist now, by namespace.",
            "namespace",
            ns.iter()
                .zip(&g.namespaces)
                .map(|(n, v)| (&**n, v.rooms as u64)),
        )?;
        labelled_gauge(
            e,
            "wshub_presence_users",
            "Users in rooms' presence now, summed over rooms, by namespace.",
            "namespace",
            ns.iter()
                .zip(&g.namespaces)
                .map(|(n, v)| (&**n, v.presence_users as u64)),
        )?;
        labelled_counter(
            e,
            "wshub_join_replays",
            "Joins that read the room's history: recovered (since, all of it), not_recovered \
             (since, recovered: false), history (a fresh join's last N).",
            "outcome",
            ReplayOutcome::ALL
                .iter()
                .enumerate()
                .map(|(i, o)| (o.label(), m.replays(i))),
        )?;
        gauge(
            e,
            "wshub_history_messages",
            "Messages stored as room history.",
            g.history_messages as u64,
        )?;
        metric(
            e,
            "wshub_history",
            "Bytes of stored room history.",
            Some(Unit::Bytes),
            MetricType::Gauge,
            |m| m.encode_gauge(&(g.history_bytes as u64)),
        )?;
        if let Some(b) = &g.backplane {
            labelled_counter(
                e,
                "wshub_backplane_errors",
                "Backplane (Redis) failures, by operation: publish (answered unavailable), \
                 presence (a write, heartbeat or re-sync; the next re-sync repairs it), \
                 subscription (the bus subscription lost; resubscribed with backoff).",
                "op",
                [
                    ("publish", b.publish_errors),
                    ("presence", b.presence_errors),
                    ("subscription", b.subscription_losses),
                ],
            )?;
            counter(
                e,
                "wshub_backplane_gaps_filled",
                "Gaps in a room's stream on this node filled from history.",
                None,
                b.gaps_filled,
            )?;
            counter(
                e,
                "wshub_backplane_continuity_losses",
                "Rooms whose members were closed with 1013 because history could not fill a \
                 gap (they re-join and are told recovered: false).",
                None,
                b.continuity_losses,
            )?;
            gauge(
                e,
                "wshub_backplane_bus_queue",
                "Bus messages received from Redis and not yet taken by this node, as of the \
                 last one taken.",
                b.bus_queue as u64,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metrics::NamespaceGauges;
    use crate::ws::ConnObserver;

    fn sample(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn exposition_follows_the_naming_conventions() {
        let m = Arc::new(Metrics::new(["news", "chat"]));
        let gauges = Gauges {
            namespaces: vec![NamespaceGauges::default(); 2],
            backplane: Some(crate::metrics::record::BackplaneGauges::default()),
            ..Gauges::default()
        };
        let text = m.render(gauges);
        let mut names = Vec::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("# TYPE ") else {
                continue;
            };
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(name.starts_with("wshub_"), "{name}");
            match kind {
                "counter" => assert!(name.ends_with("_total"), "{name}"),
                "histogram" => assert!(name.ends_with("_seconds"), "{name}"),
                "gauge" => assert!(!name.ends_with("_total"), "{name}"),
                other => panic!("{name}: unexpected type {other}"),
            }
            // Base units only: no milliseconds, no kilobytes.
            assert!(!name.contains("_ms") && !name.contains("_kb"), "{name}");
            names.push(name.to_owned());
        }
        let expected = [
            "wshub_connections",
            "wshub_pending_connections",
            "wshub_users",
            "wshub_connections_opened_total",
            "wshub_connections_closed_total",
            "wshub_handshakes_refused_total",
            "wshub_handshake_timeouts_total",
            "wshub_handshake_duration_seconds",
            "wshub_ping_rtt_seconds",
            "wshub_client_messages_total",
            "wshub_messages_received_total",
            "wshub_messages_published_total",
            "wshub_deliveries_total",
            "wshub_fanout_duration_seconds",
            "wshub_received_bytes_total",
            "wshub_received_payload_bytes_total",
            "wshub_sent_bytes_total",
            "wshub_sent_payload_bytes_total",
            "wshub_slow_consumers_total",
            "wshub_rate_limited_total",
            "wshub_rate_limit_closes_total",
            "wshub_ping_timeouts_total",
            "wshub_token_expiries_total",
            "wshub_rooms",
            "wshub_presence_users",
            "wshub_join_replays_total",
            "wshub_history_messages",
            "wshub_history_bytes",
            "wshub_backplane_errors_total",
            "wshub_backplane_gaps_filled_total",
            "wshub_backplane_continuity_losses_total",
            "wshub_backplane_bus_queue",
        ];
        assert_eq!(names, expected);
        // Every label value is there from the start, at zero.
        assert_eq!(
            sample(&text, r#"wshub_connections_closed_total{code="1013"}"#),
            0.0
        );
        assert_eq!(
            sample(&text, r#"wshub_connections_closed_total{code="4xxx"}"#),
            0.0
        );
        assert_eq!(
            sample(&text, r#"wshub_handshakes_refused_total{status="none"}"#),
            0.0
        );
        assert_eq!(
            sample(&text, r#"wshub_rate_limited_total{limit="host"}"#),
            0.0
        );
        assert_eq!(
            sample(&text, r#"wshub_deliveries_total{namespace="chat"}"#),
            0.0
        );
        assert_eq!(sample(&text, r#"wshub_rooms{namespace="news"}"#), 0.0);
        assert_eq!(
            sample(
                &text,
                r#"wshub_join_replays_total{outcome="not_recovered"}"#
            ),
            0.0
        );
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("wshub_connections_closed_total{"))
                .count(),
            CLOSE_CODE_CLASSES.len()
        );
    }

    #[test]
    fn recorded_values_reach_the_exposition() {
        let m = Arc::new(Metrics::new(["chat"]));
        m.connection_opened();
        m.connection_opened();
        m.connection_closed(1000);
        m.connection_closed(4003);
        m.connection_closed(4999);
        m.handshake_refused(Some(http::StatusCode::UNAUTHORIZED));
        m.handshake_refused(None);
        m.published_in(m.ns_index("chat:a"), 3, Duration::from_micros(20));
        m.published_in(m.ns_index("chat:b"), 5, Duration::from_millis(2));
        m.published_in(m.ns_index("unknown:x"), 7, Duration::from_secs(2));
        m.publish_received("chat:a");
        m.rate_limited(RateLimit::User);
        m.replay(ReplayOutcome::Recovered);
        m.written(100);
        m.payload_sent(80);
        m.read(30);
        m.message_received(20);
        m.pong(Duration::from_micros(300));
        let gauges = Gauges {
            connections: 1,
            slow_consumers: 4,
            namespaces: vec![NamespaceGauges {
                rooms: 2,
                presence_users: 3,
            }],
            ..Gauges::default()
        };
        let text = m.render(gauges);
        for (series, value) in [
            ("wshub_connections", 1.0),
            ("wshub_connections_opened_total", 2.0),
            (r#"wshub_connections_closed_total{code="1000"}"#, 1.0),
            (r#"wshub_connections_closed_total{code="4xxx"}"#, 2.0),
            (r#"wshub_handshakes_refused_total{status="401"}"#, 1.0),
            (r#"wshub_handshakes_refused_total{status="none"}"#, 1.0),
            (r#"wshub_messages_published_total{namespace="chat"}"#, 2.0),
            (r#"wshub_deliveries_total{namespace="chat"}"#, 8.0),
            (r#"wshub_messages_received_total{namespace="chat"}"#, 1.0),
            (r#"wshub_rate_limited_total{limit="user"}"#, 1.0),
            (r#"wshub_rate_limited_total{limit="connection"}"#, 0.0),
            (r#"wshub_join_replays_total{outcome="recovered"}"#, 1.0),
            ("wshub_sent_bytes_total", 100.0),
            ("wshub_sent_payload_bytes_total", 80.0),
            ("wshub_received_bytes_total", 30.0),
            ("wshub_received_payload_bytes_total", 20.0),
            ("wshub_slow_consumers_total", 4.0),
            (r#"wshub_rooms{namespace="chat"}"#, 2.0),
            (r#"wshub_presence_users{namespace="chat"}"#, 3.0),
            // Three publishes timed (the unknown namespace's too): 20 µs in the
            // 25 µs bucket, 2 ms in the 2.5 ms one, 2 s over every bound.
            (r#"wshub_fanout_duration_seconds_bucket{le="1e-05"}"#, 0.0),
            (r#"wshub_fanout_duration_seconds_bucket{le="2.5e-05"}"#, 1.0),
            (r#"wshub_fanout_duration_seconds_bucket{le="0.0025"}"#, 2.0),
            (r#"wshub_fanout_duration_seconds_bucket{le="1"}"#, 2.0),
            (r#"wshub_fanout_duration_seconds_bucket{le="+Inf"}"#, 3.0),
            ("wshub_fanout_duration_seconds_count", 3.0),
            ("wshub_fanout_duration_seconds_sum", 2.00202),
            (r#"wshub_ping_rtt_seconds_bucket{le="0.0005"}"#, 1.0),
            ("wshub_ping_rtt_seconds_count", 1.0),
            ("wshub_handshake_duration_seconds_count", 0.0),
        ] {
            assert_eq!(sample(&text, series), value, "{series}\n{text}");
        }
    }
}
