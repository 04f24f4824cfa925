//! Paging through a big room's member list (`presence_page` with a cursor) returns
//! every user present throughout the paging exactly once, however many join and leave
//! between pages; a big room's join reply is the count and the first page; a `limit`
//! over `presence_page_size` is capped.

mod common;

use std::collections::BTreeSet;

use common::crowd::{connect, hub_builder, ids, join, user};
use serde_json::{Value, json};

const ROOM: &str = "room:hall";

#[tokio::test(start_paused = true)]
async fn paging_returns_every_member_exactly_once_under_churn() {
    let hub = hub_builder(60, 0)
        .configure(|c| c.presence_page_size = 6)
        .build();
    // Users u10..u39 join (every other one with two tabs).
    let mut conns = std::collections::BTreeMap::new();
    for i in 10..40 {
        let mut c = connect(&hub, i, i).await;
        let data = join(&mut c, ROOM).await;
        // Every join reply: the count, and one page of at most `presence_page_size`.
        assert_eq!(data["count"]["users"], i - 9);
        assert!(ids(&data["presence"]).len() <= 6);
        conns.insert(i, c);
        if i % 2 == 0 {
            let mut tab = connect(&hub, i, 100 + i).await;
            join(&mut tab, ROOM).await;
            conns.insert(100 + i, tab);
        }
    }
    let mut reader = conns.remove(&39).unwrap();

    // The join reply's page is the first one, in user id order, with a cursor.
    let first = reader
        .request(json!({"op": "presence_page", "room": ROOM}))
        .await;
    let data = &first["data"];
    assert_eq!(data["count"], json!({"users": 30, "conns": 45}));
    assert_eq!(
        ids(&data["presence"]),
        (10..16).map(user).collect::<Vec<_>>()
    );
    // Each user with all of their tabs.
    assert_eq!(
        data["presence"]["u10"]["metas"].as_array().unwrap().len(),
        2
    );
    assert_eq!(
        data["presence"]["u11"]["metas"].as_array().unwrap().len(),
        1
    );
    // A limit over `presence_page_size` is capped.
    let r = reader
        .request(json!({"op": "presence_page", "room": ROOM, "limit": 1000}))
        .await;
    assert_eq!(ids(&r["data"]["presence"]).len(), 6);

    // Page through with a limit of 4, churning between pages: users leave from
    // before the cursor and after it, newcomers join on both sides.
    let mut seen: Vec<String> = Vec::new();
    let mut left: BTreeSet<String> = BTreeSet::new();
    let mut joined: BTreeSet<String> = BTreeSet::new();
    let mut after: Option<String> = None;
    let mut churn = [
        (Some(12), Some(2)), // u12 (seen by then) leaves, u02 joins (before the cursor)
        (Some(33), Some(45)),
        (Some(20), Some(5)),
        (Some(38), Some(50)),
        (Some(25), None),
    ]
    .into_iter();
    let mut pages = 0;
    loop {
        let mut op = json!({"op": "presence_page", "room": ROOM, "limit": 4});
        if let Some(a) = &after {
            op["after"] = json!(a);
        }
        let r = reader.request(op).await;
        assert_eq!(r["ok"], true, "{r}");
        let page: Vec<String> = ids(&r["data"]["presence"]);
        assert!(page.len() <= 4);
        seen.extend(page);
        pages += 1;
        match r["data"].get("next").and_then(Value::as_str) {
            None => break,
            Some(next) => after = Some(next.to_owned()),
        }
        if let Some((leave, join_user)) = churn.next() {
            if let Some(l) = leave {
                // Both tabs of a user with two.
                for key in [l, 100 + l] {
                    if let Some(mut c) = conns.remove(&key) {
                        assert_eq!(
                            c.request(json!({"op": "leave", "room": ROOM})).await["ok"],
                            true
                        );
                    }
                }
                left.insert(user(l));
            }
            if let Some(j) = join_user {
                let mut c = connect(&hub, j, 200 + j).await;
                join(&mut c, ROOM).await;
                conns.insert(200 + j, c);
                joined.insert(user(j));
            }
        }
    }
    assert!(pages >= 8, "{pages} pages");
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no user twice: {seen:?}");
    // Everyone present throughout the paging was returned.
    let throughout: BTreeSet<String> = (10..40)
        .map(user)
        .filter(|u| !left.contains(u) && !joined.contains(u))
        .collect();
    assert!(
        throughout.is_subset(&unique),
        "missing: {:?}",
        throughout.difference(&unique).collect::<Vec<_>>()
    );
    // Nobody who was never there; in id order.
    assert!(
        unique
            .iter()
            .all(|u| throughout.contains(u) || left.contains(u) || joined.contains(u))
    );
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, seen, "pages come in user id order");
}

#[tokio::test(start_paused = true)]
async fn paging_needs_membership_and_works_in_small_rooms_too() {
    let hub = hub_builder(5, 200).build();
    let mut a = connect(&hub, 0, 0).await;
    let r = a
        .request(json!({"op": "presence_page", "room": ROOM}))
        .await;
    assert_eq!(r["error"]["code"], "not_joined", "{r}");
    let r = a
        .request(json!({"op": "presence_page", "room": ROOM, "after": 3}))
        .await;
    assert_eq!(r["error"]["code"], "bad_request", "{r}");
    join(&mut a, ROOM).await;
    let mut b = connect(&hub, 1, 1).await;
    join(&mut b, ROOM).await;
    let r = a
        .request(json!({"op": "presence_page", "room": ROOM, "limit": 1}))
        .await;
    assert_eq!(r["data"]["count"], json!({"users": 2, "conns": 2}));
    assert_eq!(ids(&r["data"]["presence"]), ["u00"]);
    assert_eq!(r["data"]["next"], "u00");
    let r = a
        .request(json!({"op": "presence_page", "room": ROOM, "after": "u00"}))
        .await;
    assert_eq!(ids(&r["data"]["presence"]), ["u01"]);
    assert!(r["data"].get("next").is_none());
}
