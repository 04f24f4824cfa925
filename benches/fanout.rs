//! Fan-out of one server publish to 1, 100 and 10,000 subscribers of a room, in process
//! (criterion; short runs, the machine has 2 cores).
//!
//! Each subscriber is a real hub connection (its own engine `WebSocket`, bounded
//! outbound queue and tokio task) over an in-memory stream that discards what it is
//! given (`wshub::bench_support`): no sockets, so 10,000 subscribers need no file
//! descriptors. One iteration is one `Room::publish` of a ~150-byte chat message:
//! encode and frame once, then queue the shared frame for every member and wake its
//! task. Only the publish call is timed; before the next one, the benchmark waits until
//! every subscriber's task has written the frame out (on the runtime's one worker
//! thread, which also runs concurrently with the publish, as in a server).
//!
//! Throughput is in elements = deliveries, so criterion's "thrpt" is deliveries/s and
//! time / n is the cost of one delivery.
//!
//! ```text
//! cargo bench --bench fanout
//! ```

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};
use wshub::bench_support::attach_memory_subscribers;
use wshub::{Hub, Namespace};

#[derive(Clone, Serialize, Deserialize)]
struct ChatMessage {
    user: String,
    text: String,
}

const SIZES: [usize; 3] = [1, 100, 10_000];

/// Length of the server frame carrying `payload_len` bytes (unmasked, uncompressed).
fn frame_len(payload_len: usize) -> u64 {
    let header = match payload_len {
        0..=125 => 2,
        126..=65_535 => 4,
        _ => 10,
    };
    (header + payload_len) as u64
}

fn fanout(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let hub = rt.block_on(async {
        Hub::builder()
            .namespace(
                Namespace::<ChatMessage>::new("bench")
                    .presence(false)
                    .max_subscribers(usize::MAX),
            )
            .build()
    });
    let msg = ChatMessage {
        user: "alice".into(),
        text: "The quick brown fox jumps over the lazy dog, twice: the quick brown fox \
               jumps over the lazy dog."
            .into(),
    };

    let mut group = c.benchmark_group("fanout_publish");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for n in SIZES {
        let room_name = format!("bench:n{n}");
        let subs = rt
            .block_on(async { attach_memory_subscribers(&hub, &room_name, n) })
            .unwrap();
        let room = hub.room::<ChatMessage>(&room_name).unwrap();
        let payload = wshub::protocol::try_encode_message(&room_name, None, &msg).unwrap();
        let per_publish = frame_len(payload.len()) * n as u64;

        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (subs, room, msg) = (&subs, &room, &msg);
                async move {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        let target = subs.bytes_written() + per_publish;
                        let m = msg.clone();
                        let start = Instant::now();
                        let delivered = room.publish(m).await.unwrap().delivered;
                        timed += start.elapsed();
                        assert_eq!(delivered, n);
                        // Untimed: every subscriber writes the frame out.
                        tokio::time::timeout(Duration::from_secs(30), subs.wait_for_bytes(target))
                            .await
                            .expect("subscribers did not drain");
                    }
                    timed
                }
            });
        });
        assert_eq!(subs.queued_bytes(), 0);
        rt.block_on(async { drop(subs) });
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
