//! Every error a `wshub.v1` client can get, over real sockets with the tokio-tungstenite
//! client: the exact reply (`{"op":"reply","id":N,"ok":false,"error":{..}}`, or a bare
//! `{"op":"error",..}` when the op had no usable id), and that the connection still
//! works afterwards (a join and a publish that round-trips). Then the limits that close
//! the connection instead: flooding (1008) and an oversized message (1009). And a
//! namespace publish hook that refuses some messages and rewrites others.

mod common;

use std::time::Duration;

use common::hub::{ChatMessage, Client, serve, test_hub_builder};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use wshub::{Namespace, Refusal};

/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

/// Takes the `error.message` out of `v` (asserting it is a non-empty string) and
/// returns `v` without it, so the rest can be compared exactly.
fn without_message(v: &Value) -> (Value, String) {
    let mut v = v.clone();
    let message = v
        .get_mut("error")
        .and_then(Value::as_object_mut)
        .and_then(|e| e.remove("message"));
    match message {
        Some(Value::String(m)) if !m.is_empty() => (v, m),
        other => panic!("error.message must be a non-empty string, got {other:?} in {v}"),
    }
}

/// Asserts `v` is exactly a failed reply to `id` with `code`; returns the message.
#[track_caller]
fn assert_err_reply(v: &Value, id: u64, code: &str) -> String {
    let (rest, message) = without_message(v);
    assert_eq!(
        rest,
        json!({"op": "reply", "id": id, "ok": false, "error": {"code": code}}),
        "full reply: {v}"
    );
    message
}

/// Asserts `v` is exactly a bare `error` with `code`; returns the message.
#[track_caller]
fn assert_bare_error(v: &Value, code: &str) -> String {
    let (rest, message) = without_message(v);
    assert_eq!(
        rest,
        json!({"op": "error", "error": {"code": code}}),
        "full message: {v}"
    );
    message
}

/// Sends `op` with a fresh id; asserts the reply is exactly an error with `code` and
/// that nothing else arrived before it. Returns the error message.
async fn request_err(c: &mut Client, op: Value, code: &str) -> String {
    let (reply, others) = c.request(op).await;
    assert!(
        others.is_empty(),
        "unexpected messages before the reply: {others:?}"
    );
    let id = reply["id"].as_u64().expect("reply id");
    assert_err_reply(&reply, id, code)
}

/// The connection still works: joining `room` succeeds (or is a harmless re-join) and a
/// publish to it comes back to the publisher as a `message`, with an ok reply.
async fn assert_usable(c: &mut Client, room: &str) {
    let join = c.join(room, json!({})).await;
    assert_eq!(join["ok"], true, "join {room} after an error: {join}");
    let text = format!("still alive in {room}");
    let (reply, others) = c
        .request(json!({"op": "publish", "room": room, "data": {"text": text}}))
        .await;
    assert_eq!(reply["ok"], true, "publish after an error: {reply}");
    assert!(
        others.iter().any(|m| m["op"] == "message"
            && common::hub::stored(m)
                == json!({"op": "message", "room": room, "from": c.user, "data": {"text": text}})),
        "own message did not come back before the reply: {others:?}"
    );
}

/// Reads text messages (but presence diffs) until the server's close frame; returns them
/// and the close code. Then answers the close the way a well-behaved client does (tungstenite sends its
/// reply on the next poll) and reads on until the server ends the connection.
async fn read_until_close(c: &mut Client) -> (Vec<Value>, u16) {
    let mut texts = Vec::new();
    let code = loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), c.ws.next())
            .await
            .expect("timed out waiting for the close frame");
        match msg {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["op"] != "presence_diff" {
                    texts.push(v);
                }
            }
            Some(Ok(Message::Close(Some(frame)))) => break u16::from(frame.code),
            Some(Ok(Message::Close(None))) => break 1005,
            Some(Ok(_)) => {}
            other => panic!("connection ended without a close frame: {other:?} after {texts:?}"),
        }
    };
    let next = tokio::time::timeout(Duration::from_secs(5), c.ws.next())
        .await
        .expect("the server did not end the connection after the closing handshake");
    if let Some(Ok(other)) = next {
        panic!("received {other:?} after the close frame");
    }
    (texts, code)
}

/// Waits for a `presence_diff` on `c` announcing that `user` left `room`.
async fn expect_leave(c: &mut Client, room: &str, user: &str) {
    loop {
        let m = c.recv_diff().await;
        if m["op"] == "presence_diff" && m["room"] == room && m["leaves"].get(user).is_some() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------
// bad_request
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_are_bad_request_and_the_connection_stays_open() {
    let hub = test_hub_builder().build();
    let url = serve(&hub).await;
    let mut c = Client::connect(&url).await;

    // No usable id: a bare error.
    let bare = [
        ("hello", "unparseable JSON"),
        ("{\"op\": \"join\", ", "truncated JSON"),
        ("[1, 2]", "an array"),
        ("42", "a number"),
        ("\"join\"", "a string"),
        ("null", "null"),
        (r#"{"op":"join","room":"chat:x"}"#, "missing id"),
        (
            r#"{"op":"join","room":"chat:x","id":"10"}"#,
            "id as a string",
        ),
        (r#"{"op":"join","room":"chat:x","id":-1}"#, "negative id"),
        (r#"{"op":"join","room":"chat:x","id":1.5}"#, "fractional id"),
        (r#"{"room":"chat:x"}"#, "missing op and id"),
    ];
    for (frame, what) in bare {
        c.send_text(frame).await;
        let v = c.recv().await;
        assert_eq!(v["op"], "error", "{what}: {v}");
        assert_bare_error(&v, "bad_request");
    }
    c.send_text("hello").await;
    let msg = assert_bare_error(&c.recv().await, "bad_request");
    assert!(msg.starts_with("invalid JSON"), "{msg}");
    c.send_text(r#"{"op":"join","room":"chat:x","id":"10"}"#)
        .await;
    let msg = assert_bare_error(&c.recv().await, "bad_request");
    assert!(msg.contains("`id`"), "{msg}");

    // A readable id: a failed reply to it.
    let with_id = [
        (r#"{"room":"chat:x","id":5}"#, 5, "missing field `op`"),
        (r#"{"op":42,"id":6}"#, 6, "`op` must be a string"),
        (r#"{"op":"subscribe","id":7}"#, 7, "unknown op `subscribe`"),
        (
            r#"{"op":"JOIN","room":"chat:x","id":8}"#,
            8,
            "unknown op `JOIN`",
        ),
        (r#"{"op":"join","id":9}"#, 9, "missing field `room`"),
        (
            r#"{"op":"join","room":7,"id":10}"#,
            10,
            "`room` must be a string",
        ),
        (
            r#"{"op":"join","room":"chat:x","id":11,"meta":[1]}"#,
            11,
            "`meta` must be an object",
        ),
        (
            r#"{"op":"publish","room":"chat:x","id":12}"#,
            12,
            "missing field `data`",
        ),
        (
            r#"{"op":"publish","room":"chat:x","data":1,"id":13,"ephemeral":"yes"}"#,
            13,
            "`ephemeral` must be a boolean",
        ),
        (r#"{"op":"leave","id":14}"#, 14, "missing field `room`"),
        (
            r#"{"op":"presence","room":"chat:x","id":15,"id":15}"#,
            15,
            "duplicate field `id`",
        ),
    ];
    for (frame, id, message) in with_id {
        c.send_text(frame).await;
        let v = c.recv().await;
        let got = assert_err_reply(&v, id, "bad_request");
        assert!(
            got.contains(message),
            "{frame}: expected {message:?} in {got:?}"
        );
    }

    // None of that joined anything or cost the connection anything.
    let (reply, _) = c.request(json!({"op": "presence", "room": "chat:x"})).await;
    assert_err_reply(&reply, reply["id"].as_u64().unwrap(), "not_joined");
    assert_usable(&mut c, "chat:x").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_frames_are_bad_request_and_the_connection_stays_open() {
    let hub = test_hub_builder().build();
    let url = serve(&hub).await;
    let mut c = Client::connect(&url).await;
    c.join_ok("chat:bin").await;
    // Even a binary frame holding a valid op is refused: wshub.v1 is text only.
    let op = json!({"op": "publish", "room": "chat:bin", "data": {"text": "x"}, "id": 99});
    c.ws.send(Message::binary(op.to_string().into_bytes()))
        .await
        .unwrap();
    let msg = assert_bare_error(&c.recv().await, "bad_request");
    assert!(msg.contains("binary"), "{msg}");
    c.ws.send(Message::binary(Vec::<u8>::new())).await.unwrap();
    assert_bare_error(&c.recv().await, "bad_request");
    assert_usable(&mut c, "chat:bin").await;
}

// ---------------------------------------------------------------------------------
// not_found, not_joined
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_namespace_is_not_found() {
    let hub = test_hub_builder().build();
    let url = serve(&hub).await;
    let mut c = Client::connect(&url).await;

    let m = request_err(
        &mut c,
        json!({"op": "publish", "room": "nope:x", "data": {"text": "hi"}}),
        "not_found",
    )
    .await;
    assert!(m.contains("nope:x"), "{m}");
    for room in ["nope:x", "chat", "chat:", "", ":x", "Chat:x"] {
        request_err(&mut c, json!({"op": "join", "room": room}), "not_found").await;
    }
    request_err(
        &mut c,
        json!({"op": "presence", "room": "nope:x"}),
        "not_found",
    )
    .await;
    // Fire-and-forget: the failure comes back as a bare error.
    c.send(json!({"op": "publish", "room": "nope:x", "data": {"text": "hi"}}))
        .await;
    assert_bare_error(&c.recv().await, "not_found");
    assert_eq!(hub.stats().rooms, 0, "refused joins created no room");
    assert_usable(&mut c, "chat:found").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_before_join_is_not_joined() {
    let hub = test_hub_builder().build();
    let url = serve(&hub).await;
    let mut member = Client::connect(&url).await;
    member.join_ok("chat:nj").await;
    let mut c = Client::connect(&url).await;

    let m = request_err(
        &mut c,
        json!({"op": "publish", "room": "chat:nj", "data": {"text": "sneaky"}}),
        "not_joined",
    )
    .await;
    assert!(m.contains("chat:nj"), "{m}");
    c.send(json!({"op": "publish", "room": "chat:nj", "data": {"text": "sneaky"}}))
        .await;
    assert_bare_error(&c.recv().await, "not_joined");
    request_err(
        &mut c,
        json!({"op": "presence", "room": "chat:nj"}),
        "not_joined",
    )
    .await;
    assert_eq!(
        member.recv_nothing(QUIET).await,
        None,
        "nothing was broadcast"
    );

    assert_usable(&mut c, "chat:nj").await;
    // The member sees c's message (and, on the presence tick, c's join): nothing before.
    let m = member.recv().await;
    assert_eq!(m["data"]["text"], "still alive in chat:nj", "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_without_join_is_not_joined() {
    let hub = test_hub_builder().build();
    let url = serve(&hub).await;
    let mut c = Client::connect(&url).await;
    request_err(
        &mut c,
        json!({"op": "leave", "room": "chat:l"}),
        "not_joined",
    )
    .await;
    // Leaving twice: the second is not_joined too.
    c.join_ok("chat:l").await;
    let (reply, _) = c.request(json!({"op": "leave", "room": "chat:l"})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["data"], json!({}), "{reply}");
    request_err(
        &mut c,
        json!({"op": "leave", "room": "chat:l"}),
        "not_joined",
    )
    .await;
    // Leaving an unknown room: there is nothing to be in.
    request_err(
        &mut c,
        json!({"op": "leave", "room": "nope:l"}),
        "not_joined",
    )
    .await;
    assert_usable(&mut c, "chat:l").await;
}

// ---------------------------------------------------------------------------------
// invalid_data, forbidden, too_large
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_that_does_not_fit_the_type_is_invalid_data_and_never_broadcast() {
    let hub = test_hub_builder().build();
    let url = serve(&hub).await;
    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    a.join_ok("chat:typed").await;
    b.join_ok("chat:typed").await;

    let bad = [
        json!({"text": 5}),
        json!({"txt": "typo"}),
        json!({}),
        json!("just a string"),
        json!(null),
        json!([{"text": "in an array"}]),
    ];
    for data in bad {
        // request_err asserts a receives nothing but the reply: not even its own copy.
        let m = request_err(
            &mut a,
            json!({"op": "publish", "room": "chat:typed", "data": data}),
            "invalid_data",
        )
        .await;
        assert!(m.contains("ChatMessage"), "{m}");
    }
    a.send(json!({"op": "publish", "room": "chat:typed", "data": {"text": 5}}))
        .await;
    assert_bare_error(&a.recv().await, "invalid_data");
    assert_eq!(
        b.recv_nothing(QUIET).await,
        None,
        "b received an invalid message"
    );

    assert_usable(&mut a, "chat:typed").await;
    // The first thing b receives is the valid message.
    let m = b.recv().await;
    assert_eq!(
        common::hub::stored(&m),
        json!({"op": "message", "room": "chat:typed", "from": a.user,
               "data": {"text": "still alive in chat:typed"}})
    );
    // Unknown fields are dropped by the type, not forwarded.
    let reply = a
        .publish("chat:typed", json!({"text": "t", "admin": true}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let m = b.recv().await;
    assert_eq!(m["data"], json!({"text": "t"}), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_publish_to_server_only_namespace_is_forbidden() {
    let hub = test_hub_builder().build();
    let url = serve(&hub).await;
    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    a.join_ok("news:today").await;
    b.join_ok("news:today").await;

    let m = request_err(
        &mut a,
        json!({"op": "publish", "room": "news:today", "data": {"title": "fake news"}}),
        "forbidden",
    )
    .await;
    assert!(m.contains("server only"), "{m}");
    a.send(json!({"op": "publish", "room": "news:today", "data": {"title": "fake"}}))
        .await;
    assert_bare_error(&a.recv().await, "forbidden");
    assert_eq!(b.recv_nothing(QUIET).await, None);

    // The server may publish there, and both still receive.
    let news = hub.room::<common::hub::Article>("news:today").unwrap();
    let n = news
        .publish(common::hub::Article {
            title: "real news".into(),
        })
        .await
        .unwrap()
        .delivered;
    assert_eq!(n, 2);
    for c in [&mut a, &mut b] {
        assert_eq!(
            common::hub::stored(&c.recv().await),
            json!({"op": "message", "room": "news:today", "from": null,
                   "data": {"title": "real news"}})
        );
    }
    assert_usable(&mut a, "chat:after-news").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_over_max_payload_and_meta_over_max_presence_meta_are_too_large() {
    let hub = test_hub_builder()
        .namespace(Namespace::<ChatMessage>::new("tiny").max_payload(32))
        .configure(|c| c.max_presence_meta = 64)
        .build();
    let url = serve(&hub).await;
    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    a.join_ok("tiny:x").await;
    b.join_ok("tiny:x").await;

    // {"text":"..."} is 11 bytes of JSON around the text.
    let fits = "y".repeat(32 - 11);
    let over = "y".repeat(32 - 11 + 1);
    let m = request_err(
        &mut a,
        json!({"op": "publish", "room": "tiny:x", "data": {"text": over}}),
        "too_large",
    )
    .await;
    assert!(m.contains("33") && m.contains("32"), "{m}");
    assert_eq!(
        b.recv_nothing(QUIET).await,
        None,
        "b received a too-large message"
    );
    let reply = a.publish("tiny:x", json!({"text": fits})).await;
    assert_eq!(reply["ok"], true, "exactly max_payload fits: {reply}");
    assert_eq!(b.recv().await["data"]["text"], fits);

    // Presence meta: 64 bytes of JSON fit, 65 do not. {"bio":"..."} is 10 bytes.
    let m = request_err(
        &mut a,
        json!({"op": "join", "room": "chat:meta", "meta": {"bio": "z".repeat(55)}}),
        "too_large",
    )
    .await;
    assert!(m.contains("65"), "{m}");
    request_err(
        &mut a,
        json!({"op": "presence", "room": "chat:meta"}),
        "not_joined",
    )
    .await;
    let ok = a.join("chat:meta", json!({"bio": "z".repeat(54)})).await;
    assert_eq!(ok["ok"], true, "{ok}");
    assert_usable(&mut a, "chat:meta").await;
}

// ---------------------------------------------------------------------------------
// too_many_rooms, room_full
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_over_max_rooms_per_connection_are_too_many_rooms() {
    let hub = test_hub_builder()
        .configure(|c| c.max_rooms_per_connection = 2)
        .build();
    let url = serve(&hub).await;
    let mut c = Client::connect(&url).await;
    c.join_ok("chat:1").await;
    c.join_ok("chat:2").await;
    let m = request_err(
        &mut c,
        json!({"op": "join", "room": "chat:3"}),
        "too_many_rooms",
    )
    .await;
    assert!(m.contains('2'), "{m}");
    // Re-joining a room it is in is not a new room.
    c.join_ok("chat:2").await;
    // Leaving one makes room for another.
    let (reply, _) = c.request(json!({"op": "leave", "room": "chat:1"})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_usable(&mut c, "chat:3").await;
    request_err(
        &mut c,
        json!({"op": "join", "room": "chat:1"}),
        "too_many_rooms",
    )
    .await;
    // Another connection has its own count.
    let mut d = Client::connect(&url).await;
    assert_usable(&mut d, "chat:1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_over_max_subscribers_are_room_full() {
    let hub = test_hub_builder()
        .namespace(Namespace::<ChatMessage>::new("duo").max_subscribers(2))
        .build();
    let url = serve(&hub).await;
    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    let mut c = Client::connect(&url).await;
    a.join_ok("duo:x").await;
    b.join_ok("duo:x").await;
    let m = request_err(&mut c, json!({"op": "join", "room": "duo:x"}), "room_full").await;
    assert!(m.contains("duo:x"), "{m}");
    // The refused join announced nothing and added no member.
    assert_eq!(a.recv_nothing(QUIET).await, None);
    assert_eq!(hub.room::<ChatMessage>("duo:x").unwrap().member_count(), 2);
    request_err(
        &mut c,
        json!({"op": "publish", "room": "duo:x", "data": {"text": "x"}}),
        "not_joined",
    )
    .await;
    // Other rooms of the namespace are separate.
    assert_usable(&mut c, "duo:y").await;
    // When a member leaves, there is room again.
    let b_user = b.user.clone();
    b.close().await;
    expect_leave(&mut a, "duo:x", &b_user).await;
    assert_usable(&mut c, "duo:x").await;
    let m = a.recv().await;
    assert_eq!(m["data"]["text"], "still alive in duo:x", "{m}");
}

// ---------------------------------------------------------------------------------
// rate_limited, flooding (1008), max_message_size (1009)
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_the_rate_are_rate_limited_with_their_ids() {
    let hub = test_hub_builder()
        .configure(|c| {
            c.rate_per_second = 1.0;
            c.rate_burst = 2.0;
            c.flood_limit = 10;
        })
        .build();
    let url = serve(&hub).await;
    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    a.join_ok("chat:rl").await;
    b.join_ok("chat:rl").await;
    // Let a's bucket fill up again (the join took a token).
    tokio::time::sleep(Duration::from_millis(1500)).await;

    for i in 1..=5u64 {
        a.send(
            json!({"op": "publish", "room": "chat:rl", "data": {"text": format!("m{i}")},
                      "id": 100 + i}),
        )
        .await;
    }
    let mut replies = std::collections::BTreeMap::new();
    let mut own = Vec::new();
    while replies.len() < 5 {
        let v = a.recv().await;
        match v["op"].as_str() {
            Some("reply") => {
                replies.insert(v["id"].as_u64().unwrap(), v);
            }
            Some("message") => own.push(v["data"]["text"].as_str().unwrap().to_owned()),
            Some("presence_diff") => {}
            _ => panic!("unexpected {v}"),
        }
    }
    for id in [101, 102] {
        assert_eq!(replies[&id]["ok"], true, "{}", replies[&id]);
    }
    for id in [103, 104, 105] {
        let m = assert_err_reply(&replies[&id], id, "rate_limited");
        assert!(m.contains("slow down"), "{m}");
    }
    assert_eq!(own, ["m1", "m2"]);
    // A rate-limited message without an id gets a bare error.
    a.send(json!({"op": "publish", "room": "chat:rl", "data": {"text": "m6"}}))
        .await;
    assert_bare_error(&a.recv().await, "rate_limited");

    // b got m1 and m2 only.
    for text in ["m1", "m2"] {
        assert_eq!(b.recv().await["data"]["text"], text);
    }
    assert_eq!(
        b.recv_nothing(QUIET).await,
        None,
        "rate-limited publishes leaked"
    );

    // After a pause the bucket has tokens again (1 per second).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let text = "after the pause";
    let (reply, others) = a
        .request(json!({"op": "publish", "room": "chat:rl", "data": {"text": text}}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(others.len(), 1, "{others:?}");
    assert_eq!(others[0]["data"]["text"], text);
    assert_eq!(b.recv().await["data"]["text"], text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_flooding_closes_with_1008() {
    let hub = test_hub_builder()
        .configure(|c| {
            c.rate_per_second = 0.2;
            c.rate_burst = 1.0;
            c.flood_limit = 3;
        })
        .build();
    let url = serve(&hub).await;
    let mut watcher = Client::connect(&url).await;
    watcher.join_ok("chat:flood").await;
    let mut f = Client::connect(&url).await;
    f.join_ok("chat:flood").await; // the one token
    let joined = watcher.recv_diff_about(&f.user).await;
    assert!(joined["joins"].get(&f.user).is_some(), "{joined}");

    // Strikes 1 and 2 are answered; strike 3 closes.
    for i in 0..3u64 {
        f.send(json!({"op": "publish", "room": "chat:flood", "data": {"text": "spam"}, "id": i}))
            .await;
    }
    let (texts, code) = read_until_close(&mut f).await;
    assert_eq!(code, 1008, "close code after flooding (got {texts:?})");
    for (v, id) in texts.iter().zip(0..) {
        assert_err_reply(v, id, "rate_limited");
    }
    // Both refusals arrive before the close (it keeps what was queued ahead of it).
    assert_eq!(texts.len(), 2, "{texts:?}");
    // The flooder left its rooms; nothing it sent was broadcast.
    let leave = watcher.recv_diff_about(&f.user).await;
    assert!(leave["leaves"].get(&f.user).is_some(), "{leave}");
    assert_eq!(watcher.recv_nothing(QUIET).await, None);
    // Others are unaffected (the watcher spent its one token on its join, so the server
    // publishes to it, and a newcomer joins beside it).
    let mut newcomer = Client::connect(&url).await;
    newcomer.join_ok("chat:flood").await;
    let diff = watcher.recv_diff_about(&newcomer.user).await;
    assert!(diff["joins"].get(&newcomer.user).is_some(), "{diff}");
    hub.room::<ChatMessage>("chat:flood")
        .unwrap()
        .publish(ChatMessage {
            text: "calm again".into(),
        })
        .await
        .unwrap();
    for c in [&mut watcher, &mut newcomer] {
        assert_eq!(c.recv().await["data"]["text"], "calm again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_max_message_size_closes_with_1009() {
    let hub = test_hub_builder()
        .configure(|c| c.ws.max_message_size = 1024)
        .build();
    let url = serve(&hub).await;
    let mut watcher = Client::connect(&url).await;
    watcher.join_ok("chat:big").await;
    let mut big = Client::connect(&url).await;
    // Just under the limit is fine.
    let op = |text: String| json!({"op": "publish", "room": "chat:big", "data": {"text": text}});
    big.join_ok("chat:big").await;
    // Seen to join (else a join and leave within one presence tick announce nothing).
    watcher.recv_diff_about(&big.user.clone()).await;
    let overhead = op(String::new()).to_string().len();
    let frame = op("a".repeat(1024 - overhead)).to_string();
    assert_eq!(frame.len(), 1024);
    big.send_text(&frame).await;
    assert_eq!(big.recv().await["op"], "message");
    assert_eq!(watcher.recv().await["op"], "message");

    big.send_text(&op("b".repeat(2000)).to_string()).await;
    let (texts, code) = read_until_close(&mut big).await;
    assert_eq!(code, 1009, "close code (got {texts:?})");
    assert!(texts.is_empty(), "{texts:?}");
    // After an error close the server reads on until the client closes TCP (so that no
    // RST can destroy its close frame), but the connection leaves its rooms at once:
    // `big` is still open here.
    let started = std::time::Instant::now();
    let leave = watcher.recv_diff_about(&big.user).await;
    assert!(leave["leaves"].get(&big.user).is_some(), "{leave}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the leave took {:?}",
        started.elapsed()
    );
    drop(big);
    assert_eq!(watcher.recv_nothing(QUIET).await, None);
    assert_usable(&mut watcher, "chat:big").await;
}

// ---------------------------------------------------------------------------------
// Publish hooks
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_hook_refuses_and_transforms() {
    let hub = test_hub_builder()
        .namespace(
            Namespace::<ChatMessage>::new("mod").on_publish(|ctx, msg: ChatMessage| {
                if msg.text.contains("spam") {
                    return Err(Refusal::forbidden("no spam here"));
                }
                if msg.text.trim().is_empty() {
                    return Err(Refusal::invalid("empty message"));
                }
                let mark = if ctx.ephemeral { " (typing)" } else { "" };
                Ok(ChatMessage {
                    text: format!(
                        "[{}] {}: {}{mark}",
                        ctx.room,
                        ctx.identity.name,
                        msg.text.trim().to_uppercase()
                    ),
                })
            }),
        )
        .build();
    let url = serve(&hub).await;
    let mut ann = Client::connect(&format!("{url}?name=Ann")).await;
    let mut bob = Client::connect(&format!("{url}?name=Bob")).await;
    ann.join_ok("mod:x").await;
    bob.join_ok("mod:x").await;

    let m = request_err(
        &mut ann,
        json!({"op": "publish", "room": "mod:x", "data": {"text": "buy spam now"}}),
        "forbidden",
    )
    .await;
    assert_eq!(m, "no spam here");
    let m = request_err(
        &mut ann,
        json!({"op": "publish", "room": "mod:x", "data": {"text": "   "}}),
        "invalid_data",
    )
    .await;
    assert_eq!(m, "empty message");
    // Data that does not decode never reaches the hook.
    request_err(
        &mut ann,
        json!({"op": "publish", "room": "mod:x", "data": {"text": ["spam"]}}),
        "invalid_data",
    )
    .await;
    ann.send(json!({"op": "publish", "room": "mod:x", "data": {"text": "spam"}}))
        .await;
    assert_eq!(
        assert_bare_error(&ann.recv().await, "forbidden"),
        "no spam here"
    );
    assert_eq!(
        bob.recv_nothing(QUIET).await,
        None,
        "refused messages leaked"
    );

    // Accepted messages are broadcast as the hook rewrote them, to everyone.
    let (reply, others) = ann
        .request(json!({"op": "publish", "room": "mod:x", "data": {"text": "  hello  "}}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["data"]["delivered"], 2, "{reply}");
    let expected = json!({"op": "message", "room": "mod:x", "from": ann.user,
                          "data": {"text": "[mod:x] Ann: HELLO"}});
    assert_eq!(others.len(), 1, "{others:?}");
    assert_eq!(common::hub::stored(&others[0]), expected);
    assert_eq!(common::hub::stored(&bob.recv().await), expected);
    let reply = bob
        .request(
            json!({"op": "publish", "room": "mod:x", "data": {"text": "hi"},
                        "ephemeral": true}),
        )
        .await
        .0;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(ann.recv().await["data"]["text"], "[mod:x] Bob: HI (typing)");

    // Server publishes skip the hook.
    hub.room::<ChatMessage>("mod:x")
        .unwrap()
        .publish(ChatMessage {
            text: "spam, from the server".into(),
        })
        .await
        .unwrap();
    for c in [&mut ann, &mut bob] {
        let m = c.recv().await;
        assert_eq!(m["data"]["text"], "spam, from the server", "{m}");
        assert_eq!(m["from"], Value::Null, "{m}");
    }
    // The refusing connection is still fine; other namespaces have no hook.
    assert_usable(&mut ann, "chat:plain").await;
}

/// A flooder is taken out of its rooms when it is closed, not when it gets round to
/// answering the close frame (it may never: the server then waits `close_timeout`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooder_that_ignores_the_close_leaves_its_rooms_at_once() {
    let hub = test_hub_builder()
        .configure(|c| {
            c.rate_per_second = 0.2;
            c.rate_burst = 1.0;
            c.flood_limit = 3;
        })
        .build();
    let url = serve(&hub).await;
    let mut watcher = Client::connect(&url).await;
    watcher.join_ok("chat:flood2").await;
    let mut f = Client::connect(&url).await;
    f.join_ok("chat:flood2").await;
    // Seen to join (else a join and leave within one presence tick announce nothing).
    watcher.recv_diff_about(&f.user.clone()).await;
    for i in 0..3u64 {
        f.send(json!({"op": "publish", "room": "chat:flood2", "data": {"text": "spam"}, "id": i}))
            .await;
    }
    // f never reads again, so tungstenite never answers the server's close.
    let started = std::time::Instant::now();
    let leave = watcher.recv_diff_about(&f.user).await;
    assert!(leave["leaves"].get(&f.user).is_some(), "{leave}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the flooder's leave took {:?}",
        started.elapsed()
    );
    assert_eq!(
        hub.room::<ChatMessage>("chat:flood2")
            .unwrap()
            .member_count(),
        1
    );
    drop(f);
}
