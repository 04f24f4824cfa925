//! The PROXY protocol (HAProxy's, versions 1 and 2): a header a TCP load balancer
//! writes at the start of the connection to say who the client is.
//!
//! [`parse`] is a pure function over the bytes received so far; the hub reads with it
//! (bounded in size and time) only from peers in
//! [`HubConfig::trusted_proxies`](crate::HubConfig::trusted_proxies) when
//! [`HubConfig::proxy_protocol`](crate::HubConfig::proxy_protocol) is on.
//!
//! ```
//! use wshub::net::proxy_protocol::{Parsed, parse};
//!
//! let bytes = b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n";
//! assert_eq!(
//!     parse(bytes),
//!     Parsed::Complete { len: 45, source: Some("192.0.2.1:56324".parse().unwrap()) },
//! );
//! assert_eq!(parse(b"PROXY TCP4 192.0"), Parsed::Incomplete);
//! assert!(matches!(parse(b"GET / HTTP/1.1\r\n"), Parsed::Invalid(_)));
//! ```

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest version 1 header, `\r\n` included (the specification's limit).
pub const V1_MAX_LEN: usize = 107;

/// Largest version 2 address block (addresses plus TLVs) accepted: 512 bytes. The
/// addresses take at most 216 (`AF_UNIX`); the TLVs load balancers add (AWS, GCP and
/// Azure endpoint ids, HAProxy's SSL summary) take tens to a couple of hundred. A
/// longer header is refused rather than buffered.
pub const V2_MAX_ADDR_LEN: usize = 512;

/// Longest header of either version: the most the hub reads of a PROXY header.
pub const MAX_LEN: usize = V2_HEADER_LEN + V2_MAX_ADDR_LEN;

/// The 12-byte version 2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Fixed part of a version 2 header: signature, version and command, family, length.
const V2_HEADER_LEN: usize = 16;

const V1_PREFIX: &[u8] = b"PROXY ";

/// What [`parse`] made of the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A whole header of `len` bytes; what follows belongs to the next protocol (TLS,
    /// HTTP). `source` is the client, or `None` when the proxy says to use the
    /// connection's own address (v2 `LOCAL`, v1 `UNKNOWN`, or an address that is not
    /// IP, such as `AF_UNIX`).
    Complete {
        /// Header length in bytes.
        len: usize,
        /// The client's address and port, if the header gives an IP one.
        source: Option<SocketAddr>,
    },
    /// A valid start of a header; more bytes are needed.
    Incomplete,
    /// Not a PROXY protocol header, or a broken one.
    Invalid(&'static str),
}

/// Parses a PROXY protocol header (v1 text or v2 binary) at the start of `buf`.
/// Never looks past the header (and never past [`MAX_LEN`] bytes).
pub fn parse(buf: &[u8]) -> Parsed {
    match buf.first() {
        None => Parsed::Incomplete,
        Some(b'P') => parse_v1(buf),
        Some(b'\r') => parse_v2(buf),
        Some(_) => Parsed::Invalid("not a PROXY protocol header"),
    }
}

fn parse_v1(buf: &[u8]) -> Parsed {
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] != V1_PREFIX[..n] {
        return Parsed::Invalid("not a PROXY protocol header");
    }
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(end) = window.iter().position(|&b| b == b'\r') else {
        if let Some(&b) = window.iter().find(|&&b| !(b' '..=b'~').contains(&b)) {
            return Parsed::Invalid(if b == b'\n' {
                "v1 header line ends without \\r"
            } else {
                "v1 header holds a byte that is not printable ASCII"
            });
        }
        return if buf.len() >= V1_MAX_LEN {
            Parsed::Invalid("v1 header longer than 107 bytes")
        } else {
            Parsed::Incomplete
        };
    };
    let line = &window[..end];
    if line.iter().any(|b| !(b' '..=b'~').contains(b)) {
        return Parsed::Invalid("v1 header holds a byte that is not printable ASCII");
    }
    match window.get(end + 1) {
        Some(b'\n') => {}
        Some(_) => return Parsed::Invalid("v1 header line ends without \\n"),
        None if buf.len() >= V1_MAX_LEN => {
            return Parsed::Invalid("v1 header longer than 107 bytes");
        }
        None => return Parsed::Incomplete,
    }
    if line.len() < V1_PREFIX.len() {
        return Parsed::Invalid("v1 header line too short");
    }
    // Printable ASCII, so UTF-8.
    let Ok(line) = std::str::from_utf8(&line[V1_PREFIX.len()..]) else {
        return Parsed::Invalid("v1 header is not ASCII");
    };
    let len = end + 2;
    let mut fields = line.split(' ');
    let source = match fields.next() {
        // "UNKNOWN" may be followed by anything, which is ignored.
        Some("UNKNOWN") => None,
        Some(proto @ ("TCP4" | "TCP6")) => {
            let rest: Vec<&str> = fields.collect();
            let [src, dst, sport, dport] = rest[..] else {
                return Parsed::Invalid("v1 TCP line needs exactly four fields");
            };
            let addrs = if proto == "TCP4" {
                src.parse::<Ipv4Addr>()
                    .ok()
                    .zip(dst.parse::<Ipv4Addr>().ok())
                    .map(|(s, _)| IpAddr::V4(s))
            } else {
                src.parse::<Ipv6Addr>()
                    .ok()
                    .zip(dst.parse::<Ipv6Addr>().ok())
                    .map(|(s, _)| IpAddr::V6(s))
            };
            let Some(src) = addrs else {
                return Parsed::Invalid("v1 address does not match its protocol");
            };
            let (Some(sport), Some(_)) = (v1_port(sport), v1_port(dport)) else {
                return Parsed::Invalid("v1 port is not a number from 0 to 65535");
            };
            Some(SocketAddr::new(src, sport))
        }
        _ => return Parsed::Invalid("v1 protocol is not TCP4, TCP6 or UNKNOWN"),
    };
    Parsed::Complete { len, source }
}

/// A decimal port: digits only (no sign, no spaces), at most 65535.
fn v1_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_v2(buf: &[u8]) -> Parsed {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] != V2_SIGNATURE[..n] {
        return Parsed::Invalid("not a PROXY protocol header");
    }
    if buf.len() < V2_HEADER_LEN {
        // Check the version and command as soon as they arrive.
        return match buf.get(12) {
            Some(&vc) if vc >> 4 != 2 || vc & 0xF > 1 => v2_bad_version(vc),
            _ => Parsed::Incomplete,
        };
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 || ver_cmd & 0xF > 1 {
        return v2_bad_version(ver_cmd);
    }
    let fam = buf[13];
    let addr_len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if addr_len > V2_MAX_ADDR_LEN {
        return Parsed::Invalid("v2 header longer than the 512-byte cap");
    }
    let len = V2_HEADER_LEN + addr_len;
    let Some(block) = buf.get(V2_HEADER_LEN..len) else {
        return Parsed::Incomplete;
    };
    if ver_cmd & 0xF == 0 {
        // LOCAL: the proxy's own connection (a health check); addresses are ignored.
        return Parsed::Complete { len, source: None };
    }
    let source = match fam {
        // AF_UNSPEC, or AF_UNIX (a socket path, no IP): use the connection's address.
        0x00 | 0x31 | 0x32 => None,
        // AF_INET, STREAM: src, dst (4 bytes each), src port, dst port.
        0x11 => match block.get(..12) {
            Some(a) => {
                let ip = Ipv4Addr::from([a[0], a[1], a[2], a[3]]);
                Some(SocketAddr::new(ip.into(), u16::from_be_bytes([a[8], a[9]])))
            }
            None => return Parsed::Invalid("v2 address block too short for IPv4"),
        },
        // AF_INET6, STREAM: src, dst (16 bytes each), src port, dst port.
        0x21 => match block.get(..36) {
            Some(a) => {
                let mut src = [0u8; 16];
                src.copy_from_slice(&a[..16]);
                let port = u16::from_be_bytes([a[32], a[33]]);
                Some(SocketAddr::new(Ipv6Addr::from(src).into(), port))
            }
            None => return Parsed::Invalid("v2 address block too short for IPv6"),
        },
        0x12 | 0x22 => return Parsed::Invalid("v2 header describes a datagram connection"),
        _ => return Parsed::Invalid("v2 unknown address family or transport"),
    };
    Parsed::Complete { len, source }
}

fn v2_bad_version(ver_cmd: u8) -> Parsed {
    if ver_cmd >> 4 != 2 {
        Parsed::Invalid("v2 header with a version other than 2")
    } else {
        Parsed::Invalid("v2 command is neither LOCAL nor PROXY")
    }
}

/// Reads one PROXY header from the start of `stream`, returning its source (see
/// [`Parsed::Complete`]) and the bytes read past it, which belong to the next protocol
/// and must be read before `stream`'s own (see [`Rewind`](super::rewind::Rewind)).
///
/// Reads at most [`MAX_LEN`] bytes, and for a v2 header never past it: first 16 bytes
/// (the v2 fixed part, one more than the shortest v1 header), then what the header says
/// it needs. No timeout here; the caller bounds the whole read.
pub(crate) async fn read_header<S>(stream: &mut S) -> io::Result<(Option<SocketAddr>, Bytes)>
where
    S: AsyncRead + Unpin,
{
    let mut buf = Vec::with_capacity(V1_MAX_LEN);
    let mut want = V2_HEADER_LEN;
    loop {
        let filled = buf.len();
        buf.resize(want, 0);
        let n = stream.read(&mut buf[filled..]).await?;
        buf.truncate(filled + n);
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside the PROXY protocol header",
            ));
        }
        match parse(&buf) {
            Parsed::Complete { len, source } => {
                return Ok((source, Bytes::copy_from_slice(&buf[len..])));
            }
            Parsed::Invalid(reason) => {
                return Err(io::Error::new(io::ErrorKind::InvalidData, reason));
            }
            Parsed::Incomplete if buf.len() < want => {}
            Parsed::Incomplete if buf[0] == b'P' => want = V1_MAX_LEN,
            Parsed::Incomplete => {
                // A v2 header with its fixed part read: exactly the rest of it.
                want = V2_HEADER_LEN + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
            }
        }
    }
}

#[cfg(test)]
mod tests;
