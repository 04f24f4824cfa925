//! After a server restart, 100 Rust clients come back spread out by their full-jitter
//! backoff, not in one burst, and each is told it may have missed messages (a new
//! in-memory history: another epoch).
//!
//! What is asserted is the spread of the waits the clients chose (each uniform in
//! [0, base], by `PROTOCOL.md`'s policy), not real-clock timings; the reconnection
//! times actually measured are printed as a histogram (`--nocapture`).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::time::Instant;
use wshub::client::{Client, ClientEvent, ConnectionState, Events, RoomEvent, Subscription};
use wshub::{Hub, Namespace};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Note {
    text: String,
}

const CLIENTS: usize = 100;
const BASE: Duration = Duration::from_millis(1_000);

fn start(listener: TcpListener) -> (Hub, tokio::task::JoinHandle<std::io::Result<()>>) {
    let hub = Hub::builder()
        .namespace(Namespace::<Note>::new("notes").presence(false))
        .configure(|c| {
            // 100 clients on one address: the per-host limits are not the subject.
            c.max_connections_per_ip = 1_000;
            c.max_pending_per_host = 1_000;
        })
        .build();
    let h = hub.clone();
    let task = tokio::spawn(async move { h.serve(listener).await });
    (hub, task)
}

/// Waits for the next state on `events` matching `pred`.
async fn state(events: &mut Events, pred: impl Fn(&ConnectionState) -> bool) -> ConnectionState {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(ClientEvent::State(s))) if pred(&s) => return s,
            Ok(Some(_)) => continue,
            other => panic!("no such state: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_restarted_server_come_back_spread_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (hub, serving) = start(listener);

    let mut clients: Vec<(Client, Events, Subscription<Note>)> = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let client = Client::builder(format!("ws://{addr}/"))
            .configure(|o| {
                o.backoff.base = BASE;
                o.backoff.cap = Duration::from_secs(10);
            })
            .jitter_seed(0x5eed + i as u64)
            .build()
            .unwrap();
        let events = client.events();
        let sub = client.join::<Note>("notes:all").await.unwrap();
        clients.push((client, events, sub));
    }
    hub.room::<Note>("notes:all")
        .unwrap()
        .publish(Note {
            text: "before".into(),
        })
        .await
        .unwrap();

    // Each client's own watcher: the wait it chose when the connection closed, and
    // when it was connected again (observed as it happens, not in turn).
    let mut watchers = Vec::new();
    let handles: Vec<Client> = clients.iter().map(|(c, _, _)| c.clone()).collect();
    for (_, mut events, mut sub) in clients {
        watchers.push(tokio::spawn(async move {
            let wait = match state(&mut events, |s| {
                matches!(s, ConnectionState::Disconnected { .. })
            })
            .await
            {
                ConnectionState::Disconnected { retry_in, .. } => retry_in,
                _ => unreachable!(),
            };
            state(&mut events, |s| {
                matches!(s, ConnectionState::Connected { .. })
            })
            .await;
            let back = Instant::now();
            // Told plainly that messages may be missing: the new hub has another epoch.
            loop {
                match tokio::time::timeout(Duration::from_secs(30), sub.recv())
                    .await
                    .expect("no re-join event")
                    .expect("subscription ended")
                {
                    RoomEvent::Message(m) => assert_eq!(m.data.text, "before"),
                    RoomEvent::NotRecovered { .. } => break,
                    other => panic!("expected NotRecovered, got {other:?}"),
                }
            }
            (wait, back)
        }));
    }

    // The restart: every client is closed with 1001, the port is free again, and a new
    // process (a new hub, a new in-memory history) listens on it at once.
    let restarted = Instant::now();
    assert!(hub.shutdown().await);
    serving.await.unwrap().unwrap();
    let (hub2, _serving2) = start(TcpListener::bind(addr).await.unwrap());
    let mut waits = Vec::new();
    let mut back = Vec::new();
    for w in watchers {
        let (wait, at) = w.await.unwrap();
        waits.push(wait);
        back.push(at.duration_since(restarted));
    }
    assert_eq!(hub2.stats().connections, CLIENTS);

    // The waits the clients chose: within [0, base] (the first attempt), and spread
    // over it. Uniform waits put about 10 in each tenth of the window; 30 or more in
    // one tenth would be a burst (a chance below 1e-8 for fair jitter).
    assert!(waits.iter().all(|w| *w <= BASE), "{waits:?}");
    let mut tenths = [0usize; 10];
    for w in &waits {
        let i = (w.as_secs_f64() / BASE.as_secs_f64() * 10.0) as usize;
        tenths[i.min(9)] += 1;
    }
    assert!(tenths.iter().all(|&n| n < 30), "waits bunched: {tenths:?}");
    let (min, max) = (waits.iter().min().unwrap(), waits.iter().max().unwrap());
    assert!(*max - *min >= BASE / 2, "waits from {min:?} to {max:?}");

    // What was measured, for the record (not asserted: real clock, shared machine).
    back.sort();
    let mut histogram = [0usize; 12];
    for b in &back {
        histogram[((b.as_millis() / 100) as usize).min(11)] += 1;
    }
    eprintln!("chosen waits per 100 ms of [0, 1 s): {tenths:?}");
    eprintln!(
        "reconnected per 100 ms after the restart (last bucket: 1.1 s and later): {histogram:?}"
    );
    eprintln!(
        "first {:?}, median {:?}, last {:?}",
        back[0],
        back[CLIENTS / 2],
        back[CLIENTS - 1]
    );
    for client in handles {
        client.close().await;
    }
}
