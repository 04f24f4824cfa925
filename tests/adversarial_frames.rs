//! Adversarial frame-level tests against the crate's echo server, over raw TCP.
//!
//! The Autobahn test suite cannot run here, so these cover its categories by hand:
//! framing and reserved bits, control frames, fragmentation, UTF-8 handling, limits,
//! the closing handshake, and permessage-deflate (RFC 7692). Each test sends exactly
//! the bytes it wants with `common::raw::RawClient`, asserts the exact close code
//! RFC 6455 asks for (or the exact echo), and ends by checking that the server still
//! serves a new client.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::echo::spawn_echo;
use common::raw::{
    OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RSV1, RSV2, RSV3, RawClient,
    assert_server_alive, close_frame, frame, frame_header, frame_with_mask,
};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

/// The permessage-deflate offer of a client that asks for nothing special.
const DEFLATE_OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate\r\n";

/// The tail a sync flush ends with, stripped from (and re-appended to) every compressed
/// message (RFC 7692 §7.2.1).
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Default `WsConfig::max_frame_size` and `max_message_size` (src/ws/config.rs).
const DEFAULT_MAX: usize = 16 << 20;

/// An echo server without compression, and a client connected to it.
async fn plain() -> (SocketAddr, RawClient) {
    let addr = spawn_echo(false).await;
    let client = RawClient::connect(addr, "").await;
    (addr, client)
}

/// An echo server with compression, and a client that negotiated permessage-deflate.
async fn deflated() -> (SocketAddr, RawClient) {
    let addr = spawn_echo(true).await;
    let client = RawClient::connect(addr, DEFLATE_OFFER).await;
    assert!(
        client
            .header("sec-websocket-extensions")
            .is_some_and(|v| v.starts_with("permessage-deflate")),
        "permessage-deflate was not negotiated: {:?}",
        client.headers()
    );
    (addr, client)
}

/// Compresses `data` the way a permessage-deflate sender does: raw deflate, sync flush,
/// trailing `00 00 ff ff` removed. Independent of the crate's own compressor.
fn deflate_raw(data: &[u8], level: Compression) -> Vec<u8> {
    let mut c = Compress::new(level, false);
    let mut out = Vec::with_capacity(data.len() / 4 + 1024);
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(4096));
        }
        let consumed = c.total_in() as usize;
        c.compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
            .expect("compress");
        // All input in and room left over: the sync flush is complete.
        if c.total_in() as usize == data.len() && out.len() < out.capacity() {
            break;
        }
    }
    assert!(
        out.ends_with(&SYNC_TAIL),
        "sync flush must end with 00 00 ff ff"
    );
    out.truncate(out.len() - SYNC_TAIL.len());
    out
}

/// Inflates a permessage-deflate payload (appending the stripped tail).
fn inflate_raw(data: &[u8]) -> Vec<u8> {
    let mut input = data.to_vec();
    input.extend_from_slice(&SYNC_TAIL);
    let mut d = Decompress::new(false);
    let mut out = Vec::with_capacity(data.len() * 4 + 1024);
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity());
        }
        let consumed = d.total_in() as usize;
        d.decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            .expect("the server's compressed message must inflate");
        if d.total_in() as usize == input.len() && out.len() < out.capacity() {
            break;
        }
    }
    out
}

/// Sends `bytes` on `client` and asserts the server closes with `code` (`what` names the
/// case in the test's output).
async fn expect_close_for(client: &mut RawClient, bytes: &[u8], code: u16, what: &str) {
    client.send_raw(bytes).await;
    eprintln!("case: {what}");
    client.expect_close(code).await;
}

// ---------------------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmasked_client_frame_is_1002() {
    let (addr, mut client) = plain().await;
    client.send_frame(true, 0, OP_TEXT, b"hello", false).await;
    client.expect_close(1002).await;
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsv2_or_rsv3_is_1002() {
    let addr = spawn_echo(true).await;
    for (rsv, extensions) in [
        (RSV2, ""),
        (RSV3, ""),
        (RSV2, DEFLATE_OFFER),
        (RSV3, DEFLATE_OFFER),
        (RSV1 | RSV2, DEFLATE_OFFER),
    ] {
        let mut client = RawClient::connect(addr, extensions).await;
        let bytes = frame(true, rsv, OP_TEXT, b"hello", true);
        expect_close_for(
            &mut client,
            &bytes,
            1002,
            &format!("rsv {rsv:#05b} {extensions:?}"),
        )
        .await;
    }
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsv1_without_negotiated_deflate_is_1002() {
    // Compression off on the server...
    let (addr, mut client) = plain().await;
    let compressed = deflate_raw(b"hello", Compression::default());
    client
        .send_frame(true, RSV1, OP_TEXT, &compressed, true)
        .await;
    client.expect_close(1002).await;
    assert_server_alive(addr).await;

    // ...and on, but not offered by this client.
    let addr = spawn_echo(true).await;
    let mut client = RawClient::connect(addr, "").await;
    assert_eq!(client.header("sec-websocket-extensions"), None);
    client
        .send_frame(true, RSV1, OP_BINARY, &compressed, true)
        .await;
    client.expect_close(1002).await;
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsv1_on_a_continuation_frame_is_1002() {
    let (addr, mut client) = deflated().await;
    let compressed = deflate_raw(
        b"hello, fragmented compressed world",
        Compression::default(),
    );
    let (a, b) = compressed.split_at(compressed.len() / 2);
    let mut bytes = frame(false, RSV1, OP_TEXT, a, true);
    bytes.extend(frame(true, RSV1, OP_CONT, b, true));
    client.send_raw(&bytes).await;
    client.expect_close(1002).await;
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsv1_on_a_control_frame_is_1002() {
    let addr = spawn_echo(true).await;
    for opcode in [OP_PING, OP_PONG, OP_CLOSE] {
        let mut client = RawClient::connect(addr, DEFLATE_OFFER).await;
        let payload: &[u8] = if opcode == OP_CLOSE {
            &[0x03, 0xE8]
        } else {
            b"x"
        };
        let bytes = frame(true, RSV1, opcode, payload, true);
        expect_close_for(
            &mut client,
            &bytes,
            1002,
            &format!("RSV1 on opcode {opcode:#x}"),
        )
        .await;
    }
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_opcodes_are_1002() {
    let addr = spawn_echo(false).await;
    for opcode in [3u8, 4, 5, 6, 7, 11, 12, 13, 14, 15] {
        let mut client = RawClient::connect(addr, "").await;
        let bytes = frame(true, 0, opcode, b"reserved", true);
        expect_close_for(&mut client, &bytes, 1002, &format!("opcode {opcode}")).await;
    }
    // A reserved opcode right after a valid message: the echo comes first.
    let mut client = RawClient::connect(addr, "").await;
    let mut bytes = frame(true, 0, OP_TEXT, b"before", true);
    bytes.extend(frame(true, 0, 5, b"", true));
    client.send_raw(&bytes).await;
    client.expect_text("before").await;
    client.expect_close(1002).await;
    assert_server_alive(addr).await;
}

// ---------------------------------------------------------------------------------------
// Control frames
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_with_125_bytes_gets_the_same_pong() {
    let (addr, mut client) = plain().await;
    let payload: Vec<u8> = (0..125u8).map(|i| i.wrapping_mul(7)).collect();
    client.send_frame(true, 0, OP_PING, &payload, true).await;
    let (fin, rsv1, opcode, got) = client.read_frame().await;
    assert!(fin && !rsv1);
    assert_eq!(opcode, OP_PONG);
    assert_eq!(got, payload);
    // An empty ping gets an empty pong.
    client.send_frame(true, 0, OP_PING, b"", true).await;
    assert_eq!(
        client.read_frame().await,
        (true, false, OP_PONG, Vec::new())
    );
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_with_126_bytes_is_1002() {
    let (addr, mut client) = plain().await;
    client
        .send_frame(true, 0, OP_PING, &[b'p'; 126], true)
        .await;
    client.expect_close(1002).await;
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_ping_is_1002() {
    let (addr, mut client) = plain().await;
    let mut bytes = frame(false, 0, OP_PING, b"frag", true);
    bytes.extend(frame(true, 0, OP_CONT, b"ment", true));
    client.send_raw(&bytes).await;
    client.expect_close(1002).await;
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_between_fragments_is_answered_and_the_message_echoed_whole() {
    let (addr, mut client) = plain().await;
    client.send_frame(false, 0, OP_TEXT, b"Hello, ", true).await;
    client
        .send_frame(true, 0, OP_PING, b"in between", true)
        .await;
    // The pong arrives while the message is still incomplete.
    assert_eq!(
        client.read_frame().await,
        (true, false, OP_PONG, b"in between".to_vec())
    );
    client
        .send_frame(false, 0, OP_CONT, b"fragmented ", true)
        .await;
    client.send_frame(true, 0, OP_CONT, b"world", true).await;
    client.expect_text("Hello, fragmented world").await;

    // Same, everything in one write.
    let mut bytes = frame(false, 0, OP_BINARY, b"ab", true);
    bytes.extend(frame(true, 0, OP_PING, b"p2", true));
    bytes.extend(frame(true, 0, OP_CONT, b"cd", true));
    client.send_raw(&bytes).await;
    let mut got_pong = false;
    let mut got_echo = false;
    while !(got_pong && got_echo) {
        let (fin, rsv1, opcode, payload) = client.read_frame().await;
        assert!(fin && !rsv1);
        match opcode {
            OP_PONG => {
                assert!(!got_pong, "two pongs for one ping");
                assert_eq!(payload, b"p2");
                got_pong = true;
            }
            OP_BINARY => {
                assert!(!got_echo);
                assert_eq!(payload, b"abcd");
                got_echo = true;
            }
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsolicited_pong_is_ignored() {
    let (addr, mut client) = plain().await;
    client
        .send_frame(true, 0, OP_PONG, b"unsolicited", true)
        .await;
    client.send_frame(true, 0, OP_PONG, b"", true).await;
    client.send_text("after the pongs").await;
    // The next frame is the echo: nothing was sent in answer to the pongs.
    client.expect_text("after the pongs").await;
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_pings_get_pongs() {
    let (addr, mut client) = plain().await;
    const PINGS: usize = 200;
    let mut bytes = Vec::new();
    for i in 0..PINGS {
        bytes.extend(frame(
            true,
            0,
            OP_PING,
            format!("ping-{i}").as_bytes(),
            true,
        ));
    }
    bytes.extend(frame(true, 0, OP_TEXT, b"done", true));
    client.send_raw(&bytes).await;
    // RFC 6455 §5.5.3 lets a server answer only the most recent of several pings; the
    // pongs it does send must be in order and echo their ping, and the last ping must
    // be answered.
    let mut last_seen: Option<usize> = None;
    let mut echoed = false;
    let mut pongs = 0;
    while !(echoed && last_seen == Some(PINGS - 1)) {
        let (fin, rsv1, opcode, payload) = client.read_frame().await;
        assert!(fin && !rsv1);
        match opcode {
            OP_PONG => {
                let text = String::from_utf8(payload).expect("pong payload");
                let n: usize = text
                    .strip_prefix("ping-")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("pong with a payload no ping had: {text:?}"));
                assert!(
                    last_seen.is_none_or(|l| n > l),
                    "pong {n} after pong {last_seen:?}"
                );
                last_seen = Some(n);
                pongs += 1;
            }
            OP_TEXT => {
                assert!(!echoed);
                assert_eq!(payload, b"done");
                echoed = true;
            }
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
    eprintln!("{pongs} pongs for {PINGS} pings");
    assert_server_alive(addr).await;
}

// ---------------------------------------------------------------------------------------
// Fragmentation
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_in_one_byte_fragments_is_echoed_whole() {
    let (addr, mut client) = plain().await;
    let text = "Hello, one byte at a time: ¡olé! €";
    let bytes = text.as_bytes();
    let last = bytes.len() - 1;
    // Separate writes, so the server sees the fragments arrive one by one.
    for (i, b) in bytes.iter().enumerate() {
        let opcode = if i == 0 { OP_TEXT } else { OP_CONT };
        client.send_frame(i == last, 0, opcode, &[*b], true).await;
    }
    client.expect_text(text).await;
    // And in one write.
    let mut all = Vec::new();
    for (i, b) in bytes.iter().enumerate() {
        let opcode = if i == 0 { OP_TEXT } else { OP_CONT };
        all.extend(frame(i == last, 0, opcode, &[*b], true));
    }
    client.send_raw(&all).await;
    client.expect_text(text).await;
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_in_odd_sized_writes_are_echoed() {
    let (addr, mut client) = plain().await;
    // Pseudo-random bytes, so any unmasking error at a read boundary shows.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..(1 << 20) + 3)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    // One 1 MiB frame, then the same as 3 fragments of odd sizes with a ping inside,
    // each written in odd-sized pieces (one message at a time: the server's echo of
    // one is not read while the next is written).
    let whole = frame(true, 0, OP_BINARY, &data, true);
    for chunk in whole.chunks(4093) {
        client.send_raw(chunk).await;
    }
    assert_eq!(
        client.read_message().await,
        (OP_BINARY, false, data.clone())
    );
    let (a, rest) = data.split_at(70_001);
    let (b, c) = rest.split_at(500_007);
    let mut bytes = frame(false, 0, OP_BINARY, a, true);
    bytes.extend(frame(false, 0, OP_CONT, b, true));
    bytes.extend(frame(true, 0, OP_PING, b"inside", true));
    bytes.extend(frame(true, 0, OP_CONT, c, true));
    for chunk in bytes.chunks(4093) {
        client.send_raw(chunk).await;
    }
    let mut got_pong = false;
    let mut got_echo = false;
    while !(got_pong && got_echo) {
        let (fin, _, opcode, payload) = client.read_frame().await;
        assert!(fin);
        match opcode {
            OP_PONG => {
                assert_eq!(payload, b"inside");
                got_pong = true;
            }
            OP_BINARY => {
                assert!(payload == data, "fragmented 1 MiB echo differs");
                got_echo = true;
            }
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_with_nothing_to_continue_is_1002() {
    let addr = spawn_echo(false).await;
    for fin in [true, false] {
        let mut client = RawClient::connect(addr, "").await;
        let bytes = frame(fin, 0, OP_CONT, b"orphan", true);
        expect_close_for(
            &mut client,
            &bytes,
            1002,
            &format!("orphan continuation fin={fin}"),
        )
        .await;
    }
    // Also right after a complete message.
    let mut client = RawClient::connect(addr, "").await;
    let mut bytes = frame(true, 0, OP_TEXT, b"complete", true);
    bytes.extend(frame(true, 0, OP_CONT, b"orphan", true));
    client.send_raw(&bytes).await;
    client.expect_text("complete").await;
    client.expect_close(1002).await;
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_data_frame_during_a_fragmented_message_is_1002() {
    let addr = spawn_echo(false).await;
    for (second_op, fin) in [(OP_TEXT, true), (OP_TEXT, false), (OP_BINARY, true)] {
        let mut client = RawClient::connect(addr, "").await;
        let mut bytes = frame(false, 0, OP_TEXT, b"first part", true);
        bytes.extend(frame(fin, 0, second_op, b"interloper", true));
        expect_close_for(
            &mut client,
            &bytes,
            1002,
            &format!("opcode {second_op} fin={fin} inside a message"),
        )
        .await;
    }
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_fragments() {
    let (addr, mut client) = plain().await;
    // Empty fragments around a non-empty one.
    let mut bytes = frame(false, 0, OP_TEXT, b"", true);
    bytes.extend(frame(false, 0, OP_CONT, b"", true));
    bytes.extend(frame(false, 0, OP_CONT, b"abc", true));
    bytes.extend(frame(true, 0, OP_CONT, b"", true));
    client.send_raw(&bytes).await;
    client.expect_text("abc").await;
    // A fragmented message that is empty altogether.
    let mut bytes = frame(false, 0, OP_TEXT, b"", true);
    bytes.extend(frame(false, 0, OP_CONT, b"", true));
    bytes.extend(frame(true, 0, OP_CONT, b"", true));
    client.send_raw(&bytes).await;
    client.expect_text("").await;
    // Same for binary, and an unfragmented empty message.
    let mut bytes = frame(false, 0, OP_BINARY, b"", true);
    bytes.extend(frame(true, 0, OP_CONT, b"", true));
    client.send_raw(&bytes).await;
    assert_eq!(client.read_message().await, (OP_BINARY, false, Vec::new()));
    client.send_frame(true, 0, OP_TEXT, b"", true).await;
    client.expect_text("").await;
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_arriving_one_byte_per_write_are_echoed() {
    let (addr, mut client) = plain().await;
    // A 7-bit and a 16-bit length: every header field split over reads.
    for len in [5usize, 300] {
        let text = "x".repeat(len - 1) + "é";
        let bytes = frame(true, 0, OP_TEXT, text.as_bytes(), true);
        for b in &bytes {
            client.send_raw(std::slice::from_ref(b)).await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        client.expect_text(&text).await;
    }
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abrupt_disconnects_do_not_hurt_the_server() {
    let addr = spawn_echo(true).await;
    // Half a header, half a payload, half a fragmented message, half a compressed
    // message: then the TCP connection just goes away, without a close frame.
    let compressed = deflate_raw(&b"abc".repeat(1000), Compression::default());
    let cases: [Vec<u8>; 4] = [
        frame(true, 0, OP_TEXT, &[b'a'; 300], true)[..3].to_vec(),
        frame(true, 0, OP_BINARY, &[b'b'; 300], true)[..100].to_vec(),
        frame(false, 0, OP_TEXT, b"first half", true),
        frame(true, RSV1, OP_TEXT, &compressed, true)[..compressed.len() / 2].to_vec(),
    ];
    for bytes in cases {
        let mut client = RawClient::connect(addr, DEFLATE_OFFER).await;
        client.send_raw(&bytes).await;
        drop(client);
    }
    // And a connection dropped halfway through the request head.
    let req = common::raw::upgrade_request(addr, "");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut stream, &req.as_bytes()[..req.len() / 2])
        .await
        .expect("write");
    drop(stream);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_server_alive(addr).await;
}

// ---------------------------------------------------------------------------------------
// UTF-8
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_a_single_frame_is_1007() {
    let addr = spawn_echo(false).await;
    let cases: [&[u8]; 6] = [
        b"\xff",
        b"abc\xc0\xafdef",   // overlong '/'
        b"\xed\xa0\x80",     // UTF-16 surrogate
        b"\xf4\x90\x80\x80", // above U+10FFFF
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64",
        b"truncated \xe2\x82", // ends inside a code point
    ];
    for payload in cases {
        let mut client = RawClient::connect(addr, "").await;
        let bytes = frame(true, 0, OP_TEXT, payload, true);
        expect_close_for(&mut client, &bytes, 1007, &format!("{payload:x?}")).await;
    }
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_split_across_fragments_is_1007() {
    let addr = spawn_echo(false).await;
    // κόσμε then a surrogate, cut inside the surrogate.
    let mut client = RawClient::connect(addr, "").await;
    let mut bytes = frame(
        false,
        0,
        OP_TEXT,
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed",
        true,
    );
    bytes.extend(frame(true, 0, OP_CONT, b"\xa0\x80edited", true));
    expect_close_for(
        &mut client,
        &bytes,
        1007,
        "surrogate split over two fragments",
    )
    .await;

    // A valid lead byte, then a fragment starting with a non-continuation byte.
    let mut client = RawClient::connect(addr, "").await;
    let mut bytes = frame(false, 0, OP_TEXT, b"abc\xe2\x82", true);
    bytes.extend(frame(true, 0, OP_CONT, b"A", true));
    expect_close_for(
        &mut client,
        &bytes,
        1007,
        "truncated sequence across fragments",
    )
    .await;

    // The message ends (FIN) inside a code point, each fragment valid so far.
    let mut client = RawClient::connect(addr, "").await;
    let mut bytes = frame(false, 0, OP_TEXT, b"ok ", true);
    bytes.extend(frame(true, 0, OP_CONT, b"\xf0\x9f\x98", true));
    expect_close_for(
        &mut client,
        &bytes,
        1007,
        "message ends inside a code point",
    )
    .await;

    // The invalid byte in a non-final fragment: detected before the message ends.
    let mut client = RawClient::connect(addr, "").await;
    client.send_frame(false, 0, OP_TEXT, b"fine", true).await;
    client.send_frame(false, 0, OP_CONT, b"\xff", true).await;
    client.expect_close(1007).await;
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_multibyte_chars_split_across_fragments_are_echoed() {
    let (addr, mut client) = plain().await;
    // € (3 bytes) one byte per fragment.
    let euro = "€".as_bytes();
    let mut bytes = frame(false, 0, OP_TEXT, &euro[..1], true);
    bytes.extend(frame(false, 0, OP_CONT, &euro[1..2], true));
    bytes.extend(frame(true, 0, OP_CONT, &euro[2..], true));
    client.send_raw(&bytes).await;
    client.expect_text("€").await;
    // A 4-byte character split 1 + 3, with text around it, in separate writes.
    let text = "smile 😀 please";
    let b = text.as_bytes();
    let cut = "smile ".len() + 1;
    client.send_frame(false, 0, OP_TEXT, &b[..cut], true).await;
    client.send_frame(true, 0, OP_CONT, &b[cut..], true).await;
    client.expect_text(text).await;
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_fails_fast_before_the_frame_ends() {
    let (addr, mut client) = plain().await;
    // A text frame announcing 1000 bytes, of which only 8 are sent, one invalid.
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut bytes = frame_header(true, 0, OP_TEXT, 1000, Some(key));
    let mut first = *b"abcd\xffxyz";
    common::raw::apply_mask(&mut first, key);
    bytes.extend_from_slice(&first);
    let start = Instant::now();
    client.send_raw(&bytes).await;
    // The other 992 bytes never come: the server must not wait for them.
    client.expect_close(1007).await;
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "1007 took {:?}",
        start.elapsed()
    );
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_fails_fast_in_a_large_frame() {
    let (addr, mut client) = plain().await;
    // A 4 MiB text frame of which 256 KiB are sent, with an invalid byte at 200 KiB:
    // the server reads large frames straight into its buffer, and must still check
    // them as they arrive.
    let key = [0x5a, 0x01, 0xc3, 0x7e];
    let mut bytes = frame_header(true, 0, OP_TEXT, 4 << 20, Some(key));
    let mut payload = vec![b'v'; 256 << 10];
    payload[200 << 10] = 0xff;
    common::raw::apply_mask(&mut payload, key);
    bytes.extend_from_slice(&payload);
    let start = Instant::now();
    client.send_raw(&bytes).await;
    client.expect_close(1007).await;
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "1007 took {:?}",
        start.elapsed()
    );
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_a_close_reason_is_1007() {
    let (addr, mut client) = plain().await;
    client.send_raw(&close_frame(1000, b"bye \xff\xfe")).await;
    client.expect_close(1007).await;
    assert_server_alive(addr).await;
}

// ---------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_over_max_frame_size_is_1009_after_its_header() {
    let addr = spawn_echo(false).await;
    for (opcode, len) in [
        (OP_BINARY, DEFAULT_MAX as u64 + 1),
        (OP_TEXT, 1u64 << 40),
        (OP_BINARY, (1u64 << 63) - 1),
    ] {
        let mut client = RawClient::connect(addr, "").await;
        // Header only: no payload follows.
        let bytes = frame_header(true, 0, opcode, len, Some([1, 2, 3, 4]));
        let start = Instant::now();
        expect_close_for(
            &mut client,
            &bytes,
            1009,
            &format!("opcode {opcode} announcing {len}"),
        )
        .await;
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "1009 took {:?}",
            start.elapsed()
        );
    }
    // A 64-bit length with its most significant bit set (RFC 6455 §5.2: it MUST be
    // 0): the connection fails, as a protocol error or as an oversized frame.
    let mut client = RawClient::connect(addr, "").await;
    let mut bytes = frame_header(true, 0, OP_BINARY, u64::MAX >> 1, Some([1, 2, 3, 4]));
    bytes[2] |= 0x80;
    client.send_raw(&bytes).await;
    let payload = client.expect_close_frame().await;
    assert!(payload.len() >= 2, "close without a code: {payload:?}");
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    assert!(
        code == 1002 || code == 1009,
        "length with MSB set: close {code}"
    );
    // Exactly at the limit is still accepted: the header alone gets no close.
    let mut client = RawClient::connect(addr, "").await;
    client
        .send_raw(&frame_header(
            true,
            0,
            OP_BINARY,
            DEFAULT_MAX as u64,
            Some([1, 2, 3, 4]),
        ))
        .await;
    assert!(
        client
            .try_read_frame(Duration::from_millis(300))
            .await
            .is_err(),
        "a frame of exactly max_frame_size was refused"
    );
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragments_over_max_message_size_are_1009() {
    let (addr, mut client) = plain().await;
    // Four 4 MiB fragments fill max_message_size exactly; one more byte is too much.
    let quarter = vec![0x5Au8; DEFAULT_MAX / 4];
    let key = Some([0x11, 0x22, 0x33, 0x44]);
    let start = Instant::now();
    let mut bytes = frame_with_mask(false, 0, OP_BINARY, &quarter, key);
    for _ in 0..3 {
        bytes.extend(frame_with_mask(false, 0, OP_CONT, &quarter, key));
    }
    bytes.extend(frame_with_mask(true, 0, OP_CONT, b"!", key));
    client.send_raw(&bytes).await;
    client.expect_close(1009).await;
    eprintln!(
        "16 MiB + 1 in fragments refused after {:?}",
        start.elapsed()
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    assert_server_alive(addr).await;
}

/// A permessage-deflate payload inflating to `mib` MiB of zeros: one compressed MiB,
/// sync-flushed, repeated (each copy only refers back into its own output, so the
/// concatenation is valid deflate), tail stripped once at the end. Compressing 40 MiB in
/// one go takes seconds in a debug build; this takes a fraction of one.
fn zero_bomb(mib: usize) -> Vec<u8> {
    let mut segment = deflate_raw(&vec![0u8; 1 << 20], Compression::best());
    segment.extend_from_slice(&SYNC_TAIL);
    let mut bomb = segment.repeat(mib);
    bomb.truncate(bomb.len() - SYNC_TAIL.len());
    bomb
}

/// How many bytes `payload` (+ tail) inflates to, without holding them.
fn inflated_size(payload: &[u8]) -> usize {
    let mut input = payload.to_vec();
    input.extend_from_slice(&SYNC_TAIL);
    let mut d = Decompress::new(false);
    let mut out = Vec::with_capacity(1 << 20);
    let mut total = 0;
    loop {
        out.clear();
        let consumed = d.total_in() as usize;
        d.decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            .expect("the bomb must be valid deflate");
        total += out.len();
        if d.total_in() as usize == input.len() && out.len() < out.capacity() {
            return total;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decompression_bomb_is_1009() {
    let (addr, mut client) = deflated().await;
    let t = Instant::now();
    let bomb = zero_bomb(40);
    assert_eq!(inflated_size(&bomb), 40 << 20);
    eprintln!(
        "bomb: {} bytes for 40 MiB, built and checked in {:?}",
        bomb.len(),
        t.elapsed()
    );
    assert!(bomb.len() < 1 << 20, "bomb is {} bytes", bomb.len());
    let start = Instant::now();
    client.send_frame(true, RSV1, OP_BINARY, &bomb, true).await;
    client.expect_close(1009).await;
    eprintln!("bomb refused after {:?}", start.elapsed());
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "1009 took {:?}",
        start.elapsed()
    );

    // Fragmented, each fragment small: the limit applies to the inflated message.
    let mut client = RawClient::connect(addr, DEFLATE_OFFER).await;
    let mut bytes = Vec::new();
    let chunks: Vec<&[u8]> = bomb.chunks(4096).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let (rsv, opcode) = if i == 0 {
            (RSV1, OP_TEXT)
        } else {
            (0, OP_CONT)
        };
        bytes.extend(frame(i == chunks.len() - 1, rsv, opcode, chunk, true));
    }
    let start = Instant::now();
    client.send_raw(&bytes).await;
    client.expect_close(1009).await;
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "1009 took {:?}",
        start.elapsed()
    );
    assert_server_alive(addr).await;
}

// ---------------------------------------------------------------------------------------
// Closing handshake
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_1000_with_reason_is_echoed_then_tcp_closed() {
    let (addr, mut client) = plain().await;
    client
        .send_raw(&close_frame(1000, b"goodbye, server"))
        .await;
    // expect_close also asserts the server then closes the TCP connection.
    client.expect_close(1000).await;
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_with_empty_payload_is_answered() {
    let (addr, mut client) = plain().await;
    client.send_frame(true, 0, OP_CLOSE, b"", true).await;
    let payload = client.expect_close_frame().await;
    assert!(
        payload.is_empty() || payload[..2] == 1000u16.to_be_bytes(),
        "answer to an empty close: {payload:?}"
    );
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_with_one_byte_payload_is_1002() {
    let (addr, mut client) = plain().await;
    client.send_frame(true, 0, OP_CLOSE, &[0x03], true).await;
    client.expect_close(1002).await;
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_close_codes_are_1002() {
    let addr = spawn_echo(false).await;
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        let mut client = RawClient::connect(addr, "").await;
        expect_close_for(
            &mut client,
            &close_frame(code, b""),
            1002,
            &format!("code {code}"),
        )
        .await;
    }
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_close_codes_are_echoed() {
    let addr = spawn_echo(false).await;
    let codes = [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999,
    ];
    for code in codes {
        let mut client = RawClient::connect(addr, "").await;
        expect_close_for(
            &mut client,
            &close_frame(code, b"reason"),
            code,
            &format!("code {code}"),
        )
        .await;
    }
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_after_the_clients_close_is_ignored() {
    let (addr, mut client) = plain().await;
    // The close and a text frame in one write: the text must not be echoed.
    let mut bytes = close_frame(1000, b"");
    bytes.extend(frame(true, 0, OP_TEXT, b"too late", true));
    bytes.extend(frame(true, 0, OP_PING, b"too late", true));
    client.send_raw(&bytes).await;
    client.expect_close(1000).await;
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_with_the_longest_reason_is_echoed_and_longer_is_1002() {
    let addr = spawn_echo(false).await;
    // 2 + 123 = 125 bytes: the largest control frame.
    let mut client = RawClient::connect(addr, "").await;
    client.send_raw(&close_frame(1000, &[b'r'; 123])).await;
    client.expect_close(1000).await;
    // 2 + 124 = 126 bytes: too long for a control frame.
    let mut client = RawClient::connect(addr, "").await;
    client.send_raw(&close_frame(1000, &[b'r'; 124])).await;
    client.expect_close(1002).await;
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_during_a_fragmented_message_is_answered() {
    let (addr, mut client) = plain().await;
    // Control frames may come between fragments, close included: the unfinished message
    // is dropped, not echoed.
    let mut bytes = frame(false, 0, OP_TEXT, b"never ", true);
    bytes.extend(close_frame(1001, b"going away"));
    client.send_raw(&bytes).await;
    client.expect_close(1001).await;
    assert_server_alive(addr).await;
}

// ---------------------------------------------------------------------------------------
// permessage-deflate
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deflate_offer_is_answered_with_no_context_takeover() {
    let addr = spawn_echo(true).await;
    let client = RawClient::connect(addr, DEFLATE_OFFER).await;
    let value = client
        .header("sec-websocket-extensions")
        .expect("no Sec-WebSocket-Extensions in the 101 response");
    let mut parts = value.split(';').map(str::trim);
    assert_eq!(parts.next(), Some("permessage-deflate"), "{value:?}");
    let mut params: Vec<&str> = parts.collect();
    params.sort_unstable();
    assert_eq!(
        params,
        ["client_no_context_takeover", "server_no_context_takeover"],
        "{value:?}"
    );
    drop(client);
    // No offer: no extension.
    let client = RawClient::connect(addr, "").await;
    assert_eq!(client.header("sec-websocket-extensions"), None);
    // Compression off: the offer is declined.
    let plain_addr = spawn_echo(false).await;
    let client = RawClient::connect(plain_addr, DEFLATE_OFFER).await;
    assert_eq!(client.header("sec-websocket-extensions"), None);
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_messages_are_echoed() {
    let (addr, mut client) = deflated().await;
    // A small compressed text message: echoed (uncompressed or compressed).
    let text = "Hello, compressed world!";
    client
        .send_frame(
            true,
            RSV1,
            OP_TEXT,
            &deflate_raw(text.as_bytes(), Compression::default()),
            true,
        )
        .await;
    let (opcode, rsv1, payload) = client.read_message().await;
    assert_eq!(opcode, OP_TEXT);
    let payload = if rsv1 { inflate_raw(&payload) } else { payload };
    assert_eq!(payload, text.as_bytes());

    // A large compressible message comes back compressed and inflates to the original.
    let big = "{\"room\":\"lobby\",\"event\":\"presence\",\"user\":\"éric\"} ".repeat(2000);
    client
        .send_frame(
            true,
            RSV1,
            OP_TEXT,
            &deflate_raw(big.as_bytes(), Compression::fast()),
            true,
        )
        .await;
    let (opcode, rsv1, payload) = client.read_message().await;
    assert_eq!(opcode, OP_TEXT);
    assert!(
        rsv1,
        "a {}-byte compressible echo was not compressed",
        big.len()
    );
    assert!(
        payload.len() < big.len() / 10,
        "compressed echo is {} bytes",
        payload.len()
    );
    assert_eq!(inflate_raw(&payload), big.as_bytes());

    // server_no_context_takeover: the same message again must inflate on its own (a
    // server keeping its window would refer back into the previous message).
    for _ in 0..2 {
        let compressed = deflate_raw(big.as_bytes(), Compression::fast());
        client
            .send_frame(true, RSV1, OP_TEXT, &compressed, true)
            .await;
        let (opcode, rsv1, payload) = client.read_message().await;
        assert_eq!(opcode, OP_TEXT);
        assert!(rsv1);
        assert_eq!(inflate_raw(&payload), big.as_bytes());
    }

    // An uncompressed message on the same connection is fine too.
    client.send_text("plain").await;
    let (opcode, rsv1, payload) = client.read_message().await;
    assert_eq!(opcode, OP_TEXT);
    let payload = if rsv1 { inflate_raw(&payload) } else { payload };
    assert_eq!(payload, b"plain");

    // An empty compressed message (a lone empty stored-block header).
    client
        .send_frame(true, RSV1, OP_BINARY, &[0x00], true)
        .await;
    let (opcode, rsv1, payload) = client.read_message().await;
    assert_eq!(opcode, OP_BINARY);
    let payload = if rsv1 { inflate_raw(&payload) } else { payload };
    assert!(payload.is_empty());
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_message_split_over_fragments_is_echoed() {
    let (addr, mut client) = deflated().await;
    let text = "fragmented and compressed: ".to_owned() + &"abcdefgh".repeat(500);
    let compressed = deflate_raw(text.as_bytes(), Compression::default());
    assert!(compressed.len() >= 3);
    let third = compressed.len() / 3;
    let mut bytes = frame(false, RSV1, OP_TEXT, &compressed[..third], true);
    bytes.extend(frame(
        false,
        0,
        OP_CONT,
        &compressed[third..2 * third],
        true,
    ));
    bytes.extend(frame(true, 0, OP_CONT, &compressed[2 * third..], true));
    client.send_raw(&bytes).await;
    let (opcode, rsv1, payload) = client.read_message().await;
    assert_eq!(opcode, OP_TEXT);
    let payload = if rsv1 { inflate_raw(&payload) } else { payload };
    assert_eq!(payload, text.as_bytes());

    // One byte per fragment, with a ping in the middle.
    let small = deflate_raw(b"tiny fragmented deflate", Compression::default());
    let last = small.len() - 1;
    let mut bytes = Vec::new();
    for (i, b) in small.iter().enumerate() {
        let (rsv, opcode) = if i == 0 {
            (RSV1, OP_BINARY)
        } else {
            (0, OP_CONT)
        };
        bytes.extend(frame(i == last, rsv, opcode, &[*b], true));
        if i == 1 {
            bytes.extend(frame(true, 0, OP_PING, b"mid", true));
        }
    }
    client.send_raw(&bytes).await;
    assert_eq!(
        client.read_frame().await,
        (true, false, OP_PONG, b"mid".to_vec())
    );
    let (opcode, rsv1, payload) = client.read_message().await;
    assert_eq!(opcode, OP_BINARY);
    let payload = if rsv1 { inflate_raw(&payload) } else { payload };
    assert_eq!(payload, b"tiny fragmented deflate");
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_compressed_data_is_1007() {
    let addr = spawn_echo(true).await;
    let valid = deflate_raw(b"some text that will be damaged", Compression::default());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // BFINAL=1, BTYPE=11: a reserved block type.
        ("reserved block type", vec![0xff; 16]),
        // A stored block whose NLEN is not the complement of LEN.
        (
            "stored block with bad NLEN",
            vec![0x00, 0x05, 0x00, 0x00, 0x00, b'h', b'e', b'l', b'l', b'o'],
        ),
        // Fixed-Huffman block whose first symbol is a match at distance 1: a reference
        // to before the start of the output.
        ("distance too far back", vec![0x02, 0x04, 0x00, 0x00]),
        // Valid data, then a reserved block type.
        ("valid block then garbage", {
            let mut v = valid.clone();
            v.extend_from_slice(&[0x07, 0xff, 0xff]);
            v
        }),
    ];
    for (what, payload) in cases {
        // Precondition: flate2 itself refuses the payload (with the tail appended).
        let mut input = payload.clone();
        input.extend_from_slice(&SYNC_TAIL);
        let mut out = Vec::with_capacity(1 << 16);
        assert!(
            Decompress::new(false)
                .decompress_vec(&input, &mut out, FlushDecompress::Sync)
                .is_err(),
            "test case {what:?} is not corrupt"
        );
        for opcode in [OP_TEXT, OP_BINARY] {
            let mut client = RawClient::connect(addr, DEFLATE_OFFER).await;
            let bytes = frame(true, RSV1, opcode, &payload, true);
            expect_close_for(
                &mut client,
                &bytes,
                1007,
                &format!("{what}, opcode {opcode}"),
            )
            .await;
        }
    }
    // Valid deflate that inflates to invalid UTF-8 in a text message: 1007 as well.
    let mut client = RawClient::connect(addr, DEFLATE_OFFER).await;
    let bytes = frame(
        true,
        RSV1,
        OP_TEXT,
        &deflate_raw(b"ok \xff not ok", Compression::default()),
        true,
    );
    expect_close_for(&mut client, &bytes, 1007, "compressed invalid UTF-8").await;
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_message_ending_in_a_final_block_is_echoed() {
    // RFC 7692 §7.2.3.4: a sender may end a message with a BFINAL block (a finished
    // deflate stream) instead of a sync flush; the receiver must accept it.
    let (addr, mut client) = deflated().await;
    let text = "finished stream ".repeat(40);
    let mut c = Compress::new(Compression::default(), false);
    let mut payload = Vec::with_capacity(4096);
    let status = c
        .compress_vec(text.as_bytes(), &mut payload, FlushCompress::Finish)
        .expect("compress");
    assert_eq!(status, flate2::Status::StreamEnd);
    client.send_frame(true, RSV1, OP_TEXT, &payload, true).await;
    let (opcode, rsv1, echoed) = client.read_message().await;
    assert_eq!(opcode, OP_TEXT);
    let echoed = if rsv1 { inflate_raw(&echoed) } else { echoed };
    assert_eq!(echoed, text.as_bytes());
    assert_server_alive(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_max_window_bits_is_respected() {
    let addr = spawn_echo(true).await;
    let mut client = RawClient::connect(
        addr,
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n",
    )
    .await;
    let value = client
        .header("sec-websocket-extensions")
        .expect("permessage-deflate with server_max_window_bits=10 was declined")
        .to_owned();
    assert!(
        value
            .replace(' ', "")
            .contains(";server_max_window_bits=10"),
        "{value:?}"
    );
    // 2 KiB of noise repeated: a 15-bit compressor would refer back 2048 bytes, which
    // a 10-bit (1 KiB) window cannot reach.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..2048)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            b'a' + (seed % 26) as u8
        })
        .collect();
    let message = noise.repeat(16);
    client.send_frame(true, 0, OP_BINARY, &message, true).await;
    let (opcode, rsv1, payload) = client.read_message().await;
    assert_eq!(opcode, OP_BINARY);
    assert!(rsv1, "echo of {} bytes was not compressed", message.len());
    let mut input = payload.clone();
    input.extend_from_slice(&SYNC_TAIL);
    let mut d = Decompress::new_with_window_bits(false, 10);
    let mut out = Vec::with_capacity(message.len() + 1024);
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .expect("the server's message does not inflate with the 10-bit window it agreed to");
    assert_eq!(out, message);
    assert_server_alive(addr).await;
}
