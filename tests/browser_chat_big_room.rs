//! The chat example's page in a big room, in a real browser (headless Chromium driven
//! by `tests/browser/chat_big_room.mjs`): the online panel shows the exact count
//! ("5 online") once the room is big, and a page that joins the big room lists the
//! first page of members and pages through the rest with "Show more".
//!
//! Needs Node.js >= 20, Chromium and `npm ci --prefix tests/peers`, as
//! `tests/browser_chat.rs`.
#![cfg(all(feature = "axum", feature = "tls", feature = "jwt"))]

#[path = "../examples/chat.rs"]
#[allow(dead_code)]
mod chat;
mod common;
#[path = "browser/support.rs"]
mod support;

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use chat::ChatOptions;
use support::{post_json, run_script};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_a_big_rooms_count_and_pages_its_members() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    // Big above 2 users, pages of 2.
    let options = ChatOptions {
        big_room: Some((2, 2)),
        ..ChatOptions::default()
    };
    let server = chat::start(listener, options).await.expect("the chat");
    let addr = server.local_addr;
    let ws = server.ws_url();
    let mut crowd = Vec::new();
    let outcome = run_script(
        "chat_big_room.mjs",
        &server.url(),
        Duration::from_secs(60),
        async |cmd: &str| -> Result<String, String> {
            if cmd != "crowd" {
                return Err(format!("unknown control command `{cmd}`"));
            }
            for name in ["carol", "dave", "erin"] {
                let login = post_json(addr, "/login", &json!({ "name": name })).await;
                let token = login.json()["token"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let mut req = ws.as_str().into_client_request().unwrap();
                req.headers_mut()
                    .insert("authorization", format!("Bearer {token}").parse().unwrap());
                req.headers_mut()
                    .insert("sec-websocket-protocol", "wshub.v1".parse().unwrap());
                let (mut conn, _) = tokio_tungstenite::connect_async(req)
                    .await
                    .map_err(|e| format!("{name} cannot connect: {e}"))?;
                let join = json!({"op": "join", "room": chat::DEFAULT_ROOM, "id": 1});
                conn.send(Message::text(join.to_string()))
                    .await
                    .map_err(|e| e.to_string())?;
                crowd.push(conn);
            }
            Ok("3 joined".into())
        },
    )
    .await;
    let report = outcome.assert_ok();
    let fail = || outcome.report();
    assert_eq!(report["alice_more_hidden"], true, "{}", fail());
    // frank's join reply: the first page (2 users, in id order), then every member.
    assert_eq!(report["first_page"], json!(["alice", "bob"]), "{}", fail());
    assert_eq!(report["clicks"], 2, "{}", fail());
    assert_eq!(
        report["all_pages"],
        json!(["alice", "bob", "carol", "dave", "erin", "frank"]),
        "{}",
        fail()
    );
    drop(crowd);
    server.shutdown().await.unwrap();
}
