//! The chat example's logs, as `--log-format json` writes them (the examples'
//! `log_subscriber`, here writing to a buffer), for a session with a forged token, a
//! flood closed with 1008 and a slow consumer closed with 1013: each event is found
//! with its fields (and the connection's span: `conn_id`, `user`, `peer`), and no
//! token, cookie or message body appears anywhere in the output.
#![cfg(all(
    feature = "axum",
    feature = "tls",
    feature = "jwt",
    feature = "metrics"
))]

#[path = "../examples/chat.rs"]
#[allow(dead_code)]
mod chat;
mod common;
#[path = "browser/support.rs"]
mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat::{ChatEvent, ChatOptions};
use common::hub::Client;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpSocket};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Everything logged, as written.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("logs are UTF-8")
    }

    /// Every line, parsed: each must be one JSON object.
    fn events(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// Waits until an event with `message` matches `pred`, and returns it.
    async fn wait_for(&self, message: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(e) = self
                .events()
                .into_iter()
                .find(|e| e["fields"]["message"] == message && pred(e))
            {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no {message:?} event matching; logs:\n{}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_say_who_was_cut_off_and_why_without_secrets() {
    let logs = Buffer::default();
    let writer = logs.clone();
    tracing::subscriber::set_global_default(chat::common::log_subscriber(
        chat::common::LogFormat::Json,
        tracing_subscriber::EnvFilter::new("info"),
        move || writer.clone(),
    ))
    .expect("the only subscriber of this test binary");

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = chat::start(
        listener,
        ChatOptions {
            secret: Some(b"logs test key".to_vec()),
            ..ChatOptions::default()
        },
    )
    .await
    .unwrap();
    let mut secrets = Vec::new();

    // A forged token: refused with 401, logged with the peer and the reason.
    let forged = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJldmUifQ.forged-signature-7f3a";
    secrets.push(forged.to_owned());
    let refused = Client::connect_with(&format!("{}?token={forged}", server.ws_url()), &[])
        .await
        .err();
    assert_eq!(refused, Some(401));
    let failed = logs
        .wait_for("authentication failed", |e| e["fields"]["status"] == 401)
        .await;
    assert_eq!(failed["level"], "INFO");
    assert_eq!(failed["fields"]["reason"], "invalid token");
    assert!(
        failed["fields"]["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{failed}"
    );

    // Mallory signs in over HTTP (the token comes back in the body and in a cookie),
    // connects with both, and floods: closed with 1008.
    let login = support::post_json(server.local_addr, "/login", &json!({"name": "Mallory"})).await;
    assert_eq!(login.status, 200, "{login}");
    let token = login.json()["token"].as_str().unwrap().to_owned();
    let cookie = login
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    secrets.push(token.clone());
    secrets.push(cookie.clone());
    let mut mallory = Client::connect_with(
        &format!("{}?token={token}", server.ws_url()),
        &[("cookie", &cookie)],
    )
    .await
    .unwrap();
    for i in 0..250 {
        let op = json!({"op": "publish", "room": "chat:lobby", "data": {"kind": "text", "text": "flood-body-marker"}, "id": i});
        mallory
            .ws
            .feed(Message::text(op.to_string()))
            .await
            .unwrap();
    }
    mallory.ws.flush().await.unwrap();
    assert_eq!(mallory.expect_close().await, 1008);
    drop(mallory);
    let flood = logs
        .wait_for("flooding: closing (1008)", |e| {
            e["span"]["user"] == "mallory"
        })
        .await;
    assert_eq!(flood["fields"]["code"], 1008);
    assert_eq!(flood["fields"]["limit"], "connection");
    assert_eq!(flood["fields"]["strikes"], 100);
    let mallory_conn = flood["span"]["conn_id"].clone();
    assert!(mallory_conn.is_u64(), "{flood}");
    assert!(
        flood["span"]["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{flood}"
    );
    let closed = logs
        .wait_for("closed", |e| e["span"]["conn_id"] == mallory_conn)
        .await;
    assert_eq!(closed["fields"]["code"], 1008);
    assert_eq!(closed["fields"]["reason"], "flooding");
    assert_eq!(closed["fields"]["initiator"], "Server");
    let connected = logs
        .wait_for("connected", |e| e["span"]["conn_id"] == mallory_conn)
        .await;
    assert_eq!(connected["span"]["user"], "mallory");

    // A slow consumer: stops reading while the server publishes into its room.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(8 * 1024).unwrap();
    let stream = socket.connect(server.local_addr).await.unwrap();
    let token = server.auth.login("slowpoke").unwrap().token;
    secrets.push(token.clone());
    let mut slowpoke =
        Client::connect_on(stream, &format!("{}?token={token}", server.ws_url()), &[])
            .await
            .unwrap();
    slowpoke.join_ok("chat:firehose").await;
    let room = server.hub.room::<ChatEvent>("chat:firehose").unwrap();
    for n in 0.. {
        assert!(n < 5_000, "no slow consumer after 5,000 publishes");
        if server.hub.stats().slow_consumers == 1 {
            break;
        }
        let text = format!("firehose-body-marker {}", "x".repeat(8 * 1024));
        room.publish(ChatEvent::Text {
            text,
            name: "server".into(),
            at: 0,
        })
        .await
        .unwrap();
    }
    let slow = logs
        .wait_for("closed slow consumer (1013)", |e| {
            e["fields"]["user"] == "slowpoke"
        })
        .await;
    assert_eq!(slow["fields"]["code"], 1013);
    assert!(
        slow["fields"]["queued_bytes"].as_u64().unwrap() > 0,
        "{slow}"
    );
    let slow_conn = slow["fields"]["conn_id"].clone();
    drop(slowpoke);
    let closed = logs
        .wait_for("closed", |e| e["span"]["conn_id"] == slow_conn)
        .await;
    assert_eq!(closed["span"]["user"], "slowpoke");
    assert_eq!(closed["fields"]["code"], 1013);
    assert_eq!(closed["fields"]["reason"], "slow consumer");
    assert_eq!(closed["fields"]["initiator"], "Server");

    // Nothing secret, nothing a user wrote.
    let all = logs.text();
    for secret in &secrets {
        assert!(
            !all.contains(secret.as_str()),
            "a secret was logged: {secret}\n{all}"
        );
        // Not even the signature part of a JWT.
        let tail = secret.rsplit('.').next().unwrap();
        assert!(!all.contains(tail), "part of a secret was logged: {tail}");
    }
    assert!(!all.contains("token="), "{all}");
    assert!(!all.contains("chat_token"), "{all}");
    assert!(!all.contains("flood-body-marker"), "{all}");
    assert!(!all.contains("firehose-body-marker"), "{all}");
    // Every line is one JSON event, every connection event inside its span.
    for e in logs.events() {
        if e["target"] == "wshub::session" {
            assert_eq!(e["span"]["name"], "conn", "{e}");
        }
    }

    server.shutdown().await.unwrap();
}
