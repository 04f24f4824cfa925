//! The crate's one public [`Error`] type, its focused sub-enums, and the two tables that
//! map errors onto the wire: [`Error::close_code`] (WebSocket close codes) and
//! [`HandshakeError::status`] (HTTP statuses before the upgrade).

use std::io;

use http::StatusCode;

use tungstenite::protocol::frame::coding::CloseCode;

/// Shorthand for results whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in wshub.
///
/// A normal close (either side sends a close frame and the other answers) is not an
/// error: [`WebSocket::recv`](crate::ws::WebSocket::recv) returns `Ok(None)` then.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed (connection reset, broken pipe, ...).
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The peer broke RFC 6455 or RFC 7692; the connection was closed with the code
    /// given by [`ProtocolError::close_code`].
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// A frame or message was larger than the configured limit (close code 1009).
    #[error("capacity exceeded: {0}")]
    Capacity(#[from] CapacityError),
    /// The opening handshake failed; the peer got the HTTP status of
    /// [`HandshakeError::status`] (server role) or the server refused us (client role).
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The connection is closed (or closing): nothing more can be sent on it.
    #[error("connection closed")]
    ConnectionClosed,
    /// The peer did not finish the closing handshake or answer in time.
    #[error("timed out")]
    Timeout,
    /// A message could not be serialized to JSON (its `Serialize` impl failed).
    #[error("cannot encode message: {0}")]
    Encode(#[source] serde_json::Error),
    /// A store the hub depends on (room history) failed or is unreachable; nothing was
    /// published. Clients get the `unavailable` error code for the same failure.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl Error {
    /// The WebSocket close code this error is reported to the peer with, if the error
    /// happened after the upgrade and is the peer's fault or a limit.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            Error::Protocol(e) => Some(e.close_code()),
            Error::Capacity(_) => Some(CloseCode::Size),
            _ => None,
        }
    }
}

/// Ways a peer can break the WebSocket protocol after the handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A client sent an unmasked frame, or a server sent a masked one (RFC 6455 §5.1).
    #[error("frame masking does not match the peer's role")]
    BadMasking,
    /// RSV2 or RSV3 set, or RSV1 set where permessage-deflate does not allow it.
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// An opcode RFC 6455 does not define (3-7, 11-15).
    #[error("unknown opcode {0}")]
    UnknownOpcode(u8),
    /// A control frame longer than 125 bytes or fragmented.
    #[error("invalid control frame")]
    BadControlFrame,
    /// A continuation frame with no message in progress, or a new data message
    /// started before the previous one finished.
    #[error("unexpected continuation or data frame")]
    BadFragmentation,
    /// A text message (or close reason) that is not valid UTF-8 (close code 1007).
    #[error("invalid UTF-8 in text message")]
    InvalidUtf8,
    /// A compressed message that does not inflate (close code 1007).
    #[error("invalid compressed data")]
    BadCompression,
    /// A close frame with a one-byte payload or a code that may not be sent.
    #[error("invalid close frame")]
    BadClose,
    /// The peer closed the TCP connection without a close frame.
    #[error("connection reset without closing handshake")]
    ResetWithoutClosingHandshake,
}

impl ProtocolError {
    /// The close code RFC 6455 asks for when this violation is detected.
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::BadCompression => CloseCode::Invalid,
            ProtocolError::ResetWithoutClosingHandshake => CloseCode::Abnormal,
            _ => CloseCode::Protocol,
        }
    }
}

/// A limit was exceeded (close code 1009).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CapacityError {
    /// One frame's payload is over `max_frame_size`.
    #[error("frame of {size} bytes is over the limit of {max}")]
    FrameTooLarge {
        /// Announced payload size.
        size: u64,
        /// The configured limit.
        max: usize,
    },
    /// A message (after reassembly and inflation) is over `max_message_size`.
    #[error("message is over the limit of {max} bytes")]
    MessageTooLarge {
        /// The configured limit.
        max: usize,
    },
}

/// Why an opening handshake failed.
///
/// In the server role the peer is sent the HTTP response given by
/// [`HandshakeError::status`] before the connection is dropped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The request is not a valid WebSocket upgrade (HTTP 400); the text says which
    /// header or field is wrong.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The method is not `GET` (HTTP 405).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// `Sec-WebSocket-Version` is not 13 (HTTP 426 with `Sec-WebSocket-Version: 13`).
    #[error("unsupported WebSocket version")]
    UnsupportedVersion,
    /// The origin policy refused the request's `Origin` (HTTP 403).
    #[error("origin not allowed")]
    OriginNotAllowed,
    /// The request head is larger than the configured limit (HTTP 431).
    #[error("request head too large")]
    RequestTooLarge,
    /// The peer did not send a complete request (or response) in time.
    #[error("handshake timed out")]
    Timeout,
    /// The application refused the upgrade with this status (authentication, limits).
    #[error("rejected with HTTP {0}")]
    Rejected(StatusCode),
    /// Client role: the server answered with something other than a valid 101.
    #[error("server refused the upgrade: {0}")]
    Refused(String),
    /// The transport failed or closed during the handshake.
    #[error("I/O error during handshake: {0}")]
    Io(#[from] io::Error),
}

impl HandshakeError {
    /// The HTTP status a server answers this error with (`None` where no response can be
    /// sent: timeout, I/O failure, client-role errors).
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            HandshakeError::BadRequest(_) => Some(StatusCode::BAD_REQUEST),
            HandshakeError::MethodNotAllowed => Some(StatusCode::METHOD_NOT_ALLOWED),
            HandshakeError::UnsupportedVersion => Some(StatusCode::UPGRADE_REQUIRED),
            HandshakeError::OriginNotAllowed => Some(StatusCode::FORBIDDEN),
            HandshakeError::RequestTooLarge => Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
            HandshakeError::Rejected(s) => Some(*s),
            HandshakeError::Timeout | HandshakeError::Refused(_) | HandshakeError::Io(_) => None,
        }
    }

    /// Headers the HTTP response for this error must carry: `Sec-WebSocket-Version: 13`
    /// (and `Upgrade: websocket`) with a 426, `Allow: GET` with a 405.
    pub fn response_headers(&self) -> http::HeaderMap {
        use http::header::{self, HeaderValue};
        let mut headers = http::HeaderMap::new();
        match self {
            HandshakeError::UnsupportedVersion => {
                headers.insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
                // RFC 9110 §15.5.22: a 426 names the protocol to upgrade to.
                headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            }
            HandshakeError::MethodNotAllowed => {
                headers.insert(header::ALLOW, HeaderValue::from_static("GET"));
            }
            _ => {}
        }
        headers
    }
}
