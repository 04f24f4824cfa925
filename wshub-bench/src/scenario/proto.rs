//! The few `wshub.v1` exchanges the scenarios share: the welcome, a request and its
//! reply, joining a room, and reading a connection until it ends or the run stops.

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::sync::watch;

use crate::conn::{CONNECT_TIMEOUT, Incoming, Proto, Target, Ws};

/// Opens connection `index`, joins `room` (`id` 1) and waits for the reply. Plain
/// WebSocket and Socket.IO peers have no rooms: every connection hears every message,
/// so there the connection alone is the join.
pub(crate) async fn connect_and_join(
    target: &Target,
    index: usize,
    room: &str,
) -> anyhow::Result<Ws> {
    let mut ws = target.connect(index).await?;
    if target.proto == Proto::Wshub {
        join(&mut ws, room, 1).await?;
    }
    Ok(ws)
}

/// Reads until the `welcome`; returns its `user`.
pub(crate) async fn welcome(ws: &mut Ws) -> anyhow::Result<String> {
    tokio::time::timeout(CONNECT_TIMEOUT, async {
        loop {
            let v = next_json(ws).await?;
            if v["op"] == "welcome" {
                return Ok(v["user"].as_str().unwrap_or_default().to_owned());
            }
        }
    })
    .await
    .context("no welcome within 10 s")?
}

/// Joins `room` with request `id` and waits for the reply; returns the reply's `data`.
pub(crate) async fn join(ws: &mut Ws, room: &str, id: u64) -> anyhow::Result<Value> {
    join_with(ws, room, id, serde_json::Map::new()).await
}

/// Joins `room` with request `id` and the join's optional fields in `extra` (`since`,
/// `history`), and waits for the reply; returns the reply's `data`.
pub(crate) async fn join_with(
    ws: &mut Ws,
    room: &str,
    id: u64,
    extra: serde_json::Map<String, Value>,
) -> anyhow::Result<Value> {
    let mut frame = serde_json::json!({"op": "join", "room": room, "id": id});
    frame.as_object_mut().expect("an object").extend(extra);
    request(ws, frame, id)
        .await
        .with_context(|| format!("join {room}"))
}

/// Leaves `room` with request `id` and waits for the reply.
pub(crate) async fn leave(ws: &mut Ws, room: &str, id: u64) -> anyhow::Result<()> {
    let frame = serde_json::json!({"op": "leave", "room": room, "id": id});
    request(ws, frame, id)
        .await
        .with_context(|| format!("leave {room}"))?;
    Ok(())
}

/// Sends `frame` (which carries `id`) and reads until its reply, within
/// [`CONNECT_TIMEOUT`]; frames before it (the welcome, presence) are skipped.
pub(crate) async fn request(ws: &mut Ws, frame: Value, id: u64) -> anyhow::Result<Value> {
    ws.send_text(frame.to_string()).await?;
    tokio::time::timeout(CONNECT_TIMEOUT, async {
        loop {
            let mut v = next_json(ws).await?;
            if v["op"] == "reply" && v["id"] == id {
                if v["ok"] == true {
                    return Ok(v["data"].take());
                }
                bail!("refused: {}", v["error"]);
            }
            if v["op"] == "error" {
                bail!("{}", v["error"]);
            }
        }
    })
    .await
    .context("no reply within 10 s")?
}

/// The next text frame, parsed.
async fn next_json(ws: &mut Ws) -> anyhow::Result<Value> {
    loop {
        match ws.recv().await.context("closed by the server")?? {
            Incoming::Text(text) => {
                return serde_json::from_str(&text)
                    .context("not wshub.v1 (a frame that is not JSON)");
            }
            Incoming::Close(why) => bail!("closed by the server: {why}"),
            _ => {}
        }
    }
}

/// Why [`read_until`] returned.
#[derive(Debug)]
pub(crate) enum Ended {
    /// The run (or the cut) said stop; the connection is still open.
    Stopped,
    /// The connection ended: a close frame, an error or the end of the stream.
    Closed(String),
}

/// Reads `ws` until `stop` turns true or the connection ends, handing every text frame
/// to `on_text`. Reading even when nothing is measured keeps the server from seeing a
/// slow consumer (presence diffs keep coming). Socket.IO pings are answered here.
pub(crate) async fn read_until(
    ws: &mut Ws,
    stop: &mut watch::Receiver<bool>,
    mut on_text: impl FnMut(&str),
) -> Ended {
    loop {
        let msg = tokio::select! {
            m = ws.recv() => m,
            _ = stop.wait_for(|s| *s) => return Ended::Stopped,
        };
        match msg {
            Some(Ok(Incoming::Text(text))) if crate::socketio::is_ping(&text) => {
                if let Err(e) = ws.send_text(crate::socketio::PONG.into()).await {
                    return Ended::Closed(e.to_string());
                }
            }
            Some(Ok(Incoming::Text(text))) => on_text(&text),
            Some(Ok(Incoming::Close(frame))) => {
                return Ended::Closed(format!("closed by the server: {frame}"));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Ended::Closed(e.to_string()),
            None => return Ended::Closed("end of stream".into()),
        }
    }
}
