//! Counters split per thread: what the hot paths add to.
//!
//! One shared `AtomicU64` per counter would put every core that publishes, reads or
//! writes on the same cache line, and that line would bounce between cores on every
//! add. Here each thread adds to its own shard (a few 128-byte lines holding every
//! counter of the hub); a scrape sums the shards.
//!
//! Every thread draws a process-wide index once. The first `shards - 1` threads (the
//! runtime's workers, started first) own their shard alone: an add there is a plain
//! load and store of an atomic (no locked instruction, since no other thread writes
//! it; a scrape's relaxed loads see each value whole). Threads drawn later (blocking
//! threads that come and go) share the last shard with atomic adds: correct, only
//! slower.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Counters per 128-byte line: two cache lines on most CPUs (the adjacent-line
/// prefetcher pulls lines in pairs, so 64-byte padding would still share).
const PER_LINE: usize = 16;

/// One line of counters, aligned so that no two shards share a cache line.
#[repr(align(128))]
#[derive(Default)]
struct Line([AtomicU64; PER_LINE]);

/// The current thread's process-wide index, drawn at its first add (never reused).
fn shard_of_thread() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SHARD.with(|s| {
        let mut shard = s.get();
        if shard == usize::MAX {
            // Round robin over the threads as they first add: the runtime's worker
            // threads (one per core) get distinct shards.
            shard = NEXT.fetch_add(1, Ordering::Relaxed);
            s.set(shard);
        }
        shard
    })
}

/// `width` counters, each split over a power-of-two number of per-thread shards.
pub(super) struct Sharded {
    lines: Box<[Line]>,
    lines_per_shard: usize,
    /// Shards - 1 (a power of two minus one).
    mask: usize,
}

impl Sharded {
    /// `width` counters, all zero, with four times as many shards as the machine has
    /// threads (at least 8, at most 64): the runtime's workers, its blocking threads
    /// and the application's own threads rarely share one, even as threads come and go
    /// (a thread keeps the index it drew, and indices wrap around the shards).
    pub(super) fn new(width: usize) -> Self {
        let threads = std::thread::available_parallelism().map_or(4, |n| n.get());
        let shards = (threads * 4).next_power_of_two().clamp(8, 64);
        let lines_per_shard = width.div_ceil(PER_LINE).max(1);
        let lines = (0..shards * lines_per_shard)
            .map(|_| Line::default())
            .collect();
        Sharded {
            lines,
            lines_per_shard,
            mask: shards - 1,
        }
    }

    /// Adds `n` to counter `id`, in the current thread's shard.
    #[inline]
    pub(super) fn add(&self, id: usize, n: u64) {
        self.local().add(id, n);
    }

    /// The current thread's shard, for several adds with one look-up.
    #[inline]
    pub(super) fn local(&self) -> Local<'_> {
        let index = shard_of_thread();
        // The last shard is the shared one.
        let exclusive = index < self.mask;
        let shard = if exclusive { index } else { self.mask };
        Local {
            lines: &self.lines[shard * self.lines_per_shard..(shard + 1) * self.lines_per_shard],
            exclusive,
        }
    }

    /// Counter `id`: the sum of its shards. Not a snapshot across counters: adds made
    /// during the sum may be seen in one and not yet in another.
    pub(super) fn get(&self, id: usize) -> u64 {
        (0..=self.mask)
            .map(|shard| {
                self.lines[shard * self.lines_per_shard + id / PER_LINE].0[id % PER_LINE]
                    .load(Ordering::Relaxed)
            })
            .fold(0u64, u64::wrapping_add)
    }
}

/// One thread's shard of a [`Sharded`].
pub(super) struct Local<'a> {
    lines: &'a [Line],
    /// Whether this thread is the shard's only writer.
    exclusive: bool,
}

impl Local<'_> {
    /// Adds `n` to counter `id`.
    #[inline]
    pub(super) fn add(&self, id: usize, n: u64) {
        let cell = &self.lines[id / PER_LINE].0[id % PER_LINE];
        if self.exclusive {
            // The only writer: a read-modify-write needs no lock.
            cell.store(
                cell.load(Ordering::Relaxed).wrapping_add(n),
                Ordering::Relaxed,
            );
        } else {
            cell.fetch_add(n, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn adds_from_many_threads_sum_exactly() {
        // More threads than shards (at most 64): the later ones share the last shard
        // with atomic adds, the first ones own theirs; no add is lost either way.
        const THREADS: u64 = 100;
        let counters = Arc::new(Sharded::new(40));
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let c = counters.clone();
                std::thread::spawn(move || {
                    for _ in 0..2_000 {
                        c.add(0, 1);
                        c.local().add(39, t);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(counters.get(0), THREADS * 2_000);
        assert_eq!(counters.get(39), 2_000 * (0..THREADS).sum::<u64>());
        assert_eq!(counters.get(17), 0);
    }
}
