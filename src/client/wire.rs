//! The client's side of `wshub.v1`: server frames parsed leniently (unknown ops,
//! fields and error codes are tolerated, as PROTOCOL.md section 2 asks of clients),
//! and client ops encoded.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ServerError;
use super::event::Published;
use super::room::JoinReply;
use crate::protocol::StreamPosition;
use crate::protocol::{Presence, PresenceCount, PresenceDiff, PresencePage};

/// Any server frame: one flat struct with every field optional, so a frame with an
/// `op` or a field this client does not know still parses.
#[derive(Debug, Deserialize)]
pub(crate) struct Frame {
    pub(crate) op: String,
    #[serde(default)]
    pub(crate) id: Option<u64>,
    #[serde(default)]
    pub(crate) ok: Option<bool>,
    #[serde(default)]
    pub(crate) data: Option<Value>,
    #[serde(default)]
    pub(crate) error: Option<WireError>,
    #[serde(default)]
    pub(crate) room: Option<String>,
    #[serde(default)]
    pub(crate) from: Option<String>,
    #[serde(default)]
    pub(crate) seq: Option<u64>,
    #[serde(default)]
    pub(crate) epoch: Option<String>,
    #[serde(default)]
    pub(crate) joins: Option<Presence>,
    #[serde(default)]
    pub(crate) leaves: Option<Presence>,
    #[serde(default)]
    pub(crate) reason: Option<String>,
    /// `presence_count`'s users.
    #[serde(default)]
    pub(crate) users: Option<usize>,
    /// `presence_count`'s connections.
    #[serde(default)]
    pub(crate) conns: Option<usize>,
    /// `presence_state`'s presence.
    #[serde(default)]
    pub(crate) presence: Option<Presence>,
    #[serde(default)]
    pub(crate) user: Option<String>,
    #[serde(default)]
    pub(crate) conn_id: Option<String>,
}

/// An `error` object with its code as text (a code newer than this client is kept).
#[derive(Debug, Deserialize)]
pub(crate) struct WireError {
    code: String,
    #[serde(default)]
    message: String,
}

impl From<WireError> for ServerError {
    fn from(e: WireError) -> Self {
        ServerError::new(e.code, e.message)
    }
}

impl Frame {
    pub(crate) fn parse(text: &str) -> serde_json::Result<Frame> {
        serde_json::from_str(text)
    }

    /// A reply's outcome: its `data` (`{}` if absent), or its error.
    pub(crate) fn into_result(self) -> Result<Value, ServerError> {
        if self.ok == Some(true) {
            Ok(self
                .data
                .unwrap_or_else(|| Value::Object(Default::default())))
        } else {
            Err(self
                .error
                .map(ServerError::from)
                .unwrap_or_else(|| ServerError::new("internal", "a failed reply without an error")))
        }
    }

    /// A `presence_count`'s count, when it has one.
    pub(crate) fn count(&self) -> Option<PresenceCount> {
        Some(PresenceCount::new(self.users?, self.conns?))
    }

    pub(crate) fn into_diff(self) -> PresenceDiff {
        PresenceDiff::new(
            self.joins.unwrap_or_default(),
            self.leaves.unwrap_or_default(),
        )
    }
}

/// `seq` and `epoch` of a reply's data or a message, when both are there.
fn position_of(seq: Option<u64>, epoch: Option<&str>) -> Option<StreamPosition> {
    Some(StreamPosition::new(seq?, epoch?))
}

/// A join reply's data: presence snapshot and section 9's fields.
pub(crate) fn join_reply(data: &Value) -> JoinReply {
    JoinReply {
        presence: data
            .get("presence")
            .and_then(|p| Presence::deserialize(p).ok()),
        position: position_of(
            data.get("seq").and_then(Value::as_u64),
            data.get("epoch").and_then(Value::as_str),
        ),
        recovered: data.get("recovered").and_then(Value::as_bool),
        count: data
            .get("count")
            .and_then(|c| PresenceCount::deserialize(c).ok()),
        replayed: data.get("replayed").and_then(Value::as_u64).unwrap_or(0),
    }
}

/// A `presence_page` reply's data (a server that sends something else gives an empty
/// page).
pub(crate) fn presence_page(data: Value) -> PresencePage {
    PresencePage::deserialize(data).unwrap_or_default()
}

/// A publish reply's data.
pub(crate) fn published(data: &Value) -> Published {
    Published {
        delivered: data.get("delivered").and_then(Value::as_u64).unwrap_or(0),
        position: position_of(
            data.get("seq").and_then(Value::as_u64),
            data.get("epoch").and_then(Value::as_str),
        ),
    }
}

/// A client op, encoded with `serde_json` (absent fields left out).
#[derive(Debug, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Op<'a> {
    Join {
        room: &'a str,
        id: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        meta: Option<&'a Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        since: Option<&'a StreamPosition>,
        #[serde(skip_serializing_if = "Option::is_none")]
        history: Option<u64>,
    },
    Leave {
        room: &'a str,
        id: u64,
    },
    Publish {
        room: &'a str,
        data: &'a Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        ephemeral: bool,
    },
    Call {
        method: &'a str,
        data: &'a Value,
        id: u64,
    },
    PresencePage {
        room: &'a str,
        id: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        after: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
}

impl Op<'_> {
    pub(crate) fn encode(&self) -> String {
        // Every field is a string, an integer, a bool or a `Value`: nothing here can
        // fail to serialize.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ops_encode_as_the_protocol_says() {
        let since = StreamPosition::new(42, "1f3a");
        let meta = json!({"status": "online"});
        assert_eq!(
            Op::Join {
                room: "chat:lobby",
                id: 1,
                meta: Some(&meta),
                since: Some(&since),
                history: Some(50),
            }
            .encode(),
            r#"{"op":"join","room":"chat:lobby","id":1,"meta":{"status":"online"},"since":{"seq":42,"epoch":"1f3a"},"history":50}"#
        );
        assert_eq!(
            Op::Join {
                room: "r:1",
                id: 2,
                meta: None,
                since: None,
                history: None
            }
            .encode(),
            r#"{"op":"join","room":"r:1","id":2}"#
        );
        let data = json!({"x": 1});
        assert_eq!(
            Op::Publish {
                room: "c:d",
                data: &data,
                id: None,
                ephemeral: true
            }
            .encode(),
            r#"{"op":"publish","room":"c:d","data":{"x":1},"ephemeral":true}"#
        );
        assert_eq!(
            Op::Publish {
                room: "c:d",
                data: &data,
                id: Some(3),
                ephemeral: false
            }
            .encode(),
            r#"{"op":"publish","room":"c:d","data":{"x":1},"id":3}"#
        );
        assert_eq!(
            Op::Call {
                method: "rooms.list",
                data: &Value::Null,
                id: 4
            }
            .encode(),
            r#"{"op":"call","method":"rooms.list","data":null,"id":4}"#
        );
    }

    #[test]
    fn frames_parse_leniently() {
        let f = Frame::parse(r#"{"op":"message","room":"chat:a","seq":43,"epoch":"e","from":null,"data":{"text":"hi"},"new_field":[1]}"#).unwrap();
        assert_eq!(
            (f.op.as_str(), f.seq, f.epoch.as_deref()),
            ("message", Some(43), Some("e"))
        );
        assert_eq!(f.from, None);
        let f = Frame::parse(
            r#"{"op":"reply","id":7,"ok":false,"error":{"code":"quota","message":"m"}}"#,
        )
        .unwrap();
        let err = f.into_result().unwrap_err();
        assert_eq!((err.code_str(), err.code()), ("quota", None));
        assert!(Frame::parse(r#"{"op":"some_future_op","x":1}"#).is_ok());

        let reply = join_reply(
            &json!({"presence": {}, "seq": 45, "epoch": "e", "recovered": true, "replayed": 3}),
        );
        assert_eq!(reply.position, Some(StreamPosition::new(45, "e")));
        assert_eq!((reply.recovered, reply.replayed), (Some(true), 3));
        let big = join_reply(&json!({"presence": {}, "count": {"users": 250, "conns": 260}}));
        assert_eq!(big.count, Some(PresenceCount::new(250, 260)));
        let old = join_reply(&json!({"presence": {}}));
        assert_eq!(old.count, None);
        assert_eq!((old.position, old.recovered, old.replayed), (None, None, 0));
        assert_eq!(
            published(&json!({"delivered": 12, "seq": 43, "epoch": "e"})),
            Published {
                delivered: 12,
                position: Some(StreamPosition::new(43, "e"))
            }
        );
    }
}
