//! Fixtures for the big-room presence tests: users with known ids (`u00`, `u01`, ..,
//! token `tok-` + id), connected over in-memory pipes on tokio's paused clock.

use serde_json::{Value, json};
use wshub::auth::StaticTokens;
use wshub::{HubBuilder, Identity, Namespace};

use super::hub::ChatMessage;
use super::memory::{MemClient, peer};

/// Users `u00`..`u{n-1}` (token `tok-uNN`, display name `UNN`).
pub fn tokens(n: usize) -> StaticTokens {
    (0..n).fold(StaticTokens::new(), |t, i| {
        let user = user(i);
        t.with(
            format!("tok-{user}"),
            Identity::new(user.clone(), user.to_uppercase()),
        )
    })
}

/// The id of user `i`.
pub fn user(i: usize) -> String {
    format!("u{i:02}")
}

/// A hub with `n` users and the namespace `room`, whose rooms are big above
/// `big_room` users.
pub fn hub_builder(n: usize, big_room: usize) -> HubBuilder {
    wshub::Hub::builder()
        .authenticator(tokens(n))
        .namespace(Namespace::<ChatMessage>::new("room").big_room(big_room))
}

/// Connection number `conn` (distinct per test, for distinct peer addresses) of user
/// `i`.
pub async fn connect(hub: &wshub::Hub, i: usize, conn: usize) -> MemClient {
    let ip = format!("127.9.{}.{}", conn / 200, conn % 200 + 1);
    MemClient::connect(
        hub,
        peer(&ip, 1),
        Some(&format!("tok-{}", user(i))),
        1 << 20,
    )
    .await
}

/// Joins `room` and returns the reply's `data`, asserting success and that nothing
/// came before it.
pub async fn join(c: &mut MemClient, room: &str) -> Value {
    let (r, before) = c.request_all(json!({"op": "join", "room": room})).await;
    assert_eq!(r["ok"], true, "join {room}: {r}");
    assert!(before.is_empty(), "before the join reply: {before:?}");
    r["data"].clone()
}

/// The user ids of a presence object, in order.
pub fn ids(presence: &Value) -> Vec<String> {
    presence
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// The `op`s of messages, in order.
pub fn ops(msgs: &[Value]) -> Vec<&str> {
    msgs.iter()
        .map(|m| m["op"].as_str().unwrap_or("?"))
        .collect()
}
