//! Property test of message reassembly in the server role.
//!
//! A random message (text with 1- to 4-byte characters, or binary; 0..20 KiB) is split
//! into random fragments (empty ones included, text split inside characters), random
//! pings and unsolicited pongs are interleaved between the fragments, every frame gets
//! its own random mask, and the bytes reach the server in random-sized writes. The
//! server's `recv()` must return exactly the original message, and every pong it writes
//! must answer one of our pings, in order, ending with the last one (RFC 6455 §5.5.3 lets
//! it answer only the most recent ping of a burst).
//!
//! Frames are built by the tiny encoder below, independent of the crate's codec. A
//! second property runs the same with permessage-deflate: the message is compressed with
//! flate2 here and its compressed bytes are fragmented.

use std::io::Write as _;

use bytes::BytesMut;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wshub::ws::handshake::{HandshakeConfig, Negotiated, negotiate};
use wshub::ws::{Message, Role, WebSocket, WsConfig};

const OP_CONTINUE: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Largest message the properties generate.
const MAX_MESSAGE: usize = 20 * 1024;

/// Appends one masked client frame (RFC 6455 §5.2), written out by hand.
fn encode_frame(
    out: &mut Vec<u8>,
    fin: bool,
    rsv1: bool,
    opcode: u8,
    payload: &[u8],
    mask: [u8; 4],
) {
    out.push(u8::from(fin) << 7 | u8::from(rsv1) << 6 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

/// A frame the server wrote (servers do not mask).
#[derive(Debug)]
struct ServerFrame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

/// Parses everything the server wrote; panics on anything malformed.
fn parse_server_frames(mut buf: &[u8]) -> Vec<ServerFrame> {
    let mut frames = Vec::new();
    while !buf.is_empty() {
        assert!(buf.len() >= 2, "truncated header: {buf:x?}");
        let (b0, b1) = (buf[0], buf[1]);
        assert_eq!(b0 & 0x70, 0, "server set RSV bits on a control frame");
        assert_eq!(b1 & 0x80, 0, "server frames must not be masked");
        let (len, header) = match b1 & 0x7F {
            126 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
            127 => (
                usize::try_from(u64::from_be_bytes(buf[2..10].try_into().unwrap())).unwrap(),
                10,
            ),
            n => (usize::from(n), 2),
        };
        assert!(buf.len() >= header + len, "truncated frame: {buf:x?}");
        frames.push(ServerFrame {
            fin: b0 & 0x80 != 0,
            opcode: b0 & 0x0F,
            payload: buf[header..header + len].to_vec(),
        });
        buf = &buf[header + len..];
    }
    frames
}

/// A control frame slipped in before a fragment.
#[derive(Debug, Clone)]
enum Control {
    None,
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

fn control() -> impl Strategy<Value = Control> {
    let payload = || proptest::collection::vec(any::<u8>(), 0..=125);
    prop_oneof![
        2 => Just(Control::None),
        2 => payload().prop_map(Control::Ping),
        1 => payload().prop_map(Control::Pong),
    ]
}

/// Deterministic pseudo-random numbers (xorshift64*): payloads are expanded from a seed,
/// which generates far faster than one proptest value per byte and still shrinks (by
/// length and seed).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// About `len` bytes (never more) of text whose characters are 1 to 4 bytes long;
/// `ascii_share` of 256 of them are ASCII, the rest evenly 2-, 3- and 4-byte.
fn random_text(len: usize, seed: u64, ascii_share: u8) -> String {
    let mut rng = XorShift(seed | 1);
    let mut s = String::with_capacity(len);
    loop {
        let r = rng.next();
        let c = if (r & 0xFF) < u64::from(ascii_share) {
            char::from((r >> 8) as u8 & 0x7F)
        } else {
            let v = (r >> 16) as u32;
            let code = match (r >> 8) % 3 {
                0 => 0x80 + v % (0x800 - 0x80),
                1 => 0x800 + v % (0x1_0000 - 0x800),
                _ => 0x1_0000 + v % (0x11_0000 - 0x1_0000),
            };
            // Surrogates are not characters: take the replacement character instead.
            char::from_u32(code).unwrap_or('\u{FFFD}')
        };
        if s.len() + c.len_utf8() > len {
            return s;
        }
        s.push(c);
    }
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = XorShift(seed | 1);
    (0..len).map(|_| rng.next() as u8).collect()
}

/// Message lengths: often short (one-byte and 16-bit length forms), up to 20 KiB.
fn length() -> impl Strategy<Value = usize> {
    prop_oneof![0usize..=130, 0usize..=MAX_MESSAGE]
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (length(), any::<u64>(), any::<u8>())
            .prop_map(|(len, seed, ascii)| Message::text(random_text(len, seed, ascii))),
        (length(), any::<u64>()).prop_map(|(len, seed)| Message::binary(random_bytes(len, seed))),
    ]
}

/// Everything one case needs besides the message.
#[derive(Debug, Clone)]
struct Plan {
    /// Fragment boundaries, as indexes into the (wire) payload; duplicates make empty
    /// fragments.
    cuts: Vec<proptest::sample::Index>,
    /// `controls[i]` goes before fragment `i` (so never after the last one).
    controls: Vec<Control>,
    /// Masks, used in turn by every frame we send.
    masks: Vec<[u8; 4]>,
    /// Sizes of the writes the bytes reach the server in, used in turn.
    chunks: Vec<usize>,
}

fn plan() -> impl Strategy<Value = Plan> {
    (
        proptest::collection::vec(any::<proptest::sample::Index>(), 0..12),
        proptest::collection::vec(control(), 13),
        proptest::collection::vec(any::<[u8; 4]>(), 1..16),
        proptest::collection::vec(
            prop_oneof![1usize..8, 8usize..512, 512usize..MAX_MESSAGE],
            1..16,
        ),
    )
        .prop_map(|(cuts, controls, masks, chunks)| Plan {
            cuts,
            controls,
            masks,
            chunks,
        })
}

/// The wire bytes of `payload` as a fragmented message with `plan`'s control frames,
/// and the ping payloads in the order sent.
fn build_stream(opcode: u8, rsv1: bool, payload: &[u8], plan: &Plan) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut cuts: Vec<usize> = plan
        .cuts
        .iter()
        .map(|i| i.index(payload.len() + 1))
        .collect();
    cuts.sort_unstable();
    let mut bounds = vec![0];
    bounds.extend(cuts);
    bounds.push(payload.len());
    let mut masks = plan.masks.iter().cycle();
    let mut wire = Vec::with_capacity(payload.len() + 64 * bounds.len());
    let mut pings = Vec::new();
    let fragments = bounds.len() - 1;
    for i in 0..fragments {
        match &plan.controls[i] {
            Control::None => {}
            Control::Ping(p) => {
                encode_frame(&mut wire, true, false, OP_PING, p, *masks.next().unwrap());
                pings.push(p.clone());
            }
            Control::Pong(p) => {
                encode_frame(&mut wire, true, false, OP_PONG, p, *masks.next().unwrap());
            }
        }
        let (op, rsv) = if i == 0 {
            (opcode, rsv1)
        } else {
            (OP_CONTINUE, false)
        };
        let fin = i == fragments - 1;
        let fragment = &payload[bounds[i]..bounds[i + 1]];
        encode_frame(&mut wire, fin, rsv, op, fragment, *masks.next().unwrap());
    }
    (wire, pings)
}

/// Raw deflate of `data` with a sync flush, minus the `00 00 ff ff` tail (RFC 7692 §7.2.1).
fn compress(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    let mut out = enc.flush_finish().unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]), "sync flush tail");
    out.truncate(out.len() - 4);
    out
}

/// Feeds `wire` to a fresh server in `plan.chunks`-sized writes and checks what `recv()`
/// returns and which pongs the server writes.
fn run_case(
    expected: &Message,
    wire: Vec<u8>,
    pings: Vec<Vec<u8>>,
    chunks: Vec<usize>,
    deflate: bool,
) {
    // Paused time: a failing case (the server closing with an error, waiting for our
    // close) or a hang costs no real time, so shrinking stays fast.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let (server_end, client_end) = tokio::io::duplex(64 * 1024);
        let params = if deflate {
            deflate_offer_accepted().deflate()
        } else {
            None
        };
        assert_eq!(params.is_some(), deflate);
        let mut server = WebSocket::from_parts(
            server_end,
            Role::Server,
            WsConfig::default(),
            params,
            BytesMut::new(),
        );
        let (mut rd, mut wr) = tokio::io::split(client_end);
        let writer = tokio::spawn(async move {
            let mut rest = &wire[..];
            for &n in chunks.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let n = n.clamp(1, rest.len());
                wr.write_all(&rest[..n]).await.unwrap();
                rest = &rest[n..];
                // Let the server see a partial frame.
                tokio::task::yield_now().await;
            }
            wr
        });
        let got = tokio::time::timeout(std::time::Duration::from_secs(30), server.recv())
            .await
            .expect("recv hung (virtual 30 s)")
            .expect("recv failed")
            .expect("connection closed instead of a message");
        assert_eq!(&got, expected);
        // A pong queued by the last frames is written on the next I/O round.
        server.flush().await.unwrap();
        let wr = writer.await.unwrap();
        drop(server);
        drop(wr);
        let mut out = Vec::new();
        rd.read_to_end(&mut out).await.unwrap();
        let frames = parse_server_frames(&out);
        let mut pongs = frames.iter().map(|f| {
            assert!(
                f.fin && f.opcode == OP_PONG,
                "unexpected frame from the server: {f:?}"
            );
            &f.payload
        });
        // The pongs answer a subsequence of our pings, in order...
        let mut expected_pings = pings.iter();
        let mut last = None;
        for pong in pongs.by_ref() {
            assert!(
                expected_pings.any(|p| p == pong),
                "pong {pong:x?} answers no ping sent (in order) of {pings:x?}"
            );
            last = Some(pong);
        }
        // ...and the most recent ping is always answered.
        assert_eq!(last, pings.last(), "the last ping was not answered");
    });
}

/// What the server agrees to for a plain `permessage-deflate` offer. The parameters
/// (`.deflate()`) are reachable only this way: their type is not nameable outside the
/// crate.
fn deflate_offer_accepted() -> Negotiated {
    let req = http::Request::get("/")
        .header("host", "localhost")
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-extensions", "permessage-deflate")
        .body(())
        .unwrap();
    negotiate(&req, &HandshakeConfig::default().with_deflate(true)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig {
        max_shrink_iters: 1024,
        ..ProptestConfig::with_cases(64)
    })]

    #[test]
    fn fragmented_message_with_interleaved_pings_reassembles(msg in message(), plan in plan()) {
        let opcode = if msg.as_text().is_some() { OP_TEXT } else { OP_BINARY };
        let (wire, pings) = build_stream(opcode, false, msg.as_bytes(), &plan);
        run_case(&msg, wire, pings, plan.chunks.clone(), false);
    }

    #[test]
    fn fragmented_compressed_message_reassembles(msg in message(), plan in plan()) {
        let opcode = if msg.as_text().is_some() { OP_TEXT } else { OP_BINARY };
        let compressed = compress(msg.as_bytes());
        let (wire, pings) = build_stream(opcode, true, &compressed, &plan);
        run_case(&msg, wire, pings, plan.chunks.clone(), true);
    }
}
