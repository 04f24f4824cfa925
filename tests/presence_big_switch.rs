//! A room turns big above its threshold and small again a quarter below it, with no
//! flapping at the threshold: members of the small room get exact diffs, then a count
//! once it is big, then the whole presence (`presence_state`) when it is small again,
//! and exact diffs after that. A big room's join reply carries the count and a page.
//!
//! Paused clock, in-memory pipes: every message and its timing is exact.

mod common;

use std::time::Duration;

use common::crowd::{connect, hub_builder, ids, join, ops};
use serde_json::{Value, json};
use tokio::time::Instant;

const ROOM: &str = "room:town";

fn count(users: usize, conns: usize) -> Value {
    json!({"op": "presence_count", "room": ROOM, "users": users, "conns": conns})
}

#[tokio::test(start_paused = true)]
async fn a_room_switches_small_big_small_without_flapping() {
    // Big above 4 users; small again at 3.
    let hub = hub_builder(8, 4).build();
    let mut a = connect(&hub, 0, 0).await;
    assert_eq!(ids(&join(&mut a, ROOM).await["presence"]), ["u00"]);
    let mut others = Vec::new();
    for i in 1..4 {
        let mut c = connect(&hub, i, i).await;
        let data = join(&mut c, ROOM).await;
        assert!(data.get("count").is_none(), "a small room's reply: {data}");
        others.push(c);
    }
    // Small: one exact diff.
    let got = a.drain_json(Duration::from_millis(300)).await;
    assert_eq!(ops(&got), ["presence_diff"]);
    assert_eq!(ids(&got[0]["joins"]), ["u00", "u01", "u02", "u03"]);

    // The fifth user makes it big: its reply is the count and a page.
    let mut e = connect(&hub, 4, 4).await;
    let data = join(&mut e, ROOM).await;
    assert_eq!(data["count"], json!({"users": 5, "conns": 5}));
    assert_eq!(ids(&data["presence"]), ["u00", "u01", "u02", "u03", "u04"]);
    assert!(data.get("next").is_none(), "one page holds them: {data}");
    // Members are told with a count, not a diff.
    let got = a.drain_json(Duration::from_millis(300)).await;
    assert_eq!(got, [count(5, 5)]);

    // Back at the threshold (4 users): still big, a count only, for as long as it lasts.
    let mut d = others.pop().unwrap();
    assert_eq!(
        d.request(json!({"op": "leave", "room": ROOM})).await["ok"],
        true
    );
    let got = a.drain_json(Duration::from_secs(15)).await;
    assert_eq!(got, [count(4, 4)]);

    // At 3 (a quarter below), and big for over `presence_min_big`: small again, with
    // the whole presence.
    let mut c = others.pop().unwrap();
    assert_eq!(
        c.request(json!({"op": "leave", "room": ROOM})).await["ok"],
        true
    );
    let got = a.drain_json(Duration::from_millis(300)).await;
    assert_eq!(ops(&got), ["presence_state"]);
    assert_eq!(ids(&got[0]["presence"]), ["u00", "u01", "u04"]);

    // Small again: exact diffs, and full join replies.
    let mut f = connect(&hub, 5, 5).await;
    let data = join(&mut f, ROOM).await;
    assert!(data.get("count").is_none(), "{data}");
    assert_eq!(ids(&data["presence"]), ["u00", "u01", "u04", "u05"]);
    let got = a.drain_json(Duration::from_millis(300)).await;
    assert_eq!(ops(&got), ["presence_diff"]);
    assert_eq!(ids(&got[0]["joins"]), ["u05"]);

    // Big again, and straight back down: it stays big for `presence_min_big` (10 s)
    // however small it gets, so a room hovering at the threshold costs one snapshot
    // per 10 s at most.
    join(&mut c, ROOM).await;
    let big_at = Instant::now();
    assert_eq!(
        a.drain_json(Duration::from_millis(300)).await,
        [count(5, 5)]
    );
    assert_eq!(
        c.request(json!({"op": "leave", "room": ROOM})).await["ok"],
        true
    );
    assert_eq!(
        f.request(json!({"op": "leave", "room": ROOM})).await["ok"],
        true
    );
    let mut counts = Vec::new();
    let state = loop {
        let got = a.drain_json(Duration::from_millis(100)).await;
        match ops(&got).as_slice() {
            [] => continue,
            ["presence_count"] => counts.push(got[0].clone()),
            ["presence_state"] => break got[0].clone(),
            other => panic!("unexpected {other:?}: {got:?}"),
        }
    };
    let waited = big_at.elapsed();
    assert!(
        (Duration::from_secs(10)..Duration::from_millis(10_300)).contains(&waited),
        "small again after {waited:?}"
    );
    assert_eq!(counts, [count(3, 3)]);
    assert_eq!(ids(&state["presence"]), ["u00", "u01", "u04"]);
    drop((d, e, others));
}
