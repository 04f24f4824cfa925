//! What can go wrong for a client: [`ClientError`] (a request, a join), [`ServerError`]
//! (the server's refusal, with its protocol code) and [`Disconnect`] (why a
//! connection ended).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::protocol::ErrorCode;

/// A boxed error from a token provider.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a request (`join`, `publish`, `call`, `leave`) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with an error (`ok: false`): see [`ServerError::code`].
    #[error("the server refused: {0}")]
    Server(ServerError),
    /// No reply within the request timeout (waiting for a connection included).
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The request was sent but the connection ended before its reply: it may or may
    /// not have taken effect (a publish may have been delivered). It is not sent again,
    /// so it is never duplicated.
    #[error("the connection ended before the reply (the request may have taken effect)")]
    ConnectionLost,
    /// A fire-and-forget send (an ephemeral publish) while the client is not connected:
    /// it is dropped rather than sent late.
    #[error("not connected")]
    NotConnected,
    /// This client already follows the room (one [`Subscription`](super::Subscription)
    /// per room).
    #[error("already joined {0}")]
    AlreadyJoined(String),
    /// The outbound queue of the connection is full (the server does not read):
    /// the request was not sent.
    #[error("the connection's outbound queue is full")]
    QueueFull,
    /// The client was closed ([`Client::close`](super::Client::close), or every
    /// handle dropped).
    #[error("the client is closed")]
    Closed,
    /// The client stopped reconnecting (see [`ConnectionState::GaveUp`]).
    ///
    /// [`ConnectionState::GaveUp`]: super::ConnectionState::GaveUp
    #[error("the client gave up: {0}")]
    GaveUp(Disconnect),
    /// The request's data could not be serialized.
    #[error("cannot encode the request: {0}")]
    Encode(#[source] serde_json::Error),
    /// The reply did not deserialize into the expected type.
    #[error("cannot decode the reply: {0}")]
    Decode(#[source] serde_json::Error),
    /// The client cannot be built: a bad URL, wss:// without TLS, no runtime.
    #[error("invalid client configuration: {0}")]
    Config(String),
}

impl ClientError {
    /// The protocol code of a [`ClientError::Server`] refusal, when this client knows
    /// it (`None` for every other error, and for a code newer than this client).
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server(e) => e.code(),
            _ => None,
        }
    }
}

/// An error the server sent: a failed `reply`, or a bare `error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ServerError {
    /// The code as on the wire, kept as text: a server may send a code newer than this
    /// client (PROTOCOL.md section 5 asks clients to take those as a generic failure).
    code: String,
    message: String,
}

impl ServerError {
    /// An error with this wire code and message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ServerError {
            code: code.into(),
            message: message.into(),
        }
    }

    /// The code, if this client knows it.
    pub fn code(&self) -> Option<ErrorCode> {
        serde_json::from_value(serde_json::Value::String(self.code.clone())).ok()
    }

    /// The code as the server wrote it (`"not_joined"`).
    pub fn code_str(&self) -> &str {
        &self.code
    }

    /// The message, for people: it may change, do not match on it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Why a connection ended, or why an attempt failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Disconnect {
    /// The server closed the connection with this close code and reason
    /// (PROTOCOL.md section 8).
    #[error("closed by the server with {code} {reason:?}")]
    Close {
        /// The close code (1005 when the close frame carried none).
        code: u16,
        /// The reason text, informative only.
        reason: String,
    },
    /// The server refused the upgrade with this HTTP status (401: the token; 403: not
    /// allowed; 429/503: limits, retried).
    #[error("upgrade refused with HTTP {status}")]
    Refused {
        /// The HTTP status.
        status: u16,
    },
    /// The connection could not be made, or broke: DNS, TCP, TLS, the handshake, a
    /// protocol error, a connection dropped without a close frame (what a browser
    /// reports as 1006).
    #[error("{0}")]
    Error(Arc<crate::Error>),
    /// Nothing arrived for [`ClientOptions::idle_timeout`](super::ClientOptions::idle_timeout):
    /// the server or the network is gone without a word.
    #[error("nothing received for the idle timeout")]
    IdleTimeout,
    /// The token provider failed.
    #[error("the token provider failed: {0}")]
    Token(Arc<dyn std::error::Error + Send + Sync>),
}

impl Disconnect {
    /// The close code, for [`Disconnect::Close`].
    pub fn close_code(&self) -> Option<u16> {
        match self {
            Disconnect::Close { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The HTTP status, for [`Disconnect::Refused`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Disconnect::Refused { status } => Some(*status),
            _ => None,
        }
    }
}

/// Why the client asks its token provider for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenReason {
    /// Before the first connection.
    Initial,
    /// The server closed the connection with 1008 `token expired`.
    Expired,
    /// The server refused with 401 a token it had accepted before (a restarted
    /// server with a new key, a revoked session).
    Refused,
}

impl fmt::Display for TokenReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenReason::Initial => "initial",
            TokenReason::Expired => "expired",
            TokenReason::Refused => "refused",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_keep_unknown_codes() {
        let known = ServerError::new("not_joined", "join first");
        assert_eq!(known.code(), Some(ErrorCode::NotJoined));
        assert_eq!(known.to_string(), "not_joined: join first");
        let newer = ServerError::new("quota_exceeded", "later");
        assert_eq!(newer.code(), None);
        assert_eq!(newer.code_str(), "quota_exceeded");
        assert_eq!(
            ClientError::Server(known).code(),
            Some(ErrorCode::NotJoined)
        );
        assert_eq!(ClientError::Timeout(Duration::from_secs(1)).code(), None);
    }
}
