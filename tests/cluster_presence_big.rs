//! Big rooms across a cluster (feature `redis`): three nodes on one Redis, users spread
//! over them. The room turns big from joins on any node and every member on every
//! node is sent the exact cluster-wide count (a user with tabs on two nodes counted
//! once), through churn; a join reply carries the cluster's count and first page;
//! paging on any node returns every member of the cluster exactly once; and the room
//! turns small again everywhere with the whole cluster's presence (`presence_state`).
//!
//! Redis and the bus run on real time: the test waits for each expected message
//! (bounded), never for a fixed while. The hub-local timing of the switch is shown on
//! the paused clock by `presence_big_switch`.

mod common;

use std::collections::BTreeSet;

use common::cluster_crowd::{nodes, page_all, until, until_count, until_users};
use common::crowd::{connect, ids, join, user};
use common::memory::MemClient;
use common::services::RedisServer;
use serde_json::json;

const ROOM: &str = "room:arena";

fn users(list: &[usize]) -> Vec<String> {
    list.iter().map(|&i| user(i)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_is_big_and_small_again_across_three_nodes() {
    let redis = RedisServer::start();
    // Big above 4 users, small again at 3.
    let hubs = nodes(&redis, 3, 10, 4);
    let (a, b, c) = (&hubs[0], &hubs[1], &hubs[2]);

    // Small: u00 and u03 on A, u01 on B, u02 on C; each sees all four.
    let mut members: Vec<(MemClient, BTreeSet<String>)> = Vec::new();
    for (i, hub) in [(0, a), (1, b), (2, c), (3, a)] {
        let mut m = connect(hub, i, i).await;
        let data = join(&mut m, ROOM).await;
        assert!(data.get("count").is_none(), "a small room's reply: {data}");
        let view = ids(&data["presence"]).into_iter().collect();
        members.push((m, view));
    }
    for (m, view) in &mut members {
        until_users(m, view, &users(&[0, 1, 2, 3])).await;
    }

    // u04 joins on B: five users, big on every node. Its reply is the cluster's count
    // and first page (3 a page) with a cursor.
    let mut m4 = connect(b, 4, 4).await;
    let data = join(&mut m4, ROOM).await;
    assert_eq!(data["count"], json!({"users": 5, "conns": 5}), "{data}");
    assert_eq!(ids(&data["presence"]), users(&[0, 1, 2]));
    assert_eq!(data["next"], "u02");
    let mut members: Vec<MemClient> = members.into_iter().map(|(m, _)| m).collect();
    members.push(m4);
    for m in &mut members {
        until_count(m, ROOM, 5, 5).await;
    }

    // u01 opens a second tab, on C: one more connection, still five users.
    let mut tab = connect(c, 1, 11).await;
    let data = join(&mut tab, ROOM).await;
    assert_eq!(data["count"], json!({"users": 5, "conns": 6}), "{data}");
    assert_eq!(
        data["presence"]["u01"]["metas"].as_array().unwrap().len(),
        2,
        "both of u01's tabs, on B and C: {data}"
    );
    members.push(tab);
    for m in &mut members {
        until_count(m, ROOM, 5, 6).await;
    }

    // Churn on every node: u05 (A) and u06 (C) join, u02 (C) leaves, u07 joins on B
    // and leaves again. Six users, seven connections, whatever order each node saw it
    // in.
    let mut m5 = connect(a, 5, 5).await;
    join(&mut m5, ROOM).await;
    let mut m6 = connect(c, 6, 6).await;
    join(&mut m6, ROOM).await;
    let mut m7 = connect(b, 7, 7).await;
    join(&mut m7, ROOM).await;
    drop(m7);
    members.retain(|m| m.user != "u02");
    members.push(m5);
    members.push(m6);
    let present = users(&[0, 1, 3, 4, 5, 6]);
    for m in &mut members {
        until_count(m, ROOM, 6, 7).await;
    }

    // Paging on any node returns every member of the cluster exactly once, each page
    // with the exact count.
    for m in &mut members {
        let (paged, counts) = page_all(m, ROOM, 2).await;
        assert_eq!(paged, present, "paged on {}'s node", m.user);
        assert!(
            counts.iter().all(|c| *c == json!({"users": 6, "conns": 7})),
            "{counts:?}"
        );
    }

    // u03 (A), u04 (B) and u05 (A) leave: three users, small again on every node
    // after `presence_min_big`, each member sent the whole cluster's presence.
    members.retain(|m| !["u03", "u04", "u05"].contains(&m.user.as_str()));
    assert_eq!(members.len(), 4);
    let left = users(&[0, 1, 6]);
    for m in &mut members {
        let state = until(m, "presence_state", |v| v["op"] == "presence_state").await;
        assert_eq!(ids(&state["presence"]), left, "{state}");
        assert_eq!(
            state["presence"]["u01"]["metas"].as_array().unwrap().len(),
            2,
            "{state}"
        );
    }

    // Small: a join is a full reply, and every member gets a diff again.
    let mut m8 = connect(b, 8, 8).await;
    let data = join(&mut m8, ROOM).await;
    assert!(data.get("count").is_none(), "{data}");
    assert_eq!(ids(&data["presence"]), users(&[0, 1, 6, 8]));
    for m in &mut members {
        let mut view: BTreeSet<String> = left.iter().cloned().collect();
        until_users(m, &mut view, &users(&[0, 1, 6, 8])).await;
    }
}
