//! A slow consumer: one member of a room stops reading while the server keeps
//! publishing. Its bounded outbound queue fills, it is closed with 1013 and counted,
//! its presence leave reaches the others, the publisher never waits, and the fast
//! members get every message in order.
//!
//! The slow member is a raw TCP client (handshake written by hand) that simply never
//! reads until the end, with a small receive buffer so the kernel absorbs little. The
//! fast members are tokio-tungstenite clients read by their own tasks.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::hub::{ChatMessage, Client, RECV_TIMEOUT, serve, test_hub_builder};
use common::raw::{OP_CLOSE, OP_TEXT, close_frame, frame, upgrade_request};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const ROOM: &str = "chat:firehose";
/// The outbound queue limit of this test's hub.
const MAX_QUEUED: usize = 64 * 1024;
/// Most messages a fast reader may be behind the publisher (about 35 KiB, well under
/// `MAX_QUEUED`), so only the stalled reader can overflow.
const WINDOW: usize = 32;
/// Messages published after the overflow was detected.
const AFTER_OVERFLOW: usize = 200;
/// Give up if the stalled reader's queue never overflows.
const MAX_MESSAGES: usize = 20_000;

fn message(i: usize) -> ChatMessage {
    // About 1 KiB on the wire.
    ChatMessage {
        text: format!("m{i:06} {}", "x".repeat(1000)),
    }
}

/// The sequence number of a message text from [`message`].
fn seq(text: &str) -> usize {
    text[1..7].parse().unwrap()
}

/// A WebSocket client that does the handshake by hand and then reads nothing until told.
struct StalledClient {
    stream: TcpStream,
    /// Bytes read but not yet parsed (whatever came with the 101 response).
    buf: Vec<u8>,
}

impl StalledClient {
    async fn connect(addr: SocketAddr) -> StalledClient {
        let socket = TcpSocket::new_v4().unwrap();
        // A small receive buffer (set before connecting, so autotuning is off): the
        // kernel holds only a few KiB that the client does not read.
        socket.set_recv_buffer_size(8 * 1024).unwrap();
        let mut stream = socket.connect(addr).await.unwrap();
        stream
            .write_all(upgrade_request(addr, "Sec-WebSocket-Protocol: wshub.v1").as_bytes())
            .await
            .unwrap();
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(RECV_TIMEOUT, stream.read(&mut chunk))
                .await
                .expect("timed out waiting for the 101")
                .unwrap();
            assert!(n > 0, "connection closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        buf.drain(..head_end);
        StalledClient { stream, buf }
    }

    async fn send_text(&mut self, text: &str) {
        let f = frame(true, 0, OP_TEXT, text.as_bytes(), true);
        self.stream.write_all(&f).await.unwrap();
    }

    /// Reads (at last) everything the server sent up to and including its close frame:
    /// the JSON texts and the close frame's code and reason.
    async fn read_to_close(&mut self) -> (Vec<Value>, u16, String) {
        let mut texts = Vec::new();
        let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
        loop {
            while let Some((opcode, payload)) = parse_frame(&mut self.buf) {
                match opcode {
                    OP_TEXT => texts.push(serde_json::from_slice(&payload).unwrap()),
                    OP_CLOSE => {
                        assert!(payload.len() >= 2, "close frame without a code");
                        let code = u16::from_be_bytes([payload[0], payload[1]]);
                        let reason = String::from_utf8(payload[2..].to_vec()).unwrap();
                        return (texts, code, reason);
                    }
                    op => panic!("unexpected opcode {op:#x} from the server"),
                }
            }
            let mut chunk = vec![0u8; 64 * 1024];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .expect("timed out reading the stalled client's backlog")
                .expect("read error before the close frame");
            assert!(
                n > 0,
                "EOF before a close frame, after {} messages",
                texts.len()
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Answers the close and asserts the server then ends the TCP connection.
    async fn finish_close(&mut self) {
        self.stream
            .write_all(&close_frame(1013, b""))
            .await
            .unwrap();
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(RECV_TIMEOUT, self.stream.read(&mut chunk))
            .await
            .expect("the server did not end the connection after the close")
            .unwrap_or(0);
        assert_eq!(n, 0, "data after the close frame");
    }
}

/// Takes one complete unmasked frame `(opcode, payload)` off the front of `buf`.
fn parse_frame(buf: &mut Vec<u8>) -> Option<(u8, Vec<u8>)> {
    if buf.len() < 2 {
        return None;
    }
    assert_eq!(buf[0] & 0xF0, 0x80, "fragmented or compressed frame");
    assert_eq!(buf[1] & 0x80, 0, "masked frame from the server");
    let (len, start) = match buf[1] & 0x7F {
        126 if buf.len() >= 4 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (usize::from(n), 2),
    };
    if buf.len() < start + len {
        return None;
    }
    let opcode = buf[0] & 0x0F;
    let payload = buf[start..start + len].to_vec();
    buf.drain(..start + len);
    Some((opcode, payload))
}

/// What one fast reader saw.
#[derive(Debug, Default)]
struct Seen {
    /// Texts of the `message`s, in arrival order (the final "end" excluded).
    messages: Vec<String>,
    /// Users announced as leaving.
    leaves: BTreeSet<String>,
    /// Why reading stopped early, if it did.
    error: Option<String>,
}

/// Reads `c` until the "end" message and the leave of `slow_user` have both arrived,
/// counting messages in `count` as they come. Gives the client back (still connected).
fn spawn_reader(
    mut c: Client,
    slow_user: String,
    count: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<(Seen, Client)> {
    tokio::spawn(async move {
        c.watch_presence = true;
        let mut seen = Seen::default();
        let mut ended = false;
        while !(ended && seen.leaves.contains(&slow_user)) {
            let v = match c.recv_nothing(RECV_TIMEOUT * 2).await {
                Some(v) => v,
                None => {
                    seen.error = Some(format!(
                        "nothing arrived for {:?} (ended: {ended})",
                        RECV_TIMEOUT * 2
                    ));
                    break;
                }
            };
            match v["op"].as_str() {
                Some("message") => {
                    let text = v["data"]["text"].as_str().unwrap().to_owned();
                    if text == "end" {
                        ended = true;
                    } else {
                        seen.messages.push(text);
                        count.fetch_add(1, Ordering::Release);
                    }
                }
                Some("presence_diff") => {
                    let leaves = v["leaves"].as_object().unwrap();
                    seen.leaves.extend(leaves.keys().cloned());
                }
                _ => {
                    seen.error = Some(format!("unexpected message {v}"));
                    break;
                }
            }
        }
        (seen, c)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_reader_is_closed_with_1013_and_the_others_get_everything() {
    let hub = test_hub_builder()
        .configure(|c| c.ws.max_queued_bytes = MAX_QUEUED)
        .build();
    let url = serve(&hub).await;
    let addr: SocketAddr = url
        .trim_start_matches("ws://")
        .trim_end_matches('/')
        .parse()
        .unwrap();

    // Three fast members, then the one that will stall.
    let mut fast = Vec::new();
    for _ in 0..3 {
        let mut c = Client::connect(&url).await;
        c.join_ok(ROOM).await;
        fast.push(c);
    }
    let mut slow = StalledClient::connect(addr).await;
    slow.send_text(&json!({"op": "join", "room": ROOM, "id": 1}).to_string())
        .await;
    // Every fast member sees the stalled one arrive: that is its user id.
    // (Diffs of the fast members' own joins may come first, on earlier ticks.)
    let fast_users: Vec<String> = fast.iter().map(|c| c.user.clone()).collect();
    let mut slow_user = None;
    for c in &mut fast {
        let joined = loop {
            let diff = c.recv_diff().await;
            let joined: Vec<_> = diff["joins"]
                .as_object()
                .unwrap()
                .keys()
                .filter(|u| !fast_users.contains(u))
                .cloned()
                .collect();
            if !joined.is_empty() {
                break joined;
            }
        };
        assert_eq!(joined.len(), 1, "{joined:?}");
        assert!(slow_user.is_none() || slow_user.as_ref() == Some(&joined[0]));
        slow_user = Some(joined[0].clone());
    }
    let slow_user = slow_user.unwrap();
    let lobby = hub.room::<ChatMessage>(ROOM).unwrap();
    assert_eq!(lobby.member_count(), 4);

    let counts: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let readers: Vec<_> = fast
        .into_iter()
        .zip(&counts)
        .map(|(c, n)| spawn_reader(c, slow_user.clone(), n.clone()))
        .collect();

    // Publish from the server, keeping the fast readers within WINDOW messages (they
    // are never slow consumers), until the stalled one overflows, then some more.
    let mut published = 0;
    let mut overflow_at = None;
    let mut longest_publish = Duration::ZERO;
    let mut publishing = Duration::ZERO;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        while counts
            .iter()
            .any(|n| n.load(Ordering::Acquire) + WINDOW <= published)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "fast readers stopped keeping up (at {published} messages)"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let t = Instant::now();
        let delivered = lobby.publish(message(published)).await.unwrap().delivered;
        let took = t.elapsed();
        longest_publish = longest_publish.max(took);
        publishing += took;
        published += 1;
        match overflow_at {
            None => {
                if hub.stats().slow_consumers > 0 {
                    // This publish found the queue full: queued for the fast ones only.
                    assert_eq!(delivered, 3, "publish #{published}");
                    overflow_at = Some(published);
                } else {
                    assert_eq!(delivered, 4, "publish #{published}");
                }
            }
            Some(at) => {
                assert_eq!(
                    delivered, 3,
                    "the slow consumer still got publish #{published}"
                );
                if published >= at + AFTER_OVERFLOW {
                    break;
                }
            }
        }
        assert!(
            published < MAX_MESSAGES,
            "the stalled reader's queue never overflowed"
        );
    }
    lobby
        .publish(ChatMessage { text: "end".into() })
        .await
        .unwrap();
    let overflow_at = overflow_at.unwrap();
    eprintln!(
        "overflow at message {overflow_at} (~{} KiB buffered for the stalled reader); \
         {published} publishes took {publishing:?} in all, the longest {longest_publish:?}",
        overflow_at * 1030 / 1024
    );
    // Publishing never waited for the stalled reader: it read nothing until now. (A
    // publish that blocked on it would never have returned.)
    assert!(
        longest_publish < Duration::from_secs(1),
        "a publish took {longest_publish:?}"
    );

    // The fast members got every message, in order, and saw the slow one leave.
    let expected: Vec<String> = (0..published).map(|i| message(i).text).collect();
    let mut fast = Vec::new();
    for (i, r) in readers.into_iter().enumerate() {
        let (seen, c) = r.await.unwrap();
        fast.push(c);
        assert_eq!(seen.error, None, "fast reader {i}");
        assert_eq!(seen.messages.len(), published, "fast reader {i}");
        assert!(seen.messages == expected, "fast reader {i}: wrong order");
        assert_eq!(
            seen.leaves,
            BTreeSet::from([slow_user.clone()]),
            "fast reader {i}: leaves"
        );
    }

    // Only the stalled reader was a slow consumer, and it is gone from the room.
    assert_eq!(hub.stats().slow_consumers, 1);
    assert_eq!(lobby.member_count(), 3);
    assert!(!lobby.presence().contains(&slow_user));

    // Now the stalled reader reads: what the kernel held and what was still queued,
    // then the 1013 close.
    let (texts, code, reason) = slow.read_to_close().await;
    assert_eq!(code, 1013, "reason {reason:?}");
    assert_eq!(reason, "slow consumer");
    assert_eq!(texts[0]["op"], "welcome", "{}", texts[0]);
    assert_eq!(texts[0]["user"], json!(slow_user));
    let got: Vec<usize> = texts
        .iter()
        .filter(|v| v["op"] == "message")
        .map(|v| seq(v["data"]["text"].as_str().unwrap()))
        .collect();
    // It got every message queued before the overflow, in order, and none after: the
    // 1013 goes out behind its queue (read within the close timeout), and publish
    // number `overflow_at` was the one refused.
    assert!(
        got.iter().copied().eq(0..overflow_at - 1),
        "stalled reader got {} messages, overflow at publish #{overflow_at}: {got:?}",
        got.len()
    );
    eprintln!(
        "the stalled reader found {} messages before its close frame",
        got.len()
    );
    slow.finish_close().await;

    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    while hub.stats().connections != 3 {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", hub.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The fast members are still connected and served.
    let reply = fast[0].publish(ROOM, json!({"text": "still here"})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["data"]["delivered"], 3, "{reply}");
    for c in &mut fast[1..] {
        assert_eq!(c.recv().await["data"]["text"], "still here");
    }
}
