//! How often a small room's diffs go out: on the next tick after a quiet spell, and
//! less and less often while the room keeps changing, up to
//! `HubConfig::presence_tick_max`.
//!
//! A diff costs one write per member, so a room filling up (a join storm, a class or
//! a match starting) that got a diff every tick cost each member ten writes a second
//! while it filled, most of the server's CPU in a storm of 19,000 joins into rooms of
//! 100 (`BENCHMARKS.md`). Paced, each diff waits twice as long as the one before while
//! changes keep coming, and carries the byte budget of every tick it waited: members
//! learn the same changes, in fewer messages. One quiet tick and the room is back to a
//! diff per tick.

use std::time::Duration;

use tokio::time::Instant;

use super::TickLimits;

/// A small room's pace (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Pace {
    /// When the last diff went out, and the gap before the next may.
    last: Option<(Instant, Duration)>,
}

impl Pace {
    /// Whether a diff may go out at `now`: `None` while the gap since the last one
    /// runs, else how many ticks of byte budget it carries (the ticks it waited, at
    /// least one, at most `tick_max / tick`).
    pub(crate) fn due(&self, now: Instant, limits: TickLimits) -> Option<usize> {
        let Some((last, gap)) = self.last else {
            return Some(1);
        };
        if now < last + gap {
            return None;
        }
        let tick = limits.tick.as_nanos().max(1);
        let most = (limits.tick_max.as_nanos() / tick).max(1);
        let waited = now.duration_since(last).as_nanos() / tick;
        Some(waited.clamp(1, most) as usize)
    }

    /// Records a diff sent at `now`. Changes that were waiting when the gap ended (or
    /// came within a tick of it) mean the room keeps changing: the next gap doubles, up
    /// to `tick_max`. Otherwise the room had a quiet spell: back to one tick.
    pub(crate) fn sent(&mut self, now: Instant, limits: TickLimits) {
        let gap = match self.last {
            Some((last, gap)) if now <= last + gap + limits.tick => {
                gap.saturating_mul(2).min(limits.tick_max).max(limits.tick)
            }
            _ => limits.tick,
        };
        self.last = Some((now, gap));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> TickLimits {
        TickLimits {
            budget: 4096,
            tick: Duration::from_millis(100),
            tick_max: Duration::from_secs(1),
            count_interval: Duration::from_secs(1),
            min_big: Duration::from_secs(10),
        }
    }

    const MS: Duration = Duration::from_millis(1);

    /// A room changing on every tick: diffs 100, 200, 400, 800 ms apart, then every
    /// second, each carrying the budget of the ticks it waited; one quiet tick after
    /// a gap and the next diff goes out on the next tick again.
    #[test]
    fn gaps_double_while_changes_keep_coming_and_reset_after_quiet() {
        let (l, t0) = (limits(), Instant::now());
        let mut pace = Pace::default();
        assert_eq!(pace.due(t0, l), Some(1));
        pace.sent(t0, l);
        let mut sent_at = vec![0u64];
        let mut budgets = vec![1usize];
        // The presence task looks every tick while the room has changes.
        for ms in (100..=4000).step_by(100) {
            let now = t0 + ms * MS;
            if let Some(ticks) = pace.due(now, l) {
                pace.sent(now, l);
                sent_at.push(ms as u64);
                budgets.push(ticks);
            }
        }
        assert_eq!(sent_at, [0, 100, 300, 700, 1500, 2500, 3500]);
        assert_eq!(budgets, [1, 1, 2, 4, 8, 10, 10]);
        // Quiet from 3.5 s to 5 s: the change at 5 s goes out at once, and the next
        // one a tick later.
        let now = t0 + 5000 * MS;
        assert_eq!(pace.due(now, l), Some(10));
        pace.sent(now, l);
        assert_eq!(pace.due(now + 99 * MS, l), None);
        assert_eq!(pace.due(now + 100 * MS, l), Some(1));
    }

    /// `presence_tick_max` equal to the tick: a diff every tick, as without pacing.
    #[test]
    fn tick_max_equal_to_the_tick_sends_every_tick() {
        let l = TickLimits {
            tick_max: Duration::from_millis(100),
            ..limits()
        };
        let t0 = Instant::now();
        let mut pace = Pace::default();
        for ms in (0..=1000).step_by(100) {
            let now = t0 + ms * MS;
            assert_eq!(pace.due(now, l), Some(1), "at {ms} ms");
            pace.sent(now, l);
        }
    }
}
