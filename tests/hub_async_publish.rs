//! An async publish hook (`Namespace::on_publish_async`) over real sockets: while the
//! hook holds one connection's first message, that connection's later messages wait
//! behind it and arrive in order, another connection's publish goes through at once,
//! and the held connection keeps answering other ops. Pending publishes are bounded
//! (`rate_limited`), and the hook's output is checked against `max_payload` and may be
//! refused.

mod common;

use std::sync::Arc;

use common::hub::{ChatMessage, Client, serve, test_hub_builder};
use serde_json::{Value, json};
use tokio::sync::watch;
use wshub::{AsyncPublishContext, Namespace, Refusal};

const ROOM: &str = "mod:room";

/// The next `message` (replies and others skipped) and its text.
async fn next_text(c: &mut Client) -> (Value, String) {
    loop {
        let v = c.recv().await;
        if v["op"] == "message" {
            let text = v["data"]["text"].as_str().unwrap().to_owned();
            return (v, text);
        }
    }
}

#[tokio::test]
async fn a_slow_hook_keeps_one_connections_order_and_blocks_nobody_else() {
    // `entered` turns true when the hook starts holding message "1"; `open` lets it go.
    let (entered_tx, mut entered) = watch::channel(false);
    let (open, gate) = watch::channel(false);
    let entered_tx = Arc::new(entered_tx);
    let ns = Namespace::<ChatMessage>::new("mod")
        .max_payload(200)
        .on_publish_async(move |ctx: AsyncPublishContext, msg: ChatMessage| {
            let mut gate = gate.clone();
            let entered_tx = entered_tx.clone();
            async move {
                match msg.text.as_str() {
                    "1" => {
                        entered_tx.send_replace(true);
                        let _ = gate.wait_for(|open| *open).await;
                    }
                    "spam" => return Err(Refusal::forbidden("looks like spam")),
                    "grow" => {
                        return Ok(ChatMessage {
                            text: "x".repeat(300),
                        });
                    }
                    _ => {}
                }
                assert_eq!(&*ctx.room, ROOM);
                Ok(ChatMessage {
                    text: format!("{} ({})", msg.text, ctx.identity.user_id.len()),
                })
            }
        });
    let hub = test_hub_builder()
        .namespace(ns)
        .configure(|c| c.max_pending_publishes = 6)
        .build();
    let url = serve(&hub).await;
    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    let mut c = Client::connect(&url).await;
    for client in [&mut a, &mut b, &mut c] {
        client.join_ok(ROOM).await;
    }
    let suffix = format!(" ({})", a.user.len());

    // A publishes 1..5; the hook holds 1, so 2..5 wait behind it.
    for n in 1..=5u64 {
        a.send(
            json!({"op": "publish", "room": ROOM, "data": {"text": n.to_string()}, "id": 100 + n}),
        )
        .await;
    }
    entered.wait_for(|e| *e).await.unwrap();

    // B is not delayed by A's queue: its publish is answered and reaches C first.
    let r = b.publish(ROOM, json!({"text": "from b"})).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["data"]["delivered"], 3, "{r}");
    let (m, text) = next_text(&mut c).await;
    assert_eq!(text, format!("from b{suffix}"));
    assert_eq!(m["from"], b.user.as_str());

    // A keeps reading and answering its other ops while its publishes wait.
    let (r, _) = a.request(json!({"op": "presence", "room": ROOM})).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["data"]["presence"].as_object().unwrap().len(), 3);
    // At most 6 publishes wait: the 6th is queued, the 7th refused at once.
    for n in 6..=7u64 {
        a.send(
            json!({"op": "publish", "room": ROOM, "data": {"text": n.to_string()}, "id": 100 + n}),
        )
        .await;
    }
    let r = loop {
        let v = a.recv().await;
        if v["op"] == "reply" {
            break v;
        }
    };
    assert_eq!(r["id"], 107, "{r}");
    assert_eq!(r["error"]["code"], "rate_limited", "{r}");

    // Released: C gets A's messages 1..6 in the order A sent them, and A one reply each,
    // in order.
    open.send_replace(true);
    for n in 1..=6 {
        let (m, text) = next_text(&mut c).await;
        assert_eq!(text, format!("{n}{suffix}"));
        assert_eq!(m["from"], a.user.as_str());
    }
    let mut replies = Vec::new();
    while replies.len() < 6 {
        let v = a.recv().await;
        if v["op"] == "reply" {
            replies.push(v);
        }
    }
    for (n, r) in (101..=106).zip(&replies) {
        assert_eq!(r["id"], n, "{r}");
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["data"]["delivered"], 3, "{r}");
    }

    // The hook's output is checked against max_payload, and the hook may refuse.
    let r = a.publish(ROOM, json!({"text": "grow"})).await;
    assert_eq!(r["error"]["code"], "too_large", "{r}");
    let r = a.publish(ROOM, json!({"text": "spam"})).await;
    assert_eq!(r["error"]["code"], "forbidden", "{r}");
    assert_eq!(r["error"]["message"], "looks like spam", "{r}");
    // Data that does not fit the type never reaches the hook.
    let r = a.publish(ROOM, json!({"nope": 1})).await;
    assert_eq!(r["error"]["code"], "invalid_data", "{r}");
    // None of those was broadcast.
    let r = b.publish(ROOM, json!({"text": "last"})).await;
    assert_eq!(r["ok"], true, "{r}");
    let (_, text) = next_text(&mut c).await;
    assert_eq!(text, format!("last{suffix}"));
}
