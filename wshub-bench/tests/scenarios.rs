//! The `broadcast` and `echo` scenarios, run for about a second each against
//! in-process servers on 127.0.0.1 port 0: every message expected arrives, and the
//! latency histogram holds one sample per delivery.

use std::time::Duration;

use tokio::net::TcpListener;
use wshub::auth::{Identity, StaticTokens};
use wshub::ws::WsConfig;
use wshub::ws::handshake::{HandshakeConfig, accept};
use wshub::{Hub, Namespace};
use wshub_bench::conn::Target;
use wshub_bench::phases::Schedule;
use wshub_bench::report::Report;
use wshub_bench::scenario::{broadcast, echo};

const SUBSCRIBERS: usize = 20;
const ROOMS: usize = 2;
const PUBLISHERS: usize = 2;

/// A hub with a `bench` namespace of any JSON, a token per connection (`tok-0`,
/// `tok-1`, ...), and no rate limits in the way of the generator.
async fn serve_hub() -> String {
    let tokens = (0..SUBSCRIBERS + PUBLISHERS)
        .map(|i| {
            (
                format!("tok-{i}"),
                Identity::new(format!("u{i}"), format!("user {i}")),
            )
        })
        .collect::<StaticTokens>();
    let hub = Hub::builder()
        .namespace(Namespace::<serde_json::Value>::new("bench"))
        .authenticator(tokens)
        .configure(|c| {
            c.rate_per_second = f64::INFINITY;
            c.rate_burst = f64::INFINITY;
            c.user_rate_per_second = f64::INFINITY;
            c.host_rate_per_second = f64::INFINITY;
            c.membership_rate_per_second = f64::INFINITY;
        })
        .build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { hub.serve(listener).await });
    url
}

/// A plain WebSocket echo server on wshub's engine.
async fn serve_echo() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (stream, peer) = listener.accept().await.unwrap();
            tokio::spawn(echo_one(stream, peer));
        }
    });
    url
}

async fn echo_one(stream: tokio::net::TcpStream, peer: std::net::SocketAddr) -> wshub::Result<()> {
    let hs = HandshakeConfig::default();
    let mut ws = accept(stream, Some(peer), &hs, WsConfig::default()).await?;
    while let Some(msg) = ws.recv().await? {
        ws.send(msg).await?;
    }
    Ok(())
}

fn assert_complete(r: &Report) {
    assert!(r.errors.is_empty(), "errors: {:?}", r.errors);
    assert!(r.expected > 0);
    assert_eq!(r.delivered, r.expected, "{}", r.table());
    assert_eq!(r.latency.count, r.delivered);
    assert!(r.latency.p50_us > 0.0);
    assert!(r.latency.p50_us <= r.latency.p99_us && r.latency.p99_us <= r.latency.max_us);
    // Under the drain limit: a latency longer than the run means a wrong clock.
    assert!(r.latency.max_us < 10_000_000.0, "{}", r.table());
    assert!(r.generator_cpu_s > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_paced_delivers_everything() {
    let url = serve_hub().await;
    let mut target = Target::resolve(&url).await.unwrap();
    target.subprotocol = Some("wshub.v1".into());
    target.token = Some("tok-{i}".into());
    let opts = broadcast::BroadcastOpts {
        subscribers: SUBSCRIBERS,
        rooms: ROOMS,
        publishers: PUBLISHERS,
        schedule: Some(Schedule::fixed(Duration::from_secs(1), 200.0)),
        progress: false,
        ..Default::default()
    };
    let r = broadcast::run(target, opts).await.unwrap();
    assert_eq!(r.connected, (SUBSCRIBERS + PUBLISHERS) as u64);
    assert_eq!(r.sent, 200);
    // Each room holds 10 subscribers and 1 publisher, who gets its own messages.
    assert_eq!(r.expected, 200 * 11);
    assert_complete(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_burst_with_header_token() {
    let url = serve_hub().await;
    let mut target = Target::resolve(&url).await.unwrap();
    target.subprotocol = Some("wshub.v1".into());
    target.token = Some("tok-{i}".into());
    target.token_in_header = true;
    let opts = broadcast::BroadcastOpts {
        subscribers: SUBSCRIBERS,
        rooms: 1,
        publishers: 1,
        messages: Some(500),
        size: 256,
        progress: false,
        ..Default::default()
    };
    let r = broadcast::run(target, opts).await.unwrap();
    assert_eq!(r.sent, 500);
    assert_eq!(r.expected, 500 * (SUBSCRIBERS as u64 + 1));
    assert_complete(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_closed_and_open_loop() {
    let url = serve_echo().await;
    let target = Target::resolve(&url).await.unwrap();
    let closed = echo::run(
        target.clone(),
        echo::EchoOpts {
            connections: 4,
            duration: Duration::from_millis(500),
            progress: false,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(closed.connected, 4);
    assert_eq!(closed.expected, closed.sent);
    assert_complete(&closed);

    let open = echo::run(
        target,
        echo::EchoOpts {
            connections: 4,
            schedule: Some(Schedule::fixed(Duration::from_millis(500), 400.0)),
            progress: false,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(open.sent, 200);
    assert_complete(&open);
}
