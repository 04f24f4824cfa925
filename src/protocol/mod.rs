//! The `wshub.v1` wire protocol: the JSON text frames clients and the hub exchange.
//!
//! Clients send [`ClientOp`]s, parsed with [`parse_client_op`], which tells every way a
//! frame can be malformed apart ([`ProtocolViolation`]) and keeps the request `id` when
//! it could be read, so the hub can answer the request instead of sending a bare error.
//!
//! The hub sends server messages built by the `encode_*` functions. They write straight
//! from borrowed data into one `String`: a room `message` is encoded once per publish
//! and the same bytes go to every subscriber. [`ServerMsg`] is the owned, parsed form of
//! those messages, for clients and tests.
//!
//! `PROTOCOL.md` at the repository root is the human-readable specification.

mod client;
pub(crate) mod presence;
mod server;
mod violation;

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use client::{ClientOp, parse_client_op};
pub use presence::{Presence, PresenceCount, PresenceDiff, PresenceMeta, PresencePage};
pub use server::{
    EncodedMessage, ServerMsg, encode_error, encode_joined, encode_left, encode_message,
    encode_presence_count, encode_presence_diff, encode_presence_state, encode_reply_err,
    encode_reply_ok, encode_welcome, try_encode_direct, try_encode_message, try_encode_reply_ok,
};
pub(crate) use server::{encode_joined_page, encode_reply_raw, encoded_len};
pub use violation::{ProtocolViolation, ViolationKind};

/// A position in a room's stream of stored messages (`PROTOCOL.md`, section 9): the
/// `seq` of a message within the stream's `epoch`.
///
/// `seq` counts the stream's stored messages from 1 (0: none yet), with no gaps. The
/// `epoch` changes whenever the store can no longer vouch for continuity (a restart of
/// an in-memory store, a stream freed by age, a reset): positions of different epochs
/// cannot be compared.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamPosition {
    /// The message's number in its stream.
    pub seq: u64,
    /// The stream's epoch: an opaque string of at most [`MAX_EPOCH_LEN`] characters.
    pub epoch: std::sync::Arc<str>,
}

impl StreamPosition {
    /// The position `seq` in `epoch`.
    pub fn new(seq: u64, epoch: impl Into<std::sync::Arc<str>>) -> Self {
        StreamPosition {
            seq,
            epoch: epoch.into(),
        }
    }
}

impl fmt::Display for StreamPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.seq, self.epoch)
    }
}

/// Longest `epoch` a client may send in a join's `since`, in characters.
pub const MAX_EPOCH_LEN: usize = 64;

/// The WebSocket subprotocol (`Sec-WebSocket-Protocol`) naming this version of the
/// protocol. Clients should offer it; a future incompatible version gets a new name.
pub const SUBPROTOCOL: &str = "wshub.v1";

/// The machine-readable code of an error sent to a client.
///
/// Serialized in snake_case (`"bad_request"`); [`ErrorCode::as_str`] gives the same text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame is not a valid op: not JSON, not an object, missing or unknown `op`,
    /// a missing field or a field of the wrong type. The connection stays open.
    BadRequest,
    /// The room does not exist (no namespace matches its name).
    NotFound,
    /// The authenticator refused this identity the action on this room.
    Forbidden,
    /// The op needs the connection to have joined the room first (`publish`, `leave`,
    /// `presence`).
    NotJoined,
    /// `data` does not match the room's message type.
    InvalidData,
    /// The connection sends faster than its rate limit allows; the op was dropped.
    RateLimited,
    /// A field is over its size limit (presence meta, message data).
    TooLarge,
    /// A `join` while the connection is already in as many rooms as it may be.
    TooManyRooms,
    /// A `join` to a room that already has as many connections as it accepts.
    RoomFull,
    /// A `call` whose method did not answer within the hub's RPC timeout
    /// ([`HubConfig::rpc_timeout`](crate::HubConfig::rpc_timeout)).
    Timeout,
    /// The server failed while handling the request (a method that panicked, a
    /// response that could not be encoded); not the client's fault.
    Internal,
    /// A store the server depends on (room history) failed or is unreachable: the op
    /// did not happen; try again later.
    Unavailable,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::InvalidData => "invalid_data",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `error` object of a failed reply or of a bare `error` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for programs.
    pub code: ErrorCode,
    /// What went wrong, for people; not stable, do not match on it.
    pub message: String,
}

/// How many characters of a client's own input an error message quotes at most.
pub(crate) const QUOTE_CHARS: usize = 32;

/// How many characters an error message carries at most: a last guard, in the
/// encoders, for messages that embed text from elsewhere (serde's diagnoses, which
/// can quote a client's string, or an application's refusal).
pub(crate) const MAX_ERROR_CHARS: usize = 256;

/// `s` quoted for an error message: at most [`QUOTE_CHARS`] characters, with `…`
/// when cut, and control, format (bidi) and other invisible characters escaped
/// (`\u{202e}`), so an error never relays large or deceptive client input.
pub(crate) fn quote(s: &str) -> String {
    let cut = match s.char_indices().nth(QUOTE_CHARS) {
        Some((i, _)) => &s[..i],
        None => s,
    };
    let mut out = format!("{cut:?}");
    if cut.len() < s.len() {
        out.insert(out.len() - 1, '…');
    }
    out
}

/// At most `max` characters of `s`, ending in `…` when cut.
pub(crate) fn clip(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(max) {
        Some((i, _)) => {
            let mut cut = s[..i].to_owned();
            cut.push('…');
            std::borrow::Cow::Owned(cut)
        }
        None => std::borrow::Cow::Borrowed(s),
    }
}

/// The empty JSON object, the meta of a join that sent none.
pub(crate) fn empty_object() -> Value {
    Value::Object(Map::new())
}

/// (De)serializes a connection id as a decimal string: ids are opaque to clients and
/// JavaScript numbers lose precision above 2^53.
pub(crate) mod conn_id_string {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(crate) fn serialize<S: Serializer>(id: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse()
            .map_err(|_| D::Error::custom("conn_id must be a decimal string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_serialize_as_their_str() {
        let all = [
            ErrorCode::BadRequest,
            ErrorCode::NotFound,
            ErrorCode::Forbidden,
            ErrorCode::NotJoined,
            ErrorCode::InvalidData,
            ErrorCode::RateLimited,
            ErrorCode::TooLarge,
            ErrorCode::TooManyRooms,
            ErrorCode::RoomFull,
            ErrorCode::Timeout,
            ErrorCode::Internal,
            ErrorCode::Unavailable,
        ];
        for code in all {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(code.to_string(), code.as_str());
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn conn_id_string_rejects_garbage() {
        assert!(ServerMsg::parse(r#"{"op":"welcome","user":"u","conn_id":"x"}"#).is_err());
        assert!(ServerMsg::parse(r#"{"op":"welcome","user":"u","conn_id":5}"#).is_err());
    }

    #[test]
    fn quote_cuts_and_escapes_client_input() {
        assert_eq!(quote("chat:lobby"), r#""chat:lobby""#);
        let long = quote(&"x".repeat(1_000_000));
        assert!(long.chars().count() <= QUOTE_CHARS + 3, "{long}");
        assert!(long.ends_with("…\""), "{long}");
        // Bidi overrides, controls and invisible characters are shown, not relayed.
        assert_eq!(quote("a\u{202e}b\u{0}c"), r#""a\u{202e}b\0c""#);
        assert_eq!(quote("\u{2060}"), r#""\u{2060}""#);
        assert_eq!(clip("héllo", 2), "hé…");
        assert_eq!(clip("hé", 2), "hé");
    }

    #[test]
    fn a_raw_reply_is_the_same_bytes_as_an_encoded_one() {
        let data = serde_json::json!({"rooms": [{"room": "chat:a", "users": 2}]});
        assert_eq!(
            encode_reply_raw(7, &data.to_string()),
            encode_reply_ok(7, &data)
        );
    }

    #[test]
    fn subprotocol_name() {
        assert_eq!(SUBPROTOCOL, "wshub.v1");
    }
}
