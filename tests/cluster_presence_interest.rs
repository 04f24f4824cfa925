//! The interest hook across a cluster (feature `redis`): in a big room a member hears
//! of the users it watches and of the room's featured users (hosts) wherever they are
//! connected. The hook is asked on the node that has the connection, with its whole
//! identity (here a `role` claim makes a host), and whether a user is featured travels
//! with their presence entry: on the bus, and in Redis for a node that loads the room
//! later. Everyone else is only counted.
//!
//! Redis and the bus run on real time: the test waits for each expected message
//! (bounded), never for a fixed while.

mod common;

use std::collections::BTreeSet;

use common::cluster_crowd::{node_builder, page_all, until, until_count};
use common::crowd::{connect, ids, join, tokens, user};
use common::memory::MemClient;
use common::services::RedisServer;
use serde_json::{Value, json};
use wshub::{Identity, PresenceInterest};

const ROOM: &str = "room:stage";

/// Watches: the user ids in the member's `follows` claim. Featured: `role` is `host`.
struct Claims;

impl PresenceInterest for Claims {
    fn watches(&self, _room: &str, member: &Identity) -> Vec<String> {
        member
            .claims
            .get("follows")
            .and_then(Value::as_array)
            .map_or_else(Vec::new, |a| {
                a.iter()
                    .filter_map(|u| u.as_str().map(str::to_owned))
                    .collect()
            })
    }
    fn featured(&self, _room: &str, user: &Identity) -> bool {
        user.claims.get("role").and_then(Value::as_str) == Some("host")
    }
}

/// u00 follows u05; u08 and u09 are hosts; the others plain users.
fn identities() -> wshub::auth::StaticTokens {
    tokens(10)
        .with(
            "tok-u00",
            Identity::new("u00", "U00").with_claim("follows", json!(["u05"])),
        )
        .with(
            "tok-u08",
            Identity::new("u08", "U08").with_claim("role", "host"),
        )
        .with(
            "tok-u09",
            Identity::new("u09", "U09").with_claim("role", "host"),
        )
}

/// A member and the users it knows are present (the pages it read after joining, then
/// every diff applied). A diff may repeat what a member knows (a user its reply showed was
/// still pending): applying it changes nothing, so the test looks at what is new.
struct Member {
    c: MemClient,
    known: BTreeSet<String>,
}

impl Member {
    async fn join(hub: &wshub::Hub, i: usize) -> (Member, Value) {
        let mut c = connect(hub, i, i).await;
        let data = join(&mut c, ROOM).await;
        // The reply is the first page; the member pages through the rest.
        let known = page_all(&mut c, ROOM, 3).await.0.into_iter().collect();
        (Member { c, known }, data)
    }

    /// Applies a diff; returns the users it newly announced joining and leaving.
    fn apply(&mut self, d: &Value) -> (Vec<String>, Vec<String>) {
        let joins = ids(&d["joins"])
            .into_iter()
            .filter(|u| self.known.insert(u.clone()))
            .collect();
        let leaves = ids(&d["leaves"])
            .into_iter()
            .filter(|u| self.known.remove(u))
            .collect();
        (joins, leaves)
    }

    /// The next diff that tells this member something new: (joins, leaves).
    async fn news(&mut self) -> (Vec<String>, Vec<String>) {
        loop {
            let d = until(&mut self.c, "news", |v| v["op"] == "presence_diff").await;
            let news = self.apply(&d);
            if news != (vec![], vec![]) {
                return news;
            }
        }
    }

    /// Waits for the count and checks that nothing before it told this member of a
    /// change: it was only counted.
    async fn only_count(&mut self, users: usize, conns: usize) {
        let before = until_count(&mut self.c, ROOM, users, conns).await;
        for m in before.iter().filter(|m| m["op"] == "presence_diff") {
            let news = self.apply(m);
            assert_eq!(news, (vec![], vec![]), "{} was told {m}", self.c.user);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watched_and_featured_users_on_other_nodes_reach_their_watchers() {
    let redis = RedisServer::start();
    // Big from the first user on.
    let hubs: Vec<_> = (0..3)
        .map(|_| {
            node_builder(&redis, 10, 0)
                .authenticator(identities())
                .presence_interest(Claims)
                .build()
        })
        .collect();
    let (a, b, c) = (&hubs[0], &hubs[1], &hubs[2]);

    // Host u09 is first, on C; then u01 on B, who is counted once B has u09 (so u09's
    // entry is in Redis). Node A loads the room from Redis at u00's join: u09's entry
    // comes with its featured flag.
    let (mut host, _) = Member::join(c, 9).await;
    let (mut plain, _) = Member::join(b, 1).await;
    plain.only_count(2, 2).await;
    let (mut fan, data) = Member::join(a, 0).await;
    assert_eq!(data["count"], json!({"users": 3, "conns": 3}), "{data}");
    assert_eq!(ids(&data["presence"]), ["u00", "u01", "u09"]);
    for m in [&mut fan, &mut plain, &mut host] {
        m.only_count(3, 3).await;
    }

    // u05 joins on B: u00 on A, who follows them, hears of it; u01 on B and the host on
    // C are only counted.
    let (mut star, _) = Member::join(b, 5).await;
    assert_eq!(fan.news().await, (vec![user(5)], vec![]));
    plain.only_count(4, 4).await;
    host.only_count(4, 4).await;

    // A second host, u08, joins on C (the bus carries the flag): everyone hears of it.
    let (mut host2, _) = Member::join(c, 8).await;
    for m in [&mut fan, &mut plain, &mut host] {
        assert_eq!(m.news().await, (vec![user(8)], vec![]), "{}", m.c.user);
    }

    // The first host leaves (featured as loaded from Redis on A): everyone hears of it.
    drop(host);
    for m in [&mut fan, &mut plain, &mut host2] {
        assert_eq!(m.news().await, (vec![], vec![user(9)]), "{}", m.c.user);
    }

    // u05 leaves: only its follower hears of it.
    assert_eq!(
        star.c.request(json!({"op": "leave", "room": ROOM})).await["ok"],
        true
    );
    assert_eq!(fan.news().await, (vec![], vec![user(5)]));
    plain.only_count(3, 3).await;
    host2.only_count(3, 3).await;
}
