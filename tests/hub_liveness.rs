//! The liveness sweep on a real clock, over real sockets: a peer that stops answering
//! is closed and leaves its rooms within `ping_interval + pong_timeout`, while live
//! peers (which answer pings, or keep sending) are left alone.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::hub::{ChatMessage, Client, serve, test_hub_builder};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use wshub::Hub;

const INTERVAL: Duration = Duration::from_millis(200);
const TIMEOUT: Duration = Duration::from_millis(500);
/// Scheduling slack on a loaded CI machine (debug build, tests in parallel).
const MARGIN: Duration = Duration::from_millis(700);

fn fast_hub() -> Hub {
    test_hub_builder()
        .configure(|c| {
            c.ping_interval = INTERVAL;
            c.pong_timeout = TIMEOUT;
        })
        .build()
}

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("ws://")
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

/// A peer on a bare TCP socket: it does the opening handshake by hand, can send masked
/// text frames, and otherwise never reads, so it never answers a ping.
struct DeadPeer {
    tcp: TcpStream,
    /// Bytes read past the 101 response head.
    buf: Vec<u8>,
}

impl DeadPeer {
    async fn connect(addr: SocketAddr) -> DeadPeer {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let request = format!(
            "GET / HTTP/1.1\r\n\
             Host: {addr}\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: wshub.v1\r\n\
             \r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0; 1024];
            let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut chunk))
                .await
                .expect("timed out reading the 101")
                .unwrap();
            assert!(n > 0, "EOF during the handshake: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        // RFC 6455 §1.3's example key and its accept value.
        assert!(
            head.to_ascii_lowercase()
                .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
            "{head}"
        );
        buf.drain(..head_end);
        DeadPeer { tcp, buf }
    }

    /// Sends one masked, final text frame.
    async fn send_json(&mut self, v: Value) {
        let payload = v.to_string().into_bytes();
        assert!(payload.len() < 126, "keep it short: one-byte length");
        let key: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
        let mut frame = vec![0x81, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        self.tcp.write_all(&frame).await.unwrap();
    }

    /// Reads every frame the server sent until its close frame; returns the opcodes seen
    /// and the close code. Only for after the peer has been given up on.
    async fn read_until_close(&mut self) -> (Vec<u8>, u16) {
        let mut opcodes = Vec::new();
        loop {
            // Parse what is buffered: server frames are unmasked, and these are small
            // (no 64-bit lengths).
            while self.buf.len() >= 2 {
                let op = self.buf[0] & 0x0f;
                assert_eq!(self.buf[1] & 0x80, 0, "server frames are unmasked");
                let (len, hlen) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    126 => break,
                    127 => panic!("unexpectedly large frame"),
                    n => (n as usize, 2),
                };
                if self.buf.len() < hlen + len {
                    break;
                }
                let payload: Vec<u8> = self.buf.drain(..hlen + len).skip(hlen).collect();
                opcodes.push(op);
                if op == 0x8 {
                    assert!(payload.len() >= 2, "close frame without a code");
                    return (opcodes, u16::from_be_bytes([payload[0], payload[1]]));
                }
            }
            let mut chunk = [0; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), self.tcp.read(&mut chunk))
                .await
                .expect("timed out reading the server's frames")
                .unwrap();
            assert!(n > 0, "EOF before a close frame; saw opcodes {opcodes:?}");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The next text message or, with nothing but pings and pongs, `None` at `deadline`.
///
/// Not `Client::recv`/`recv_nothing`: they restart their timeout on every ping, and
/// with pings every 200 ms they would wait forever.
async fn next_text_until(c: &mut Client, deadline: Instant) -> Option<Value> {
    loop {
        match tokio::time::timeout_at(deadline, c.ws.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
}

/// The next text message, within 5 s.
async fn recv(c: &mut Client) -> Value {
    next_text_until(c, Instant::now() + Duration::from_secs(5))
        .await
        .expect("timed out waiting for a message")
}

/// Reads the diff announcing `c`'s own join (sent on the hub's next presence tick), so
/// later reads see only what follows.
async fn settle(c: &mut Client) {
    let diff = recv(c).await;
    assert_eq!(diff["op"], "presence_diff", "{diff}");
    assert!(diff["joins"].get(&c.user).is_some(), "{diff}");
}

/// Keeps `c` reading (so tungstenite answers pings) for `d`, asserting nothing but
/// pings arrives.
async fn stay_alive(c: &mut Client, d: Duration) {
    if let Some(v) = next_text_until(c, Instant::now() + d).await {
        panic!("expected nothing, got {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_reaped_and_leaves_its_rooms() {
    let hub = fast_hub();
    let url = serve(&hub).await;
    let mut bob = Client::connect(&url).await;
    let r = bob.join("chat:x", json!({})).await;
    assert_eq!(r["ok"], true, "{r}");
    settle(&mut bob).await;
    // A second live client in the same hub, in another room.
    let mut carol = Client::connect(&url).await;
    carol.join_ok("chat:y").await;
    settle(&mut carol).await;

    let mut dead = DeadPeer::connect(addr_of(&url)).await;
    dead.send_json(json!({"op": "join", "room": "chat:x", "id": 1, "meta": {"dead": true}}))
        .await;
    // The server read the dead peer's last frame just before bob hears of its join.
    let diff = recv(&mut bob).await;
    let joined_at = Instant::now();
    assert_eq!(diff["op"], "presence_diff", "{diff}");
    let joins = diff["joins"].as_object().unwrap();
    assert_eq!(joins.len(), 1, "{diff}");
    let (dead_user, metas) = joins.iter().next().unwrap();
    assert_eq!(metas["metas"][0]["meta"], json!({"dead": true}));
    let dead_user = dead_user.clone();
    assert_eq!(hub.stats().connections, 3);

    // Bob and carol keep reading (answering pings) while the dead peer goes silent.
    let bob_waits = async {
        let diff = recv(&mut bob).await;
        (diff, joined_at.elapsed())
    };
    let ((diff, waited), ()) = tokio::join!(bob_waits, stay_alive(&mut carol, TIMEOUT + INTERVAL));
    assert_eq!(diff["op"], "presence_diff", "{diff}");
    assert_eq!(diff["joins"], json!({}), "{diff}");
    assert_eq!(
        diff["leaves"][&dead_user]["metas"][0]["meta"],
        json!({"dead": true}),
        "{diff}"
    );
    assert!(
        waited <= INTERVAL + TIMEOUT + MARGIN,
        "reaped after {waited:?}, more than interval + timeout"
    );
    // Not before the timeout (less a little: `joined_at` is a bit after the server read
    // the join).
    assert!(
        waited >= TIMEOUT - Duration::from_millis(100),
        "reaped after only {waited:?}"
    );
    assert_eq!(hub.stats().reaped, 1);
    let room = hub.room::<ChatMessage>("chat:x").unwrap();
    assert!(!room.presence().contains(&dead_user));
    assert_eq!(room.member_count(), 1);

    // The dead peer was pinged, then told why it was closed (1001), all in its socket
    // buffer which it never read.
    let (opcodes, code) = dead.read_until_close().await;
    assert!(opcodes.contains(&0x9), "never pinged: {opcodes:?}");
    assert_eq!(code, 1001);

    // Several intervals later the live clients are still there.
    tokio::join!(
        stay_alive(&mut bob, 4 * INTERVAL + TIMEOUT),
        stay_alive(&mut carol, 4 * INTERVAL + TIMEOUT)
    );
    assert_eq!(hub.stats().reaped, 1);
    assert_eq!(hub.stats().connections, 2);
    let reply = bob.publish("chat:x", json!({"text": "still here"})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["data"]["delivered"], 1, "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_answers_pings_is_never_reaped() {
    let hub = fast_hub();
    let url = serve(&hub).await;
    let mut a = Client::connect(&url).await;
    a.join_ok("chat:x").await;
    settle(&mut a).await;
    // Idle, only answering pings, for ten intervals (four timeouts).
    let mut pings = 0;
    let until = Instant::now() + 10 * INTERVAL;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match tokio::time::timeout(left, a.ws.next()).await {
            Err(_) => break,
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(pings >= 5, "pinged only {pings} times in 10 intervals");
    assert_eq!(hub.stats().reaped, 0);
    let (r, _) = a.request(json!({"op": "presence", "room": "chat:x"})).await;
    assert_eq!(r["ok"], true, "{r}");
    assert!(r["data"]["presence"].get(&a.user).is_some(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_frame_counts_as_a_sign_of_life() {
    let hub = fast_hub();
    let url = serve(&hub).await;
    let mut bob = Client::connect(&url).await;
    bob.join_ok("chat:x").await;
    settle(&mut bob).await;
    // Never reads, so never answers a ping, but keeps sending.
    let mut chatty = DeadPeer::connect(addr_of(&url)).await;
    chatty
        .send_json(json!({"op": "join", "room": "chat:x", "id": 1}))
        .await;
    assert_eq!(recv(&mut bob).await["op"], "presence_diff");
    let until = Instant::now() + 3 * TIMEOUT;
    let mut n = 0;
    while Instant::now() < until {
        n += 1;
        chatty
            .send_json(json!({"op": "presence", "room": "chat:x", "id": 1 + n}))
            .await;
        stay_alive(&mut bob, INTERVAL / 2).await;
    }
    assert_eq!(hub.stats().reaped, 0);
    // Once it stops, it goes.
    let started = Instant::now();
    let diff = recv(&mut bob).await;
    assert_eq!(diff["op"], "presence_diff", "{diff}");
    assert_eq!(diff["leaves"].as_object().unwrap().len(), 1, "{diff}");
    assert!(started.elapsed() <= INTERVAL + TIMEOUT + MARGIN);
    assert_eq!(hub.stats().reaped, 1);
}
