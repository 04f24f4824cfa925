//! Policy closes keep what is already queued: a client closed with 1008 (flooding, an
//! expired token), 1009 / 1007 / 1002 (the engine's own error closes) or 1013 (slow
//! consumer) first gets every reply and message queued for it before the close, then
//! the close frame, and nothing it sends after the decision is acted on. A peer that
//! never reads cannot keep a closing connection longer than the close timeout.
//!
//! The clients are raw sockets ([`common::raw`]) so that a test can send 200 frames in
//! one write, send a frame the server must refuse right behind good ones, or stop
//! reading with a small receive buffer.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use common::hub::{ChatMessage, serve, test_hub_builder};
use common::raw::{
    OP_CLOSE, OP_PING, OP_TEXT, RawClient, close_frame, frame, frame_header, upgrade_request,
};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;
use tokio::time::Instant;
use wshub::auth::StaticTokens;
use wshub::{Hub, Identity};

/// The engine's close timeout (`WsConfig::close_timeout`, which the hub leaves at its
/// default).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a test waits for a server-side event (a counter, a room's members).
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
const SUBPROTOCOL: &str = "Sec-WebSocket-Protocol: wshub.v1";

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("ws://")
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

/// Connects a raw `wshub.v1` client and reads its welcome.
async fn connect(addr: SocketAddr, extra_headers: &str) -> RawClient {
    let headers = format!("{SUBPROTOCOL}\r\n{extra_headers}");
    let mut c = RawClient::connect(addr, &headers).await;
    assert_eq!(next_json(&mut c).await["op"], "welcome");
    c
}

/// Connects a client whose socket has an 8 KiB receive buffer (set before connecting,
/// so the kernel does not grow it), so that when it stops reading the server's writes
/// soon block and what follows stays in the server's outbound queue. Reads the welcome.
async fn connect_stalling(addr: SocketAddr, extra_headers: &str) -> RawClient {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(8 * 1024).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let headers = format!("{SUBPROTOCOL}\r\n{extra_headers}");
    stream
        .write_all(upgrade_request(addr, &headers).as_bytes())
        .await
        .unwrap();
    let mut c = RawClient::finish_handshake(stream).await;
    assert_eq!(next_json(&mut c).await["op"], "welcome");
    c
}

/// The next JSON text message (skipping pings from the liveness sweep).
async fn next_json(c: &mut RawClient) -> Value {
    loop {
        let f = c.read_full_frame().await;
        match f.opcode {
            OP_TEXT => return serde_json::from_slice(&f.payload).unwrap(),
            OP_PING => continue,
            op => panic!(
                "expected a text message, got opcode {op:#x} {:?}",
                String::from_utf8_lossy(&f.payload)
            ),
        }
    }
}

/// Asserts the next frame (pings skipped) is a close with `code` and `reason`, answers
/// it, and asserts the server then ends the TCP connection.
async fn expect_close_then_eof(c: &mut RawClient, code: u16, reason: &str) {
    let f = loop {
        let f = c.read_full_frame().await;
        if f.opcode != OP_PING {
            break f;
        }
    };
    assert_eq!(
        f.opcode,
        OP_CLOSE,
        "expected close {code}, got opcode {:#x} {:?}",
        f.opcode,
        String::from_utf8_lossy(&f.payload)
    );
    let got = u16::from_be_bytes([f.payload[0], f.payload[1]]);
    let got_reason = String::from_utf8_lossy(&f.payload[2..]).into_owned();
    assert_eq!((got, got_reason.as_str()), (code, reason));
    c.send_raw(&close_frame(code, b"")).await;
    c.expect_eof().await;
}

/// Asserts the next message answers a join (id 1): the ok reply. (The presence diff
/// announcing the joiner follows on the hub's next presence tick.)
async fn expect_join_answer(c: &mut RawClient, _room: &str) {
    assert_ok_reply(&next_json(c).await, 1);
}

/// Joins `room` with id 1 and reads the answer, then the presence diff announcing the
/// join (on the next presence tick), so that later reads see only what follows.
async fn join(c: &mut RawClient, room: &str) {
    c.send_raw(&text_frame(&json!({"op": "join", "room": room, "id": 1})))
        .await;
    expect_join_answer(c, room).await;
    let diff = next_json(c).await;
    assert_eq!(
        (&diff["op"], &diff["room"]),
        (&json!("presence_diff"), &json!(room)),
        "{diff}"
    );
}

/// A masked text frame carrying `v`.
fn text_frame(v: &Value) -> Vec<u8> {
    frame(true, 0, OP_TEXT, v.to_string().as_bytes(), true)
}

#[track_caller]
fn assert_ok_reply(v: &Value, id: u64) {
    assert_eq!(
        (&v["op"], &v["id"], &v["ok"]),
        (&json!("reply"), &json!(id), &json!(true)),
        "{v}"
    );
}

#[track_caller]
fn assert_message(v: &Value, room: &str, text: &str) {
    assert_eq!(
        (&v["op"], &v["room"]),
        (&json!("message"), &json!(room)),
        "{v}"
    );
    assert_eq!(v["data"]["text"], text, "{v}");
}

/// Waits (polling, bounded) until `cond` holds: for server-side effects that have no
/// message of their own.
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The scenario: exactly 200 frames in one write, default limits (burst 100,
/// flood limit 100). The first 100 ops are accepted and answered; the next 99 are
/// refused with `rate_limited`; the 100th refusal in a row is the flood decision: close
/// 1008. All of it arrives, in that order; the 200th frame and anything after it get
/// nothing, and none of it reaches the room.
#[tokio::test]
async fn a_flood_of_200_frames_gets_its_replies_then_rate_limited_then_1008() {
    const ROOM: &str = "chat:flood";
    let hub = test_hub_builder().build();
    let addr = addr_of(&serve(&hub).await);
    let mut watcher = connect(addr, "").await;
    join(&mut watcher, ROOM).await;
    let mut flooder = connect(addr, "").await;

    let mut burst = text_frame(&json!({"op": "join", "room": ROOM, "id": 1}));
    for id in 2..=200u64 {
        let op =
            json!({"op": "publish", "room": ROOM, "data": {"text": format!("m{id}")}, "id": id});
        burst.extend(text_frame(&op));
    }
    // The token bucket refills with tokio's clock: stopped here, the count of accepted
    // ops is exactly the burst however slowly this machine works through the frames.
    // (Everything that remains is loopback I/O, which completes within the syscalls.)
    tokio::time::pause();
    flooder.send_raw(&burst).await;

    // 1 join and 99 publishes accepted: each publish comes back as a message, then its
    // reply (delivered to the watcher and to the flooder itself).
    expect_join_answer(&mut flooder, ROOM).await;
    for id in 2..=100u64 {
        assert_message(&next_json(&mut flooder).await, ROOM, &format!("m{id}"));
        let reply = next_json(&mut flooder).await;
        assert_ok_reply(&reply, id);
        assert_eq!(reply["data"]["delivered"], 2, "{reply}");
    }
    // Strikes 1 to 99 are answered with their ids; strike 100 (frame 200) closes.
    for id in 101..=199u64 {
        let v = next_json(&mut flooder).await;
        assert_eq!(
            (&v["op"], &v["id"], &v["ok"], &v["error"]["code"]),
            (
                &json!("reply"),
                &json!(id),
                &json!(false),
                &json!("rate_limited")
            ),
            "{v}"
        );
    }
    // Input after the decision is ignored: this publish gets no reply (the next frame
    // is the close) and reaches no one.
    flooder
        .send_raw(&text_frame(
            &json!({"op": "publish", "room": ROOM, "data": {"text": "after"}, "id": 201}),
        ))
        .await;
    expect_close_then_eof(&mut flooder, 1008, "flooding").await;

    // The room saw the flooder's 99 accepted messages, in order, and nothing else it
    // sent. Presence comes on the hub's tick: the flooder's join and leave were both
    // announced (a tick passed between them) or neither was (one tick held both).
    hub.room::<ChatMessage>(ROOM)
        .unwrap()
        .publish(ChatMessage {
            text: "calm".into(),
        })
        .await
        .unwrap();
    let mut texts = Vec::new();
    let mut presence = Vec::new();
    loop {
        let v = next_json(&mut watcher).await;
        match v["op"].as_str() {
            Some("message") if v["data"]["text"] == "calm" => break,
            Some("message") => texts.push(v["data"]["text"].as_str().unwrap().to_owned()),
            Some("presence_diff") => {
                for (kind, key) in [("join", "joins"), ("leave", "leaves")] {
                    presence.extend(v[key].as_object().unwrap().keys().map(|_| kind));
                }
            }
            _ => panic!("unexpected {v}"),
        }
    }
    let expected: Vec<String> = (2..=100u64).map(|id| format!("m{id}")).collect();
    assert_eq!(texts, expected);
    assert!(
        presence.is_empty() || presence == ["join", "leave"],
        "{presence:?}"
    );
}

/// The engine's own error closes come after the replies already queued: good ops and
/// then, in the same write, a frame the engine must refuse (too big: 1009; invalid
/// UTF-8: 1007; unmasked: 1002). The refusal is found before anything was written, so
/// the replies arrive only because the close keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_closes_come_after_the_replies_already_queued() {
    let hub = test_hub_builder().build();
    let addr = addr_of(&serve(&hub).await);
    // A header announcing 2 MiB, over the 1 MiB default `ws.max_message_size`.
    let too_big = frame_header(true, 0, OP_TEXT, 2 << 20, Some([1, 2, 3, 4]));
    let bad_utf8 = frame(true, 0, OP_TEXT, b"{\"op\":\"\xff\"}", true);
    let unmasked = text_frame(&json!({"op": "presence", "room": "chat:e"}))
        .into_iter()
        .enumerate()
        // Clear the MASK bit and drop the key: keep the payload masked garbage, which
        // the server never gets to read.
        .filter_map(|(i, b)| match i {
            1 => Some(b & 0x7F),
            2..=5 => None,
            _ => Some(b),
        })
        .collect::<Vec<u8>>();
    for (bad, code) in [(too_big, 1009u16), (bad_utf8, 1007), (unmasked, 1002)] {
        let room = format!("chat:err{code}");
        let mut c = connect(addr, "").await;
        let mut bytes = text_frame(&json!({"op": "join", "room": room, "id": 1}));
        for id in 2..=4u64 {
            let op = json!({"op": "publish", "room": room, "data": {"text": format!("m{id}")}, "id": id});
            bytes.extend(text_frame(&op));
        }
        bytes.extend(bad);
        c.send_raw(&bytes).await;
        expect_join_answer(&mut c, &room).await;
        for id in 2..=4u64 {
            assert_message(&next_json(&mut c).await, &room, &format!("m{id}"));
            assert_ok_reply(&next_json(&mut c).await, id);
        }
        // Then the close with the error's code; the server shuts its side at once.
        let f = c.read_full_frame().await;
        assert_eq!(f.opcode, OP_CLOSE, "{code}: {f:?}");
        let got = u16::from_be_bytes([f.payload[0], f.payload[1]]);
        assert_eq!(
            got,
            code,
            "reason {:?}",
            String::from_utf8_lossy(&f.payload[2..])
        );
        c.expect_eof().await;
    }
}

/// A slow consumer (1013) leaves its rooms at once but still gets, once it reads
/// again, every message queued for it before the overflow, in order, then the close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_that_reads_again_gets_its_queue_then_1013() {
    const ROOM: &str = "chat:slow";
    const MAX_QUEUED: usize = 64 * 1024;
    let hub = test_hub_builder()
        .configure(|c| c.ws.max_queued_bytes = MAX_QUEUED)
        .build();
    let addr = addr_of(&serve(&hub).await);
    let mut slow = connect_stalling(addr, "").await;
    join(&mut slow, ROOM).await;

    // `slow` reads nothing now. Publish 4 KiB messages until its queue overflows.
    let room = hub.room::<ChatMessage>(ROOM).unwrap();
    let text = |i: usize| format!("{i:05} {}", "x".repeat(4096));
    let mut queued = 0;
    loop {
        let delivered = room
            .publish(ChatMessage { text: text(queued) })
            .await
            .unwrap()
            .delivered;
        if delivered == 0 {
            break;
        }
        queued += 1;
        assert!(queued < 20_000, "the queue never overflowed");
        // Let the connection's task write, so the socket (not only the queue) fills.
        tokio::task::yield_now().await;
    }
    assert_eq!(hub.stats().slow_consumers, 1);
    // Out of its rooms at once: later publishes reach no one.
    wait_for("the slow consumer to leave its room", || {
        room.member_count() == 0
    })
    .await;
    assert_eq!(
        room.publish(ChatMessage {
            text: "later".into()
        })
        .await
        .unwrap()
        .delivered,
        0
    );

    // Reading again (within the close timeout): every queued message, in order, then
    // 1013; none dropped from the queue's tail, and nothing published after.
    for i in 0..queued {
        let v = next_json(&mut slow).await;
        assert_message(&v, ROOM, &text(i));
    }
    expect_close_then_eof(&mut slow, 1013, "slow consumer").await;
    eprintln!("the slow consumer got all {queued} queued messages, then 1013");
}

/// A peer that never reads again cannot hold a closing connection: the flush of its
/// queue, the close frame and the wait for its answer are all bounded by the close
/// timeout. Seen from the hub: `shutdown` finds every connection task finished, the
/// stalled one included, no later than the close timeout after its 1013.
#[tokio::test]
async fn a_peer_that_never_reads_is_dropped_within_the_close_timeout() {
    const ROOM: &str = "chat:stuck";
    let hub = test_hub_builder()
        .configure(|c| {
            c.ws.max_queued_bytes = 64 * 1024;
            // Long enough that a shutdown cut short is not taken for the close timeout.
            c.shutdown_timeout = CLOSE_TIMEOUT * 4;
        })
        .build();
    let addr = addr_of(&serve(&hub).await);
    let mut stuck = connect_stalling(addr, "").await;
    join(&mut stuck, ROOM).await;

    // One thread: the connection task runs only at the yields, so by the overflow it is
    // parked on a write the peer will never make room for, and the 1013 comes from
    // this task (the publisher), not from the connection's own.
    let room = hub.room::<ChatMessage>(ROOM).unwrap();
    let mut published = 0;
    while room
        .publish(ChatMessage {
            text: "y".repeat(4096),
        })
        .await
        .unwrap()
        .delivered
        > 0
    {
        published += 1;
        assert!(published < 20_000, "the queue never overflowed");
        tokio::task::yield_now().await;
    }
    assert_eq!(hub.stats().slow_consumers, 1);
    // From here on no real time needs to pass: the clock jumps to each next timer.
    tokio::time::pause();
    let closed_at = Instant::now();
    assert!(
        hub.shutdown().await,
        "a connection task was still running after {:?}",
        closed_at.elapsed()
    );
    let took = closed_at.elapsed();
    assert!(
        took <= CLOSE_TIMEOUT + Duration::from_millis(100),
        "the stalled connection lived {took:?} after its close"
    );
    assert_eq!(hub.stats().connections, 0);
    drop(stuck);
}

/// Token expiry (1008, from the hub's sweep task) delivers what was queued first. The
/// client stops reading while far more is published to it than the kernel buffers can
/// hold (so most of it sits in the outbound queue when the token expires); when it
/// reads again it gets every message, then the close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_expiry_delivers_the_queue_then_1008() {
    const ROOM: &str = "chat:exp";
    /// 256 messages of 32 KiB: 8 MiB, twice the most Linux lets a socket buffer.
    const COUNT: usize = 256;
    let lifetime = Duration::from_secs(3);
    let expires = SystemTime::now() + lifetime;
    let tokens = StaticTokens::new().with(
        "brief",
        Identity::new("brief", "Brief").with_expiry(expires),
    );
    let hub: Hub = test_hub_builder()
        .authenticator(tokens)
        .configure(|c| c.ws.max_queued_bytes = 16 << 20)
        .build();
    let addr = addr_of(&serve(&hub).await);
    let mut c = connect_stalling(addr, "Authorization: Bearer brief").await;
    join(&mut c, ROOM).await;

    let room = hub.room::<ChatMessage>(ROOM).unwrap();
    let text = |i: usize| format!("{i:04} {}", "z".repeat(32 * 1024 - 100));
    for i in 0..COUNT {
        let delivered = room
            .publish(ChatMessage { text: text(i) })
            .await
            .unwrap()
            .delivered;
        assert_eq!(
            delivered, 1,
            "message {i} was not queued (the token expired before the test got here?)"
        );
    }
    assert!(
        SystemTime::now() < expires,
        "publishing took longer than the token's {lifetime:?}: the test proves nothing"
    );
    assert_eq!(hub.stats().expired, 0);
    wait_for("the token to expire", || hub.stats().expired == 1).await;
    assert_eq!(hub.stats().slow_consumers, 0);

    for i in 0..COUNT {
        assert_message(&next_json(&mut c).await, ROOM, &text(i));
    }
    expect_close_then_eof(&mut c, 1008, "token expired").await;
}
