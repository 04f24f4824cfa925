//! The Rust client closed as a real slow consumer (1013): a proxy stops passing the
//! server's bytes on while the server publishes numbered messages at a steady rate,
//! the client's queue on the hub overflows, the hub closes it with 1013 after what was
//! queued; the client reconnects, recovers, and the application sees every number
//! exactly once and in order.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use wshub::client::{Client, ClientEvent, ConnectionState, Disconnect, RoomEvent};
use wshub::{HistoryLimits, Hub, Namespace};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Num {
    n: u64,
    pad: String,
}

const TOTAL: u64 = 5_000;
const STALL_AT: u64 = 500;
const TICK: Duration = Duration::from_millis(1);
/// The hub's outbound queue per connection (the default, 1 MiB). A recovery may replay
/// up to half of it: the messages published while the client reconnects fit.
const QUEUE: usize = 1024 * 1024;

/// A proxy whose server-to-client direction can be stalled: it stops reading from the
/// server, whose socket buffers (kept small on the proxy's side) fill, then the hub's
/// queue for the client.
struct StallProxy {
    addr: SocketAddr,
    stalled: Arc<watch::Sender<bool>>,
}

impl StallProxy {
    async fn start(target: SocketAddr) -> StallProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stalled = Arc::new(watch::channel(false).0);
        let st = stalled.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let socket = TcpSocket::new_v4().unwrap();
                socket.set_recv_buffer_size(4096).unwrap();
                let Ok(server) = socket.connect(target).await else {
                    continue;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                });
                let mut stalled = st.subscribe();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        if stalled.wait_for(|s| !*s).await.is_err() {
                            return;
                        }
                        match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if cw.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        StallProxy { addr, stalled }
    }

    fn stall(&self, on: bool) {
        self.stalled.send_replace(on);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_slow_consumer_close_loses_nothing() {
    let hub = Hub::builder()
        .namespace(
            Namespace::<Num>::new("count")
                .presence(false)
                .history(HistoryLimits::new(20_000, Duration::from_secs(600))),
        )
        .configure(|c| c.ws.max_queued_bytes = QUEUE)
        .build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let h = hub.clone();
    tokio::spawn(async move { h.serve(listener).await });
    let proxy = StallProxy::start(addr).await;

    let client = Client::builder(format!("ws://{}/", proxy.addr))
        .configure(|o| {
            o.backoff.base = Duration::from_millis(20);
            o.backoff.cap = Duration::from_millis(200);
            // Uncompressed, so the bytes that fill the buffers are the messages'.
            o.handshake = o.handshake.clone().with_deflate(false);
        })
        .build()
        .unwrap();
    let mut events = client.events();
    let mut sub = client.join::<Num>("count:a").await.unwrap();

    let room = hub.room::<Num>("count:a").unwrap();
    // About 2 MB/s: the stalled path's buffers and the 1 MiB queue fill in seconds.
    let pad = "p".repeat(2000);
    let (closed_tx, mut closed_rx) = watch::channel(0u64);
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            for n in 1..=TOTAL {
                tick.tick().await;
                room.publish(Num {
                    n,
                    pad: pad.clone(),
                })
                .await
                .unwrap();
                if n == STALL_AT {
                    proxy.stall(true);
                }
                // Released as soon as the hub has given up on the client.
                if *closed_tx.borrow() == 0 && hub.stats().slow_consumers > 0 {
                    closed_tx.send_replace(n);
                    proxy.stall(false);
                }
            }
            proxy
        })
    };

    let mut seen = Vec::with_capacity(TOTAL as usize);
    let mut recovered = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.last().copied() != Some(TOTAL) {
        let event = tokio::time::timeout_at(deadline, sub.recv())
            .await
            .unwrap_or_else(|_| panic!("stuck at {:?}", seen.last()))
            .expect("the subscription ended");
        match event {
            RoomEvent::Message(m) => seen.push(m.data.n),
            RoomEvent::Recovered { .. } => recovered += 1,
            RoomEvent::NotRecovered { position, replayed } => {
                panic!(
                    "not recovered at {:?}: {position:?} {replayed}",
                    seen.last()
                )
            }
            RoomEvent::Lagged { missed } => panic!("lagged {missed}"),
            _ => {}
        }
    }
    let proxy = publisher.await.unwrap();
    proxy.stall(false);
    let closed_at = *closed_rx.borrow_and_update();
    assert!(closed_at > STALL_AT, "never closed as a slow consumer");
    eprintln!("closed as a slow consumer at message {closed_at}");
    assert_eq!(
        hub.stats().slow_consumers,
        1,
        "the hub closed it as a slow consumer"
    );
    let expected: Vec<u64> = (1..=TOTAL).collect();
    assert!(
        seen == expected,
        "{} seen, not 1..={TOTAL} in order",
        seen.len()
    );
    assert_eq!(recovered, 1);
    let mut closes = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::ZERO, events.recv()).await {
        if let ClientEvent::State(ConnectionState::Disconnected { reason, .. }) = e {
            closes.push(reason);
        }
    }
    assert!(
        matches!(
            closes.as_slice(),
            [Disconnect::Close { code: 1013, reason }] if reason == "slow consumer"
        ),
        "{closes:?}"
    );
    client.close().await;
}
