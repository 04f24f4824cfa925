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
        .configure(|c| {
            // 19,000 connections from 127.0.0.x: one /24 network, 16 hosts.
            c.max_connections = 25_000;
            c.max_connections_per_network = 25_000;
            c.max_connections_per_ip = 25_000;
            c.max_pending_connections = 4_096;
            c.max_pending_per_host = 4_096;
            c.max_pending_per_network = 4_096;
            // A generator publishes and joins as fast as it can.
            c.rate_per_second = f64::INFINITY;
            c.rate_burst = f64::INFINITY;
            c.user_rate_per_second = f64::INFINITY;
            c.host_rate_per_second = f64::INFINITY;
            c.membership_rate_per_second = f64::INFINITY;
        });
    let hub = match std::env::var("JWT_SECRET") {
        Ok(secret) => builder.authenticator(JwtAuth::hs256(secret)).build(),
        Err(_) => builder.authenticator(AllowAnonymous::new()).build(),
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("wshub-broadcast listening on {port}");
    hub.serve(listener).await
}
