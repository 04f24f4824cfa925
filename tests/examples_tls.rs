//! The examples over TLS: `chat` with its generated self-signed certificate (what
//! `--tls` does) and `news_feed` with `--cert`/`--key` files, started in this process
//! on 127.0.0.1:0. A client that trusts the certificate (rustls through
//! `wshub::tls::client_config_trusting`) talks https and wss to them; one that does
//! not is refused during the TLS handshake.
#![cfg(all(feature = "axum", feature = "tls", feature = "jwt"))]
// Both examples include examples/common/mod.rs as their own private module.
#![allow(clippy::duplicate_mod)]

#[path = "../examples/chat.rs"]
#[allow(dead_code)]
mod chat;
#[path = "../examples/news_feed.rs"]
#[allow(dead_code)]
mod news_feed;
#[path = "browser/support.rs"]
mod support;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use chat::{ChatOptions, TlsChoice};
use support::{HttpResponse, http_on};

/// A fresh directory for this test's files, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "wshub-examples-tls-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A client configuration trusting exactly the certificates in `pem`.
fn trusting(pem: &[u8]) -> Arc<ClientConfig> {
    Arc::new(wshub::tls::client_config_trusting(pem).expect("client config"))
}

/// TCP then TLS to `addr`, checking the certificate against `name`.
async fn tls_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    name: &str,
) -> io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).expect("server name");
    tokio::time::timeout(
        Duration::from_secs(10),
        TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}

/// One https request.
async fn https(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> HttpResponse {
    let tls = tls_connect(addr, config.clone(), "127.0.0.1")
        .await
        .unwrap_or_else(|e| panic!("TLS to {addr}: {e}"));
    let (headers, body) = match body {
        Some(v) => (
            vec![("Content-Type", "application/json")],
            v.to_string().into_bytes(),
        ),
        None => (vec![], vec![]),
    };
    tokio::time::timeout(
        support::HTTP_TIMEOUT,
        http_on(tls, method, &addr.to_string(), path, &headers, &body),
    )
    .await
    .unwrap_or_else(|_| panic!("{method} https://{addr}{path}: no answer"))
    .unwrap_or_else(|e| panic!("{method} https://{addr}{path}: {e}"))
}

type Wss = WebSocketStream<TlsStream<TcpStream>>;

/// A `wshub.v1` WebSocket over TLS (`url` is `wss://...`); returns it and the welcome.
async fn wss_connect(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    name: &str,
    url: &str,
) -> (Wss, Value) {
    let tls = tls_connect(addr, config.clone(), name)
        .await
        .unwrap_or_else(|e| panic!("TLS to {addr} as {name}: {e}"));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "wshub.v1".parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tls)
        .await
        .unwrap_or_else(|e| panic!("WebSocket handshake over TLS to {url}: {e}"));
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .map(|v| v.as_bytes()),
        Some(&b"wshub.v1"[..])
    );
    let welcome = next_json(&mut ws).await;
    assert_eq!(welcome["op"], "welcome", "{welcome}");
    (ws, welcome)
}

async fn next_json(ws: &mut Wss) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
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

/// Sends `op` with `id` and returns its reply, and the messages that came first.
async fn request(ws: &mut Wss, mut op: Value, id: u64) -> (Value, Vec<Value>) {
    op["id"] = json!(id);
    ws.send(Message::text(op.to_string())).await.unwrap();
    let mut before = Vec::new();
    loop {
        let v = next_json(ws).await;
        if v["op"] == "reply" && v["id"] == json!(id) {
            return (v, before);
        }
        before.push(v);
    }
}

/// The next `message` (skipping presence diffs), from `pending` first.
async fn next_message(ws: &mut Wss, pending: &mut Vec<Value>) -> Value {
    if let Some(i) = pending.iter().position(|v| v["op"] == "message") {
        return pending.remove(i);
    }
    loop {
        let v = next_json(ws).await;
        if v["op"] == "message" {
            return v;
        }
    }
}

#[tokio::test]
async fn chat_over_wss_trusting_its_self_signed_certificate() {
    let dir = TempDir::new("chat");
    let cert_path = dir.0.join("chat-cert.pem");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = ChatOptions {
        tls: Some(TlsChoice::SelfSigned {
            cert_out: Some(cert_path.clone()),
        }),
        ..ChatOptions::default()
    };
    let server = chat::start(listener, options).await.expect("chat with TLS");
    let addr = server.local_addr;
    assert_eq!(server.url(), format!("https://{addr}/"));
    assert_eq!(server.ws_url(), format!("wss://{addr}/ws"));

    // The certificate was written where the server says, and only the certificate.
    let info = server.tls.clone().expect("TLS info");
    assert_eq!(info.cert_path.as_deref(), Some(cert_path.as_path()));
    let pem = std::fs::read_to_string(&cert_path).expect("the certificate file");
    assert_eq!(pem, info.cert_pem);
    assert!(pem.contains("BEGIN CERTIFICATE"), "{pem}");
    assert!(
        !pem.contains("PRIVATE KEY"),
        "the key must not be written out"
    );
    let config = trusting(pem.as_bytes());

    // https: the page, then a token.
    let page = https(addr, &config, "GET", "/", None).await;
    assert_eq!(page.status, 200, "{page}");
    assert!(page.text().contains("id=\"login-form\""), "{page}");
    let login = https(
        addr,
        &config,
        "POST",
        "/login",
        Some(&json!({"name": "Alice"})),
    )
    .await;
    assert_eq!(login.status, 200, "{login}");
    let token = login.json()["token"].as_str().expect("token").to_owned();
    // The login cookie (which keeps the name for its holder) is sent over https only.
    let cookie = login.header("set-cookie").unwrap_or_default();
    assert!(cookie.ends_with("; Secure"), "{cookie}");

    // wss: two users (the certificate names 127.0.0.1 and localhost), one room.
    let url = format!("{}?token={token}", server.ws_url());
    let (mut alice, welcome) = wss_connect(addr, &config, "127.0.0.1", &url).await;
    assert_eq!(welcome["user"], "alice", "{welcome}");
    let bob_token = server.auth.login("bob").unwrap().token;
    let bob_url = format!("wss://localhost:{}/ws?token={bob_token}", addr.port());
    let (mut bob, welcome) = wss_connect(addr, &config, "localhost", &bob_url).await;
    assert_eq!(welcome["user"], "bob", "{welcome}");

    let room = chat::DEFAULT_ROOM;
    let (r, _) = request(
        &mut alice,
        json!({"op": "join", "room": room, "meta": {"name": "Alice"}}),
        1,
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    let (r, _) = request(
        &mut bob,
        json!({"op": "join", "room": room, "meta": {"name": "bob"}}),
        1,
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    let (r, mut alice_got) = request(
        &mut alice,
        json!({"op": "publish", "room": room, "data": {"kind": "text", "text": "  hello over wss  "}}),
        2,
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["data"]["delivered"], 2, "{r}");
    let mut bob_got = Vec::new();
    for (ws, got) in [(&mut alice, &mut alice_got), (&mut bob, &mut bob_got)] {
        let msg = next_message(ws, got).await;
        assert_eq!(msg["room"], room, "{msg}");
        assert_eq!(msg["from"], "alice", "{msg}");
        assert_eq!(msg["data"]["kind"], "text", "{msg}");
        assert_eq!(msg["data"]["text"], "hello over wss", "{msg}");
        assert_eq!(
            msg["data"]["name"], "Alice",
            "the server stamps the name: {msg}"
        );
    }

    for ws in [&mut alice, &mut bob] {
        let _ = ws.close(None).await;
        while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(2), ws.next()).await {}
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = ChatOptions {
        tls: Some(TlsChoice::SelfSigned { cert_out: None }),
        ..ChatOptions::default()
    };
    let server = chat::start(listener, options).await.expect("chat with TLS");
    let addr = server.local_addr;
    let info = server.tls.clone().expect("TLS info");
    assert_eq!(info.cert_path, None);

    let stranger = wshub::tls::self_signed(["localhost", "127.0.0.1"]).unwrap();
    let cases: [(&str, Arc<ClientConfig>, &str); 3] = [
        (
            "trusting another self-signed certificate",
            trusting(stranger.cert_pem.as_bytes()),
            "127.0.0.1",
        ),
        ("trusting nothing", trusting(b""), "127.0.0.1"),
        (
            "trusting the certificate, for another name",
            trusting(info.cert_pem.as_bytes()),
            "example.com",
        ),
    ];
    for (what, config, name) in cases {
        match tls_connect(addr, config, name).await {
            Ok(_) => panic!("a client {what} completed the TLS handshake"),
            Err(e) => {
                let text = e.to_string();
                assert!(
                    text.contains("certificate"),
                    "a client {what}: expected a certificate error, got {e:?}"
                );
            }
        }
    }
    // A plain-text client gets nothing useful either: no HTTP answer over TLS.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let plain = tokio::time::timeout(
        Duration::from_secs(10),
        http_on(tcp, "GET", &addr.to_string(), "/", &[], b""),
    )
    .await
    .expect("the server should drop a plain-text client");
    assert!(
        plain.is_err(),
        "a plain http request got an HTTP answer: {plain:?}"
    );

    // The refused handshakes broke nothing: a trusting client still gets in.
    let config = trusting(info.cert_pem.as_bytes());
    let token = server.auth.login("carol").unwrap().token;
    let (mut ws, welcome) = wss_connect(
        addr,
        &config,
        "127.0.0.1",
        &format!("{}?token={token}", server.ws_url()),
    )
    .await;
    assert_eq!(welcome["user"], "carol", "{welcome}");
    let _ = ws.close(None).await;
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(2), ws.next()).await {}
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn news_feed_over_https_and_wss_with_cert_and_key_files() {
    let dir = TempDir::new("news");
    let generated = wshub::tls::self_signed(["localhost", "127.0.0.1"]).unwrap();
    let (cert, key) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
    std::fs::write(&cert, &generated.cert_pem).unwrap();
    std::fs::write(&key, &generated.key_pem).unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = news_feed::NewsOptions {
        tls: Some(news_feed::TlsChoice::Files {
            cert: cert.clone(),
            key: key.clone(),
        }),
        ..news_feed::NewsOptions::default()
    };
    let server = news_feed::start(listener, options)
        .await
        .expect("news_feed with --cert/--key");
    let addr = server.local_addr;
    assert_eq!(server.url(), format!("https://{addr}/"));
    let info = server.tls.clone().expect("TLS info");
    assert_eq!(info.cert_pem, generated.cert_pem);
    let config = trusting(generated.cert_pem.as_bytes());

    let (mut ws, _) = wss_connect(addr, &config, "localhost", &server.ws_url()).await;
    let (r, _) = request(&mut ws, json!({"op": "join", "room": news_feed::ROOM}), 1).await;
    assert_eq!(r["ok"], true, "{r}");

    let posted = https(
        addr,
        &config,
        "POST",
        "/articles",
        Some(&json!({"title": "Over TLS", "body": "https in, wss out", "url": "https://example.org/tls"})),
    )
    .await;
    assert_eq!(posted.status, 201, "{posted}");
    let article = posted.json();
    let msg = next_json(&mut ws).await;
    assert_eq!(msg["op"], "message", "{msg}");
    assert_eq!(msg["room"], news_feed::ROOM, "{msg}");
    assert_eq!(msg["data"], article, "{msg}");
    let listed = https(addr, &config, "GET", "/articles", None).await;
    assert_eq!(listed.json()["articles"], json!([article]), "{listed}");

    // Bad PEM files are an error at start, naming the files.
    std::fs::write(&key, "not a key").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = news_feed::NewsOptions {
        tls: Some(news_feed::TlsChoice::Files {
            cert: cert.clone(),
            key: key.clone(),
        }),
        ..news_feed::NewsOptions::default()
    };
    let err = news_feed::start(listener, options)
        .await
        .expect_err("a key file without a key");
    assert!(
        err.to_string().contains("key.pem"),
        "the error should name the file: {err}"
    );

    let _ = ws.close(None).await;
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(2), ws.next()).await {}
    server.shutdown().await.unwrap();
}
