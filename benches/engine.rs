//! Engine micro-benchmarks (criterion; short runs, the machine has 2 cores):
//!
//! - `frame_parse`: a buffer of many masked client frames (16 B, 1 KiB, 64 KiB payloads)
//!   read by a server `WebSocket` from an in-memory stream, in bytes/s;
//! - `prepared_encode`: `PreparedMessage::new` for 100 B / 4 KiB / 64 KiB of JSON text;
//! - `broadcast_4k_json`: the compression cost of one broadcast to 1 and 1,000
//!   deflate-negotiated receivers, the prepared way (compressed once, frame shared) and
//!   the naive way (flate2 compression per receiver).
//!
//! ```text
//! cargo bench --bench engine
//! ```
//!
//! After criterion, a short extra run prints the broadcast cost ratios.

use std::hint::black_box;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wshub::ws::handshake::{HandshakeConfig, Negotiated, negotiate};
use wshub::ws::{Message, Outbound, PreparedMessage, Role, Utf8Bytes, WebSocket, WsConfig};

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

/// Reads serve a buffer (at most `READ_MAX` bytes per read, like a socket); writes are
/// discarded.
struct MemStream {
    data: Bytes,
    pos: usize,
}

const READ_MAX: usize = 64 * 1024;

impl MemStream {
    fn new(data: Bytes) -> Self {
        MemStream { data, pos: 0 }
    }
}

impl AsyncRead for MemStream {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = buf
            .remaining()
            .min(this.data.len() - this.pos)
            .min(READ_MAX);
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for MemStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()))
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Appends one masked client frame (FIN set).
fn masked_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
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

/// About `total` bytes of masked binary frames of `size`-byte payloads, then a close
/// frame, so that `recv()` ends with `Ok(None)`.
fn client_stream(size: usize, total: usize) -> (Bytes, usize) {
    let payload: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let mut out = Vec::with_capacity(total + size + 64);
    let mut frames = 0;
    let mut mask: u32 = 0x1234_5678;
    while out.len() < total {
        mask = mask.rotate_left(7) ^ 0x9E37_79B9;
        masked_frame(&mut out, 0x2, &payload, mask.to_be_bytes());
        frames += 1;
    }
    masked_frame(&mut out, 0x8, &1000u16.to_be_bytes(), [1, 2, 3, 4]);
    (Bytes::from(out), frames)
}

/// JSON-like chat events, about `len` bytes of text (a JSON array of objects).
fn json_text(len: usize) -> String {
    let words = [
        "hello", "world", "room", "presence", "typing", "message", "lorem", "ipsum", "dolor",
        "sit", "amet", "fan-out", "deflate", "shared", "frame",
    ];
    let mut s = String::from("[");
    let mut i: usize = 0;
    while s.len() < len {
        if i > 0 {
            s.push(',');
        }
        let user = (i * 7919) % 1000;
        let body: Vec<&str> = (0..(3 + i % 6))
            .map(|k| words[(i * 13 + k * 7) % words.len()])
            .collect();
        s.push_str(&format!(
            r#"{{"type":"chat","room":"lobby-{}","seq":{},"ts":{},"user":{{"id":{},"name":"user{}"}},"body":"{}"}}"#,
            i % 5,
            1_000_000 + i,
            1_700_000_000_000u64 + (i as u64) * 137,
            user,
            user,
            body.join(" ")
        ));
        i += 1;
    }
    s.push(']');
    s.truncate(len.max(2) - 1);
    s.push(']');
    s
}

/// What a server agrees to for a plain `permessage-deflate` offer (the parameter type is
/// only obtainable, not nameable, outside the crate).
fn deflate_offer_accepted() -> Negotiated {
    let req = http::Request::get("/")
        .header("host", "bench")
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-extensions", "permessage-deflate")
        .body(())
        .expect("valid request");
    negotiate(&req, &HandshakeConfig::default().with_deflate(true)).expect("offer accepted")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// ---------------------------------------------------------------------------------------
// (a) frame parse throughput
// ---------------------------------------------------------------------------------------

fn frame_parse(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("frame_parse");
    for (name, size) in [("16B", 16usize), ("1KiB", 1024), ("64KiB", 64 * 1024)] {
        let (stream, frames) = client_stream(size, 1 << 20);
        group.throughput(Throughput::Bytes(stream.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &stream, |b, stream| {
            b.to_async(&rt).iter(|| async {
                let mut ws = WebSocket::from_parts(
                    MemStream::new(stream.clone()),
                    Role::Server,
                    WsConfig::default(),
                    None,
                    BytesMut::new(),
                );
                let mut n = 0;
                while let Some(msg) = ws.recv().await.expect("valid stream") {
                    black_box(&msg);
                    n += 1;
                }
                assert_eq!(n, frames);
            });
        });
    }
    group.finish();
}

// ---------------------------------------------------------------------------------------
// (b) prepared-frame encode throughput
// ---------------------------------------------------------------------------------------

fn prepared_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("prepared_encode");
    for (name, len) in [("100B", 100usize), ("4KiB", 4096), ("64KiB", 64 * 1024)] {
        let text = Utf8Bytes::from(json_text(len));
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &text, |b, text| {
            // Cloning `Utf8Bytes` is a reference-count increment.
            b.iter(|| PreparedMessage::new(Message::Text(black_box(text.clone()))));
        });
    }
    group.finish();
}

// ---------------------------------------------------------------------------------------
// (c) compression cost of one broadcast: shared vs per receiver
// ---------------------------------------------------------------------------------------

/// One broadcast the prepared way: prepare once, hand `n` receivers the compressed frame
/// (compressed by the first, shared by the rest).
fn broadcast_prepared(text: &Utf8Bytes, n: usize, frames: &mut Vec<Bytes>) {
    let msg = PreparedMessage::new(Message::Text(text.clone()));
    for _ in 0..n {
        frames.push(msg.deflated_frame(15).expect("JSON compresses").clone());
    }
    black_box(&frames);
    frames.clear();
}

/// The naive baseline: every receiver compresses the message itself (with a reused,
/// reset compressor, the cheapest a per-connection design gets) and frames it.
struct Naive {
    z: flate2::Compress,
    scratch: Vec<u8>,
}

impl Naive {
    fn new() -> Self {
        Naive {
            z: flate2::Compress::new_with_window_bits(flate2::Compression::fast(), false, 15),
            scratch: Vec::with_capacity(64 * 1024),
        }
    }

    /// Raw deflate, sync flush, tail stripped (RFC 7692 §7.2.1), framed FIN+RSV1 text.
    fn frame(&mut self, payload: &[u8]) -> Bytes {
        self.z.reset();
        self.scratch.clear();
        self.scratch.reserve(payload.len() + 64);
        self.z
            .compress_vec(payload, &mut self.scratch, flate2::FlushCompress::Sync)
            .expect("deflate");
        assert_eq!(
            self.z.total_in() as usize,
            payload.len(),
            "one call suffices"
        );
        let body = &self.scratch[..self.scratch.len() - 4];
        let mut out = BytesMut::with_capacity(body.len() + 10);
        out.extend_from_slice(&[0xC1]);
        if body.len() < 126 {
            out.extend_from_slice(&[body.len() as u8]);
        } else {
            out.extend_from_slice(&[126]);
            out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(body);
        out.freeze()
    }

    fn broadcast(&mut self, text: &Utf8Bytes, n: usize, frames: &mut Vec<Bytes>) {
        for _ in 0..n {
            let f = self.frame(text.as_bytes());
            frames.push(f);
        }
        black_box(&frames);
        frames.clear();
    }
}

/// `n` deflate-negotiated server connections over discarding streams, and their handles.
fn receivers(n: usize) -> (Vec<WebSocket<MemStream>>, Vec<Outbound>) {
    let params = deflate_offer_accepted().deflate();
    assert!(params.is_some());
    let sockets: Vec<_> = (0..n)
        .map(|_| {
            WebSocket::from_parts(
                MemStream::new(Bytes::new()),
                Role::Server,
                WsConfig::default(),
                params,
                BytesMut::new(),
            )
        })
        .collect();
    let outbounds = sockets.iter().map(WebSocket::outbound).collect();
    (sockets, outbounds)
}

fn broadcast(c: &mut Criterion) {
    let text = Utf8Bytes::from(json_text(4096));
    let rt = runtime();
    let mut group = c.benchmark_group("broadcast_4k_json");
    let mut frames = Vec::with_capacity(1000);
    for n in [1usize, 1000] {
        group.bench_with_input(BenchmarkId::new("prepared_shared", n), &n, |b, &n| {
            b.iter(|| broadcast_prepared(&text, n, &mut frames));
        });
    }
    // The same through real `Outbound::try_send` of 1,000 deflate-negotiated connections
    // (frame lookup, queue lock and push per receiver); queues are written out to a
    // discarding stream between iterations, untimed.
    let (mut sockets, outbounds) = receivers(1000);
    group.bench_function(BenchmarkId::new("outbound_try_send", 1000), |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let msg = PreparedMessage::new(Message::Text(text.clone()));
                for out in &outbounds {
                    out.try_send(&msg).expect("queue has room");
                }
                timed += start.elapsed();
                rt.block_on(async {
                    for ws in &mut sockets {
                        ws.flush().await.expect("discarding stream");
                    }
                });
            }
            timed
        });
    });
    let mut naive = Naive::new();
    for n in [1usize, 1000] {
        group.bench_with_input(BenchmarkId::new("naive_per_receiver", n), &n, |b, &n| {
            b.iter(|| naive.broadcast(&text, n, &mut frames));
        });
    }
    group.finish();
}

/// Mean time of `f` over about `budget`.
fn time_per_call(budget: Duration, mut f: impl FnMut()) -> Duration {
    f();
    let start = Instant::now();
    let mut calls = 0u32;
    while start.elapsed() < budget || calls < 3 {
        f();
        calls += 1;
    }
    start.elapsed() / calls
}

/// Prints the ratios the broadcast group is about (criterion's own output has no
/// ratios).
fn report_broadcast_ratios() {
    let text = Utf8Bytes::from(json_text(4096));
    let msg = PreparedMessage::new(Message::Text(text.clone()));
    let first = msg.deflated_frame(15).expect("compresses").clone();
    let shared =
        (0..1000).all(|_| msg.deflated_frame(15).expect("compresses").as_ptr() == first.as_ptr());
    let mut frames = Vec::with_capacity(1000);
    let budget = Duration::from_millis(700);
    let p1 = time_per_call(budget, || broadcast_prepared(&text, 1, &mut frames));
    let p1000 = time_per_call(budget, || broadcast_prepared(&text, 1000, &mut frames));
    let mut naive = Naive::new();
    let n1 = time_per_call(budget, || naive.broadcast(&text, 1, &mut frames));
    let n1000 = time_per_call(budget, || naive.broadcast(&text, 1000, &mut frames));
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!();
    println!(
        "broadcast of {} B JSON text (compressed to a {} B frame, zlib level 1):",
        text.len(),
        first.len()
    );
    println!("  all 1000 receivers share one compressed frame: {shared}");
    println!(
        "  prepared: 1 receiver {:.1} us, 1000 receivers {:.1} us  -> ratio 1000/1 = {:.2}",
        us(p1),
        us(p1000),
        p1000.as_secs_f64() / p1.as_secs_f64()
    );
    println!(
        "  naive:    1 receiver {:.1} us, 1000 receivers {:.1} us  -> ratio 1000/1 = {:.1}",
        us(n1),
        us(n1000),
        n1000.as_secs_f64() / n1.as_secs_f64()
    );
    println!(
        "  at 1000 receivers the naive broadcast costs {:.0}x the prepared one",
        n1000.as_secs_f64() / p1000.as_secs_f64()
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20);
    targets = frame_parse, prepared_encode, broadcast
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not (criterion then only
    // checks that each benchmark runs). Skip the ratios when a filter excludes them.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench_mode = args.iter().any(|a| a == "--bench");
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let wanted = filters.is_empty()
        || filters
            .iter()
            .any(|f| "broadcast_4k_json".contains(f.as_str()));
    if bench_mode && wanted {
        report_broadcast_ratios();
    }
}
