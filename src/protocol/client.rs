//! What clients send: [`ClientOp`], one per text frame, parsed by [`parse_client_op`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::violation::diagnose;
use super::{MAX_EPOCH_LEN, ProtocolViolation, StreamPosition, ViolationKind};

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
        /// Recover from this position: every stored message after it follows the reply
        /// (`PROTOCOL.md`, section 9).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<StreamPosition>,
        /// Send the room's last `history` stored messages after the reply (capped by
        /// the hub), for a client with no position; also the fallback when `since`
        /// cannot be recovered.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        history: Option<u64>,
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
    /// `{"op":"presence_page","room":R,"id":N,"after":C?,"limit":L?}`: one page of a
    /// room's member list, in user id order, starting after cursor `after` (the `next`
    /// of the previous page; absent: the first page). An addition to `wshub.v1` for
    /// big rooms (`PROTOCOL.md`, section 6), answered in small rooms too.
    PresencePage {
        /// The room whose members are wanted.
        room: String,
        /// Request id; the reply carries the page, the room's count and the next cursor.
        id: u64,
        /// The cursor: the `next` of the previous page. Opaque to clients.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        /// Most users in the page; capped by the hub's `presence_page_size`, which is
        /// also the default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    /// `{"op":"call","method":M,"data":..,"id":N}`: call a method the application
    /// registered (`HubBuilder::rpc`) and get exactly one `reply`, with the method's
    /// response or its error.
    Call {
        /// The method's name, as registered (`rooms.list`).
        method: String,
        /// The request, any JSON value (absent means `null`); the method's request
        /// type validates it.
        #[serde(default)]
        data: Value,
        /// Request id; required, as a call without a reply would be pointless.
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
            ClientOp::PresencePage { .. } => "presence_page",
            ClientOp::Call { .. } => "call",
        }
    }

    /// The room this operation is about; `None` for ops about no room (`call`).
    pub fn room(&self) -> Option<&str> {
        match self {
            ClientOp::Join { room, .. }
            | ClientOp::Leave { room, .. }
            | ClientOp::Publish { room, .. }
            | ClientOp::Presence { room, .. }
            | ClientOp::PresencePage { room, .. } => Some(room),
            ClientOp::Call { .. } => None,
        }
    }

    /// The request id, if the client asked for a reply.
    pub fn id(&self) -> Option<u64> {
        match self {
            ClientOp::Join { id, .. }
            | ClientOp::Leave { id, .. }
            | ClientOp::Presence { id, .. }
            | ClientOp::PresencePage { id, .. }
            | ClientOp::Call { id, .. } => Some(*id),
            ClientOp::Publish { id, .. } => *id,
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
                id, meta, since, ..
            } = &op
            {
                if meta.as_ref().is_some_and(|m| !m.is_object()) {
                    return Err(ProtocolViolation::new(
                        ViolationKind::InvalidField,
                        Some(*id),
                        "`meta` must be an object",
                    ));
                }
                if since
                    .as_ref()
                    .is_some_and(|p| p.epoch.chars().count() > MAX_EPOCH_LEN)
                {
                    return Err(ProtocolViolation::new(
                        ViolationKind::InvalidField,
                        Some(*id),
                        format!("`since.epoch` is longer than {MAX_EPOCH_LEN} characters"),
                    ));
                }
            }
            Ok(op)
        }
        Err(err) => Err(diagnose(text, &err)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parses_every_op() {
        assert_eq!(
            parse_client_op(r#"{"op":"join","room":"chat:lobby","id":1,"meta":{"status":"away"}}"#),
            Ok(ClientOp::Join {
                room: "chat:lobby".into(),
                id: 1,
                meta: Some(json!({"status": "away"})),
                since: None,
                history: None,
            })
        );
        assert_eq!(
            parse_client_op(r#"{"room":"r","op":"join","id":2}"#),
            Ok(ClientOp::Join {
                room: "r".into(),
                id: 2,
                meta: None,
                since: None,
                history: None,
            })
        );
        assert_eq!(
            parse_client_op(r#"{"op":"join","room":"r","id":2,"meta":null}"#).unwrap(),
            ClientOp::Join {
                room: "r".into(),
                id: 2,
                meta: None,
                since: None,
                history: None,
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
        assert_eq!(
            parse_client_op(r#"{"op":"presence_page","room":"r","id":8,"after":"ann","limit":2}"#),
            Ok(ClientOp::PresencePage {
                room: "r".into(),
                id: 8,
                after: Some("ann".into()),
                limit: Some(2),
            })
        );
        assert_eq!(
            parse_client_op(r#"{"op":"call","method":"rooms.list","data":{"a":1},"id":6}"#),
            Ok(ClientOp::Call {
                method: "rooms.list".into(),
                data: json!({"a": 1}),
                id: 6
            })
        );
        // `data` may be left out: the method gets `null`.
        let call = parse_client_op(r#"{"op":"call","method":"ping","id":7}"#).unwrap();
        assert_eq!(
            call,
            ClientOp::Call {
                method: "ping".into(),
                data: Value::Null,
                id: 7
            }
        );
        assert_eq!(call.room(), None);
        assert_eq!(call.name(), "call");
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let op = parse_client_op(r#"{"op":"leave","room":"r","id":3,"since":17}"#).unwrap();
        assert_eq!(op.id(), Some(3));
        assert_eq!(op.room(), Some("r"));
        assert_eq!(op.name(), "leave");
    }

    #[test]
    fn client_ops_round_trip() {
        let ops = [
            ClientOp::Join {
                room: "a".into(),
                id: u64::MAX,
                meta: Some(json!({"k": [1, 2]})),
                since: None,
                history: None,
            },
            ClientOp::Join {
                room: "a".into(),
                id: 0,
                meta: None,
                since: None,
                history: None,
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
            ClientOp::Call {
                method: "rooms.list".into(),
                data: json!([1]),
                id: 3,
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
}
