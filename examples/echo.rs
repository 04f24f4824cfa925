//! Plain WebSocket echo server: the engine's conformance target.
//!
//! ```text
//! cargo run --example echo                      # ws://127.0.0.1:9001, permessage-deflate on
//! cargo run --example echo -- --no-compression  # never negotiate permessage-deflate
//! cargo run --example echo -- --port 9002
//! RUST_LOG=debug cargo run --example echo -- --log-format json   # JSON logs to stderr
//! ```
//!
//! Every text and binary message is sent back unchanged (compressed when the client
//! negotiated permessage-deflate). There is no envelope and no hub: this exercises only
//! the engine in `wshub::ws`, and the interop tests point other implementations at it.
//! With no hub there is no `/metrics` here: the `chat` and `news_feed` examples serve
//! theirs.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use wshub::ws::WsConfig;
use wshub::ws::handshake::{HandshakeConfig, accept};

/// Accepts connections forever, echoing each in its own task.
pub async fn serve(listener: TcpListener, compression: bool) {
    let handshake = HandshakeConfig::default().with_deflate(compression);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handshake = handshake.clone();
        tokio::spawn(async move {
            if let Err(e) = echo(stream, peer, &handshake).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

async fn echo(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    handshake: &HandshakeConfig,
) -> wshub::Result<()> {
    let mut ws = accept(stream, Some(peer), handshake, WsConfig::default()).await?;
    while let Some(msg) = ws.recv().await? {
        ws.send(msg).await?;
    }
    Ok(())
}

#[allow(dead_code)] // the interop tests include this file as a module and call `serve`
#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut compression = true;
    let mut json_logs = false;
    let mut port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(9001);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--no-compression" => compression = false,
            "--port" => port = args.next().and_then(|p| p.parse().ok()).unwrap_or(port),
            "--log-format" => match args.next().as_deref() {
                Some("json") => json_logs = true,
                Some("text") => json_logs = false,
                _ => {
                    eprintln!("--log-format: text or json");
                    std::process::exit(2);
                }
            },
            other => {
                eprintln!(
                    "unknown argument {other}; usage: echo [--port N] [--no-compression] \
                     [--log-format text|json]"
                );
                std::process::exit(2);
            }
        }
    }
    // `RUST_LOG` filters (default: info); the engine logs failed handshakes and
    // connection errors at debug.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json_logs {
        logs.json().try_init()
    } else {
        logs.try_init()
    };
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!(
        "echo server on ws://{} (permessage-deflate {})",
        listener.local_addr()?,
        if compression { "on" } else { "off" }
    );
    serve(listener, compression).await;
    Ok(())
}
