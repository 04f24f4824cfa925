//! Issue 7, attacks 7 and 8: what a client sends and the hub relays to everyone.
//! - A publish hook's output was not re-checked against the namespace's size limit: a
//!   signed 100 KB display name made every typing event fan out 100 KB in a namespace
//!   limited to 16 KiB. Now the hook's output is re-checked (`too_large`).
//! - Presence metas and room names relayed control and bidirectional-formatting
//!   characters verbatim to every member's page. Now room names allow only
//!   `room_name_chars` and metas refuse those characters; errors show them escaped.

mod common;

use std::time::Duration;

use common::hub::{ChatMessage, Client, serve, test_hub_builder};
use serde::{Deserialize, Serialize};
use serde_json::json;
use wshub::{Namespace, Refusal};

const QUIET: Duration = Duration::from_millis(300);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Typing {
    #[serde(default)]
    name: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_cannot_grow_a_message_past_the_namespace_limit() {
    let hub = test_hub_builder()
        .namespace(
            Namespace::<Typing>::new("typing")
                .max_payload(16 * 1024)
                .on_publish(|ctx, mut t: Typing| {
                    // The application stamps the publisher's display name in; here a
                    // (signed, so trusted) name of 100 KB.
                    t.name = if ctx.identity.user_id.ends_with('0') {
                        "n".repeat(100_000)
                    } else {
                        "ann".into()
                    };
                    if t.name.is_empty() {
                        return Err(Refusal::invalid("no name"));
                    }
                    Ok(t)
                }),
        )
        .build();
    let url = serve(&hub).await;
    // Guest ids are random: keep connecting until one ends in '0' (the big name) and
    // one does not.
    let mut big = None;
    let mut small = None;
    while big.is_none() || small.is_none() {
        let c = Client::connect(&url).await;
        if c.user.ends_with('0') {
            big.get_or_insert(c);
        } else {
            small.get_or_insert(c);
        }
    }
    let (mut big, mut small) = (big.unwrap(), small.unwrap());
    big.join_ok("typing:x").await;
    small.join_ok("typing:x").await;

    let r = big.publish("typing:x", json!({})).await;
    assert_eq!(
        r["ok"],
        false,
        "{}",
        &r.to_string()[..r.to_string().len().min(300)]
    );
    assert_eq!(r["error"]["code"], "too_large");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("is 100011 bytes, the limit for \"typing:x\" is 16384"),
        "{message}"
    );
    assert_eq!(
        small.recv_nothing(QUIET).await,
        None,
        "nothing was fanned out"
    );

    // A hook output within the limit goes through as before.
    let r = small.publish("typing:x", json!({})).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(big.recv().await["data"]["name"], "ann");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_names_with_controls_or_bidi_are_refused_and_shown_escaped() {
    let hub = test_hub_builder().build();
    let url = serve(&hub).await;
    let mut c = Client::connect(&url).await;
    for (name, bad) in [
        ("chat:\u{202e}gnp.exe", "U+202E"),
        ("chat:a\u{0}b", "U+0000"),
        ("chat:a b", "U+0020"),
        ("chat:\u{2066}x", "U+2066"),
        ("chat:caf\u{e9}", "U+00E9"),
        ("chat:\"quote\"", "U+0022"),
    ] {
        let r = c.join(name, json!({})).await;
        assert_eq!(r["error"]["code"], "bad_request", "{name:?}: {r}");
        let message = r["error"]["message"].as_str().unwrap();
        assert!(message.contains(bad), "{message}");
        // Control and bidi characters are escaped in the message, never relayed.
        for raw in name
            .chars()
            .filter(|ch| ch.is_control() || ('\u{2000}'..).contains(ch))
        {
            assert!(!message.contains(raw), "{message:?} relays {raw:?}");
        }
    }
    assert_eq!(hub.stats().rooms, 0);
    // The allowed punctuation works.
    assert_eq!(
        c.join("chat:team-1_a.b@c/d+e=f~g,h#i", json!({})).await["ok"],
        true
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_metas_with_controls_or_bidi_are_refused() {
    let hub = test_hub_builder().build();
    let url = serve(&hub).await;
    let mut watcher = Client::connect(&url).await;
    watcher.watch_presence = true;
    watcher.join_ok("chat:m").await;
    let own = watcher.recv_diff().await;
    assert!(own["joins"].get(&watcher.user).is_some(), "{own}");

    let mut c = Client::connect(&url).await;
    for meta in [
        json!({"name": "evil\u{202e}gnp.exe"}),
        json!({"name": "bell\u{7}"}),
        json!({"name\u{200f}": "key with a mark"}),
        json!({"tags": ["ok", {"deep": "\u{2067}"}]}),
        json!({"c1": "\u{85}"}),
    ] {
        let r = c.join("chat:m", meta.clone()).await;
        assert_eq!(r["error"]["code"], "invalid_data", "{meta}: {r}");
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("control and bidirectional-formatting characters"),
            "{r}"
        );
    }
    assert_eq!(
        watcher.recv_nothing(QUIET).await,
        None,
        "no refused meta relayed"
    );
    // Other scripts and emoji are fine.
    let ok = json!({"name": "Zoë 山田 🎉"});
    let r = c.join("chat:m", ok.clone()).await;
    assert_eq!(r["ok"], true, "{r}");
    let diff = watcher.recv_diff_about(&c.user.clone()).await;
    assert_eq!(diff["joins"][&c.user]["metas"][0]["meta"], ok);
    let room = hub.room::<ChatMessage>("chat:m").unwrap();
    assert_eq!(room.presence().len(), 2);
}
