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
//! Each size runs twice, side by side: in a namespace without history (`plain`) and in
//! one with the default in-memory history (`history`: every publish is also stored, and
//! its frame carries its `seq` and `epoch`). `fanout_burst` publishes 1,000 messages
//! back to back to 100 subscribers and times until all are written out: burst
//! throughput, history off and on.
//!
//! `fanout_metrics` measures what recording metrics costs (feature `metrics`): the same
//! publish to 1, 100 and 10,000 subscribers on two hubs built side by side, one with
//! `HubConfig::metrics` off and one with it on (counters per thread, the publish timed,
//! every subscriber's written bytes counted).
//!
//! ```text
//! cargo bench --bench fanout
//! cargo bench --bench fanout -- fanout_metrics     # metrics off and on only
//! ```

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};
use wshub::bench_support::{MemorySubscribers, attach_memory_subscribers};
use wshub::{Hub, Namespace, Room};

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

/// The frame bytes one publish writes to each subscriber: the message, plus its stream
/// position in a namespace with history.
fn per_subscriber(payload_len: usize, published: &wshub::Published) -> u64 {
    let position = published.position.as_ref().map_or(0, |p| {
        format!(r#","seq":{},"epoch":"{}""#, p.seq, p.epoch).len()
    });
    frame_len(payload_len + position)
}

fn hub(rt: &tokio::runtime::Runtime) -> Hub {
    hub_with_metrics(rt, true)
}

/// [`hub`], with metrics recorded or not.
fn hub_with_metrics(rt: &tokio::runtime::Runtime, metrics: bool) -> Hub {
    rt.block_on(async {
        Hub::builder()
            .configure(|c| c.metrics = metrics)
            // The same rooms twice: without history, and with the default history
            // (100 messages, 10 minutes per room, in memory).
            .namespace(
                Namespace::<ChatMessage>::new("plain")
                    .presence(false)
                    .no_history()
                    .max_subscribers(usize::MAX),
            )
            .namespace(
                Namespace::<ChatMessage>::new("history")
                    .presence(false)
                    .max_subscribers(usize::MAX),
            )
            .build()
    })
}

fn message() -> ChatMessage {
    ChatMessage {
        user: "alice".into(),
        text: "The quick brown fox jumps over the lazy dog, twice: the quick brown fox \
               jumps over the lazy dog."
            .into(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// `iters` publishes of `msg` to `room`, each timed alone (the publish call: encode,
/// store if the namespace keeps history, queue for every member); between them,
/// untimed, every subscriber writes the frame out. `stored`: whether each publish must
/// come back with a position.
async fn timed_publishes(
    subs: &MemorySubscribers,
    room: &Room<ChatMessage>,
    msg: &ChatMessage,
    payload_len: usize,
    iters: u64,
    stored: bool,
) -> Duration {
    let n = subs.len();
    let mut timed = Duration::ZERO;
    for _ in 0..iters {
        let before = subs.bytes_written();
        let m = msg.clone();
        let start = Instant::now();
        let published = room.publish(m).await.unwrap();
        timed += start.elapsed();
        assert_eq!(published.delivered, n);
        assert_eq!(published.position.is_some(), stored);
        let target = before + per_subscriber(payload_len, &published) * n as u64;
        tokio::time::timeout(Duration::from_secs(30), subs.wait_for_bytes(target))
            .await
            .expect("subscribers did not drain");
    }
    timed
}

/// One publish to n subscribers, timed alone; history off and on, side by side.
fn fanout(c: &mut Criterion) {
    let rt = runtime();
    let hub = hub(&rt);
    let msg = message();
    let mut group = c.benchmark_group("fanout_publish");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for n in SIZES {
        for ns in ["plain", "history"] {
            let room_name = format!("{ns}:n{n}");
            let subs = rt
                .block_on(async { attach_memory_subscribers(&hub, &room_name, n) })
                .unwrap();
            let room = hub.room::<ChatMessage>(&room_name).unwrap();
            let payload = wshub::protocol::try_encode_message(&room_name, None, &msg).unwrap();
            group.throughput(Throughput::Elements(n as u64));
            group.bench_function(BenchmarkId::new(ns, n), |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    timed_publishes(&subs, &room, &msg, payload.len(), iters, ns == "history")
                });
            });
            assert_eq!(subs.queued_bytes(), 0);
            rt.block_on(async { drop(subs) });
        }
    }
    group.finish();
}

/// Burst throughput: 1,000 publishes back to back to 100 subscribers, timed until every
/// subscriber has written every frame out; history off and on, side by side.
fn burst(c: &mut Criterion) {
    const SUBSCRIBERS: usize = 100;
    const BURST: usize = 1_000;
    let rt = runtime();
    let hub = hub(&rt);
    let msg = message();
    let mut group = c.benchmark_group("fanout_burst");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for ns in ["plain", "history"] {
        let room_name = format!("{ns}:burst");
        let subs = rt
            .block_on(async { attach_memory_subscribers(&hub, &room_name, SUBSCRIBERS) })
            .unwrap();
        let room = hub.room::<ChatMessage>(&room_name).unwrap();
        let payload_len = wshub::protocol::try_encode_message(&room_name, None, &msg)
            .unwrap()
            .len();
        group.throughput(Throughput::Elements((SUBSCRIBERS * BURST) as u64));
        group.bench_function(BenchmarkId::new(ns, SUBSCRIBERS), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (subs, room, msg) = (&subs, &room, &msg);
                async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let mut target = subs.bytes_written();
                        for _ in 0..BURST {
                            let published = room.publish(msg.clone()).await.unwrap();
                            assert_eq!(published.delivered, SUBSCRIBERS);
                            target += per_subscriber(payload_len, &published) * SUBSCRIBERS as u64;
                        }
                        tokio::time::timeout(Duration::from_secs(60), subs.wait_for_bytes(target))
                            .await
                            .expect("subscribers did not drain");
                    }
                    start.elapsed()
                }
            });
        });
        assert_eq!(subs.queued_bytes(), 0);
        rt.block_on(async { drop(subs) });
    }
    group.finish();
}

/// One publish to n subscribers, timed alone, on a hub without metrics (`off`) and on
/// one with them (`on`), side by side; no history, so the publish itself is as cheap
/// as it gets and what recording adds shows most.
fn metrics_cost(c: &mut Criterion) {
    let rt = runtime();
    let hubs = [
        ("off", hub_with_metrics(&rt, false)),
        ("on", hub_with_metrics(&rt, true)),
    ];
    assert!(hubs[0].1.metrics_text().is_none());
    assert!(hubs[1].1.metrics_text().is_some());
    let msg = message();
    let mut group = c.benchmark_group("fanout_metrics");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for n in SIZES {
        for (label, hub) in &hubs {
            let room_name = format!("plain:m{n}");
            let subs = rt
                .block_on(async { attach_memory_subscribers(hub, &room_name, n) })
                .unwrap();
            let room = hub.room::<ChatMessage>(&room_name).unwrap();
            let payload_len = wshub::protocol::try_encode_message(&room_name, None, &msg)
                .unwrap()
                .len();
            group.throughput(Throughput::Elements(n as u64));
            group.bench_function(BenchmarkId::new(*label, n), |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    timed_publishes(&subs, &room, &msg, payload_len, iters, false)
                });
            });
            rt.block_on(async { drop(subs) });
        }
    }
    group.finish();
    interleaved(&rt, &hubs, &msg);
    // The `on` hub counted what was delivered and written.
    let text = hubs[1].1.metrics_text().unwrap();
    assert!(
        !text.contains("wshub_sent_bytes_total 0\n"),
        "bytes were counted"
    );
}

/// The same comparison as a paired measurement, robust to a machine whose load drifts
/// while criterion measures one ID after the other: publishes alternate between the
/// two hubs (which goes first alternates too), each timed alone, and the medians of
/// each side are printed with their ratio.
fn interleaved(rt: &tokio::runtime::Runtime, hubs: &[(&str, Hub); 2], msg: &ChatMessage) {
    // (subscribers, rounds, publishes timed together per sample: a publish to one
    // subscriber takes about 400 ns, a few ticks of this machine's clock, so small
    // fan-outs are timed in batches and reported per publish).
    for (n, rounds, batch) in [(1, 2_000, 32), (100, 1_000, 4), (10_000, 200, 1)] {
        let room_name = format!("plain:pair{n}");
        let sides: Vec<_> = hubs
            .iter()
            .map(|(_, hub)| {
                let subs = rt
                    .block_on(async { attach_memory_subscribers(hub, &room_name, n) })
                    .unwrap();
                (subs, hub.room::<ChatMessage>(&room_name).unwrap())
            })
            .collect();
        let payload_len = wshub::protocol::try_encode_message(&room_name, None, msg)
            .unwrap()
            .len();
        // The publishes run in a task on the runtime's worker, as a session's do in a
        // server: the subscribers it wakes go to that worker's own run queue rather
        // than the runtime's shared inject queue.
        let msg = msg.clone();
        let (mut times, sides) = rt
            .block_on(rt.spawn(async move {
                let mut times = [Vec::with_capacity(rounds), Vec::with_capacity(rounds)];
                for round in 0..rounds {
                    for k in 0..2 {
                        let side = (round + k) % 2;
                        let (subs, room) = &sides[side];
                        let mut target = subs.bytes_written();
                        let start = Instant::now();
                        for _ in 0..batch {
                            let published = room.publish(msg.clone()).await.unwrap();
                            target += per_subscriber(payload_len, &published) * n as u64;
                        }
                        times[side].push(start.elapsed() / batch);
                        tokio::time::timeout(Duration::from_secs(30), subs.wait_for_bytes(target))
                            .await
                            .expect("subscribers did not drain");
                    }
                }
                (times, sides)
            }))
            .unwrap();
        let median = |t: &mut Vec<Duration>| {
            t.sort_unstable();
            t[t.len() / 2]
        };
        let (off, on) = (median(&mut times[0]), median(&mut times[1]));
        println!(
            "fanout_metrics interleaved n={n} rounds={rounds} batch={batch}: off median {:.3} \
             us, on median {:.3} us, on/off {:.4}",
            off.as_secs_f64() * 1e6,
            on.as_secs_f64() * 1e6,
            on.as_secs_f64() / off.as_secs_f64()
        );
        rt.block_on(async { drop(sides) });
    }
}

criterion_group!(benches, fanout, burst, metrics_cost);
criterion_main!(benches);
