//! Issue 7, attack 1: slowloris. Thousands of TCP connections that send the start of a
//! request (`GET / HTTP/1.1\r\nHost: x\r\n`, or the first bytes of a TLS record) and
//! then nothing, against `Hub::serve_axum` (an app with an HTTP route and the hub's
//! route), `Hub::serve`, `Hub::serve_tls` and `Hub::serve_axum_tls`.
//!
//! Defended outcome, on each serving path:
//! - one host gets at most `max_pending_per_host` connections held, one /24 at most
//!   `max_pending_per_network`, everybody together at most `max_pending_connections`
//!   (checked on the client side and in `HubStats::pending`);
//! - connections over a cap are refused at once, before the server reads anything:
//!   `429` (host or network share used up) or `503` (server full), with
//!   `Connection: close`, on plain listeners; closed on TLS listeners;
//! - while one host and one network attack, a legitimate client from elsewhere still
//!   gets its HTTP response and its WebSocket (101, then a `wshub.v1` reply);
//! - the held connections are closed `handshake_timeout` after they were accepted, not
//!   before (the TLS handshake counts in the same deadline), and the service is whole
//!   again.
//!
//! Also: `axum_route` under a plain `axum::serve` refuses heads over the documented
//! limits with 431 and warns once that per-IP limits are off without `ConnectInfo`,
//! and `serve_axum` closes idle keep-alive connections.
//!
//! The clock is paused and moves only when a test advances it (see
//! `common::attack`); every wait is on an event, bounded in real time.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use common::attack::{
    PARTIAL_HEAD, PARTIAL_TLS_RECORD, Seen, Watchdog, hold_the_clock, lo, open, peek, wait_for_end,
    wait_until,
};
use common::hub::{Client, test_hub_builder};
use common::raw::raw_http;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wshub::Hub;

/// `handshake_timeout`, left at its default.
const T: Duration = Duration::from_secs(10);
/// Lowered caps, so that the attack is quick.
const MAX_PENDING: usize = 256;
const PER_HOST: usize = 16;
const PER_NETWORK: usize = 64;

fn attack_hub() -> Hub {
    let hub = test_hub_builder()
        .configure(|c| {
            c.max_pending_connections = MAX_PENDING;
            c.max_pending_per_host = PER_HOST;
            c.max_pending_per_network = PER_NETWORK;
        })
        .build();
    assert_eq!(hub.config().handshake_timeout, T);
    hub
}

/// An app with an HTTP route and the hub's route.
fn app(hub: &Hub) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/ws", hub.axum_route())
}

/// The four ways of serving a hub on a listener.
#[derive(Clone)]
enum Target {
    /// `serve_axum`: HTTP on `/health`, the hub on `/ws`.
    Axum,
    /// `serve`: the hub on every path.
    Plain,
    /// `serve_tls`, with this self-signed certificate (PEM).
    Tls(String),
    /// `serve_axum_tls`.
    AxumTls(String),
}

impl Target {
    fn is_tls(&self) -> bool {
        matches!(self, Target::Tls(_) | Target::AxumTls(_))
    }

    /// What a slowloris sends before going quiet.
    fn partial(&self) -> &'static [u8] {
        if self.is_tls() {
            PARTIAL_TLS_RECORD
        } else {
            PARTIAL_HEAD
        }
    }

    /// What a connection over a cap sees: the status on plain listeners, a close on
    /// TLS ones.
    fn refusal(&self, status: u16) -> Seen {
        if self.is_tls() {
            Seen::Closed
        } else {
            Seen::Refused(status)
        }
    }
}

/// Serves `hub` as `kind` says on 127.0.0.1:0.
async fn start(hub: &Hub, kind: &str) -> (SocketAddr, Target) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let h = hub.clone();
    let target = match kind {
        "axum" => {
            let app = app(hub);
            tokio::spawn(async move { h.serve_axum(listener, app).await });
            Target::Axum
        }
        "plain" => {
            tokio::spawn(async move { h.serve(listener).await });
            Target::Plain
        }
        "tls" => {
            let cert = wshub::tls::self_signed(["localhost"]).unwrap();
            let acceptor = cert.acceptor.clone();
            tokio::spawn(async move { h.serve_tls(listener, acceptor).await });
            Target::Tls(cert.cert_pem)
        }
        "axum_tls" => {
            let cert = wshub::tls::self_signed(["localhost"]).unwrap();
            let (acceptor, app) = (cert.acceptor.clone(), app(hub));
            tokio::spawn(async move { h.serve_axum_tls(listener, acceptor, app).await });
            Target::AxumTls(cert.cert_pem)
        }
        other => unreachable!("{other}"),
    };
    (addr, target)
}

/// One attacker connection: where it comes from, and its socket.
struct Conn {
    from: IpAddr,
    socket: std::net::TcpStream,
}

/// Opens `per_host` connections from each of `hosts`, one at a time, each counted by
/// the server (held or refused) before the next: the accept backlog never fills up.
async fn attack(
    hub: &Hub,
    addr: SocketAddr,
    target: &Target,
    hosts: &[IpAddr],
    per_host: usize,
) -> Vec<Conn> {
    let accounted = |h: &Hub| {
        let s = h.stats();
        s.pending as u64 + s.refused_pending
    };
    let mut conns = Vec::with_capacity(hosts.len() * per_host);
    for &from in hosts {
        for _ in 0..per_host {
            let before = accounted(hub);
            let socket = open(from, addr, target.partial()).await;
            wait_until("the server to count a connection", || {
                accounted(hub) > before
            })
            .await;
            assert!(hub.stats().pending <= MAX_PENDING, "{:?}", hub.stats());
            conns.push(Conn { from, socket });
        }
    }
    conns
}

/// Splits `conns` into those the server holds and what it did with the others,
/// checking the per-host and per-network caps on the way.
fn sort(conns: Vec<Conn>, held: &mut Vec<Conn>) -> Vec<Seen> {
    let mut refused = Vec::new();
    for mut c in conns {
        match peek(&mut c.socket) {
            Seen::Held => held.push(c),
            other => refused.push(other),
        }
    }
    let count = |f: &dyn Fn(&IpAddr) -> bool| held.iter().filter(|c| f(&c.from)).count();
    for c in held.iter() {
        let host = c.from;
        let n = count(&|ip| *ip == host);
        assert!(n <= PER_HOST, "{n} connections held for host {host}");
        let net = |ip: &IpAddr| match (ip, host) {
            (IpAddr::V4(a), IpAddr::V4(b)) => a.octets()[..3] == b.octets()[..3],
            _ => false,
        };
        let n = count(&net);
        assert!(
            n <= PER_NETWORK,
            "{n} connections held for the /24 of {host}"
        );
    }
    refused
}

/// A legitimate client from 127.0.0.1 is served: an HTTP response (axum targets) and
/// a WebSocket that gets a `wshub.v1` reply to a join.
async fn legit_client_is_served(addr: SocketAddr, target: &Target) {
    match target {
        Target::Axum => {
            let (status, _, body) = raw_http(
                addr,
                "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .await;
            assert_eq!((status, body.as_str()), (200, "ok"));
            let mut c = Client::connect(&format!("ws://{addr}/ws")).await;
            c.join_ok("chat:lobby").await;
            c.close().await;
        }
        Target::Plain => {
            let mut c = Client::connect(&format!("ws://{addr}/")).await;
            c.join_ok("chat:lobby").await;
            c.close().await;
        }
        Target::Tls(pem) | Target::AxumTls(pem) => {
            let path = if matches!(target, Target::AxumTls(_)) {
                let mut tls = tls_connect(addr, pem).await;
                tls.write_all(
                    b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                )
                .await
                .unwrap();
                let mut response = String::new();
                tls.read_to_string(&mut response).await.unwrap();
                assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
                assert!(response.ends_with("\r\n\r\nok"), "{response}");
                "/ws"
            } else {
                "/"
            };
            let tls = tls_connect(addr, pem).await;
            let mut req = format!("wss://localhost{path}")
                .into_client_request()
                .unwrap();
            req.headers_mut()
                .insert("sec-websocket-protocol", "wshub.v1".parse().unwrap());
            let (mut ws, resp) = tokio_tungstenite::client_async(req, tls)
                .await
                .expect("wss handshake");
            assert_eq!(resp.status(), 101);
            let welcome = next_json(&mut ws).await;
            assert_eq!(welcome["op"], "welcome", "{welcome}");
            ws.send(Message::text(
                json!({"op": "join", "room": "chat:lobby", "id": 1}).to_string(),
            ))
            .await
            .unwrap();
            let mut reply = next_json(&mut ws).await;
            while reply["op"] == "presence_diff" {
                reply = next_json(&mut ws).await;
            }
            assert_eq!(
                (reply["op"].clone(), reply["ok"].clone()),
                (json!("reply"), json!(true)),
                "{reply}"
            );
            ws.close(None).await.unwrap();
            while let Some(Ok(_)) = ws.next().await {}
        }
    }
}

async fn next_json<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match ws
            .next()
            .await
            .expect("connection ended")
            .expect("websocket error")
        {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// TCP then TLS to `addr`, trusting exactly `pem`.
async fn tls_connect(addr: SocketAddr, pem: &str) -> tokio_rustls::client::TlsStream<TcpStream> {
    use tokio_rustls::TlsConnector;
    use tokio_rustls::rustls::pki_types::ServerName;
    let config = Arc::new(wshub::tls::client_config_trusting(pem.as_bytes()).unwrap());
    let tcp = TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

/// Yields a bounded number of times: room for the server to do something it should
/// not (close a connection early), before asserting that it did not.
async fn let_the_server_run() {
    for _ in 0..2_000 {
        tokio::task::yield_now().await;
    }
}

/// The whole scenario against one serving path.
async fn slowloris(kind: &str) {
    let _watchdog = Watchdog::new("slowloris", Duration::from_secs(300));
    let _clock = hold_the_clock();
    let hub = attack_hub();
    let (addr, target) = start(&hub, kind).await;
    let start = Instant::now();
    let mut held = Vec::new();

    // One host: 300 connections, PER_HOST held, the rest refused with 429 at once.
    let conns = attack(&hub, addr, &target, &[lo(0, 1, 1)], 300).await;
    let refused = sort(conns, &mut held);
    assert_eq!(held.len(), PER_HOST);
    assert_eq!(refused.len(), 300 - PER_HOST);
    assert!(
        refused.iter().all(|s| *s == target.refusal(429)),
        "{refused:?}"
    );
    assert_eq!(hub.stats().pending, PER_HOST);

    // One /24 of 40 hosts, 15 connections each: PER_NETWORK held in all.
    let hosts: Vec<IpAddr> = (1..=40).map(|i| lo(0, 2, i)).collect();
    let conns = attack(&hub, addr, &target, &hosts, 15).await;
    let before = held.len();
    let refused = sort(conns, &mut held);
    assert_eq!(held.len() - before, PER_NETWORK);
    assert!(
        refused.iter().all(|s| *s == target.refusal(429)),
        "{refused:?}"
    );
    assert_eq!(hub.stats().pending, PER_HOST + PER_NETWORK);

    // Meanwhile a client from another network is served in full.
    legit_client_is_served(addr, &target).await;
    wait_until(
        "the legitimate connections to leave the pending count",
        || hub.stats().pending == PER_HOST + PER_NETWORK,
    )
    .await;

    // Many networks (10 /24s of 6 hosts) fill the global cap, and no more.
    let hosts: Vec<IpAddr> = (0..10)
        .flat_map(|n| (1..=6).map(move |i| lo(3, n, i)))
        .collect();
    let conns = attack(&hub, addr, &target, &hosts, 12).await;
    let refused = sort(conns, &mut held);
    assert_eq!(held.len(), MAX_PENDING);
    assert_eq!(hub.stats().pending, MAX_PENDING);
    assert!(
        refused
            .iter()
            .all(|s| *s == target.refusal(429) || *s == target.refusal(503)),
        "{refused:?}"
    );
    // The server as a whole is full now: a newcomer from a fresh network is refused at
    // once (503), not left waiting.
    let mut newcomer = open(lo(0, 0, 1), addr, b"").await;
    assert_eq!(wait_for_end(&mut newcomer).await, target.refusal(503));
    // Every connection not held was counted as refused: 300 + 40 x 15 + 60 x 12
    // attempts, the newcomer too.
    assert_eq!(
        hub.stats().refused_pending,
        (300 + 40 * 15 + 60 * 12 - MAX_PENDING + 1) as u64
    );

    // Nothing is closed before handshake_timeout...
    tokio::time::advance(T - Duration::from_millis(1)).await;
    let_the_server_run().await;
    assert_eq!(hub.stats().pending, MAX_PENDING);
    for c in &mut held {
        assert_eq!(
            peek(&mut c.socket),
            Seen::Held,
            "closed before the deadline"
        );
    }
    // ...and everything is closed at it, without an answer.
    tokio::time::advance(Duration::from_millis(2)).await;
    for c in &mut held {
        assert_eq!(wait_for_end(&mut c.socket).await, Seen::Closed);
    }
    wait_until("pending to drop to zero", || hub.stats().pending == 0).await;
    let elapsed = start.elapsed();
    assert!(
        elapsed >= T && elapsed < T + Duration::from_millis(10),
        "{elapsed:?}"
    );

    // The service is whole again.
    legit_client_is_served(addr, &target).await;
}

#[tokio::test(start_paused = true)]
async fn serve_axum_holds_slowloris_to_its_caps_and_deadline() {
    slowloris("axum").await;
}

#[tokio::test(start_paused = true)]
async fn serve_holds_slowloris_to_its_caps_and_deadline() {
    slowloris("plain").await;
}

#[tokio::test(start_paused = true)]
async fn serve_tls_holds_slowloris_to_its_caps_and_deadline() {
    slowloris("tls").await;
}

#[tokio::test(start_paused = true)]
async fn serve_axum_tls_holds_slowloris_to_its_caps_and_deadline() {
    slowloris("axum_tls").await;
}

/// A client that takes 6 s to start its TLS handshake and then sends half a request
/// head is closed 10 s after `accept` (one deadline), not 10 s after the TLS
/// handshake.
#[tokio::test(start_paused = true)]
async fn the_tls_handshake_counts_in_the_same_deadline() {
    let _watchdog = Watchdog::new("tls deadline", Duration::from_secs(120));
    let _clock = hold_the_clock();
    for kind in ["tls", "axum_tls"] {
        let hub = attack_hub();
        let (addr, target) = start(&hub, kind).await;
        let (Target::Tls(pem) | Target::AxumTls(pem)) = &target else {
            unreachable!()
        };
        let accepted = Instant::now();
        let tcp = TcpStream::connect(addr).await.unwrap();
        wait_until("the server to accept", || hub.stats().pending == 1).await;
        tokio::time::advance(Duration::from_secs(6)).await;
        let config = Arc::new(wshub::tls::client_config_trusting(pem.as_bytes()).unwrap());
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(
                tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                tcp,
            )
            .await
            .expect("TLS handshake");
        tls.write_all(PARTIAL_HEAD).await.unwrap();
        tls.flush().await.unwrap();
        let closed = Arc::new(AtomicBool::new(false));
        let reader = {
            let closed = closed.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                // EOF, a TLS close_notify or a reset: any end will do.
                if let Ok(n) = tls.read(&mut buf).await {
                    assert_eq!(n, 0, "an answer to a half request: {:?}", &buf[..n]);
                }
                closed.store(true, Ordering::SeqCst);
            })
        };
        tokio::time::advance(Duration::from_millis(3_990)).await;
        let_the_server_run().await;
        assert!(
            !closed.load(Ordering::SeqCst),
            "{kind}: closed before the deadline"
        );
        assert_eq!(hub.stats().pending, 1);
        tokio::time::advance(Duration::from_millis(20)).await;
        wait_until("the connection to be closed", || {
            closed.load(Ordering::SeqCst)
        })
        .await;
        let elapsed = accepted.elapsed();
        assert!(
            elapsed < T + Duration::from_millis(20),
            "{kind}: {elapsed:?}"
        );
        wait_until("pending to drop to zero", || hub.stats().pending == 0).await;
        reader.await.unwrap();
    }
}

/// A keep-alive HTTP connection that has had its answer and then says nothing is
/// closed after `handshake_timeout`: it no longer holds a pending place.
#[tokio::test(start_paused = true)]
async fn serve_axum_closes_idle_keep_alive_connections() {
    let _watchdog = Watchdog::new("keep-alive", Duration::from_secs(120));
    let _clock = hold_the_clock();
    let hub = attack_hub();
    let (addr, _) = start(&hub, "axum").await;
    let mut s = open(
        lo(0, 0, 1),
        addr,
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    // The answer arrives, and the connection stays open for the next request.
    let mut got = Vec::new();
    wait_until("the response", || {
        let mut chunk = [0u8; 1024];
        if let Ok(n) = s.read(&mut chunk) {
            got.extend_from_slice(&chunk[..n]);
        }
        got.ends_with(b"\r\n\r\nok")
    })
    .await;
    assert!(
        got.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(peek(&mut s), Seen::Held);
    assert_eq!(hub.stats().pending, 1);
    tokio::time::advance(T - Duration::from_millis(1)).await;
    let_the_server_run().await;
    assert_eq!(peek(&mut s), Seen::Held, "closed before handshake_timeout");
    tokio::time::advance(Duration::from_millis(2)).await;
    assert_eq!(wait_for_end(&mut s).await, Seen::Closed);
    wait_until("pending to drop to zero", || hub.stats().pending == 0).await;
}

/// A request head over the engine's documented limits (8 KiB, 64 header lines) gets
/// 431 from `serve_axum`, on the hub's route and on the application's.
#[tokio::test]
async fn serve_axum_refuses_oversized_heads_with_431() {
    let hub = attack_hub();
    let (addr, _) = start(&hub, "axum").await;
    for path in ["/ws", "/health"] {
        let (status, _, _) = raw_http(addr, &big_head(path, 64 * 1024, 1)).await;
        assert_eq!(status, 431, "{path}: 64 KiB head");
        let (status, _, _) = raw_http(addr, &big_head(path, 0, 80)).await;
        assert_eq!(status, 431, "{path}: 80 header lines");
    }
    assert_eq!(hub.stats().connections, 0);
}

/// An upgrade request for `path` with one `X-Pad` header of `pad` bytes and `lines`
/// extra header lines.
fn big_head(path: &str, pad: usize, lines: usize) -> String {
    let mut head = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: wshub.v1\r\n"
    );
    if pad > 0 {
        head.push_str(&format!("X-Pad: {}\r\n", "a".repeat(pad)));
    }
    for i in 0..lines {
        head.push_str(&format!("X-Line-{i}: 1\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// A `tracing` writer that keeps everything in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `axum_route` under a plain `axum::serve` (hyper's own limits: 100 lines, ~400 KiB)
/// still holds the documented handshake limits, and says once that per-IP limits are
/// off when the app is served without `ConnectInfo`.
#[tokio::test]
async fn axum_route_under_plain_axum_serve_holds_head_limits_and_warns_once() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .finish();
    // This thread only: the test runs on a current-thread runtime, so the server's
    // tasks log here too.
    let _default = tracing::subscriber::set_default(subscriber);

    let hub = test_hub_builder().build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Deliberately without `into_make_service_with_connect_info`.
    tokio::spawn(async move { axum::serve(listener, app(&hub)).await });

    let (status, _, body) = raw_http(addr, &big_head("/ws", 64 * 1024, 1)).await;
    assert_eq!(status, 431, "64 KiB head: {body}");
    assert!(body.contains("at most 8192"), "{body}");
    let (status, _, body) = raw_http(addr, &big_head("/ws", 0, 80)).await;
    assert_eq!(status, 431, "80 header lines: {body}");
    // Just under the limits: upgraded.
    let (status, _, _) = raw_http(addr, &big_head("/ws", 4 * 1024, 50)).await;
    assert_eq!(status, 101);

    let mut a = Client::connect(&format!("ws://{addr}/ws")).await;
    a.join_ok("chat:lobby").await;
    let mut b = Client::connect(&format!("ws://{addr}/ws")).await;
    b.join_ok("chat:lobby").await;
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let warnings = logs.matches("per-IP connection limits are OFF").count();
    assert_eq!(warnings, 1, "{logs}");
    assert!(logs.contains("WARN"), "{logs}");
}
