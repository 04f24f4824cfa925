//! Clients over in-memory pipes (`tokio::io::duplex`) served by `Hub::serve_stream`,
//! with any peer address the test names. No sockets: a test can run on tokio's paused
//! clock deterministically (time moves only when every task waits on a timer), and can
//! open connections "from" many hosts without binding addresses.
//!
//! The client side is tokio-tungstenite's, as for the socket tests.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::DuplexStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wshub::Hub;

/// A `wshub.v1` client over an in-memory pipe.
pub struct MemClient {
    pub ws: WebSocketStream<DuplexStream>,
    pub user: String,
    pub conn_id: String,
    next_id: u64,
}

/// What one `recv` returned.
#[derive(Debug)]
pub enum Incoming {
    /// A JSON text message and its size in bytes on the wire (payload).
    Json(Value, usize),
    /// The server's close frame (code, reason).
    Close(u16, String),
    /// The pipe ended.
    End,
}

impl MemClient {
    /// Connects to `hub` "from" `peer` through a pipe of `capacity` bytes each way
    /// (a small capacity makes a slow reader), with an optional bearer token.
    pub async fn connect(
        hub: &Hub,
        peer: SocketAddr,
        token: Option<&str>,
        capacity: usize,
    ) -> MemClient {
        let (server, client) = tokio::io::duplex(capacity);
        let h = hub.clone();
        tokio::spawn(async move { h.serve_stream(server, Some(peer)).await });
        let mut req = "ws://hub.test/".into_client_request().unwrap();
        req.headers_mut()
            .insert("sec-websocket-protocol", "wshub.v1".parse().unwrap());
        if let Some(token) = token {
            req.headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        let (ws, _) = tokio_tungstenite::client_async(req, client)
            .await
            .expect("in-memory handshake");
        let mut c = MemClient {
            ws,
            user: String::new(),
            conn_id: String::new(),
            next_id: 1,
        };
        let Incoming::Json(welcome, _) = c.recv().await else {
            panic!("no welcome")
        };
        assert_eq!(welcome["op"], "welcome", "{welcome}");
        c.user = welcome["user"].as_str().unwrap().to_owned();
        c.conn_id = welcome["conn_id"].as_str().unwrap().to_owned();
        c
    }

    /// Sends one JSON value.
    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    /// A fresh request id.
    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The next message (pings are answered by tungstenite and skipped).
    pub async fn recv(&mut self) -> Incoming {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let len = t.len();
                    return Incoming::Json(serde_json::from_str(&t).unwrap(), len);
                }
                Some(Ok(Message::Close(Some(f)))) => {
                    return Incoming::Close(u16::from(f.code), f.reason.to_string());
                }
                Some(Ok(Message::Close(None))) => return Incoming::Close(1005, String::new()),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Incoming::End,
            }
        }
    }

    /// Sends `op` with a fresh id and returns its reply (other messages are dropped).
    pub async fn request(&mut self, mut op: Value) -> Value {
        let id = self.next_id();
        op["id"] = json!(id);
        self.send(op).await;
        loop {
            match self.recv().await {
                Incoming::Json(v, _) if v["op"] == "reply" && v["id"] == json!(id) => return v,
                Incoming::Json(..) => continue,
                other => panic!("no reply to {id}: {other:?}"),
            }
        }
    }
}

impl MemClient {
    /// Sends `op` with a fresh id and returns its reply and the messages that came
    /// before it, in order.
    pub async fn request_all(&mut self, mut op: Value) -> (Value, Vec<Value>) {
        let id = self.next_id();
        op["id"] = json!(id);
        self.send(op).await;
        let mut before = Vec::new();
        loop {
            match self.recv().await {
                Incoming::Json(v, _) if v["op"] == "reply" && v["id"] == json!(id) => {
                    return (v, before);
                }
                Incoming::Json(v, _) => before.push(v),
                other => panic!("no reply to {id}: {other:?}"),
            }
        }
    }

    /// Every message that arrives within `wait`, with its size on the wire and when it
    /// arrived. On tokio's paused clock this is exact: the clock only moves when every
    /// task waits.
    pub async fn drain(
        &mut self,
        wait: std::time::Duration,
    ) -> Vec<(Value, usize, tokio::time::Instant)> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut got = Vec::new();
        while let Ok(incoming) = tokio::time::timeout_at(deadline, self.recv()).await {
            match incoming {
                Incoming::Json(v, len) => got.push((v, len, tokio::time::Instant::now())),
                other => panic!("connection ended while draining: {other:?}"),
            }
        }
        got
    }

    /// [`drain`](Self::drain), the messages only.
    pub async fn drain_json(&mut self, wait: std::time::Duration) -> Vec<Value> {
        self.drain(wait)
            .await
            .into_iter()
            .map(|(v, ..)| v)
            .collect()
    }
}

/// `127.0.0.1:port`-style peer addresses for tests, from any IP.
pub fn peer(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}
