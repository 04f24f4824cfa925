//! Servers for the scenario tests: wshub hubs on 127.0.0.1 port 0, and (in [`node`])
//! the comparison's real Socket.IO server.
#![allow(dead_code)] // Each test file uses some of these.

pub mod node;

use std::net::SocketAddr;

use tokio::net::TcpListener;
use wshub::auth::{Identity, JwtAuth, StaticTokens};
use wshub::ws::WsConfig;
use wshub::ws::handshake::{HandshakeConfig, accept};
use wshub::{Hub, HubBuilder, Namespace};
use wshub_bench::conn::Target;
use wshub_bench::report::Report;

/// A builder with a `bench` namespace of any JSON (presence on, the default) and no
/// rate limits in the way of the generator.
fn builder() -> HubBuilder {
    Hub::builder()
        .namespace(Namespace::<serde_json::Value>::new("bench"))
        .configure(|c| wshub::bench_support::lift_limits_for_load(c, 25_000))
}

/// A hub with a token per connection: `tok-0` is user `u0`, `tok-1` user `u1`...
pub fn hub(tokens: usize) -> Hub {
    builder().authenticator(static_tokens(tokens)).build()
}

/// `tokens` static tokens: `tok-0` is user `u0`, `tok-1` user `u1`...
fn static_tokens(tokens: usize) -> StaticTokens {
    (0..tokens)
        .map(|i| {
            (
                format!("tok-{i}"),
                Identity::new(format!("u{i}"), format!("user {i}")),
            )
        })
        .collect()
}

/// [`hub`], with a presence diff on every tick that has changes (`presence_tick_max`
/// equal to `presence_tick`, no pacing): every change outlasting a tick is announced.
pub fn unpaced_hub(tokens: usize) -> Hub {
    builder()
        .configure(|c| c.presence_tick_max = c.presence_tick)
        .authenticator(static_tokens(tokens))
        .build()
}

/// A hub that takes HS256 JWTs signed with `secret`.
pub fn jwt_hub(secret: &str) -> Hub {
    builder().authenticator(JwtAuth::hs256(secret)).build()
}

/// Serves `hub` on a new port; returns its address.
pub async fn serve(hub: Hub) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { hub.serve(listener).await });
    addr
}

/// Serves `hub` on `addr` again (a restarted server), once the old listener is gone.
pub async fn serve_at(hub: Hub, addr: SocketAddr) {
    let listener = loop {
        match TcpListener::bind(addr).await {
            Ok(l) => break l,
            // The old serve loop is still winding down: an event we cannot await.
            Err(_) => tokio::task::yield_now().await,
        }
    };
    tokio::spawn(async move { hub.serve(listener).await });
}

/// A `wshub.v1` target at `addr` sending `tok-{i}`.
pub async fn target(addr: SocketAddr) -> Target {
    let mut t = Target::resolve(&format!("ws://{addr}/")).await.unwrap();
    t.subprotocol = Some("wshub.v1".into());
    t.token = Some("tok-{i}".into());
    t
}

/// A plain WebSocket echo server on wshub's engine; returns its URL.
pub async fn serve_echo() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (stream, peer) = listener.accept().await.unwrap();
            tokio::spawn(echo_one(stream, peer));
        }
    });
    url
}

async fn echo_one(stream: tokio::net::TcpStream, peer: SocketAddr) -> wshub::Result<()> {
    let hs = HandshakeConfig::default();
    let mut ws = accept(stream, Some(peer), &hs, WsConfig::default()).await?;
    while let Some(msg) = ws.recv().await? {
        ws.send(msg).await?;
    }
    Ok(())
}

/// Every expected message arrived, with one latency sample each, and no errors.
pub fn assert_complete(r: &Report) {
    assert!(r.errors.is_empty(), "errors: {:?}", r.errors);
    assert!(r.expected > 0);
    assert_eq!(r.delivered, r.expected, "{}", r.table());
    assert_eq!(r.latency.count, r.delivered);
    assert!(r.latency.p50_us > 0.0);
    assert!(r.latency.p50_us <= r.latency.p99_us && r.latency.p99_us <= r.latency.max_us);
    // Under the drain limit: a latency longer than the run means a wrong clock.
    assert!(r.latency.max_us < 10_000_000.0, "{}", r.table());
    assert!(r.generator_cpu_s > 0.0);
}

/// A relay on wshub's engine: every text message to every client, the sender
/// included, as the seeds' `ws` broadcast server does. With `socketio`, it speaks the
/// engine.io v4 / Socket.IO framing as the Socket.IO server does (open packet, `40`
/// namespace connect answered `40{"sid":..}`, `42` events relayed) and pings every
/// client once on connect, which the generator must answer with `3` before the
/// connection counts as open. Returns its URL.
pub async fn serve_relay(socketio: bool) -> String {
    use std::sync::{Arc, Mutex};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let url = if socketio {
        format!("ws://{addr}/socket.io/?EIO=4&transport=websocket")
    } else {
        format!("ws://{addr}/")
    };
    let clients: Arc<Mutex<Vec<wshub::ws::Outbound>>> = Arc::default();
    tokio::spawn(async move {
        loop {
            let (stream, peer) = listener.accept().await.unwrap();
            let clients = clients.clone();
            tokio::spawn(async move {
                let hs = HandshakeConfig::default();
                let Ok(mut ws) = accept(stream, Some(peer), &hs, WsConfig::default()).await else {
                    return;
                };
                use wshub::ws::Message;
                if socketio {
                    let open = r#"0{"sid":"s","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
                    ws.send(Message::text(open)).await.unwrap();
                    match ws.recv().await {
                        Ok(Some(m)) if m.as_text() == Some("40") => {}
                        other => panic!("expected 40, got {other:?}"),
                    }
                    ws.send(Message::text("2")).await.unwrap();
                    match ws.recv().await {
                        Ok(Some(m)) if m.as_text() == Some("3") => {}
                        other => panic!("expected the pong 3, got {other:?}"),
                    }
                    ws.send(Message::text(r#"40{"sid":"n"}"#)).await.unwrap();
                }
                clients.lock().unwrap().push(ws.outbound());
                while let Ok(Some(msg)) = ws.recv().await {
                    let relay = !socketio || msg.as_text().is_some_and(|t| t.starts_with("42"));
                    if relay {
                        let prepared = wshub::ws::PreparedMessage::new(msg);
                        for c in clients.lock().unwrap().iter() {
                            let _ = c.try_send(&prepared);
                        }
                    }
                }
            });
        }
    });
    url
}
