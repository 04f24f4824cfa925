//! Presence over real sockets: join snapshots, `presence_diff`s that announce users
//! (first tab joins, last tab leaves) rather than connections, and leaves on every way a
//! connection can go (leave op, close, TCP drop, shutdown).

mod common;

use std::time::Duration;

use common::hub::{ChatMessage, Client, serve, test_hub_builder};
use serde_json::{Value, json};
use wshub::auth::StaticTokens;
use wshub::{Hub, Identity, Namespace};

/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

/// A hub whose users are `alice` (token `tok-alice`) and `bob` (token `tok-bob`), so a
/// test can open several connections as the same user.
fn two_user_hub() -> Hub {
    test_hub_builder()
        .authenticator(
            StaticTokens::new()
                .with("tok-alice", Identity::new("alice", "Alice"))
                .with("tok-bob", Identity::new("bob", "Bob")),
        )
        .build()
}

async fn connect_as(url: &str, token: &str) -> Client {
    let bearer = format!("Bearer {token}");
    let mut c = Client::connect_with(url, &[("authorization", &bearer)])
        .await
        .unwrap_or_else(|status| panic!("connect with {token}: HTTP {status}"));
    c.watch_presence = true;
    c
}

/// A guest client that sees presence diffs.
async fn connect(url: &str) -> Client {
    let mut c = Client::connect(url).await;
    c.watch_presence = true;
    c
}

/// One meta in the wire shape.
/// One presence entry in the wire shape: the server stamps the display `name` (from
/// the identity) next to `conn_id`; the client's own meta is nested under `meta`.
fn meta(conn_id: &str, name: &str, meta: Value) -> Value {
    json!({"conn_id": conn_id, "name": name, "meta": meta})
}

/// Joins and asserts success; returns the reply's `data.presence`. When this is the
/// user's first connection in the room, also waits for the diff that announces the join
/// to everyone, the joiner included (on the next presence tick), so the test goes on
/// with every member's view settled.
async fn join_presence(c: &mut Client, room: &str, m: Value) -> Value {
    let (r, others) = c
        .request(json!({"op": "join", "room": room, "meta": m}))
        .await;
    assert_eq!(r["ok"], true, "join {room}: {r}");
    assert!(
        others.is_empty(),
        "nothing comes before the join reply: {others:?}"
    );
    let presence = r["data"]["presence"].clone();
    let first_tab = presence[&c.user]["metas"].as_array().map(Vec::len) == Some(1);
    if first_tab {
        let (joins, _) = expect_diff(c, room).await;
        assert!(joins.get(&c.user).is_some(), "{joins}");
    }
    presence
}

/// Asks for `room`'s presence and returns the reply's `data.presence`.
async fn presence_of(c: &mut Client, room: &str) -> Value {
    let (r, others) = c.request(json!({"op": "presence", "room": room})).await;
    assert!(others.is_empty(), "unexpected messages: {others:?}");
    assert_eq!(r["ok"], true, "presence {room}: {r}");
    r["data"]["presence"].clone()
}

/// The next message, which must be a `presence_diff` for `room`; returns
/// `(joins, leaves)`.
async fn expect_diff(c: &mut Client, room: &str) -> (Value, Value) {
    let d = c.recv().await;
    assert_eq!(d["op"], "presence_diff", "{d}");
    assert_eq!(d["room"], room, "{d}");
    (d["joins"].clone(), d["leaves"].clone())
}

async fn expect_quiet(c: &mut Client, what: &str) {
    if let Some(v) = c.recv_nothing(QUIET).await {
        panic!("{what}: expected nothing, got {v}");
    }
}

/// Waits (up to 5 s) until `cond` holds on the server side.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_reply_carries_the_snapshot_and_the_first_member_sees_one_join() {
    let hub = test_hub_builder().build();
    let url = serve(&hub).await;
    let mut a = connect(&url).await;
    let mut b = connect(&url).await;
    assert_ne!(a.user, b.user, "guests get one id per connection");

    // Alone in the room: the snapshot holds this connection only, with its meta.
    let p = join_presence(&mut a, "chat:x", json!({"status": "online"})).await;
    assert_eq!(
        p,
        json!({ a.user.clone(): {"metas": [meta(&a.conn_id, "Guest", json!({"status": "online"}))]} })
    );

    // The second user's snapshot holds both users (including itself); a meta-less join
    // shows `{}`.
    let r = b.request(json!({"op": "join", "room": "chat:x"})).await.0;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(
        r["data"]["presence"],
        json!({
            a.user.clone(): {"metas": [meta(&a.conn_id, "Guest", json!({"status": "online"}))]},
            b.user.clone(): {"metas": [meta(&b.conn_id, "Guest", json!({}))]},
        })
    );

    // The first member gets exactly one diff: b joins, nobody leaves.
    let (joins, leaves) = expect_diff(&mut a, "chat:x").await;
    assert_eq!(
        joins,
        json!({ b.user.clone(): {"metas": [meta(&b.conn_id, "Guest", json!({}))]} })
    );
    assert_eq!(leaves, json!({}));
    expect_quiet(&mut a, "after b's join").await;

    // The server-side view agrees.
    let room = hub.room::<ChatMessage>("chat:x").unwrap();
    let presence = room.presence();
    assert_eq!(presence.len(), 2);
    let metas = presence.get(&a.user).unwrap();
    assert_eq!(metas.len(), 1);
    assert_eq!(metas[0].conn_id.to_string(), a.conn_id);
    assert_eq!(metas[0].meta, json!({"status": "online"}));

    // A `presence` request answers the same snapshot as the join reply.
    assert_eq!(presence_of(&mut a, "chat:x").await, r["data"]["presence"]);
    // Only members see a room's presence.
    let mut outsider = connect(&url).await;
    let (r, _) = outsider
        .request(json!({"op": "presence", "room": "chat:x"}))
        .await;
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["error"]["code"], "not_joined", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_tabs_are_announced_once_and_leave_with_the_last_tab() {
    let hub = two_user_hub();
    let url = serve(&hub).await;
    let mut bob = connect_as(&url, "tok-bob").await;
    assert_eq!(bob.user, "bob");
    join_presence(&mut bob, "chat:x", json!({"device": "desk"})).await;

    // Alice's first tab: announced.
    let mut tab1 = connect_as(&url, "tok-alice").await;
    assert_eq!(tab1.user, "alice");
    join_presence(&mut tab1, "chat:x", json!({"tab": 1})).await;
    let (joins, leaves) = expect_diff(&mut bob, "chat:x").await;
    assert_eq!(
        joins,
        json!({"alice": {"metas": [meta(&tab1.conn_id, "Alice", json!({"tab": 1}))]}})
    );
    assert_eq!(leaves, json!({}));

    // Her second tab (same bearer token in the URL this time): present, not announced.
    let mut tab2 = connect(&format!("{url}?token=tok-alice")).await;
    assert_eq!(tab2.user, "alice");
    assert_ne!(tab2.conn_id, tab1.conn_id);
    let p = join_presence(&mut tab2, "chat:x", json!({"tab": 2})).await;
    let both_tabs = json!({"metas": [
        meta(&tab1.conn_id, "Alice", json!({"tab": 1})),
        meta(&tab2.conn_id, "Alice", json!({"tab": 2})),
    ]});
    assert_eq!(p["alice"], both_tabs, "{p}");
    expect_quiet(&mut bob, "alice's second tab").await;
    expect_quiet(&mut tab1, "alice's second tab, at her first").await;

    // Bob's `presence` request shows both of her tabs, in join order.
    let p = presence_of(&mut bob, "chat:x").await;
    assert_eq!(
        p,
        json!({
            "alice": both_tabs,
            "bob": {"metas": [meta(&bob.conn_id, "Bob", json!({"device": "desk"}))]},
        })
    );
    let room = hub.room::<ChatMessage>("chat:x").unwrap();
    assert_eq!(room.presence().get("alice").map(<[_]>::len), Some(2));

    // Closing one of two tabs: not announced, and the other tab stays listed.
    tab1.close().await;
    eventually("tab 1 to leave", || {
        room.presence().get("alice").map(<[_]>::len) == Some(1)
    })
    .await;
    expect_quiet(&mut bob, "closing one of two tabs").await;
    let p = presence_of(&mut bob, "chat:x").await;
    assert_eq!(
        p["alice"],
        json!({"metas": [meta(&tab2.conn_id, "Alice", json!({"tab": 2}))]}),
        "{p}"
    );

    // Closing the last: exactly one leave, with that tab's meta.
    let tab2_conn = tab2.conn_id.clone();
    tab2.close().await;
    let (joins, leaves) = expect_diff(&mut bob, "chat:x").await;
    assert_eq!(joins, json!({}));
    assert_eq!(
        leaves,
        json!({"alice": {"metas": [meta(&tab2_conn, "Alice", json!({"tab": 2}))]}})
    );
    expect_quiet(&mut bob, "after alice's last tab").await;
    let p = presence_of(&mut bob, "chat:x").await;
    assert_eq!(p.as_object().unwrap().len(), 1, "{p}");
    assert!(!room.presence().contains("alice"));

    // She can come back, and is announced again.
    let mut tab3 = connect_as(&url, "tok-alice").await;
    join_presence(&mut tab3, "chat:x", json!({})).await;
    let (joins, _) = expect_diff(&mut bob, "chat:x").await;
    assert_eq!(
        joins,
        json!({"alice": {"metas": [meta(&tab3.conn_id, "Alice", json!({}))]}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tab_leaving_by_op_is_silent_the_last_is_announced() {
    let hub = two_user_hub();
    let url = serve(&hub).await;
    let mut bob = connect_as(&url, "tok-bob").await;
    join_presence(&mut bob, "chat:x", json!({})).await;
    let mut tab1 = connect_as(&url, "tok-alice").await;
    let mut tab2 = connect_as(&url, "tok-alice").await;
    join_presence(&mut tab1, "chat:x", json!({})).await;
    expect_diff(&mut bob, "chat:x").await;
    join_presence(&mut tab2, "chat:x", json!({})).await;

    let (r, _) = tab1.request(json!({"op": "leave", "room": "chat:x"})).await;
    assert_eq!(r["ok"], true, "{r}");
    expect_quiet(&mut bob, "one of two tabs leaving").await;

    let (r, _) = tab2.request(json!({"op": "leave", "room": "chat:x"})).await;
    assert_eq!(r["ok"], true, "{r}");
    let (joins, leaves) = expect_diff(&mut bob, "chat:x").await;
    assert_eq!(joins, json!({}));
    assert_eq!(
        leaves,
        json!({"alice": {"metas": [meta(&tab2.conn_id, "Alice", json!({}))]}})
    );
    expect_quiet(&mut bob, "after the last tab left").await;
    // Both tabs are still connected, just not in the room.
    assert_eq!(hub.stats().connections, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_op_announces_the_leave_and_stops_delivery() {
    let hub = test_hub_builder().build();
    let url = serve(&hub).await;
    let mut a = connect(&url).await;
    let mut b = connect(&url).await;
    join_presence(&mut a, "chat:x", json!({})).await;
    join_presence(&mut b, "chat:x", json!({"k": "v"})).await;
    expect_diff(&mut a, "chat:x").await;

    let (r, others) = b.request(json!({"op": "leave", "room": "chat:x"})).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["data"], json!({}), "{r}");
    assert!(others.is_empty(), "{others:?}");

    let (joins, leaves) = expect_diff(&mut a, "chat:x").await;
    assert_eq!(joins, json!({}));
    assert_eq!(
        leaves,
        json!({ b.user.clone(): {"metas": [meta(&b.conn_id, "Guest", json!({"k": "v"}))]} })
    );
    let p = presence_of(&mut a, "chat:x").await;
    assert_eq!(p.as_object().unwrap().keys().collect::<Vec<_>>(), [&a.user]);

    // b is out: no messages, no diffs, and a second leave is `not_joined`.
    let (reply, own_copy) = a
        .request(json!({"op": "publish", "room": "chat:x", "data": {"text": "still there?"}}))
        .await;
    assert_eq!(reply["data"]["delivered"], 1, "{reply}");
    assert_eq!(own_copy.len(), 1, "{own_copy:?}");
    assert_eq!(own_copy[0]["op"], "message");
    expect_quiet(&mut b, "after leaving").await;
    let (r, _) = b.request(json!({"op": "leave", "room": "chat:x"})).await;
    assert_eq!(r["error"]["code"], "not_joined", "{r}");
    // a's own state is untouched: the connection is still open and in the room.
    assert_eq!(hub.stats().connections, 2);
    assert_eq!(hub.room::<ChatMessage>("chat:x").unwrap().member_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_announces_the_leave() {
    let hub = test_hub_builder().build();
    let url = serve(&hub).await;
    let mut a = connect(&url).await;
    let mut b = connect(&url).await;
    join_presence(&mut a, "chat:x", json!({})).await;
    join_presence(&mut b, "chat:x", json!({})).await;
    join_presence(&mut b, "chat:y", json!({})).await;
    expect_diff(&mut a, "chat:x").await;

    let b_user = b.user.clone();
    b.close().await;
    let (_, leaves) = expect_diff(&mut a, "chat:x").await;
    assert!(leaves.get(&b_user).is_some(), "{leaves}");
    expect_quiet(&mut a, "after b closed").await;
    eventually("b to be gone", || hub.stats().connections == 1).await;
    // chat:y is empty and unused: dropped.
    eventually("chat:y to be pruned", || hub.stats().rooms == 1).await;
}

/// Drops a client without a close frame: with `rst`, the kernel resets the connection
/// (SO_LINGER 0), otherwise it just sends FIN.
async fn drop_abruptly(c: Client, rst: bool) {
    if rst {
        match c.ws.get_ref() {
            tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp.set_zero_linger().unwrap(),
            _ => unreachable!("plain ws:// test connection"),
        }
    }
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_drop_without_close_frame_announces_the_leave() {
    for rst in [false, true] {
        let hub = test_hub_builder().build();
        let url = serve(&hub).await;
        let mut a = connect(&url).await;
        let mut b = connect(&url).await;
        join_presence(&mut a, "chat:x", json!({})).await;
        join_presence(&mut b, "chat:x", json!({"n": 1})).await;
        expect_diff(&mut a, "chat:x").await;

        let (b_user, b_conn) = (b.user.clone(), b.conn_id.clone());
        drop_abruptly(b, rst).await;
        let (joins, leaves) = expect_diff(&mut a, "chat:x").await;
        assert_eq!(joins, json!({}), "rst={rst}");
        assert_eq!(
            leaves,
            json!({ b_user: {"metas": [meta(&b_conn, "Guest", json!({"n": 1}))]} }),
            "rst={rst}"
        );
        eventually("b to be gone", || hub.stats().connections == 1).await;
        // Not counted as reaped: the connection ended by itself.
        assert_eq!(hub.stats().reaped, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_everyone_with_1001_and_empties_presence() {
    let hub = two_user_hub();
    let url = serve(&hub).await;
    let mut clients = vec![
        connect_as(&url, "tok-alice").await,
        connect_as(&url, "tok-alice").await,
        connect_as(&url, "tok-bob").await,
    ];
    for c in &mut clients {
        join_presence(c, "chat:x", json!({})).await;
        join_presence(c, "chat:y", json!({})).await;
    }
    let room = hub.room::<ChatMessage>("chat:x").unwrap();
    assert_eq!(room.presence().len(), 2);
    assert_eq!(room.member_count(), 3);

    let shutdown = tokio::spawn({
        let hub = hub.clone();
        async move { hub.shutdown().await }
    });
    for c in &mut clients {
        assert_eq!(c.expect_close().await, 1001);
    }
    // Let tungstenite send its close reply, so the closing handshakes can finish.
    for mut c in clients {
        while let Ok(Some(Ok(_))) = tokio::time::timeout(
            Duration::from_secs(5),
            futures_util::StreamExt::next(&mut c.ws),
        )
        .await
        {}
    }
    assert!(
        tokio::time::timeout(Duration::from_secs(15), shutdown)
            .await
            .expect("shutdown hung")
            .unwrap(),
        "every connection finished in time"
    );
    assert!(hub.is_shutting_down());
    assert!(room.presence().is_empty(), "{:?}", room.presence());
    assert_eq!(room.member_count(), 0);
    assert!(
        hub.room::<ChatMessage>("chat:y")
            .unwrap()
            .presence()
            .is_empty()
    );
    assert_eq!(hub.stats().connections, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_without_presence_sends_no_presence() {
    let hub = test_hub_builder()
        .namespace(Namespace::<ChatMessage>::new("quiet").presence(false))
        .build();
    let url = serve(&hub).await;
    let mut a = connect(&url).await;
    let mut b = connect(&url).await;

    let (r, others) = a
        .request(json!({"op": "join", "room": "quiet:r", "meta": {"status": "online"}}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    assert!(r["data"].get("presence").is_none(), "{r}");
    assert!(others.is_empty(), "{others:?}");
    let (r, others) = b.request(json!({"op": "join", "room": "quiet:r"})).await;
    assert_eq!(r["ok"], true, "{r}");
    assert!(r["data"].get("presence").is_none(), "{r}");
    assert!(others.is_empty(), "{others:?}");
    expect_quiet(&mut a, "a join in a presence-less room").await;

    // A `presence` request reveals nobody.
    let (r, _) = a
        .request(json!({"op": "presence", "room": "quiet:r"}))
        .await;
    if r["ok"] == true {
        assert_eq!(r["data"]["presence"], json!({}), "{r}");
    }
    assert!(
        hub.room::<ChatMessage>("quiet:r")
            .unwrap()
            .presence()
            .is_empty()
    );

    // Messages still flow; leaving and closing announce nothing.
    let reply = b.publish("quiet:r", json!({"text": "hi"})).await;
    assert_eq!(reply["data"]["delivered"], 2, "{reply}");
    assert_eq!(a.recv().await["data"]["text"], "hi");
    b.close().await;
    expect_quiet(&mut a, "b closing a presence-less room").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_meta_is_refused_and_the_connection_lives_on() {
    let hub = test_hub_builder().build();
    let limit = hub.config().max_presence_meta;
    let url = serve(&hub).await;
    let mut a = connect(&url).await;
    let mut b = connect(&url).await;
    join_presence(&mut a, "chat:x", json!({})).await;

    // `{"s":"..."}` is 8 bytes of JSON plus the string: one byte over the limit...
    let too_big = json!({"s": "x".repeat(limit - 8 + 1)});
    assert_eq!(too_big.to_string().len(), limit + 1);
    let r = b.join("chat:x", too_big).await;
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["error"]["code"], "too_large", "{r}");
    expect_quiet(&mut a, "a refused join").await;
    assert!(
        !hub.room::<ChatMessage>("chat:x")
            .unwrap()
            .presence()
            .contains(&b.user)
    );
    // ...and not in the room either.
    let r = b.publish("chat:x", json!({"text": "?"})).await;
    assert_eq!(r["error"]["code"], "not_joined", "{r}");

    // Exactly at the limit is fine, on the same connection.
    let at_limit = json!({"s": "x".repeat(limit - 8)});
    assert_eq!(at_limit.to_string().len(), limit);
    let p = join_presence(&mut b, "chat:x", at_limit.clone()).await;
    assert_eq!(
        p[&b.user],
        json!({"metas": [meta(&b.conn_id, "Guest", at_limit)]})
    );
    let (joins, _) = expect_diff(&mut a, "chat:x").await;
    assert!(joins.get(&b.user).is_some(), "{joins}");
    let r = b.publish("chat:x", json!({"text": "ok"})).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(a.recv().await["data"]["text"], "ok");
}

/// The server stamps the display name (from the identity) and what the application
/// adds (`presence_info`) into each entry; a client's meta claiming other values for
/// those fields stays nested under `meta` and changes neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_fields_are_stamped_and_clients_cannot_overwrite_them() {
    let hub = test_hub_builder()
        .authenticator(
            StaticTokens::new()
                .with("tok-alice", Identity::new("alice", "Alice"))
                .with("tok-bob", Identity::new("bob", "Bob")),
        )
        .presence_info(|identity| (identity.user_id == "alice").then(|| json!({"role": "host"})))
        .build();
    let url = serve(&hub).await;
    let mut alice = connect_as(&url, "tok-alice").await;
    join_presence(&mut alice, "chat:x", json!({})).await;
    let mut bob = connect_as(&url, "tok-bob").await;
    let forged = json!({"name": "Alice", "conn_id": "1", "info": {"role": "host"}});
    let p = join_presence(&mut bob, "chat:x", forged.clone()).await;
    assert_eq!(
        p["bob"],
        json!({"metas": [{"conn_id": bob.conn_id, "name": "Bob", "meta": forged}]}),
        "{p}"
    );
    assert_eq!(
        p["alice"],
        json!({"metas": [{"conn_id": alice.conn_id, "name": "Alice", "info": {"role": "host"}, "meta": {}}]}),
        "{p}"
    );
    // Alice's view gets the same stamped entry in the diff announcing bob.
    let (joins, _) = expect_diff(&mut alice, "chat:x").await;
    assert_eq!(joins["bob"]["metas"][0]["name"], "Bob", "{joins}");
    // And the Rust side sees the server's fields.
    let room = hub.room::<ChatMessage>("chat:x").unwrap();
    let metas = room.presence().get("bob").unwrap().to_vec();
    assert_eq!((metas[0].name.as_str(), &metas[0].info), ("Bob", &None));
}
