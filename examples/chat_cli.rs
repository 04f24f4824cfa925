//! Chat from a terminal: a client of the `chat` example on `wshub::client`.
//!
//! ```text
//! cargo run --example chat                                   # the server, in another terminal
//! cargo run --example chat_cli -- --name bob                 # http://127.0.0.1:8080/
//! cargo run --example chat_cli -- --name bob --room rust --url http://127.0.0.1:9000/
//! cargo run --example chat_cli -- --name bob --url https://127.0.0.1:8080/ --ca /tmp/wshub-chat-PID-cert.pem
//! ```
//!
//! It signs in as the page does: `POST /login {"name": ..}` gives a token, which goes
//! in the WebSocket URL, `ws://HOST/ws?token=..` (`wss://` for an `https://` URL;
//! `--ca` names the certificate to trust, the file `chat --tls` prints). Then it joins
//! `chat:lobby` (or `--room NAME`), prints the room's messages and who comes and goes,
//! and sends each line typed (`/who` lists who is here, `/rooms` the rooms with
//! people, `/quit` or end of input leaves).
//!
//! Stop the server and start it again: the client reconnects by itself (backoff with
//! jitter), signs in again if the new server no longer takes its token (a new
//! process has a new signing key; the old token, sent along, keeps the name), joins
//! the room again and says whether messages may have been missed meanwhile.

use std::collections::HashSet;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt,
};
use tokio::net::TcpStream;
use wshub::client::{
    Backoff, Client, ClientEvent, ConnectionState, Disconnect, RoomEvent, Subscription, TokenReason,
};
use wshub::{Presence, PresenceMeta};

/// What travels in the chat's rooms (the `chat` example's `ChatEvent`, as on the wire).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChatEvent {
    /// A message; the server fills in `name` and `at`.
    Text {
        /// The message.
        text: String,
        /// The sender's display name, stamped by the server.
        #[serde(default)]
        name: String,
        /// When the server took it, ms since the Unix epoch.
        #[serde(default)]
        at: u64,
    },
    /// Someone is typing (ephemeral).
    Typing {
        /// Their display name.
        #[serde(default)]
        name: String,
    },
}

/// How to run the client.
#[derive(Debug, Clone)]
pub struct CliOptions {
    /// The display name to sign in with.
    pub name: String,
    /// The chat page's URL, `http://HOST:PORT/` or `https://HOST:PORT/`.
    pub url: String,
    /// The room, without `chat:`.
    pub room: String,
    /// The certificate to trust for `https://` (PEM).
    pub ca_pem: Option<Vec<u8>>,
    /// Reconnect waits; default as the page: 500 ms, at most 8 s.
    pub backoff: Backoff,
}

impl CliOptions {
    /// From the command line; `Err` carries the problem (empty for `--help`).
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<CliOptions, String> {
        let mut options = CliOptions {
            name: String::new(),
            url: "http://127.0.0.1:8080/".into(),
            room: "lobby".into(),
            ca_pem: None,
            backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(8)),
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = |flag: &str| args.next().ok_or_else(|| format!("{flag} needs a value"));
            match arg.as_str() {
                "--name" => options.name = value("--name")?,
                "--url" => options.url = value("--url")?,
                "--room" => options.room = value("--room")?,
                "--ca" => {
                    let path = PathBuf::from(value("--ca")?);
                    let pem = std::fs::read(&path)
                        .map_err(|e| format!("--ca {}: {e}", path.display()))?;
                    options.ca_pem = Some(pem);
                }
                "-h" | "--help" => return Err(String::new()),
                other => return Err(format!("unknown argument {other}")),
            }
        }
        if options.name.trim().is_empty() {
            return Err("--name is required".into());
        }
        Ok(options)
    }
}

/// Where the chat server is, for `POST /login` and the WebSocket.
#[derive(Clone)]
struct Server {
    secure: bool,
    host: String,
    port: u16,
    /// The `Host` header.
    authority: String,
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
}

impl Server {
    fn parse(url: &str, ca_pem: Option<&[u8]>) -> Result<Server, String> {
        let (secure, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else {
            return Err(format!(
                "{url}: the chat page's URL starts with http:// or https://"
            ));
        };
        let authority = rest.split('/').next().unwrap_or_default().to_owned();
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
                let port = port.parse().map_err(|_| format!("{url}: bad port"))?;
                (host.trim_matches(['[', ']']).to_owned(), port)
            }
            _ => (
                authority.trim_matches(['[', ']']).to_owned(),
                if secure { 443 } else { 80 },
            ),
        };
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let tls = match (secure, ca_pem) {
            (false, _) => None,
            (true, Some(pem)) => Some(Arc::new(
                wshub::tls::client_config_trusting(pem).map_err(|e| format!("--ca: {e}"))?,
            )),
            (true, None) => {
                return Err("https:// needs --ca FILE (the certificate to trust)".into());
            }
        };
        Ok(Server {
            secure,
            host,
            port,
            authority,
            tls,
        })
    }

    /// The hub's URL, as the page builds it (the token goes in the query).
    fn ws_url(&self) -> String {
        let scheme = if self.secure { "wss" } else { "ws" };
        format!("{scheme}://{}/ws", self.authority)
    }

    /// `POST /login`: a token for `name`, or the server's reason. A token this client
    /// held before goes along: it proves the name is ours.
    async fn login(&self, name: &str, previous: Option<&str>) -> Result<String, String> {
        let mut body = json!({ "name": name });
        if let Some(token) = previous {
            body["token"] = json!(token);
        }
        let (status, reply) =
            tokio::time::timeout(Duration::from_secs(10), self.post("/login", &body))
                .await
                .map_err(|_| "the server did not answer the sign-in in time".to_owned())?
                .map_err(|e| format!("cannot reach the server: {e}"))?;
        match reply.get("token").and_then(Value::as_str) {
            Some(token) if status == 200 => Ok(token.to_owned()),
            _ => Err(format!(
                "sign-in refused ({status}): {}",
                reply
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given")
            )),
        }
    }

    /// One HTTP/1.1 request with a JSON body; the status and the JSON answer.
    async fn post(&self, path: &str, body: &Value) -> io::Result<(u16, Value)> {
        let body = body.to_string();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.authority,
            body.len()
        );
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
        let response = match &self.tls {
            None => exchange(tcp, &request).await?,
            Some(config) => {
                let name = tokio_rustls::rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await?;
                exchange(tls, &request).await?
            }
        };
        parse_response(&response)
    }
}

/// Writes `request`, reads the answer to its end (at most 64 KiB).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    request: &str,
) -> io::Result<Vec<u8>> {
    s.write_all(request.as_bytes()).await?;
    s.flush().await?;
    let mut response = Vec::new();
    s.take(64 * 1024).read_to_end(&mut response).await?;
    Ok(response)
}

/// The status and JSON body of an HTTP/1.1 response (plain or chunked).
fn parse_response(bytes: &[u8]) -> io::Result<(u16, Value)> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_owned());
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response
        .parse(bytes)
        .map_err(|_| bad("not an HTTP response"))?
    {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Err(bad("truncated HTTP response")),
    };
    let chunked = response.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(h.value)
                .to_ascii_lowercase()
                .contains("chunked")
    });
    let mut body = bytes[head_len..].to_vec();
    if chunked {
        let mut plain = Vec::new();
        let mut rest = body.as_slice();
        loop {
            let line_end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| bad("bad chunk"))?;
            let size = std::str::from_utf8(&rest[..line_end]).map_err(|_| bad("bad chunk"))?;
            let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad("bad chunk size"))?;
            rest = &rest[line_end + 2..];
            if size == 0 || rest.len() < size {
                break;
            }
            plain.extend_from_slice(&rest[..size]);
            rest = rest.get(size + 2..).unwrap_or_default();
        }
        body = plain;
    }
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok((response.code.unwrap_or(0), json))
}

/// The display name in a user's presence metas (stamped by the server).
fn display_name(user: &str, metas: &[PresenceMeta]) -> String {
    metas
        .iter()
        .map(|m| m.name.trim())
        .find(|n| !n.is_empty())
        .unwrap_or(user)
        .to_owned()
}

fn names(presence: &Presence) -> String {
    let names: Vec<String> = presence.iter().map(|(u, m)| display_name(u, m)).collect();
    names.join(", ")
}

/// Runs the client until `/quit`, the end of `input`, or the client giving up
/// (`Err` with why). Every line for the user goes to `out`.
pub async fn run(
    options: CliOptions,
    input: impl AsyncBufRead + Unpin,
    mut out: impl FnMut(String),
) -> Result<(), String> {
    let server = Server::parse(&options.url, options.ca_pem.as_deref())?;
    let room = format!("chat:{}", options.room.trim_start_matches("chat:"));

    // Tokens come from `POST /login`: at start, and again when the server lets the
    // token expire (1008) or stops taking it (a restarted server, 401).
    let last_token: Arc<Mutex<Option<String>>> = Arc::default();
    let login = {
        let server = server.clone();
        let name = options.name.clone();
        let last_token = last_token.clone();
        move |why: TokenReason| {
            let server = server.clone();
            let name = name.clone();
            let last_token = last_token.clone();
            async move {
                let previous = last_token.lock().unwrap().clone();
                let token = server.login(&name, previous.as_deref()).await?;
                *last_token.lock().unwrap() = Some(token.clone());
                tracing::debug!(%why, "signed in");
                Ok::<_, String>(token)
            }
        }
    };
    let mut builder = Client::builder(server.ws_url())
        .token_provider(login)
        .token_in_query()
        .configure(|o| o.backoff = options.backoff.clone());
    if let Some(tls) = &server.tls {
        builder = builder.tls_config(tls.clone());
    }
    let client = builder.build().map_err(|e| e.to_string())?;
    let mut events = client.events();
    out(format!(
        "signing in to {} as {}...",
        options.url, options.name
    ));

    // The join waits for a connection; show how that goes meanwhile.
    let joining = client.join::<ChatEvent>(&room);
    tokio::pin!(joining);
    let mut sub: Subscription<ChatEvent> = loop {
        tokio::select! {
            joined = &mut joining => match joined {
                Ok(sub) => break sub,
                Err(e) => return Err(format!("cannot join {room}: {e}")),
            },
            Some(event) = events.recv() => show_state(&event, &mut out),
        }
    };
    out(format!(
        "in #{} with {}",
        options.room,
        names(&sub.presence())
    ));
    let mut known: HashSet<String> = sub.presence().iter().map(|(u, _)| u.to_owned()).collect();

    let mut lines = input.lines();
    let result = loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) => match line.trim() {
                    "" => {}
                    "/quit" => break Ok(()),
                    "/who" => out(format!("here: {}", names(&sub.presence()))),
                    "/rooms" => match client.call::<_, Vec<Value>>("rooms.list", &()).await {
                        Ok(rooms) => {
                            let list: Vec<String> = rooms
                                .iter()
                                .map(|r| format!("#{} ({})", r["room"].as_str().unwrap_or("?").trim_start_matches("chat:"), r["users"]))
                                .collect();
                            out(format!("rooms: {}", list.join(", ")));
                        }
                        Err(e) => out(format!("(rooms.list failed: {e})")),
                    },
                    text => {
                        let msg = ChatEvent::Text { text: text.to_owned(), name: String::new(), at: 0 };
                        // Our own message comes back through the room, like everyone's.
                        if let Err(e) = sub.publish(&msg).await {
                            out(format!("(not sent: {e})"));
                        }
                    }
                },
                Ok(None) | Err(_) => break Ok(()),
            },
            event = sub.recv() => match event {
                Some(event) => show_room_event(event, &mut known, &mut out),
                None => break Err("the room is closed to us".to_owned()),
            },
            Some(event) = events.recv() => {
                show_state(&event, &mut out);
                if let ClientEvent::State(ConnectionState::GaveUp { reason, .. }) = event {
                    break Err(format!("gave up: {reason}"));
                }
            }
        }
    };
    client.close().await;
    result
}

fn show_state(event: &ClientEvent, out: &mut impl FnMut(String)) {
    let line = match event {
        ClientEvent::State(ConnectionState::Connecting { attempt }) if *attempt > 1 => {
            format!("(connecting, attempt {attempt})")
        }
        ClientEvent::State(ConnectionState::Connected { user, .. }) => {
            format!("(connected as {user})")
        }
        ClientEvent::State(ConnectionState::Disconnected { reason, retry_in }) => match reason {
            Disconnect::Close { code: 1008, reason } if reason == "token expired" => {
                "(the sign-in expired: signing in again)".to_owned()
            }
            Disconnect::Refused { status: 401 } => {
                "(the server no longer takes our sign-in: signing in again)".to_owned()
            }
            other => format!(
                "(disconnected: {other}; retrying in {:.1} s)",
                retry_in.as_secs_f64()
            ),
        },
        ClientEvent::State(ConnectionState::GaveUp { reason, .. }) => {
            format!("(gave up: {reason})")
        }
        ClientEvent::Error(e) => format!("(server: {e})"),
        _ => return,
    };
    out(line);
}

/// Prints a room event. `known` is who we have shown as here, so that a diff that
/// only confirms what a snapshot showed (our own join, say) prints nothing.
fn show_room_event(
    event: RoomEvent<ChatEvent>,
    known: &mut HashSet<String>,
    out: &mut impl FnMut(String),
) {
    match event {
        RoomEvent::Message(m) => {
            if let ChatEvent::Text { text, name, .. } = m.data {
                let who = if name.is_empty() {
                    m.from.unwrap_or_else(|| "server".into())
                } else {
                    name
                };
                out(format!("{who}: {text}"));
            }
        }
        RoomEvent::PresenceDiff(diff) => {
            for (user, metas) in diff.leaves.iter() {
                if known.remove(user) {
                    out(format!("* {} left", display_name(user, metas)));
                }
            }
            for (user, metas) in diff.joins.iter() {
                if known.insert(user.to_owned()) {
                    out(format!("* {} joined", display_name(user, metas)));
                }
            }
        }
        RoomEvent::PresenceReset(presence) => {
            *known = presence.iter().map(|(u, _)| u.to_owned()).collect();
            out(format!("(here now: {})", names(&presence)));
        }
        RoomEvent::Recovered { replayed: 0, .. } => out("(back: nothing missed)".into()),
        RoomEvent::Recovered { replayed, .. } => {
            out(format!("(back: {replayed} missed messages follow)"))
        }
        RoomEvent::NotRecovered { .. } => {
            out("(back: messages sent while we were away may be missing)".into())
        }
        RoomEvent::Lagged { missed } => out(format!("({missed} events skipped: too fast to show)")),
        RoomEvent::Left { reason } => out(format!("(removed from the room: {reason})")),
        RoomEvent::RejoinFailed(e) => out(format!("(cannot rejoin the room: {e})")),
        _ => {}
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let options = match CliOptions::from_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            let usage = "usage: cargo run --example chat_cli -- --name NAME [--url http://127.0.0.1:8080/] [--room lobby] [--ca CERT.pem]";
            if message.is_empty() {
                println!("{usage}");
                return std::process::ExitCode::SUCCESS;
            }
            eprintln!("chat_cli: {message}\n{usage}");
            return std::process::ExitCode::from(2);
        }
    };
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    match run(options, stdin, |line| println!("{line}")).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat_cli: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
