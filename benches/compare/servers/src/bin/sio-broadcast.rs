//! socketioxide 0.18 on axum: every `msg` event goes to every socket of the default
//! namespace (`io.emit`, the sender included), with socketioxide's defaults
//! (including its per-socket buffer of 128 packets, `max_buffer_size`).
//!
//! ```text
//! PORT=9004 sio-broadcast
//! ```

use socketioxide::SocketIo;
use socketioxide::extract::{Data, SocketRef};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(9004);
    let (layer, io) = SocketIo::new_layer();
    io.ns("/", async |s: SocketRef| {
        s.on(
            "msg",
            async |io: SocketIo, Data(data): Data<serde_json::Value>| {
                let _ = io.emit("msg", &data).await;
            },
        );
    });
    let app = axum::Router::new().layer(layer);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("sio-broadcast listening on {port}");
    axum::serve(listener, app).await
}
