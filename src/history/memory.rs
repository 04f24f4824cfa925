//! [`MemoryHistory`]: room history in this process's memory, the default store.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;

use super::{
    HistoryError, HistoryLimits, HistoryQuery, HistoryRead, HistoryStore, HistoryUsage,
    StoreFuture, StoredMessage, StreamPosition,
};
use crate::protocol::EncodedMessage;
use crate::ws::{Message, PreparedMessage};

/// What one stored message costs beyond its frame (entry, order record), counted
/// against the budget so that many tiny messages cannot hide from it.
const ENTRY_OVERHEAD: usize = 96;

/// Room history kept in memory: per room a ring of frames bounded by the namespace's
/// [`HistoryLimits`], and one byte budget across all rooms.
///
/// - Every stream gets a random epoch when it is created, so a restarted process
///   never vouches for positions of the one before (clients get `recovered: false`).
/// - A stream whose last message aged out, and which nothing touched for `max_age`,
///   is freed by [`sweep`](HistoryStore::sweep): a room nobody uses costs nothing.
/// - Over the budget, the oldest messages of all rooms go first, whichever room
///   they belong to.
pub struct MemoryHistory {
    streams: DashMap<Arc<str>, Mutex<Stream>>,
    /// Every stored message in the order it was appended, across rooms, to evict the
    /// oldest when over budget. Records of messages dropped meanwhile (by count or
    /// age) are skipped when met, and compacted away when they pile up.
    order: Mutex<VecDeque<OrderRecord>>,
    budget: usize,
    bytes: AtomicUsize,
    messages: AtomicUsize,
}

/// One room's stream.
struct Stream {
    epoch: Arc<str>,
    /// The `seq` of the last message appended (0: none yet).
    top: u64,
    /// Stored messages, oldest first, with consecutive `seq`s ending at `top`.
    entries: VecDeque<Entry>,
    /// The namespace's age limit, as last seen (for the sweep).
    max_age: Duration,
    /// Last append or read.
    touched: Instant,
}

struct Entry {
    seq: u64,
    at: Instant,
    frame: PreparedMessage,
    cost: usize,
}

/// Where a stored message sits, for budget eviction.
struct OrderRecord {
    room: Arc<str>,
    /// The stream's epoch when the message was stored: a stream freed and created
    /// again under the same name has another epoch, and is not mistaken for it.
    epoch: Arc<str>,
    seq: u64,
}

impl fmt::Debug for MemoryHistory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryHistory")
            .field("budget", &self.budget)
            .field("usage", &self.usage())
            .finish()
    }
}

impl Default for MemoryHistory {
    fn default() -> Self {
        MemoryHistory::new(MemoryHistory::DEFAULT_BUDGET)
    }
}

impl MemoryHistory {
    /// The default budget: 64 MiB of stored frames across all rooms.
    pub const DEFAULT_BUDGET: usize = 64 << 20;

    /// A store holding at most `budget` bytes of frames across all rooms.
    pub fn new(budget: usize) -> Self {
        MemoryHistory {
            streams: DashMap::new(),
            order: Mutex::new(VecDeque::new()),
            budget,
            bytes: AtomicUsize::new(0),
            messages: AtomicUsize::new(0),
        }
    }

    fn order(&self) -> MutexGuard<'_, VecDeque<OrderRecord>> {
        self.order.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on `room`'s stream (with the map's key for the room's name, shared
    /// rather than copied), created with a fresh epoch if it has none.
    fn with_stream<T>(&self, room: &str, f: impl FnOnce(&Arc<str>, &mut Stream) -> T) -> T {
        if let Some(s) = self.streams.get(room) {
            return f(s.key(), &mut lock(&s));
        }
        let s = self
            .streams
            .entry(Arc::from(room))
            .or_insert_with(|| Mutex::new(Stream::new()));
        f(s.key(), &mut lock(&s))
    }

    /// Drops entries of `stream` from the front while `drop_it` says so, counting them
    /// out of the totals.
    fn drop_front(&self, stream: &mut Stream, mut drop_it: impl FnMut(&Entry) -> bool) {
        while let Some(e) = stream.entries.front() {
            if !drop_it(e) {
                break;
            }
            let e = stream.entries.pop_front().expect("front exists");
            self.bytes.fetch_sub(e.cost, Ordering::Relaxed);
            self.messages.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Evicts the oldest messages of all rooms until the store is within its budget.
    fn enforce_budget(&self) {
        while self.bytes.load(Ordering::Relaxed) > self.budget {
            let Some(rec) = self.order().pop_front() else {
                return;
            };
            if let Some(s) = self.streams.get(&rec.room) {
                let mut s = lock(&s);
                if Arc::ptr_eq(&s.epoch, &rec.epoch) {
                    self.drop_front(&mut s, |e| e.seq <= rec.seq);
                }
            }
        }
    }

    /// Drops order records of messages no longer stored, once they outnumber the
    /// stored ones: the record queue stays proportional to what is stored.
    fn compact_order(&self) {
        let stale = {
            let mut order = self.order();
            let stored = self.messages.load(Ordering::Relaxed);
            if stored == 0 {
                // Nothing stored: every record is stale.
                order.clear();
                return;
            }
            order.len() > 2 * stored + 1024
        };
        if !stale {
            return;
        }
        let taken = std::mem::take(&mut *self.order());
        let kept: VecDeque<OrderRecord> = taken
            .into_iter()
            .filter(|rec| {
                self.streams.get(&rec.room).is_some_and(|s| {
                    let s = lock(&s);
                    Arc::ptr_eq(&s.epoch, &rec.epoch)
                        && s.entries.front().is_some_and(|e| e.seq <= rec.seq)
                })
            })
            .collect();
        // Records pushed meanwhile are newer than every kept one: they go after.
        let mut order = self.order();
        let newer = std::mem::replace(&mut *order, kept);
        order.extend(newer);
    }
}

fn lock(m: &Mutex<Stream>) -> MutexGuard<'_, Stream> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Stream {
    fn new() -> Self {
        Stream {
            epoch: new_epoch(),
            top: 0,
            entries: VecDeque::new(),
            max_age: HistoryLimits::default().max_age,
            touched: Instant::now(),
        }
    }

    fn position(&self) -> StreamPosition {
        StreamPosition {
            seq: self.top,
            epoch: self.epoch.clone(),
        }
    }
}

/// A random epoch: 12 hex digits (48 bits), so positions of a stream that was freed,
/// or of a process that restarted, are never taken for this one's.
fn new_epoch() -> Arc<str> {
    let n: u64 = rand::random::<u64>() & 0xffff_ffff_ffff;
    Arc::from(format!("{n:012x}"))
}

impl HistoryStore for MemoryHistory {
    fn append<'a>(
        &'a self,
        room: &'a str,
        msg: &'a EncodedMessage,
        compression_level: u32,
        limits: HistoryLimits,
    ) -> StoreFuture<'a, Result<StoredMessage, HistoryError>> {
        let now = Instant::now();
        let stored = self.with_stream(room, |name, s| {
            s.top += 1;
            s.touched = now;
            s.max_age = limits.max_age;
            let frame = PreparedMessage::with_compression_level(
                Message::text(msg.frame(Some((s.top, &s.epoch)))),
                compression_level,
            );
            let cost = frame.payload().len() + ENTRY_OVERHEAD;
            s.entries.push_back(Entry {
                seq: s.top,
                at: now,
                frame: frame.clone(),
                cost,
            });
            self.bytes.fetch_add(cost, Ordering::Relaxed);
            self.messages.fetch_add(1, Ordering::Relaxed);
            // Under the stream's lock, so one room's records are in `seq` order.
            self.order().push_back(OrderRecord {
                room: name.clone(),
                epoch: s.epoch.clone(),
                seq: s.top,
            });
            let max = limits.max_messages;
            let oldest = now.checked_sub(limits.max_age);
            let len = s.entries.len();
            let mut over = len.saturating_sub(max);
            self.drop_front(s, |e| {
                let drop = over > 0 || oldest.is_some_and(|t| e.at <= t);
                over = over.saturating_sub(1);
                drop
            });
            StoredMessage {
                seq: s.top,
                epoch: s.epoch.clone(),
                frame,
            }
        });
        self.enforce_budget();
        self.compact_order();
        Box::pin(std::future::ready(Ok(stored)))
    }

    fn read<'a>(
        &'a self,
        room: &'a str,
        query: HistoryQuery,
        limits: HistoryLimits,
    ) -> StoreFuture<'a, Result<HistoryRead, HistoryError>> {
        let now = Instant::now();
        let read = self.with_stream(room, |_, s| {
            s.touched = now;
            s.max_age = limits.max_age;
            if let Some(oldest) = now.checked_sub(limits.max_age) {
                self.drop_front(s, |e| e.at <= oldest);
            }
            let position = s.position();
            match query {
                HistoryQuery::Position => HistoryRead {
                    position,
                    messages: Vec::new(),
                    complete: true,
                },
                HistoryQuery::Last(n) => {
                    let skip = s.entries.len().saturating_sub(n);
                    HistoryRead {
                        position,
                        messages: s
                            .entries
                            .iter()
                            .skip(skip)
                            .map(|e| e.stored(&s.epoch))
                            .collect(),
                        complete: true,
                    }
                }
                HistoryQuery::After { since, max } => {
                    let missed = s.top.checked_sub(since.seq);
                    // The first stored seq, or the next one to come when none is kept.
                    let first = s.entries.front().map_or(s.top + 1, |e| e.seq);
                    let complete = *since.epoch == *s.epoch
                        && missed.is_some_and(|n| n as u128 <= max as u128)
                        && first <= since.seq + 1;
                    let messages = if complete {
                        let skip = (since.seq + 1 - first) as usize;
                        s.entries
                            .iter()
                            .skip(skip)
                            .map(|e| e.stored(&s.epoch))
                            .collect()
                    } else {
                        Vec::new()
                    };
                    HistoryRead {
                        position,
                        messages,
                        complete,
                    }
                }
            }
        });
        Box::pin(std::future::ready(Ok(read)))
    }

    fn sweep(&self) {
        let now = Instant::now();
        self.streams.retain(|_, s| {
            let s = s.get_mut().unwrap_or_else(|p| p.into_inner());
            if let Some(oldest) = now.checked_sub(s.max_age) {
                self.drop_front(s, |e| e.at <= oldest);
            }
            !(s.entries.is_empty() && now.duration_since(s.touched) >= s.max_age)
        });
        self.compact_order();
    }

    fn usage(&self) -> HistoryUsage {
        HistoryUsage {
            rooms: self.streams.len(),
            messages: self.messages.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

impl Entry {
    fn stored(&self, epoch: &Arc<str>) -> StoredMessage {
        StoredMessage {
            seq: self.seq,
            epoch: epoch.clone(),
            frame: self.frame.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(text: &str) -> EncodedMessage {
        EncodedMessage::new("chat:a", Some("ann"), &serde_json::json!({ "text": text })).unwrap()
    }

    fn now_or_never<T>(f: StoreFuture<'_, T>) -> T {
        use std::task::{Context, Poll, Waker};
        let mut f = f;
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("the memory store never waits"),
        }
    }

    fn append(h: &MemoryHistory, room: &str, text: &str, limits: HistoryLimits) -> StoredMessage {
        now_or_never(h.append(room, &msg(text), 1, limits)).unwrap()
    }

    fn read(h: &MemoryHistory, room: &str, q: HistoryQuery) -> HistoryRead {
        now_or_never(h.read(room, q, HistoryLimits::default())).unwrap()
    }

    fn text_of(m: &StoredMessage) -> String {
        String::from_utf8(m.frame.payload().to_vec()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn seqs_are_consecutive_and_frames_carry_them() {
        let h = MemoryHistory::default();
        let l = HistoryLimits::default();
        let a = append(&h, "chat:a", "one", l);
        let b = append(&h, "chat:a", "two", l);
        let other = append(&h, "chat:b", "x", l);
        assert_eq!((a.seq, b.seq, other.seq), (1, 2, 1));
        let pos = read(&h, "chat:a", HistoryQuery::Position).position;
        assert_eq!(pos.seq, 2);
        assert_eq!(pos.epoch.len(), 12);
        assert_eq!(
            text_of(&b),
            format!(
                r#"{{"op":"message","room":"chat:a","seq":2,"epoch":"{}","from":"ann","data":{{"text":"two"}}}}"#,
                pos.epoch
            )
        );
        assert_ne!(
            read(&h, "chat:b", HistoryQuery::Position).position.epoch,
            pos.epoch,
            "every stream has its own epoch"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn after_is_complete_only_when_nothing_is_missing() {
        let h = MemoryHistory::default();
        let l = HistoryLimits::new(3, Duration::from_secs(60));
        for i in 1..=5 {
            append(&h, "chat:a", &i.to_string(), l);
        }
        let epoch = read(&h, "chat:a", HistoryQuery::Position).position.epoch;
        let after = |seq, max| {
            read(
                &h,
                "chat:a",
                HistoryQuery::After {
                    since: StreamPosition::new(seq, epoch.clone()),
                    max,
                },
            )
        };
        // Kept: 3, 4, 5.
        let r = after(2, 100);
        assert!(r.complete);
        assert_eq!(
            r.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        assert!(after(5, 100).complete && after(5, 100).messages.is_empty());
        assert!(!after(1, 100).complete, "2 was dropped: a gap");
        assert!(!after(2, 2).complete, "3 missed, over the cap of 2");
        assert!(!after(6, 100).complete, "ahead of the stream");
        let other = read(
            &h,
            "chat:a",
            HistoryQuery::After {
                since: StreamPosition::new(4, "another"),
                max: 100,
            },
        );
        assert!(!other.complete && other.messages.is_empty());
        assert_eq!(
            read(&h, "chat:a", HistoryQuery::Last(2))
                .messages
                .iter()
                .map(|m| m.seq)
                .collect::<Vec<_>>(),
            [4, 5]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn age_drops_messages_and_the_sweep_frees_the_stream() {
        let h = MemoryHistory::default();
        let l = HistoryLimits::new(100, Duration::from_secs(60));
        append(&h, "chat:a", "old", l);
        tokio::time::advance(Duration::from_secs(30)).await;
        append(&h, "chat:a", "new", l);
        tokio::time::advance(Duration::from_secs(31)).await;
        h.sweep();
        assert_eq!(h.usage().messages, 1, "the first aged out");
        tokio::time::advance(Duration::from_secs(30)).await;
        h.sweep();
        assert_eq!(h.usage(), HistoryUsage::default(), "nothing left");
        assert_eq!(h.order().len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_evicts_the_oldest_of_all_rooms() {
        let one = append(
            &MemoryHistory::default(),
            "chat:a",
            "x",
            HistoryLimits::default(),
        );
        let cost = one.frame.payload().len() + ENTRY_OVERHEAD;
        let h = MemoryHistory::new(cost * 4);
        let l = HistoryLimits::default();
        for room in ["chat:a", "chat:b", "chat:a", "chat:b", "chat:a", "chat:b"] {
            append(&h, room, "x", l);
        }
        assert_eq!(h.usage().messages, 4);
        assert!(h.usage().bytes <= cost * 4);
        // a:1 and b:1 went first.
        let first = |room| read(&h, room, HistoryQuery::Last(10)).messages[0].seq;
        assert_eq!((first("chat:a"), first("chat:b")), (2, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn order_records_stay_bounded_when_counts_trim() {
        let h = MemoryHistory::default();
        let l = HistoryLimits::new(2, Duration::from_secs(600));
        for i in 0..10_000 {
            append(&h, "chat:a", &i.to_string(), l);
        }
        assert_eq!(h.usage().messages, 2);
        assert!(h.order().len() <= 2 * 2 + 1024 + 1, "{}", h.order().len());
    }
}
