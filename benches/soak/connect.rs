//! Getting a connection: `POST /login` for a token (a hand-written HTTP/1.1 request),
//! then the WebSocket handshake with tokio-tungstenite. Refusals (429, 503) are counted
//! as outcomes, everything else that fails as an error.

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{WebSocketStream, client_async};

use crate::client::IO_TIMEOUT;
use crate::ctx::{Ctx, End};
use crate::stats::Count;

/// Receive buffer of a slow consumer's socket, set before connecting (which turns
/// autotuning off), so this side absorbs little of what the server sends. (The
/// server's send buffer in front of it still holds up to `tcp_wmem`'s maximum, 4 MiB
/// by default on Linux, before the server's own queue starts to fill.)
const SLOW_RCVBUF: u32 = 8 * 1024;
/// Largest `POST /login` response read.
const MAX_LOGIN_RESPONSE: u64 = 64 * 1024;

/// `POST /login` for a name (a new one, or one a gone client held, with its token):
/// `(user id, token, name)`.
pub(crate) async fn login(ctx: &Ctx) -> Result<(String, String, String), End> {
    let (name, held_with) = ctx.take_name();
    let body = match &held_with {
        Some(token) => json!({ "name": name, "token": token }),
        None => json!({ "name": name }),
    }
    .to_string();
    let request = format!(
        "POST /login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        ctx.addr,
        body.len()
    );
    let exchange = async {
        let mut tcp = TcpStream::connect(ctx.addr).await?;
        tcp.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        tcp.take(MAX_LOGIN_RESPONSE)
            .read_to_end(&mut response)
            .await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::select! {
        r = tokio::time::timeout(IO_TIMEOUT, exchange) => r,
        () = ctx.stop.cancelled() => return Err(End::Stopped),
    };
    let response = match response {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            ctx.stats.error(format!("login: {}", e.kind()));
            return Err(End::Failed);
        }
        Err(_) => {
            ctx.stats.error("login: timed out");
            return Err(End::Failed);
        }
    };
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(0);
    match status {
        200 => {}
        429 | 503 => {
            ctx.stats.add(Count::LoginsRefused);
            ctx.stats.detail(format!("login refused: HTTP {status}"));
            return Err(End::Refused);
        }
        _ => {
            ctx.stats.error(format!("login: HTTP {status}"));
            return Err(End::Failed);
        }
    }
    let login = text
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str::<Value>(body).ok());
    match login
        .as_ref()
        .and_then(|l| Some((l["user"].as_str()?, l["token"].as_str()?)))
    {
        Some((user, token)) => {
            ctx.stats.add(Count::Logins);
            Ok((user.to_owned(), token.to_owned(), name))
        }
        None => {
            ctx.stats.error("login: no token in the response");
            Err(End::Failed)
        }
    }
}

/// The WebSocket handshake with `token`.
pub(crate) async fn connect(
    ctx: &Ctx,
    token: &str,
    slow: bool,
) -> Result<WebSocketStream<TcpStream>, End> {
    let handshake = async {
        let socket = TcpSocket::new_v4()?;
        if slow {
            socket.set_recv_buffer_size(SLOW_RCVBUF)?;
        }
        let tcp = socket.connect(ctx.addr).await?;
        tcp.set_nodelay(true)?;
        // JWTs are URL-safe base64 and dots: no escaping needed.
        let mut request = format!("ws://{}/ws?token={token}", ctx.addr).into_client_request()?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("wshub.v1"),
        );
        client_async(request, tcp).await.map(|(ws, _)| ws)
    };
    let result = tokio::select! {
        r = tokio::time::timeout(IO_TIMEOUT, handshake) => r,
        () = ctx.stop.cancelled() => return Err(End::Stopped),
    };
    match result {
        Ok(Ok(ws)) => {
            ctx.stats.add(Count::Connects);
            Ok(ws)
        }
        Ok(Err(tungstenite::Error::Http(response))) => {
            let status = response.status().as_u16();
            if matches!(status, 429 | 503) {
                ctx.stats.add(Count::HandshakesRefused);
                ctx.stats
                    .detail(format!("handshake refused: HTTP {status}"));
                Err(End::Refused)
            } else {
                ctx.stats.error(format!("handshake: HTTP {status}"));
                Err(End::Failed)
            }
        }
        Ok(Err(e)) => {
            ctx.stats.error(format!("handshake: {}", error_kind(&e)));
            Err(End::Failed)
        }
        Err(_) => {
            ctx.stats.error("handshake: timed out");
            Err(End::Failed)
        }
    }
}

/// A short, stable description of a tungstenite error (no addresses or numbers).
pub(crate) fn error_kind(e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Io(io) => format!("I/O {}", io.kind()),
        tungstenite::Error::Protocol(p) => format!("protocol: {p}"),
        tungstenite::Error::Url(u) => format!("url: {u}"),
        tungstenite::Error::Http(r) => format!("HTTP {}", r.status().as_u16()),
        other => other.to_string(),
    }
}
