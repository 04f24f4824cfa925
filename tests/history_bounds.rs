//! History bounds on tokio's paused clock: count, age and the hub-wide byte budget
//! hold, and a room nobody uses has its history freed once it ages out.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wshub::{HistoryLimits, Hub, Namespace};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Msg {
    text: String,
}

fn msg(i: usize) -> Msg {
    Msg {
        text: format!("message {i:04} {}", "x".repeat(100)),
    }
}

const AGE: Duration = Duration::from_secs(60);

fn hub(budget: usize) -> Hub {
    Hub::builder()
        .namespace(Namespace::<Msg>::new("few").history(HistoryLimits::new(5, AGE)))
        .namespace(Namespace::<Msg>::new("many").history(HistoryLimits::new(10_000, AGE)))
        .configure(|c| {
            c.history_budget = budget;
            c.ping_interval = Duration::from_secs(10);
        })
        .build()
}

/// Advances the paused clock a second at a time (letting the hub's sweep run) until
/// `done`, for at most `limit`.
async fn advance_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let step = Duration::from_secs(1);
    let mut waited = Duration::ZERO;
    while !done() {
        if waited >= limit {
            return false;
        }
        tokio::time::advance(step).await;
        // Let the woken sweep task run.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        waited += step;
    }
    true
}

#[tokio::test(start_paused = true)]
async fn count_keeps_the_newest() {
    let hub = hub(64 << 20);
    let room = hub.room::<Msg>("few:a").unwrap();
    for i in 1..=20 {
        room.publish(msg(i)).await.unwrap();
    }
    let kept = room.history(100).await.unwrap();
    assert_eq!(
        kept.iter().map(|e| e.position.seq).collect::<Vec<_>>(),
        [16, 17, 18, 19, 20]
    );
    assert_eq!(hub.stats().history_messages, 5);
}

#[tokio::test(start_paused = true)]
async fn age_drops_old_messages() {
    let hub = hub(64 << 20);
    let room = hub.room::<Msg>("many:a").unwrap();
    room.publish(msg(1)).await.unwrap();
    tokio::time::advance(Duration::from_secs(40)).await;
    room.publish(msg(2)).await.unwrap();
    tokio::time::advance(Duration::from_secs(21)).await;
    // 61 s after the first, 21 s after the second.
    let kept = room.history(100).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].data, msg(2));
    assert_eq!(kept[0].position.seq, 2, "seq goes on: nothing was reset");
}

#[tokio::test(start_paused = true)]
async fn the_budget_holds_across_rooms() {
    let budget = 64 << 10;
    let hub = hub(budget);
    let mut last = Vec::new();
    for r in 0..10 {
        let room = hub.room::<Msg>(&format!("many:r{r}")).unwrap();
        for i in 0..200 {
            room.publish(msg(i)).await.unwrap();
        }
        last.push(room);
    }
    let stats = hub.stats();
    assert!(
        stats.history_bytes <= budget,
        "{} bytes kept, budget {budget}",
        stats.history_bytes
    );
    // 2,000 messages of ~200 bytes would be ~400 KB: most went, the newest stayed.
    assert!(stats.history_messages < 2_000);
    assert!(stats.history_messages > 100, "{stats:?}");
    let newest = last[9].history(1).await.unwrap();
    assert_eq!(newest[0].data, msg(199));
    // The oldest rooms lost their history first.
    assert!(last[0].history(1000).await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_room_is_freed_once_its_history_ages_out() {
    let hub = hub(64 << 20);
    {
        let room = hub.room::<Msg>("many:gone").unwrap();
        for i in 0..100 {
            room.publish(msg(i)).await.unwrap();
        }
    }
    let stats = hub.stats();
    assert_eq!(stats.history_rooms, 1);
    assert_eq!(stats.history_messages, 100);
    let used = stats.history_bytes;
    assert!(used > 100 * 100, "{used}");
    // Nobody is in it and no handle is left: the room itself goes on the next sweep,
    // its history stays until it ages out.
    assert!(advance_until(Duration::from_secs(20), || hub.stats().rooms == 0).await);
    assert_eq!(hub.stats().history_bytes, used, "kept while it is young");
    let freed = advance_until(Duration::from_secs(120), || {
        let s = hub.stats();
        s.history_rooms == 0 && s.history_messages == 0 && s.history_bytes == 0
    })
    .await;
    assert!(freed, "{:?}", hub.stats());
}
