//! One soak client: `POST /login` for a token, then a tokio-tungstenite WebSocket
//! speaking `wshub.v1`. Independent of the crate under test on purpose.
//!
//! Every wait is bounded: by [`IO_TIMEOUT`] for a reply or a write, and by the run's
//! stop signal for reads that may legitimately wait long (a reader in a quiet room).
//! Whatever ends a connection is counted where it is seen, and the caller gets an
//! [`End`] saying only whether to close politely or just drop.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{WebSocketStream, client_async};
use tokio_util::sync::CancellationToken;

use crate::options::Options;
use crate::stats::{Count, Stats};

/// Longest wait for a login, a handshake, a reply or a write.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the closing handshake.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Receive buffer of a slow consumer's socket, set before connecting (which turns
/// autotuning off): the kernel then absorbs little of what the server sends, so the
/// server's own queue is what fills.
const SLOW_RCVBUF: u32 = 8 * 1024;
/// Largest `POST /login` response read.
const MAX_LOGIN_RESPONSE: u64 = 64 * 1024;

/// What every client task shares.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// The chat server.
    pub(crate) addr: SocketAddr,
    /// Cancelled when the run is over: every loop and every long wait watches it.
    pub(crate) stop: CancellationToken,
    /// What the load did.
    pub(crate) stats: Stats,
    /// The load's parameters.
    pub(crate) opts: Options,
    /// Makes display names unique per login (`soak1`, `soak2`, ...): plain ASCII
    /// letters and digits, which any name rule accepts, and never two logins with
    /// one name.
    next_name: AtomicU64,
    /// Makes the churners' private rooms unique (`chat:c1`, ...), so rooms are created
    /// and dropped all the time.
    next_room: AtomicU64,
    /// Slow consumers by user id, woken when a member of their room sees them leave
    /// (see `load::slow_consumer`). A std mutex: a lookup per presence diff, never
    /// held across an `.await`.
    watched: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Ctx {
    /// A context for a run against `addr`.
    pub(crate) fn new(addr: SocketAddr, opts: Options) -> Ctx {
        Ctx {
            addr,
            stop: CancellationToken::new(),
            stats: Stats::default(),
            opts,
            next_name: AtomicU64::new(1),
            next_room: AtomicU64::new(1),
            watched: Mutex::new(HashMap::new()),
        }
    }

    /// Wakes the returned `Notify` when any client sees `user` leave a room.
    pub(crate) fn watch_leave(&self, user: &str) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        self.watched_map().insert(user.to_owned(), notify.clone());
        notify
    }

    /// Stops watching `user`.
    pub(crate) fn unwatch(&self, user: &str) {
        self.watched_map().remove(user);
    }

    fn watched_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        self.watched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the run is over.
    pub(crate) fn stopped(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// A new room name for a churner.
    pub(crate) fn fresh_room(&self) -> String {
        format!("chat:c{}", self.next_room.fetch_add(1, Ordering::Relaxed))
    }

    /// Sleeps `d`, or less if the run ends; `false` if it ended.
    pub(crate) async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d) => true,
            () = self.stop.cancelled() => false,
        }
    }
}

/// Why a connection (or an attempt at one) ended. What happened is already counted.
#[derive(Debug)]
pub(crate) enum End {
    /// The run is over: close politely.
    Stopped,
    /// The server sent a close frame with this code (none: `None`).
    Closed(Option<u16>),
    /// Refused (429/503 to the login or the handshake): try again later.
    Refused,
    /// An error or a timeout.
    Failed,
}

/// A logged-in, connected client.
#[derive(Debug)]
pub(crate) struct Conn {
    ws: WebSocketStream<TcpStream>,
    ctx: Arc<Ctx>,
    /// The user id (the display name in lower case).
    pub(crate) user: String,
    next_id: u64,
    /// The server is expected to drop this connection without a close frame reaching
    /// it (a slow consumer that read nothing for longer than the server's closing
    /// handshake lasts): count that as a close, not as an error.
    pub(crate) expect_drop: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.ctx.stats.closed();
    }
}

/// `POST /login` for a new name: `(user id, token)`.
async fn login(ctx: &Ctx) -> Result<(String, String), End> {
    let name = format!("soak{}", ctx.next_name.fetch_add(1, Ordering::Relaxed));
    let body = json!({ "name": name }).to_string();
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
            Ok((user.to_owned(), token.to_owned()))
        }
        None => {
            ctx.stats.error("login: no token in the response");
            Err(End::Failed)
        }
    }
}

/// The WebSocket handshake with `token`.
async fn connect(ctx: &Ctx, token: &str, slow: bool) -> Result<WebSocketStream<TcpStream>, End> {
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
fn error_kind(e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Io(io) => format!("I/O {}", io.kind()),
        tungstenite::Error::Protocol(p) => format!("protocol: {p}"),
        tungstenite::Error::Url(u) => format!("url: {u}"),
        tungstenite::Error::Http(r) => format!("HTTP {}", r.status().as_u16()),
        other => other.to_string(),
    }
}

impl Conn {
    /// Logs in as a new user and connects; `slow` gives the socket a small receive
    /// buffer (for slow consumers).
    pub(crate) async fn open(ctx: &Arc<Ctx>, slow: bool) -> Result<Conn, End> {
        let (user, token) = login(ctx).await?;
        let ws = connect(ctx, &token, slow).await?;
        ctx.stats.opened();
        Ok(Conn {
            ws,
            ctx: ctx.clone(),
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
