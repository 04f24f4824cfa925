//! `clients/wshub.js` (under Node, with `ws`) in a room that grows big and shrinks back:
//! a small room's join reply has no count; once the room is big the client gets a
//! `count` event with the exact count, a big room's join reply carries the count and a
//! page, `page()` walks the member list with every user exactly once, and the return
//! to a small room replaces the presence with the whole room.

mod common;

use std::time::Duration;

use common::hub::{ChatMessage, serve};
use common::{node, peer_script, run_peer_async};
use serde_json::json;
use wshub::{Hub, Namespace};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wshub_js_follows_a_room_growing_big_and_shrinking_back() {
    // Big above 2 users; counts and the return to small come quickly for the test.
    let hub = Hub::builder()
        .namespace(Namespace::<ChatMessage>::new("chat").big_room(2))
        .configure(|c| {
            c.presence_count_interval = Duration::from_millis(100);
            c.presence_min_big = Duration::from_millis(200);
        })
        .build();
    let url = serve(&hub).await;
    let outcome = run_peer_async(
        vec![node(), peer_script("wshub_js_big_room.js"), url],
        Duration::from_secs(30),
    )
    .await;
    let j = &outcome.json;
    let report = outcome.report();
    assert_eq!(j["ok"], true, "{report}");
    assert_eq!(j["firstReplyHasCount"], false, "{report}");
    assert_eq!(
        j["smallCount"],
        json!({"users": 1, "conns": 1, "big": false}),
        "{report}"
    );
    assert_eq!(
        j["bigJoinReply"],
        json!({"count": {"users": 4, "conns": 4}, "users": 4, "next": "undefined"}),
        "{report}"
    );
    assert_eq!(j["isBig"], true, "{report}");
    assert_eq!(
        j["bigCount"],
        json!({"users": 4, "conns": 4, "big": true}),
        "{report}"
    );
    assert_eq!(j["pages"], 2, "{report}");
    assert_eq!(j["pagedUsers"], 4, "{report}");
    assert_eq!(j["pagedUnique"], 4, "{report}");
    assert_eq!(j["pagedSorted"], true, "{report}");
    assert_eq!(
        j["smallAgain"],
        json!({"users": 2, "count": {"users": 2, "conns": 2, "big": false}, "isBig": false}),
        "{report}"
    );
    // The count events: big from the switch on, then small again.
    let counts = j["counts"].as_array().unwrap();
    assert_eq!(counts.first().unwrap()["big"], true, "{report}");
    assert_eq!(counts.last().unwrap()["big"], false, "{report}");
}
