//! Attack 3 of issue 7, "connection caps", reproduced over loopback with lowered limits
//! (so it is fast and bounded): one /24 of source addresses, one host, an IPv6 /64,
//! clients behind a reverse proxy, PROXY protocol load balancers, and one user with
//! many connections.
//!
//! Linux routes all of 127.0.0.0/8 to the loopback interface, so a client socket bound
//! to 127.0.0.2 before connecting is a different host to the hub than one bound to
//! 127.0.0.3, and 127.0.1.1 is in another /24.
//!
//! Memory bound checked: the hub's per-host, per-network and per-user counts hold one
//! entry per host, network and user with a connection open ([`HubStats::limit_entries`]
//! is exactly that number while clients are connected) and are empty once they have all
//! closed, however many addresses were seen.

mod common;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::hub::{Client, test_hub_builder};
use common::raw::{OP_TEXT, RawClient, frame, raw_http_on, upgrade_request};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use wshub::{AuthRejection, AuthRequest, Authenticator, Hub, HubConfig, Identity, TrustedProxies};

/// The connecting addresses each authentication saw: `(peer_addr, proxy_addr)`.
type Seen = Arc<Mutex<Vec<(Option<SocketAddr>, Option<SocketAddr>)>>>;

/// Lets everyone in, as the user named by `?user=` (else a fresh one), and records
/// what [`AuthRequest::peer_addr`] and [`AuthRequest::proxy_addr`] said.
#[derive(Clone, Default)]
struct RecordingAuth {
    seen: Seen,
}

impl Authenticator for RecordingAuth {
    fn authenticate(
        &self,
        req: &AuthRequest,
    ) -> impl Future<Output = Result<Identity, AuthRejection>> + Send {
        let mut seen = self.seen.lock().unwrap();
        seen.push((req.peer_addr(), req.proxy_addr()));
        let user = req
            .query_param("user")
            .unwrap_or_else(|| format!("user-{}", seen.len()));
        std::future::ready(Ok(Identity::new(user, "User")))
    }
}

impl RecordingAuth {
    fn last(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        *self
            .seen
            .lock()
            .unwrap()
            .last()
            .expect("nobody authenticated")
    }
}

/// A hub with lowered limits, served on 127.0.0.1:0: its address, its `ws://` URL and
/// the authenticator's record.
async fn start(configure: impl FnOnce(&mut HubConfig)) -> (Hub, SocketAddr, RecordingAuth) {
    let auth = RecordingAuth::default();
    let hub = test_hub_builder()
        .authenticator(auth.clone())
        .configure(configure)
        .build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let h = hub.clone();
    tokio::spawn(async move { h.serve(listener).await });
    (hub, addr, auth)
}

/// A TCP connection to `addr` from source address `from`.
async fn tcp_from(from: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap_or_else(|e| panic!("bind {from}: {e}"));
    socket.connect(addr).await.expect("connect")
}

/// A `wshub.v1` client from source address `from`, with extra request headers.
async fn connect(
    from: &str,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Client, (u16, String)> {
    let stream = tcp_from(from, addr).await;
    Client::connect_on(stream, &format!("ws://{addr}{path}"), headers).await
}

/// Asserts a refusal with HTTP 429 and `message`.
fn assert_429(result: Result<Client, (u16, String)>, message: &str) {
    match result {
        Ok(_) => panic!("expected 429 {message:?}, got 101"),
        Err((status, body)) => {
            assert_eq!(status, 429, "{body}");
            assert_eq!(body.trim(), message);
        }
    }
}

/// Waits until the hub's limit maps hold `n` entries (they shrink as connection tasks
/// end, just after the clients close).
async fn wait_for_limit_entries(hub: &Hub, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while hub.stats().limit_entries != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "limit entries stuck at {} (expected {n})",
            hub.stats().limit_entries
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Joins `chat:lobby` and publishes: the client is really served.
async fn assert_served(client: &mut Client) {
    client.join_ok("chat:lobby").await;
    let reply = client.publish("chat:lobby", json!({"text": "hi"})).await;
    assert_eq!(reply["ok"], true, "{reply}");
}

#[tokio::test]
async fn one_slash_24_cannot_take_the_whole_hub() {
    let (hub, addr, _) = start(|c| {
        c.max_connections = 100;
        c.max_connections_per_ip = 5;
        c.max_connections_per_network = 50;
    })
    .await;
    // The attack: 127.0.0.2 to 127.0.0.100, one connection each, all in 127.0.0.0/24.
    let mut admitted = Vec::new();
    for host in 2..=100 {
        match connect(&format!("127.0.0.{host}"), addr, "/", &[]).await {
            Ok(client) => admitted.push(client),
            Err(refusal) => assert_429(Err(refusal), "too many connections from your network"),
        }
    }
    assert_eq!(admitted.len(), 50, "the /24 holds exactly its cap");
    assert_eq!(hub.stats().refused_by_limits, 49);
    // Someone from another /24 is still let in (101) and served: the hub is not full.
    let mut legit = connect("127.0.1.1", addr, "/", &[]).await.expect("101");
    assert_served(&mut legit).await;
    // 51 hosts and 2 networks are tracked, nothing more.
    assert_eq!(hub.stats().limit_entries, 51 + 2);
    drop(admitted);
    legit.close().await;
    wait_for_limit_entries(&hub, 0).await;
    // The /24 is free again.
    connect("127.0.0.77", addr, "/", &[]).await.expect("101");
}

#[tokio::test]
async fn one_host_is_capped_and_others_are_not() {
    let (hub, addr, _) = start(|c| c.max_connections_per_ip = 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect("127.0.0.7", addr, "/", &[]).await.expect("101"));
    }
    assert_429(
        connect("127.0.0.7", addr, "/", &[]).await,
        "too many connections from your address",
    );
    let mut neighbour = connect("127.0.0.8", addr, "/", &[]).await.expect("101");
    assert_served(&mut neighbour).await;
    assert_eq!(hub.stats().refused_by_limits, 1);
}

#[tokio::test]
async fn behind_a_trusted_proxy_every_client_counts_alone() {
    let (hub, addr, auth) = start(|c| {
        c.max_connections_per_ip = 2;
        c.trusted_proxies = TrustedProxies::new(["127.0.0.1"]).unwrap();
    })
    .await;
    let mut held = Vec::new();

    // Ten users through one proxy (127.0.0.1), more than max_connections_per_ip.
    for i in 1..=10 {
        let client = format!("203.0.113.{i}");
        let c = connect("127.0.0.1", addr, "/", &[("x-forwarded-for", &client)]).await;
        held.push(c.expect("101 through the proxy"));
        let (peer, proxy) = auth.last();
        assert_eq!(peer, Some(SocketAddr::new(client.parse().unwrap(), 0)));
        assert_eq!(proxy.map(|p| p.ip()), Some("127.0.0.1".parse().unwrap()));
    }
    // A client's spoofed entry at the left is skipped: the proxy's rightmost entry counts.
    held.push(
        connect(
            "127.0.0.1",
            addr,
            "/",
            &[("x-forwarded-for", "203.0.113.1, 198.51.100.99")],
        )
        .await
        .expect("101"),
    );
    assert_eq!(auth.last().0, Some("198.51.100.99:0".parse().unwrap()));
    // Forwarded (RFC 7239), preferred over X-Forwarded-For, with a quoted IPv6 and port.
    for i in 1..=3 {
        let value = format!(r#"for="[2001:db8:{i}::1]:4711";proto=http"#);
        let headers = [
            ("forwarded", value.as_str()),
            ("x-forwarded-for", "203.0.113.1"),
        ];
        held.push(
            connect("127.0.0.1", addr, "/", &headers)
                .await
                .expect("101"),
        );
        let expected: SocketAddr = format!("[2001:db8:{i}::1]:4711").parse().unwrap();
        assert_eq!(auth.last().0, Some(expected));
    }

    // IPv6 clients in one /64 are one host.
    let xff = |v: &'static str| [("x-forwarded-for", v)];
    for v in ["2001:db8:aaaa:1::1", "2001:db8:aaaa:1::2"] {
        held.push(connect("127.0.0.1", addr, "/", &xff(v)).await.expect("101"));
    }
    assert_429(
        connect("127.0.0.1", addr, "/", &xff("2001:db8:aaaa:1:ffff::3")).await,
        "too many connections from your address",
    );
    let other_64 = connect("127.0.0.1", addr, "/", &xff("2001:db8:aaaa:2::1")).await;
    held.push(other_64.expect("another /64 is another host"));

    // An IPv4-mapped IPv6 address counts with its IPv4 address.
    for v in ["203.0.113.50", "::ffff:203.0.113.50"] {
        held.push(connect("127.0.0.1", addr, "/", &xff(v)).await.expect("101"));
    }
    assert_429(
        connect("127.0.0.1", addr, "/", &xff("203.0.113.50")).await,
        "too many connections from your address",
    );

    // An untrusted peer's X-Forwarded-For is ignored: its own address is what the
    // authenticator sees and what is counted.
    for i in 1..=2 {
        let client = format!("198.51.100.{i}");
        let c = connect("127.0.0.2", addr, "/", &[("x-forwarded-for", &client)]).await;
        held.push(c.expect("101"));
        let (peer, proxy) = auth.last();
        assert_eq!(peer.map(|p| p.ip()), Some("127.0.0.2".parse().unwrap()));
        assert_eq!(proxy, None);
    }
    assert_429(
        connect("127.0.0.2", addr, "/", &xff("198.51.100.3")).await,
        "too many connections from your address",
    );

    // A malformed header from the proxy falls back to the proxy's own address.
    held.push(
        connect("127.0.0.1", addr, "/", &xff("not-an-address"))
            .await
            .expect("101"),
    );
    assert_eq!(
        auth.last().0.map(|p| p.ip()),
        Some("127.0.0.1".parse().unwrap())
    );
    assert_served(held.last_mut().unwrap()).await;

    // Hosts: 11 from 203.0.113.0/24 and 198.51.100.99, 3 Forwarded, 2 /64s, the
    // mapped one, 127.0.0.2, 127.0.0.1. Networks: 203.0.113/24, 198.51.100/24, three
    // 2001:db8:N::/48, 2001:db8:aaaa::/48, 127.0.0/24.
    let hosts = 10 + 1 + 3 + 2 + 1 + 1 + 1;
    let networks = 1 + 1 + 3 + 1 + 1;
    assert_eq!(hub.stats().limit_entries, hosts + networks);
    for c in held {
        c.close().await;
    }
    wait_for_limit_entries(&hub, 0).await;
}

/// A hub that takes PROXY headers from 127.0.0.1.
async fn start_proxy_protocol() -> (Hub, SocketAddr, RecordingAuth) {
    start(|c| {
        c.trusted_proxies = TrustedProxies::new(["127.0.0.1"]).unwrap();
        c.proxy_protocol = true;
    })
    .await
}

/// `header`, the upgrade request and a `join` frame in one write from 127.0.0.1; then
/// the 101, the welcome and the join's reply must all arrive (nothing after the PROXY
/// header was lost).
async fn proxied_session(addr: SocketAddr, header: &[u8]) {
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(upgrade_request(addr, "Sec-WebSocket-Protocol: wshub.v1").as_bytes());
    let join = json!({"op": "join", "id": 1, "room": "chat:lobby", "meta": {}}).to_string();
    bytes.extend(frame(true, 0, OP_TEXT, join.as_bytes(), true));
    let mut stream = tcp_from("127.0.0.1", addr).await;
    stream.write_all(&bytes).await.unwrap();
    let mut client = RawClient::finish_handshake(stream).await;
    let (op, _, welcome) = client.read_message().await;
    assert_eq!(op, OP_TEXT);
    let welcome: serde_json::Value = serde_json::from_slice(&welcome).unwrap();
    assert_eq!(welcome["op"], "welcome", "{welcome}");
    // The reply, maybe after the room's presence diff.
    for _ in 0..3 {
        let (_, _, msg) = client.read_message().await;
        let msg: serde_json::Value = serde_json::from_slice(&msg).unwrap();
        if msg["op"] == "reply" {
            assert_eq!((&msg["id"], &msg["ok"]), (&json!(1), &json!(true)), "{msg}");
            return;
        }
    }
    panic!("no reply to the join");
}

/// A PROXY v2 header for a TCP connection from `src` (IPv4 or IPv6) to `dst`.
fn proxy_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut block = Vec::new();
    let fam = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            block.extend(s.octets());
            block.extend(d.octets());
            0x11
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            block.extend(s.octets());
            block.extend(d.octets());
            0x21
        }
        _ => panic!("mixed families"),
    };
    block.extend(src.port().to_be_bytes());
    block.extend(dst.port().to_be_bytes());
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend([0x21, fam]);
    out.extend((block.len() as u16).to_be_bytes());
    out.extend(block);
    out
}

/// Asserts the server closes `stream` without writing anything.
async fn assert_closed_silently(mut stream: TcpStream) {
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("the server kept the connection open")
        .unwrap_or(0);
    assert_eq!(
        n,
        0,
        "expected a close, got {:?}",
        String::from_utf8_lossy(&buf[..n])
    );
}

#[tokio::test]
async fn proxy_protocol_from_a_trusted_load_balancer() {
    let (hub, addr, auth) = start_proxy_protocol().await;

    // v1, with the request and a frame in the same write.
    proxied_session(addr, b"PROXY TCP4 192.0.2.33 127.0.0.1 51000 443\r\n").await;
    let (peer, proxy) = auth.last();
    assert_eq!(peer, Some("192.0.2.33:51000".parse().unwrap()));
    assert_eq!(proxy.map(|p| p.ip()), Some("127.0.0.1".parse().unwrap()));

    // v2, IPv6.
    let src: SocketAddr = "[2001:db8::33]:4711".parse().unwrap();
    proxied_session(addr, &proxy_v2(src, "[2001:db8::1]:443".parse().unwrap())).await;
    assert_eq!(auth.last().0, Some(src));

    // v2 LOCAL (a health check) and v1 UNKNOWN: the TCP peer is the client.
    let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    local.extend([0x20, 0x00, 0, 0]);
    proxied_session(addr, &local).await;
    assert_eq!(
        auth.last().0.map(|p| p.ip()),
        Some("127.0.0.1".parse().unwrap())
    );
    assert_eq!(auth.last().1, None);
    proxied_session(addr, b"PROXY UNKNOWN\r\n").await;
    assert_eq!(auth.last().1, None);

    // A PROXY source that is itself trusted passes the word on to X-Forwarded-For.
    let mut stream = tcp_from("127.0.0.1", addr).await;
    let mut req = b"PROXY TCP4 127.0.0.1 127.0.0.1 40000 443\r\n".to_vec();
    req.extend(upgrade_request(addr, "X-Forwarded-For: 198.51.100.8").into_bytes());
    stream.write_all(&req).await.unwrap();
    RawClient::finish_handshake(stream).await;
    assert_eq!(auth.last().0, Some("198.51.100.8:0".parse().unwrap()));

    // A malformed PROXY header, or none, from the trusted peer: closed, no answer.
    let mut bad = tcp_from("127.0.0.1", addr).await;
    let mut req = b"PROXY TCP4 192.0.2.33 nonsense 1 2\r\n".to_vec();
    req.extend(upgrade_request(addr, "").into_bytes());
    bad.write_all(&req).await.unwrap();
    assert_closed_silently(bad).await;
    let mut missing = tcp_from("127.0.0.1", addr).await;
    missing
        .write_all(upgrade_request(addr, "").as_bytes())
        .await
        .unwrap();
    assert_closed_silently(missing).await;
    let mut huge = tcp_from("127.0.0.1", addr).await;
    let mut req = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    req.extend([0x21, 0x11, 0xFF, 0xFF]);
    huge.write_all(&req).await.unwrap();
    assert_closed_silently(huge).await;

    // An untrusted peer is served as usual: its PROXY header is a bad HTTP request,
    // and its plain upgrade is accepted.
    let mut stranger = tcp_from("127.0.0.2", addr).await;
    let mut req = b"PROXY TCP4 192.0.2.99 127.0.0.1 1 2\r\n".to_vec();
    req.extend(upgrade_request(addr, "").into_bytes());
    assert_eq!(raw_http_on(&mut stranger, &req).await.status, 400);
    let mut plain = tcp_from("127.0.0.2", addr).await;
    plain
        .write_all(upgrade_request(addr, "").as_bytes())
        .await
        .unwrap();
    RawClient::finish_handshake(plain).await;
    assert_eq!(
        auth.last().0.map(|p| p.ip()),
        Some("127.0.0.2".parse().unwrap())
    );
    assert_eq!(hub.stats().refused_by_limits, 0);
}

#[tokio::test]
async fn one_user_cannot_hold_more_than_its_cap() {
    let (hub, addr, _) = start(|c| c.max_connections_per_user = Some(2)).await;
    let mut alice = Vec::new();
    for i in 0..2 {
        // From different hosts: the per-user cap is not a per-host cap.
        let from = format!("127.0.0.{}", 10 + i);
        alice.push(
            connect(&from, addr, "/?user=alice", &[])
                .await
                .expect("101"),
        );
    }
    assert_429(
        connect("127.0.0.12", addr, "/?user=alice", &[]).await,
        "too many connections for this user",
    );
    let mut bob = connect("127.0.0.12", addr, "/?user=bob", &[])
        .await
        .expect("101");
    assert_served(&mut bob).await;
    assert_eq!(hub.stats().refused_by_limits, 1);
    // Hosts .10 .11 .12, one network, users alice and bob.
    assert_eq!(hub.stats().limit_entries, 3 + 1 + 2);
    // Alice's places come back when her connections close.
    for c in alice {
        c.close().await;
    }
    wait_for_limit_entries(&hub, 1 + 1 + 1).await;
    let mut again = connect("127.0.0.10", addr, "/?user=alice", &[])
        .await
        .expect("101");
    assert_served(&mut again).await;
}
