//! `HubConfig::max_request_size`: the largest request head before the upgrade, 8 KiB
//! by default (431 over it), raised for applications with big cookies or tokens, under
//! `Hub::serve` and `Hub::serve_axum` alike.

mod common;

use std::net::SocketAddr;

use common::hub::test_hub_builder;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self};
use wshub::Hub;

/// Upgrades with a 12 KiB cookie; the HTTP status of the answer (101 on success).
async fn upgrade_with_big_cookie(addr: SocketAddr, path: &str) -> u16 {
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "wshub.v1".parse().unwrap());
    let cookie = format!("session={}", "c".repeat(12 * 1024));
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    let stream = TcpStream::connect(addr).await.unwrap();
    match tokio_tungstenite::client_async(req, stream).await {
        Ok((_, resp)) => resp.status().as_u16(),
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("handshake failed: {e}"),
    }
}

async fn serve(hub: &Hub) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let h = hub.clone();
    tokio::spawn(async move { h.serve(listener).await });
    addr
}

async fn serve_axum(hub: &Hub) -> SocketAddr {
    let app = axum::Router::new().route("/ws", hub.axum_route());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let h = hub.clone();
    tokio::spawn(async move { h.serve_axum(listener, app).await });
    addr
}

#[tokio::test]
async fn the_default_refuses_a_12_kib_head_and_a_raised_limit_takes_it() {
    let default = test_hub_builder().build();
    assert_eq!(default.config().max_request_size, 8 * 1024);
    assert_eq!(
        upgrade_with_big_cookie(serve(&default).await, "/").await,
        431
    );
    assert_eq!(
        upgrade_with_big_cookie(serve_axum(&default).await, "/ws").await,
        431
    );

    let raised = test_hub_builder()
        .configure(|c| c.max_request_size = 32 * 1024)
        .build();
    assert_eq!(
        upgrade_with_big_cookie(serve(&raised).await, "/").await,
        101
    );
    assert_eq!(
        upgrade_with_big_cookie(serve_axum(&raised).await, "/ws").await,
        101
    );
}
