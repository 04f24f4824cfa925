//! What the hub sends: the `encode_*` functions that write server messages from
//! borrowed data, and [`ServerMsg`], their owned, parsed form.

use std::io;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::StreamPosition;
use super::presence::{Presence, PresenceCount, PresenceDiff, PresencePage};
use super::{ErrorBody, ErrorCode, conn_id_string};

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
        /// The message's place in the room's stream (section 9 of `PROTOCOL.md`);
        /// absent for an ephemeral message or a room that keeps no history.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        /// The stream's epoch, with `seq`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
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
    /// A big room's exact count (`PROTOCOL.md`, section 6), sent at a steady cadence
    /// while it changes; the first one after a small room grows big says so.
    PresenceCount {
        /// The room.
        room: String,
        /// Users present.
        users: usize,
        /// Connections present.
        conns: usize,
    },
    /// A big room is small again: its whole presence, which replaces the member's
    /// view; `presence_diff`s follow as in any small room.
    PresenceState {
        /// The room.
        room: String,
        /// Who is in the room now.
        presence: Presence,
    },
    /// The application joined this connection to a room from the server (not an
    /// answer to a client `join`). From now on the room's messages and presence diffs
    /// arrive as after a client join.
    Joined {
        /// The room.
        room: String,
        /// Who is in the room now, as in a join reply; absent when the room's namespace
        /// keeps no presence.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        presence: Option<Presence>,
        /// In a big room: its count (then `presence` is the first page of members).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<PresenceCount>,
        /// In a big room: the cursor of the second page of members, if there is one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
        /// The room's stream position at the join, in a namespace with history.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        /// The stream's epoch, with `seq`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
    },
    /// The application took this connection out of a room from the server (not an
    /// answer to a client `leave`). Nothing more from the room follows.
    Left {
        /// The room.
        room: String,
        /// Why, as the application put it (`"server"` unless it gave a reason).
        reason: String,
    },
    /// A message the application sent to this connection alone, or to every
    /// connection of its user, outside any room.
    Direct {
        /// Who sent it: `None` (`null`) for the server, the only sender today.
        from: Option<String>,
        /// The payload, whatever the application sent.
        data: Value,
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

/// A room `message` encoded once, with a place left for its stream position: the hub
/// encodes a publish before the history store has given it a `seq`, and the store
/// (in memory or elsewhere) writes the frame for the position it assigns.
///
/// The frame is `{"op":"message","room":R,"seq":N,"epoch":E,"from":F,"data":D}`;
/// without a position (ephemeral messages, rooms without history) the two fields are
/// left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedMessage {
    /// `{"op":"message","room":R` (no closing brace).
    head: String,
    /// `"from":F,"data":D}`.
    tail: String,
}

impl EncodedMessage {
    /// Encodes a message of `room` from `from` (`None`: the server). Fails only if the
    /// payload's `Serialize` impl does.
    pub fn new<T: Serialize + ?Sized>(
        room: &str,
        from: Option<&str>,
        data: &T,
    ) -> serde_json::Result<Self> {
        #[derive(Serialize)]
        struct Head<'a> {
            op: &'static str,
            room: &'a str,
        }
        #[derive(Serialize)]
        struct Tail<'a, T: ?Sized> {
            from: Option<&'a str>,
            data: &'a T,
        }
        let mut head = serde_json::to_string(&Head {
            op: "message",
            room,
        })?;
        head.pop(); // `}`
        let mut tail = serde_json::to_string(&Tail { from, data })?;
        tail.remove(0); // `{`
        Ok(EncodedMessage { head, tail })
    }

    /// The frame text at `position` (`None`: without one).
    pub fn frame(&self, position: Option<(u64, &str)>) -> String {
        let mut out = String::with_capacity(self.len() + 48);
        out.push_str(&self.head);
        if let Some((seq, epoch)) = position {
            use std::fmt::Write;
            let _ = write!(out, r#","seq":{seq},"epoch":"#);
            // Epochs are the store's own opaque strings: plain ones (the in-memory
            // store's hex digits) are written as they are, others escaped.
            if epoch
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                out.push('"');
                out.push_str(epoch);
                out.push('"');
            } else {
                out.push_str(&infallible(serde_json::to_string(epoch)));
            }
        }
        out.push(',');
        out.push_str(&self.tail);
        out
    }

    /// The frame's two halves, for a store that writes the position itself (a script
    /// in a remote store): the frame is `head` + `,"seq":N,"epoch":E,` + `tail`, and
    /// without a position `head` + `,` + `tail`. `E` is a JSON string.
    pub fn parts(&self) -> (&str, &str) {
        (&self.head, &self.tail)
    }

    /// Size of the frame without a position, in bytes.
    pub fn len(&self) -> usize {
        self.head.len() + 1 + self.tail.len()
    }

    /// Never true: a message frame always has its fields. (For clippy's `len` rule.)
    pub fn is_empty(&self) -> bool {
        false
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

/// Encodes a successful `reply` whose `data` is `json`, JSON text encoded already (an
/// RPC response, encoded once to check its size and then sent as is).
pub(crate) fn encode_reply_raw(id: u64, json: &str) -> String {
    format!(r#"{{"op":"reply","id":{id},"ok":true,"data":{json}}}"#)
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
        error: ErrorRef {
            code,
            message: &super::clip(message, super::MAX_ERROR_CHARS),
        },
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
        error: ErrorRef {
            code,
            message: &super::clip(message, super::MAX_ERROR_CHARS),
        },
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

/// Encodes the `joined` a connection gets when the application joins it to `room` from
/// the server; `presence` is the room's presence as the join reply would carry it
/// (`None`: the namespace keeps no presence, and the field is left out).
/// `position` is the room's stream position at the join (namespaces with history).
pub fn encode_joined(
    room: &str,
    presence: Option<&Presence>,
    position: Option<&StreamPosition>,
) -> String {
    encode_joined_page(room, presence, None, position)
}

/// [`encode_joined`] for a big room too: with `page`, its `count` and `next` are
/// added and `presence` is the page's.
pub(crate) fn encode_joined_page(
    room: &str,
    presence: Option<&Presence>,
    page: Option<&PresencePage>,
    position: Option<&StreamPosition>,
) -> String {
    #[derive(Serialize)]
    struct Out<'a> {
        op: &'static str,
        room: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        presence: Option<&'a Presence>,
        #[serde(skip_serializing_if = "Option::is_none")]
        count: Option<PresenceCount>,
        #[serde(skip_serializing_if = "Option::is_none")]
        next: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<&'a str>,
    }
    infallible(serde_json::to_string(&Out {
        op: "joined",
        room,
        presence: page.map(|p| &p.presence).or(presence),
        count: page.map(|p| p.count),
        next: page.and_then(|p| p.next.as_deref()),
        seq: position.map(|p| p.seq),
        epoch: position.map(|p| &*p.epoch),
    }))
}

/// Encodes a big room's `presence_count`, once per room, shared by every member.
pub fn encode_presence_count(room: &str, count: PresenceCount) -> String {
    #[derive(Serialize)]
    struct Out<'a> {
        op: &'static str,
        room: &'a str,
        users: usize,
        conns: usize,
    }
    infallible(serde_json::to_string(&Out {
        op: "presence_count",
        room,
        users: count.users,
        conns: count.conns,
    }))
}

/// Encodes the `presence_state` a big room's members get when it becomes small again.
pub fn encode_presence_state(room: &str, presence: &Presence) -> String {
    #[derive(Serialize)]
    struct Out<'a> {
        op: &'static str,
        room: &'a str,
        presence: &'a Presence,
    }
    infallible(serde_json::to_string(&Out {
        op: "presence_state",
        room,
        presence,
    }))
}

/// Encodes the `left` a connection gets when the application takes it out of `room`
/// from the server.
pub fn encode_left(room: &str, reason: &str) -> String {
    #[derive(Serialize)]
    struct Out<'a> {
        op: &'static str,
        room: &'a str,
        reason: &'a str,
    }
    infallible(serde_json::to_string(&Out {
        op: "left",
        room,
        reason,
    }))
}

/// Encodes a `direct` message from the server (`"from": null`) carrying `data`. The hub
/// encodes it once for every connection it goes to. Fails only if `data`'s `Serialize`
/// impl does.
pub fn try_encode_direct<T: Serialize + ?Sized>(data: &T) -> serde_json::Result<String> {
    #[derive(Serialize)]
    struct Out<'a, T: ?Sized> {
        op: &'static str,
        from: Option<&'a str>,
        data: &'a T,
    }
    serde_json::to_string(&Out {
        op: "direct",
        from: None,
        data,
    })
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
pub(crate) fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::presence::RoomPresence;

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
                seq: None,
                epoch: None,
                from: Some("u\"1".into()),
                data: data.clone()
            }
        );
        assert_eq!(
            ServerMsg::parse(&encode_message("news:1", None, &data)).unwrap(),
            ServerMsg::Message {
                room: "news:1".into(),
                seq: None,
                epoch: None,
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
            seq: None,
            epoch: None,
            from: Some("f".into()),
            data: data.clone(),
        };
        assert_eq!(
            serde_json::to_string(&msg).unwrap(),
            encode_message("r", Some("f"), &data)
        );
        // A stored message: the position goes between the room and the sender.
        let encoded = EncodedMessage::new("r", Some("f"), &data).unwrap();
        assert_eq!(encoded.frame(None), encode_message("r", Some("f"), &data));
        let (head, tail) = encoded.parts();
        assert_eq!(format!("{head},{tail}"), encoded.frame(None));
        assert_eq!(
            format!(r#"{head},"seq":7,"epoch":"e",{tail}"#),
            encoded.frame(Some((7, "e")))
        );
        let stored = encoded.frame(Some((42, "ab\"c")));
        assert_eq!(
            stored,
            format!(
                r#"{{"op":"message","room":"r","seq":42,"epoch":"ab\"c","from":"f","data":{}}}"#,
                serde_json::to_string(&data).unwrap()
            )
        );
        assert_eq!(
            ServerMsg::parse(&stored).unwrap(),
            ServerMsg::Message {
                room: "r".into(),
                seq: Some(42),
                epoch: Some("ab\"c".into()),
                from: Some("f".into()),
                data: data.clone(),
            }
        );
    }

    #[test]
    fn presence_diff_round_trips() {
        let mut room = RoomPresence::default();
        room.join("ann", 7, json!({"status": "online"}));
        let diff = room.take_diff(usize::MAX).unwrap();
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
    fn server_side_membership_and_direct_shapes() {
        let presence = Presence::new().with("ann", crate::PresenceMeta::new(7, json!({})));
        let joined = encode_joined("chat:a", Some(&presence), None);
        assert_eq!(
            joined,
            r#"{"op":"joined","room":"chat:a","presence":{"ann":{"metas":[{"conn_id":"7","meta":{}}]}}}"#
        );
        assert_eq!(
            ServerMsg::parse(&joined).unwrap(),
            ServerMsg::Joined {
                room: "chat:a".into(),
                presence: Some(presence.clone()),
                count: None,
                next: None,
                seq: None,
                epoch: None,
            }
        );
        // A big room's: the first page, the count and the next cursor.
        let page = PresencePage {
            presence,
            count: PresenceCount::new(250, 260),
            next: Some("ann".into()),
        };
        let joined = encode_joined_page("chat:big", None, Some(&page), None);
        assert_eq!(
            joined,
            r#"{"op":"joined","room":"chat:big","presence":{"ann":{"metas":[{"conn_id":"7","meta":{}}]}},"count":{"users":250,"conns":260},"next":"ann"}"#
        );
        assert_eq!(
            encode_presence_count("chat:big", PresenceCount::new(250, 260)),
            r#"{"op":"presence_count","room":"chat:big","users":250,"conns":260}"#
        );
        assert_eq!(
            ServerMsg::parse(&encode_presence_state("chat:big", &Presence::new())).unwrap(),
            ServerMsg::PresenceState {
                room: "chat:big".into(),
                presence: Presence::new()
            }
        );
        assert_eq!(
            encode_joined("quiet:a", None, None),
            r#"{"op":"joined","room":"quiet:a"}"#
        );
        assert_eq!(
            encode_joined("news:a", None, Some(&StreamPosition::new(3, "e1"))),
            r#"{"op":"joined","room":"news:a","seq":3,"epoch":"e1"}"#
        );
        let left = encode_left("chat:a", "banned");
        assert_eq!(left, r#"{"op":"left","room":"chat:a","reason":"banned"}"#);
        assert_eq!(
            ServerMsg::parse(&left).unwrap(),
            ServerMsg::Left {
                room: "chat:a".into(),
                reason: "banned".into()
            }
        );
        let direct = try_encode_direct(&json!({"kind": "ping"})).unwrap();
        assert_eq!(
            direct,
            r#"{"op":"direct","from":null,"data":{"kind":"ping"}}"#
        );
        assert_eq!(
            ServerMsg::parse(&direct).unwrap(),
            ServerMsg::Direct {
                from: None,
                data: json!({"kind": "ping"})
            }
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
}
