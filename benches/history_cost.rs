//! What storing history costs a burst: 1,000 publishes back to back to 100 in-process
//! subscribers, timed until every subscriber has written every frame out, in a room
//! without history and in one with the default in-memory history, **alternating** round
//! by round so both see the same machine (these machines are shared and noisy). Prints
//! each round, the medians and the median of the per-round ratios.
//!
//! ```text
//! cargo bench --bench history_cost
//! ```

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wshub::bench_support::{MemorySubscribers, attach_memory_subscribers};
use wshub::{Hub, Namespace, Published, Room};

#[derive(Clone, Serialize, Deserialize)]
struct ChatMessage {
    user: String,
    text: String,
}

const SUBSCRIBERS: usize = 100;
const BURST: usize = 1_000;
const ROUNDS: usize = 21;

/// Bytes one publish writes to each subscriber (unmasked frame, position included).
fn per_subscriber(payload_len: usize, published: &Published) -> u64 {
    let position = published.position.as_ref().map_or(0, |p| {
        format!(r#","seq":{},"epoch":"{}""#, p.seq, p.epoch).len()
    });
    let len = payload_len + position;
    (if len <= 125 { 2 } else { 4 } + len) as u64
}

/// One burst: its time until every frame is written out.
async fn burst(room: &Room<ChatMessage>, subs: &MemorySubscribers, payload_len: usize) -> Duration {
    let msg = ChatMessage {
        user: "alice".into(),
        text: "The quick brown fox jumps over the lazy dog, twice: the quick brown fox \
               jumps over the lazy dog."
            .into(),
    };
    let start = Instant::now();
    let mut target = subs.bytes_written();
    for _ in 0..BURST {
        let published = room.publish(msg.clone()).await.unwrap();
        assert_eq!(published.delivered, SUBSCRIBERS);
        target += per_subscriber(payload_len, &published) * SUBSCRIBERS as u64;
    }
    tokio::time::timeout(Duration::from_secs(60), subs.wait_for_bytes(target))
        .await
        .expect("subscribers did not drain");
    start.elapsed()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let hub = Hub::builder()
            .namespace(Namespace::<ChatMessage>::new("plain").presence(false).no_history())
            .namespace(Namespace::<ChatMessage>::new("history").presence(false))
            .build();
        let mut rooms = Vec::new();
        for ns in ["plain", "history"] {
            let name = format!("{ns}:burst");
            let subs = attach_memory_subscribers(&hub, &name, SUBSCRIBERS).unwrap();
            let room = hub.room::<ChatMessage>(&name).unwrap();
            let payload_len = wshub::protocol::try_encode_message(
                &name,
                None,
                &ChatMessage {
                    user: "alice".into(),
                    text: "The quick brown fox jumps over the lazy dog, twice: the quick \
                           brown fox jumps over the lazy dog."
                        .into(),
                },
            )
            .unwrap()
            .len();
            rooms.push((room, subs, payload_len));
        }
        // Warm-up: one burst each.
        for (room, subs, len) in &rooms {
            burst(room, subs, *len).await;
        }
        let (mut plain, mut history, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            // Alternate which goes first, so neither always follows the other.
            let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            let mut t = [Duration::ZERO; 2];
            for i in order {
                let (room, subs, len) = &rooms[i];
                t[i] = burst(room, subs, *len).await;
            }
            let (p, h) = (t[0].as_secs_f64() * 1e3, t[1].as_secs_f64() * 1e3);
            println!("round {round:2}: plain {p:7.2} ms, history {h:7.2} ms, ratio {:.3}", h / p);
            plain.push(p);
            history.push(h);
            ratios.push(h / p);
        }
        let deliveries = (SUBSCRIBERS * BURST) as f64;
        let (p, h, r) = (median(plain), median(history), median(ratios));
        println!(
            "\n{BURST} publishes x {SUBSCRIBERS} subscribers, {ROUNDS} alternating rounds (medians):"
        );
        println!("  no history : {p:.2} ms ({:.2} M deliveries/s)", deliveries / p / 1e3);
        println!("  history    : {h:.2} ms ({:.2} M deliveries/s)", deliveries / h / 1e3);
        println!(
            "  history / no history, median of per-round ratios: {r:.3} (throughput cost {:.1}%)",
            (1.0 - 1.0 / r) * 100.0
        );
    });
}
