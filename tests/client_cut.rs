//! The Rust client through a proxy that cuts its TCP connection (no close frame) while
//! the server publishes 10,000 numbered messages at a steady rate: the application
//! sees every number exactly once and in order, however often the connection drops.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use wshub::client::{Client, ClientEvent, ConnectionState, Disconnect, RoomEvent};
use wshub::{HistoryLimits, Hub, Namespace};

use common::cut_proxy::CutProxy;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Num {
    n: u64,
}

const TOTAL: u64 = 10_000;
/// The proxy cuts every this many published messages.
const CUT_EVERY: u64 = 1_000;
/// One publish per tick.
const TICK: Duration = Duration::from_micros(400);

async fn hub() -> (Hub, std::net::SocketAddr) {
    let hub = Hub::builder()
        .namespace(
            Namespace::<Num>::new("count")
                .presence(false)
                .history(HistoryLimits::new(20_000, Duration::from_secs(600))),
        )
        .build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let h = hub.clone();
    tokio::spawn(async move { h.serve(listener).await });
    (hub, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_number_once_and_in_order_through_cut_connections() {
    let (hub, addr) = hub().await;
    let proxy = CutProxy::start(addr).await;
    let client = Client::builder(proxy.url("/"))
        .configure(|o| {
            o.backoff.base = Duration::from_millis(20);
            o.backoff.cap = Duration::from_millis(200);
        })
        .build()
        .unwrap();
    let mut events = client.events();
    let mut sub = client.join::<Num>("count:a").await.unwrap();

    // The publisher: a steady rate, cutting the connection every CUT_EVERY messages.
    let room = hub.room::<Num>("count:a").unwrap();
    let published = Arc::new(AtomicU64::new(0));
    let publisher = {
        let published = published.clone();
        let proxy_cut = Arc::new(proxy);
        let cutter = proxy_cut.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            for n in 1..=TOTAL {
                tick.tick().await;
                room.publish(Num { n }).await.unwrap();
                published.store(n, Ordering::Release);
                if n % CUT_EVERY == 0 && n < TOTAL {
                    cutter.cut();
                }
            }
        });
        (task, proxy_cut)
    };

    let mut seen = Vec::with_capacity(TOTAL as usize);
    let (mut recovered, mut not_recovered) = (0, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.last().copied() != Some(TOTAL) {
        let event = tokio::time::timeout_at(deadline, sub.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "stuck at {:?} of {TOTAL} ({} published)",
                    seen.last(),
                    published.load(Ordering::Acquire)
                )
            })
            .expect("the subscription ended");
        match event {
            RoomEvent::Message(m) => seen.push(m.data.n),
            RoomEvent::Recovered { .. } => recovered += 1,
            RoomEvent::NotRecovered { .. } => not_recovered += 1,
            RoomEvent::Lagged { missed } => panic!("the test reads fast enough: lagged {missed}"),
            _ => {}
        }
    }
    let (task, proxy) = publisher;
    task.await.unwrap();
    let expected: Vec<u64> = (1..=TOTAL).collect();
    if seen != expected {
        let dup = seen.windows(2).find(|w| w[1] <= w[0]);
        let gap = seen.windows(2).find(|w| w[1] > w[0] + 1);
        panic!(
            "{} messages seen; first repeat {dup:?}, first gap {gap:?}",
            seen.len()
        );
    }
    assert_eq!(not_recovered, 0, "every reconnect recovered");
    let cuts = (TOTAL - 1) / CUT_EVERY;
    assert_eq!(recovered, cuts, "one recovery per cut");
    // Each cut really cost a TCP connection: the first, and one per cut.
    assert_eq!(proxy.accepted() as u64, cuts + 1);
    // And the client saw each as a lost connection, never as a close from the server.
    let mut drops = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::ZERO, events.recv()).await {
        if let ClientEvent::State(ConnectionState::Disconnected { reason, .. }) = e {
            drops.push(reason);
        }
    }
    assert_eq!(drops.len() as u64, cuts, "{drops:?}");
    for reason in &drops {
        assert!(
            !matches!(reason, Disconnect::Close { code, .. } if *code != 1006),
            "{reason:?}"
        );
    }
    client.close().await;
}
