//! The server in control, over real sockets: the connect and disconnect hooks fire once
//! per connection with the close code as it happened (client close 1000, a server kick
//! with the application's code, a slow consumer 1013, a dropped connection 1006) and
//! see the connection's data;
//! a server-side join produces the diffs of a client join and a `joined` message; a
//! kicked user's tabs all close with the chosen code and their presence leaves; a
//! direct send reaches every tab of one user and nobody else; a ban removes a user from
//! their current rooms before the call returns.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

use common::hub::{ChatMessage, Client, serve, test_hub_builder};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use wshub::auth::StaticTokens;
use wshub::{
    Action, Authenticator, CloseInfo, CloseInitiator, Connection, Hub, Identity, MembershipError,
};

const ROOM: &str = "chat:control";

/// What the test's hooks saw.
#[derive(Debug)]
enum Event {
    Connected(u64),
    Disconnected {
        id: u64,
        close: CloseInfo,
        /// The connection's data, read in the disconnect hook.
        tag: Option<Arc<Tag>>,
        /// Its rooms, read in the disconnect hook.
        rooms: Vec<String>,
    },
}

/// Data the connect hook stores on every connection.
#[derive(Debug, PartialEq)]
struct Tag(String);

/// Users by token (`tok-USER`), and a ban list that `authorize` consults for joins.
fn authenticator(banned: Arc<Mutex<HashSet<String>>>) -> impl Authenticator {
    let tokens = ["ann", "bob", "watcher"]
        .into_iter()
        .fold(StaticTokens::new(), |t, u| {
            t.with(format!("tok-{u}"), Identity::new(u, u.to_uppercase()))
        });
    tokens.authorize_with(move |identity: &Identity, _room: &str, action: Action| {
        action != Action::Join || !banned.lock().unwrap().contains(&identity.user_id)
    })
}

/// A hub whose hooks report to the returned channel, with an outbound queue of
/// `max_queued` bytes.
fn hub(
    max_queued: usize,
    banned: Arc<Mutex<HashSet<String>>>,
) -> (Hub, mpsc::UnboundedReceiver<Event>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let on_connect = tx.clone();
    let hub = test_hub_builder()
        .authenticator(authenticator(banned))
        .configure(|c| c.ws = c.ws.clone().with_max_queued_bytes(max_queued))
        .on_connect(move |conn: Connection| {
            let tx = on_connect.clone();
            async move {
                conn.set_data(Tag(format!("{}#{}", conn.identity().user_id, conn.id())));
                let _ = tx.send(Event::Connected(conn.id()));
            }
        })
        .on_disconnect(move |conn: Connection, close: CloseInfo| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(Event::Disconnected {
                    id: conn.id(),
                    close,
                    tag: conn.data::<Tag>(),
                    rooms: conn.rooms(),
                });
            }
        })
        .build();
    (hub, rx)
}

async fn connect(url: &str, user: &str) -> Client {
    let auth = format!("Bearer tok-{user}");
    Client::connect_with(url, &[("authorization", &auth)])
        .await
        .unwrap_or_else(|status| panic!("{user}: HTTP {status}"))
}

/// Reads until the connection ends, so the client's answer to the server's close frame
/// goes out (tungstenite sends it on the next read) and the server's task finishes.
async fn finish(mut c: Client) {
    use futures_util::StreamExt;
    while let Ok(Some(Ok(_))) = tokio::time::timeout(common::hub::RECV_TIMEOUT, c.ws.next()).await {
    }
}

/// The next `presence_diff` announcing that `user` left, skipping room messages and
/// other diffs that arrive first.
async fn leave_diff(c: &mut Client, user: &str) -> Value {
    c.watch_presence = true;
    loop {
        let m = c.recv().await;
        match m["op"].as_str() {
            Some("presence_diff") if m["leaves"].get(user).is_some() => return m,
            Some("presence_diff" | "message") => continue,
            _ => panic!("unexpected {m}"),
        }
    }
}

fn id_of(c: &Client) -> u64 {
    c.conn_id.parse().expect("conn_id is a decimal string")
}

async fn next_event(rx: &mut mpsc::UnboundedReceiver<Event>) -> Event {
    tokio::time::timeout(common::hub::RECV_TIMEOUT, rx.recv())
        .await
        .expect("timed out waiting for a hook")
        .expect("hook channel open")
}

/// Waits for the disconnect of `id`, asserting the hooks reported nothing else first.
async fn expect_disconnect(rx: &mut mpsc::UnboundedReceiver<Event>, id: u64) -> CloseInfo {
    match next_event(rx).await {
        Event::Disconnected {
            id: got,
            close,
            tag,
            rooms,
        } => {
            assert_eq!(got, id);
            // The data set on connect is still there; the rooms were left first.
            assert!(tag.unwrap().0.ends_with(&format!("#{id}")));
            assert!(
                rooms.is_empty(),
                "left its rooms before the hook: {rooms:?}"
            );
            close
        }
        other => panic!("expected the disconnect of {id}, got {other:?}"),
    }
}

#[tokio::test]
async fn hooks_fire_once_with_the_close_code_and_see_the_connection_data() {
    let (hub, mut rx) = hub(64 * 1024, Arc::default());
    let url = serve(&hub).await;

    // A client that closes itself: 1000 with its own reason.
    let mut ann = connect(&url, "ann").await;
    let ann_id = id_of(&ann);
    assert!(matches!(next_event(&mut rx).await, Event::Connected(id) if id == ann_id));
    // What the connect hook stored is there for everyone afterwards.
    let conn = hub.connection(ann_id).expect("open");
    assert_eq!(*conn.data::<Tag>().unwrap(), Tag(format!("ann#{ann_id}")));
    assert_eq!(conn.identity().user_id, "ann");
    assert_eq!(conn.peer_addr().unwrap().ip().to_string(), "127.0.0.1");
    ann.join_ok(ROOM).await;
    assert_eq!(conn.rooms(), [ROOM]);
    ann.close().await;
    let close = expect_disconnect(&mut rx, ann_id).await;
    assert_eq!(close, CloseInfo::new(1000, "bye", CloseInitiator::Client));
    assert!(hub.connection(ann_id).is_none());
    assert!(!conn.is_open());

    // A server kick: the application's code and reason, on the wire and in the hook.
    let mut bob = connect(&url, "bob").await;
    let bob_id = id_of(&bob);
    assert!(matches!(next_event(&mut rx).await, Event::Connected(id) if id == bob_id));
    hub.connection(bob_id).unwrap().close(4001, "kicked");
    assert_eq!(bob.expect_close().await, 4001);
    finish(bob).await;
    let close = expect_disconnect(&mut rx, bob_id).await;
    assert_eq!(
        close,
        CloseInfo::new(4001, "kicked", CloseInitiator::Server)
    );

    // A slow consumer: direct sends to a client that stopped reading fill its 64 KiB
    // queue; it is closed with 1013 and the hook says so.
    let mut slow = connect(&url, "watcher").await;
    let slow_id = id_of(&slow);
    assert!(matches!(next_event(&mut rx).await, Event::Connected(id) if id == slow_id));
    let conn = hub.connection(slow_id).unwrap();
    let big = json!({"blob": "x".repeat(16 * 1024)});
    let mut sent = 0;
    while conn.send(&big).is_ok() {
        sent += 1;
        assert!(sent < 20_000, "the queue never filled");
        tokio::task::yield_now().await;
    }
    assert_eq!(slow.expect_close().await, 1013);
    finish(slow).await;
    let close = expect_disconnect(&mut rx, slow_id).await;
    assert_eq!(
        close,
        CloseInfo::new(1013, "slow consumer", CloseInitiator::Server)
    );
    assert_eq!(hub.stats().slow_consumers, 1);

    // A client that vanishes without a close frame: 1006, nobody closed.
    let lost = connect(&url, "bob").await;
    let lost_id = id_of(&lost);
    assert!(matches!(next_event(&mut rx).await, Event::Connected(id) if id == lost_id));
    drop(lost);
    let close = expect_disconnect(&mut rx, lost_id).await;
    assert_eq!(close, CloseInfo::new(1006, "", CloseInitiator::Lost));

    // Shutdown waits for connection tasks and hooks: nothing more was reported, so
    // each hook fired exactly once per connection.
    assert!(hub.shutdown().await);
    assert!(rx.try_recv().is_err(), "a hook fired twice");
}

/// `(user, conn_id)` of every meta in a presence object as clients receive it.
fn metas(presence: &Value) -> BTreeSet<(String, String)> {
    presence
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(user, p)| {
            p["metas"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |m| (user.clone(), m["conn_id"].as_str().unwrap().to_owned()))
        })
        .collect()
}

#[tokio::test]
async fn a_server_side_join_looks_like_a_client_join() {
    let (hub, _rx) = hub(1 << 20, Arc::default());
    let url = serve(&hub).await;
    let mut watcher = connect(&url, "watcher").await;
    watcher.join_ok(ROOM).await;

    // Ann joins herself; bob is joined by the server. The watcher sees the same diff.
    let mut ann = connect(&url, "ann").await;
    let reply = ann.join_ok(ROOM).await;
    let ann_diff = watcher.recv_diff_about("ann").await;

    let mut bob = connect(&url, "bob").await;
    let bob_conn = hub.connection(id_of(&bob)).unwrap();
    assert_eq!(bob_conn.join(ROOM).await, Ok(true));
    assert_eq!(
        bob_conn.join(ROOM).await,
        Ok(false),
        "joining twice changes nothing"
    );
    let bob_diff = watcher.recv_diff_about("bob").await;
    // (The first diff may also announce the watcher's own join, in the same tick.)
    let same_shape = |diff: &Value, user: &str, conn_id: &str| {
        diff["joins"][user]
            == json!({"metas": [{"conn_id": conn_id, "name": user.to_uppercase(), "meta": {}}]})
            && diff["leaves"] == json!({})
    };
    assert!(same_shape(&ann_diff, "ann", &ann.conn_id), "{ann_diff}");
    assert!(same_shape(&bob_diff, "bob", &bob.conn_id), "{bob_diff}");

    // Bob is told, with the presence a join reply carries.
    let joined = bob.recv().await;
    assert_eq!(joined["op"], "joined", "{joined}");
    assert_eq!(joined["room"], ROOM);
    let expected: BTreeSet<_> = [
        ("ann".to_owned(), ann.conn_id.clone()),
        ("bob".to_owned(), bob.conn_id.clone()),
        ("watcher".to_owned(), watcher.conn_id.clone()),
    ]
    .into();
    assert_eq!(metas(&joined["presence"]), expected);
    assert!(metas(&reply["data"]["presence"]).is_subset(&expected));
    assert_eq!(bob_conn.rooms(), [ROOM]);
    assert_eq!(hub.user_connections("bob")[0].rooms, [ROOM]);

    // And bob gets the room's messages, and may publish there, as a member.
    let r = ann.publish(ROOM, json!({"text": "hi bob"})).await;
    assert_eq!(r["data"]["delivered"], 3, "{r}");
    let m = bob.recv().await;
    assert_eq!(
        (m["op"].as_str(), m["from"].as_str()),
        (Some("message"), Some("ann"))
    );
    assert_eq!(bob.publish(ROOM, json!({"text": "hi"})).await["ok"], true);

    // A server-side leave: bob is told, the watcher sees him leave.
    bob_conn.leave(ROOM).unwrap();
    assert_eq!(
        bob.recv().await,
        json!({"op": "left", "room": ROOM, "reason": "server"})
    );
    let diff = leave_diff(&mut watcher, "bob").await;
    assert_eq!(metas(&diff["leaves"]).len(), 1, "{diff}");
    assert_eq!(
        bob_conn.leave(ROOM),
        Err(MembershipError::NotJoined(ROOM.into()))
    );
    assert_eq!(
        bob_conn.join("nope:x").await,
        Err(MembershipError::NotFound("nope:x".into()))
    );

    // Every tab of a user at once.
    let mut ann2 = connect(&url, "ann").await;
    assert_eq!(hub.join_user("ann", "chat:second").await, Ok(2));
    for tab in [&mut ann, &mut ann2] {
        let mut m = tab.recv().await;
        while m["op"] == "message" && m["room"] == ROOM {
            m = tab.recv().await; // the first tab's messages from ROOM
        }
        assert_eq!(
            (m["op"].as_str(), m["room"].as_str()),
            (Some("joined"), Some("chat:second"))
        );
    }
    let users = hub
        .find_room::<ChatMessage>("chat:second")
        .unwrap()
        .unwrap()
        .users();
    assert_eq!(users, ["ann"]);
}

#[tokio::test]
async fn a_kicked_user_loses_every_tab_and_leaves_presence() {
    let (hub, mut rx) = hub(1 << 20, Arc::default());
    let url = serve(&hub).await;
    let mut watcher = connect(&url, "watcher").await;
    watcher.join_ok(ROOM).await;
    let mut tabs = Vec::new();
    for _ in 0..3 {
        let mut tab = connect(&url, "ann").await;
        tab.join_ok(ROOM).await;
        tabs.push(tab);
    }
    watcher.recv_diff_about("ann").await;
    let mut bob = connect(&url, "bob").await;
    bob.join_ok(ROOM).await;

    assert_eq!(hub.disconnect_user("ann", 4003, "banned"), 3);
    // Out of the hub's books before the call returned.
    assert!(hub.user_connections("ann").is_empty());
    let room = hub.find_room::<ChatMessage>(ROOM).unwrap().unwrap();
    assert_eq!(room.users(), ["bob", "watcher"]);

    let ids: BTreeSet<u64> = tabs.iter().map(id_of).collect();
    for mut tab in tabs {
        assert_eq!(tab.expect_close().await, 4003);
        finish(tab).await;
    }
    let diff = watcher.recv_diff_about("ann").await;
    assert_eq!(metas(&diff["leaves"]).len(), 1, "{diff}");
    assert!(diff["leaves"].get("ann").is_some(), "{diff}");
    // Others are untouched.
    assert_eq!(
        bob.publish(ROOM, json!({"text": "still here"})).await["data"]["delivered"],
        2
    );

    let mut kicked = BTreeSet::new();
    while kicked.len() < 3 {
        if let Event::Disconnected { id, close, .. } = next_event(&mut rx).await {
            assert_eq!((close.code, close.reason.as_str()), (4003, "banned"));
            assert_eq!(close.initiator, CloseInitiator::Server);
            kicked.insert(id);
        }
    }
    assert_eq!(kicked, ids);
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Notice {
    Mention { room: String, by: String },
    Sentinel,
}

#[tokio::test]
async fn a_direct_send_reaches_every_tab_of_one_user_and_nobody_else() {
    let (hub, _rx) = hub(1 << 20, Arc::default());
    let url = serve(&hub).await;
    let mut ann1 = connect(&url, "ann").await;
    let mut ann2 = connect(&url, "ann").await;
    let mut bob = connect(&url, "bob").await;
    // In the same room, so a leak through the room would show too.
    for c in [&mut ann1, &mut ann2, &mut bob] {
        c.join_ok(ROOM).await;
    }

    let mention = Notice::Mention {
        room: ROOM.into(),
        by: "bob".into(),
    };
    assert_eq!(hub.send_to_user("ann", &mention).unwrap(), 2);
    let expected = json!({"op": "direct", "from": null,
                          "data": {"type": "mention", "room": ROOM, "by": "bob"}});
    assert_eq!(ann1.recv().await, expected);
    assert_eq!(ann2.recv().await, expected);

    // Bob's queue is in order: if the mention had reached him it would come first.
    hub.connection(id_of(&bob))
        .unwrap()
        .send(&Notice::Sentinel)
        .unwrap();
    assert_eq!(
        bob.recv().await,
        json!({"op": "direct", "from": null, "data": {"type": "sentinel"}})
    );
    assert_eq!(hub.send_to_user("nobody", &Notice::Sentinel).unwrap(), 0);
}

#[tokio::test]
async fn a_ban_removes_the_user_from_their_current_rooms_at_once() {
    let banned: Arc<Mutex<HashSet<String>>> = Arc::default();
    let (hub, _rx) = hub(1 << 20, banned.clone());
    let url = serve(&hub).await;
    let mut watcher = connect(&url, "watcher").await;
    watcher.join_ok("chat:a").await;
    let mut ann1 = connect(&url, "ann").await;
    let mut ann2 = connect(&url, "ann").await;
    for tab in [&mut ann1, &mut ann2] {
        for room in ["chat:a", "chat:b", "news:x"] {
            tab.join_ok(room).await;
        }
    }
    watcher.recv_diff_about("ann").await;

    // The ban: future joins refused, current chat memberships removed.
    banned.lock().unwrap().insert("ann".into());
    let removed = hub.remove_user_from_rooms("ann", |r| r.starts_with("chat:"), "banned");
    assert_eq!(removed, 4);
    // Before anything else runs: ann no longer receives the room's messages.
    let room = hub.find_room::<ChatMessage>("chat:a").unwrap().unwrap();
    assert_eq!(room.users(), ["watcher"]);
    assert_eq!(
        room.publish(ChatMessage {
            text: "after the ban".into()
        })
        .await
        .unwrap()
        .delivered,
        1
    );
    assert_eq!(hub.user_connections("ann")[0].rooms, ["news:x"]);
    hub.send_to_user("ann", &Notice::Sentinel).unwrap();

    for tab in [&mut ann1, &mut ann2] {
        let mut left = BTreeSet::new();
        for _ in 0..2 {
            let m = tab.recv().await;
            assert_eq!(
                (m["op"].as_str(), m["reason"].as_str()),
                (Some("left"), Some("banned")),
                "{m}"
            );
            left.insert(m["room"].as_str().unwrap().to_owned());
        }
        assert_eq!(
            left,
            BTreeSet::from(["chat:a".to_owned(), "chat:b".to_owned()])
        );
        // Next comes the sentinel, not the publish made after the ban.
        assert_eq!(tab.recv().await["data"]["type"], "sentinel");
        // The client cannot publish there, nor come back.
        assert_eq!(
            tab.publish("chat:a", json!({"text": "x"})).await["error"]["code"],
            "not_joined"
        );
        assert_eq!(
            tab.join("chat:a", json!({})).await["error"]["code"],
            "forbidden"
        );
    }
    // The watcher gets ann's presence leave.
    leave_diff(&mut watcher, "ann").await;
    // Both connections stay open, in the rooms the filter kept.
    let conns = hub.user_connections("ann");
    assert_eq!(conns.len(), 2);
    assert!(conns.iter().all(|c| c.rooms == ["news:x"]), "{conns:?}");
}

/// Connection data set in the connect hook is seen by a later RPC from that connection
/// (`RpcContext::connection`), and the RPC can act on the connection (join it to a room
/// server-side).
#[tokio::test]
async fn connection_data_from_the_connect_hook_is_seen_by_an_rpc() {
    let hub = test_hub_builder()
        .authenticator(authenticator(Arc::default()))
        .on_connect(|conn: Connection| async move {
            conn.set_data(Tag(format!("plan-for-{}", conn.identity().user_id)));
        })
        .rpc("me.plan", |ctx: wshub::RpcContext, _: ()| async move {
            let conn = ctx
                .connection()
                .ok_or_else(|| wshub::RpcError::internal("gone"))?;
            let tag = conn
                .data::<Tag>()
                .ok_or_else(|| wshub::RpcError::not_found("no plan"))?;
            conn.join(ROOM)
                .await
                .map_err(|e| wshub::RpcError::internal(e.to_string()))?;
            Ok::<_, wshub::RpcError>(json!({ "plan": tag.0, "conn_id": conn.id().to_string() }))
        })
        .build();
    let url = serve(&hub).await;
    let mut ann = connect(&url, "ann").await;
    let (reply, _) = ann
        .request(json!({"op": "call", "method": "me.plan"}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(
        reply["data"],
        json!({"plan": "plan-for-ann", "conn_id": ann.conn_id})
    );
    // The server-side join from inside the RPC took effect: ann is in the room.
    let room = hub.room::<ChatMessage>(ROOM).unwrap();
    assert!(
        room.users().iter().any(|u| u == "ann"),
        "{:?}",
        room.users()
    );
}
