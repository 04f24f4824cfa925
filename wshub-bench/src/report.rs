//! The result of a run: a human-readable table or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use crate::stats::{CpuTime, Stats};

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Samples recorded.
    pub count: u64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// The largest sample.
    pub max_us: f64,
    /// The mean.
    pub mean_us: f64,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `broadcast` or `echo`.
    pub scenario: String,
    /// The URL under test.
    pub url: String,
    /// The scenario's parameters, as given.
    pub params: serde_json::Value,
    /// Wall time of the measured phase (publishing or echoing, plus the drain).
    pub elapsed_s: f64,
    /// Connections that opened (and joined).
    pub connected: u64,
    /// Connections that failed to open or join.
    pub connect_failed: u64,
    /// Connections that ended before the run did.
    pub dropped: u64,
    /// The failed connections by kind: the HTTP status of a refused upgrade (`401`,
    /// `429`, `503`), `timeout`, `refused` (nothing listening), `connect_error` (a
    /// Socket.IO server refused the namespace connect), `io`, `join`...
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub failures: BTreeMap<String, u64>,
    /// How long opening (and joining) every connection took.
    pub connect_s: f64,
    /// Messages sent (publishes, echo requests).
    pub sent: u64,
    /// Messages the run expected to receive (publishes times room members, or echoes).
    pub expected: u64,
    /// Messages received.
    pub delivered: u64,
    /// `delivered / expected`: anything below 1 is a loss.
    pub delivered_ratio: f64,
    /// Requests the server refused.
    pub refused: u64,
    /// Sends per second over the sending phase.
    pub sent_per_s: f64,
    /// Deliveries per second over the measured phase.
    pub delivered_per_s: f64,
    /// End-to-end latency, from the timestamp in each payload (or what
    /// [`latency_of`](Self::latency_of) names).
    pub latency: Latency,
    /// What the latency histogram measures.
    pub latency_of: String,
    /// The generator's CPU time (user + system) over the measured phase, seconds.
    pub generator_cpu_s: f64,
    /// That CPU time as a share of one core over the phase (100 = one core busy): near
    /// the generator's thread count times 100, the generator is the bottleneck.
    pub generator_cpu_pct: f64,
    /// What only this scenario measures (server RSS, failures by status, presence
    /// diffs...), by name; shown as extra rows of the table.
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub details: serde_json::Map<String, serde_json::Value>,
    /// The first few errors seen.
    pub errors: Vec<String>,
}

impl Report {
    /// Builds a report from a finished run's statistics.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        scenario: &str,
        url: &str,
        params: serde_json::Value,
        stats: &Stats,
        expected: u64,
        connect: Duration,
        sending: Duration,
        elapsed: Duration,
        cpu: CpuTime,
    ) -> Report {
        let h = stats.histogram();
        let us = |ns: u64| ns as f64 / 1000.0;
        let delivered = stats.delivered.load(Ordering::Relaxed);
        let sent = stats.sent.load(Ordering::Relaxed);
        let secs = elapsed.as_secs_f64().max(1e-9);
        let cpu_s = (cpu.user + cpu.system).as_secs_f64();
        Report {
            scenario: scenario.to_owned(),
            url: url.to_owned(),
            params,
            elapsed_s: elapsed.as_secs_f64(),
            connected: stats.connected.load(Ordering::Relaxed),
            connect_failed: stats.connect_failed.load(Ordering::Relaxed),
            dropped: stats.dropped.load(Ordering::Relaxed),
            failures: stats.failures.lock().unwrap().clone(),
            connect_s: connect.as_secs_f64(),
            sent,
            expected,
            delivered,
            delivered_ratio: if expected == 0 {
                1.0
            } else {
                delivered as f64 / expected as f64
            },
            refused: stats.refused.load(Ordering::Relaxed),
            sent_per_s: sent as f64 / sending.as_secs_f64().max(1e-9),
            delivered_per_s: delivered as f64 / secs,
            latency: Latency {
                count: h.len(),
                p50_us: us(h.value_at_quantile(0.50)),
                p90_us: us(h.value_at_quantile(0.90)),
                p99_us: us(h.value_at_quantile(0.99)),
                p999_us: us(h.value_at_quantile(0.999)),
                max_us: us(h.max()),
                mean_us: h.mean() / 1000.0,
            },
            latency_of: "send to delivery (timestamp in the payload)".into(),
            generator_cpu_s: cpu_s,
            generator_cpu_pct: 100.0 * cpu_s / secs,
            details: serde_json::Map::new(),
            errors: stats.errors.lock().unwrap().clone(),
        }
    }

    /// A two-column table for a terminal.
    pub fn table(&self) -> String {
        let l = &self.latency;
        let rows: Vec<(&str, String)> = vec![
            ("scenario", self.scenario.clone()),
            ("url", self.url.clone()),
            ("parameters", self.params.to_string()),
            (
                "connections",
                format!(
                    "{} open, {} failed, {} dropped (opened in {:.2} s)",
                    self.connected, self.connect_failed, self.dropped, self.connect_s
                ),
            ),
            ("sent", format!("{} ({:.0}/s)", self.sent, self.sent_per_s)),
            (
                "delivered",
                format!(
                    "{} of {} expected ({:.2}%), {:.0}/s",
                    self.delivered,
                    self.expected,
                    100.0 * self.delivered_ratio,
                    self.delivered_per_s
                ),
            ),
            ("refused", self.refused.to_string()),
            (
                "latency (µs)",
                format!(
                    "p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  ({} samples: {})",
                    l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us, l.count, self.latency_of
                ),
            ),
            (
                "generator CPU",
                format!(
                    "{:.2} s over {:.2} s ({:.0}% of one core)",
                    self.generator_cpu_s, self.elapsed_s, self.generator_cpu_pct
                ),
            ),
        ];
        let mut rows = rows;
        if !self.failures.is_empty() {
            let failures = serde_json::to_string(&self.failures).unwrap_or_default();
            rows.insert(4, ("failures", failures));
        }
        let mut out = String::new();
        // Scenarios that send no messages (idle) would show rows of zeros.
        let silent = self.sent == 0 && self.expected == 0 && l.count == 0;
        for (k, v) in rows {
            if silent && matches!(k, "sent" | "delivered" | "refused" | "latency (µs)") {
                continue;
            }
            // Nothing expected, nothing delivered (presence-churn counts diffs in its
            // details): "0 of 0" says nothing.
            if k == "delivered" && self.expected == 0 && self.delivered == 0 {
                continue;
            }
            let _ = writeln!(out, "{k:<15} {v}");
        }
        for (k, v) in &self.details {
            let v = match v {
                serde_json::Value::Number(n) if n.is_f64() => {
                    format!("{:.2}", n.as_f64().unwrap_or_default())
                }
                v => v.to_string(),
            };
            let _ = writeln!(out, "{k:<15} {v}");
        }
        for e in &self.errors {
            let _ = writeln!(out, "{:<15} {e}", "error");
        }
        out
    }
}
