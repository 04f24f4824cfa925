//! Validation of an upgrade request (RFC 6455 §4.2.1) and what the server agrees to.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use tungstenite::handshake::derive_accept_key;

use super::{HandshakeConfig, WEBSOCKET_VERSION};
use crate::error::HandshakeError;
use crate::ws::deflate::{self, DeflateParams};

/// What the server agreed to for one upgrade.
#[derive(Debug, Clone)]
pub struct Negotiated {
    accept_key: String,
    subprotocol: Option<String>,
    deflate: Option<DeflateParams>,
    extensions_header: Option<String>,
}

impl Negotiated {
    /// The selected subprotocol, if the client offered one the server speaks.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// The permessage-deflate parameters, if compression was negotiated. Pass them to
    /// [`WebSocket::from_parts`].
    ///
    /// [`WebSocket::from_parts`]: crate::ws::WebSocket::from_parts
    pub fn deflate(&self) -> Option<DeflateParams> {
        self.deflate
    }

    /// The 101 Switching Protocols response (Upgrade, Connection, Sec-WebSocket-Accept,
    /// and Sec-WebSocket-Protocol / -Extensions when chosen).
    pub fn response(&self) -> Response<()> {
        let mut res = Response::new(());
        *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *res.version_mut() = Version::HTTP_11;
        let headers = res.headers_mut();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        // All three values were checked to be valid header values by `negotiate` (the
        // accept key is base64), so these conversions cannot fail in practice; a failure
        // would only drop the header, never panic.
        if let Ok(v) = HeaderValue::from_str(&self.accept_key) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        if let Some(Ok(v)) = self.subprotocol.as_deref().map(HeaderValue::from_str) {
            headers.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
        }
        if let Some(Ok(v)) = self.extensions_header.as_deref().map(HeaderValue::from_str) {
            headers.insert(header::SEC_WEBSOCKET_EXTENSIONS, v);
        }
        res
    }
}

/// Validate an upgrade request against RFC 6455 §4.2.1 (usable with requests parsed by
/// hyper/axum too) and decide what to answer.
///
/// Checks, in order, each failing with the [`HandshakeError`] whose
/// [`status`](HandshakeError::status) the client should get:
///
/// - method `GET`, else [`MethodNotAllowed`](HandshakeError::MethodNotAllowed) (405);
/// - HTTP/1.1 or later, a `Host` header (or an absolute request target), an `Upgrade`
///   token list containing `websocket`, a `Connection` token list containing `upgrade`
///   (both case-insensitive, e.g. `Connection: keep-alive, Upgrade`), no request body,
///   else [`BadRequest`](HandshakeError::BadRequest) (400);
/// - `Sec-WebSocket-Version: 13`, else
///   [`UnsupportedVersion`](HandshakeError::UnsupportedVersion) (426);
/// - one `Sec-WebSocket-Key` that is base64 for 16 bytes, else `BadRequest`;
/// - the `Origin` is allowed by [`HandshakeConfig::origin`], else
///   [`OriginNotAllowed`](HandshakeError::OriginNotAllowed) (403).
///
/// Then it selects a subprotocol (see [`HandshakeConfig::subprotocols`]; offers may be
/// spread over several `Sec-WebSocket-Protocol` headers) and, when
/// [`HandshakeConfig::deflate`] is on, permessage-deflate parameters.
pub fn negotiate<B>(req: &Request<B>, cfg: &HandshakeConfig) -> Result<Negotiated, HandshakeError> {
    if req.method() != Method::GET {
        return Err(HandshakeError::MethodNotAllowed);
    }
    if req.version() < Version::HTTP_11 {
        return Err(HandshakeError::BadRequest("HTTP/1.1 or later required"));
    }
    let headers = req.headers();
    if !headers.contains_key(header::HOST) && req.uri().authority().is_none() {
        return Err(HandshakeError::BadRequest("missing Host header"));
    }
    if !has_token(headers, &header::UPGRADE, "websocket") {
        return Err(HandshakeError::BadRequest(
            "missing or invalid Upgrade header",
        ));
    }
    if !has_token(headers, &header::CONNECTION, "upgrade") {
        return Err(HandshakeError::BadRequest(
            "missing or invalid Connection header",
        ));
    }
    // Bytes after the head belong to the WebSocket stream; a body would be misread as
    // frames.
    if has_body(headers) {
        return Err(HandshakeError::BadRequest(
            "an upgrade request must not have a body",
        ));
    }
    // A missing version is answered like a wrong one: 426 tells the client which version
    // to use (RFC 6455 §4.4).
    if single_value(headers, &header::SEC_WEBSOCKET_VERSION) != Some(WEBSOCKET_VERSION) {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let key = single_value(headers, &header::SEC_WEBSOCKET_KEY)
        .filter(|key| is_valid_key(key))
        .ok_or(HandshakeError::BadRequest(
            "missing or invalid Sec-WebSocket-Key header",
        ))?;

    let mut origins = headers.get_all(header::ORIGIN).iter();
    let origin = match (origins.next(), origins.next()) {
        (None, _) => None,
        (Some(value), None) => Some(
            value
                .to_str()
                .map_err(|_| HandshakeError::BadRequest("invalid Origin header"))?
                .trim(),
        ),
        // Two origins are ambiguous: whichever one we checked, the other could be the
        // one the application (or a proxy) trusts.
        (Some(_), Some(_)) => {
            return Err(HandshakeError::BadRequest("more than one Origin header"));
        }
    };
    if !cfg.origin.allows(origin) {
        return Err(HandshakeError::OriginNotAllowed);
    }

    // Server preference wins (RFC 6455 leaves the choice to the server). A selected name
    // equals one of the client's tokens, so it is a valid header value.
    let subprotocol = cfg
        .subprotocols
        .iter()
        .find(|ours| {
            list_tokens(headers, &header::SEC_WEBSOCKET_PROTOCOL).any(|t| t == ours.as_str())
        })
        .cloned();

    let (deflate, extensions_header) = if cfg.deflate {
        let offers = headers
            .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
            .iter()
            .filter_map(|v| v.to_str().ok());
        match deflate::negotiate_server(offers) {
            // Only agree to compression if the answer can actually be sent: a client that
            // does not see the header would not expect compressed frames.
            Some((params, value)) if HeaderValue::from_str(&value).is_ok() => {
                (Some(params), Some(value))
            }
            _ => (None, None),
        }
    } else {
        (None, None)
    };

    Ok(Negotiated {
        accept_key: derive_accept_key(key.as_bytes()),
        subprotocol,
        deflate,
        extensions_header,
    })
}

/// Whether a comma-separated token list in any of the `name` headers contains `token`
/// (ASCII case-insensitive). Values that are not visible ASCII are ignored.
pub(super) fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    list_tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token))
}

/// The non-empty, trimmed elements of the comma-separated lists in all `name` headers.
fn list_tokens<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The trimmed value of a header that must appear exactly once; `None` when it is
/// missing, repeated or not visible ASCII.
pub(super) fn single_value<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok().map(str::trim)
}

/// Whether the head announces a message body.
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes().trim_ascii() != b"0")
}

/// Whether `key` is base64 for 16 bytes: 22 base64 digits and `==` (RFC 6455 §4.1).
///
/// The 4 unused bits of the last digit are not required to be zero: the key is only
/// hashed, never decoded, so a lenient check costs nothing and refuses no sloppy client.
fn is_valid_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    bytes.len() == 24
        && bytes[22..] == *b"=="
        && bytes[..22]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

#[cfg(test)]
mod tests;
