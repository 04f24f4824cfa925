//! The fuzz targets' logic (`fuzz/src/lib.rs`, shared with `fuzz/fuzz_targets/`) run on
//! stable over a few thousand seeded pseudo-random inputs, so CI exercises the targets
//! without nightly or libFuzzer. Each test stops after its input count or about 5 s,
//! whichever comes first.
//!
//! Inputs are mostly structure-aware (sequences of plausible client frames, compressed
//! payloads, then a few random byte flips or a truncation), since purely random bytes
//! rarely get past the first frame header; some are purely random.
//!
//! The client-address targets (`proxy_protocol`, `forwarded`) also run over their seed
//! corpus in `fuzz/seeds/` and mutations of it.

#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod fuzz_logic;

use std::io::Write as _;
use std::time::{Duration, Instant};

use fuzz_logic::encode_frame;
use wshub::Error;
use wshub::error::{CapacityError, ProtocolError};

const BUDGET: Duration = Duration::from_secs(5);

/// xorshift64*: deterministic, seeded inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
    /// Fewer than `n` random bytes.
    fn bytes_below(&mut self, n: usize) -> Vec<u8> {
        let len = self.below(n);
        self.bytes(len)
    }
    /// Text of 1- to 4-byte characters, at most `len` bytes.
    fn text(&mut self, len: usize) -> Vec<u8> {
        let mut s = String::new();
        loop {
            let r = self.next();
            let c = match r % 4 {
                0 => char::from(b'a' + (r >> 8) as u8 % 26),
                1 => 'é',
                2 => '€',
                _ => '😀',
            };
            if s.len() + c.len_utf8() > len {
                return s.into_bytes();
            }
            s.push(c);
        }
    }
    /// A payload length: mostly small, sometimes across the 16-bit length form.
    fn len(&mut self) -> usize {
        match self.below(10) {
            0 if self.chance(4) => 126 + self.below(70_000),
            1..=3 => 126 + self.below(400),
            _ => self.below(126),
        }
    }
}

/// Raw deflate at `level`, sync flush, tail stripped (RFC 7692 §7.2.1); `finish`: end with
/// a final block instead.
fn compress(data: &[u8], level: u32, finish: bool) -> Vec<u8> {
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(level));
    enc.write_all(data).unwrap();
    if finish {
        return enc.finish().unwrap();
    }
    let mut out = enc.flush_finish().unwrap();
    out.truncate(out.len().saturating_sub(4));
    out
}

/// A few random byte flips, sometimes a truncation.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    if rng.chance(3) {
        for _ in 0..1 + rng.below(3) {
            let i = rng.below(data.len());
            data[i] ^= 1 << rng.below(8);
        }
    }
    if rng.chance(8) {
        let keep = rng.below(data.len());
        data.truncate(keep);
    }
}

/// One input for the `frames` target: a flags byte, then plausible client frames.
fn frames_input(rng: &mut Rng) -> Vec<u8> {
    if rng.chance(10) {
        let len = rng.below(300);
        return rng.bytes(len);
    }
    let deflate = rng.chance(2);
    let flags = u8::from(deflate) | (rng.below(8) as u8) << 1;
    let mut out = vec![flags];
    let mask = |rng: &mut Rng| (rng.next() as u32).to_be_bytes();
    for _ in 0..rng.below(8) {
        let (opcode, fin, rsv1, payload) = match rng.below(12) {
            // A whole or fragmented data message.
            0..=5 => {
                let text = rng.chance(2);
                let len = rng.len();
                let mut data = if text { rng.text(len) } else { rng.bytes(len) };
                if text && rng.chance(6) {
                    // Maybe end inside a character.
                    let cut = rng.below(4).min(data.len());
                    data.truncate(data.len() - cut);
                }
                let compressed = deflate && rng.chance(2);
                let data = if compressed {
                    compress(&data, rng.below(10) as u32, rng.chance(8))
                } else {
                    data
                };
                let op = if text { 0x1 } else { 0x2 };
                let parts = 1 + rng.below(3);
                let step = data.len() / parts + 1;
                for (i, piece) in data.chunks(step).enumerate() {
                    let last = (i + 1) * step >= data.len();
                    let op = if i == 0 { op } else { 0x0 };
                    let rsv = if i == 0 && compressed { 0x40 } else { 0 };
                    encode_frame(&mut out, u8::from(last) << 7 | rsv | op, piece, mask(rng));
                }
                if data.is_empty() {
                    let rsv = if compressed { 0x40 } else { 0 };
                    encode_frame(&mut out, 0x80 | rsv | op, &[], mask(rng));
                }
                continue;
            }
            6 | 7 => (0x9, true, false, rng.bytes_below(126)),
            8 => (0xA, true, false, rng.bytes_below(126)),
            9 => {
                let mut p = [1000u16, 1001, 1005, 1015, 2000, 3000, 4999, 5000][rng.below(8)]
                    .to_be_bytes()
                    .to_vec();
                let reason = rng.below(20);
                p.extend(rng.text(reason));
                (0x8, true, false, p)
            }
            // Odd frames: a stray continuation, a reserved opcode, a fragmented ping.
            10 => (0x0, rng.chance(2), false, rng.bytes_below(20)),
            _ => (
                [0x3u8, 0xB, 0x9][rng.below(3)],
                rng.chance(2),
                rng.chance(2),
                rng.bytes_below(200),
            ),
        };
        let b0 = u8::from(fin) << 7 | u8::from(rsv1) << 6 | opcode;
        encode_frame(&mut out, b0, &payload, mask(rng));
    }
    mutate(rng, &mut out);
    out
}

/// One input for the `inflate` target: a compressed payload (maybe damaged).
fn inflate_input(rng: &mut Rng) -> Vec<u8> {
    match rng.below(10) {
        0 => {
            let len = rng.below(200);
            rng.bytes(len)
        }
        // Inflates past the 1 MiB limit.
        1 if rng.chance(20) => compress(&vec![b'a'; (1 << 20) + 1 + rng.below(10)], 9, false),
        _ => {
            let len = rng.len();
            let data = if rng.chance(2) {
                rng.text(len)
            } else {
                rng.bytes(len)
            };
            let mut out = compress(&data, rng.below(10) as u32, rng.chance(6));
            if rng.chance(6) {
                // Bytes after a final block are ignored.
                let extra = rng.below(8);
                out.extend(rng.bytes(extra));
            }
            mutate(rng, &mut out);
            out
        }
    }
}

/// An error's variant, without the numbers it carries.
fn error_kind(e: &Error) -> String {
    match e {
        Error::Protocol(ProtocolError::UnknownOpcode(_)) => "Protocol(UnknownOpcode)".into(),
        Error::Capacity(CapacityError::FrameTooLarge { .. }) => "Capacity(FrameTooLarge)".into(),
        Error::Capacity(CapacityError::MessageTooLarge { .. }) => {
            "Capacity(MessageTooLarge)".into()
        }
        other => format!("{other:?}"),
    }
}

fn run(
    name: &str,
    max_inputs: usize,
    seed: u64,
    input: fn(&mut Rng) -> Vec<u8>,
    target: fn(&[u8]) -> Option<fuzz_logic::Outcome>,
) {
    let mut rng = Rng(seed);
    let start = Instant::now();
    let mut done = 0;
    // How the inputs ended, to see that they reach past the first frame header.
    let mut ends = std::collections::BTreeMap::<String, usize>::new();
    let mut messages = 0;
    while done < max_inputs && start.elapsed() < BUDGET {
        let data = input(&mut rng);
        if let Some(outcome) = target(&data) {
            messages += outcome.messages.len();
            let end = match &outcome.end {
                Ok(()) => "Ok(None): closed normally".to_owned(),
                Err(e) => error_kind(e),
            };
            *ends.entry(end).or_default() += 1;
        }
        done += 1;
    }
    eprintln!(
        "{name}: {done} inputs in {:.1?}, {messages} messages delivered",
        start.elapsed()
    );
    for (end, n) in &ends {
        eprintln!("  {n:5}  {end}");
    }
    assert!(done >= 100, "only {done} inputs ran within {BUDGET:?}");
    assert!(messages > 0, "no input got a message through");
}

#[test]
fn frames_target_on_seeded_inputs() {
    run(
        "frames",
        4000,
        0x5EED_0001,
        frames_input,
        fuzz_logic::frames,
    );
}

#[test]
fn inflate_target_on_seeded_inputs() {
    run(
        "inflate",
        3000,
        0x5EED_0002,
        inflate_input,
        fuzz_logic::inflate,
    );
}

// ---------------------------------------------------------------------------------------
// Client-address parsers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use wshub::net::proxy_protocol::Parsed;

/// The files of `fuzz/seeds/<target>/`, which must exist and not be empty.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("seeds")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// An address from pools that overlap the fuzz targets' trusted sets.
fn ip(rng: &mut Rng) -> IpAddr {
    match rng.below(6) {
        0 => Ipv4Addr::new(10, 0, rng.below(3) as u8, rng.below(256) as u8).into(),
        1 => Ipv4Addr::new(203, 0, 113, rng.below(256) as u8).into(),
        2 => Ipv4Addr::from(rng.next() as u32).into(),
        3 => Ipv6Addr::new(
            0x2001,
            0xdb8,
            rng.below(3) as u16,
            0,
            0,
            0,
            0,
            rng.below(9) as u16,
        )
        .into(),
        4 => Ipv6Addr::from((rng.next() as u128) << 64 | rng.next() as u128).into(),
        _ => Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped().into(),
    }
}

fn port(rng: &mut Rng) -> String {
    match rng.below(8) {
        0 => "65536".into(),
        1 => "+1".into(),
        2 => "_obf".into(),
        _ => (rng.next() as u16).to_string(),
    }
}

/// One input for `proxy_protocol`: a v1 or v2 header (maybe damaged), then a few bytes.
fn proxy_input(rng: &mut Rng) -> Vec<u8> {
    if rng.chance(10) {
        let len = rng.below(120);
        return rng.bytes(len);
    }
    let mut out = if rng.chance(2) {
        let (src, dst) = (ip(rng), ip(rng));
        let proto = match (rng.below(6), src) {
            (0, _) => "UNKNOWN",
            (1, _) => "UDP4",
            (_, IpAddr::V4(_)) => "TCP4",
            (_, IpAddr::V6(_)) => "TCP6",
        };
        let mut line = format!("PROXY {proto} {src} {dst} {} {}\r\n", port(rng), port(rng));
        if rng.chance(6) {
            line = line.replacen(' ', "  ", 1 + rng.below(3));
        }
        line.into_bytes()
    } else {
        let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        let cmd = [0x21u8, 0x20, 0x21, 0x11, 0x22][rng.below(5)];
        let (src, dst) = (ip(rng), ip(rng));
        let mut block = Vec::new();
        let fam = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                block.extend(s.octets());
                block.extend(d.octets());
                0x11
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                block.extend(s.octets());
                block.extend(d.octets());
                0x21
            }
            _ => [0x00u8, 0x31, 0x12, 0x41][rng.below(4)],
        };
        block.extend((rng.next() as u32).to_be_bytes());
        if rng.chance(3) {
            let tlvs = rng.below(600);
            block.extend(rng.bytes(tlvs));
        }
        let len = if rng.chance(6) {
            rng.next() as u16
        } else {
            block.len() as u16
        };
        out.extend([cmd, fam]);
        out.extend(len.to_be_bytes());
        out.extend(block);
        out
    };
    let tail = rng.below(8);
    out.extend(rng.bytes(tail));
    mutate(rng, &mut out);
    out
}

/// One input for `forwarded`: a flags byte, then header lines of plausible hops.
fn forwarded_input(rng: &mut Rng) -> Vec<u8> {
    let flags = rng.next() as u8;
    let xff = flags & 1 != 0;
    let mut out = vec![flags];
    for line in 0..rng.below(4) {
        if line > 0 {
            out.push(b'\n');
        }
        for i in 0..rng.below(6) {
            if i > 0 {
                out.extend_from_slice(if rng.chance(2) { b", " } else { b"," });
            }
            let ip = ip(rng);
            let node = match rng.below(8) {
                0 => "unknown".to_owned(),
                1 if !xff => "_hidden".to_owned(),
                2 => format!("[{ip}]:{}", port(rng)),
                3 => match ip {
                    IpAddr::V4(v4) => format!("{v4}:{}", port(rng)),
                    IpAddr::V6(v6) => format!("[{v6}]"),
                },
                _ => ip.to_string(),
            };
            let element = if xff {
                node
            } else {
                let quoted = node.contains([':', '[']) || rng.chance(4);
                let node = if quoted { format!("\"{node}\"") } else { node };
                match rng.below(4) {
                    0 => format!("for={node};proto=https"),
                    1 => format!("by=\"a;b,c\";For={node}"),
                    2 => "proto=http".to_owned(),
                    _ => format!("for={node}"),
                }
            };
            out.extend_from_slice(element.as_bytes());
        }
    }
    mutate(rng, &mut out);
    out
}

/// Runs `target` over its seeds, mutations of them and generated inputs, until
/// `max_inputs` or the time budget; returns how many results `interesting` liked.
fn run_parser<T>(
    name: &str,
    max_inputs: usize,
    seed: u64,
    input: fn(&mut Rng) -> Vec<u8>,
    target: fn(&[u8]) -> T,
    interesting: fn(&T) -> bool,
) -> usize {
    let seeds = seeds(name);
    let mut rng = Rng(seed);
    let start = Instant::now();
    let (mut done, mut hits) = (0, 0);
    while done < max_inputs && start.elapsed() < BUDGET {
        let data = match done {
            i if i < seeds.len() => seeds[i].clone(),
            i if i % 3 == 0 => {
                let mut data = seeds[rng.below(seeds.len())].clone();
                mutate(&mut rng, &mut data);
                data
            }
            _ => input(&mut rng),
        };
        hits += usize::from(interesting(&target(&data)));
        done += 1;
    }
    eprintln!(
        "{name}: {done} inputs in {:.1?}, {hits} interesting",
        start.elapsed()
    );
    assert!(done >= 1000, "only {done} inputs ran within {BUDGET:?}");
    hits
}

#[test]
fn proxy_protocol_target_on_seeds_and_seeded_inputs() {
    let complete = run_parser(
        "proxy_protocol",
        30_000,
        0x5EED_0003,
        proxy_input,
        fuzz_logic::proxy_protocol,
        |p| {
            matches!(
                p,
                Parsed::Complete {
                    source: Some(_),
                    ..
                }
            )
        },
    );
    assert!(
        complete > 100,
        "only {complete} headers with an address parsed"
    );
}

#[test]
fn forwarded_target_on_seeds_and_seeded_inputs() {
    let resolved = run_parser(
        "forwarded",
        30_000,
        0x5EED_0004,
        forwarded_input,
        fuzz_logic::forwarded,
        |r| matches!(r, Some(Ok(addr)) if addr.port() != 1000),
    );
    assert!(resolved > 100, "only {resolved} inputs named a client");
}
