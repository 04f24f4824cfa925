//! The scenarios, and what they share: opening many connections at a bounded
//! concurrency, and the live view.

pub mod broadcast;
pub mod connect_rate;
pub mod echo;
pub mod idle;
pub mod presence_churn;
mod proto;
pub mod reconnect_storm;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;

use crate::stats::Stats;

/// Events `publisher` of `count` sends out of the first `due` of a shared schedule:
/// event k goes to sender k mod count, so the senders split the rate exactly.
pub(crate) fn share(due: u64, sender: usize, count: usize) -> u64 {
    due.saturating_sub(sender as u64).div_ceil(count as u64)
}

/// A progress bar with live rates, redrawn four times a second on stderr (hidden when
/// stderr is not a terminal, or with `--quiet`).
#[derive(Debug)]
pub struct Live {
    bar: ProgressBar,
    task: JoinHandle<()>,
}

impl Live {
    /// Starts the view over `length` (the planned duration; the bar stops at its end).
    pub fn start(stats: Arc<Stats>, length: Duration, enabled: bool) -> Live {
        let bar = ProgressBar::with_draw_target(
            Some(length.as_millis().max(1) as u64),
            if enabled {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        bar.set_style(
            ProgressStyle::with_template("{prefix:>10} {elapsed:>4} [{bar:24}] {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        let b = bar.clone();
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut last = (Instant::now(), 0u64, 0u64);
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let now = Instant::now();
                let sent = stats.sent.load(Ordering::Relaxed);
                let delivered = stats.delivered.load(Ordering::Relaxed);
                let dt = now.duration_since(last.0).as_secs_f64().max(1e-3);
                b.set_position(start.elapsed().as_millis() as u64);
                b.set_message(format!(
                    "conns {} (failed {}, dropped {}) | sent {:.0}/s | delivered {:.0}/s, {} total | refused {}",
                    stats.connected.load(Ordering::Relaxed),
                    stats.connect_failed.load(Ordering::Relaxed),
                    stats.dropped.load(Ordering::Relaxed),
                    (sent - last.1) as f64 / dt,
                    (delivered - last.2) as f64 / dt,
                    delivered,
                    stats.refused.load(Ordering::Relaxed),
                ));
                last = (now, sent, delivered);
            }
        });
        Live { bar, task }
    }

    /// Names the current phase (`connect`, `publish`, `drain`).
    pub fn phase(&self, name: &'static str) {
        self.bar.set_prefix(name);
    }

    /// Stops and clears the view.
    pub fn finish(self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}

/// How long the drain waits with nothing delivered before it gives up on the rest: a
/// server that lost messages (or a connection) would otherwise hold every run for the
/// whole drain limit, while a slow one still delivers something every few
/// milliseconds.
pub const DRAIN_QUIET: Duration = Duration::from_secs(3);

/// Waits until `stats.delivered` reaches `expected`, nothing arrived for
/// [`DRAIN_QUIET`], or `limit` passes.
pub(crate) async fn drain(stats: &Stats, expected: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut last = (Instant::now(), stats.delivered.load(Ordering::Relaxed));
    // Polling a counter: the generator's own bookkeeping, 10 ms granularity is plenty
    // next to a drain limit of seconds.
    loop {
        let now = Instant::now();
        let delivered = stats.delivered.load(Ordering::Relaxed);
        if delivered >= expected || now >= deadline {
            return;
        }
        if delivered != last.1 {
            last = (now, delivered);
        } else if now.duration_since(last.0) >= DRAIN_QUIET {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until every one of `count` connections has opened or failed
/// (`connected + connect_failed`), polling: the connecting tasks hold on to their
/// connections, so nothing hands them back to wait on.
pub(crate) async fn wait_settled(stats: &Stats, count: u64) {
    while stats.connected.load(Ordering::Relaxed) + stats.connect_failed.load(Ordering::Relaxed)
        < count
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn share_splits_exactly() {
        for due in 0..50u64 {
            let total: u64 = (0..7).map(|s| super::share(due, s, 7)).sum();
            assert_eq!(total, due);
        }
        assert_eq!(super::share(10, 0, 3), 4);
        assert_eq!(super::share(10, 2, 3), 3);
    }
}
