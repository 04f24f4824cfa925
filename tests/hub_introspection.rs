//! Introspection from Rust over real sockets: `Hub::rooms`, `Hub::find_room`,
//! `Room::connections`/`users`/`info` and `Hub::user_connections` report what the
//! clients themselves see (their welcome's `conn_id`, their join replies' presence,
//! their own socket addresses), follow leaves and closes, and never create rooms;
//! `HubStats` serializes for a status endpoint.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::hub::{Article, ChatMessage, Client, serve, test_hub_builder};
use serde_json::{Value, json};
use tokio_tungstenite::MaybeTlsStream;
use wshub::auth::StaticTokens;
use wshub::{
    AllowAnonymous, AuthRejection, AuthRequest, Authenticator, ConnectionInfo, Hub, Identity,
    Namespace, RoomError, RoomInfo,
};

/// Clients with a token are who `StaticTokens` says (`tok-alice`: user `alice`, name
/// `Alice`); clients without one are guests, as on a site where signing in is optional.
#[derive(Debug)]
struct TokensOrGuests {
    tokens: StaticTokens,
    guests: AllowAnonymous,
}

impl Authenticator for TokensOrGuests {
    async fn authenticate(&self, req: &AuthRequest) -> Result<Identity, AuthRejection> {
        match req.token() {
            Some(_) => self.tokens.authenticate(req).await,
            None => self.guests.authenticate(req).await,
        }
    }
}

/// `chat` and `news` from the fixtures, plus `quiet`: chat rooms without presence.
fn hub() -> Hub {
    test_hub_builder()
        .namespace(Namespace::<ChatMessage>::new("quiet").presence(false))
        .authenticator(TokensOrGuests {
            tokens: StaticTokens::new().with("tok-alice", Identity::new("alice", "Alice")),
            guests: AllowAnonymous::new(),
        })
        .build()
}

async fn connect_alice(url: &str) -> Client {
    Client::connect_with(url, &[("authorization", "Bearer tok-alice")])
        .await
        .unwrap_or_else(|status| panic!("alice: HTTP {status}"))
}

/// The client's own end of its TCP connection: the peer address the hub must report.
fn local_addr(c: &Client) -> SocketAddr {
    match c.ws.get_ref() {
        MaybeTlsStream::Plain(s) => s.local_addr().unwrap(),
        _ => unreachable!("plain ws://"),
    }
}

fn conn_id(c: &Client) -> u64 {
    c.conn_id
        .parse()
        .expect("welcome conn_id is a decimal string")
}

/// Joins `room` and returns the reply's `data.presence` (or `null` without presence).
async fn join(c: &mut Client, room: &str, meta: Value) -> Value {
    let r = c.join(room, meta).await;
    assert_eq!(r["ok"], true, "join {room}: {r}");
    r["data"]["presence"].clone()
}

/// `(user, conn_id)` of every meta of a presence object as clients receive it.
fn presence_conns(presence: &Value) -> BTreeSet<(String, u64)> {
    presence
        .as_object()
        .expect("presence is an object")
        .iter()
        .flat_map(|(user, entry)| {
            entry["metas"].as_array().unwrap().iter().map(move |m| {
                (
                    user.clone(),
                    m["conn_id"].as_str().unwrap().parse().unwrap(),
                )
            })
        })
        .collect()
}

fn info_conns(infos: &[ConnectionInfo]) -> BTreeSet<(String, u64)> {
    infos
        .iter()
        .map(|c| (c.user_id.clone(), c.conn_id))
        .collect()
}

/// The hub's rooms, sorted by name.
fn rooms(hub: &Hub) -> Vec<RoomInfo> {
    let mut rooms = hub.rooms();
    rooms.sort_by(|a, b| a.name.cmp(&b.name));
    rooms
}

fn room_json(info: &RoomInfo) -> Value {
    serde_json::to_value(info).unwrap()
}

/// Waits (up to 5 s) until `cond` holds on the server side: for what no client is told
/// about (a connection in no room closing).
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
async fn introspection_matches_what_clients_see_and_follows_leaves_and_closes() {
    let hub = hub();
    let url = serve(&hub).await;
    let mut tab1 = connect_alice(&url).await;
    let mut tab2 = connect_alice(&url).await;
    let mut guest = Client::connect(&url).await;
    assert_eq!((tab1.user.as_str(), tab2.user.as_str()), ("alice", "alice"));
    assert!(guest.user.starts_with("guest-"), "{}", guest.user);

    join(&mut tab1, "chat:lobby", json!({"tab": 1})).await;
    join(&mut tab1, "news:latest", json!({})).await;
    join(&mut tab1, "quiet:room", json!({})).await;
    join(&mut tab2, "chat:lobby", json!({"tab": 2})).await;
    join(&mut guest, "quiet:room", json!({})).await;
    // The guest joins the lobby last: its reply shows everyone in it.
    let lobby_seen = join(&mut guest, "chat:lobby", json!({})).await;
    let seen = presence_conns(&lobby_seen);
    assert_eq!(
        seen,
        BTreeSet::from([
            ("alice".to_owned(), conn_id(&tab1)),
            ("alice".to_owned(), conn_id(&tab2)),
            (guest.user.clone(), conn_id(&guest)),
        ]),
        "{lobby_seen}"
    );

    // Rooms with their counts: the lobby has as many connections as the guest's
    // snapshot has metas, and as many users as it has entries.
    let all = rooms(&hub);
    assert_eq!(
        all.iter().map(room_json).collect::<Vec<_>>(),
        [
            json!({"name": "chat:lobby", "namespace": "chat", "connections": 3, "users": 2}),
            json!({"name": "news:latest", "namespace": "news", "connections": 1, "users": 1}),
            json!({"name": "quiet:room", "namespace": "quiet", "connections": 2, "users": null}),
        ]
    );
    assert_eq!(all[0].connections, seen.len());
    assert_eq!(all[0].users, Some(lobby_seen.as_object().unwrap().len()));
    assert_eq!(hub.stats().rooms, all.len());

    // A room's connections: the ids of the clients' welcomes, their users and the
    // addresses their sockets are bound to.
    let lobby = hub
        .find_room::<ChatMessage>("chat:lobby")
        .unwrap()
        .expect("the lobby exists");
    assert_eq!(lobby.info(), all[0]);
    let members = lobby.connections();
    assert_eq!(info_conns(&members), seen);
    for (client, rooms) in [
        (&tab1, vec!["chat:lobby", "news:latest", "quiet:room"]),
        (&tab2, vec!["chat:lobby"]),
        (&guest, vec!["chat:lobby", "quiet:room"]),
    ] {
        let info = members
            .iter()
            .find(|m| m.conn_id == conn_id(client))
            .unwrap();
        assert_eq!(info.peer, Some(local_addr(client)), "{info:?}");
        assert_eq!(info.rooms, rooms, "{info:?}");
        // Serialized, the id is the string the client's welcome carried.
        let v = serde_json::to_value(info).unwrap();
        assert_eq!(v["conn_id"], json!(client.conn_id), "{v}");
        assert_eq!(v["peer"], json!(local_addr(client).to_string()), "{v}");
    }
    let mut users: Vec<String> = lobby_seen.as_object().unwrap().keys().cloned().collect();
    users.sort();
    assert_eq!(lobby.users(), users);
    // Without presence the room still knows its users.
    let quiet = hub.find_room::<ChatMessage>("quiet:room").unwrap().unwrap();
    let mut quiet_users = vec!["alice".to_owned(), guest.user.clone()];
    quiet_users.sort();
    assert_eq!(quiet.users(), quiet_users);
    assert_eq!(quiet.info().users, None);
    // Our handles would keep emptied rooms alive until the sweep; the clients' closes
    // below must be what removes them.
    drop((lobby, quiet));

    // A user's connections: both tabs, oldest first, each with its rooms.
    let alice = hub.user_connections("alice");
    assert_eq!(
        alice.iter().map(|c| c.conn_id).collect::<Vec<_>>(),
        [conn_id(&tab1), conn_id(&tab2)]
    );
    assert_eq!(alice[0].name, "Alice");
    assert_eq!(alice[0].rooms, ["chat:lobby", "news:latest", "quiet:room"]);
    assert_eq!(alice[1].rooms, ["chat:lobby"]);
    assert_eq!(alice[1].peer, Some(local_addr(&tab2)));
    let guest_conns = hub.user_connections(&guest.user);
    assert_eq!(guest_conns.len(), 1);
    assert_eq!(guest_conns[0].conn_id, conn_id(&guest));
    assert!(hub.user_connections("nobody").is_empty());

    // A tab leaves the lobby: the reply comes once the hub has taken it out, and alice
    // is still present through her other tab.
    let r = tab2
        .request(json!({"op": "leave", "room": "chat:lobby"}))
        .await
        .0;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(
        room_json(&rooms(&hub)[0]),
        json!({"name": "chat:lobby", "namespace": "chat", "connections": 2, "users": 2})
    );
    assert_eq!(hub.user_connections("alice")[1].rooms, Vec::<String>::new());

    // The other tab closes: once the guest is told alice left, the hub no longer lists
    // that connection anywhere. The room only tab1 was in goes on the same presence
    // tick, possibly just after the diff is sent: waited for on the hub.
    let closed = conn_id(&tab1);
    tab1.close().await;
    loop {
        let d = guest.recv_diff().await;
        if d["room"] == "chat:lobby" && d["leaves"].get("alice").is_some() {
            break;
        }
    }
    eventually("news:latest to be dropped", || hub.stats().rooms == 2).await;
    assert_eq!(
        rooms(&hub).iter().map(room_json).collect::<Vec<_>>(),
        [
            json!({"name": "chat:lobby", "namespace": "chat", "connections": 1, "users": 1}),
            json!({"name": "quiet:room", "namespace": "quiet", "connections": 1, "users": null}),
        ]
    );
    let alice = hub.user_connections("alice");
    assert_eq!(
        alice.iter().map(|c| c.conn_id).collect::<Vec<_>>(),
        [conn_id(&tab2)]
    );
    assert!(
        hub.find_room::<ChatMessage>("chat:lobby")
            .unwrap()
            .unwrap()
            .connections()
            .iter()
            .all(|c| c.conn_id != closed)
    );

    // The last tab, in no room, closes: nobody is told, so wait on the hub's count.
    tab2.close().await;
    eventually("alice's last tab to close", || hub.stats().connections == 1).await;
    assert!(hub.user_connections("alice").is_empty());

    // The guest goes too: no room is left.
    let guest_user = guest.user.clone();
    guest.close().await;
    eventually("every connection to close", || {
        let s = hub.stats();
        s.connections == 0 && s.rooms == 0
    })
    .await;
    assert!(hub.rooms().is_empty());
    assert!(hub.user_connections(&guest_user).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_room_never_creates_a_room() {
    let hub = hub();
    let url = serve(&hub).await;
    let mut guest = Client::connect(&url).await;
    join(&mut guest, "chat:lobby", json!({})).await;
    assert_eq!(hub.stats().rooms, 1);

    // A room nobody joined: not found, and still not there afterwards.
    assert!(
        hub.find_room::<ChatMessage>("chat:never")
            .unwrap()
            .is_none()
    );
    assert_eq!(hub.stats().rooms, 1);
    assert_eq!(
        hub.rooms()
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["chat:lobby"]
    );
    // The same errors as `Hub::room`.
    assert!(matches!(
        hub.find_room::<Article>("chat:never"),
        Err(RoomError::WrongType { .. })
    ));
    assert_eq!(
        hub.find_room::<ChatMessage>("nope:x").unwrap_err(),
        RoomError::NotFound("nope:x".into())
    );
    assert_eq!(hub.stats().rooms, 1);

    // A joined room is found, with its member.
    let lobby = hub.find_room::<ChatMessage>("chat:lobby").unwrap().unwrap();
    assert_eq!(
        info_conns(&lobby.connections()),
        BTreeSet::from([(guest.user.clone(), conn_id(&guest))])
    );
    // While `Hub::room` creates the room it is asked for.
    let made = hub.room::<ChatMessage>("chat:made").unwrap();
    assert_eq!(hub.stats().rooms, 2);
    assert_eq!(made.info().connections, 0);
    assert!(hub.find_room::<ChatMessage>("chat:made").unwrap().is_some());

    // A client joining the never-looked-up room starts it fresh: it sees only itself.
    let presence = join(&mut guest, "chat:never", json!({})).await;
    assert_eq!(
        presence_conns(&presence),
        BTreeSet::from([(guest.user.clone(), conn_id(&guest))])
    );
    assert_eq!(hub.stats().rooms, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_stats_serialize_to_their_field_names() {
    let hub = hub();
    let url = serve(&hub).await;
    let mut guest = Client::connect(&url).await;
    join(&mut guest, "chat:lobby", json!({})).await;
    let v = serde_json::to_value(hub.stats()).unwrap();
    assert_eq!(
        v,
        json!({
            "connections": 1,
            "rooms": 1,
            "history_rooms": 1,
            "history_messages": 0,
            "history_bytes": 0,
            "slow_consumers": 0,
            "reaped": 0,
            "expired": 0,
            "refused_by_limits": 0,
            "pending": 0,
            "refused_pending": 0,
            // One entry per host and per network: the guest's 127.0.0.1.
            "limit_entries": 2,
        })
    );
}
