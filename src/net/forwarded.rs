//! The client's address from `Forwarded` (RFC 7239) and `X-Forwarded-For`, believed only
//! from a trusted proxy.
//!
//! Each proxy appends the address it received the request from, so the list reads
//! `client, proxy1, proxy2` and the TCP peer is the last proxy. Anyone can put anything
//! at the left end of the list (the client writes the header first), so the client is
//! found by the *rightmost-untrusted* rule: walk the list from the right, skipping
//! addresses of [`TrustedProxies`]; the first untrusted address is the client. If every
//! address is trusted, the leftmost one read is.
//!
//! Only the hops the walk reaches are parsed, and only the last [`MAX_HOPS`] are
//! considered, so garbage or a thousand entries a client put in front of the real list
//! cost nothing and change nothing.
//!
//! ```
//! use http::HeaderMap;
//! use wshub::TrustedProxies;
//! use wshub::net::forwarded::client_addr;
//!
//! let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
//! let mut headers = HeaderMap::new();
//! // The client claimed to be 198.51.100.1; the edge proxy 10.0.0.2 saw 203.0.113.9.
//! headers.insert("x-forwarded-for", "198.51.100.1, 203.0.113.9, 10.0.0.2".parse().unwrap());
//! let peer = "10.0.0.3:40000".parse().unwrap();
//! assert_eq!(client_addr(peer, &headers, &trusted).unwrap(), "203.0.113.9:0".parse().unwrap());
//! // From a peer that is not a trusted proxy, the header is ignored.
//! let stranger = "192.0.2.5:40000".parse().unwrap();
//! assert_eq!(client_addr(stranger, &headers, &trusted).unwrap(), stranger);
//! ```

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use http::{HeaderMap, HeaderValue};

use super::TrustedProxies;

/// Most hops read from the right end of the forwarding headers. Real chains are a few
/// proxies long; a longer list's left part was written by the client and is ignored.
pub const MAX_HOPS: usize = 32;

/// One hop named in a forwarding header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Node {
    /// An IP address, with the port when the proxy gave one.
    Ip {
        /// The address.
        ip: IpAddr,
        /// The port, if given (and not obfuscated).
        port: Option<u16>,
    },
    /// The proxy did not say: `unknown`, an obfuscated identifier (`_hidden`), or an
    /// element without `for=`.
    Hidden,
}

/// Why a forwarding header could not be read. The hub then counts the connection
/// under its TCP peer's address (and logs this at debug level); it is never refused
/// for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed forwarding header: {0}")]
pub struct Malformed(&'static str);

impl Malformed {
    /// What was wrong, for logs.
    pub fn reason(&self) -> &'static str {
        self.0
    }
}

/// The client's address: `peer` itself unless `peer` is a trusted proxy and a
/// `Forwarded` header (preferred) or else `X-Forwarded-For` names the client. Several
/// lines of one header are one list, in order. The port is `0` when the proxy gave
/// none.
pub fn client_addr(
    peer: SocketAddr,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
) -> Result<SocketAddr, Malformed> {
    if !trusted.contains(peer.ip()) {
        return Ok(peer);
    }
    let forwarded = headers.get_all(http::header::FORWARDED);
    if forwarded.iter().next().is_some() {
        walk(peer, forwarded.iter(), Kind::Forwarded, trusted)
    } else {
        let xff = headers.get_all("x-forwarded-for");
        walk(peer, xff.iter(), Kind::XForwardedFor, trusted)
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Forwarded,
    XForwardedFor,
}

/// The rightmost-untrusted walk over the last [`MAX_HOPS`] elements of `lines`.
fn walk<'a>(
    peer: SocketAddr,
    lines: impl Iterator<Item = &'a HeaderValue>,
    kind: Kind,
    trusted: &TrustedProxies,
) -> Result<SocketAddr, Malformed> {
    // A ring of the last MAX_HOPS elements (slices of the header values): splitting
    // the whole list is linear in the header size, which the handshake bounds;
    // parsing happens only for the hops the walk reaches.
    let mut ring = [""; MAX_HOPS];
    let mut seen = 0usize;
    let quotes = matches!(kind, Kind::Forwarded);
    for line in lines {
        let line = line
            .to_str()
            .map_err(|_| Malformed("a header value that is not visible ASCII"))?;
        for element in SplitList::new(line, b',', quotes) {
            let element = element?.trim_matches([' ', '\t']);
            if element.is_empty() {
                // Empty list elements are allowed (RFC 9110 §5.6.1).
                continue;
            }
            ring[seen % MAX_HOPS] = element;
            seen += 1;
        }
    }
    let mut nearest_trusted = peer;
    for i in 0..seen.min(MAX_HOPS) {
        let element = ring[(seen - 1 - i) % MAX_HOPS];
        let node = match kind {
            Kind::Forwarded => parse_forwarded_element(element)?,
            Kind::XForwardedFor => parse_x_forwarded_for_element(element)?,
        };
        match node {
            Node::Ip { ip, port } => {
                let addr = SocketAddr::new(ip, port.unwrap_or(0));
                if !trusted.contains(ip) {
                    return Ok(addr);
                }
                nearest_trusted = addr;
            }
            // The trusted proxy on its right saw the client but would not say who it
            // was: count the connection under that proxy.
            Node::Hidden => return Ok(nearest_trusted),
        }
    }
    Ok(nearest_trusted)
}

/// One element of a `Forwarded` header (`for=192.0.2.43;proto=https`, without the
/// commas around it): its `for=` node. Parameter names are case-insensitive; values are
/// tokens or quoted strings; other parameters are checked for syntax and ignored.
pub fn parse_forwarded_element(element: &str) -> Result<Node, Malformed> {
    let mut node = None;
    for pair in SplitList::new(element, b';', true) {
        let pair = pair?.trim_matches([' ', '\t']);
        if pair.is_empty() {
            continue;
        }
        let (name, value) = pair
            .split_once('=')
            .ok_or(Malformed("a forwarded-pair without '='"))?;
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(Malformed("a parameter name that is not a token"));
        }
        let value = unquote(value)?;
        if name.eq_ignore_ascii_case("for") {
            if node.is_some() {
                return Err(Malformed("two `for` parameters in one element"));
            }
            node = Some(parse_node(&value)?);
        }
    }
    Ok(node.unwrap_or(Node::Hidden))
}

/// One element of an `X-Forwarded-For` header: an IPv4 or IPv6 address, optionally
/// with a port (`192.0.2.1:4711`, `[2001:db8::1]:4711`), or `unknown`.
pub fn parse_x_forwarded_for_element(element: &str) -> Result<Node, Malformed> {
    let v = element.trim_matches([' ', '\t']);
    if v.eq_ignore_ascii_case("unknown") {
        return Ok(Node::Hidden);
    }
    if let Ok(ip) = v.parse::<IpAddr>() {
        return Ok(Node::Ip { ip, port: None });
    }
    if v.starts_with('[') {
        return parse_node(v);
    }
    match v.split_once(':') {
        Some((ip, port)) => Ok(Node::Ip {
            ip: IpAddr::V4(parse_ipv4(ip)?),
            port: Some(parse_port(port)?.ok_or(Malformed("an obfuscated port"))?),
        }),
        None => Err(Malformed("not an IP address")),
    }
}

/// A `node` of RFC 7239 §6: `unknown`, `_obfuscated`, `192.0.2.1`, `192.0.2.1:80`,
/// `[2001:db8::1]` or `[2001:db8::1]:80` (ports may be obfuscated too).
fn parse_node(v: &str) -> Result<Node, Malformed> {
    if v.eq_ignore_ascii_case("unknown") {
        return Ok(Node::Hidden);
    }
    if v.starts_with('_') {
        return if is_obfuscated(v) {
            Ok(Node::Hidden)
        } else {
            Err(Malformed("a bad obfuscated identifier"))
        };
    }
    let (ip, port) = if let Some(rest) = v.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or(Malformed("an unclosed '[' in an IPv6 node"))?;
        let ip: Ipv6Addr = ip
            .parse()
            .map_err(|_| Malformed("not an IPv6 address in brackets"))?;
        let port = match after {
            "" => None,
            _ => parse_port(
                after
                    .strip_prefix(':')
                    .ok_or(Malformed("bytes after ']' that are not a port"))?,
            )?,
        };
        (IpAddr::V6(ip), port)
    } else {
        match v.split_once(':') {
            Some((ip, port)) => (IpAddr::V4(parse_ipv4(ip)?), parse_port(port)?),
            None => (IpAddr::V4(parse_ipv4(v)?), None),
        }
    };
    Ok(Node::Ip { ip, port })
}

fn parse_ipv4(s: &str) -> Result<Ipv4Addr, Malformed> {
    s.parse()
        .map_err(|_| Malformed("not an IPv4 address (IPv6 goes in brackets)"))
}

/// `1*5DIGIT` up to 65535, or an obfuscated port (`None`).
fn parse_port(s: &str) -> Result<Option<u16>, Malformed> {
    if s.starts_with('_') && is_obfuscated(s) {
        return Ok(None);
    }
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Malformed("a bad port"));
    }
    s.parse()
        .map(Some)
        .map_err(|_| Malformed("a port over 65535"))
}

/// `"_" 1*(ALPHA / DIGIT / "." / "_" / "-")`.
fn is_obfuscated(s: &str) -> bool {
    s.len() > 1
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A parameter value: a token (taken leniently: any visible ASCII but `"` and `\`), or a
/// quoted string with its `\` escapes undone.
fn unquote(v: &str) -> Result<Cow<'_, str>, Malformed> {
    let Some(inner) = v.strip_prefix('"') else {
        if v.is_empty()
            || v.bytes()
                .any(|b| !b.is_ascii_graphic() || b == b'"' || b == b'\\')
        {
            return Err(Malformed(
                "a value that is neither a token nor a quoted string",
            ));
        }
        return Ok(Cow::Borrowed(v));
    };
    let inner = inner
        .strip_suffix('"')
        .ok_or(Malformed("bytes after a quoted string"))?;
    if !inner.contains(['\\', '"']) {
        return Ok(Cow::Borrowed(inner));
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(
                chars
                    .next()
                    .ok_or(Malformed("a '\\' at the end of a quoted string"))?,
            ),
            '"' => return Err(Malformed("bytes after a quoted string")),
            c => out.push(c),
        }
    }
    Ok(Cow::Owned(out))
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Splits `s` on `sep`, except inside quoted strings (when `quotes`); an unterminated
/// quoted string is an error.
struct SplitList<'a> {
    rest: Option<&'a str>,
    sep: u8,
    quotes: bool,
}

impl<'a> SplitList<'a> {
    fn new(s: &'a str, sep: u8, quotes: bool) -> Self {
        SplitList {
            rest: Some(s),
            sep,
            quotes,
        }
    }
}

impl<'a> Iterator for SplitList<'a> {
    type Item = Result<&'a str, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.rest?;
        let (mut quoted, mut escaped) = (false, false);
        for (i, b) in s.bytes().enumerate() {
            if escaped {
                escaped = false;
            } else if quoted && b == b'\\' {
                escaped = true;
            } else if self.quotes && b == b'"' {
                quoted = !quoted;
            } else if !quoted && b == self.sep {
                self.rest = Some(&s[i + 1..]);
                return Some(Ok(&s[..i]));
            }
        }
        self.rest = None;
        if quoted {
            return Some(Err(Malformed("an unterminated quoted string")));
        }
        Some(Ok(s))
    }
}

#[cfg(test)]
mod tests;
