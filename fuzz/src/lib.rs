//! The logic of the fuzz targets, as plain functions.
//!
//! `fuzz_targets/*.rs` call these from libFuzzer (`cargo +nightly fuzz run frames`), and
//! `tests/fuzz_corpus_smoke.rs` in the main crate includes this file as a module and runs
//! the same functions over a few thousand seeded inputs on stable, so CI exercises them
//! too. Only the public API of `wshub` is used.
//!
//! Each function feeds bytes as the client side of a `tokio::io::duplex` to a server
//! [`WebSocket`] and drives [`WebSocket::recv`] until the connection ends, then checks:
//!
//! - it ends at all (time is paused, so a hang shows as the virtual 1-hour guard firing);
//! - every text message is valid UTF-8 and no message exceeds [`MAX_MESSAGE`];
//! - everything the server wrote is a well-formed sequence of unmasked, final pong and
//!   close frames (nothing after the close; a valid close code and UTF-8 reason); a
//!   protocol or capacity error went out as a close frame with its code;
//! - [`inflate`] only: the message equals what zlib's one-shot raw inflate of the same
//!   bytes gives (differential check of the engine's bounded, stepwise inflation).
//!
//! Two more targets cover the parsers that decide who a client is (`wshub::net`):
//!
//! - [`proxy_protocol`]: a PROXY protocol header (v1 text or v2 binary) must parse
//!   without panicking, within its size bounds, and consistently as bytes arrive: no
//!   prefix of a complete header is anything but incomplete, and a verdict, once
//!   reached, does not change with more bytes.
//! - [`forwarded`]: `Forwarded` / `X-Forwarded-For` header lines must resolve without
//!   panicking; from an untrusted peer they change nothing; several lines read like one
//!   joined line; what a client writes at the left of the list cannot change an
//!   untrusted client address the walk found; every address node parsed round-trips.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wshub::Error;
use wshub::error::{CapacityError, ProtocolError};
use wshub::ws::handshake::{HandshakeConfig, Negotiated, negotiate};
use wshub::ws::{Message, Role, WebSocket, WsConfig};

/// `max_message_size` of the fuzzed server.
pub const MAX_MESSAGE: usize = 1 << 20;

/// Write sizes the client bytes reach the server in, picked by the first input byte of
/// [`frames`]; `usize::MAX` is one write.
const CHUNKS: [usize; 8] = [usize::MAX, 1, 2, 3, 7, 16, 61, 1024];

/// Mask of the frames [`inflate`] builds.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

thread_local! {
    /// One runtime per thread, reused by every input. Time is paused: timers (the
    /// closing-handshake timeout, the hang guard) fire as soon as nothing else can run.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("tokio runtime");
}

/// Target `frames`: the first byte picks permessage-deflate (bit 0) and the write size
/// (bits 1-3); the rest is everything the client sends after the handshake.
pub fn frames(data: &[u8]) -> Option<Outcome> {
    let (&flags, input) = data.split_first()?;
    let deflate = flags & 1 != 0;
    let chunk = CHUNKS[usize::from((flags >> 1) & 7)];
    let outcome = drive(input, deflate, chunk);
    outcome.check();
    Some(outcome)
}

/// Target `inflate`: `data` is the payload of one compressed message. It is sent as a
/// masked FIN+RSV1 binary frame, then a close frame, to a server that negotiated
/// permessage-deflate; the result must match zlib's one-shot inflation of `data`.
pub fn inflate(data: &[u8]) -> Option<Outcome> {
    let mut wire = Vec::with_capacity(data.len() + 32);
    encode_frame(&mut wire, 0x80 | 0x40 | 0x2, data, MASK);
    encode_frame(&mut wire, 0x80 | 0x8, &1000u16.to_be_bytes(), MASK);
    let outcome = drive(&wire, true, usize::MAX);
    outcome.check();
    if data.len() > MAX_MESSAGE {
        // Refused by its size before inflating; `check` covered the close code.
        return Some(outcome);
    }
    match reference_inflate(data) {
        Reference::Ok(expected) => {
            assert_eq!(
                outcome.messages.len(),
                1,
                "zlib inflates it but the engine returned {:?}",
                outcome.end
            );
            assert_eq!(
                outcome.messages[0].as_bytes(),
                &expected[..],
                "inflated bytes differ"
            );
            assert!(matches!(outcome.messages[0], Message::Binary(_)));
            assert!(
                outcome.end.is_ok(),
                "close after the message: {:?}",
                outcome.end
            );
        }
        // The engine may notice either problem first near the size limit; what it must
        // not do is deliver a message zlib refuses.
        Reference::TooLarge | Reference::Corrupt => {
            assert!(
                outcome.messages.is_empty(),
                "the engine delivered a message zlib refuses"
            );
            assert!(
                matches!(
                    outcome.end,
                    Err(Error::Protocol(ProtocolError::BadCompression))
                        | Err(Error::Capacity(CapacityError::MessageTooLarge { .. }))
                ),
                "unexpected end {:?}",
                outcome.end
            );
        }
    }
    Some(outcome)
}

/// What zlib itself makes of one compressed message.
enum Reference {
    Ok(Vec<u8>),
    TooLarge,
    Corrupt,
}

/// One-shot raw inflate of `data` plus the `00 00 ff ff` tail (RFC 7692 §7.2.2) into a
/// buffer one byte larger than the limit.
fn reference_inflate(data: &[u8]) -> Reference {
    let mut input = Vec::with_capacity(data.len() + 4);
    input.extend_from_slice(data);
    input.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
    let mut out = Vec::with_capacity(MAX_MESSAGE + 1);
    let mut z = flate2::Decompress::new(false);
    match z.decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync) {
        Err(_) => Reference::Corrupt,
        Ok(_) if out.len() > MAX_MESSAGE => Reference::TooLarge,
        Ok(_) => Reference::Ok(out),
    }
}

/// Appends one masked client frame; `b0` is the first header byte (FIN, RSV, opcode).
pub fn encode_frame(out: &mut Vec<u8>, b0: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(b0);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

/// What the server did with one input.
#[derive(Debug)]
pub struct Outcome {
    /// Messages `recv` returned, in order.
    pub messages: Vec<Message>,
    /// How the connection ended: `Ok` for `recv() == Ok(None)`.
    pub end: Result<(), Error>,
    /// Everything the server wrote.
    pub output: Vec<u8>,
}

/// The server-side permessage-deflate agreement for a plain offer, from the public
/// handshake API (the parameter type itself is not nameable outside the crate).
fn deflate_offer_accepted() -> Negotiated {
    let req = http::Request::get("/")
        .header("host", "fuzz")
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-extensions", "permessage-deflate")
        .body(())
        .expect("valid request");
    negotiate(&req, &HandshakeConfig::default().with_deflate(true)).expect("offer accepted")
}

/// Runs a server over `input` written in `chunk`-sized writes (then EOF) and records
/// what happened.
pub fn drive(input: &[u8], deflate: bool, chunk: usize) -> Outcome {
    RUNTIME.with(|rt| {
        rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(3600),
                drive_async(input, deflate, chunk),
            )
            .await
            .expect("the server hung (virtual 1-hour guard fired)")
        })
    })
}

async fn drive_async(input: &[u8], deflate: bool, chunk: usize) -> Outcome {
    let (server_end, client_end) = tokio::io::duplex(64 * 1024);
    let params = if deflate {
        let params = deflate_offer_accepted().deflate();
        assert!(params.is_some(), "permessage-deflate negotiated");
        params
    } else {
        None
    };
    let config = WsConfig::default().with_max_message_size(MAX_MESSAGE);
    let mut ws = WebSocket::from_parts(server_end, Role::Server, config, params, BytesMut::new());
    let (mut rd, mut wr) = tokio::io::split(client_end);
    let input = input.to_vec();
    let writer = tokio::spawn(async move {
        for piece in input.chunks(chunk.max(1)) {
            if wr.write_all(piece).await.is_err() {
                return wr;
            }
            tokio::task::yield_now().await;
        }
        let _ = wr.shutdown().await;
        wr
    });
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        let _ = rd.read_to_end(&mut out).await;
        (rd, out)
    });
    let mut messages = Vec::new();
    let end = loop {
        match ws.recv().await {
            Ok(Some(msg)) => messages.push(msg),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    // Closes both directions: a writer blocked on a server that stopped reading fails,
    // and the reader sees EOF.
    drop(ws);
    let wr = writer.await.expect("writer task");
    let (rd, output) = reader.await.expect("reader task");
    drop((rd, wr));
    Outcome {
        messages,
        end,
        output,
    }
}

impl Outcome {
    /// The invariants every input must satisfy.
    pub fn check(&self) {
        for msg in &self.messages {
            assert!(msg.len() <= MAX_MESSAGE, "message of {} bytes", msg.len());
            if let Message::Text(t) = msg {
                assert!(
                    std::str::from_utf8(t.as_bytes()).is_ok(),
                    "text message is not UTF-8"
                );
            }
        }
        let close = check_server_output(&self.output);
        let expected_code = match &self.end {
            Err(Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => None,
            Err(e) => e.close_code().map(u16::from),
            Ok(()) => None,
        };
        if let Some(code) = expected_code {
            assert_eq!(
                close,
                Some(Some(code)),
                "error {:?} must be reported with close code {code}",
                self.end
            );
        }
        if let Err(e) = &self.end {
            assert!(
                matches!(e, Error::Protocol(_) | Error::Capacity(_)),
                "unexpected error kind: {e:?}"
            );
        }
    }
}

/// Checks the server's output frame by frame; returns the close frame's code, if a close
/// frame was sent (`Some(None)`: one without a code).
fn check_server_output(mut buf: &[u8]) -> Option<Option<u16>> {
    let mut close = None;
    while !buf.is_empty() {
        assert!(close.is_none(), "the server wrote after its close frame");
        assert!(buf.len() >= 2, "truncated frame header from the server");
        let (b0, b1) = (buf[0], buf[1]);
        assert_eq!(b0 & 0x80, 0x80, "server frames here are final");
        assert_eq!(b0 & 0x70, 0, "RSV bits on a server control frame");
        assert_eq!(b1 & 0x80, 0, "server frames are never masked");
        let len = usize::from(b1 & 0x7F);
        assert!(len <= 125, "control frame payload over 125 bytes");
        assert!(buf.len() >= 2 + len, "truncated frame from the server");
        let payload = &buf[2..2 + len];
        match b0 & 0x0F {
            0xA => {}
            0x8 => {
                close = Some(match payload.len() {
                    0 => None,
                    1 => panic!("close frame with a 1-byte payload"),
                    _ => {
                        let code = u16::from_be_bytes([payload[0], payload[1]]);
                        assert!(
                            matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999),
                            "the server sent close code {code}"
                        );
                        assert!(
                            std::str::from_utf8(&payload[2..]).is_ok(),
                            "close reason is not UTF-8"
                        );
                        Some(code)
                    }
                });
            }
            op => panic!("the server sent opcode {op:#x} unprompted"),
        }
        buf = &buf[2 + len..];
    }
    close
}

// ---------------------------------------------------------------------------------------
// Client addresses: PROXY protocol and forwarding headers.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderName, HeaderValue};
use wshub::TrustedProxies;
use wshub::net::forwarded::{
    self, MAX_HOPS, Node, parse_forwarded_element, parse_x_forwarded_for_element,
};
use wshub::net::proxy_protocol::{self, MAX_LEN, Parsed, V1_MAX_LEN};

/// Target `proxy_protocol`: `data` is the start of a connection from a trusted load
/// balancer.
pub fn proxy_protocol(data: &[u8]) -> Parsed {
    let parsed = proxy_protocol::parse(data);
    match parsed {
        Parsed::Complete { len, source } => {
            assert!(
                len <= data.len() && len <= MAX_LEN,
                "length {len} out of bounds"
            );
            if data[0] == b'P' {
                assert!(len <= V1_MAX_LEN, "v1 header of {len} bytes");
                assert_eq!(&data[len - 2..len], b"\r\n", "v1 header ends with CRLF");
            } else {
                let declared = usize::from(u16::from_be_bytes([data[14], data[15]]));
                assert_eq!(len, 16 + declared, "v2 length");
            }
            if let Some(src) = source {
                assert!(data[0] == b'P' || matches!(data[13] >> 4, 1 | 2), "{src}");
            }
            // The header alone gives the same answer; every strict prefix is incomplete.
            assert_eq!(proxy_protocol::parse(&data[..len]), parsed);
            for k in 0..len {
                assert_eq!(
                    proxy_protocol::parse(&data[..k]),
                    Parsed::Incomplete,
                    "prefix {k} of a {len}-byte header"
                );
            }
        }
        Parsed::Incomplete => {
            assert!(
                data.len() < MAX_LEN,
                "incomplete after {} bytes",
                data.len()
            );
        }
        Parsed::Invalid(reason) => assert!(!reason.is_empty()),
    }
    // A verdict does not change with more bytes (an invalid header's reason may: more
    // bytes may show another fault first).
    let mut more = data.to_vec();
    more.extend_from_slice(b"\r\n\r\n\0PROXY \r\n");
    let later = proxy_protocol::parse(&more);
    match parsed {
        Parsed::Complete { .. } => assert_eq!(later, parsed, "verdict changed"),
        Parsed::Invalid(_) => assert!(matches!(later, Parsed::Invalid(_)), "{later:?}"),
        Parsed::Incomplete => {}
    }
    parsed
}

/// The trusted proxy sets [`forwarded`] picks from.
const TRUSTED: [&str; 4] = [
    "",
    "10.0.0.0/8",
    "10.0.0.0/8, 2001:db8::/32, 127.0.0.1",
    "0.0.0.0/0, ::/0",
];

/// Target `forwarded`: the first byte picks the header (bit 0: `X-Forwarded-For`, else
/// `Forwarded`), the trusted set (bits 1-2, see [`TRUSTED`]) and the TCP peer (bit 3:
/// 192.0.2.1, else 10.0.0.1); the rest, split at `\n`, are the header's lines.
pub fn forwarded(data: &[u8]) -> Option<Result<SocketAddr, forwarded::Malformed>> {
    let (&flags, rest) = data.split_first()?;
    let xff = flags & 1 != 0;
    let name = HeaderName::from_static(if xff { "x-forwarded-for" } else { "forwarded" });
    let trusted: TrustedProxies = TRUSTED[usize::from((flags >> 1) & 3)].parse().unwrap();
    let peer: SocketAddr = if flags & 8 != 0 {
        "192.0.2.1:1000"
    } else {
        "10.0.0.1:1000"
    }
    .parse()
    .unwrap();
    let lines: Vec<HeaderValue> = rest
        .split(|&b| b == b'\n')
        .filter_map(|l| HeaderValue::from_bytes(l).ok())
        .collect();
    let mut headers = HeaderMap::new();
    for line in &lines {
        headers.append(name.clone(), line.clone());
    }
    let result = forwarded::client_addr(peer, &headers, &trusted);

    if !trusted.contains(peer.ip()) {
        assert_eq!(
            result,
            Ok(peer),
            "a header from an untrusted peer was believed"
        );
    }
    if let Ok(client) = result {
        // Several lines are one list: joined, they give the same client.
        let joined: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        let joined = joined.join(&b", "[..]);
        if let Ok(joined) = HeaderValue::from_bytes(&joined) {
            let mut one = HeaderMap::new();
            if !lines.is_empty() {
                one.append(name.clone(), joined);
            }
            assert_eq!(
                forwarded::client_addr(peer, &one, &trusted),
                Ok(client),
                "joined lines resolve differently"
            );
        }
        // What the client writes at the left cannot move an untrusted client the walk
        // found.
        if client != peer && !trusted.contains(client.ip()) {
            let spoof = if xff { "6.6.6.6" } else { "for=6.6.6.6" };
            let mut spoofed = HeaderMap::new();
            spoofed.append(name.clone(), HeaderValue::from_static(spoof));
            for line in &lines {
                spoofed.append(name.clone(), line.clone());
            }
            assert_eq!(
                forwarded::client_addr(peer, &spoofed, &trusted),
                Ok(client),
                "a spoofed hop at the left changed the client"
            );
        }
    }
    // Every address node parses back from its canonical spelling.
    for line in &lines {
        let Ok(line) = line.to_str() else { continue };
        for element in line.split(',').take(MAX_HOPS) {
            let node = if xff {
                parse_x_forwarded_for_element(element)
            } else {
                parse_forwarded_element(element)
            };
            if let Ok(Node::Ip { ip, port }) = node {
                let spelled = forwarded_node(ip, port);
                assert_eq!(
                    parse_forwarded_element(&spelled),
                    Ok(Node::Ip { ip, port }),
                    "{spelled}"
                );
            }
        }
    }
    Some(result)
}

/// The canonical `Forwarded` element for an address node.
pub fn forwarded_node(ip: IpAddr, port: Option<u16>) -> String {
    match (ip, port) {
        (IpAddr::V4(ip), None) => format!("for={ip}"),
        (IpAddr::V4(ip), Some(port)) => format!("for=\"{ip}:{port}\""),
        (IpAddr::V6(ip), None) => format!("for=\"[{ip}]\""),
        (IpAddr::V6(ip), Some(port)) => format!("for=\"[{ip}]:{port}\""),
    }
}
