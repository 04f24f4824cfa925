use http::header::HeaderValue;
use tokio::io::{AsyncReadExt, DuplexStream, duplex};
use tokio::time::Instant;

use super::*;
use crate::ws::handshake::http::MAX_HEADERS;
use crate::ws::handshake::test_support::{ACCEPT, cfg, read_http_head};

const RAW_REQUEST: &str = "GET /chat?room=1 HTTP/1.1\r\n\
    Host: server.example.com\r\n\
    Upgrade: websocket\r\n\
    Connection: keep-alive, Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\
    \r\n";

async fn read_all(stream: &mut DuplexStream) -> String {
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.unwrap();
    String::from_utf8(buf).unwrap()
}

#[tokio::test]
async fn accept_request_keeps_leftover_bytes_and_accepts() {
    let (mut client, server) = duplex(64 * 1024);
    client.write_all(RAW_REQUEST.as_bytes()).await.unwrap();
    client.write_all(b"\x81\x80frame").await.unwrap();

    let peer: SocketAddr = "192.0.2.1:4000".parse().unwrap();
    let upgrade = accept_request(server, Some(peer), &cfg()).await.unwrap();
    assert_eq!(upgrade.peer_addr(), Some(peer));
    assert_eq!(upgrade.request().uri(), "/chat?room=1");
    assert_eq!(upgrade.request().headers()["host"], "server.example.com");
    assert_eq!(&upgrade.leftover[..], b"\x81\x80frame");
    assert!(format!("{upgrade:?}").contains("leftover: 7"));

    let mut extra = HeaderMap::new();
    extra.insert("set-cookie", HeaderValue::from_static("sid=1"));
    extra.insert("sec-websocket-accept", HeaderValue::from_static("forged"));
    let _ws = upgrade
        .accept_with_headers(extra, WsConfig::default())
        .await
        .unwrap();
    let head = read_http_head(&mut client).await;
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n")),
        "{head}"
    );
    assert!(head.contains("Upgrade: websocket\r\n"), "{head}");
    assert!(head.contains("Set-Cookie: sid=1\r\n"), "{head}");
    assert!(!head.contains("forged"), "{head}");
}

#[tokio::test]
async fn request_arriving_in_pieces_is_assembled() {
    let (mut client, server) = duplex(64 * 1024);
    let writer = tokio::spawn(async move {
        for piece in RAW_REQUEST.as_bytes().chunks(7) {
            client.write_all(piece).await.unwrap();
            tokio::task::yield_now().await;
        }
        client
    });
    let upgrade = accept_request(server, None, &cfg()).await.unwrap();
    assert!(upgrade.leftover.is_empty());
    drop(writer.await.unwrap());
}

#[tokio::test]
async fn oversized_head_gets_431() {
    let (mut client, server) = duplex(64 * 1024);
    let pad = "a".repeat(2000);
    let req = RAW_REQUEST.replace("\r\n\r\n", &format!("\r\nX-Pad: {pad}\r\n\r\n"));
    client.write_all(req.as_bytes()).await.unwrap();
    let cfg = cfg().with_max_request_size(1500);
    let err = accept_request(server, None, &cfg).await.unwrap_err();
    assert!(matches!(err, HandshakeError::RequestTooLarge), "{err:?}");
    let response = read_all(&mut client).await;
    assert!(
        response.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{response}"
    );
    assert!(response.contains("Connection: close\r\n"), "{response}");
    assert!(response.ends_with("request head too large\n"), "{response}");
}

#[tokio::test]
async fn too_many_headers_get_431() {
    let (mut client, server) = duplex(64 * 1024);
    let many: String = (0..MAX_HEADERS).map(|i| format!("X-{i}: 1\r\n")).collect();
    let req = RAW_REQUEST.replace("\r\n\r\n", &format!("\r\n{many}\r\n"));
    client.write_all(req.as_bytes()).await.unwrap();
    let err = accept_request(server, None, &cfg()).await.unwrap_err();
    assert!(matches!(err, HandshakeError::RequestTooLarge), "{err:?}");
    assert!(read_all(&mut client).await.starts_with("HTTP/1.1 431 "));
}

#[tokio::test(start_paused = true)]
async fn slow_peer_times_out() {
    let (mut client, server) = duplex(64 * 1024);
    client
        .write_all(b"GET /chat HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let err = accept_request(server, None, &cfg()).await.unwrap_err();
    assert!(matches!(err, HandshakeError::Timeout), "{err:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
        "{waited:?}"
    );
    // Nothing is answered to a peer that did not finish its request.
    assert_eq!(read_all(&mut client).await, "");
}

#[tokio::test]
async fn eof_before_the_head_is_an_io_error() {
    let (mut client, server) = duplex(64 * 1024);
    client.write_all(b"GET /chat HTTP/1.1\r\n").await.unwrap();
    drop(client);
    match accept_request(server, None, &cfg()).await {
        Err(HandshakeError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn bad_version_gets_426_with_the_supported_version() {
    let (mut client, server) = duplex(64 * 1024);
    let req = RAW_REQUEST.replace("Version: 13", "Version: 8");
    client.write_all(req.as_bytes()).await.unwrap();
    let err = accept_request(server, None, &cfg()).await.unwrap_err();
    assert!(matches!(err, HandshakeError::UnsupportedVersion), "{err:?}");
    let response = read_all(&mut client).await;
    assert!(response.starts_with("HTTP/1.1 426"), "{response}");
    assert!(
        response.contains("Sec-WebSocket-Version: 13\r\n"),
        "{response}"
    );
}

#[tokio::test]
async fn post_gets_405_with_allow() {
    let (mut client, server) = duplex(64 * 1024);
    let req = RAW_REQUEST.replace("GET ", "POST ");
    client.write_all(req.as_bytes()).await.unwrap();
    let err = accept_request(server, None, &cfg()).await.unwrap_err();
    assert!(matches!(err, HandshakeError::MethodNotAllowed), "{err:?}");
    let response = read_all(&mut client).await;
    assert!(
        response.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{response}"
    );
    assert!(response.contains("Allow: GET\r\n"), "{response}");
}

#[tokio::test]
async fn garbage_gets_400() {
    let (mut client, server) = duplex(64 * 1024);
    client
        .write_all(b"\x16\x03\x01\x02\x00 TLS hello\r\n\r\n")
        .await
        .unwrap();
    let err = accept_request(server, None, &cfg()).await.unwrap_err();
    assert!(matches!(err, HandshakeError::BadRequest(_)), "{err:?}");
    assert!(
        read_all(&mut client)
            .await
            .starts_with("HTTP/1.1 400 Bad Request\r\n")
    );
}

#[tokio::test]
async fn reject_writes_the_status_and_closes() {
    let (mut client, server) = duplex(64 * 1024);
    client.write_all(RAW_REQUEST.as_bytes()).await.unwrap();
    let upgrade = accept_request(server, None, &cfg()).await.unwrap();
    let mut extra = HeaderMap::new();
    extra.insert("www-authenticate", HeaderValue::from_static("Bearer"));
    extra.insert("content-length", HeaderValue::from_static("999"));
    upgrade
        .reject_with_headers(StatusCode::UNAUTHORIZED, extra, "no token")
        .await
        .unwrap();
    let response = read_all(&mut client).await;
    assert!(
        response.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
        "{response}"
    );
    assert!(
        response.contains("Www-Authenticate: Bearer\r\n"),
        "{response}"
    );
    assert!(response.contains("Content-Length: 8\r\n"), "{response}");
    assert!(response.contains("Connection: close\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\nno token"), "{response}");
}
