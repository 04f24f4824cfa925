//! One node against three nodes through Redis (feature `redis`; needs `redis-server` on
//! the PATH, started here on a free port without persistence and stopped at the end).
//!
//! - **Throughput**: 1,000 publishes (8 publishers at once) to 300 in-process
//!   subscribers of one room, timed until every subscriber has written every frame:
//!   one node with in-memory history (300 subscribers on it), then three nodes on one
//!   Redis (100 subscribers on each, the publishers spread over the nodes).
//! - **Latency**: one publish at a time; the time from the publish call until a
//!   subscriber has written the frame, on the same node without Redis, then on another
//!   node through Redis. The difference is what the Redis hop adds.
//!
//! ```text
//! cargo bench --bench cluster
//! ```

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wshub::bench_support::{MemorySubscribers, attach_memory_subscribers};
use wshub::redis::{RedisBackplane, RedisOptions};
use wshub::{Hub, Namespace, Published, Room};

#[derive(Clone, Serialize, Deserialize)]
struct ChatMessage {
    user: String,
    text: String,
}

const SUBSCRIBERS: usize = 300;
const PUBLISHES: usize = 1_000;
const PUBLISHERS: usize = 8;
const ROUNDS: usize = 5;
const LATENCY_SAMPLES: usize = 500;
const ROOM: &str = "chat:bench";

fn message() -> ChatMessage {
    ChatMessage {
        user: "alice".into(),
        text: "The quick brown fox jumps over the lazy dog, twice.".into(),
    }
}

/// Bytes one publish writes to each subscriber (unmasked frame, position included).
fn frame_len(published: &Published) -> u64 {
    let base = wshub::protocol::try_encode_message(ROOM, None, &message())
        .unwrap()
        .len();
    let position = published.position.as_ref().map_or(0, |p| {
        format!(r#","seq":{},"epoch":"{}""#, p.seq, p.epoch).len()
    });
    let len = base + position;
    (if len <= 125 { 2 } else { 4 } + len) as u64
}

struct Redis(Child, u16);

impl Redis {
    fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis(child, port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hub(redis: Option<&Redis>, prefix: &str) -> Hub {
    let mut b = Hub::builder().namespace(Namespace::<ChatMessage>::new("chat").presence(false));
    if let Some(r) = redis {
        let mut options = RedisOptions::default();
        options.prefix = prefix.to_owned();
        b = b.backplane(
            RedisBackplane::new(&format!("redis://127.0.0.1:{}/", r.1), options).unwrap(),
        );
    }
    b.build()
}

/// `PUBLISHES` publishes from `PUBLISHERS` tasks over `rooms` (round-robin), timed
/// until every subscriber has written every frame.
async fn burst(rooms: &[Room<ChatMessage>], subs: &[MemorySubscribers]) -> Duration {
    let targets: Vec<u64> = subs.iter().map(|s| s.bytes_written()).collect();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let room = rooms[p % rooms.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut bytes = 0;
            for _ in 0..PUBLISHES / PUBLISHERS {
                let published = room.publish(message()).await.unwrap();
                bytes += frame_len(&published);
            }
            bytes
        }));
    }
    let mut per_sub = 0;
    for t in tasks {
        per_sub += t.await.unwrap();
    }
    for (s, before) in subs.iter().zip(targets) {
        tokio::time::timeout(
            Duration::from_secs(60),
            s.wait_for_bytes(before + per_sub * s.len() as u64),
        )
        .await
        .expect("subscribers did not drain");
    }
    start.elapsed()
}

/// One publish at a time on `room`; each timed until `sub` (one subscriber) wrote it.
async fn latencies(room: &Room<ChatMessage>, sub: &MemorySubscribers) -> Vec<f64> {
    let mut out = Vec::new();
    for _ in 0..LATENCY_SAMPLES {
        let before = sub.bytes_written();
        let start = Instant::now();
        let published = room.publish(message()).await.unwrap();
        sub.wait_for_bytes(before + frame_len(&published)).await;
        out.push(start.elapsed().as_secs_f64() * 1e6);
    }
    out
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    percentile(&mut v, 0.5)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let redis = Redis::start();
    rt.block_on(async {
        // One node.
        let single = hub(None, "");
        let single_subs = vec![attach_memory_subscribers(&single, ROOM, SUBSCRIBERS).unwrap()];
        let single_rooms = vec![single.room::<ChatMessage>(ROOM).unwrap()];
        // Three nodes on Redis.
        let nodes: Vec<Hub> = (0..3).map(|_| hub(Some(&redis), "bench")).collect();
        let cluster_subs: Vec<MemorySubscribers> = nodes
            .iter()
            .map(|h| attach_memory_subscribers(h, ROOM, SUBSCRIBERS / 3).unwrap())
            .collect();
        let cluster_rooms: Vec<Room<ChatMessage>> =
            nodes.iter().map(|h| h.room::<ChatMessage>(ROOM).unwrap()).collect();
        burst(&single_rooms, &single_subs).await;
        burst(&cluster_rooms, &cluster_subs).await;
        let (mut one, mut three) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let a = burst(&single_rooms, &single_subs).await.as_secs_f64();
            let b = burst(&cluster_rooms, &cluster_subs).await.as_secs_f64();
            let d = (PUBLISHES * SUBSCRIBERS) as f64;
            println!(
                "round {round}: one node {:.2} M deliveries/s, three nodes via Redis {:.2} M deliveries/s",
                d / a / 1e6,
                d / b / 1e6
            );
            one.push(d / a);
            three.push(d / b);
        }
        drop((single_subs, cluster_subs));

        // Latency: one subscriber on the publishing node (no Redis), and one on
        // another node (through Redis).
        let lat_single = hub(None, "");
        let s1 = attach_memory_subscribers(&lat_single, ROOM, 1).unwrap();
        let r1 = lat_single.room::<ChatMessage>(ROOM).unwrap();
        let a = hub(Some(&redis), "lat");
        let b = hub(Some(&redis), "lat");
        let s2 = attach_memory_subscribers(&b, ROOM, 1).unwrap();
        let r2 = a.room::<ChatMessage>(ROOM).unwrap();
        // And on the publishing node itself, through Redis too (the bus echo).
        let c = hub(Some(&redis), "lat-local");
        let s3 = attach_memory_subscribers(&c, ROOM, 1).unwrap();
        let r3 = c.room::<ChatMessage>(ROOM).unwrap();
        latencies(&r1, &s1).await;
        latencies(&r2, &s2).await;
        latencies(&r3, &s3).await;
        let mut l1 = latencies(&r1, &s1).await;
        let mut l2 = latencies(&r2, &s2).await;
        let mut l3 = latencies(&r3, &s3).await;
        let (p50a, p99a) = (percentile(&mut l1, 0.5), percentile(&mut l1, 0.99));
        let (p50b, p99b) = (percentile(&mut l2, 0.5), percentile(&mut l2, 0.99));
        let (p50c, p99c) = (percentile(&mut l3, 0.5), percentile(&mut l3, 0.99));

        println!("\n{PUBLISHES} publishes ({PUBLISHERS} publishers) x {SUBSCRIBERS} subscribers, {ROUNDS} rounds (medians):");
        println!("  one node (memory history)     : {:.2} M deliveries/s", median(one) / 1e6);
        println!("  three nodes via Redis         : {:.2} M deliveries/s", median(three) / 1e6);
        println!("latency, publish call -> frame written, {LATENCY_SAMPLES} sequential publishes:");
        println!("  same node, no Redis           : p50 {p50a:.0} us, p99 {p99a:.0} us");
        println!("  same node, through Redis      : p50 {p50c:.0} us, p99 {p99c:.0} us");
        println!("  other node, through Redis     : p50 {p50b:.0} us, p99 {p99b:.0} us");
        println!("  added by the Redis hop        : p50 {:.0} us, p99 {:.0} us", p50b - p50a, p99b - p99a);
    });
    drop(redis);
}
