//! `Hub::serve_axum`: an axum app and the hub on one port, with peer addresses
//! (`ConnectInfo`) for the app and for the hub's per-IP limits, and graceful shutdown
//! (the listener closes, WebSockets get 1001, a request in progress finishes, within
//! `shutdown_timeout`).
#![cfg(feature = "axum")]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use common::attack::{Seen, Watchdog, hold_the_clock, lo, open, peek, wait_for_end, wait_until};
use common::hub::{Client, test_hub_builder};
use common::raw::raw_http;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use wshub::Hub;

/// Serves `app` with `hub.serve_axum` on 127.0.0.1:0.
async fn serve(hub: &Hub, app: Router) -> (SocketAddr, JoinHandle<std::io::Result<()>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let h = hub.clone();
    (
        addr,
        tokio::spawn(async move { h.serve_axum(listener, app).await }),
    )
}

/// An app whose `/ip` route answers with the client's address as axum sees it.
fn app(hub: &Hub) -> Router {
    Router::new()
        .route(
            "/ip",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        )
        .route("/ws", hub.axum_route())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_addresses_reach_the_app_and_the_hubs_per_ip_limit() {
    let hub = test_hub_builder()
        .configure(|c| c.max_connections_per_ip = 1)
        .build();
    let (addr, _task) = serve(&hub, app(&hub)).await;

    // The app's own route sees the peer address (`ConnectInfo`).
    let (status, _, body) = raw_http(
        addr,
        "GET /ip HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "127.0.0.1"));

    // The hub sees it too: a second WebSocket from 127.0.0.1 is over the per-IP limit.
    let url = format!("ws://{addr}/ws");
    let mut a = Client::connect(&url).await;
    a.join_ok("chat:lobby").await;
    assert_eq!(Client::connect_with(&url, &[]).await.err(), Some(429));
    assert_eq!(hub.stats().refused_by_limits, 1);

    // Another address is another client.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 2], 0))).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        url.as_str(),
    )
    .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "wshub.v1".parse().unwrap());
    let (mut b, resp) = tokio_tungstenite::client_async(req, tcp)
        .await
        .expect("upgrade from 127.0.0.2");
    assert_eq!(resp.status(), 101);
    // The session registers the connection in its own task, just after the 101: a
    // join answered (after the `welcome`) means it is counted.
    use futures_util::{SinkExt, StreamExt};
    b.send(tokio_tungstenite::tungstenite::Message::text(
        r#"{"op":"join","room":"chat:lobby","id":1}"#,
    ))
    .await
    .unwrap();
    let reply = loop {
        let frame = b.next().await.unwrap().unwrap();
        let msg: serde_json::Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
        if msg["op"] == "reply" {
            break msg;
        }
    };
    assert_eq!(
        (reply["id"].as_u64(), reply["ok"].as_bool()),
        (Some(1), Some(true)),
        "{reply}"
    );
    assert_eq!(hub.stats().connections, 2);
    a.close().await;
}

/// Shutdown: the listener closes, WebSockets are closed with 1001, and a request in
/// progress still gets its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_accepting_and_lets_requests_in_progress_finish() {
    let hub = test_hub_builder().build();
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let slow = {
        let (started, release) = (started.clone(), release.clone());
        get(move || async move {
            started.notify_one();
            release.notified().await;
            "done"
        })
    };
    let (addr, task) = serve(&hub, app(&hub).route("/slow", slow)).await;
    let mut ws = Client::connect(&format!("ws://{addr}/ws")).await;
    ws.join_ok("chat:lobby").await;

    let in_progress = tokio::spawn(raw_http(
        addr,
        "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ));
    started.notified().await;
    let shutdown = {
        let hub = hub.clone();
        tokio::spawn(async move { hub.shutdown().await })
    };
    assert_eq!(ws.expect_close().await, 1001);
    // Our side of the closing handshake: the server stops waiting for it.
    drop(ws);
    // `serve_axum` returns once shutdown begins, dropping the listener.
    task.await.unwrap().unwrap();
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "the listener still accepts");
    // The request in progress finishes, and shutdown waits for it.
    assert!(!shutdown.is_finished());
    release.notify_one();
    let (status, _, body) = in_progress.await.unwrap();
    assert_eq!((status, body.as_str()), (200, "done"));
    assert!(shutdown.await.unwrap(), "shutdown did not finish in time");
    assert_eq!(hub.stats().pending, 0);
}

/// A request still running at `shutdown_timeout` is cut off: shutdown does not wait
/// for it forever. Idle keep-alive connections are closed at once.
#[tokio::test(start_paused = true)]
async fn shutdown_cuts_off_requests_at_shutdown_timeout() {
    let _watchdog = Watchdog::new("shutdown timeout", Duration::from_secs(120));
    let _clock = hold_the_clock();
    let hub = test_hub_builder().build();
    let started = Arc::new(Notify::new());
    let never = {
        let started = started.clone();
        get(move || async move {
            started.notify_one();
            std::future::pending::<()>().await;
        })
    };
    let (addr, _task) = serve(&hub, app(&hub).route("/never", never)).await;
    let mut idle = open(lo(0, 0, 1), addr, b"GET /ip HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut stuck = open(lo(0, 0, 1), addr, b"GET /never HTTP/1.1\r\nHost: x\r\n\r\n").await;
    started.notified().await;
    wait_until("both requests to be in", || hub.stats().pending == 2).await;

    let shutdown = {
        let hub = hub.clone();
        tokio::spawn(async move { hub.shutdown().await })
    };
    // The idle keep-alive connection (answered, waiting for its next request) is
    // closed at once, after its answer.
    let mut answer = Vec::new();
    wait_until("the idle connection to close", || {
        use std::io::Read;
        let mut chunk = [0u8; 1024];
        match idle.read(&mut chunk) {
            Ok(0) => true,
            Ok(n) => {
                answer.extend_from_slice(&chunk[..n]);
                false
            }
            Err(_) => false,
        }
    })
    .await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(peek(&mut stuck), Seen::Held);
    tokio::time::advance(hub.config().shutdown_timeout + Duration::from_millis(2)).await;
    assert_eq!(wait_for_end(&mut stuck).await, Seen::Closed);
    wait_until("pending to drop to zero", || hub.stats().pending == 0).await;
    wait_until("shutdown to return", || shutdown.is_finished()).await;
}
