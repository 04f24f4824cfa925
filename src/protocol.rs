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

use std::fmt;
use std::io;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::presence::{Presence, PresenceDiff};

/// The WebSocket subprotocol (`Sec-WebSocket-Protocol`) naming this version of the
/// protocol. Clients should offer it; a future incompatible version gets a new name.
pub const SUBPROTOCOL: &str = "wshub.v1";

/// An operation a client sends, one per text frame, tagged by its `op` field.
///
/// Unknown fields are ignored so that clients written against a later minor revision
/// keep working. `id` is chosen by the client; every op that carries one gets exactly
/// one `reply` with the same id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClientOp {
    /// `{"op":"join","room":R,"id":N,"meta":{..}?}`: subscribe to a room and appear in
    /// its presence.
    Join {
        /// The room to join.
        room: String,
        /// Request id; the reply carries the room's presence snapshot.
        id: u64,
        /// This connection's presence meta, a JSON object (`null` or absent means `{}`).
        /// [`parse_client_op`] rejects anything else; the hub bounds its size.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        meta: Option<Value>,
    },
    /// `{"op":"leave","room":R,"id":N}`: unsubscribe from a room and leave its presence.
    Leave {
        /// The room to leave.
        room: String,
        /// Request id.
        id: u64,
    },
    /// `{"op":"publish","room":R,"data":..,"id":N?,"ephemeral":bool?}`: send `data` to
    /// everyone in the room.
    Publish {
        /// The room to publish to; the connection must have joined it.
        room: String,
        /// The payload, any JSON value; the room's message type validates it.
        data: Value,
        /// Request id. Without one the publish is fire-and-forget: no reply, and errors
        /// come back as a bare `error` message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// An ephemeral message (typing indicators, cursors) is delivered but not kept
        /// for later recovery.
        #[serde(default, skip_serializing_if = "is_false")]
        ephemeral: bool,
    },
    /// `{"op":"presence","room":R,"id":N}`: ask for a room's full presence snapshot.
    Presence {
        /// The room whose presence is wanted.
        room: String,
        /// Request id; the reply carries the snapshot.
        id: u64,
    },
}

// `skip_serializing_if` needs a function taking a reference.
fn is_false(b: &bool) -> bool {
    !*b
}

impl ClientOp {
    /// The `op` tag of this operation, as it appears on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            ClientOp::Join { .. } => "join",
            ClientOp::Leave { .. } => "leave",
            ClientOp::Publish { .. } => "publish",
            ClientOp::Presence { .. } => "presence",
        }
    }

    /// The room this operation is about.
    pub fn room(&self) -> &str {
        match self {
            ClientOp::Join { room, .. }
            | ClientOp::Leave { room, .. }
            | ClientOp::Publish { room, .. }
            | ClientOp::Presence { room, .. } => room,
        }
    }

    /// The request id, if the client asked for a reply.
    pub fn id(&self) -> Option<u64> {
        match self {
            ClientOp::Join { id, .. }
            | ClientOp::Leave { id, .. }
            | ClientOp::Presence { id, .. } => Some(*id),
            ClientOp::Publish { id, .. } => *id,
        }
    }
}

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

/// Which way a client frame failed to parse. All of them are answered with
/// [`ErrorCode::BadRequest`]; the kind exists for logs, metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ViolationKind {
    /// The text is not JSON.
    InvalidJson,
    /// The JSON is not an object.
    NotAnObject,
    /// The object has no `op` field.
    MissingOp,
    /// `op` is not a string naming an operation of this protocol version.
    UnknownOp,
    /// A field the op requires is absent.
    MissingField,
    /// A field has the wrong type (or, for `meta`, is not an object).
    InvalidField,
}

/// A client frame that is not a valid [`ClientOp`].
///
/// The hub answers it with [`ProtocolViolation::encode`]: a failed `reply` when the
/// request `id` could be read, otherwise a bare `error`. Either way the connection stays
/// open: one bad frame from a buggy client should not cost it its subscriptions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct ProtocolViolation {
    /// Which check failed.
    pub kind: ViolationKind,
    /// The request id, if the frame was an object with a valid `id`.
    pub id: Option<u64>,
    /// A short explanation meant for the client (it never echoes more than a few dozen
    /// bytes of the client's own input back).
    pub message: String,
}

impl ProtocolViolation {
    fn new(kind: ViolationKind, id: Option<u64>, message: impl Into<String>) -> Self {
        ProtocolViolation {
            kind,
            id,
            message: message.into(),
        }
    }

    /// The error code sent to the client: always [`ErrorCode::BadRequest`].
    pub fn code(&self) -> ErrorCode {
        ErrorCode::BadRequest
    }

    /// The server message answering this violation: a failed `reply` to the request
    /// `id` if there is one, otherwise a bare `error`.
    pub fn encode(&self) -> String {
        match self.id {
            Some(id) => encode_reply_err(id, self.code(), &self.message),
            None => encode_error(self.code(), &self.message),
        }
    }
}

/// Parses one client text frame.
///
/// Well-formed frames take a single serde pass. Only a frame that fails it is parsed a
/// second time, as a generic JSON value, to tell the client precisely what is wrong and
/// to recover its request `id`; the cost of a good error message is paid by bad frames.
pub fn parse_client_op(text: &str) -> Result<ClientOp, ProtocolViolation> {
    match serde_json::from_str::<ClientOp>(text) {
        Ok(op) => {
            // The type keeps `meta` a `Value` so the hub can store it as is; the
            // protocol still promises it is an object.
            if let ClientOp::Join {
                id,
                meta: Some(meta),
                ..
            } = &op
            {
                if !meta.is_object() {
                    return Err(ProtocolViolation::new(
                        ViolationKind::InvalidField,
                        Some(*id),
                        "`meta` must be an object",
                    ));
                }
            }
            Ok(op)
        }
        Err(err) => Err(diagnose(text, &err)),
    }
}

/// What a field of an op must be, for error messages.
#[derive(Clone, Copy)]
enum Field {
    Str,
    U64,
    OptU64,
    OptBool,
    OptObject,
    Any,
}

impl Field {
    fn required(self) -> bool {
        matches!(self, Field::Str | Field::U64 | Field::Any)
    }

    fn accepts(self, v: &Value) -> bool {
        match self {
            Field::Str => v.is_string(),
            Field::U64 => v.is_u64(),
            Field::OptU64 => v.is_u64() || v.is_null(),
            Field::OptBool => v.is_boolean(),
            Field::OptObject => v.is_object() || v.is_null(),
            Field::Any => true,
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Field::Str => "a string",
            Field::U64 | Field::OptU64 => "a non-negative integer",
            Field::OptBool => "a boolean",
            Field::OptObject => "an object",
            Field::Any => "present",
        }
    }
}

/// Explains why `text` failed to parse as a [`ClientOp`].
fn diagnose(text: &str, err: &serde_json::Error) -> ProtocolViolation {
    use ViolationKind::*;

    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return ProtocolViolation::new(InvalidJson, None, format!("invalid JSON: {e}")),
    };
    let Value::Object(obj) = value else {
        return ProtocolViolation::new(
            NotAnObject,
            None,
            "expected a JSON object with an `op` field",
        );
    };
    let id = obj.get("id").and_then(Value::as_u64);
    let op = match obj.get("op") {
        None => return ProtocolViolation::new(MissingOp, id, "missing field `op`"),
        Some(Value::String(op)) => op.as_str(),
        Some(_) => return ProtocolViolation::new(UnknownOp, id, "`op` must be a string"),
    };
    let fields: &[(&str, Field)] = match op {
        "join" => &[
            ("room", Field::Str),
            ("id", Field::U64),
            ("meta", Field::OptObject),
        ],
        "leave" | "presence" => &[("room", Field::Str), ("id", Field::U64)],
        "publish" => &[
            ("room", Field::Str),
            ("data", Field::Any),
            ("id", Field::OptU64),
            ("ephemeral", Field::OptBool),
        ],
        other => {
            return ProtocolViolation::new(
                UnknownOp,
                id,
                format!("unknown op `{}`", truncate(other, 32)),
            );
        }
    };
    for &(name, field) in fields {
        match obj.get(name) {
            None if field.required() => {
                return ProtocolViolation::new(MissingField, id, format!("missing field `{name}`"));
            }
            Some(v) if !field.accepts(v) => {
                return ProtocolViolation::new(
                    InvalidField,
                    id,
                    format!("`{name}` must be {}", field.expected()),
                );
            }
            _ => {}
        }
    }
    // Every field looks right as a generic value but serde still refused the frame
    // (a duplicated key, say): report serde's own words rather than accept it.
    ProtocolViolation::new(InvalidField, id, err.to_string())
}

/// At most `max` characters of `s`, so error messages never echo large client input.
fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A server message, parsed: what a client (or a test) reads off the wire.
///
/// The hub itself never builds these; it uses the `encode_*` functions, which write the
/// same JSON without owning or cloning anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerMsg {
    /// First message on every connection.
    Welcome {
        /// The authenticated user id.
        user: String,
        /// This connection's id, the same as `conn_id` in its presence metas. A string
        /// on the wire: it is opaque, and JavaScript numbers cannot hold every `u64`.
        #[serde(with = "conn_id_string")]
        conn_id: u64,
    },
    /// The answer to a client op that carried an `id`.
    Reply {
        /// The client's request id.
        id: u64,
        /// Whether the op succeeded; `data` is set if so, `error` if not.
        ok: bool,
        /// The result of a successful op.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<Value>,
        /// Why the op failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<ErrorBody>,
    },
    /// A message published to a room the connection joined.
    Message {
        /// The room it was published to.
        room: String,
        /// The publisher's user id; `None` (`null`) for a message the application
        /// published from the server.
        from: Option<String>,
        /// The payload.
        data: Value,
    },
    /// Users who came into or left a room's presence.
    PresenceDiff {
        /// The room.
        room: String,
        /// Users whose first connection joined, with that connection's meta.
        joins: Presence,
        /// Users whose last connection left, with that connection's meta.
        leaves: Presence,
    },
    /// An error that answers no request (a frame without a usable `id`).
    Error {
        /// What went wrong.
        error: ErrorBody,
    },
}

impl ServerMsg {
    /// Parses one server text frame.
    pub fn parse(text: &str) -> Result<ServerMsg, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// Encodes a room `message` from user `from` (`None`: from the server, `"from": null`).
/// The hub calls this once per publish and sends the same string to every subscriber.
pub fn encode_message(room: &str, from: Option<&str>, data: &Value) -> String {
    infallible(try_encode_message(room, from, data))
}

/// Like [`encode_message`] for any `Serialize` payload, so a typed room can encode its
/// message type directly instead of going through a [`Value`] first. Fails only if the
/// payload's `Serialize` impl does (a map with non-string keys, a custom error).
pub fn try_encode_message<T: Serialize + ?Sized>(
    room: &str,
    from: Option<&str>,
    data: &T,
) -> serde_json::Result<String> {
    #[derive(Serialize)]
    struct Out<'a, T: ?Sized> {
        op: &'static str,
        room: &'a str,
        from: Option<&'a str>,
        data: &'a T,
    }
    serde_json::to_string(&Out {
        op: "message",
        room,
        from,
        data,
    })
}

/// Encodes a successful `reply` to request `id`.
pub fn encode_reply_ok(id: u64, data: &Value) -> String {
    infallible(try_encode_reply_ok(id, data))
}

/// Like [`encode_reply_ok`] for any `Serialize` payload, so the hub can encode a reply
/// (a join's presence snapshot, say) from borrowed data without building a [`Value`].
pub fn try_encode_reply_ok<T: Serialize + ?Sized>(id: u64, data: &T) -> serde_json::Result<String> {
    #[derive(Serialize)]
    struct Out<'a, T: ?Sized> {
        op: &'static str,
        id: u64,
        ok: bool,
        data: &'a T,
    }
    serde_json::to_string(&Out {
        op: "reply",
        id,
        ok: true,
        data,
    })
}

#[derive(Serialize)]
struct ErrorRef<'a> {
    code: ErrorCode,
    message: &'a str,
}

/// Encodes a failed `reply` to request `id`.
pub fn encode_reply_err(id: u64, code: ErrorCode, message: &str) -> String {
    #[derive(Serialize)]
    struct Out<'a> {
        op: &'static str,
        id: u64,
        ok: bool,
        error: ErrorRef<'a>,
    }
    infallible(serde_json::to_string(&Out {
        op: "reply",
        id,
        ok: false,
        error: ErrorRef { code, message },
    }))
}

/// Encodes a bare `error`, for a failure that answers no request.
pub fn encode_error(code: ErrorCode, message: &str) -> String {
    #[derive(Serialize)]
    struct Out<'a> {
        op: &'static str,
        error: ErrorRef<'a>,
    }
    infallible(serde_json::to_string(&Out {
        op: "error",
        error: ErrorRef { code, message },
    }))
}

/// Encodes the `welcome` sent first on every connection.
pub fn encode_welcome(user: &str, conn_id: u64) -> String {
    #[derive(Serialize)]
    struct Out<'a> {
        op: &'static str,
        user: &'a str,
        #[serde(with = "conn_id_string")]
        conn_id: u64,
    }
    infallible(serde_json::to_string(&Out {
        op: "welcome",
        user,
        conn_id,
    }))
}

/// Encodes a `presence_diff` for `room`, once per change, shared by every subscriber.
pub fn encode_presence_diff(room: &str, diff: &PresenceDiff) -> String {
    #[derive(Serialize)]
    struct Out<'a> {
        op: &'static str,
        room: &'a str,
        joins: &'a Presence,
        leaves: &'a Presence,
    }
    infallible(serde_json::to_string(&Out {
        op: "presence_diff",
        room,
        joins: &diff.joins,
        leaves: &diff.leaves,
    }))
}

/// Unwraps the result of encoding strings, integers and [`Value`]s, which cannot fail:
/// `Value` maps only have string keys and nothing here has a fallible `Serialize`.
fn infallible(result: serde_json::Result<String>) -> String {
    result.expect("serializing strings, integers and serde_json::Value cannot fail")
}

/// The number of bytes `value` takes once serialized, computed without allocating: the
/// hub bounds presence metas and payloads with it.
pub(crate) fn encoded_len(value: &Value) -> usize {
    struct Counter(usize);
    impl io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing a `Value` into a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
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
    use serde_json::json;

    use super::*;
    use crate::presence::RoomPresence;

    fn violation(text: &str) -> ProtocolViolation {
        parse_client_op(text).expect_err(text)
    }

    #[test]
    fn parses_every_op() {
        assert_eq!(
            parse_client_op(r#"{"op":"join","room":"chat:lobby","id":1,"meta":{"status":"away"}}"#),
            Ok(ClientOp::Join {
                room: "chat:lobby".into(),
                id: 1,
                meta: Some(json!({"status": "away"})),
            })
        );
        assert_eq!(
            parse_client_op(r#"{"room":"r","op":"join","id":2}"#),
            Ok(ClientOp::Join {
                room: "r".into(),
                id: 2,
                meta: None
            })
        );
        assert_eq!(
            parse_client_op(r#"{"op":"join","room":"r","id":2,"meta":null}"#).unwrap(),
            ClientOp::Join {
                room: "r".into(),
                id: 2,
                meta: None
            }
        );
        assert_eq!(
            parse_client_op(r#"{"op":"leave","room":"r","id":3}"#),
            Ok(ClientOp::Leave {
                room: "r".into(),
                id: 3
            })
        );
        assert_eq!(
            parse_client_op(r#"{"op":"publish","room":"r","data":{"text":"hi"}}"#),
            Ok(ClientOp::Publish {
                room: "r".into(),
                data: json!({"text": "hi"}),
                id: None,
                ephemeral: false,
            })
        );
        assert_eq!(
            parse_client_op(r#"{"op":"publish","room":"r","data":null,"id":4,"ephemeral":true}"#),
            Ok(ClientOp::Publish {
                room: "r".into(),
                data: Value::Null,
                id: Some(4),
                ephemeral: true,
            })
        );
        assert_eq!(
            parse_client_op(r#"{"op":"presence","room":"r","id":5}"#),
            Ok(ClientOp::Presence {
                room: "r".into(),
                id: 5
            })
        );
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let op = parse_client_op(r#"{"op":"leave","room":"r","id":3,"since":17}"#).unwrap();
        assert_eq!(op.id(), Some(3));
        assert_eq!(op.room(), "r");
        assert_eq!(op.name(), "leave");
    }

    #[test]
    fn client_ops_round_trip() {
        let ops = [
            ClientOp::Join {
                room: "a".into(),
                id: u64::MAX,
                meta: Some(json!({"k": [1, 2]})),
            },
            ClientOp::Join {
                room: "a".into(),
                id: 0,
                meta: None,
            },
            ClientOp::Leave {
                room: "é \" \\ 🦀".into(),
                id: 9,
            },
            ClientOp::Publish {
                room: "a".into(),
                data: json!([true, 1.5, "x", null]),
                id: Some(1),
                ephemeral: true,
            },
            ClientOp::Publish {
                room: "a".into(),
                data: json!("s"),
                id: None,
                ephemeral: false,
            },
            ClientOp::Presence {
                room: "a".into(),
                id: 2,
            },
        ];
        for op in ops {
            let text = serde_json::to_string(&op).unwrap();
            assert_eq!(parse_client_op(&text).as_ref(), Ok(&op), "{text}");
        }
        // Defaults are left out when sending.
        let text = serde_json::to_string(&ClientOp::Publish {
            room: "a".into(),
            data: json!(1),
            id: None,
            ephemeral: false,
        })
        .unwrap();
        assert_eq!(text, r#"{"op":"publish","room":"a","data":1}"#);
    }

    #[test]
    fn invalid_json() {
        for text in [
            "",
            "{",
            "not json",
            r#"{"op":"join",}"#,
            "{\"op\":\"join\"} x",
        ] {
            let v = violation(text);
            assert_eq!(v.kind, ViolationKind::InvalidJson, "{text}");
            assert_eq!(v.id, None);
            assert!(v.message.starts_with("invalid JSON"), "{}", v.message);
        }
    }

    #[test]
    fn deeply_nested_json_is_an_error_not_a_crash() {
        let text = "[".repeat(100_000);
        assert_eq!(violation(&text).kind, ViolationKind::InvalidJson);
        let text = format!(
            r#"{{"op":"publish","room":"r","id":1,"data":{}}}"#,
            "[".repeat(10_000) + &"]".repeat(10_000)
        );
        assert_eq!(violation(&text).kind, ViolationKind::InvalidJson);
    }

    #[test]
    fn not_an_object() {
        for text in ["[]", "1", "\"join\"", "null", r#"[{"op":"join"}]"#] {
            let v = violation(text);
            assert_eq!(v.kind, ViolationKind::NotAnObject, "{text}");
            assert_eq!(v.id, None);
        }
    }

    #[test]
    fn missing_op_keeps_the_id() {
        let v = violation(r#"{"room":"r","id":7}"#);
        assert_eq!(v.kind, ViolationKind::MissingOp);
        assert_eq!(v.id, Some(7));
        assert_eq!(v.message, "missing field `op`");
    }

    #[test]
    fn unknown_op() {
        let v = violation(r#"{"op":"subscribe","room":"r","id":8}"#);
        assert_eq!(v.kind, ViolationKind::UnknownOp);
        assert_eq!(v.id, Some(8));
        assert_eq!(v.message, "unknown op `subscribe`");

        let v = violation(r#"{"op":42,"id":8}"#);
        assert_eq!(v.kind, ViolationKind::UnknownOp);
        assert_eq!(v.message, "`op` must be a string");

        // Ops are case-sensitive, and a huge op name is not echoed back whole.
        assert_eq!(violation(r#"{"op":"JOIN"}"#).kind, ViolationKind::UnknownOp);
        let long = format!(r#"{{"op":"{}"}}"#, "x".repeat(10_000));
        assert!(violation(&long).message.len() < 64);
    }

    #[test]
    fn missing_fields() {
        let cases = [
            (r#"{"op":"join","id":1}"#, Some(1), "missing field `room`"),
            (r#"{"op":"join","room":"r"}"#, None, "missing field `id`"),
            (r#"{"op":"leave","id":2}"#, Some(2), "missing field `room`"),
            (
                r#"{"op":"presence","room":"r"}"#,
                None,
                "missing field `id`",
            ),
            (
                r#"{"op":"publish","room":"r","id":3}"#,
                Some(3),
                "missing field `data`",
            ),
            (r#"{"op":"publish","data":1}"#, None, "missing field `room`"),
        ];
        for (text, id, message) in cases {
            let v = violation(text);
            assert_eq!(v.kind, ViolationKind::MissingField, "{text}");
            assert_eq!(v.id, id, "{text}");
            assert_eq!(v.message, message, "{text}");
        }
    }

    #[test]
    fn invalid_fields() {
        let cases = [
            (
                r#"{"op":"join","room":1,"id":1}"#,
                Some(1),
                "`room` must be a string",
            ),
            (
                r#"{"op":"join","room":"r","id":-1}"#,
                None,
                "`id` must be a non-negative integer",
            ),
            (
                r#"{"op":"join","room":"r","id":1.5}"#,
                None,
                "`id` must be a non-negative integer",
            ),
            (
                r#"{"op":"join","room":"r","id":"1"}"#,
                None,
                "`id` must be a non-negative integer",
            ),
            (
                r#"{"op":"join","room":"r","id":null}"#,
                None,
                "`id` must be a non-negative integer",
            ),
            (
                r#"{"op":"join","room":"r","id":4,"meta":[1]}"#,
                Some(4),
                "`meta` must be an object",
            ),
            (
                r#"{"op":"join","room":"r","id":4,"meta":"x"}"#,
                Some(4),
                "`meta` must be an object",
            ),
            (
                r#"{"op":"publish","room":"r","data":1,"id":5,"ephemeral":"yes"}"#,
                Some(5),
                "`ephemeral` must be a boolean",
            ),
            (
                r#"{"op":"publish","room":"r","data":1,"id":true}"#,
                None,
                "`id` must be a non-negative integer",
            ),
        ];
        for (text, id, message) in cases {
            let v = violation(text);
            assert_eq!(v.kind, ViolationKind::InvalidField, "{text}");
            assert_eq!(v.id, id, "{text}");
            assert_eq!(v.message, message, "{text}");
        }
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let v = violation(r#"{"op":"leave","room":"a","room":"b","id":1}"#);
        assert_eq!(v.kind, ViolationKind::InvalidField);
        assert_eq!(v.id, Some(1));
        assert!(
            v.message.contains("duplicate field `room`"),
            "{}",
            v.message
        );
    }

    #[test]
    fn violations_encode_as_reply_or_error() {
        let v = violation(r#"{"op":"nope","id":12}"#);
        assert_eq!(v.code(), ErrorCode::BadRequest);
        assert_eq!(
            ServerMsg::parse(&v.encode()).unwrap(),
            ServerMsg::Reply {
                id: 12,
                ok: false,
                data: None,
                error: Some(ErrorBody {
                    code: ErrorCode::BadRequest,
                    message: "unknown op `nope`".into()
                }),
            }
        );
        let v = violation("[]");
        let msg: Value = serde_json::from_str(&v.encode()).unwrap();
        assert_eq!(msg["op"], "error");
        assert_eq!(msg["error"]["code"], "bad_request");
    }

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
        ];
        for code in all {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(code.to_string(), code.as_str());
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn encoders_write_the_documented_shapes() {
        assert_eq!(
            encode_message("r", Some("ann"), &json!({"text": "hi \"you\""})),
            r#"{"op":"message","room":"r","from":"ann","data":{"text":"hi \"you\""}}"#
        );
        assert_eq!(
            encode_message("news:1", None, &json!(1)),
            r#"{"op":"message","room":"news:1","from":null,"data":1}"#
        );
        assert_eq!(
            encode_reply_ok(3, &json!({})),
            r#"{"op":"reply","id":3,"ok":true,"data":{}}"#
        );
        assert_eq!(
            encode_reply_err(4, ErrorCode::NotJoined, "join the room first"),
            r#"{"op":"reply","id":4,"ok":false,"error":{"code":"not_joined","message":"join the room first"}}"#
        );
        assert_eq!(
            encode_error(ErrorCode::RateLimited, "slow down"),
            r#"{"op":"error","error":{"code":"rate_limited","message":"slow down"}}"#
        );
        assert_eq!(
            encode_welcome("ann", u64::MAX),
            r#"{"op":"welcome","user":"ann","conn_id":"18446744073709551615"}"#
        );
    }

    #[test]
    fn encoders_round_trip_through_server_msg() {
        let data = json!({"n": [1, 2, {"deep": null}], "s": "\u{1F980}\n"});
        assert_eq!(
            ServerMsg::parse(&encode_message("room/1", Some("u\"1"), &data)).unwrap(),
            ServerMsg::Message {
                room: "room/1".into(),
                from: Some("u\"1".into()),
                data: data.clone()
            }
        );
        assert_eq!(
            ServerMsg::parse(&encode_message("news:1", None, &data)).unwrap(),
            ServerMsg::Message {
                room: "news:1".into(),
                from: None,
                data: data.clone()
            }
        );
        assert_eq!(
            ServerMsg::parse(&encode_reply_ok(1, &data)).unwrap(),
            ServerMsg::Reply {
                id: 1,
                ok: true,
                data: Some(data.clone()),
                error: None
            }
        );
        assert_eq!(
            ServerMsg::parse(&encode_error(ErrorCode::TooLarge, "meta")).unwrap(),
            ServerMsg::Error {
                error: ErrorBody {
                    code: ErrorCode::TooLarge,
                    message: "meta".into()
                }
            }
        );
        assert_eq!(
            ServerMsg::parse(&encode_welcome("ann", 42)).unwrap(),
            ServerMsg::Welcome {
                user: "ann".into(),
                conn_id: 42
            }
        );
        // And the owned form serializes to what the encoders write.
        let msg = ServerMsg::Message {
            room: "r".into(),
            from: Some("f".into()),
            data: data.clone(),
        };
        assert_eq!(
            serde_json::to_string(&msg).unwrap(),
            encode_message("r", Some("f"), &data)
        );
    }

    #[test]
    fn presence_diff_round_trips() {
        let mut room = RoomPresence::default();
        let diff = room.join("ann", 7, json!({"status": "online"})).unwrap();
        let text = encode_presence_diff("lobby", &diff);
        assert_eq!(
            text,
            r#"{"op":"presence_diff","room":"lobby","joins":{"ann":{"metas":[{"conn_id":"7","meta":{"status":"online"}}]}},"leaves":{}}"#
        );
        assert_eq!(
            ServerMsg::parse(&text).unwrap(),
            ServerMsg::PresenceDiff {
                room: "lobby".into(),
                joins: diff.joins.clone(),
                leaves: diff.leaves.clone()
            }
        );
        // A join reply carries the snapshot under `presence`, encoded from borrowed data.
        let reply = try_encode_reply_ok(1, &json!({"presence": room.snapshot()})).unwrap();
        assert_eq!(
            reply,
            r#"{"op":"reply","id":1,"ok":true,"data":{"presence":{"ann":{"metas":[{"conn_id":"7","meta":{"status":"online"}}]}}}}"#
        );
    }

    #[test]
    fn typed_payloads_encode_without_a_value() {
        #[derive(Serialize)]
        struct Chat<'a> {
            text: &'a str,
        }
        assert_eq!(
            try_encode_message("r", Some("f"), &Chat { text: "hi" }).unwrap(),
            encode_message("r", Some("f"), &json!({"text": "hi"}))
        );
        // A payload whose Serialize fails is an error, not a panic.
        let mut bad = std::collections::HashMap::new();
        bad.insert((1, 2), 3);
        assert!(try_encode_message("r", Some("f"), &bad).is_err());
    }

    #[test]
    fn encoded_len_matches_serialization() {
        for v in [
            json!(null),
            json!({}),
            json!({"a": [1, 2.5, "é\"\n"], "b": {"c": true}}),
        ] {
            assert_eq!(encoded_len(&v), serde_json::to_string(&v).unwrap().len());
        }
    }

    #[test]
    fn conn_id_string_rejects_garbage() {
        assert!(ServerMsg::parse(r#"{"op":"welcome","user":"u","conn_id":"x"}"#).is_err());
        assert!(ServerMsg::parse(r#"{"op":"welcome","user":"u","conn_id":5}"#).is_err());
    }

    #[test]
    fn subprotocol_name() {
        assert_eq!(SUBPROTOCOL, "wshub.v1");
    }
}
