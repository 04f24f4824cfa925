//! Three hub nodes on one Redis behind nginx, with `deploy/nginx.conf` (feature
//! `redis`): round-robin with no stickiness, the WebSocket upgrade passed through,
//! clients on different nodes exchange messages in one per-room order, and the nodes
//! see the client addresses nginx forwards.

mod common;

use common::cluster::{exchange_in_order, nginx_for, start_nodes};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_behind_nginx_exchange_messages_in_order() {
    let nodes = start_nodes(3).await;
    let nginx = nginx_for(&nodes.addrs);
    exchange_in_order(nginx.addr(), &nodes).await;
}
