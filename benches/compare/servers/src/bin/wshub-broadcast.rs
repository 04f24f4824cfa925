//! wshub for the comparison: a `bench` namespace of any JSON with presence on (the
//! default), every limit that a load from one machine meets raised: 25,000
//! connections in all, per network (127.0.0.x is one /24) and per host, no message
//! or join rate limits. Clients join `bench:*` rooms and publish into them.
//!
//! ```text
//! PORT=9005 wshub-broadcast
//! JWT_SECRET=s wshub-broadcast   # HS256 JWTs (?token=), else anyone may connect
//! PRESENCE=0 wshub-broadcast      # the namespace without presence (for comparison)
//! ```

use wshub::auth::{AllowAnonymous, JwtAuth};
use wshub::{Hub, Namespace};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(9005);
    let builder = Hub::builder()
        .namespace(
            Namespace::<serde_json::Value>::new("bench")
                .presence(std::env::var("PRESENCE").as_deref() != Ok("0")),
        )
        // 19,000 connections from 127.0.0.x (one /24 network, 16 hosts) that publish
        // and join as fast as the generator can.
        .configure(|c| wshub::bench_support::lift_limits_for_load(c, 25_000));
    let hub = match std::env::var("JWT_SECRET") {
        Ok(secret) => builder.authenticator(JwtAuth::hs256(secret)).build(),
        Err(_) => builder.authenticator(AllowAnonymous::new()).build(),
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("wshub-broadcast listening on {port}");
    hub.serve(listener).await
}
