//! A `wshub.v1` client that nobody here wrote the WebSocket side of: Python
//! `websockets` (`tests/peers/py_hub_client.py`) connects to the hub with the
//! subprotocol `wshub.v1` and permessage-deflate, checks the welcome, gets a
//! `bad_request` for garbage, joins a room, publishes and receives its own message,
//! reads the room's presence, gets `invalid_data` for a payload of the wrong type, and
//! closes with 1000. A Rust client in the same room checks what it saw of the Python
//! clients: their joins, their messages (and nothing they were refused), their leaves.
//!
//! The peer must be installed (see `tests/common/mod.rs`): a missing one fails the
//! test, it is not skipped.

mod common;

use std::time::Duration;

use common::hub::{Client, serve, test_hub_builder};
use common::{PeerOutcome, peer_script, python, run_peer_async};
use serde_json::{Value, json};

const PY_TIMEOUT: Duration = Duration::from_secs(60);

fn py_hub_client(url: &str, room: &str, text: &str, expect_users: &[&str]) -> Vec<String> {
    let mut cmd = vec![
        python(),
        peer_script("py_hub_client.py"),
        url.to_owned(),
        room.to_owned(),
        text.to_owned(),
    ];
    for u in expect_users {
        cmd.push("--expect-user".into());
        cmd.push((*u).to_owned());
    }
    cmd
}

/// Asserts the Python client passed every check and returns its user id.
fn assert_py_ok(outcome: &PeerOutcome) -> String {
    assert!(!outcome.timed_out, "peer timed out\n{}", outcome.report());
    assert_eq!(
        outcome.json["ok"],
        true,
        "peer reported failure\n{}",
        outcome.report()
    );
    assert!(outcome.status.success(), "{}", outcome.report());
    let j = &outcome.json;
    assert_eq!(j["subprotocol"], "wshub.v1", "{}", outcome.report());
    assert_eq!(j["deflate"], true, "{}", outcome.report());
    assert_eq!(j["close_code"], 1000, "{}", outcome.report());
    assert_eq!(j["step"], "closed", "{}", outcome.report());
    let user = j["user"].as_str().expect("user").to_owned();
    assert!(user.starts_with("guest-"), "{user}");
    user
}

/// Everything the Rust client receives until `quiet` passes without a message.
async fn drain(c: &mut Client, quiet: Duration) -> Vec<Value> {
    let mut all = Vec::new();
    while let Some(v) = c.recv_nothing(quiet).await {
        all.push(v);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_joins_publishes_and_reads_presence() {
    python(); // fails at once if the peer is not installed
    let hub = test_hub_builder().build();
    let url = serve(&hub).await;
    let mut rust = Client::connect(&url).await;
    rust.watch_presence = true;
    rust.join_ok("chat:py").await;

    let text = "hello from Python, with ünïcödé and \"quotes\"";
    let outcome = run_peer_async(
        py_hub_client(&url, "chat:py", text, &[&rust.user]),
        PY_TIMEOUT,
    )
    .await;
    let py_user = assert_py_ok(&outcome);
    let j = &outcome.json;
    assert_eq!(
        j["delivered"],
        2,
        "the Rust client and itself\n{}",
        outcome.report()
    );
    let mut users = vec![rust.user.clone(), py_user.clone()];
    users.sort();
    assert_eq!(j["presence_users"], json!(users), "{}", outcome.report());
    let py_conn = j["conn_id"].as_str().unwrap().to_owned();

    // What the Rust client saw: the Python client's message, once; not the garbage,
    // not the invalid publish. Presence is announced per tick (100 ms): the Python
    // client's join and leave, in that order and with its meta, unless both fell
    // within one tick (then neither is announced). Either way, the room ends without it.
    let seen = drain(&mut rust, Duration::from_millis(500)).await;
    let messages: Vec<_> = seen
        .iter()
        .filter(|m| m["op"] == "message")
        .map(common::hub::stored)
        .collect();
    assert_eq!(
        messages,
        [json!({"op": "message", "room": "chat:py", "from": py_user, "data": {"text": text}})],
        "{}",
        outcome.report()
    );
    let py_meta = json!({"metas": [{"conn_id": py_conn, "meta": {"client": "python"}}]});
    let events = presence_events(&seen, &py_user);
    assert!(
        events.is_empty() || events == [("join", py_meta.clone()), ("leave", py_meta)],
        "{events:?}\n{}",
        outcome.report()
    );
    // The hub forgot the Python connection.
    assert_eq!(hub.stats().connections, 1);
    let (reply, _) = rust
        .request(json!({"op": "publish", "room": "chat:py", "data": {"text": "bye"}}))
        .await;
    assert_eq!(reply["data"]["delivered"], 1, "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_python_clients_at_once() {
    python();
    let hub = test_hub_builder().build();
    let url = serve(&hub).await;
    let mut rust = Client::connect(&url).await;
    rust.watch_presence = true;
    rust.join_ok("chat:py2").await;

    let (a, b) = tokio::join!(
        run_peer_async(
            py_hub_client(&url, "chat:py2", "from a", &[&rust.user]),
            PY_TIMEOUT
        ),
        run_peer_async(
            py_hub_client(&url, "chat:py2", "from b", &[&rust.user]),
            PY_TIMEOUT
        ),
    );
    let a_user = assert_py_ok(&a);
    let b_user = assert_py_ok(&b);
    assert_ne!(a_user, b_user);

    let seen = drain(&mut rust, Duration::from_millis(500)).await;
    // Per Python user: its text once; its join and leave announced in that order, or
    // neither (both within one presence tick), or only the leave (both within one tick,
    // but the other Python client's join reply showed this user, so it is told).
    for (user, text) in [(&a_user, "from a"), (&b_user, "from b")] {
        let texts: Vec<_> = seen
            .iter()
            .filter(|m| m["op"] == "message" && m["from"] == json!(user))
            .map(|m| m["data"]["text"].clone())
            .collect();
        assert_eq!(texts, [json!(text)], "{seen:?}");
        let kinds: Vec<_> = presence_events(&seen, user)
            .into_iter()
            .map(|(kind, _)| kind)
            .collect();
        assert!(
            kinds.is_empty() || kinds == ["leave"] || kinds == ["join", "leave"],
            "{user}: {kinds:?} in {seen:?}"
        );
    }
    assert!(
        seen.iter()
            .all(|m| m["op"] == "message" || m["op"] == "presence_diff"),
        "{seen:?}"
    );
    assert_eq!(hub.stats().connections, 1);
}

/// The peer's checks are not vacuous: expecting a user who is not in the room fails it,
/// with the step it got to and the reason on its JSON line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_reports_failed_checks() {
    python();
    let hub = test_hub_builder().build();
    let url = serve(&hub).await;
    let outcome = run_peer_async(
        py_hub_client(&url, "chat:py3", "x", &["nobody"]),
        PY_TIMEOUT,
    )
    .await;
    assert!(!outcome.timed_out, "{}", outcome.report());
    assert_eq!(outcome.json["ok"], false, "{}", outcome.report());
    assert_eq!(outcome.status.code(), Some(1), "{}", outcome.report());
    let error = outcome.json["error"].as_str().unwrap();
    assert!(
        error.contains("publish ok") && error.contains("'nobody' missing from presence"),
        "{}",
        outcome.report()
    );
}

/// The presence events (`"join"` or `"leave"`, with the user's entry) about `user` in
/// `seen`, in order.
fn presence_events(seen: &[Value], user: &str) -> Vec<(&'static str, Value)> {
    let mut events = Vec::new();
    for m in seen.iter().filter(|m| m["op"] == "presence_diff") {
        for (kind, key) in [("join", "joins"), ("leave", "leaves")] {
            if let Some(entry) = m[key].get(user) {
                events.push((kind, entry.clone()));
            }
        }
    }
    events
}
