//! An async publish hook that never answers is cut at `publish_hook_timeout` (on the
//! paused clock): the publisher gets `timeout`, the message is not published, and the
//! connection's later publishes, queued behind it, go through.

mod common;

use std::time::Duration;

use common::hub::ChatMessage;
use common::memory::{Incoming, MemClient, peer};
use serde_json::{Value, json};
use wshub::{AsyncPublishContext, Hub, Namespace};

const ROOM: &str = "mod:room";

/// The next JSON message that is not a presence diff.
async fn next(c: &mut MemClient) -> Value {
    loop {
        match c.recv().await {
            Incoming::Json(v, _) if v["op"] == "presence_diff" => continue,
            Incoming::Json(v, _) => return v,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_stuck_hook_times_out_and_the_queue_moves_on() {
    let hub = Hub::builder()
        .namespace(Namespace::<ChatMessage>::new("mod").on_publish_async(
            |_ctx: AsyncPublishContext, msg: ChatMessage| async move {
                if msg.text == "stuck" {
                    std::future::pending::<()>().await;
                }
                Ok(msg)
            },
        ))
        .configure(|c| c.publish_hook_timeout = Duration::from_secs(3))
        .build();
    assert_eq!(
        Hub::builder().build().config().publish_hook_timeout,
        Duration::from_secs(10),
        "the default"
    );
    let mut a = MemClient::connect(&hub, peer("10.0.0.1", 1), None, 64 * 1024).await;
    let r = a.request(json!({"op": "join", "room": ROOM})).await;
    assert_eq!(r["ok"], true, "{r}");

    // "stuck" never gets an answer from the hook; "next" waits behind it.
    a.send(json!({"op": "publish", "room": ROOM, "data": {"text": "stuck"}, "id": 10}))
        .await;
    a.send(json!({"op": "publish", "room": ROOM, "data": {"text": "next"}, "id": 11}))
        .await;
    let started = tokio::time::Instant::now();
    let r = next(&mut a).await;
    assert_eq!(r["id"], 10, "{r}");
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["error"]["code"], "timeout", "{r}");
    assert_eq!(
        r["error"]["message"],
        "the publish check did not answer within 3 s; not published"
    );
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(3),
        "cut at the limit"
    );
    // Then the one behind it: published (its copy first, then its reply), and "stuck"
    // never was.
    let m = next(&mut a).await;
    assert_eq!(m["op"], "message", "{m}");
    assert_eq!(m["data"]["text"], "next");
    let r = next(&mut a).await;
    assert_eq!(
        (r["id"].clone(), r["ok"].clone()),
        (json!(11), json!(true)),
        "{r}"
    );
    let room = hub.room::<ChatMessage>(ROOM).unwrap();
    let kept: Vec<String> = room
        .history(10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.data.text)
        .collect();
    assert_eq!(kept, ["next"]);
}
