//! Fixtures for big-room presence across a cluster: hub nodes on one Redis, each with
//! the `room` namespace of `common::crowd` (users `u00`.., big above a threshold),
//! fast presence settings, and clients over in-memory pipes. Redis and the bus run on
//! real time, so these helpers wait for events (bounded by [`WAIT`]), never for a
//! fixed while.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use wshub::redis::{RedisBackplane, RedisOptions};
use wshub::{Hub, HubBuilder};

use super::crowd::{hub_builder, ids};
use super::memory::{Incoming, MemClient};
use super::services::RedisServer;

/// The longest a test waits for one expected message: far above the bus's round trip
/// and a few presence ticks, on a loaded machine.
pub const WAIT: Duration = Duration::from_secs(15);

/// A node's builder: users `u00`..`u{n-1}`, rooms big above `big_room` users, counts
/// every 100 ms, back to small after 300 ms big, pages of 3, on `redis`.
pub fn node_builder(redis: &RedisServer, n: usize, big_room: usize) -> HubBuilder {
    let backplane = RedisBackplane::new(&redis.url(), RedisOptions::default()).unwrap();
    hub_builder(n, big_room)
        .backplane(backplane)
        .configure(|c| {
            c.presence_count_interval = Duration::from_millis(100);
            c.presence_min_big = Duration::from_millis(300);
            c.presence_page_size = 3;
        })
}

/// `k` nodes built by [`node_builder`].
pub fn nodes(redis: &RedisServer, k: usize, n: usize, big_room: usize) -> Vec<Hub> {
    (0..k)
        .map(|_| node_builder(redis, n, big_room).build())
        .collect()
}

/// Reads `c`'s messages until one satisfies `done` and returns it; fails after
/// [`WAIT`] with what came meanwhile.
pub async fn until(c: &mut MemClient, what: &str, done: impl FnMut(&Value) -> bool) -> Value {
    until_seen(c, what, done).await.0
}

/// [`until`], with the messages that came before the one wanted.
pub async fn until_seen(
    c: &mut MemClient,
    what: &str,
    mut done: impl FnMut(&Value) -> bool,
) -> (Value, Vec<Value>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, c.recv()).await {
            Ok(Incoming::Json(v, _)) if done(&v) => return (v, seen),
            Ok(Incoming::Json(v, _)) => seen.push(v),
            Ok(other) => panic!("{} waiting for {what}: {other:?}", c.user),
            Err(_) => panic!("{} got no {what} within {WAIT:?}; got {seen:?}", c.user),
        }
    }
}

/// Waits until `c` is sent the count `users`/`conns` of `room`; returns the messages
/// that came before it.
pub async fn until_count(c: &mut MemClient, room: &str, users: usize, conns: usize) -> Vec<Value> {
    let want = json!({"op": "presence_count", "room": room, "users": users, "conns": conns});
    until_seen(c, &format!("count {users}/{conns}"), |v| *v == want)
        .await
        .1
}

/// A member's view of a small room: the user ids its join reply showed, with the diffs
/// applied that it receives until it shows exactly `want`.
pub async fn until_users(c: &mut MemClient, view: &mut BTreeSet<String>, want: &[String]) {
    let want: BTreeSet<String> = want.iter().cloned().collect();
    while *view != want {
        let d = until(c, &format!("a diff towards {want:?} from {view:?}"), |v| {
            v["op"] == "presence_diff"
        })
        .await;
        for u in ids(&d["joins"]) {
            view.insert(u);
        }
        for u in ids(&d["leaves"]) {
            view.remove(&u);
        }
    }
}

/// Pages through `room` with `presence_page` (limit `limit`) and returns every user id
/// in the order the pages gave them, and the count of each page.
pub async fn page_all(c: &mut MemClient, room: &str, limit: usize) -> (Vec<String>, Vec<Value>) {
    let (mut users, mut counts) = (Vec::new(), Vec::new());
    let mut after: Option<String> = None;
    loop {
        let mut op = json!({"op": "presence_page", "room": room, "limit": limit});
        if let Some(a) = &after {
            op["after"] = json!(a);
        }
        let r = c.request(op).await;
        assert_eq!(r["ok"], true, "{r}");
        let data = &r["data"];
        users.extend(ids(&data["presence"]));
        counts.push(data["count"].clone());
        match data.get("next").and_then(Value::as_str) {
            Some(next) => after = Some(next.to_owned()),
            None => return (users, counts),
        }
        assert!(users.len() < 1000, "paging does not end: {users:?}");
    }
}
