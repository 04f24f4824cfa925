//! Fixtures for hub tests: a hub with test namespaces served on 127.0.0.1 (port 0), and
//! a JSON client built on tokio-tungstenite (an implementation nobody here wrote).

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wshub::{Hub, HubBuilder, Namespace};

/// How long a test waits for one expected message.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);

/// The message type of the `chat:*` test namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub text: String,
}

/// The message type of the `news:*` test namespace (server publish only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Article {
    pub title: String,
}

/// A builder with `chat` (clients publish, presence on) and `news` (server only).
pub fn test_hub_builder() -> HubBuilder {
    Hub::builder()
        .namespace(Namespace::<ChatMessage>::new("chat"))
        .namespace(Namespace::<Article>::new("news").server_only())
}

/// Serves `hub` on 127.0.0.1:0 in the background; returns its `ws://` URL.
pub async fn serve(hub: &Hub) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let h = hub.clone();
    tokio::spawn(async move { h.serve(listener).await });
    format!("ws://{addr}/")
}

/// A stored `message` without its stream position, after checking that it has one (a
/// `seq` and an `epoch`): for tests about something else than history, which compare
/// the rest of the frame.
pub fn stored(m: &Value) -> Value {
    assert!(m["seq"].is_u64(), "no seq in {m}");
    assert!(m["epoch"].is_string(), "no epoch in {m}");
    let mut m = m.clone();
    let obj = m.as_object_mut().unwrap();
    obj.remove("seq");
    obj.remove("epoch");
    m
}

/// A `wshub.v1` client over tokio-tungstenite.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The `user` of the welcome message.
    pub user: String,
    /// The `conn_id` of the welcome message.
    pub conn_id: String,
    /// Whether `recv` and `recv_nothing` return `presence_diff`s. Off by default:
    /// diffs come on the hub's presence tick, at no fixed point between other
    /// messages, so tests about something else skip them; presence tests turn this on.
    pub watch_presence: bool,
    next_id: u64,
}

impl Client {
    /// Connects (offering `wshub.v1`) and reads the welcome.
    pub async fn connect(url: &str) -> Client {
        Self::connect_with(url, &[]).await.expect("connect")
    }

    /// Connects with extra request headers; `Err` carries the HTTP status on refusal.
    pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> Result<Client, u16> {
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("sec-websocket-protocol", "wshub.v1".parse().unwrap());
        for (k, v) in headers {
            req.headers_mut().insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let (ws, resp) = match tokio_tungstenite::connect_async(req).await {
            Ok(ok) => ok,
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                return Err(resp.status().as_u16());
            }
            Err(e) => panic!("connect failed: {e}"),
        };
        assert_eq!(
            resp.headers().get("sec-websocket-protocol").unwrap(),
            "wshub.v1"
        );
        Ok(Client::from_ws(ws).await)
    }

    /// The next message, which must be a `presence_diff` (whether or not this client
    /// watches presence). Diffs come on the hub's presence tick (100 ms by default).
    pub async fn recv_diff(&mut self) -> Value {
        let watching = std::mem::replace(&mut self.watch_presence, true);
        let v = self.recv().await;
        self.watch_presence = watching;
        assert_eq!(
            v["op"], "presence_diff",
            "expected a presence_diff, got {v}"
        );
        v
    }

    /// The next `presence_diff` that announces `user` (joining or leaving); diffs about
    /// others only (earlier joins, coalesced per tick) are skipped.
    pub async fn recv_diff_about(&mut self, user: &str) -> Value {
        loop {
            let d = self.recv_diff().await;
            if d["joins"].get(user).is_some() || d["leaves"].get(user).is_some() {
                return d;
            }
        }
    }

    fn skips(&self, v: &Value) -> bool {
        !self.watch_presence && v["op"] == "presence_diff"
    }

    /// Connects over an already-connected `stream` (for instance one bound to a chosen
    /// source address); `Err` carries the HTTP status and body on refusal.
    pub async fn connect_on(
        stream: TcpStream,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Client, (u16, String)> {
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("sec-websocket-protocol", "wshub.v1".parse().unwrap());
        for (k, v) in headers {
            req.headers_mut().append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let handshake = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(stream));
        let (ws, _) = match tokio::time::timeout(RECV_TIMEOUT, handshake)
            .await
            .expect("handshake timed out")
        {
            Ok(ok) => ok,
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default());
                return Err((resp.status().as_u16(), body.into_owned()));
            }
            Err(e) => panic!("connect failed: {e}"),
        };
        Ok(Client::from_ws(ws).await)
    }

    /// A client on an open WebSocket, after reading its welcome.
    async fn from_ws(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Client {
        let mut c = Client {
            ws,
            user: String::new(),
            conn_id: String::new(),
            watch_presence: false,
            next_id: 1,
        };
        let welcome = c.recv().await;
        assert_eq!(welcome["op"], "welcome", "{welcome}");
        c.user = welcome["user"].as_str().unwrap().to_owned();
        c.conn_id = welcome["conn_id"].as_str().unwrap().to_owned();
        c
    }

    /// Sends one JSON value as a text frame.
    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    /// Sends raw text.
    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).await.unwrap();
    }

    /// The next JSON message (pings are answered by tungstenite itself). One deadline
    /// for the whole wait: pings arriving meanwhile do not extend it.
    pub async fn recv(&mut self) -> Value {
        let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("timed out waiting for a message")
                .expect("connection ended")
                .expect("websocket error");
            match msg {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if self.skips(&v) {
                        continue;
                    }
                    return v;
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// The first JSON message that arrives within `wait`, or `None` if only pings (or
    /// nothing) arrive.
    pub async fn recv_nothing(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if self.skips(&v) {
                        continue;
                    }
                    return Some(v);
                }
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(other) => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Sends `op` with a fresh id and returns the reply to it; other messages that
    /// arrive first are returned too, in order.
    pub async fn request(&mut self, mut op: Value) -> (Value, Vec<Value>) {
        let id = self.next_id;
        self.next_id += 1;
        op["id"] = json!(id);
        self.send(op).await;
        let mut others = Vec::new();
        loop {
            let v = self.recv().await;
            if v["op"] == "reply" && v["id"] == json!(id) {
                return (v, others);
            }
            others.push(v);
        }
    }

    /// Joins `room` and returns the reply (asserting nothing).
    pub async fn join(&mut self, room: &str, meta: Value) -> Value {
        self.request(json!({"op": "join", "room": room, "meta": meta}))
            .await
            .0
    }

    /// Joins `room` and asserts success.
    pub async fn join_ok(&mut self, room: &str) -> Value {
        let r = self.join(room, json!({})).await;
        assert_eq!(r["ok"], true, "join {room}: {r}");
        r
    }

    /// Publishes `data` to `room` with an id and returns the reply.
    pub async fn publish(&mut self, room: &str, data: Value) -> Value {
        self.request(json!({"op": "publish", "room": room, "data": data}))
            .await
            .0
    }

    /// Waits for the server's close frame and returns its code.
    pub async fn expect_close(&mut self) -> u16 {
        loop {
            let msg = tokio::time::timeout(RECV_TIMEOUT, self.ws.next())
                .await
                .expect("timed out waiting for close");
            match msg {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(Message::Close(None))) => return 1005,
                Some(Ok(_)) => continue,
                other => panic!("connection ended without a close frame: {other:?}"),
            }
        }
    }

    /// Closes normally.
    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            }))
            .await;
        // Drain until the server's close arrives.
        while let Ok(Some(Ok(_))) = tokio::time::timeout(RECV_TIMEOUT, self.ws.next()).await {}
    }
}
