//! The chat example (`examples/chat.rs`) in a real browser: headless Chromium driven
//! by the Node scripts `tests/browser/chat.mjs`, `tests/browser/chat_reconnect.mjs` and
//! `tests/browser/chat_history.mjs` (playwright-core), against the example's server
//! started in this process (behind a proxy that cuts connections, for the history
//! test).
//!
//! Needs Node.js >= 20, Chromium and `npm ci --prefix tests/peers`; without them the
//! tests FAIL saying what to install (`bash .ci/run` installs everything). On a
//! failure the scripts save a screenshot and the HTML of every open page in
//! `target/browser-screenshots/`; the failure message lists them.
#![cfg(all(feature = "axum", feature = "tls", feature = "jwt"))]

#[path = "../examples/chat.rs"]
#[allow(dead_code)]
mod chat;
mod common;
#[path = "browser/support.rs"]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use chat::{ChatEvent, ChatOptions, ChatServer};
use common::cut_proxy::CutProxy;
use support::{post_json, run_script};

/// Hard limit for one browser script (it gives up by itself a few seconds earlier).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

async fn start_chat(options: ChatOptions) -> ChatServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    chat::start(listener, options)
        .await
        .expect("starting the chat example")
}

/// Binds `addr` again after a shutdown, retrying for a few seconds.
async fn rebind(addr: SocketAddr) -> Result<TcpListener, String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(format!("cannot bind {addr} again: {e}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Two users in two browser contexts: messages, names, the online list and its
/// notices, the typing indicator, a second tab of the same user (which gets its name
/// again through the login cookie), HTML in a message, refused names, a forged token,
/// a new room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_chat_in_the_browser() {
    let server = start_chat(ChatOptions::default()).await;
    let outcome = run_script(
        "chat.mjs",
        &server.url(),
        SCRIPT_TIMEOUT,
        support::no_control,
    )
    .await;
    let report = outcome.assert_ok();
    let fail = || outcome.report();

    // What the script saw, checked against the server's own rules.
    assert_eq!(report["room"], chat::DEFAULT_ROOM, "{}", fail());
    assert_eq!(
        report["user_ids"],
        json!({"alice": "alice", "bob": "bob"}),
        "user ids are the names in lower case\n{}",
        fail()
    );
    assert_eq!(report["message"]["author"], "alice", "{}", fail());
    assert_eq!(
        report["second_tab_auto_login"],
        false,
        "the second tab logged in by itself\n{}",
        fail()
    );
    assert_eq!(
        report["forged_error"],
        "Login refused: invalid or expired token",
        "{}",
        fail()
    );
    assert_ne!(report["forged_status"], "online", "{}", fail());
    let xss_html = report["xss_html"].as_str().unwrap_or_default();
    assert_eq!(
        xss_html,
        "&lt;img src=x onerror=alert(1)&gt;",
        "the message's HTML is escaped text\n{}",
        fail()
    );
    let typing_cleared = report["typing_cleared_after_ms"].as_u64().unwrap_or(0);
    assert!(
        (2500..=7000).contains(&typing_cleared),
        "the typing indicator is shown ~3 s after the last keystroke, cleared after {typing_cleared} ms\n{}",
        fail()
    );
    assert_eq!(
        report["name_refusals"],
        json!({
            "html": "Login failed: names may only contain letters, digits, spaces and - _ . ' (U+003C is not allowed)",
            "invisible": "Login failed: names may not contain invisible characters (U+00AD)",
            "taken": "Login failed: the name \"Alice\" is taken (or looks like one that is): pick another",
        }),
        "the page shows why the server refused a name\n{}",
        fail()
    );
    // The "Rooms with people" panel, served by the `rooms.list` RPC: the new room with
    // alice and bob, and the lobby (where both still are).
    let busy = report["busy_rooms"].as_array().cloned().unwrap_or_default();
    assert!(
        busy.contains(&json!([report["new_room"], 2])),
        "the new room is listed with its 2 users: {busy:?}\n{}",
        fail()
    );
    assert!(
        busy.iter().any(|r| r[0] == chat::DEFAULT_ROOM),
        "the lobby is listed: {busy:?}\n{}",
        fail()
    );
    assert_eq!(report["dialogs"], json!([]), "{}", fail());
    assert_eq!(report["page_errors"], json!([]), "{}", fail());

    // Everyone the browsers brought is gone: the last context closed.
    server.shutdown().await.unwrap();
}

/// The server stops and starts again on the same port: the open pages notice, come
/// back by themselves (no reload), re-join their room and chat. Twice: with the same
/// signing key (tokens still valid) and with a new one, as after a restart of the
/// process (the pages' tokens are refused; they sign in again by themselves).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_reconnects_after_a_server_restart() {
    let options = ChatOptions {
        secret: Some(b"browser test key, first".to_vec()),
        ..ChatOptions::default()
    };
    let first = start_chat(options.clone()).await;
    let addr = first.local_addr;
    let url = first.url();
    let mut server = Some(first);
    let mut stops = 0;

    let outcome = run_script(
        "chat_reconnect.mjs",
        &url,
        SCRIPT_TIMEOUT,
        async |cmd: &str| -> Result<String, String> {
            match cmd {
                "stop" => {
                    let running = server.take().ok_or("the server is not running")?;
                    tokio::time::timeout(Duration::from_secs(10), running.shutdown())
                        .await
                        .map_err(|_| "the server did not stop within 10 s".to_owned())?
                        .map_err(|e| format!("the server stopped with an error: {e}"))?;
                    stops += 1;
                    Ok("stopped".into())
                }
                "start" | "start-new-key" => {
                    if server.is_some() {
                        return Err("the server is already running".into());
                    }
                    let mut opts = options.clone();
                    if cmd == "start-new-key" {
                        opts.secret = Some(b"browser test key, second".to_vec());
                    }
                    let listener = rebind(addr).await?;
                    let started = chat::start(listener, opts)
                        .await
                        .map_err(|e| format!("cannot start the chat again: {e}"))?;
                    server = Some(started);
                    Ok(format!("started on {addr}"))
                }
                other => Err(format!("unknown control command `{other}`")),
            }
        },
    )
    .await;
    let report = outcome.assert_ok();
    assert_eq!(stops, 2, "two restarts\n{}", outcome.report());
    assert_eq!(
        report["rounds"].as_array().map(Vec::len),
        Some(2),
        "{}",
        outcome.report()
    );
    if let Some(server) = server {
        server.shutdown().await.unwrap();
    }
}

/// A chat message published by the server, as the page shows it.
fn text_event(text: &str) -> ChatEvent {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    ChatEvent::Text {
        text: text.to_owned(),
        name: "publisher".into(),
        at,
    }
}

/// Publishes `text` to the lobby of `server`.
async fn publish(server: &ChatServer, text: &str) -> Result<(), String> {
    server
        .hub
        .room::<ChatEvent>(chat::DEFAULT_ROOM)
        .map_err(|e| e.to_string())?
        .publish(text_event(text))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// History and recovery in the page (`PROTOCOL.md` section 9), through a proxy that
/// cuts connections without a close frame. While the server publishes 300 numbered
/// messages, one every 10 ms, the proxy cuts the page's connection 3 times: the page
/// shows every number exactly once, in order, and no "missing" notice. A reload, and
/// another user's new page, show the lobby's last 50 messages. Then a new hub takes
/// over the address (a restart: a new epoch): the open pages say "some messages may be
/// missing", show the new hub's recent messages, and get a live one, without a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_every_message_once_across_cuts_reloads_and_a_restart() {
    const MESSAGES: usize = 300;
    const CUT_EVERY: usize = 75;
    const HELD: usize = 10;
    let options = ChatOptions {
        secret: Some(b"browser history test key".to_vec()),
        ..ChatOptions::default()
    };
    let mut server = start_chat(options.clone()).await;
    let proxy = CutProxy::start(server.local_addr).await;
    let mut cuts = 0;
    let mut restarts = 0;

    let outcome = run_script(
        "chat_history.mjs",
        &proxy.http_url("/"),
        Duration::from_secs(90),
        async |cmd: &str| -> Result<String, String> {
            match cmd {
                "stream" => {
                    // A steady rate, not a burst: the cuts fall while messages are in
                    // flight, and a reconnection (at most 500 ms of backoff) misses
                    // fewer messages than the room keeps (100). The page's reconnection
                    // is held for the 10 messages after each cut, so that each
                    // recovery has at least those to replay.
                    let lobby = server
                        .hub
                        .room::<ChatEvent>(chat::DEFAULT_ROOM)
                        .map_err(|e| e.to_string())?;
                    let members = || lobby.connections().iter().map(|c| c.conn_id).collect();
                    let mut cut_member = None;
                    let mut tick = tokio::time::interval(Duration::from_millis(10));
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    for n in 1..=MESSAGES {
                        tick.tick().await;
                        publish(&server, &format!("n{n}")).await?;
                        if n % CUT_EVERY == 0 && n < MESSAGES {
                            // Each cut cuts the page's latest connection, once it is
                            // back in the room (normally long before).
                            cut_member = Some(support::one_new_member(members, cut_member).await?);
                            proxy.hold();
                            proxy.cut();
                            cuts += 1;
                        }
                        if n % CUT_EVERY == HELD {
                            proxy.release();
                        }
                    }
                    proxy.release();
                    Ok(format!("published {MESSAGES}, cut {cuts} times"))
                }
                "restart" => {
                    let listener = TcpListener::bind("127.0.0.1:0")
                        .await
                        .map_err(|e| e.to_string())?;
                    let next = chat::start(listener, options.clone())
                        .await
                        .map_err(|e| format!("cannot start another chat: {e}"))?;
                    for text in ["r1", "r2", "r3"] {
                        publish(&next, text).await?;
                    }
                    proxy.retarget(next.local_addr);
                    let old = std::mem::replace(&mut server, next);
                    tokio::time::timeout(Duration::from_secs(10), old.shutdown())
                        .await
                        .map_err(|_| "the old server did not stop within 10 s".to_owned())?
                        .map_err(|e| format!("the old server stopped with an error: {e}"))?;
                    restarts += 1;
                    Ok(format!("restarted on {}", server.local_addr))
                }
                other => match other.strip_prefix("publish ") {
                    Some(text) => publish(&server, text).await.map(|()| "published".into()),
                    None => Err(format!("unknown control command `{other}`")),
                },
            }
        },
    )
    .await;
    let report = outcome.assert_ok();
    let fail = || outcome.report();
    assert_eq!(cuts, 3, "{}", fail());
    assert_eq!(restarts, 1, "{}", fail());
    assert_eq!(report["stream"]["shown"], MESSAGES, "{}", fail());
    assert_eq!(
        report["stream"]["reconnections"],
        3,
        "the page reconnected once per cut\n{}",
        fail()
    );
    let recoveries = report["stream"]["recoveries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(recoveries.len(), 3, "one re-join per cut\n{}", fail());
    for r in &recoveries {
        let (since, replayed) = (r["since"].as_u64(), r["replayed"].as_u64());
        assert_eq!(r["recovered"], true, "{r}\n{}", fail());
        assert_eq!(
            r["seq"].as_u64(),
            since.zip(replayed).map(|(s, n)| s + n),
            "everything after `since` is replayed: {r}\n{}",
            fail()
        );
        assert!(
            replayed.unwrap_or(0) >= HELD as u64,
            "at least the {HELD} messages published while the reconnection was held: {r}\n{}",
            fail()
        );
    }
    // The restart is not recovered: the new hub cannot vouch for the old position,
    // and replays its 3 messages.
    assert_eq!(
        report["restart_recoveries"],
        json!([{"since": MESSAGES, "recovered": false, "replayed": 3, "seq": 3}]),
        "{}",
        fail()
    );
    assert_eq!(
        report["recent"],
        json!({"reader": 50, "late": 50}),
        "{}",
        fail()
    );
    for page in ["reader", "late"] {
        assert_eq!(
            report["restart"][page],
            json!({
                "notices": ["Reconnected: some messages may be missing. The room's recent messages follow."],
                "messages": ["r1", "r2", "r3", "live after the restart"],
            }),
            "{page} after the restart\n{}",
            fail()
        );
    }
    assert_eq!(report["dialogs"], json!([]), "{}", fail());
    assert_eq!(report["page_errors"], json!([]), "{}", fail());
    server.shutdown().await.unwrap();
}

/// What the page is told happens at the handshake, without a browser: a missing or
/// forged token gets 401 (and no WebSocket), a token from `POST /login` a welcome.
#[tokio::test]
async fn the_handshake_refuses_missing_and_forged_tokens() {
    let server = start_chat(ChatOptions::default()).await;
    let addr = server.local_addr;

    let login = post_json(addr, "/login", &json!({"name": "  Alice "})).await;
    assert_eq!(login.status, 200, "{login}");
    let login = login.json();
    assert_eq!(login["user"], "alice", "{login}");
    assert_eq!(login["name"], "Alice", "{login}");
    let token = login["token"].as_str().expect("token").to_owned();

    // A JWT whose claims were changed: the signature no longer matches.
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "an HS256 JWT: {token}");
    let forged_claims = b64url(br#"{"sub":"admin","name":"admin","exp":99999999999,"iat":0}"#);
    let forged = format!("{}.{forged_claims}.{}", parts[0], parts[2]);
    let other_key = chat::ChatAuth::new(b"not the server's key", Duration::from_secs(60))
        .login("alice")
        .unwrap()
        .token;

    let ws = server.ws_url();
    for (what, url) in [
        ("no token", ws.clone()),
        ("an empty token", format!("{ws}?token=")),
        ("a forged token", format!("{ws}?token={forged}")),
        (
            "a token signed with another key",
            format!("{ws}?token={other_key}"),
        ),
        ("garbage", format!("{ws}?token=not-a-jwt")),
    ] {
        assert_eq!(
            handshake_status(&url).await,
            Err(401),
            "{what} must be refused with 401"
        );
    }
    // What the page asks when its WebSocket is refused.
    let session = support::http(addr, "GET", &format!("/session?token={forged}"), &[], b"").await;
    assert_eq!(session.status, 401, "{session}");
    assert_eq!(session.json()["error"], "invalid token", "{session}");
    let session = support::http(addr, "GET", &format!("/session?token={token}"), &[], b"").await;
    assert_eq!(session.status, 200, "{session}");
    assert_eq!(session.json()["user"], "alice", "{session}");

    // The real token works, in the query string and as a bearer header.
    assert_eq!(
        handshake_status(&format!("{ws}?token={token}")).await,
        Ok("alice".into())
    );
    let mut req = ws.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req.headers_mut()
        .insert("sec-websocket-protocol", "wshub.v1".parse().unwrap());
    let (mut conn, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("bearer token");
    let welcome = next_json(&mut conn).await;
    assert_eq!(welcome["user"], "alice", "{welcome}");
    let _ = conn.close(None).await;

    // Bad login input is a 400 naming the field.
    for body in [
        json!({}),
        json!({"name": ""}),
        json!({"name": 7}),
        json!({"name": "a\u{202E}b"}),
    ] {
        let resp = post_json(addr, "/login", &body).await;
        assert_eq!(resp.status, 400, "POST /login {body}: {resp}");
        assert_eq!(resp.json()["field"], "name", "POST /login {body}: {resp}");
    }
    server.shutdown().await.unwrap();
}

/// Connects to `url` offering `wshub.v1`: `Ok(user)` from the welcome, or
/// `Err(status)` when the handshake is refused.
async fn handshake_status(url: &str) -> Result<String, u16> {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "wshub.v1".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((mut conn, _)) => {
            let welcome = next_json(&mut conn).await;
            let _ = conn.close(None).await;
            Ok(welcome["user"].as_str().unwrap_or_default().to_owned())
        }
        Err(tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("{url}: {e}"),
    }
}

async fn next_json<S>(conn: &mut tokio_tungstenite::WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), conn.next())
            .await
            .expect("timed out waiting for a message")
            .expect("connection ended")
            .expect("websocket error");
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

fn b64url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn b64url_encodes_like_rfc_4648() {
    assert_eq!(b64url(b""), "");
    assert_eq!(b64url(b"f"), "Zg");
    assert_eq!(b64url(b"fo"), "Zm8");
    assert_eq!(b64url(b"foo"), "Zm9v");
    assert_eq!(b64url(b"foob"), "Zm9vYg");
    assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
}
