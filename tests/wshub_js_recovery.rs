//! `clients/wshub.js` (under Node, with `ws`) recovering what it missed (PROTOCOL.md
//! section 9): connections cut by a proxy with no close frame while the server
//! publishes, each followed by a re-join with `since` that delivers every message
//! exactly once and in order; a restarted hub (a new epoch) reported as
//! `recovered: false` with the room's recent history replayed; `history` on a fresh
//! join.
//!
//! The peer (`tests/peers/wshub_js_recovery.js`) prints one JSON line per client event
//! as it happens; the test reacts to them (cuts, holds the reconnection, publishes,
//! restarts) so that every step waits for an event, never for a fixed time.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use wshub::{Hub, Room};

use common::cut_proxy::CutProxy;
use common::hub::{ChatMessage, serve, test_hub_builder};
use common::{node, peer_script};

/// How long the test waits for one client event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The Node peer, its events so far and its stdout.
struct Peer {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// Every event line read so far, in order.
    events: Vec<Value>,
}

impl Peer {
    fn spawn(url: &str, room: &str, extra: &[&str]) -> Peer {
        let mut child = Command::new(node())
            .arg(peer_script("wshub_js_recovery.js"))
            .arg(url)
            .arg(room)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("cannot start node");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Peer {
            child,
            lines,
            events: Vec::new(),
        }
    }

    /// The next event; panics after [`EVENT_TIMEOUT`] with what came so far.
    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(EVENT_TIMEOUT, self.lines.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no client event within {EVENT_TIMEOUT:?}; so far: {}",
                    self.tail()
                )
            })
            .expect("reading the peer's stdout")
            .unwrap_or_else(|| panic!("the peer exited; so far: {}", self.tail()));
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the peer printed {line:?}: {e}"));
        self.events.push(v.clone());
        v
    }

    /// Reads events until one of kind `ev` and returns it.
    async fn until(&mut self, ev: &str) -> Value {
        loop {
            let v = self.next().await;
            if v["ev"] == ev {
                return v;
            }
        }
    }

    /// Reads events until the message with stream position `seq` has arrived.
    async fn until_seq(&mut self, seq: u64) {
        loop {
            let v = self.next().await;
            if v["ev"] == "message" && v["seq"] == seq {
                return;
            }
        }
    }

    /// The last events, for failure messages.
    fn tail(&self) -> String {
        let from = self.events.len().saturating_sub(12);
        format!("{:?}", &self.events[from..])
    }

    /// The `seq` of the last message received so far (0 if none).
    fn last_seq(&self) -> u64 {
        self.events
            .iter()
            .rev()
            .find(|v| v["ev"] == "message")
            .and_then(|v| v["seq"].as_u64())
            .unwrap_or(0)
    }

    /// Closes the peer's stdin (it exits) and waits for it.
    async fn finish(mut self) -> Vec<Value> {
        drop(self.child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        self.events
    }
}

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("ws://")
        .trim_end_matches('/')
        .parse()
        .expect("ws://ADDR/")
}

async fn publish(room: &Room<ChatMessage>, text: String) -> u64 {
    let published = room.publish(ChatMessage { text }).await.expect("publish");
    published
        .position
        .expect("the chat namespace keeps history")
        .seq
}

/// 300 messages published by the server; three times, right after a batch, the proxy
/// cuts the client's connection (no close frame: messages in flight are lost) and
/// holds its reconnection while 25 more are published. Each re-join asks for the rest
/// with `since`: the client emits every message once, in order, with its position,
/// and each "recovery" event says `recovered: true` with exactly the number of
/// messages it had not received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wshub_js_recovers_every_message_across_cut_connections() {
    let hub = test_hub_builder().build();
    let proxy = CutProxy::start(addr_of(&serve(&hub).await)).await;
    let room = hub.room::<ChatMessage>("chat:cut").unwrap();
    let mut peer = Peer::spawn(&proxy.url("/"), "chat:cut", &[]);

    let joined = peer.until("joined").await;
    assert_eq!(joined["rejoin"], false, "{joined}");
    assert_eq!(joined["data"]["seq"], 0, "an empty stream: {joined}");
    assert_eq!(joined["data"]["replayed"], 0, "{joined}");
    let epoch = joined["data"]["epoch"].clone();
    assert!(epoch.is_string(), "{joined}");

    let mut published = 0u64;
    let mut recoveries = Vec::new();
    for round in 0..3 {
        for _ in 0..50 {
            published = publish(&room, format!("m{}", published + 1)).await;
        }
        proxy.hold();
        proxy.cut();
        let close = peer.until("close").await;
        assert_eq!(close["code"], 1006, "cut without a close frame: {close}");
        for _ in 0..25 {
            published = publish(&room, format!("m{}", published + 1)).await;
        }
        proxy.release();
        let recovery = peer.until("recovery").await;
        let had = peer.last_seq();
        assert_eq!(
            recovery,
            json!({
                "ev": "recovery", "room": "chat:cut", "recovered": true,
                "replayed": published - had, "seq": published, "epoch": epoch,
            }),
            "round {round}: the re-join recovers the {} messages after {had}",
            published - had
        );
        recoveries.push(published - had);
    }
    for _ in 0..75 {
        published = publish(&room, format!("m{}", published + 1)).await;
    }
    assert_eq!(published, 300);
    peer.until_seq(300).await;
    let events = peer.finish().await;

    let messages: Vec<&Value> = events.iter().filter(|v| v["ev"] == "message").collect();
    let texts: Vec<&str> = messages.iter().filter_map(|m| m["text"].as_str()).collect();
    let expected: Vec<String> = (1..=300).map(|n| format!("m{n}")).collect();
    assert_eq!(texts, expected, "every message once, in order");
    for (i, m) in messages.iter().enumerate() {
        assert_eq!(m["seq"], i as u64 + 1, "{m}");
        assert_eq!(m["epoch"], epoch, "{m}");
    }
    let replays = messages.iter().filter(|m| m["replay"] == true).count() as u64;
    assert_eq!(
        replays,
        recoveries.iter().sum::<u64>(),
        "replayed messages are marked `replay`"
    );
    assert!(
        recoveries.iter().all(|&n| n >= 25),
        "each recovery has at least the 25 published while the client was away: {recoveries:?}"
    );
    let count = |ev: &str| events.iter().filter(|v| v["ev"] == ev).count();
    assert_eq!(count("close"), 3);
    assert_eq!(count("recovery"), 3);
    assert_eq!(count("error"), 0, "{events:?}");
}

/// A fresh join with `history: 2` gets the room's last 2 messages (marked `replay`)
/// and no "recovery" event; then the hub is replaced by a new one (a restart: a new
/// epoch) behind the same address. The client re-joins with its old position and is
/// told `recovered: false` before the new hub's last 2 messages are replayed, then
/// gets live messages of the new stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wshub_js_reports_a_restarted_hub_and_replays_recent_history() {
    let first = test_hub_builder().build();
    let proxy = CutProxy::start(addr_of(&serve(&first).await)).await;
    let room_a = first.room::<ChatMessage>("chat:news").unwrap();
    for text in ["a1", "a2", "a3"] {
        publish(&room_a, text.into()).await;
    }
    let mut peer = Peer::spawn(&proxy.url("/"), "chat:news", &["--history", "2"]);

    let joined = peer.until("joined").await;
    let epoch_a = joined["data"]["epoch"].clone();
    assert!(epoch_a.is_string(), "{joined}");
    assert_eq!(
        joined,
        json!({"ev": "joined", "rejoin": false,
               "data": {"seq": 3, "epoch": epoch_a, "replayed": 2}}),
        "a fresh join asking for 2 messages of 3"
    );
    publish(&room_a, "a4".into()).await;
    peer.until_seq(4).await;

    // The restart: a new hub (new epoch) takes the address over; the old one stops.
    let second: Hub = test_hub_builder().build();
    let second_addr = addr_of(&serve(&second).await);
    let room_b = second.room::<ChatMessage>("chat:news").unwrap();
    for text in ["b1", "b2", "b3"] {
        publish(&room_b, text.into()).await;
    }
    proxy.retarget(second_addr);
    let seen = peer.events.len();
    first.shutdown().await;
    let recovery = peer.until("recovery").await;
    let epoch_b = recovery["epoch"].clone();
    assert!(epoch_b.is_string() && epoch_b != epoch_a, "{recovery}");
    peer.until_seq(3).await;
    publish(&room_b, "b4".into()).await;
    peer.until_seq(4).await;
    let events = peer.finish().await;

    let msg = |text: &str, seq: u64, epoch: &Value, replay: bool| json!({"ev": "message", "text": text, "seq": seq, "epoch": epoch, "replay": replay});
    assert_eq!(
        events[..seen]
            .iter()
            .filter(|v| v["ev"] == "message")
            .collect::<Vec<_>>(),
        [
            &msg("a2", 2, &epoch_a, true),
            &msg("a3", 3, &epoch_a, true),
            &msg("a4", 4, &epoch_a, false),
        ],
        "the last 2 of the room's history, then live"
    );
    assert!(
        events[..seen].iter().all(|v| v["ev"] != "recovery"),
        "a fresh join is no recovery: {events:?}"
    );
    assert_eq!(
        events[seen..].to_vec(),
        vec![
            json!({"ev": "close", "code": 1001}),
            json!({"ev": "open"}),
            json!({"ev": "recovery", "room": "chat:news", "recovered": false,
                   "replayed": 2, "seq": 3, "epoch": epoch_b}),
            json!({"ev": "joined", "rejoin": true,
                   "data": {"seq": 3, "epoch": epoch_b, "recovered": false, "replayed": 2}}),
            msg("b2", 2, &epoch_b, true),
            msg("b3", 3, &epoch_b, true),
            msg("b4", 4, &epoch_b, false),
        ],
        "after the restart: told first, then the new hub's recent history, then live"
    );
    second.shutdown().await;
}
