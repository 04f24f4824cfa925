//! The little of Socket.IO the generator needs: engine.io v4 over websocket only
//! (`/socket.io/?EIO=4&transport=websocket`, no long-polling first), the default
//! namespace, events, and answering the server's pings.
//!
//! Engine.io packets are text frames whose first character is the type: `0` open (with
//! the session's JSON), `2` ping, `3` pong, `4` message. A Socket.IO packet rides in a
//! message: `40` connects to the default namespace, `42["event",data]` is an event.

use anyhow::{Context, bail};

use crate::conn::{Incoming, Ws};

/// Completes the open: reads the engine.io open packet (`0{...}`), connects to the
/// default namespace (`40`) and waits for the server's `40{"sid":..}`. Pings that
/// arrive meanwhile are answered.
pub async fn open(ws: &mut Ws) -> anyhow::Result<()> {
    let first = next_text(ws).await?;
    if !first.starts_with('0') {
        bail!("not an engine.io open packet: {first:?}");
    }
    ws.send_text("40".into()).await?;
    loop {
        let text = next_text(ws).await?;
        if text.starts_with("40") {
            return Ok(());
        }
        if let Some(why) = text.strip_prefix("44") {
            return Err(ConnectError(why.to_owned()).into());
        }
    }
}

/// The server refused the namespace connect: a `44{"message":..}` packet, what a
/// Socket.IO client sees as a `connect_error` (a connect middleware, such as an auth
/// check, said no). Counted as the failure kind `connect_error`: the WebSocket upgrade
/// itself succeeded, so there is no HTTP status to count it by.
#[derive(Debug)]
pub struct ConnectError(
    /// The packet's payload after `44`: the server's JSON, `{"message":..}`.
    pub String,
);

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "namespace connect refused (connect_error): {}", self.0)
    }
}

impl std::error::Error for ConnectError {}

/// The event frame carrying `data` (JSON) as event `msg`.
pub fn event(data: &str) -> String {
    format!(r#"42["msg",{data}]"#)
}

/// Whether `text` is an event (`42[...]`).
pub fn is_event(text: &str) -> bool {
    text.starts_with("42")
}

/// Whether `text` is an engine.io ping, to be answered with [`PONG`].
pub fn is_ping(text: &str) -> bool {
    text == "2"
}

/// The engine.io pong.
pub const PONG: &str = "3";

/// The next text frame, answering pings on the way.
async fn next_text(ws: &mut Ws) -> anyhow::Result<String> {
    loop {
        match ws.recv().await.context("closed by the server")?? {
            Incoming::Text(t) if is_ping(&t) => ws.send_text(PONG.into()).await?,
            Incoming::Text(t) => return Ok(t.as_str().to_owned()),
            Incoming::Close(why) => bail!("closed by the server: {why}"),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn frames() {
        assert_eq!(super::event(r#"{"t":1}"#), r#"42["msg",{"t":1}]"#);
        assert!(super::is_event(r#"42["msg",{}]"#));
        assert!(!super::is_event("40"));
        assert!(super::is_ping("2"));
        assert!(!super::is_ping("2probe"));
    }
}
