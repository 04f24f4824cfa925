//! Typed rooms from the application's side: `hub.room::<M>(..)` type checks (errors, not
//! panics), server-side typed subscriptions, server publishes (`"from": null`),
//! `publish_as`, presence snapshots, and server-only namespaces.

mod common;

use std::time::Duration;

use common::hub::{Article, ChatMessage, Client, RECV_TIMEOUT, serve, test_hub_builder};
use serde::{Deserialize, Serialize};
use serde_json::json;
use wshub::{Delivery, RoomError, RoomSubscription};

/// A type no namespace of the test hub carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct WrongType {
    n: u32,
}

/// The next delivery of `sub`, within [`RECV_TIMEOUT`].
async fn next<M: wshub::RoomMessage>(sub: &mut RoomSubscription<M>) -> Delivery<M> {
    tokio::time::timeout(RECV_TIMEOUT, sub.recv())
        .await
        .expect("timed out waiting for a typed delivery")
        .expect("subscription failed")
}

/// Waits until `cond` holds (polling), or fails after [`RECV_TIMEOUT`].
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn wrong_type_and_unknown_namespace_are_errors_not_panics() {
    let hub = test_hub_builder().build();

    let err = hub.room::<WrongType>("chat:lobby").unwrap_err();
    match &err {
        RoomError::WrongType {
            room,
            expected,
            requested,
        } => {
            assert_eq!(room, "chat:lobby");
            assert!(expected.ends_with("ChatMessage"), "{expected}");
            assert!(requested.ends_with("WrongType"), "{requested}");
        }
        other => panic!("expected WrongType, got {other:?}"),
    }
    assert!(err.to_string().contains("chat:lobby"), "{err}");

    // Another namespace's type is just as wrong.
    assert!(matches!(
        hub.room::<Article>("chat:lobby"),
        Err(RoomError::WrongType { .. })
    ));
    assert!(matches!(
        hub.room::<ChatMessage>("news:today"),
        Err(RoomError::WrongType { .. })
    ));

    for name in ["nope:lobby", "chat", "chat:", "", ":lobby"] {
        assert_eq!(
            hub.room::<ChatMessage>(name).unwrap_err(),
            RoomError::NotFound(name.to_owned()),
            "room name {name:?}"
        );
    }

    // The right type still works after the failed attempts, and none of them created a
    // room.
    assert_eq!(hub.stats().rooms, 0);
    let lobby = hub.room::<ChatMessage>("chat:lobby").unwrap();
    assert_eq!(lobby.name(), "chat:lobby");
    assert_eq!(lobby.member_count(), 0);
    assert!(lobby.presence().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_receives_client_publishes_typed() {
    let hub = test_hub_builder().build();
    let url = serve(&hub).await;
    let lobby = hub.room::<ChatMessage>("chat:lobby").unwrap();
    let mut sub = lobby.subscribe();

    let mut alice = Client::connect(&url).await;
    alice.join_ok("chat:lobby").await;
    for i in 0..5 {
        let (reply, before) = alice
            .request(json!({"op": "publish", "room": "chat:lobby", "data": {"text": format!("hello {i}")}}))
            .await;
        assert_eq!(reply["ok"], true, "{reply}");
        assert_eq!(reply["data"]["delivered"], 1, "{reply}");
        // The client's own copy is queued before the reply.
        assert_eq!(before.len(), 1, "{before:?}");
        let m = &before[0];
        assert_eq!(m["op"], "message", "{m}");
        assert_eq!(m["from"], json!(alice.user));
        assert_eq!(m["data"]["text"], format!("hello {i}"));
    }
    for i in 0..5 {
        let d = next(&mut sub).await;
        assert_eq!(&*d.room, "chat:lobby");
        assert_eq!(d.from.as_deref(), Some(alice.user.as_str()));
        assert_eq!(
            d.data,
            ChatMessage {
                text: format!("hello {i}")
            }
        );
    }

    // Data that does not fit the room's type reaches no one.
    let reply = alice.publish("chat:lobby", json!({"txt": 1})).await;
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["error"]["code"], "invalid_data", "{reply}");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), sub.recv())
            .await
            .is_err(),
        "an invalid publish reached the typed subscriber"
    );

    // Subscriptions are per room.
    let mut other = hub.room::<ChatMessage>("chat:other").unwrap().subscribe();
    alice.publish("chat:lobby", json!({"text": "x"})).await;
    assert_eq!(next(&mut sub).await.data.text, "x");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), other.recv())
            .await
            .is_err(),
        "a publish to chat:lobby reached chat:other"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_publish_reaches_clients_as_from_null() {
    let hub = test_hub_builder().build();
    let url = serve(&hub).await;
    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    a.join_ok("chat:lobby").await;
    b.join_ok("chat:lobby").await;
    let b_user = b.user.clone();
    a.recv_diff_about(&b_user).await; // b joined

    let lobby = hub.room::<ChatMessage>("chat:lobby").unwrap();
    let mut sub = lobby.subscribe();
    let delivered = lobby
        .publish(ChatMessage {
            text: "from the server".into(),
        })
        .await
        .unwrap()
        .delivered;
    assert_eq!(delivered, 2);
    let expected = json!({
        "op": "message",
        "room": "chat:lobby",
        "from": null,
        "data": {"text": "from the server"},
    });
    let mut wire_position = json!(null);
    for c in [&mut a, &mut b] {
        let m = c.recv().await;
        assert_eq!(common::hub::stored(&m), expected);
        // `from` is present and null, not missing.
        assert!(m.as_object().unwrap().contains_key("from"), "{m}");
        wire_position = json!({"seq": m["seq"], "epoch": m["epoch"]});
    }
    let d = next(&mut sub).await;
    assert_eq!(d.from, None);
    assert_eq!(d.data.text, "from the server");
    // Subscribers see where it was stored, as clients do.
    let seen = d.position.expect("stored");
    assert_eq!(json!(seen.seq), wire_position["seq"]);
    assert_eq!(json!(&*seen.epoch), wire_position["epoch"]);

    // publish_as: in the name of a user, on the wire and for typed subscribers.
    let delivered = lobby
        .publish_as(
            "bot-7",
            ChatMessage {
                text: "beep".into(),
            },
        )
        .await
        .unwrap()
        .delivered;
    assert_eq!(delivered, 2);
    for c in [&mut a, &mut b] {
        let m = c.recv().await;
        assert_eq!(
            common::hub::stored(&m),
            json!({"op": "message", "room": "chat:lobby", "from": "bot-7", "data": {"text": "beep"}})
        );
    }
    let d = next(&mut sub).await;
    assert_eq!(d.from.as_deref(), Some("bot-7"));
    assert_eq!(d.data.text, "beep");

    // A publish to a room nobody joined is delivered to nobody (and is no error).
    let empty = hub.room::<ChatMessage>("chat:empty").unwrap();
    assert_eq!(
        empty
            .publish(ChatMessage { text: "?".into() })
            .await
            .unwrap()
            .delivered,
        0
    );
    assert!(a.recv_nothing(Duration::from_millis(200)).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_reflects_clients() {
    let hub = test_hub_builder().build();
    let url = serve(&hub).await;
    let lobby = hub.room::<ChatMessage>("chat:lobby").unwrap();
    assert!(lobby.presence().is_empty());

    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    let ra = a.join("chat:lobby", json!({"status": "here"})).await;
    assert_eq!(ra["ok"], true, "{ra}");
    let rb = b.join("chat:lobby", json!({"status": "away"})).await;
    assert_eq!(rb["ok"], true, "{rb}");

    let p = lobby.presence();
    assert_eq!(p.len(), 2);
    assert_eq!(lobby.member_count(), 2);
    let metas = p.get(&a.user).expect("a is present");
    assert_eq!(metas.len(), 1);
    assert_eq!(metas[0].conn_id.to_string(), a.conn_id);
    assert_eq!(metas[0].meta, json!({"status": "here"}));
    assert_eq!(p.get(&b.user).unwrap()[0].meta, json!({"status": "away"}));
    // The handle's snapshot is the one clients get.
    assert_eq!(
        serde_json::to_value(&p).unwrap(),
        b.request(json!({"op": "presence", "room": "chat:lobby"}))
            .await
            .0["data"]["presence"]
    );

    // Leaving (explicitly or by disconnecting) shows in the snapshot.
    let (r, _) = a
        .request(json!({"op": "leave", "room": "chat:lobby"}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let p = lobby.presence();
    assert!(!p.contains(&a.user) && p.contains(&b.user), "{p:?}");
    b.close().await;
    eventually("b's disconnect empties the room", || {
        lobby.presence().is_empty() && lobby.member_count() == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_only_namespace_refuses_client_publishes() {
    let hub = test_hub_builder().build();
    let url = serve(&hub).await;
    let mut reader = Client::connect(&url).await;
    reader.join_ok("news:today").await;

    let news = hub.room::<Article>("news:today").unwrap();
    let mut sub = news.subscribe();
    assert_eq!(
        news.publish(Article {
            title: "Rust 2024".into()
        })
        .await
        .unwrap()
        .delivered,
        1
    );
    assert_eq!(
        common::hub::stored(&reader.recv().await),
        json!({"op": "message", "room": "news:today", "from": null, "data": {"title": "Rust 2024"}})
    );
    assert_eq!(next(&mut sub).await.data.title, "Rust 2024");

    // A client publish, even of well-typed data, is refused and reaches no one.
    let reply = reader
        .publish("news:today", json!({"title": "fake news"}))
        .await;
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["error"]["code"], "forbidden", "{reply}");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), sub.recv())
            .await
            .is_err(),
        "a refused client publish reached the typed subscriber"
    );
    assert!(
        reader
            .recv_nothing(Duration::from_millis(200))
            .await
            .is_none()
    );

    // Without an id the refusal is a bare error.
    reader
        .send(json!({"op": "publish", "room": "news:today", "data": {"title": "again"}}))
        .await;
    let e = reader.recv().await;
    assert_eq!(e["op"], "error", "{e}");
    assert_eq!(e["error"]["code"], "forbidden", "{e}");
}
