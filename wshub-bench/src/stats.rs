//! What a run measures: latency histograms, counters and the generator's CPU time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Nanoseconds since the first call in this process: the timestamp carried in
/// payloads. Monotonic, and the same clock on the sending and receiving side because
/// both are in this process (the wall clock could step during a run).
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Histograms a shard each, so that thousands of receiving tasks can record without
/// contending on one lock and without a histogram each (about 200 KiB apiece).
const SHARDS: usize = 32;

/// Latency histograms (nanoseconds, 3 significant digits, up to 60 s) and counters
/// shared by every task of a run.
#[derive(Debug)]
pub struct Stats {
    shards: Vec<Mutex<Histogram<u64>>>,
    /// Messages (publishes or echo requests) sent.
    pub sent: AtomicU64,
    /// Messages received that the run counts as delivered.
    pub delivered: AtomicU64,
    /// Connections that completed the WebSocket handshake (and the join, for wshub).
    pub connected: AtomicU64,
    /// Connections that failed to open or join.
    pub connect_failed: AtomicU64,
    /// Connections that ended before the run did (closed by the server, or errors).
    pub dropped: AtomicU64,
    /// Requests the server refused (`error` or `reply` with `ok: false`).
    pub refused: AtomicU64,
    /// When the last delivery arrived ([`now_ns`]): the end of the measured phase when
    /// the drain ends by timing out.
    pub last_delivery_ns: AtomicU64,
    /// Connections that failed to open or join, by kind (HTTP status, `timeout`,
    /// `refused`...; see [`failure_kind`](crate::conn::failure_kind)).
    pub failures: Mutex<BTreeMap<String, u64>>,
    /// The first few error messages, for the report.
    pub errors: Mutex<Vec<String>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

impl Stats {
    /// Empty statistics.
    pub fn new() -> Stats {
        Stats {
            shards: (0..SHARDS).map(|_| Mutex::new(new_histogram())).collect(),
            sent: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            connect_failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            last_delivery_ns: AtomicU64::new(0),
            failures: Mutex::new(BTreeMap::new()),
            errors: Mutex::new(Vec::new()),
        }
    }

    /// Records one delivery by task `shard` (any number; connection index), sent at
    /// `sent_ns` (from [`now_ns`]).
    pub fn record(&self, shard: usize, sent_ns: u64) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        let now = self.record_latency(shard, sent_ns);
        self.last_delivery_ns.fetch_max(now, Ordering::Relaxed);
    }

    /// Records the time from `start_ns` (from [`now_ns`]) to now in the histogram
    /// only, counting no delivery: handshake and reconnect times. Returns now.
    pub fn record_latency(&self, shard: usize, start_ns: u64) -> u64 {
        let now = now_ns();
        let latency = now.saturating_sub(start_ns).max(1);
        // The lock is held for one increment; never across an await.
        let mut h = self.shards[shard % SHARDS].lock().unwrap();
        h.saturating_record(latency);
        now
    }

    /// Counts a connection of `who` that failed to open or join with `e`, by the
    /// failure's kind.
    pub fn connect_failure(&self, who: impl std::fmt::Display, e: &anyhow::Error) {
        self.fail(crate::conn::failure_kind(e), format!("{who}: {e:#}"));
    }

    /// Counts how opening connection `index` ended: opened, or failed by kind. The
    /// connection when it opened.
    pub fn opened<T>(&self, index: usize, opened: anyhow::Result<T>) -> Option<T> {
        match opened {
            Ok(ws) => {
                self.connected.fetch_add(1, Ordering::Relaxed);
                Some(ws)
            }
            Err(e) => {
                self.connect_failure(format!("connection {index}"), &e);
                None
            }
        }
    }

    /// Counts a failed connection of kind `kind`, keeping `message`.
    pub fn fail(&self, kind: String, message: impl std::fmt::Display) {
        self.connect_failed.fetch_add(1, Ordering::Relaxed);
        *self.failures.lock().unwrap().entry(kind).or_default() += 1;
        self.error(message);
    }

    /// Keeps an error message (the first 10 only: one cause usually repeats).
    pub fn error(&self, e: impl std::fmt::Display) {
        let mut errors = self.errors.lock().unwrap();
        if errors.len() < 10 {
            errors.push(e.to_string());
        }
    }

    /// All shards merged.
    pub fn histogram(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for s in &self.shards {
            all.add(&*s.lock().unwrap()).expect("same bounds");
        }
        all
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

/// CPU time this process has used, user and system (getrusage).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTime {
    /// Time in user mode.
    pub user: Duration,
    /// Time in the kernel on the process's behalf.
    pub system: Duration,
}

impl CpuTime {
    /// The process's CPU time so far.
    pub fn now() -> CpuTime {
        // SAFETY: getrusage writes a plain struct we own; RUSAGE_SELF is valid.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        if rc != 0 {
            return CpuTime::default();
        }
        let tv = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
        };
        CpuTime {
            user: tv(ru.ru_utime),
            system: tv(ru.ru_stime),
        }
    }

    /// The time used between `earlier` and `self`.
    pub fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

/// The resident set size of process `pid` in KiB (`VmRSS` in `/proc/PID/status`):
/// the server's memory, when it runs on this machine.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    use anyhow::Context;
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .with_context(|| format!("no VmRSS in {path}"))?;
    let kib = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim();
    kib.parse()
        .with_context(|| format!("bad VmRSS line {line:?} in {path}"))
}

/// The CPU time process `pid` has used, user and system (`utime` + `stime`, fields 14
/// and 15 of `/proc/PID/stat`, in clock ticks): the server's CPU, when it runs on this
/// machine. Ticks are 10 ms here; a measured phase of seconds makes that small.
pub fn proc_cpu(pid: u32) -> anyhow::Result<Duration> {
    use anyhow::Context;
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count fields
    // after its closing one, where field 3 is the first.
    let rest = &stat[stat.rfind(')').context("no command name")? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i - 3)
            .with_context(|| format!("short {path}"))?
            .parse()
            .with_context(|| format!("bad field {i} in {path}"))
    };
    let total = ticks(14)? + ticks(15)?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_nanos(total * 1_000_000_000 / hz))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_rss() {
        let kib = super::rss_kib(std::process::id()).unwrap();
        assert!(kib > 0);
        assert!(super::rss_kib(u32::MAX).is_err());
    }

    #[test]
    fn reads_own_cpu() {
        // Burn a little CPU so that at least one tick is counted.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(super::proc_cpu(std::process::id()).unwrap() > std::time::Duration::ZERO);
        assert!(super::proc_cpu(u32::MAX).is_err());
    }
}
