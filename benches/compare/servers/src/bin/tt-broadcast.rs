//! A hand-written broadcast server on tokio-tungstenite and `tokio::sync::broadcast`:
//! what a user writes instead of a framework. Every text message goes to every
//! client, the sender included (as `wshub.v1` does for a room's members).
//!
//! ```text
//! PORT=9003 tt-broadcast
//! JWT_SECRET=s tt-broadcast   # refuse upgrades without ?token=<HS256 JWT> (401)
//! ```
//!
//! One task reads each connection and one writes it: the writer waits on its own
//! broadcast receiver and sends (and flushes) message by message, as the usual
//! examples do. The channel holds 4,096 messages, enough for the 2,000-message burst
//! of the comparison; a writer that falls further behind skips what it missed
//! (`Lagged`), which shows as undelivered messages.

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(9003);
    let secret = std::env::var("JWT_SECRET").ok();
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("tt-broadcast listening on {port}");
    let (tx, _) = broadcast::channel::<Utf8Bytes>(4096);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (tx, secret) = (tx.clone(), secret.clone());
        tokio::spawn(async move {
            // tungstenite's callback signature: its error type is not ours to shrink.
            #[allow(clippy::result_large_err)]
            let check = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
                let Some(secret) = &secret else {
                    return Ok(resp);
                };
                let token = req
                    .uri()
                    .query()
                    .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")))
                    .unwrap_or_default();
                let key = jsonwebtoken::DecodingKey::from_secret(secret.as_bytes());
                let validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
                match jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation) {
                    Ok(_) => Ok(resp),
                    Err(_) => {
                        let mut refusal = ErrorResponse::new(None);
                        *refusal.status_mut() = StatusCode::UNAUTHORIZED;
                        Err(refusal)
                    }
                }
            };
            let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, check).await else {
                return;
            };
            let (mut sink, mut stream) = ws.split();
            let mut rx = tx.subscribe();
            let writer = tokio::spawn(async move {
                loop {
                    match rx.recv().await {
                        Ok(text) => {
                            if sink.send(Message::Text(text)).await.is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            });
            while let Some(Ok(msg)) = stream.next().await {
                if let Message::Text(text) = msg {
                    let _ = tx.send(text);
                }
            }
            writer.abort();
        });
    }
}
