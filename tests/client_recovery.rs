//! `wshub::client`'s recovery logic (PROTOCOL.md section 9) against a scripted fake
//! server built on the crate's own engine: re-joins carry `since` = the last position
//! received; each stored message reaches the application once and in order (replayed
//! ones after the reply, duplicates dropped); a failed recovery is an explicit event;
//! requests made offline go out after the re-joins, in-flight ones fail; a rate-limited
//! re-join is retried, a refused one ends the room's stream; rooms the server took the
//! client out of are not joined again; a subscription not read loses its oldest events
//! and says how many.

mod common;

use std::time::Duration;

use common::client::{EVENT_TIMEOUT, FakeConn, FakeServer, next_event};
use common::hub::ChatMessage;
use serde_json::{Value, json};
use wshub::ErrorCode;
use wshub::client::{
    Backoff, Client, ClientError, ClientEvent, JoinOptions, RoomEvent, StreamPosition, Subscription,
};

/// A client of `url` that reconnects within 10 ms.
fn quick(url: &str, buffer: usize) -> Client {
    Client::builder(url)
        .token("t")
        .configure(|o| {
            o.backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(10));
            o.room_buffer = buffer;
        })
        .build()
        .unwrap()
}

fn reply(id: &Value, data: Value) -> Value {
    json!({"op": "reply", "id": id, "ok": true, "data": data})
}

fn refusal(id: &Value, code: &str) -> Value {
    json!({"op": "reply", "id": id, "ok": false, "error": {"code": code, "message": "no"}})
}

fn stored(room: &str, seq: u64, epoch: &str) -> Value {
    json!({"op": "message", "room": room, "seq": seq, "epoch": epoch, "from": "bob",
           "data": {"text": format!("{epoch}:{seq}")}})
}

/// The next `n` events of `sub`, each as a short line.
async fn events(sub: &mut Subscription<ChatMessage>, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(match next_event(sub).await {
            RoomEvent::Message(m) => {
                let pos = m.position().expect("a stored message");
                assert_eq!(m.data.text, format!("{}:{}", pos.epoch, pos.seq));
                assert_eq!(m.from.as_deref(), Some("bob"));
                format!("{}:{}", pos.epoch, pos.seq)
            }
            RoomEvent::Recovered { position, replayed } => {
                let p = position.unwrap();
                format!("recovered at {}:{} replaying {replayed}", p.epoch, p.seq)
            }
            RoomEvent::NotRecovered { position, replayed } => match position {
                Some(p) => format!(
                    "NOT recovered, at {}:{} replaying {replayed}",
                    p.epoch, p.seq
                ),
                None => format!("NOT recovered, no position, replaying {replayed}"),
            },
            RoomEvent::PresenceReset(_) => "presence reset".into(),
            RoomEvent::Lagged { missed } => format!("lagged {missed}"),
            RoomEvent::Left { reason } => format!("left: {reason}"),
            RoomEvent::RejoinFailed(e) => format!("rejoin failed: {}", e.code_str()),
            other => panic!("unexpected {other:?}"),
        });
    }
    out
}

/// Accepts the next connection and answers its join of `room` (which must carry
/// `since`, or none) with `data`.
async fn rejoin(server: &FakeServer, room: &str, since: Option<Value>, data: Value) -> FakeConn {
    let mut conn = server.accept_welcomed("ann", 1).await;
    let join = conn.expect("join").await;
    assert_eq!(join["room"], room);
    assert_eq!(join.get("since"), since.as_ref(), "{join}");
    conn.send(reply(&join["id"], data)).await;
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stored_message_once_and_in_order_across_reconnects() {
    let server = FakeServer::bind().await;
    let client = quick(&server.url, 1024);
    let joining = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .join_with::<ChatMessage>("chat:a", JoinOptions::new().history(10))
                .await
        }
    });

    // A first join, with history: no `since`, two replayed messages, then live ones
    // (and a server that repeats itself).
    let mut conn = server.accept_welcomed("ann", 1).await;
    let join = conn.expect("join").await;
    assert_eq!((join.get("since"), &join["history"]), (None, &json!(10)));
    conn.send(reply(
        &join["id"],
        json!({"presence": {}, "seq": 2, "epoch": "e1", "replayed": 2}),
    ))
    .await;
    for seq in [1, 2, 3, 3, 2, 4] {
        conn.send(stored("chat:a", seq, "e1")).await;
    }
    let mut sub = joining.await.unwrap().unwrap();
    assert_eq!(events(&mut sub, 4).await, ["e1:1", "e1:2", "e1:3", "e1:4"]);
    assert_eq!(sub.position(), Some(StreamPosition::new(4, "e1")));
    conn.close(1012, "restart").await;

    // Re-joined from seq 4: the server recovers 5 and 6; 7 is live and sent twice.
    let mut conn = rejoin(
        &server,
        "chat:a",
        Some(json!({"seq": 4, "epoch": "e1"})),
        json!({"presence": {}, "seq": 6, "epoch": "e1", "recovered": true, "replayed": 2}),
    )
    .await;
    for seq in [5, 6, 7, 7] {
        conn.send(stored("chat:a", seq, "e1")).await;
    }
    assert_eq!(
        events(&mut sub, 5).await,
        [
            "recovered at e1:6 replaying 2",
            "presence reset",
            "e1:5",
            "e1:6",
            "e1:7"
        ]
    );
    // The connection drops without a close frame this time.
    drop(conn);

    // The stream restarted in a new epoch: not recovered, said so, and the recent
    // history asked for arrives (not mistaken for duplicates), then live messages.
    let mut conn = rejoin(
        &server,
        "chat:a",
        Some(json!({"seq": 7, "epoch": "e1"})),
        json!({"presence": {}, "seq": 3, "epoch": "e2", "recovered": false, "replayed": 3}),
    )
    .await;
    for seq in [1, 2, 3, 4] {
        conn.send(stored("chat:a", seq, "e2")).await;
    }
    assert_eq!(
        events(&mut sub, 6).await,
        [
            "NOT recovered, at e2:3 replaying 3",
            "presence reset",
            "e2:1",
            "e2:2",
            "e2:3",
            "e2:4"
        ]
    );
    conn.close(1001, "going away").await;

    // The next re-join continues in the new epoch.
    let conn = rejoin(
        &server,
        "chat:a",
        Some(json!({"seq": 4, "epoch": "e2"})),
        json!({"presence": {}, "seq": 4, "epoch": "e2", "recovered": true, "replayed": 0}),
    )
    .await;
    assert_eq!(
        events(&mut sub, 2).await,
        ["recovered at e2:4 replaying 0", "presence reset"]
    );
    drop(conn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_requests_follow_the_rejoins_and_in_flight_ones_fail() {
    let server = FakeServer::bind().await;
    let client = quick(&server.url, 1024);
    let joining = tokio::spawn({
        let client = client.clone();
        async move { client.join::<ChatMessage>("chat:a").await }
    });
    let mut conn = server.accept_welcomed("ann", 1).await;
    let join = conn.expect("join").await;
    conn.send(reply(
        &join["id"],
        json!({"presence": {}, "seq": 0, "epoch": "e"}),
    ))
    .await;
    let _sub = joining.await.unwrap().unwrap();

    // A publish whose reply never comes: the connection ends first.
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .publish(
                    "chat:a",
                    &ChatMessage {
                        text: "lost?".into(),
                    },
                )
                .await
        }
    });
    let publish = conn.expect("publish").await;
    assert_eq!(publish["data"]["text"], "lost?");
    drop(conn);
    let err = in_flight.await.unwrap().unwrap_err();
    assert!(matches!(err, ClientError::ConnectionLost), "{err:?}");

    // Offline (the server does not answer the next handshake yet): one publish whose
    // caller gives up, and one that waits.
    let impatient = client.with_timeout(Duration::from_millis(100));
    let err = impatient
        .publish(
            "chat:a",
            &ChatMessage {
                text: "too late".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Timeout(_)), "{err:?}");
    let waiting = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .publish(
                    "chat:a",
                    &ChatMessage {
                        text: "later".into(),
                    },
                )
                .await
        }
    });
    let err = client
        .publish_ephemeral(
            "chat:a",
            &ChatMessage {
                text: "typing".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NotConnected), "{err:?}");

    // The re-join goes first, then the publish that is still wanted (and only it).
    let mut conn = rejoin(
        &server,
        "chat:a",
        Some(json!({"seq": 0, "epoch": "e"})),
        json!({"presence": {}, "seq": 0, "epoch": "e", "recovered": true, "replayed": 0}),
    )
    .await;
    let publish = conn.expect("publish").await;
    assert_eq!(publish["data"]["text"], "later");
    assert_eq!(publish.get("ephemeral"), None);
    conn.send(reply(
        &publish["id"],
        json!({"delivered": 3, "seq": 1, "epoch": "e"}),
    ))
    .await;
    let published = waiting.await.unwrap().unwrap();
    assert_eq!(published.delivered, 3);
    assert_eq!(published.position, Some(StreamPosition::new(1, "e")));

    // Connected again: ephemeral publishes go out, with no id.
    client.connected().await.unwrap();
    client
        .publish_ephemeral(
            "chat:a",
            &ChatMessage {
                text: "typing".into(),
            },
        )
        .await
        .unwrap();
    let eph = conn.expect("publish").await;
    assert_eq!(
        (eph["ephemeral"].clone(), eph.get("id")),
        (json!(true), None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejoins_refused_retried_or_ended_and_rooms_left_stay_left() {
    let server = FakeServer::bind().await;
    let client = quick(&server.url, 1024);
    let mut client_events = client.events();
    let mut subs = Vec::new();
    let mut conn = server.accept_welcomed("ann", 1).await;
    for room in ["chat:a", "chat:b", "chat:c"] {
        let joining = tokio::spawn({
            let client = client.clone();
            async move { client.join::<ChatMessage>(room).await }
        });
        let join = conn.expect("join").await;
        assert_eq!(join["room"], room);
        conn.send(reply(&join["id"], json!({"presence": {}}))).await;
        subs.push(joining.await.unwrap().unwrap());
    }
    let [mut a, mut b, mut c] = <[_; 3]>::try_from(subs).unwrap();

    // The application takes the client out of c, and talks to it outside rooms.
    conn.send(json!({"op": "left", "room": "chat:c", "reason": "banned"}))
        .await;
    conn.send(json!({"op": "direct", "from": null, "data": {"type": "notice"}}))
        .await;
    conn.send(json!({"op": "error", "error": {"code": "rate_limited", "message": "slow down"}}))
        .await;
    conn.send(json!({"op": "joined", "room": "chat:d", "presence": {}}))
        .await;
    conn.send(json!({"op": "from_the_future", "x": 1})).await;
    assert_eq!(events(&mut c, 1).await, ["left: banned"]);
    assert!(c.recv().await.is_none());
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = tokio::time::timeout(EVENT_TIMEOUT, client_events.recv())
            .await
            .unwrap()
            .unwrap();
        match event {
            ClientEvent::State(_) => {}
            ClientEvent::Direct { from, data } => seen.push(format!("direct {from:?} {data}")),
            ClientEvent::Error(e) => seen.push(format!("error {}", e.code_str())),
            ClientEvent::Joined { room } => seen.push(format!("joined {room}")),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        seen,
        [
            r#"direct None {"type":"notice"}"#,
            "error rate_limited",
            "joined chat:d"
        ]
    );
    conn.close(1012, "restart").await;

    // a and b are joined again (not c); a's join is rate-limited, b's refused.
    let mut conn = server.accept_welcomed("ann", 2).await;
    let mut ids = std::collections::BTreeMap::new();
    for _ in 0..2 {
        let join = conn.expect("join").await;
        ids.insert(
            join["room"].as_str().unwrap().to_owned(),
            join["id"].clone(),
        );
    }
    assert_eq!(ids.keys().collect::<Vec<_>>(), ["chat:a", "chat:b"]);
    conn.send(refusal(&ids["chat:a"], "rate_limited")).await;
    conn.send(refusal(&ids["chat:b"], "forbidden")).await;
    assert_eq!(events(&mut b, 1).await, ["rejoin failed: forbidden"]);
    assert!(b.recv().await.is_none());
    // a is tried again a moment later, on the same connection.
    let join = conn.expect("join").await;
    assert_eq!(join["room"], "chat:a");
    conn.send(reply(&join["id"], json!({"presence": {}}))).await;
    assert_eq!(
        events(&mut a, 2).await,
        ["NOT recovered, no position, replaying 0", "presence reset"]
    );
    // A refusal of the application's own join goes to its caller.
    let joining = tokio::spawn({
        let client = client.clone();
        async move { client.join::<ChatMessage>("chat:e").await }
    });
    let join = conn.expect("join").await;
    conn.send(refusal(&join["id"], "too_many_rooms")).await;
    let err = joining.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TooManyRooms));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unread_subscription_loses_its_oldest_events_and_says_how_many() {
    let server = FakeServer::bind().await;
    let client = quick(&server.url, 4);
    let joining = tokio::spawn({
        let client = client.clone();
        async move { client.join::<ChatMessage>("chat:a").await }
    });
    let mut conn = server.accept_welcomed("ann", 1).await;
    let join = conn.expect("join").await;
    conn.send(reply(
        &join["id"],
        json!({"presence": {}, "seq": 0, "epoch": "e"}),
    ))
    .await;
    let mut sub = joining.await.unwrap().unwrap();
    for seq in 1..=10 {
        conn.send(stored("chat:a", seq, "e")).await;
    }
    // A reply after them: once it is in, the client has handled all ten.
    let calling = tokio::spawn({
        let client = client.clone();
        async move { client.call::<_, Value>("ping", &()).await }
    });
    let call = conn.expect("call").await;
    conn.send(reply(&call["id"], json!("pong"))).await;
    assert_eq!(calling.await.unwrap().unwrap(), json!("pong"));

    assert_eq!(
        events(&mut sub, 5).await,
        ["lagged 6", "e:7", "e:8", "e:9", "e:10"]
    );
    // What a re-join would continue from: the last message received, not read.
    assert_eq!(sub.position(), Some(StreamPosition::new(10, "e")));
    // The connection was never held up: a reply still comes.
    let calling = tokio::spawn({
        let client = client.clone();
        async move { client.call::<_, Value>("ping", &()).await }
    });
    let call = conn.expect("call").await;
    conn.send(reply(&call["id"], json!("pong"))).await;
    assert_eq!(calling.await.unwrap().unwrap(), json!("pong"));
    // Dropping the subscription leaves the room on the server.
    drop(sub);
    let leave = conn.expect("leave").await;
    assert_eq!(leave["room"], "chat:a");
}
