//! A test cluster: hub nodes on one Redis (the backplane), trusting 127.0.0.1 as
//! their proxy, behind nginx or HAProxy run with the repository's own `deploy/` files
//! (ports substituted); and the scenario both proxies' tests run.

use std::net::SocketAddr;

use serde_json::json;
use wshub::redis::{RedisBackplane, RedisOptions};
use wshub::{Hub, TrustedProxies};

use super::hub::{Client, test_hub_builder};
use super::services::{Haproxy, Nginx, RedisServer, deploy_file, free_port};

/// Nodes on one Redis.
pub struct Nodes {
    pub redis: RedisServer,
    pub hubs: Vec<Hub>,
    pub addrs: Vec<SocketAddr>,
}

/// `n` nodes on a fresh Redis, each trusting 127.0.0.1 (where the proxy connects
/// from) and nothing else.
pub async fn start_nodes(n: usize) -> Nodes {
    let redis = RedisServer::start();
    let (mut hubs, mut addrs) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let backplane = RedisBackplane::new(&redis.url(), RedisOptions::default()).unwrap();
        let hub = test_hub_builder()
            .backplane(backplane)
            .configure(|c| c.trusted_proxies = TrustedProxies::new(["127.0.0.1/32"]).unwrap())
            .build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(listener.local_addr().unwrap());
        let h = hub.clone();
        tokio::spawn(async move { h.serve(listener).await });
        hubs.push(hub);
    }
    Nodes { redis, hubs, addrs }
}

/// The `server` lines of both deploy files name the three example nodes.
const EXAMPLE_NODES: [&str; 3] = ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"];

/// nginx with `deploy/nginx.conf`, its upstream pointed at `addrs` (three), one
/// worker (each worker keeps its own round-robin, so one makes the spread exact).
pub fn nginx_for(addrs: &[SocketAddr]) -> Nginx {
    let port = free_port();
    let mut subst = vec![
        (
            "listen 127.0.0.1:8080;",
            format!("listen 127.0.0.1:{port};"),
        ),
        ("worker_processes auto;", "worker_processes 1;".to_owned()),
    ];
    for (example, addr) in EXAMPLE_NODES.iter().zip(addrs) {
        subst.push((example, addr.to_string()));
    }
    Nginx::start(&deploy_file("nginx.conf", &subst), port)
}

/// HAProxy with `deploy/haproxy.cfg`, its backend pointed at `addrs` (three).
pub fn haproxy_for(addrs: &[SocketAddr]) -> Haproxy {
    let port = free_port();
    let mut subst = vec![("bind 127.0.0.1:8080", format!("bind 127.0.0.1:{port}"))];
    for (example, addr) in EXAMPLE_NODES.iter().zip(addrs) {
        subst.push((example, addr.to_string()));
    }
    Haproxy::start(&deploy_file("haproxy.cfg", &subst), port)
}

/// Connects through the proxy at `proxy` from the loopback address `from` (so the
/// hub can tell it from the proxy, which connects from 127.0.0.1), with `headers`.
pub async fn connect_from(proxy: SocketAddr, from: [u8; 4], headers: &[(&str, &str)]) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    let stream = socket.connect(proxy).await.unwrap();
    Client::connect_on(stream, &format!("ws://{proxy}/"), headers)
        .await
        .unwrap()
}

/// Six clients through the proxy: round-robin puts two on each node (no stickiness);
/// each sees everyone in the room's presence, whichever node they are on;
/// each publishes five messages at once; every client receives all thirty in one
/// order (`seq` 1..=30), each publisher's own in the order sent. A client's address,
/// as its node sees it, is the one the proxy named, not one the client claimed.
pub async fn exchange_in_order(proxy: SocketAddr, nodes: &Nodes) {
    let mut clients = Vec::new();
    for i in 0..6u8 {
        clients.push(connect_from(proxy, [127, 0, 0, 10 + i], &[]).await);
    }
    let spread: Vec<usize> = nodes.hubs.iter().map(|h| h.stats().connections).collect();
    assert_eq!(spread, [2, 2, 2], "round-robin, no stickiness");
    for c in &mut clients {
        c.join_ok("chat:lobby").await;
    }
    // Presence is cluster-wide: the first client, on node 1, sees the five others
    // join, whichever node they are on; then every client's snapshot has all six.
    let others: Vec<String> = clients[1..].iter().map(|c| c.user.clone()).collect();
    // Diffs are coalesced per tick: one may announce several users.
    let mut seen = std::collections::BTreeSet::new();
    while !others.iter().all(|u| seen.contains(u)) {
        let d = clients[0].recv_diff().await;
        assert_eq!(d["leaves"], json!({}), "{d}");
        seen.extend(d["joins"].as_object().unwrap().keys().cloned());
    }
    let (r, _) = clients[5]
        .request(json!({"op": "presence", "room": "chat:lobby"}))
        .await;
    assert_eq!(
        r["data"]["presence"].as_object().map(|o| o.len()),
        Some(6),
        "{r}"
    );
    for (i, c) in clients.iter_mut().enumerate() {
        for k in 0..5 {
            c.send(json!({"op": "publish", "room": "chat:lobby", "data": {"text": format!("{i}.{k}")}}))
                .await;
        }
    }
    let mut orders = Vec::new();
    for c in &mut clients {
        let mut texts = Vec::new();
        for seq in 1..=30 {
            let m = c.recv().await;
            assert_eq!(
                (&m["op"], &m["seq"]),
                (&json!("message"), &json!(seq)),
                "{m}"
            );
            texts.push(m["data"]["text"].as_str().unwrap().to_owned());
        }
        for i in 0..6 {
            let own: Vec<&String> = texts
                .iter()
                .filter(|t| t.starts_with(&format!("{i}.")))
                .collect();
            let expected: Vec<String> = (0..5).map(|k| format!("{i}.{k}")).collect();
            assert_eq!(
                own,
                expected.iter().collect::<Vec<_>>(),
                "publisher {i}'s order"
            );
        }
        orders.push(texts);
    }
    assert!(
        orders.windows(2).all(|w| w[0] == w[1]),
        "one order on every node"
    );

    // A client that claims another address: the node believes only the proxy.
    let c = connect_from(
        proxy,
        [127, 0, 0, 99],
        &[("x-forwarded-for", "203.0.113.7")],
    )
    .await;
    let infos: Vec<_> = nodes
        .hubs
        .iter()
        .flat_map(|h| h.user_connections(&c.user))
        .collect();
    assert_eq!(infos.len(), 1);
    assert_eq!(
        infos[0].peer.map(|p| p.ip()),
        Some(std::net::IpAddr::from([127, 0, 0, 99])),
        "the address the proxy saw, not the one the client claimed"
    );
}
