//! socketioxide 0.18 on axum: every `msg` event goes to every socket of the default
//! namespace (`io.emit`, the sender included), with socketioxide's defaults
//! (including its per-socket buffer of 128 packets, `max_buffer_size`).
//!
//! ```text
//! PORT=9004 sio-broadcast
//! JWT_SECRET=s sio-broadcast   # refuse connections without ?token=<HS256 JWT signed with s>
//! ```
//!
//! With `JWT_SECRET`, a connect middleware checks the token of the upgrade request's
//! query, as socketio.js's `io.use` does: a socket without a valid one is refused the
//! namespace (a `connect_error` with the message `unauthorized`) and never reaches the
//! connect handler.

use std::sync::Arc;

use socketioxide::SocketIo;
use socketioxide::extract::{Data, SocketRef};
use socketioxide::handler::ConnectHandler;

/// The connect handler: relay every `msg` event to every socket.
async fn on_connect(s: SocketRef) {
    s.on(
        "msg",
        async |io: SocketIo, Data(data): Data<serde_json::Value>| {
            let _ = io.emit("msg", &data).await;
        },
    );
}

/// What the middleware checks a token with: built once, shared by every connection.
struct Verifier {
    key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
}

impl Verifier {
    /// Whether the upgrade request of `s` carries `?token=` with a valid HS256 JWT.
    fn admits(&self, s: &SocketRef) -> bool {
        let token = s
            .req_parts()
            .uri
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")))
            .unwrap_or_default();
        jsonwebtoken::decode::<serde_json::Value>(token, &self.key, &self.validation).is_ok()
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(9004);
    let (layer, io) = SocketIo::new_layer();
    match std::env::var("JWT_SECRET") {
        Ok(secret) => {
            let verifier = Arc::new(Verifier {
                key: jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
                validation: jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256),
            });
            let auth = async move |s: SocketRef| {
                if verifier.admits(&s) {
                    Ok(())
                } else {
                    Err("unauthorized")
                }
            };
            io.ns("/", on_connect.with(auth));
        }
        Err(_) => io.ns("/", on_connect),
    }
    let app = axum::Router::new().layer(layer);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("sio-broadcast listening on {port}");
    axum::serve(listener, app).await
}
