//! Presence is coalesced per tick in every room: N changes in one tick cost each member
//! exactly one `presence_diff`, and a user who joins and leaves within a tick (or leaves
//! and comes back) costs nothing at all.
//!
//! Paused clock, in-memory pipes: "nothing arrives" is exact, not a timing window.

mod common;

use common::crowd::{connect, hub_builder, ids, join, ops};
use common::memory::MemClient;
use serde_json::json;
use tokio::time::Instant;

const ROOM: &str = "room:club";

#[tokio::test(start_paused = true)]
async fn n_changes_cost_one_message_and_a_join_and_leave_cost_nothing() {
    let hub = hub_builder(40, 200).build();
    let tick = hub.config().presence_tick;
    let mut members: Vec<MemClient> = Vec::new();
    for i in 0..5 {
        let mut c = connect(&hub, i, i).await;
        join(&mut c, ROOM).await;
        members.push(c);
    }
    for m in &mut members {
        assert_eq!(ops(&m.drain_json(tick * 3).await), ["presence_diff"]);
    }

    // One tick: twenty users join and one member leaves.
    let start = Instant::now();
    let mut joiners = Vec::new();
    for i in 10..30 {
        let mut c = connect(&hub, i, i).await;
        join(&mut c, ROOM).await;
        joiners.push(c);
    }
    let mut gone = members.pop().unwrap();
    assert_eq!(
        gone.request(json!({"op": "leave", "room": ROOM})).await["ok"],
        true
    );
    assert!(start.elapsed() < tick, "the changes fit in one tick");
    let joined: Vec<String> = (10..30).map(common::crowd::user).collect();
    for m in members.iter_mut().chain(joiners.iter_mut()) {
        let got = m.drain_json(tick * 5).await;
        assert_eq!(ops(&got), ["presence_diff"], "one message each: {got:?}");
        assert_eq!(ids(&got[0]["joins"]), joined);
        assert_eq!(ids(&got[0]["leaves"]), ["u04"]);
    }

    // One tick: a newcomer joins and leaves, and a member closes its only tab and
    // opens a new one. Nobody hears of either.
    let mut flicker = connect(&hub, 35, 35).await;
    join(&mut flicker, ROOM).await;
    assert_eq!(
        flicker.request(json!({"op": "leave", "room": ROOM})).await["ok"],
        true
    );
    let back = members.pop().unwrap();
    drop(back); // the pipe closes: the hub sees the connection end
    let mut back = connect(&hub, 3, 36).await;
    let data = join(&mut back, ROOM).await;
    assert!(ids(&data["presence"]).contains(&"u03".to_owned()));
    for m in members.iter_mut().chain(joiners.iter_mut()) {
        let got = m.drain_json(tick * 10).await;
        assert!(
            got.is_empty(),
            "a join and a leave in one tick cost nothing: {got:?}"
        );
    }
    drop((gone, flicker, back));
}
