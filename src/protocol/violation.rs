//! [`ProtocolViolation`]: why a client frame is not a valid op, precisely enough to
//! answer the client and to recover its request `id`.

use serde_json::Value;

use super::{ErrorCode, encode_error, encode_reply_err};

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

/// A client frame that is not a valid [`ClientOp`](super::ClientOp).
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
    pub(super) fn new(kind: ViolationKind, id: Option<u64>, message: impl Into<String>) -> Self {
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

/// What a field of an op must be, for error messages.
#[derive(Clone, Copy)]
enum Field {
    Str,
    OptStr,
    U64,
    OptU64,
    OptBool,
    OptObject,
    OptPosition,
    Any,
    OptAny,
}

impl Field {
    fn required(self) -> bool {
        matches!(self, Field::Str | Field::U64 | Field::Any)
    }

    fn accepts(self, v: &Value) -> bool {
        match self {
            Field::Str => v.is_string(),
            Field::OptStr => v.is_string() || v.is_null(),
            Field::U64 => v.is_u64(),
            Field::OptU64 => v.is_u64() || v.is_null(),
            Field::OptBool => v.is_boolean(),
            Field::OptObject => v.is_object() || v.is_null(),
            Field::OptPosition => {
                v.is_null()
                    || (v.get("seq").is_some_and(Value::is_u64)
                        && v.get("epoch").is_some_and(Value::is_string))
            }
            Field::Any | Field::OptAny => true,
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Field::Str | Field::OptStr => "a string",
            Field::U64 | Field::OptU64 => "a non-negative integer",
            Field::OptBool => "a boolean",
            Field::OptObject => "an object",
            Field::OptPosition => {
                "an object with a non-negative integer `seq` and a string `epoch`"
            }
            Field::Any | Field::OptAny => "present",
        }
    }
}

/// Explains why `text` failed to parse as a [`ClientOp`](super::ClientOp).
pub(super) fn diagnose(text: &str, err: &serde_json::Error) -> ProtocolViolation {
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
            ("since", Field::OptPosition),
            ("history", Field::OptU64),
        ],
        "leave" | "presence" => &[("room", Field::Str), ("id", Field::U64)],
        "presence_page" => &[
            ("room", Field::Str),
            ("id", Field::U64),
            ("after", Field::OptStr),
            ("limit", Field::OptU64),
        ],
        "publish" => &[
            ("room", Field::Str),
            ("data", Field::Any),
            ("id", Field::OptU64),
            ("ephemeral", Field::OptBool),
        ],
        "call" => &[
            ("method", Field::Str),
            ("data", Field::OptAny),
            ("id", Field::U64),
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

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::{ProtocolViolation, ViolationKind};
    use crate::protocol::{ErrorBody, ErrorCode, ServerMsg, parse_client_op};

    fn violation(text: &str) -> ProtocolViolation {
        parse_client_op(text).expect_err(text)
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
}
