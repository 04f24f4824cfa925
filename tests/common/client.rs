//! Fixtures for `wshub::client` tests: waiting for a client's state changes and room
//! events with a deadline, and a scripted fake server (the crate's own engine in the
//! server role) that shows what the client sent.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use wshub::client::{ClientEvent, ConnectionState, Events, Message, RoomEvent, Subscription};
use wshub::ws::handshake::{HandshakeConfig, accept};
use wshub::ws::{CloseCode, Message as WsMessage, WebSocket, WsConfig};
use wshub::{AuthRejection, AuthRequest, Authenticator, Identity};

/// How long a test waits for one expected event.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The next state change on `events` for which `pred` holds; earlier ones are
/// returned too, in order (the last element is the match).
pub async fn states_until(
    events: &mut Events,
    pred: impl Fn(&ConnectionState) -> bool,
) -> Vec<ConnectionState> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for a state; saw {seen:?}"))
            .unwrap_or_else(|| panic!("the client's events ended; saw {seen:?}"));
        if let ClientEvent::State(state) = event {
            let done = pred(&state);
            seen.push(state);
            if done {
                return seen;
            }
        }
    }
}

/// The next room event, whatever it is.
pub async fn next_event<M: DeserializeOwned + Debug>(sub: &mut Subscription<M>) -> RoomEvent<M> {
    tokio::time::timeout(EVENT_TIMEOUT, sub.recv())
        .await
        .expect("timed out waiting for a room event")
        .expect("the subscription ended")
}

/// The next message of the room; presence events before it are skipped.
pub async fn next_message<M: DeserializeOwned + Debug>(sub: &mut Subscription<M>) -> Message<M> {
    loop {
        match next_event(sub).await {
            RoomEvent::Message(m) => return m,
            RoomEvent::PresenceDiff(_) | RoomEvent::PresenceReset(_) => continue,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// A fake `wshub.v1` server on 127.0.0.1: accepts connections one at a time and lets
/// the test script what they say.
pub struct FakeServer {
    listener: TcpListener,
    /// `ws://127.0.0.1:PORT/`.
    pub url: String,
}

impl FakeServer {
    pub async fn bind() -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/", listener.local_addr().unwrap());
        FakeServer { listener, url }
    }

    /// The next connection, upgraded (selecting `wshub.v1`); nothing sent yet.
    pub async fn accept(&self) -> FakeConn {
        let (tcp, peer) = tokio::time::timeout(EVENT_TIMEOUT, self.listener.accept())
            .await
            .expect("the client did not connect")
            .unwrap();
        let cfg = HandshakeConfig::default().with_subprotocols(["wshub.v1"]);
        let ws = accept(tcp, Some(peer), &cfg, WsConfig::default())
            .await
            .expect("handshake");
        FakeConn { ws }
    }

    /// The next connection, welcomed as `user`.
    pub async fn accept_welcomed(&self, user: &str, conn_id: u64) -> FakeConn {
        let mut conn = self.accept().await;
        conn.send(
            serde_json::json!({"op": "welcome", "user": user, "conn_id": conn_id.to_string()}),
        )
        .await;
        conn
    }
}

/// One connection of the fake server.
pub struct FakeConn {
    pub ws: WebSocket<TcpStream>,
}

impl FakeConn {
    pub async fn send(&mut self, v: Value) {
        self.ws.send(WsMessage::text(v.to_string())).await.unwrap();
    }

    /// The next op the client sent.
    pub async fn recv(&mut self) -> Value {
        let msg = tokio::time::timeout(EVENT_TIMEOUT, self.ws.recv())
            .await
            .expect("timed out waiting for the client")
            .expect("websocket error")
            .expect("the client closed");
        serde_json::from_str(msg.as_text().expect("a text frame")).unwrap()
    }

    /// The next op, which must be `op`.
    pub async fn expect(&mut self, op: &str) -> Value {
        let v = self.recv().await;
        assert_eq!(v["op"], op, "expected {op}, got {v}");
        v
    }

    /// Closes with `code` and waits for the client's answer.
    pub async fn close(self, code: u16, reason: &str) {
        let _ =
            tokio::time::timeout(EVENT_TIMEOUT, self.ws.close(CloseCode::from(code), reason)).await;
    }
}

/// An authenticator with a table of tokens the test changes while the hub runs; it
/// counts attempts and records where each token came from (`"header"`, `"query"`).
#[derive(Clone, Default)]
pub struct TestTokens(Arc<TokensInner>);

#[derive(Default)]
pub struct TokensInner {
    /// token -> (user id, lifetime from the handshake)
    valid: Mutex<HashMap<String, (String, Option<Duration>)>>,
    attempts: AtomicUsize,
    seen: Mutex<Vec<(String, &'static str)>>,
}

impl TestTokens {
    /// Accepts `token` as `user`, with no expiry.
    pub fn allow(&self, token: &str, user: &str) -> &Self {
        self.0
            .valid
            .lock()
            .unwrap()
            .insert(token.into(), (user.into(), None));
        self
    }

    /// Accepts `token` as `user`; the identity expires `lifetime` after the handshake.
    pub fn allow_for(&self, token: &str, user: &str, lifetime: Duration) -> &Self {
        self.0
            .valid
            .lock()
            .unwrap()
            .insert(token.into(), (user.into(), Some(lifetime)));
        self
    }

    /// Refuses `token` from now on (401).
    pub fn revoke(&self, token: &str) {
        self.0.valid.lock().unwrap().remove(token);
    }

    /// Handshakes seen so far.
    pub fn attempts(&self) -> usize {
        self.0.attempts.load(Ordering::SeqCst)
    }

    /// The tokens presented so far, with where they were.
    pub fn seen(&self) -> Vec<(String, &'static str)> {
        self.0.seen.lock().unwrap().clone()
    }
}

impl Authenticator for TestTokens {
    async fn authenticate(&self, req: &AuthRequest) -> Result<Identity, AuthRejection> {
        self.0.attempts.fetch_add(1, Ordering::SeqCst);
        let (token, place) = match (req.bearer_token(), req.query_param("token")) {
            (Some(t), _) => (t.to_owned(), "header"),
            (None, Some(t)) => (t, "query"),
            (None, None) => return Err(AuthRejection::Unauthorized("missing token".into())),
        };
        self.0.seen.lock().unwrap().push((token.clone(), place));
        let entry = self.0.valid.lock().unwrap().get(&token).cloned();
        match entry {
            Some((user, lifetime)) => {
                let identity = Identity::new(user.clone(), user);
                Ok(match lifetime {
                    Some(l) => identity.with_expiry(SystemTime::now() + l),
                    None => identity,
                })
            }
            None => Err(AuthRejection::Unauthorized("invalid token".into())),
        }
    }
}
