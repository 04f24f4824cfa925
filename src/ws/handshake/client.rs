//! Client role: the upgrade request, the checks on the server's answer, and [`connect`]
//! over TCP.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tungstenite::handshake::client::generate_key;
use tungstenite::handshake::derive_accept_key;

use super::http::{HeadError, encode_headers, parse_response, read_head};
use super::negotiate::{has_token, single_value};
use super::url::WsUrl;
use super::{ClientConfig, WEBSOCKET_VERSION, invalid_input};
use crate::error::HandshakeError;
use crate::ws::deflate::{self, DeflateParams};
use crate::ws::{Role, WebSocket, WsConfig};

/// Perform the client handshake on an already connected stream.
///
/// `url` is `ws://host[:port]/path[?query]` (`wss://` too, for use over a TLS stream;
/// only the host, port and path matter here). An invalid URL or subprotocol name is an
/// [`io::ErrorKind::InvalidInput`] error. Anything but a valid 101 answer from the
/// server is [`HandshakeError::Refused`] (with the status, e.g. `"HTTP 401
/// Unauthorized"`, or the header at fault); no answer within
/// [`ClientConfig::timeout`] is [`HandshakeError::Timeout`].
///
/// Returns the socket and the server's response (for its headers, e.g. the selected
/// `Sec-WebSocket-Protocol`).
///
/// [`io::ErrorKind::InvalidInput`]: std::io::ErrorKind::InvalidInput
pub async fn client_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    url: &str,
    cfg: &ClientConfig,
    ws: WsConfig,
) -> Result<(WebSocket<S>, Response<()>), HandshakeError> {
    let url = WsUrl::parse(url)?;
    let deadline = Instant::now().checked_add(cfg.timeout);
    handshake_until(stream, &url, cfg, ws, deadline).await
}

/// Connect over TCP to a `ws://` URL (resolve the host, connect, set `TCP_NODELAY`) and
/// perform the handshake.
///
/// [`ClientConfig::timeout`] bounds everything: resolution, connect and handshake. For
/// `wss://`, connect a TLS stream yourself and call [`client_handshake`].
pub async fn connect(
    url: &str,
    cfg: &ClientConfig,
    ws: WsConfig,
) -> Result<(WebSocket<TcpStream>, Response<()>), HandshakeError> {
    let url = WsUrl::parse(url)?;
    if url.secure {
        return Err(invalid_input(
            "wss:// needs TLS: connect a TLS stream and call client_handshake",
        ));
    }
    let deadline = Instant::now().checked_add(cfg.timeout);
    let stream = until(deadline, TcpStream::connect((url.host.as_str(), url.port)))
        .await
        .ok_or(HandshakeError::Timeout)??;
    // Messages are written whole; Nagle would only delay small ones (pings, chat lines).
    stream.set_nodelay(true)?;
    handshake_until(stream, &url, cfg, ws, deadline).await
}

/// Run `f` until `deadline` (`None`: a timeout too large to represent, i.e. none).
async fn until<F: Future>(deadline: Option<Instant>, f: F) -> Option<F::Output> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, f).await.ok(),
        None => Some(f.await),
    }
}

async fn handshake_until<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    url: &WsUrl,
    cfg: &ClientConfig,
    ws: WsConfig,
    deadline: Option<Instant>,
) -> Result<(WebSocket<S>, Response<()>), HandshakeError> {
    let key = generate_key();
    let request = encode_client_request(url, cfg, &key)?;
    let exchange = async {
        stream.write_all(&request).await?;
        stream.flush().await?;
        read_head(&mut stream, cfg.max_response_size, parse_response)
            .await
            .map_err(HeadError::into_client_error)
    };
    let (response, leftover) = until(deadline, exchange)
        .await
        .ok_or(HandshakeError::Timeout)??;
    let deflate = check_response(&response, &key, cfg)?;
    Ok((
        WebSocket::from_parts(stream, Role::Client, ws, deflate, leftover),
        response,
    ))
}

/// The permessage-deflate offer to send, if any.
fn deflate_offer(cfg: &ClientConfig) -> Option<HeaderValue> {
    if cfg.deflate {
        HeaderValue::from_str(deflate::CLIENT_OFFER).ok()
    } else {
        None
    }
}

/// The request head of the client handshake.
fn encode_client_request(
    url: &WsUrl,
    cfg: &ClientConfig,
    key: &str,
) -> Result<Vec<u8>, HandshakeError> {
    let mut headers = HeaderMap::new();
    let host = match cfg.headers.get(header::HOST) {
        Some(host) => host.clone(),
        None => {
            HeaderValue::from_str(&url.host_header).map_err(|_| invalid_input("invalid host"))?
        }
    };
    headers.insert(header::HOST, host);
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(
        header::SEC_WEBSOCKET_KEY,
        HeaderValue::from_str(key).map_err(|_| invalid_input("invalid key"))?,
    );
    headers.insert(
        header::SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static(WEBSOCKET_VERSION),
    );
    if !cfg.subprotocols.is_empty() {
        if !cfg.subprotocols.iter().all(|p| is_token(p)) {
            return Err(invalid_input("subprotocol names must be HTTP tokens"));
        }
        let list = cfg.subprotocols.join(", ");
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_str(&list).map_err(|_| invalid_input("invalid subprotocol"))?,
        );
    }
    if let Some(offer) = deflate_offer(cfg) {
        headers.insert(header::SEC_WEBSOCKET_EXTENSIONS, offer);
    }
    for (name, value) in &cfg.headers {
        if *name == header::HOST {
            continue;
        }
        if is_handshake_request_header(name) {
            tracing::warn!(header = %name, "ignoring extra header that would break the WebSocket handshake");
            continue;
        }
        headers.append(name.clone(), value.clone());
    }

    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(url.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    encode_headers(&mut out, &headers);
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

/// Headers the client request sets itself (or must not carry).
fn is_handshake_request_header(name: &HeaderName) -> bool {
    *name == header::UPGRADE
        || *name == header::CONNECTION
        || *name == header::SEC_WEBSOCKET_KEY
        || *name == header::SEC_WEBSOCKET_VERSION
        || *name == header::SEC_WEBSOCKET_PROTOCOL
        || *name == header::SEC_WEBSOCKET_EXTENSIONS
        || *name == header::CONTENT_LENGTH
        || *name == header::TRANSFER_ENCODING
}

/// Check the server's answer (RFC 6455 §4.1, client requirements 1-6) and return the
/// agreed permessage-deflate parameters.
fn check_response(
    res: &Response<()>,
    key: &str,
    cfg: &ClientConfig,
) -> Result<Option<DeflateParams>, HandshakeError> {
    let refused = |why: &str| HandshakeError::Refused(why.to_owned());
    if res.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(HandshakeError::Refused(format!("HTTP {}", res.status())));
    }
    let headers = res.headers();
    if !has_token(headers, &header::UPGRADE, "websocket") {
        return Err(refused("missing or invalid Upgrade header"));
    }
    if !has_token(headers, &header::CONNECTION, "upgrade") {
        return Err(refused("missing or invalid Connection header"));
    }
    let expected = derive_accept_key(key.as_bytes());
    if single_value(headers, &header::SEC_WEBSOCKET_ACCEPT) != Some(expected.as_str()) {
        return Err(refused("Sec-WebSocket-Accept does not match the key"));
    }

    let mut protocols = headers.get_all(header::SEC_WEBSOCKET_PROTOCOL).iter();
    match (protocols.next(), protocols.next()) {
        (None, _) => {}
        (Some(value), None) => {
            let chosen = value.to_str().map(str::trim).unwrap_or("");
            if !cfg.subprotocols.iter().any(|ours| ours == chosen) {
                return Err(refused("server selected a subprotocol we did not offer"));
            }
        }
        (Some(_), Some(_)) => return Err(refused("more than one Sec-WebSocket-Protocol header")),
    }

    // HTTP allows a list to be split over several header lines; joined, they are one
    // list, which `accept_client_response` parses (quoted strings included) and checks
    // to hold exactly one extension.
    let mut extensions = Vec::new();
    for value in headers.get_all(header::SEC_WEBSOCKET_EXTENSIONS) {
        let value = value
            .to_str()
            .map_err(|_| refused("invalid Sec-WebSocket-Extensions header"))?;
        // Empty list elements are allowed (RFC 9110 §5.6.1): an empty header selects
        // nothing.
        if !value.split(',').all(|e| e.trim().is_empty()) {
            extensions.push(value);
        }
    }
    if extensions.is_empty() {
        return Ok(None);
    }
    if deflate_offer(cfg).is_none() {
        return Err(refused("server selected an extension we did not offer"));
    }
    deflate::accept_client_response(&extensions.join(", "))
        .map(Some)
        .map_err(|why| {
            HandshakeError::Refused(format!("invalid permessage-deflate response: {why}"))
        })
}

/// Whether `s` is a non-empty HTTP token (RFC 9110 §5.6.2).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests;
