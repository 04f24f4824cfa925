use std::io;

use tokio::io::{DuplexStream, duplex};

use super::*;
use crate::ws::handshake::test_support::{ACCEPT, cfg, read_http_head};
use crate::ws::handshake::{HandshakeConfig, accept_request};

/// A fake server: reads the request head, answers with `respond(key)`, and returns
/// the request it saw.
fn fake_server(
    mut stream: DuplexStream,
    respond: impl FnOnce(&str) -> String + Send + 'static,
) -> tokio::task::JoinHandle<(String, DuplexStream)> {
    tokio::spawn(async move {
        let head = read_http_head(&mut stream).await;
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap()
            .to_owned();
        stream.write_all(respond(&key).as_bytes()).await.unwrap();
        (head, stream)
    })
}

fn switching(accept: &str, extra: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn client_accepts_a_correct_answer() {
    let (client, server) = duplex(64 * 1024);
    let srv = fake_server(server, |key| {
        switching(&derive_accept_key(key.as_bytes()), "")
    });
    let cfg = ClientConfig::default()
        .with_header(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"))
        .with_header(header::CONNECTION, HeaderValue::from_static("close"));
    let (_ws, res) = client_handshake(
        client,
        "ws://example.com:8080/chat?room=1",
        &cfg,
        WsConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
    let (head, _stream) = srv.await.unwrap();
    assert!(head.starts_with("GET /chat?room=1 HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("Host: example.com:8080\r\n"), "{head}");
    assert!(head.contains("Upgrade: websocket\r\n"), "{head}");
    assert!(head.contains("Connection: Upgrade\r\n"), "{head}");
    assert!(head.contains("Sec-WebSocket-Version: 13\r\n"), "{head}");
    assert!(head.contains("Authorization: Bearer t\r\n"), "{head}");
    assert!(
        head.contains(&format!(
            "Sec-WebSocket-Extensions: {}\r\n",
            deflate::CLIENT_OFFER
        )),
        "{head}"
    );
    assert!(!head.contains("close"), "{head}");
}

#[tokio::test]
async fn client_refuses_a_wrong_accept_key() {
    let (client, server) = duplex(64 * 1024);
    let _srv = fake_server(server, |_| switching(ACCEPT, ""));
    let err = client_handshake(
        client,
        "ws://example.com/",
        &ClientConfig::default(),
        WsConfig::default(),
    )
    .await
    .unwrap_err();
    match err {
        HandshakeError::Refused(why) => assert!(why.contains("Sec-WebSocket-Accept"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn client_reports_the_status_of_a_refusal() {
    let (client, server) = duplex(64 * 1024);
    let _srv = fake_server(server, |_| {
        "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".to_owned()
    });
    let err = client_handshake(
        client,
        "ws://example.com/",
        &ClientConfig::default(),
        WsConfig::default(),
    )
    .await
    .unwrap_err();
    match err {
        HandshakeError::Refused(why) => assert!(why.contains("401"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn client_refuses_what_it_did_not_offer() {
    let cases: [(ClientConfig, &str); 6] = [
        (ClientConfig::default(), "Sec-WebSocket-Protocol: chat\r\n"),
        (
            ClientConfig::default().with_subprotocols(["chat"]),
            "Sec-WebSocket-Protocol: other\r\n",
        ),
        (
            ClientConfig::default().with_deflate(false),
            "Sec-WebSocket-Extensions: permessage-deflate\r\n",
        ),
        (
            ClientConfig::default(),
            "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n",
        ),
        (
            ClientConfig::default(),
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n",
        ),
        // We asked for server_no_context_takeover: an answer without it is refused.
        (
            ClientConfig::default(),
            "Sec-WebSocket-Extensions: permessage-deflate\r\n",
        ),
    ];
    for (cfg, extra) in cases {
        let (client, server) = duplex(64 * 1024);
        let extra = extra.to_owned();
        let _srv = fake_server(server, move |key| {
            switching(&derive_accept_key(key.as_bytes()), &extra)
        });
        let err = client_handshake(client, "ws://example.com/", &cfg, WsConfig::default())
            .await
            .unwrap_err();
        assert!(matches!(err, HandshakeError::Refused(_)), "{err:?}");
    }
}

#[tokio::test]
async fn client_accepts_deflate_and_empty_extension_headers() {
    for extra in [
        "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n",
        "Sec-WebSocket-Extensions: \r\nSec-WebSocket-Extensions: ,\r\n",
    ] {
        let (client, server) = duplex(64 * 1024);
        let _srv = fake_server(server, move |key| {
            switching(&derive_accept_key(key.as_bytes()), extra)
        });
        let cfg = ClientConfig::default();
        let (_ws, res) = client_handshake(client, "ws://example.com/", &cfg, WsConfig::default())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
    }
}

#[tokio::test]
async fn client_accepts_an_offered_subprotocol() {
    let (client, server) = duplex(64 * 1024);
    let srv = fake_server(server, |key| {
        switching(
            &derive_accept_key(key.as_bytes()),
            "Sec-WebSocket-Protocol: b\r\n",
        )
    });
    let cfg = ClientConfig::default().with_subprotocols(["a", "b"]);
    let (_ws, res) = client_handshake(client, "ws://example.com/", &cfg, WsConfig::default())
        .await
        .unwrap();
    assert_eq!(res.headers()["sec-websocket-protocol"], "b");
    let (head, _) = srv.await.unwrap();
    assert!(head.contains("Sec-WebSocket-Protocol: a, b\r\n"), "{head}");
}

#[tokio::test]
async fn client_rejects_invalid_subprotocol_names() {
    let (client, _server) = duplex(64 * 1024);
    let cfg = ClientConfig::default().with_subprotocols(["a b"]);
    match client_handshake(client, "ws://example.com/", &cfg, WsConfig::default()).await {
        Err(HandshakeError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::InvalidInput),
        other => panic!("{:?}", other.map(|(_, res)| res)),
    }
}

#[tokio::test(start_paused = true)]
async fn client_times_out_on_a_silent_server() {
    let (client, _server) = duplex(64 * 1024);
    let err = client_handshake(
        client,
        "ws://example.com/",
        &ClientConfig::default(),
        WsConfig::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, HandshakeError::Timeout), "{err:?}");
}

#[tokio::test]
async fn client_and_server_agree() {
    let (client, server) = duplex(64 * 1024);
    let server_cfg = cfg().with_subprotocols(["v2", "v1"]);
    let srv = tokio::spawn(async move {
        let upgrade = accept_request(server, None, &server_cfg).await.unwrap();
        assert_eq!(upgrade.negotiated().subprotocol(), Some("v2"));
        assert!(upgrade.negotiated().deflate().is_some());
        upgrade.accept(WsConfig::default()).await.unwrap()
    });
    let cfg = ClientConfig::default().with_subprotocols(["v1", "v2"]);
    let (_ws, res) = client_handshake(client, "ws://localhost/", &cfg, WsConfig::default())
        .await
        .unwrap();
    assert_eq!(res.headers()["sec-websocket-protocol"], "v2");
    assert!(res.headers().contains_key("sec-websocket-extensions"));
    let _server_ws = srv.await.unwrap();
}

#[tokio::test]
async fn connect_over_tcp() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let srv = tokio::spawn(async move {
        let (stream, peer) = listener.accept().await.unwrap();
        let upgrade = accept_request(stream, Some(peer), &HandshakeConfig::default())
            .await
            .unwrap();
        assert_eq!(upgrade.request().uri(), "/ws?x=1");
        let host = upgrade.request().headers()["host"]
            .to_str()
            .unwrap()
            .to_owned();
        let _ws = upgrade.accept(WsConfig::default()).await.unwrap();
        host
    });
    let url = format!("ws://{addr}/ws?x=1");
    let (_ws, res) = connect(&url, &ClientConfig::default(), WsConfig::default())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(srv.await.unwrap(), addr.to_string());

    let err = connect(
        "wss://example.com/",
        &ClientConfig::default(),
        WsConfig::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, HandshakeError::Io(ref e) if e.kind() == io::ErrorKind::InvalidInput));
}
