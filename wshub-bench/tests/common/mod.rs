//! Servers for the scenario tests: wshub hubs on 127.0.0.1 port 0.
#![allow(dead_code)] // Each test file uses some of these.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use wshub::auth::{Identity, JwtAuth, StaticTokens};
use wshub::{Hub, HubBuilder, Namespace};
use wshub_bench::conn::Target;

/// A builder with a `bench` namespace of any JSON (presence on, the default) and no
/// rate limits in the way of the generator.
fn builder() -> HubBuilder {
    Hub::builder()
        .namespace(Namespace::<serde_json::Value>::new("bench"))
        .configure(|c| {
            c.rate_per_second = f64::INFINITY;
            c.rate_burst = f64::INFINITY;
            c.user_rate_per_second = f64::INFINITY;
            c.host_rate_per_second = f64::INFINITY;
            c.membership_rate_per_second = f64::INFINITY;
        })
}

/// A hub with a token per connection: `tok-0` is user `u0`, `tok-1` user `u1`...
pub fn hub(tokens: usize) -> Hub {
    let tokens = (0..tokens)
        .map(|i| {
            (
                format!("tok-{i}"),
                Identity::new(format!("u{i}"), format!("user {i}")),
            )
        })
        .collect::<StaticTokens>();
    builder().authenticator(tokens).build()
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
