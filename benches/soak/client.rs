//! One soak client: `POST /login` for a token, then a tokio-tungstenite WebSocket
//! speaking `wshub.v1`. Independent of the crate under test on purpose.
//!
//! Every wait is bounded: by [`IO_TIMEOUT`] for a reply or a write, and by the run's
//! stop signal for reads that may legitimately wait long (a reader in a quiet room).
//! Whatever ends a connection is counted where it is seen, and the caller gets an
//! [`End`] saying only whether to close politely or just drop.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::connect::{connect, error_kind, login};
use crate::ctx::{Ctx, End};
use crate::stats::Count;

/// Longest wait for a login, a handshake, a reply or a write.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the closing handshake.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A logged-in, connected client.
#[derive(Debug)]
pub(crate) struct Conn {
    ws: WebSocketStream<TcpStream>,
    ctx: Arc<Ctx>,
    /// The user id (the display name in lower case).
    pub(crate) user: String,
    /// The display name and the token holding it, given back to the pool at the end.
    name: (String, String),
    next_id: u64,
    /// The server is expected to drop this connection without a close frame reaching
    /// it (a slow consumer that read nothing for longer than the server's closing
    /// handshake lasts): count that as a close, not as an error.
    pub(crate) expect_drop: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.ctx.stats.closed();
        let (name, token) = std::mem::take(&mut self.name);
        self.ctx.release_name(name, token);
    }
}

impl Conn {
    /// Logs in as a new user and connects; `slow` gives the socket a small receive
    /// buffer (for slow consumers).
    pub(crate) async fn open(ctx: &Arc<Ctx>, slow: bool) -> Result<Conn, End> {
        let (user, token, name) = login(ctx).await?;
        let ws = match connect(ctx, &token, slow).await {
            Ok(ws) => ws,
            Err(e) => {
                ctx.release_name(name, token);
                return Err(e);
            }
        };
        ctx.stats.opened();
        Ok(Conn {
            ws,
            ctx: ctx.clone(),
            name: (name, token),
            user,
            next_id: 1,
            expect_drop: false,
        })
    }

    /// Counts what a server frame says.
    fn note(&self, v: &Value) {
        let stats = &self.ctx.stats;
        match v["op"].as_str() {
            Some("message") => stats.add(Count::Received),
            Some("presence_diff") => {
                stats.add(Count::Diffs);
                if let Some(leaves) = v["leaves"].as_object().filter(|l| !l.is_empty()) {
                    let watched = self.ctx.watched_map();
                    for user in leaves.keys() {
                        if let Some(n) = watched.get(user) {
                            n.notify_one();
                        }
                    }
                }
            }
            Some("reply") if v["ok"] == true && v["data"].get("delivered").is_some() => {
                stats.add(Count::Acks);
            }
            Some("reply") if v["ok"] == true => {}
            Some("reply" | "error") => match v["error"]["code"].as_str() {
                Some("rate_limited") => stats.add(Count::RateLimited),
                Some(code) => stats.detail(format!("error reply: {code}")),
                None => stats.error("error reply without a code"),
            },
            _ => {}
        }
    }

    /// The next server message as JSON (already counted), waiting as long as the run
    /// lasts. Cancel-safe (it may be one branch of a `select!`).
    pub(crate) async fn recv(&mut self) -> Result<Value, End> {
        loop {
            if let Some(v) = self.next_frame(true).await? {
                return Ok(v);
            }
        }
    }

    /// Reads and counts the next server frame, without parsing a `message` (most of
    /// the traffic, which a reader only counts). Cancel-safe.
    pub(crate) async fn skim(&mut self) -> Result<(), End> {
        self.next_frame(false).await.map(|_| ())
    }

    /// The next frame: `Some(json)`, or `None` for a frame that carried nothing to
    /// return (a ping, or a `message` when `messages` is false).
    async fn next_frame(&mut self, messages: bool) -> Result<Option<Value>, End> {
        let next = tokio::select! {
            next = self.ws.next() => next,
            () = self.ctx.stop.cancelled() => return Err(End::Stopped),
        };
        let stats = &self.ctx.stats;
        match next {
            // The server writes `op` first (an internally tagged enum): a message can
            // be counted without parsing its data.
            Some(Ok(Message::Text(text)))
                if !messages && text.starts_with(r#"{"op":"message","#) =>
            {
                stats.add(Count::Received);
                Ok(None)
            }
            Some(Ok(Message::Text(text))) => match serde_json::from_str::<Value>(&text) {
                Ok(v) => {
                    self.note(&v);
                    Ok(Some(v))
                }
                Err(_) => {
                    stats.error("server sent text that is not JSON");
                    Ok(None)
                }
            },
            Some(Ok(Message::Close(frame))) => {
                let code = frame.map(|f| u16::from(f.code));
                match code {
                    Some(1013) => stats.add(Count::Closed1013),
                    Some(1008) => stats.add(Count::Closed1008),
                    Some(c) => {
                        stats.add(Count::ClosedOther);
                        stats.detail(format!("closed by the server: {c}"));
                    }
                    None => {
                        stats.add(Count::ClosedOther);
                        stats.detail("closed by the server: no code");
                    }
                }
                Err(End::Closed(code))
            }
            // Pings are answered by tungstenite; wshub.v1 has no binary frames.
            Some(Ok(_)) => Ok(None),
            Some(Err(e)) if self.expect_drop => {
                stats.add(Count::ClosedOther);
                stats.detail(format!(
                    "slow consumer dropped without a close frame ({})",
                    error_kind(&e)
                ));
                Err(End::Closed(None))
            }
            Some(Err(e)) => {
                stats.error(format!("read: {}", error_kind(&e)));
                Err(End::Failed)
            }
            None if self.expect_drop => {
                stats.add(Count::ClosedOther);
                stats.detail("slow consumer dropped without a close frame (EOF)");
                Err(End::Closed(None))
            }
            None => {
                stats.error("read: the connection ended without a close frame");
                Err(End::Failed)
            }
        }
    }

    /// Reads (and counts) whatever arrives for `d`.
    pub(crate) async fn idle(&mut self, d: Duration) -> Result<(), End> {
        let until = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(until, self.skim()).await {
                Ok(r) => r?,
                Err(_) => return Ok(()),
            };
        }
    }

    /// Sends `msgs` (queued together, then flushed once).
    pub(crate) async fn send_all(&mut self, msgs: Vec<Value>) -> Result<(), End> {
        let write = async {
            for m in msgs {
                self.ws.feed(Message::text(m.to_string())).await?;
            }
            self.ws.flush().await
        };
        let result = tokio::select! {
            r = tokio::time::timeout(IO_TIMEOUT, write) => r,
            () = self.ctx.stop.cancelled() => return Err(End::Stopped),
        };
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.ctx.stats.error(format!("write: {}", error_kind(&e)));
                Err(End::Failed)
            }
            Err(_) => {
                self.ctx.stats.error("write: timed out");
                Err(End::Failed)
            }
        }
    }

    /// Sends one message.
    pub(crate) async fn send(&mut self, msg: Value) -> Result<(), End> {
        self.send_all(vec![msg]).await
    }

    /// Sends `op` with a fresh id and returns its reply (other messages that arrive
    /// meanwhile are counted and dropped).
    pub(crate) async fn request(&mut self, mut op: Value) -> Result<Value, End> {
        let id = self.next_id;
        self.next_id += 1;
        op["id"] = id.into();
        self.send(op).await?;
        let wait = async {
            loop {
                let v = self.recv().await?;
                if v["op"] == "reply" && v["id"] == id {
                    return Ok(v);
                }
            }
        };
        match tokio::time::timeout(IO_TIMEOUT, wait).await {
            Ok(r) => r,
            Err(_) => {
                self.ctx.stats.error("reply: timed out");
                Err(End::Failed)
            }
        }
    }

    /// Joins `room` with a presence meta padded to `--meta-bytes`; `false` if the
    /// join was refused (counted by the reply's code).
    pub(crate) async fn join(&mut self, room: &str) -> Result<bool, End> {
        let meta = json!({ "status": "soak", "pad": "m".repeat(self.ctx.opts.meta_bytes) });
        let reply = self
            .request(json!({ "op": "join", "room": room, "meta": meta }))
            .await?;
        let ok = reply["ok"] == true;
        if ok {
            self.ctx.stats.add(Count::Joins);
        }
        Ok(ok)
    }

    /// Leaves `room`; `false` if refused.
    pub(crate) async fn leave(&mut self, room: &str) -> Result<bool, End> {
        let reply = self.request(json!({ "op": "leave", "room": room })).await?;
        let ok = reply["ok"] == true;
        if ok {
            self.ctx.stats.add(Count::Leaves);
        }
        Ok(ok)
    }

    /// A publish of a chat text to `room`, for [`send`](Self::send) (fire and forget)
    /// or [`request`](Self::request) (with a reply).
    pub(crate) fn publish(&self, room: &str, text: &str) -> Value {
        self.ctx.stats.add(Count::Publishes);
        json!({ "op": "publish", "room": room, "data": { "kind": "text", "text": text } })
    }

    /// Ends the connection after `end`: politely (a close frame, then wait for the
    /// server's) when the client chose to stop, by finishing the server's closing
    /// handshake when it closed, or by dropping it after an error. Bounded by
    /// [`CLOSE_TIMEOUT`].
    pub(crate) async fn finish(mut self, end: Option<&End>) {
        match end {
            // `Refused` here is a refused join or leave: the connection is fine.
            None | Some(End::Stopped | End::Refused) => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                    if self.ws.close(None).await.is_ok() {
                        while let Some(Ok(_)) = self.ws.next().await {}
                    }
                })
                .await;
            }
            // tungstenite has queued the answer to the server's close frame; reading
            // on flushes it and sees the server end the connection.
            Some(End::Closed(_)) => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                    while let Some(Ok(_)) = self.ws.next().await {}
                })
                .await;
            }
            Some(End::Failed) => {}
        }
    }
}

/// Runs `session` on a new connection and ends the connection as its result says;
/// returns how it ended (`None`: the session finished by itself).
pub(crate) async fn with_conn<F>(ctx: &Arc<Ctx>, slow: bool, session: F) -> Option<End>
where
    F: AsyncFnOnce(&mut Conn) -> Result<(), End>,
{
    let mut conn = match Conn::open(ctx, slow).await {
        Ok(c) => c,
        Err(end) => return Some(end),
    };
    let end = session(&mut conn).await.err();
    conn.finish(end.as_ref()).await;
    end
}
