//! Reading and writing HTTP/1.1 heads, bounded in size.

use std::io;

use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::HandshakeError;

/// Most header lines accepted in a request or response head; more is treated as an
/// oversized head (431) rather than a malformed one.
pub(crate) const MAX_HEADERS: usize = 64;

/// First size of the head buffer. Typical upgrade requests are 300-600 bytes, so most
/// handshakes never grow it.
const INITIAL_HEAD_BUFFER: usize = 1024;

/// Why a head could not be read; mapped to a [`HandshakeError`] per role.
pub(super) enum HeadError {
    TooLarge,
    Malformed(&'static str),
    Io(io::Error),
}

impl HeadError {
    pub(super) fn into_server_error(self) -> HandshakeError {
        match self {
            HeadError::TooLarge => HandshakeError::RequestTooLarge,
            HeadError::Malformed(why) => HandshakeError::BadRequest(why),
            HeadError::Io(e) => HandshakeError::Io(e),
        }
    }

    pub(super) fn into_client_error(self) -> HandshakeError {
        match self {
            HeadError::TooLarge => {
                HandshakeError::Refused("response head larger than max_response_size".into())
            }
            HeadError::Malformed(why) => HandshakeError::Refused(why.into()),
            HeadError::Io(e) => HandshakeError::Io(e),
        }
    }
}

/// A head parser: `Ok(None)` while the head is incomplete, else the head and its length.
type ParseHead<T> = fn(&[u8]) -> Result<Option<(T, usize)>, HeadError>;

/// Read until `parse` finds a complete head, never holding more than `max` bytes.
/// Returns the parsed head and the bytes read after it.
///
/// The buffer starts at 1 KiB and doubles up to `max`, so an idle or small handshake
/// costs little. The head is re-parsed from its start after each read; with heads of a
/// few KiB that is cheaper than keeping parser state across reads.
pub(super) async fn read_head<S, T>(
    stream: &mut S,
    max: usize,
    parse: ParseHead<T>,
) -> Result<(T, BytesMut), HeadError>
where
    S: AsyncRead + Unpin,
{
    let mut buf = vec![0; max.min(INITIAL_HEAD_BUFFER)];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            if filled >= max {
                return Err(HeadError::TooLarge);
            }
            buf.resize(buf.len().saturating_mul(2).min(max), 0);
        }
        let n = stream
            .read(&mut buf[filled..])
            .await
            .map_err(HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the end of the HTTP head",
            )));
        }
        filled += n;
        if let Some((head, len)) = parse(&buf[..filled])? {
            return Ok((head, BytesMut::from(&buf[len..filled])));
        }
    }
}

pub(super) fn parse_request(buf: &[u8]) -> Result<Option<(Request<()>, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed("malformed HTTP request")),
    };
    let method = req
        .method
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .ok_or(HeadError::Malformed("invalid method"))?;
    let uri = req
        .path
        .and_then(|p| p.parse::<Uri>().ok())
        .ok_or(HeadError::Malformed("invalid request target"))?;
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = http_version(req.version)?;
    copy_headers(req.headers, request.headers_mut())?;
    Ok(Some((request, len)))
}

pub(super) fn parse_response(buf: &[u8]) -> Result<Option<(Response<()>, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    let len = match res.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed("malformed HTTP response")),
    };
    let status = res
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(HeadError::Malformed("invalid HTTP status code"))?;
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = http_version(res.version)?;
    copy_headers(res.headers, response.headers_mut())?;
    Ok(Some((response, len)))
}

fn http_version(minor: Option<u8>) -> Result<Version, HeadError> {
    match minor {
        Some(0) => Ok(Version::HTTP_10),
        Some(1) => Ok(Version::HTTP_11),
        _ => Err(HeadError::Malformed("unsupported HTTP version")),
    }
}

fn copy_headers(src: &[httparse::Header<'_>], dst: &mut HeaderMap) -> Result<(), HeadError> {
    dst.reserve(src.len());
    for h in src {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| HeadError::Malformed("invalid header name"))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| HeadError::Malformed("invalid header value"))?;
        dst.append(name, value);
    }
    Ok(())
}

/// A response with a short `text/plain` body that closes the connection.
pub(super) fn encode_text_response(
    status: StatusCode,
    mut headers: HeaderMap,
    body: &str,
) -> Vec<u8> {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    // A 426 also names `Upgrade` here, as RFC 9110 §7.8 asks of any message carrying an
    // Upgrade header.
    let connection = if headers.contains_key(header::UPGRADE) {
        "Upgrade, close"
    } else {
        "close"
    };
    headers.insert(header::CONNECTION, HeaderValue::from_static(connection));
    let mut out = encode_status_head(status, &headers);
    out.extend_from_slice(body.as_bytes());
    out
}

/// `HTTP/1.1 <status>` and `headers`, up to and including the empty line.
pub(super) fn encode_status_head(status: StatusCode, headers: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    encode_headers(&mut out, headers);
    out.extend_from_slice(b"\r\n");
    out
}

pub(super) fn encode_headers(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        push_header_name(out, name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Write a header name in its usual spelling. `http` keeps names in lower case; HTTP
/// does not care, but some hand-written clients and servers compare
/// `Sec-WebSocket-Accept` byte for byte.
fn push_header_name(out: &mut Vec<u8>, name: &HeaderName) {
    let canonical = match name.as_str() {
        "sec-websocket-accept" => Some("Sec-WebSocket-Accept"),
        "sec-websocket-extensions" => Some("Sec-WebSocket-Extensions"),
        "sec-websocket-key" => Some("Sec-WebSocket-Key"),
        "sec-websocket-protocol" => Some("Sec-WebSocket-Protocol"),
        "sec-websocket-version" => Some("Sec-WebSocket-Version"),
        _ => None,
    };
    if let Some(canonical) = canonical {
        out.extend_from_slice(canonical.as_bytes());
        return;
    }
    let mut upper = true;
    for &b in name.as_str().as_bytes() {
        out.push(if upper { b.to_ascii_uppercase() } else { b });
        upper = b == b'-';
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_written_in_their_usual_spelling() {
        let mut headers = HeaderMap::new();
        headers.insert("sec-websocket-accept", HeaderValue::from_static("x"));
        headers.insert("www-authenticate", HeaderValue::from_static("Bearer"));
        let head = encode_status_head(StatusCode::SWITCHING_PROTOCOLS, &headers);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: x\r\nWww-Authenticate: Bearer\r\n\r\n"
        );
    }
}
