//! The parts of a `ws://` / `wss://` URL that the client handshake needs.

use std::net::Ipv6Addr;

use super::invalid_input;
use crate::error::HandshakeError;

/// The parts of a `ws://` / `wss://` URL the handshake needs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct WsUrl {
    pub(crate) secure: bool,
    /// Host to connect to: a name or an IP address, IPv6 without brackets.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `Host` header value: the host as written (IPv6 in brackets) and the port when it
    /// is not the scheme's default.
    pub(crate) host_header: String,
    /// Request target: path and query, at least `/`.
    pub(crate) target: String,
}

impl WsUrl {
    /// Parse by hand: the `url` crate is not a dependency, and this subset (RFC 6455 §3)
    /// is small.
    pub(crate) fn parse(url: &str) -> Result<WsUrl, HandshakeError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid_input("WebSocket URL must start with ws:// or wss://"))?;
        let secure = if scheme.eq_ignore_ascii_case("ws") {
            false
        } else if scheme.eq_ignore_ascii_case("wss") {
            true
        } else {
            return Err(invalid_input("WebSocket URL scheme must be ws or wss"));
        };
        // RFC 6455 §3: fragment identifiers are meaningless in WebSocket URIs.
        if rest.contains('#') {
            return Err(invalid_input("WebSocket URL must not have a fragment"));
        }
        let (authority, target) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        if authority.contains('@') {
            return Err(invalid_input(
                "user info in WebSocket URLs is not supported",
            ));
        }

        let (host, port, bracketed) = if let Some(inner) = authority.strip_prefix('[') {
            let (host, after) = inner
                .split_once(']')
                .ok_or_else(|| invalid_input("unterminated IPv6 address in URL"))?;
            if host.parse::<Ipv6Addr>().is_err() {
                return Err(invalid_input("invalid IPv6 address in URL"));
            }
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| invalid_input("invalid URL authority"))?,
                ),
            };
            (host, port, true)
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port), false),
                None => (authority, None, false),
            }
        };
        if !bracketed && !is_reg_name(host) {
            return Err(invalid_input("invalid host in URL"));
        }

        let default_port = if secure { 443 } else { 80 };
        let port = match port {
            // RFC 3986 allows an empty port: it means the default.
            None | Some("") => default_port,
            Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u16>()
                .map_err(|_| invalid_input("invalid port in URL"))?,
            Some(_) => return Err(invalid_input("invalid port in URL")),
        };

        let mut host_header = if bracketed {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        if port != default_port {
            host_header.push_str(&format!(":{port}"));
        }

        // Only visible ASCII may go on the request line: a space or CR/LF in the path
        // would let the URL inject headers.
        if !target.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid_input(
                "URL path must be ASCII without spaces (percent-encode the rest)",
            ));
        }
        let target = if target.is_empty() {
            "/".to_owned()
        } else if target.starts_with('?') {
            format!("/{target}")
        } else {
            target.to_owned()
        };

        Ok(WsUrl {
            secure,
            host: host.to_owned(),
            port,
            host_header,
            target,
        })
    }
}

/// Whether `host` is a non-empty registered name or IPv4 address (RFC 3986 §3.2.2:
/// unreserved, percent-encoded and sub-delimiter characters).
fn is_reg_name(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b))
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[test]
    fn url_parsing() {
        let u = WsUrl::parse("ws://example.com").unwrap();
        assert_eq!(
            u,
            WsUrl {
                secure: false,
                host: "example.com".into(),
                port: 80,
                host_header: "example.com".into(),
                target: "/".into(),
            }
        );
        let u = WsUrl::parse("wss://example.com:8443/a/b?x=1&y=2").unwrap();
        assert!(u.secure);
        assert_eq!((u.port, u.host_header.as_str()), (8443, "example.com:8443"));
        assert_eq!(u.target, "/a/b?x=1&y=2");
        let u = WsUrl::parse("WSS://example.com:443?q").unwrap();
        assert_eq!(
            (u.port, u.host_header.as_str(), u.target.as_str()),
            (443, "example.com", "/?q")
        );
        let u = WsUrl::parse("ws://[::1]:9001/ws").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9001));
        assert_eq!(u.host_header, "[::1]:9001");
        let u = WsUrl::parse("ws://[::1]").unwrap();
        assert_eq!((u.port, u.host_header.as_str()), (80, "[::1]"));
        let u = WsUrl::parse("ws://127.0.0.1:/").unwrap();
        assert_eq!(u.port, 80);

        for bad in [
            "example.com",
            "http://example.com/",
            "ws://",
            "ws:///path",
            "ws://example.com:99999/",
            "ws://example.com:+80/",
            "ws://example.com:http/",
            "ws://::1/",
            "ws://[::1/",
            "ws://[nothost]/",
            "ws://[::1]x/",
            "ws://user@example.com/",
            "ws://example.com/#frag",
            "ws://example.com/a b",
            "ws://example.com/a\r\nX-Injected: 1",
            "ws://exa mple.com/",
        ] {
            match WsUrl::parse(bad) {
                Err(HandshakeError::Io(e)) => {
                    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
