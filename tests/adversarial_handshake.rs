//! Adversarial opening handshakes (RFC 6455 §4), over raw TCP.
//!
//! Requests are written by hand against the crate's echo server (default
//! `HandshakeConfig`) and the exact HTTP status is asserted; the tests needing another
//! configuration (a short timeout, an origin allow-list, subprotocols) call
//! `wshub::ws::handshake::accept_request` directly on a `TcpListener`. Tests against the
//! echo server end by checking it still serves a new client.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::echo::spawn_echo;
use common::raw::{
    ACCEPT, KEY, OP_PING, OP_PONG, OP_TEXT, RawClient, assert_server_alive, close_frame, frame,
    header_value, raw_http, raw_http_on, upgrade_request,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use wshub::error::HandshakeError;
use wshub::ws::handshake::{HandshakeConfig, OriginPolicy, accept_request};
use wshub::ws::{WebSocket, WsConfig};

/// A request head from the request line and header lines (each without CRLF).
fn request(request_line: &str, headers: &[&str]) -> String {
    let mut out = format!("{request_line}\r\n");
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out
}

/// The headers of a valid upgrade request for `addr`, minus those named in `without`
/// (case-insensitive prefixes such as `"Upgrade:"`).
fn valid_headers(addr: SocketAddr, without: &[&str]) -> Vec<String> {
    [
        format!("Host: {addr}"),
        "Upgrade: websocket".to_owned(),
        "Connection: Upgrade".to_owned(),
        format!("Sec-WebSocket-Key: {KEY}"),
        "Sec-WebSocket-Version: 13".to_owned(),
    ]
    .into_iter()
    .filter(|h| {
        !without
            .iter()
            .any(|w| h.to_ascii_lowercase().starts_with(&w.to_ascii_lowercase()))
    })
    .collect()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Asserts an error response: `status`, `Connection: close`, and that the server then
/// closes the connection.
async fn expect_refusal(addr: SocketAddr, req: &str, status: u16) -> Vec<(String, String)> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let r = raw_http_on(&mut stream, req.as_bytes()).await;
    assert_eq!(
        r.status, status,
        "request {req:?} got {} {:?} {:?}",
        r.status, r.headers, r.body
    );
    assert!(
        header_value(&r.headers, "connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("close")),
        "error response without Connection: close: {:?}",
        r.headers
    );
    expect_closed(&mut stream).await;
    r.headers
}

/// Asserts the peer closes `stream` (EOF or reset) within 2 s, sending nothing more.
async fn expect_closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 256];
    match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await {
        Err(_) => panic!("the server did not close the connection"),
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&buf[..n])),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(Err(e)) => panic!("read error: {e}"),
    }
}

/// What a one-shot server saw of an upgrade it accepted.
#[derive(Debug)]
struct Accepted {
    /// The selected subprotocol.
    subprotocol: Option<String>,
    /// The request's `Origin` header.
    origin: Option<String>,
    /// The connection, kept open until the test drops it.
    _ws: WebSocket<TcpStream>,
}

/// A server for one connection: `accept_request` with `cfg`, then, if the request is
/// valid, `accept` (which writes the 101). Returns its address and the outcome.
async fn one_shot(
    cfg: HandshakeConfig,
) -> (SocketAddr, JoinHandle<Result<Accepted, HandshakeError>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let server = tokio::spawn(async move {
        let (stream, peer) = listener.accept().await.expect("accept");
        let upgrade = accept_request(stream, Some(peer), &cfg).await?;
        let subprotocol = upgrade.negotiated().subprotocol().map(str::to_owned);
        let origin = upgrade
            .request()
            .headers()
            .get("origin")
            .map(|v| v.to_str().expect("origin").to_owned());
        let ws = upgrade.accept(WsConfig::default()).await?;
        Ok(Accepted {
            subprotocol,
            origin,
            _ws: ws,
        })
    });
    (addr, server)
}

/// The outcome of a [`one_shot`] server, which must come within 3 s.
async fn outcome(
    server: JoinHandle<Result<Accepted, HandshakeError>>,
) -> Result<Accepted, HandshakeError> {
    tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .expect("accept_request did not return")
        .expect("server task panicked")
}

// ---------------------------------------------------------------------------------------
// Against the echo server
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_is_405() {
    let addr = spawn_echo(true).await;
    let req = request("POST /chat HTTP/1.1", &refs(&valid_headers(addr, &[])));
    let headers = expect_refusal(addr, &req, 405).await;
    assert_eq!(header_value(&headers, "allow"), Some("GET"));
    // Other methods too (CONNECT is how HTTP/2 would ask, RFC 8441).
    for method in ["PUT", "HEAD", "OPTIONS", "CONNECT"] {
        let req = request(
            &format!("{method} /chat HTTP/1.1"),
            &refs(&valid_headers(addr, &[])),
        );
        expect_refusal(addr, &req, 405).await;
    }
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_is_400() {
    let addr = spawn_echo(true).await;
    let req = request("GET /chat HTTP/1.0", &refs(&valid_headers(addr, &[])));
    expect_refusal(addr, &req, 400).await;
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_wrong_upgrade_is_400() {
    let addr = spawn_echo(true).await;
    let without = valid_headers(addr, &["Upgrade:"]);
    expect_refusal(addr, &request("GET /chat HTTP/1.1", &refs(&without)), 400).await;
    let mut wrong = without.clone();
    wrong.push("Upgrade: h2c".to_owned());
    expect_refusal(addr, &request("GET /chat HTTP/1.1", &refs(&wrong)), 400).await;
    // Missing Connection: Upgrade, and missing Host.
    let no_conn = valid_headers(addr, &["Connection:"]);
    expect_refusal(addr, &request("GET /chat HTTP/1.1", &refs(&no_conn)), 400).await;
    let no_host = valid_headers(addr, &["Host:"]);
    expect_refusal(addr, &request("GET /chat HTTP/1.1", &refs(&no_host)), 400).await;
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_with_a_body_or_garbage_is_400() {
    let addr = spawn_echo(true).await;
    // A body would be misread as WebSocket frames.
    let mut headers = valid_headers(addr, &[]);
    headers.push("Content-Length: 5".to_owned());
    let req = request("GET /chat HTTP/1.1", &refs(&headers)) + "hello";
    expect_refusal(addr, &req, 400).await;
    let mut headers = valid_headers(addr, &[]);
    headers.push("Transfer-Encoding: chunked".to_owned());
    let req = request("GET /chat HTTP/1.1", &refs(&headers)) + "5\r\nhello\r\n0\r\n\r\n";
    expect_refusal(addr, &req, 400).await;
    // Not HTTP at all.
    expect_refusal(addr, "HELLO THERE\r\n\r\n", 400).await;
    expect_refusal(addr, "GET /chat HTTP/1.1\r\nHost\r\n\r\n", 400).await;
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_keep_alive_upgrade_is_accepted() {
    let addr = spawn_echo(true).await;
    for connection in [
        "Connection: keep-alive, Upgrade",
        "Connection: Upgrade, keep-alive",
        "connection: KEEP-ALIVE,upgrade",
    ] {
        let mut headers = valid_headers(addr, &["Connection:"]);
        headers.push(connection.to_owned());
        let (status, resp, _) =
            raw_http(addr, &request("GET /chat HTTP/1.1", &refs(&headers))).await;
        assert_eq!(status, 101, "{connection:?} got {status} {resp:?}");
        assert_eq!(header_value(&resp, "sec-websocket-accept"), Some(ACCEPT));
    }
    // Upgrade as a token list and in another case.
    let mut headers = valid_headers(addr, &["Upgrade:"]);
    headers.push("Upgrade: WebSocket".to_owned());
    let (status, _, _) = raw_http(addr, &request("GET /chat HTTP/1.1", &refs(&headers))).await;
    assert_eq!(status, 101);
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_invalid_key_is_400() {
    let addr = spawn_echo(true).await;
    let without = valid_headers(addr, &["Sec-WebSocket-Key:"]);
    expect_refusal(addr, &request("GET /chat HTTP/1.1", &refs(&without)), 400).await;
    for key in [
        "dGhlIHNhbXBsZQ==",             // base64 of 10 bytes
        "",                             // empty
        "dGhlIHNhbXBsZSBub25jZQ",       // 16 bytes, padding missing
        "dGhlIHNhbXBsZSBub25jZQ==AAAA", // too long
        "!!!!!!!!!!!!!!!!!!!!!!==",     // not base64
    ] {
        let mut headers = without.clone();
        headers.push(format!("Sec-WebSocket-Key: {key}"));
        expect_refusal(addr, &request("GET /chat HTTP/1.1", &refs(&headers)), 400).await;
    }
    // Two keys are ambiguous.
    let mut two = valid_headers(addr, &[]);
    two.push("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==".to_owned());
    expect_refusal(addr, &request("GET /chat HTTP/1.1", &refs(&two)), 400).await;
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_8_is_426_naming_version_13() {
    let addr = spawn_echo(true).await;
    for version in [Some("8"), Some("12"), Some("14"), None] {
        let mut headers = valid_headers(addr, &["Sec-WebSocket-Version:"]);
        if let Some(v) = version {
            headers.push(format!("Sec-WebSocket-Version: {v}"));
        }
        let resp = expect_refusal(addr, &request("GET /chat HTTP/1.1", &refs(&headers)), 426).await;
        assert_eq!(
            header_value(&resp, "sec-websocket-version"),
            Some("13"),
            "version {version:?}: {resp:?}"
        );
    }
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_head_over_8_kib_is_431() {
    let addr = spawn_echo(true).await;
    // One huge header.
    let mut headers = valid_headers(addr, &[]);
    headers.push(format!("X-Padding: {}", "a".repeat(9 * 1024)));
    expect_refusal(addr, &request("GET /chat HTTP/1.1", &refs(&headers)), 431).await;
    // Many ordinary headers adding up to more than 8 KiB.
    let mut headers = valid_headers(addr, &[]);
    for i in 0..60 {
        headers.push(format!("X-Filler-{i}: {}", "b".repeat(150)));
    }
    expect_refusal(addr, &request("GET /chat HTTP/1.1", &refs(&headers)), 431).await;
    // A head that never ends, streamed past the limit.
    let mut head = format!("GET /chat HTTP/1.1\r\nHost: {addr}\r\nX-Endless: ");
    head.push_str(&"c".repeat(8 * 1024));
    expect_refusal(addr, &head, 431).await;
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_pipelined_after_the_request_head_are_not_lost() {
    let addr = spawn_echo(true).await;
    let mut frames = frame(true, 0, OP_TEXT, b"sent with the request", true);
    frames.extend(frame(true, 0, OP_PING, b"and a ping", true));
    frames.extend(frame(false, 0, OP_TEXT, b"and a fragmented ", true));
    frames.extend(frame(true, 0, 0, b"message", true));
    let mut client = RawClient::connect_pipelined(addr, "", &frames).await;
    client.expect_text("sent with the request").await;
    let mut got_pong = false;
    let mut got_echo = false;
    while !(got_pong && got_echo) {
        let (fin, _, opcode, payload) = client.read_frame().await;
        assert!(fin);
        match opcode {
            OP_PONG => {
                assert_eq!(payload, b"and a ping");
                got_pong = true;
            }
            OP_TEXT => {
                assert_eq!(payload, b"and a fragmented message");
                got_echo = true;
            }
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
    client.send_raw(&close_frame(1000, b"")).await;
    client.expect_close(1000).await;

    // The request head trickled byte by byte, the last byte together with a frame.
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let req = upgrade_request(addr, "");
    let (head, last) = req.as_bytes().split_at(req.len() - 1);
    for b in head.chunks(7) {
        stream.write_all(b).await.expect("write");
    }
    let mut tail = last.to_vec();
    tail.extend(frame(true, 0, OP_TEXT, b"trickled", true));
    stream.write_all(&tail).await.expect("write");
    let mut client = RawClient::finish_handshake(stream).await;
    client.expect_text("trickled").await;
    assert_server_alive(addr).await;
}

// ---------------------------------------------------------------------------------------
// accept_request with other configurations
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_times_out_and_is_dropped() {
    let cfg = HandshakeConfig::default().with_timeout(Duration::from_millis(300));
    let (addr, server) = one_shot(cfg.clone()).await;
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // Say nothing: the server gives up after 300 ms, answers nothing, and closes.
    let result = outcome(server).await;
    let elapsed = start.elapsed();
    assert!(
        matches!(result, Err(HandshakeError::Timeout)),
        "expected Timeout, got {result:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(2),
        "timed out after {elapsed:?}"
    );
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf))
        .await
        .expect("the server never closed the silent connection");
    assert_eq!(
        read.expect("read"),
        0,
        "the silent client should get EOF and no response"
    );

    // A client trickling a valid head too slowly (slowloris) is dropped the same way.
    let (addr, server) = one_shot(cfg).await;
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let req = upgrade_request(addr, "");
    let trickle = tokio::spawn(async move {
        for b in req.as_bytes().chunks(4) {
            if stream.write_all(b).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let result = outcome(server).await;
    assert!(
        matches!(result, Err(HandshakeError::Timeout)),
        "slowloris: expected Timeout, got {result:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    trickle.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_not_on_the_allow_list_is_403() {
    let cfg = HandshakeConfig::default()
        .with_origin(OriginPolicy::allow_list(["https://app.example.com"]));
    for origin in [
        "https://evil.example.net",
        "https://app.example.com.evil.net",
        "http://app.example.com",
        "https://app.example.com:8443",
        "null",
    ] {
        let (addr, server) = one_shot(cfg.clone()).await;
        let req = upgrade_request(addr, &format!("Origin: {origin}\r\n"));
        let (status, headers, body) = raw_http(addr, &req).await;
        assert_eq!(status, 403, "{origin}: {headers:?} {body:?}");
        let result = outcome(server).await;
        assert!(
            matches!(result, Err(HandshakeError::OriginNotAllowed)),
            "{origin}: {result:?}"
        );
    }
    // Two Origin headers, one of them allowed: ambiguous, refused.
    let (addr, server) = one_shot(cfg.clone()).await;
    let req = upgrade_request(
        addr,
        "Origin: https://app.example.com\r\nOrigin: https://evil.example.net\r\n",
    );
    let (status, _, _) = raw_http(addr, &req).await;
    assert!(status == 400 || status == 403, "two origins got {status}");
    assert!(outcome(server).await.is_err());

    // The listed origin, in any ASCII case, is accepted.
    let (addr, server) = one_shot(cfg).await;
    let req = upgrade_request(addr, "Origin: https://APP.example.com\r\n");
    let (status, headers, _) = raw_http(addr, &req).await;
    assert_eq!(status, 101, "{headers:?}");
    let accepted = outcome(server).await.expect("allowed origin refused");
    assert_eq!(accepted.origin.as_deref(), Some("https://APP.example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subprotocol_is_the_first_server_preference_the_client_offered() {
    let cfg = HandshakeConfig::default().with_subprotocols(["v3.chat", "v2.chat", "v1.chat"]);
    let cases: [(&str, Option<&str>); 6] = [
        (
            "Sec-WebSocket-Protocol: v1.chat, v2.chat\r\n",
            Some("v2.chat"),
        ),
        (
            "Sec-WebSocket-Protocol: v1.chat\r\nSec-WebSocket-Protocol: v3.chat\r\n",
            Some("v3.chat"),
        ),
        ("Sec-WebSocket-Protocol: v1.chat\r\n", Some("v1.chat")),
        (
            "Sec-WebSocket-Protocol: v2.chat,v1.chat,v3.chat\r\n",
            Some("v3.chat"),
        ),
        // Names are compared case-sensitively; no match: no header at all.
        ("Sec-WebSocket-Protocol: mqtt, V2.CHAT\r\n", None),
        ("", None),
    ];
    for (offer, expected) in cases {
        let (addr, server) = one_shot(cfg.clone()).await;
        let (status, headers, _) = raw_http(addr, &upgrade_request(addr, offer)).await;
        assert_eq!(status, 101, "{offer:?}: {headers:?}");
        assert_eq!(
            header_value(&headers, "sec-websocket-protocol"),
            expected,
            "offer {offer:?}"
        );
        assert_eq!(
            headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-protocol"))
                .count(),
            usize::from(expected.is_some()),
            "one Sec-WebSocket-Protocol header at most: {headers:?}"
        );
        let accepted = outcome(server).await.expect("upgrade refused");
        assert_eq!(accepted.subprotocol.as_deref(), expected);
    }
}
