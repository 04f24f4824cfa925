//! Serving a hub: on an axum `Router` next to plain HTTP routes (one port), over TLS,
//! graceful shutdown (1001 after queued messages, then refusal), and the connection
//! limits (503 total, 429 per IP, slots given back on disconnect).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::hub::{ChatMessage, Client, RECV_TIMEOUT, test_hub_builder};
use common::raw::raw_http;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use wshub::Hub;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Serves `hub` on 127.0.0.1:0; returns the address and the serve task (which ends, with
/// the listener dropped, when shutdown begins).
async fn serve_plain(hub: &Hub) -> (SocketAddr, JoinHandle<std::io::Result<()>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let h = hub.clone();
    (addr, tokio::spawn(async move { h.serve(listener).await }))
}

/// The WebSocket handshake (offering `wshub.v1`) over any stream: `Err` carries the HTTP
/// status of a refusal.
async fn ws_over<S>(url: &str, stream: S) -> Result<WebSocketStream<S>, u16>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "wshub.v1".parse().unwrap());
    match tokio_tungstenite::client_async(req, stream).await {
        Ok((ws, resp)) => {
            assert_eq!(
                resp.headers().get("sec-websocket-protocol").unwrap(),
                "wshub.v1"
            );
            Ok(ws)
        }
        Err(tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("handshake failed: {e}"),
    }
}

/// The next JSON message on a bare tokio-tungstenite stream.
async fn recv_json<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> Value {
    loop {
        let msg = tokio::time::timeout(RECV_TIMEOUT, ws.next())
            .await
            .expect("timed out waiting for a message")
            .expect("connection ended")
            .expect("websocket error");
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// The next JSON message other than a `presence_diff` (other connections coming and
/// going in the same room).
async fn recv_op<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> Value {
    loop {
        let v = recv_json(ws).await;
        if v["op"] != "presence_diff" {
            return v;
        }
    }
}

async fn send_json<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// Reads the welcome, joins `room`, publishes `text` there and checks the echo: one
/// complete round trip of `wshub.v1`.
async fn round_trip<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    room: &str,
    text: &str,
) {
    let welcome = recv_json(ws).await;
    assert_eq!(welcome["op"], "welcome", "{welcome}");
    send_json(ws, json!({"op": "join", "room": room, "id": 1})).await;
    let joined = recv_op(ws).await;
    assert_eq!(joined["op"], "reply", "{joined}");
    assert_eq!(joined["ok"], true, "{joined}");
    send_json(
        ws,
        json!({"op": "publish", "room": room, "id": 2, "data": {"text": text}}),
    )
    .await;
    let echo = recv_op(ws).await;
    assert_eq!(echo["op"], "message", "{echo}");
    assert_eq!(echo["from"], welcome["user"]);
    assert_eq!(echo["data"]["text"], text);
    let reply = recv_op(ws).await;
    assert_eq!(reply["id"], 2, "{reply}");
    assert_eq!(reply["ok"], true, "{reply}");
}

/// Connects from local address `from` (a loopback address other than 127.0.0.1 shows up
/// as another client IP).
async fn connect_from(from: [u8; 4], addr: SocketAddr) -> Result<WebSocketStream<TcpStream>, u16> {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind a loopback source address");
    let tcp = socket.connect(addr).await.expect("tcp connect");
    ws_over(&format!("ws://{addr}/"), tcp).await
}

/// Retries `connect` until it succeeds: a slot is given back only once the server side
/// of a closed connection has finished, a moment after the client saw the close.
async fn connect_when_slot_frees(url: &str, refused_with: u16) -> Client {
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    loop {
        match Client::connect_with(url, &[]).await {
            Ok(c) => return c,
            Err(status) => {
                assert_eq!(status, refused_with, "refused with an unexpected status");
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the slot of a closed connection was never given back"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Reads every message of a client until the server's close frame; returns the texts
/// of the `message`s and the close code. Keeps reading afterwards so tungstenite
/// answers the close and sees the TCP connection end.
fn read_until_close(mut c: Client) -> JoinHandle<(Vec<String>, u16)> {
    tokio::spawn(async move {
        let mut texts = Vec::new();
        let code = loop {
            let msg = tokio::time::timeout(RECV_TIMEOUT * 2, c.ws.next())
                .await
                .expect("timed out waiting for messages and the close frame");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["op"] == "message" {
                        texts.push(v["data"]["text"].as_str().unwrap().to_owned());
                    }
                }
                Some(Ok(Message::Close(Some(f)))) => break u16::from(f.code),
                Some(Ok(Message::Close(None))) => break 1005,
                Some(Ok(_)) => {}
                other => panic!("connection ended without a close frame: {other:?}"),
            }
        };
        while let Ok(Some(Ok(_))) = tokio::time::timeout(RECV_TIMEOUT, c.ws.next()).await {}
        (texts, code)
    })
}

// ---------------------------------------------------------------------------------------
// axum: one port for HTTP routes and the hub
// ---------------------------------------------------------------------------------------

#[cfg(feature = "axum")]
async fn serve_axum(hub: &Hub) -> SocketAddr {
    use axum::Router;
    use axum::routing::get;
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/ws", hub.axum_route());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    addr
}

#[cfg(feature = "axum")]
async fn health(addr: SocketAddr) -> (u16, String) {
    let (status, _, body) = raw_http(
        addr,
        "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    (status, body)
}

#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_serves_http_routes_and_the_hub_on_one_port() {
    let hub = test_hub_builder().build();
    let addr = serve_axum(&hub).await;

    assert_eq!(health(addr).await, (200, "ok".to_owned()));

    let url = format!("ws://{addr}/ws");
    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    a.join_ok("chat:lobby").await;
    b.join_ok("chat:lobby").await;
    let reply = a.publish("chat:lobby", json!({"text": "over axum"})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["data"]["delivered"], 2);
    let m = b.recv().await;
    assert_eq!(m["op"], "message", "{m}");
    assert_eq!(m["from"], json!(a.user));
    assert_eq!(m["data"]["text"], "over axum");
    // Server publishes reach axum-served connections too.
    hub.room::<ChatMessage>("chat:lobby")
        .unwrap()
        .publish(ChatMessage {
            text: "server".into(),
        })
        .await
        .unwrap();
    assert_eq!(b.recv().await["data"]["text"], "server");

    // HTTP keeps working while WebSocket connections are open on the same port.
    assert_eq!(health(addr).await, (200, "ok".to_owned()));
    assert_eq!(hub.stats().connections, 2);

    a.close().await;
    b.close().await;
}

#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_route_refuses_bad_upgrades() {
    let hub = test_hub_builder().build();
    let addr = serve_axum(&hub).await;

    use common::raw::header_value;

    // Sec-WebSocket-Version 8: 426 naming the supported version.
    let (status, headers, _) = raw_http(
        addr,
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    )
    .await;
    assert_eq!(status, 426, "{headers:?}");
    assert_eq!(
        header_value(&headers, "sec-websocket-version"),
        Some("13"),
        "{headers:?}"
    );

    // A plain GET of the WebSocket route is not an upgrade.
    let (status, headers, _) = raw_http(
        addr,
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        (400..500).contains(&status) && status != 404,
        "{status} {headers:?}"
    );

    // Neither touched the hub, and the route still upgrades good requests.
    assert_eq!(hub.stats().connections, 0);
    let mut c = Client::connect(&format!("ws://{addr}/ws")).await;
    c.join_ok("chat:x").await;
}

#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_route_applies_per_ip_limits() {
    let hub = test_hub_builder()
        .configure(|c| c.max_connections_per_ip = 1)
        .build();
    let addr = serve_axum(&hub).await;
    let url = format!("ws://{addr}/ws");
    let a = Client::connect(&url).await;
    assert_eq!(Client::connect_with(&url, &[]).await.err(), Some(429));
    assert_eq!(hub.stats().refused_by_limits, 1);
    a.close().await;
    let _b = connect_when_slot_frees(&url, 429).await;
}

#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_hub_shutdown_closes_sockets_but_not_the_app() {
    let hub = test_hub_builder().build();
    let addr = serve_axum(&hub).await;
    let url = format!("ws://{addr}/ws");
    let mut c = Client::connect(&url).await;
    c.join_ok("chat:lobby").await;
    let reader = read_until_close(c);
    hub.room::<ChatMessage>("chat:lobby")
        .unwrap()
        .publish(ChatMessage {
            text: "last".into(),
        })
        .await
        .unwrap();
    assert!(hub.shutdown().await, "shutdown did not finish in time");
    let (texts, code) = reader.await.unwrap();
    assert_eq!(texts, ["last"]);
    assert_eq!(code, 1001);
    // The application's own routes keep serving; the hub refuses new upgrades.
    assert_eq!(health(addr).await, (200, "ok".to_owned()));
    assert_eq!(Client::connect_with(&url, &[]).await.err(), Some(503));
}

// ---------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------

#[cfg(feature = "tls")]
mod tls {
    use std::sync::Arc;

    use tokio_rustls::TlsConnector;
    use tokio_rustls::rustls::pki_types::ServerName;

    use super::*;

    /// Serves `hub` over TLS with a fresh self-signed certificate; returns the address
    /// and the certificate's PEM.
    async fn serve_tls(hub: &Hub) -> (SocketAddr, String) {
        let cert = wshub::tls::self_signed(["localhost", "127.0.0.1"]).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let h = hub.clone();
        let acceptor = cert.acceptor.clone();
        tokio::spawn(async move { h.serve_tls(listener, acceptor).await });
        (addr, cert.cert_pem)
    }

    /// A TLS client trusting exactly `ca_pem`, connecting to `addr` as `server_name`.
    async fn tls_connect(
        addr: SocketAddr,
        ca_pem: &[u8],
        server_name: &str,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let config = wshub::tls::client_config_trusting(ca_pem)?;
        let connector = TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from(server_name.to_owned()).unwrap();
        tokio::time::timeout(RECV_TIMEOUT, connector.connect(name, tcp))
            .await
            .expect("TLS handshake timed out")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wss_round_trip_with_a_trusted_self_signed_cert() {
        let hub = test_hub_builder().build();
        let (addr, cert_pem) = serve_tls(&hub).await;

        // By host name and by IP address: the certificate names both.
        for name in ["localhost", "127.0.0.1"] {
            let tls = tls_connect(addr, cert_pem.as_bytes(), name)
                .await
                .unwrap_or_else(|e| panic!("TLS to {name} failed: {e}"));
            assert_eq!(
                tls.get_ref().1.alpn_protocol(),
                None,
                "no ALPN offered, none chosen"
            );
            let port = addr.port();
            let mut ws = ws_over(&format!("wss://{name}:{port}/"), tls)
                .await
                .expect("upgrade over TLS");
            round_trip(&mut ws, "chat:secure", &format!("hello over tls ({name})")).await;
            ws.close(None).await.unwrap();
        }

        // A server publish reaches a wss client.
        let tls = tls_connect(addr, cert_pem.as_bytes(), "localhost")
            .await
            .unwrap();
        let mut ws = ws_over(&format!("wss://localhost:{}/", addr.port()), tls)
            .await
            .unwrap();
        round_trip(&mut ws, "chat:secure", "me").await;
        hub.room::<ChatMessage>("chat:secure")
            .unwrap()
            .publish(ChatMessage {
                text: "to all".into(),
            })
            .await
            .unwrap();
        let m = recv_op(&mut ws).await;
        assert_eq!(
            common::hub::stored(&m),
            json!({"op": "message", "room": "chat:secure", "from": null, "data": {"text": "to all"}})
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn untrusted_clients_are_refused() {
        let hub = test_hub_builder().build();
        let (addr, cert_pem) = serve_tls(&hub).await;

        // No trusted roots at all.
        let err = tls_connect(addr, b"", "localhost").await.err();
        assert!(err.is_some(), "a client trusting nothing got through");
        // Trusting another self-signed certificate for the same names.
        let other = wshub::tls::self_signed(["localhost", "127.0.0.1"]).unwrap();
        let Err(err) = tls_connect(addr, other.cert_pem.as_bytes(), "localhost").await else {
            panic!("a client trusting an unrelated certificate got through");
        };
        assert!(
            err.to_string().to_lowercase().contains("certificate"),
            "unexpected error: {err}"
        );
        // The certificate does not name this host.
        let err = tls_connect(addr, cert_pem.as_bytes(), "example.com").await;
        assert!(
            err.is_err(),
            "a certificate for localhost passed as example.com"
        );

        // A plain-text client gets no WebSocket either.
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut req = format!("ws://{addr}/").into_client_request().unwrap();
        req.headers_mut()
            .insert("sec-websocket-protocol", "wshub.v1".parse().unwrap());
        let plain = tokio::time::timeout(RECV_TIMEOUT, tokio_tungstenite::client_async(req, tcp))
            .await
            .expect("the server did not drop a plain-text client");
        assert!(
            plain.is_err(),
            "a plain-text upgrade succeeded on the TLS port"
        );

        // None of it reached the hub, and the server still serves trusted clients.
        assert_eq!(hub.stats().connections, 0);
        let tls = tls_connect(addr, cert_pem.as_bytes(), "localhost")
            .await
            .unwrap();
        let mut ws = ws_over(&format!("wss://localhost:{}/", addr.port()), tls)
            .await
            .unwrap();
        round_trip(&mut ws, "chat:secure", "still serving").await;
    }
}

// ---------------------------------------------------------------------------------------
// Graceful shutdown
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delivers_queued_messages_then_closes_with_1001() {
    let hub = test_hub_builder().build();
    let (addr, server) = serve_plain(&hub).await;
    let url = format!("ws://{addr}/");

    let mut readers = Vec::new();
    for _ in 0..3 {
        let mut c = Client::connect(&url).await;
        c.join_ok("chat:lobby").await;
        readers.push(c);
    }
    let readers: Vec<_> = readers.into_iter().map(read_until_close).collect();

    const N: usize = 50;
    let lobby = hub.room::<ChatMessage>("chat:lobby").unwrap();
    for i in 0..N {
        let delivered = lobby
            .publish(ChatMessage {
                text: format!("m{i}"),
            })
            .await
            .unwrap()
            .delivered;
        assert_eq!(delivered, 3);
    }
    assert!(hub.shutdown().await, "shutdown did not finish in time");
    assert!(hub.is_shutting_down());

    let expected: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    for r in readers {
        let (texts, code) = r.await.unwrap();
        assert_eq!(
            texts, expected,
            "every queued message, in order, before the close"
        );
        assert_eq!(code, 1001, "going away");
    }
    assert_eq!(hub.stats().connections, 0);

    // The accept loop has ended and dropped its listener: new connections are refused.
    let served = tokio::time::timeout(RECV_TIMEOUT, server)
        .await
        .expect("serve did not return after shutdown")
        .unwrap();
    assert!(served.is_ok(), "{served:?}");
    assert!(TcpStream::connect(addr).await.is_err());
    // Serving again after shutdown returns at once.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    tokio::time::timeout(RECV_TIMEOUT, hub.serve(listener))
        .await
        .expect("serve after shutdown did not return")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_up_on_a_silent_peer_at_the_deadline() {
    let hub = test_hub_builder()
        .configure(|c| c.shutdown_timeout = Duration::from_millis(300))
        .build();
    let (addr, server) = serve_plain(&hub).await;
    let mut good = Client::connect(&format!("ws://{addr}/")).await;
    good.join_ok("chat:lobby").await;
    let good = read_until_close(good);
    // Completes the handshake, then never reads and never answers the close.
    let _silent = common::raw::RawClient::connect(addr, "Sec-WebSocket-Protocol: wshub.v1").await;
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    while hub.stats().connections < 2 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let started = std::time::Instant::now();
    let finished = hub.shutdown().await;
    let took = started.elapsed();
    assert!(
        !finished,
        "shutdown claimed a silent peer finished its closing handshake"
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "shutdown returned after {took:?}, its deadline is 300 ms"
    );
    // The well-behaved client was closed normally all the same, and nothing new is
    // accepted.
    let (_, code) = good.await.unwrap();
    assert_eq!(code, 1001);
    tokio::time::timeout(RECV_TIMEOUT, server)
        .await
        .expect("serve did not return after shutdown")
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err());
}

// ---------------------------------------------------------------------------------------
// Connection limits
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_refuses_with_503_until_a_slot_frees() {
    let hub = test_hub_builder()
        .configure(|c| c.max_connections = 2)
        .build();
    let (addr, _server) = serve_plain(&hub).await;
    let url = format!("ws://{addr}/");

    let a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    assert_eq!(Client::connect_with(&url, &[]).await.err(), Some(503));
    // The refusal is an HTTP response with a reason, not a dropped connection.
    let (status, _, body) = raw_http(
        addr,
        &common::raw::upgrade_request(addr, "Sec-WebSocket-Protocol: wshub.v1"),
    )
    .await;
    assert_eq!(status, 503);
    assert!(body.contains("too many connections"), "{body:?}");
    assert_eq!(hub.stats().refused_by_limits, 2);
    assert_eq!(hub.stats().connections, 2);

    a.close().await;
    let mut c = connect_when_slot_frees(&url, 503).await;
    assert_eq!(hub.stats().connections, 2);
    // Both connections work.
    b.join_ok("chat:lobby").await;
    c.join_ok("chat:lobby").await;
    assert_eq!(Client::connect_with(&url, &[]).await.err(), Some(503));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_per_ip_refuses_with_429() {
    let hub = test_hub_builder()
        .configure(|c| c.max_connections_per_ip = 1)
        .build();
    let (addr, _server) = serve_plain(&hub).await;
    let url = format!("ws://{addr}/");

    let a = Client::connect(&url).await;
    assert_eq!(Client::connect_with(&url, &[]).await.err(), Some(429));
    assert_eq!(connect_from([127, 0, 0, 1], addr).await.err(), Some(429));
    // Another address has its own quota.
    let mut other = connect_from([127, 0, 0, 2], addr)
        .await
        .expect("a second IP is not limited by the first");
    round_trip(&mut other, "chat:lobby", "from 127.0.0.2").await;
    assert_eq!(connect_from([127, 0, 0, 2], addr).await.err(), Some(429));
    assert_eq!(hub.stats().refused_by_limits, 3);

    // Closing gives the slot back.
    a.close().await;
    let mut again = connect_when_slot_frees(&url, 429).await;
    again.join_ok("chat:lobby").await;
    assert_eq!(Client::connect_with(&url, &[]).await.err(), Some(429));
}

/// `HubConfig::origin` guards the hub against other sites' pages: a browser `Origin` not
/// on the list gets 403 at the handshake (standalone and through axum), a listed one
/// and a client that sends none (not a browser) get in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_allow_list_refuses_other_sites_with_403() {
    let hub = test_hub_builder()
        .configure(|c| {
            c.origin = wshub::ws::handshake::OriginPolicy::allow_list(["https://chat.example"]);
        })
        .build();
    let url = common::hub::serve(&hub).await;
    assert_eq!(
        Client::connect_with(&url, &[("origin", "https://evil.example")])
            .await
            .err(),
        Some(403)
    );
    let mut listed = Client::connect_with(&url, &[("origin", "https://chat.example")])
        .await
        .expect("listed origin");
    listed.join_ok("chat:origin").await;
    let mut no_origin = Client::connect(&url).await;
    no_origin.join_ok("chat:origin").await;

    #[cfg(feature = "axum")]
    {
        let addr = serve_axum(&hub).await;
        let axum_url = format!("ws://{addr}/ws");
        assert_eq!(
            Client::connect_with(&axum_url, &[("origin", "https://evil.example")])
                .await
                .err(),
            Some(403)
        );
        assert!(
            Client::connect_with(&axum_url, &[("origin", "https://chat.example")])
                .await
                .is_ok()
        );
    }
}
