//! Room history and recovery over real sockets (`PROTOCOL.md`, section 9): positions on
//! messages, recovering joins, recent history on a fresh join, and every way a
//! recovery is refused, each answered `recovered: false`, never with a silent gap.

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use wshub::{HistoryLimits, Hub, Namespace, StreamPosition};

use common::hub::{ChatMessage, Client, serve};

/// `chat` keeps history (the default), `quiet` keeps none, `short` keeps 3 messages.
fn hub_with(configure: impl FnOnce(&mut wshub::HubConfig)) -> Hub {
    Hub::builder()
        .namespace(Namespace::<ChatMessage>::new("chat"))
        .namespace(Namespace::<ChatMessage>::new("quiet").no_history())
        .namespace(
            Namespace::<ChatMessage>::new("short")
                .history(HistoryLimits::new(3, Duration::from_secs(600))),
        )
        .configure(configure)
        .build()
}

fn text(v: &Value) -> &str {
    v["data"]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {v}"))
}

fn seq(v: &Value) -> u64 {
    v["seq"].as_u64().unwrap_or_else(|| panic!("no seq in {v}"))
}

/// Publishes `texts` from a client and returns the `message`s it received back.
async fn publish_all(c: &mut Client, room: &str, texts: &[&str]) -> Vec<Value> {
    let mut got = Vec::new();
    for t in texts {
        let (reply, others) = c
            .request(json!({"op": "publish", "room": room, "data": {"text": t}}))
            .await;
        assert_eq!(reply["ok"], true, "{reply}");
        got.extend(others);
    }
    while got.len() < texts.len() {
        got.push(c.recv().await);
    }
    got
}

/// Joins with `extra` fields; returns the reply and the `replayed` messages after it.
async fn join_with(c: &mut Client, room: &str, extra: Value) -> (Value, Vec<Value>) {
    let mut op = json!({"op": "join", "room": room});
    for (k, v) in extra.as_object().unwrap() {
        op[k] = v.clone();
    }
    let (reply, before) = c.request(op).await;
    assert!(
        before.iter().all(|m| m["op"] != "message"),
        "a stored message came before the join reply: {before:?}"
    );
    assert_eq!(reply["ok"], true, "{reply}");
    let n = reply["data"]["replayed"].as_u64().unwrap_or(0);
    let mut replayed = Vec::new();
    for _ in 0..n {
        let m = c.recv().await;
        assert_eq!(m["op"], "message", "{m}");
        replayed.push(m);
    }
    (reply, replayed)
}

#[tokio::test]
async fn stored_messages_carry_positions_and_ephemeral_ones_do_not() {
    let hub = hub_with(|_| {});
    let url = serve(&hub).await;
    let mut c = Client::connect(&url).await;
    let (reply, replayed) = join_with(&mut c, "chat:a", json!({})).await;
    assert!(replayed.is_empty());
    let data = &reply["data"];
    assert_eq!(data["seq"], 0, "an empty stream: {reply}");
    let epoch = data["epoch"].as_str().unwrap().to_owned();
    assert_eq!(epoch.len(), 12);
    assert_eq!(data["replayed"], 0);
    assert!(
        data.get("recovered").is_none(),
        "no since, no recovered: {reply}"
    );

    let (reply, mut before) = c
        .request(json!({"op": "publish", "room": "chat:a", "data": {"text": "one"}}))
        .await;
    assert_eq!(
        reply["data"],
        json!({"delivered": 1, "seq": 1, "epoch": epoch})
    );
    // The publisher's own copy comes before its reply.
    assert_eq!(before.len(), 1, "{before:?}");
    let m = before.remove(0);
    assert_eq!(
        m,
        json!({"op": "message", "room": "chat:a", "seq": 1, "epoch": epoch,
               "from": c.user, "data": {"text": "one"}})
    );
    // Ephemeral: no position, no seq used up.
    let (reply, mut before) = c
        .request(json!({"op": "publish", "room": "chat:a", "data": {"text": "typing"}, "ephemeral": true}))
        .await;
    assert_eq!(reply["data"], json!({"delivered": 1}));
    let m = before.remove(0);
    assert_eq!(text(&m), "typing");
    assert!(m.get("seq").is_none() && m.get("epoch").is_none(), "{m}");
    let m = publish_all(&mut c, "chat:a", &["two"]).await;
    assert_eq!(seq(&m[0]), 2, "the ephemeral message took no seq");

    // From Rust: the stored position comes back, and the history reads it back.
    let room = hub.room::<ChatMessage>("chat:a").unwrap();
    let published = room
        .publish(ChatMessage {
            text: "three".into(),
        })
        .await
        .unwrap();
    assert_eq!(published.delivered, 1);
    assert_eq!(
        published.position,
        Some(StreamPosition::new(3, epoch.as_str()))
    );
    assert_eq!(seq(&c.recv().await), 3);
    let history = room.history(10).await.unwrap();
    let texts: Vec<_> = history.iter().map(|e| e.data.text.as_str()).collect();
    assert_eq!(
        texts,
        ["one", "two", "three"],
        "the ephemeral one is not kept"
    );
    assert_eq!(history[0].from.as_deref(), Some(c.user.as_str()));
    assert_eq!(history[2].from, None);
    assert_eq!(history[2].position.seq, 3);
    let since = room
        .history_since(&StreamPosition::new(1, epoch.as_str()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(since.len(), 2);
    assert!(
        room.history_since(&StreamPosition::new(1, "other"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        room.position().await.unwrap(),
        Some(StreamPosition::new(3, epoch.as_str()))
    );
    let quiet = hub.room::<ChatMessage>("quiet:a").unwrap();
    assert_eq!(quiet.position().await.unwrap(), None);
    let p = quiet
        .publish(ChatMessage { text: "x".into() })
        .await
        .unwrap();
    assert_eq!(p.position, None);
}

#[tokio::test]
async fn a_client_that_reconnects_gets_exactly_what_it_missed() {
    let hub = hub_with(|_| {});
    let url = serve(&hub).await;
    let mut a = Client::connect(&url).await;
    join_with(&mut a, "chat:r", json!({})).await;
    let seen = publish_all(&mut a, "chat:r", &["m1", "m2", "m3"]).await;
    let last = seen.last().unwrap();
    let since = json!({"seq": seq(last), "epoch": last["epoch"]});
    a.close().await;

    // Published while it was away, by another client and by the server.
    let mut b = Client::connect(&url).await;
    join_with(&mut b, "chat:r", json!({})).await;
    publish_all(&mut b, "chat:r", &["m4", "m5"]).await;
    let room = hub.room::<ChatMessage>("chat:r").unwrap();
    room.publish(ChatMessage { text: "m6".into() })
        .await
        .unwrap();

    let mut a = Client::connect(&url).await;
    let (reply, replayed) = join_with(&mut a, "chat:r", json!({ "since": since })).await;
    let data = &reply["data"];
    assert_eq!(data["recovered"], true, "{reply}");
    assert_eq!(data["replayed"], 3);
    assert_eq!(data["seq"], 6);
    assert_eq!(data["epoch"], last["epoch"]);
    let texts: Vec<_> = replayed.iter().map(text).collect();
    assert_eq!(texts, ["m4", "m5", "m6"]);
    assert_eq!(
        replayed.iter().map(seq).collect::<Vec<_>>(),
        [4, 5, 6],
        "in order, no gap"
    );
    // Then live, from 7.
    publish_all(&mut b, "chat:r", &["m7"]).await;
    let live = a.recv().await;
    assert_eq!((text(&live), seq(&live)), ("m7", 7));

    // Nothing missed: recovered with nothing replayed.
    let mut c = Client::connect(&url).await;
    let (reply, replayed) = join_with(
        &mut c,
        "chat:r",
        json!({"since": {"seq": 7, "epoch": last["epoch"]}}),
    )
    .await;
    assert_eq!(reply["data"]["recovered"], true);
    assert_eq!(reply["data"]["replayed"], 0);
    assert!(replayed.is_empty());
}

#[tokio::test]
async fn every_refused_recovery_says_so() {
    let hub = hub_with(|c| c.max_recovery = 4);
    let url = serve(&hub).await;
    let mut p = Client::connect(&url).await;
    join_with(&mut p, "chat:x", json!({})).await;
    join_with(&mut p, "short:x", json!({})).await;
    let all: Vec<String> = (1..=10).map(|i| format!("m{i}")).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let msgs = publish_all(&mut p, "chat:x", &all).await;
    let epoch = msgs[0]["epoch"].clone();
    publish_all(&mut p, "short:x", &all).await;

    let mut c = Client::connect(&url).await;
    let refused = async |c: &mut Client, room: &str, since: Value, why: &str| {
        let (reply, replayed) = join_with(c, room, json!({ "since": since })).await;
        assert_eq!(reply["data"]["recovered"], false, "{why}: {reply}");
        assert_eq!(reply["data"]["replayed"], 0, "{why}: {reply}");
        assert!(replayed.is_empty());
        assert_eq!(reply["data"]["seq"], 10, "{why}: the current position");
        c.request(json!({"op": "leave", "room": room})).await;
        reply
    };
    // Another epoch (another process, or a reset store).
    refused(
        &mut c,
        "chat:x",
        json!({"seq": 8, "epoch": "0123456789ab"}),
        "epoch",
    )
    .await;
    // More missed than the cap (4): 5 to 10.
    refused(
        &mut c,
        "chat:x",
        json!({"seq": 4, "epoch": epoch}),
        "over the cap",
    )
    .await;
    // Ahead of the stream.
    refused(
        &mut c,
        "chat:x",
        json!({"seq": 11, "epoch": epoch}),
        "ahead",
    )
    .await;
    // Evicted: `short` keeps 3 (8, 9, 10), so after 6 the 7th is gone.
    let short_epoch = {
        let (reply, _) = join_with(&mut c, "short:x", json!({})).await;
        c.request(json!({"op": "leave", "room": "short:x"})).await;
        reply["data"]["epoch"].clone()
    };
    refused(
        &mut c,
        "short:x",
        json!({"seq": 6, "epoch": short_epoch}),
        "evicted",
    )
    .await;
    // ... while after 7 all three are there.
    let (reply, replayed) = join_with(
        &mut c,
        "short:x",
        json!({"since": {"seq": 7, "epoch": short_epoch}}),
    )
    .await;
    assert_eq!(reply["data"]["recovered"], true);
    assert_eq!(replayed.iter().map(seq).collect::<Vec<_>>(), [8, 9, 10]);

    // A refused recovery that also asked for history gets the last N instead.
    let (reply, replayed) = join_with(
        &mut c,
        "chat:x",
        json!({"since": {"seq": 1, "epoch": "gone"}, "history": 2}),
    )
    .await;
    assert_eq!(reply["data"]["recovered"], false);
    assert_eq!(reply["data"]["replayed"], 2);
    assert_eq!(replayed.iter().map(text).collect::<Vec<_>>(), ["m9", "m10"]);

    // A namespace without history: never recovered, no position.
    let (reply, replayed) = join_with(
        &mut c,
        "quiet:x",
        json!({"since": {"seq": 1, "epoch": epoch}, "history": 5}),
    )
    .await;
    assert_eq!(
        reply["data"],
        json!({"presence": reply["data"]["presence"], "recovered": false})
    );
    assert!(replayed.is_empty());
}

#[tokio::test]
async fn a_fresh_join_can_ask_for_recent_history_capped() {
    let hub = hub_with(|c| c.max_join_history = 5);
    let url = serve(&hub).await;
    let room = hub.room::<ChatMessage>("chat:h").unwrap();
    for i in 1..=8 {
        room.publish(ChatMessage {
            text: format!("m{i}"),
        })
        .await
        .unwrap();
    }
    room.publish_ephemeral(ChatMessage {
        text: "cursor".into(),
    })
    .await
    .unwrap();
    let mut c = Client::connect(&url).await;
    let (reply, replayed) = join_with(&mut c, "chat:h", json!({"history": 3})).await;
    assert_eq!(reply["data"]["replayed"], 3);
    assert_eq!(reply["data"]["seq"], 8);
    assert_eq!(
        replayed.iter().map(text).collect::<Vec<_>>(),
        ["m6", "m7", "m8"],
        "the ephemeral message is never replayed"
    );
    let mut d = Client::connect(&url).await;
    let (reply, replayed) = join_with(&mut d, "chat:h", json!({"history": 1000})).await;
    assert_eq!(reply["data"]["replayed"], 5, "capped at max_join_history");
    assert_eq!(text(&replayed[0]), "m4");
    // Joining again: the current position, nothing replayed.
    let (reply, replayed) = join_with(&mut d, "chat:h", json!({"history": 3})).await;
    assert_eq!(reply["data"]["seq"], 8);
    assert_eq!(reply["data"]["replayed"], 0);
    assert!(replayed.is_empty());
}

#[tokio::test]
async fn a_restarted_hub_never_vouches_for_the_old_positions() {
    let first = hub_with(|_| {});
    let url = serve(&first).await;
    let mut c = Client::connect(&url).await;
    join_with(&mut c, "chat:z", json!({})).await;
    let last = publish_all(&mut c, "chat:z", &["before"]).await.remove(0);
    c.close().await;
    first.shutdown().await;

    // A new process: a new, empty in-memory history.
    let second = hub_with(|_| {});
    let url = serve(&second).await;
    second
        .room::<ChatMessage>("chat:z")
        .unwrap()
        .publish(ChatMessage {
            text: "after".into(),
        })
        .await
        .unwrap();
    let mut c = Client::connect(&url).await;
    let (reply, replayed) = join_with(
        &mut c,
        "chat:z",
        json!({"since": {"seq": seq(&last), "epoch": last["epoch"]}, "history": 10}),
    )
    .await;
    assert_eq!(reply["data"]["recovered"], false, "{reply}");
    assert_ne!(reply["data"]["epoch"], last["epoch"], "a new epoch");
    assert_eq!(reply["data"]["seq"], 1);
    assert_eq!(replayed.iter().map(text).collect::<Vec<_>>(), ["after"]);
}

#[tokio::test]
async fn bad_positions_are_bad_requests() {
    let hub = hub_with(|_| {});
    let url = serve(&hub).await;
    let mut c = Client::connect(&url).await;
    let long = "e".repeat(65);
    for (extra, message) in [
        (
            json!({"since": 5}),
            "`since` must be an object with a non-negative integer `seq` and a string `epoch`",
        ),
        (
            json!({"since": {"seq": -1, "epoch": "a"}}),
            "`since` must be an object with a non-negative integer `seq` and a string `epoch`",
        ),
        (
            json!({"since": {"seq": 1}}),
            "`since` must be an object with a non-negative integer `seq` and a string `epoch`",
        ),
        (
            json!({"since": {"seq": 1, "epoch": long}}),
            "`since.epoch` is longer than 64 characters",
        ),
        (
            json!({"history": "all"}),
            "`history` must be a non-negative integer",
        ),
        (
            json!({"history": -3}),
            "`history` must be a non-negative integer",
        ),
    ] {
        let mut op = json!({"op": "join", "room": "chat:b"});
        for (k, v) in extra.as_object().unwrap() {
            op[k] = v.clone();
        }
        let (reply, _) = c.request(op).await;
        assert_eq!(reply["ok"], false, "{extra}: {reply}");
        assert_eq!(reply["error"]["code"], "bad_request", "{extra}");
        assert_eq!(reply["error"]["message"], message, "{extra}");
    }
    // `null` is absent.
    let (reply, _) = join_with(&mut c, "chat:b", json!({"since": null, "history": null})).await;
    assert_eq!(reply["data"]["seq"], 0);
}

#[tokio::test]
async fn a_server_join_carries_the_position() {
    let hub = hub_with(|_| {});
    let url = serve(&hub).await;
    let room = hub.room::<ChatMessage>("chat:s").unwrap();
    let p = room
        .publish(ChatMessage { text: "x".into() })
        .await
        .unwrap()
        .position
        .unwrap();
    let mut c = Client::connect(&url).await;
    let conn = hub.connection(c.conn_id.parse().unwrap()).unwrap();
    assert_eq!(conn.join("chat:s").await, Ok(true));
    let joined = c.recv().await;
    assert_eq!(joined["op"], "joined");
    assert_eq!(joined["seq"], 1);
    assert_eq!(joined["epoch"], &*p.epoch);
    assert_eq!(conn.join("quiet:s").await, Ok(true));
    let joined = c.recv().await;
    assert!(joined.get("seq").is_none(), "{joined}");
}
