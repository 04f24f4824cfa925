//! The `chat_cli` example against the `chat` example, both in this process: it signs
//! in with `POST /login`, chats with a `wshub::client` user, and survives a restart of
//! the server with a new signing key (it reconnects, signs in again, re-joins and
//! says messages may have been missed).
#![cfg(all(feature = "axum", feature = "tls", feature = "jwt", feature = "client"))]
#![allow(clippy::duplicate_mod)]

#[path = "../examples/chat.rs"]
#[allow(dead_code)]
mod chat;
#[path = "../examples/chat_cli.rs"]
#[allow(dead_code)]
mod chat_cli;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader, DuplexStream};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use wshub::client::{Backoff, Client, RoomEvent, Subscription};

use chat::{ChatEvent, ChatOptions, ChatServer};
use chat_cli::CliOptions;

const WAIT: Duration = Duration::from_secs(10);

async fn start_chat(addr: SocketAddr, secret: &[u8]) -> ChatServer {
    let listener = TcpListener::bind(addr).await.unwrap();
    let options = ChatOptions {
        secret: Some(secret.to_vec()),
        ..ChatOptions::default()
    };
    chat::start(listener, options).await.unwrap()
}

/// The CLI running in a task: its input, and the lines it shows.
struct Cli {
    input: DuplexStream,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
    task: JoinHandle<Result<(), String>>,
}

impl Cli {
    fn start(url: String) -> Cli {
        let (input, cli_input) = tokio::io::duplex(4096);
        let (tx, lines) = mpsc::unbounded_channel();
        let options = CliOptions {
            name: "bob".into(),
            url,
            room: "lobby".into(),
            ca_pem: None,
            backoff: Backoff::new(Duration::from_millis(20), Duration::from_millis(200)),
        };
        let task = tokio::spawn(chat_cli::run(
            options,
            BufReader::new(cli_input),
            move |l| {
                let _ = tx.send(l);
            },
        ));
        Cli {
            input,
            lines,
            seen: Vec::new(),
            task,
        }
    }

    /// Waits for the line `want`; lines before it are kept in `seen`.
    async fn expect(&mut self, want: &str) {
        self.expect_all(&[want]).await;
    }

    /// Waits until each of `wants` has been shown, in any order: state lines and room
    /// lines come from two streams of the client, whose interleaving is not fixed.
    async fn expect_all(&mut self, wants: &[&str]) {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut missing: Vec<&str> = wants.to_vec();
        while !missing.is_empty() {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .unwrap_or_else(|_| panic!("no line {missing:?}; saw {:#?}", self.seen))
                .unwrap_or_else(|| panic!("the CLI ended; saw {:#?}", self.seen));
            missing.retain(|want| *want != line);
            self.seen.push(line);
        }
    }

    async fn type_line(&mut self, line: &str) {
        self.input
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
    }
}

/// "alice", a `wshub::client` user of the chat, in `chat:lobby`.
async fn alice(server: &ChatServer) -> (Client, Subscription<ChatEvent>) {
    let login = server.auth.login("alice").unwrap();
    let client = Client::builder(server.ws_url())
        .token(login.token)
        .token_in_query()
        .build()
        .unwrap();
    let lobby = client.join::<ChatEvent>("chat:lobby").await.unwrap();
    (client, lobby)
}

/// The next chat text alice sees from bob (her own come back too).
async fn next_from_bob(lobby: &mut Subscription<ChatEvent>) -> String {
    loop {
        let event = tokio::time::timeout(WAIT, lobby.recv())
            .await
            .unwrap()
            .unwrap();
        if let RoomEvent::Message(m) = event
            && let ChatEvent::Text { text, name, .. } = m.data
            && m.from.as_deref() == Some("bob")
        {
            assert_eq!(name, "bob", "the server stamps the sender's name");
            return text;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_client_chats_and_survives_a_restart() {
    let server = start_chat("127.0.0.1:0".parse().unwrap(), b"first key").await;
    let addr = server.local_addr;
    let mut cli = Cli::start(server.url());
    cli.expect("in #lobby with bob").await;

    let (alice_client, mut alice_lobby) = alice(&server).await;
    cli.expect("* alice joined").await;
    alice_client
        .publish(
            "chat:lobby",
            &ChatEvent::Text {
                text: "hi bob".into(),
                name: String::new(),
                at: 0,
            },
        )
        .await
        .unwrap();
    cli.expect("alice: hi bob").await;
    cli.type_line("hello alice").await;
    assert_eq!(next_from_bob(&mut alice_lobby).await, "hello alice");

    // A new server process: same port, a new signing key, so bob's token is no good.
    alice_client.close().await;
    server.shutdown().await.unwrap();
    let server = start_chat(addr, b"second key").await;
    cli.expect_all(&[
        "(the server no longer takes our sign-in: signing in again)",
        "(connected as bob)",
        "(back: messages sent while we were away may be missing)",
    ])
    .await;

    let (alice_client, mut alice_lobby) = alice(&server).await;
    alice_client
        .publish(
            "chat:lobby",
            &ChatEvent::Text {
                text: "welcome back".into(),
                name: String::new(),
                at: 0,
            },
        )
        .await
        .unwrap();
    cli.expect("alice: welcome back").await;
    cli.type_line("glad to be back").await;
    assert_eq!(next_from_bob(&mut alice_lobby).await, "glad to be back");
    assert!(
        cli.seen
            .iter()
            .any(|l| l.starts_with("(disconnected: closed by the server with 1001")),
        "{:#?}",
        cli.seen
    );

    cli.type_line("/quit").await;
    let ended = tokio::time::timeout(WAIT, cli.task).await.unwrap().unwrap();
    assert_eq!(ended, Ok(()));
}
