//! In a big room each member hears of the joins and leaves of the users the
//! application's hook marks as interesting to it (`HubBuilder::presence_interest`):
//! the users it follows, and the room's featured users (hosts), whom everyone hears of.
//! Nobody hears of anyone else; the count covers them.

mod common;

use std::collections::HashMap;

use common::crowd::{connect, hub_builder, ids, join, ops};
use serde_json::json;
use wshub::{Identity, PresenceInterest};

const ROOM: &str = "room:stage";

/// `u00` follows `u05` and `u06`; `u01` follows `u06`; `u09` hosts.
struct Follows(HashMap<&'static str, Vec<String>>);

impl PresenceInterest for Follows {
    fn watches(&self, room: &str, member: &Identity) -> Vec<String> {
        assert_eq!(room, ROOM);
        self.0
            .get(member.user_id.as_str())
            .cloned()
            .unwrap_or_default()
    }
    fn featured(&self, _room: &str, user: &Identity) -> bool {
        user.user_id == "u09"
    }
}

#[tokio::test(start_paused = true)]
async fn interesting_joins_and_leaves_reach_their_watchers() {
    let follows = HashMap::from([
        ("u00", vec!["u05".to_owned(), "u06".to_owned()]),
        ("u01", vec!["u06".to_owned()]),
    ]);
    let hub = hub_builder(10, 0)
        .presence_interest(Follows(follows))
        .build();
    let tick = hub.config().presence_tick;
    let mut fan = connect(&hub, 0, 0).await;
    let mut fan2 = connect(&hub, 1, 1).await;
    let mut other = connect(&hub, 2, 2).await;
    for c in [&mut fan, &mut fan2, &mut other] {
        join(c, ROOM).await;
    }
    let quiet = tick * 3;
    let _ = fan.drain(quiet).await;
    let _ = fan2.drain(quiet).await;
    let _ = other.drain(quiet).await;

    // Someone nobody follows: a count, no diff.
    let mut nobody = connect(&hub, 3, 3).await;
    join(&mut nobody, ROOM).await;
    for c in [&mut fan, &mut fan2, &mut other] {
        assert_eq!(ops(&c.drain_json(quiet).await), ["presence_count"]);
    }
    // u05 joins: only u00 hears of it (the count follows, a count interval after the
    // last).
    let mut star = connect(&hub, 5, 5).await;
    join(&mut star, ROOM).await;
    // u06 joins (its second tab too): u00 and u01 hear of it, once.
    let mut star2 = connect(&hub, 6, 6).await;
    join(&mut star2, ROOM).await;
    let mut star2b = connect(&hub, 6, 16).await;
    join(&mut star2b, ROOM).await;
    let got = fan.drain_json(tick * 20).await;
    assert_eq!(ops(&got), ["presence_diff", "presence_count"], "{got:?}");
    assert_eq!(ids(&got[0]["joins"]), ["u05", "u06"]);
    assert_eq!(got[0]["joins"]["u06"]["metas"].as_array().unwrap().len(), 2);
    let got = fan2.drain_json(tick * 20).await;
    assert_eq!(ops(&got), ["presence_diff", "presence_count"], "{got:?}");
    assert_eq!(ids(&got[0]["joins"]), ["u06"]);
    assert_eq!(ops(&other.drain_json(tick * 20).await), ["presence_count"]);

    // The host joins: everyone hears of it.
    let mut host = connect(&hub, 9, 9).await;
    join(&mut host, ROOM).await;
    for c in [&mut fan, &mut fan2, &mut other, &mut nobody] {
        let got = c.drain_json(tick * 20).await;
        let diffs: Vec<_> = got.iter().filter(|m| m["op"] == "presence_diff").collect();
        assert_eq!(diffs.len(), 1, "{got:?}");
        assert_eq!(ids(&diffs[0]["joins"]), ["u09"]);
    }

    // Leaves: u05 leaves and the host's connection closes.
    assert_eq!(
        star.request(json!({"op": "leave", "room": ROOM})).await["ok"],
        true
    );
    drop(host);
    let got = fan.drain_json(tick * 20).await;
    let diffs: Vec<_> = got.iter().filter(|m| m["op"] == "presence_diff").collect();
    assert_eq!(diffs.len(), 1, "{got:?}");
    assert_eq!(ids(&diffs[0]["leaves"]), ["u05", "u09"]);
    assert!(ids(&diffs[0]["joins"]).is_empty());
    for c in [&mut fan2, &mut other] {
        let got = c.drain_json(tick * 20).await;
        let diffs: Vec<_> = got.iter().filter(|m| m["op"] == "presence_diff").collect();
        assert_eq!(diffs.len(), 1, "{got:?}");
        assert_eq!(ids(&diffs[0]["leaves"]), ["u09"]);
    }
    // A watcher that leaves hears no more: u01 goes, u06 leaves; only u00 hears.
    assert_eq!(
        fan2.request(json!({"op": "leave", "room": ROOM})).await["ok"],
        true
    );
    drop((star2, star2b));
    let got = fan.drain_json(tick * 20).await;
    let diffs: Vec<_> = got.iter().filter(|m| m["op"] == "presence_diff").collect();
    assert_eq!(ids(&diffs[0]["leaves"]), ["u06"]);
    assert!(
        fan2.drain_json(tick * 20).await.is_empty(),
        "nothing after its leave"
    );
}
