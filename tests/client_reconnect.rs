//! `wshub::client` reconnects by the close-code policy against the real `Hub`: back
//! after a restart (1001) and a slow-consumer close (1013), rooms joined again and
//! requests made while offline sent after them; never after a normal close (1000) or
//! a kick (4000-4999); a token renewed on 1008 `token expired` and on a 401 for a
//! token the server had accepted before, but never twice in a row.

mod common;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::client::{EVENT_TIMEOUT, TestTokens, next_event, next_message, states_until};
use common::hub::{ChatMessage, test_hub_builder};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use wshub::client::{
    Backoff, Client, ClientBuilder, ClientError, ConnectionState, Disconnect, RoomEvent,
    TokenReason,
};
use wshub::{ErrorCode, Hub};

/// A hub with `tokens`, served on `listener`; the task ends when the hub shuts down.
fn start_on(tokens: &TestTokens, listener: TcpListener) -> (Hub, JoinHandle<io::Result<()>>) {
    let hub = test_hub_builder().authenticator(tokens.clone()).build();
    let h = hub.clone();
    (hub, tokio::spawn(async move { h.serve(listener).await }))
}

async fn start(tokens: &TestTokens) -> (Hub, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (hub, _) = start_on(tokens, listener);
    (hub, addr)
}

/// A client of `addr` that retries quickly (20 ms base, 200 ms cap).
fn builder(addr: SocketAddr) -> ClientBuilder {
    Client::builder(format!("ws://{addr}/")).configure(|o| {
        o.backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(200));
    })
}

fn is_connected(s: &ConnectionState) -> bool {
    s.is_connected()
}

fn closed_with(state: &ConnectionState) -> Option<(u16, &str)> {
    match state {
        ConnectionState::Disconnected {
            reason: Disconnect::Close { code, reason },
            ..
        }
        | ConnectionState::GaveUp {
            reason: Disconnect::Close { code, reason },
            ..
        } => Some((*code, reason)),
        _ => None,
    }
}

/// The events of a re-join: recovered with nothing missed (the same hub, nothing
/// published meanwhile), or not recovered (a restarted hub: another epoch, at `seq`
/// 0); then the new presence snapshot. Diffs of the old connection before them are
/// skipped. `before` is the room's position taken before the connection was lost:
/// `Subscription::position` may already be the re-join's by the time the test looks.
async fn expect_rejoined(
    lobby: &mut wshub::client::Subscription<ChatMessage>,
    user: &str,
    recovered: bool,
    before: Option<wshub::StreamPosition>,
) {
    loop {
        match next_event(lobby).await {
            RoomEvent::PresenceDiff(_) => continue,
            RoomEvent::Recovered { position, replayed } if recovered => {
                assert_eq!((position, replayed), (before.clone(), 0));
                break;
            }
            RoomEvent::NotRecovered { position, replayed } if !recovered => {
                let position = position.expect("the new stream's position");
                assert_eq!((position.seq, replayed), (0, 0));
                assert_ne!(Some(&position.epoch), before.as_ref().map(|p| &p.epoch));
                break;
            }
            other => panic!("expected recovered: {recovered}, got {other:?}"),
        }
    }
    match next_event(lobby).await {
        RoomEvent::PresenceReset(p) => assert!(p.contains(user), "{p:?}"),
        other => panic!("expected PresenceReset, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_gets_its_clients_back() {
    let tokens = TestTokens::default();
    tokens.allow("a", "ann");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (hub1, served1) = start_on(&tokens, listener);

    let ann = builder(addr).token("a").build().unwrap();
    let mut events = ann.events();
    let mut lobby = ann.join::<ChatMessage>("chat:lobby").await.unwrap();
    states_until(&mut events, is_connected).await;
    let before = lobby.position();

    assert!(hub1.shutdown().await);
    tokio::time::timeout(EVENT_TIMEOUT, served1)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let states = states_until(&mut events, |s| closed_with(s).is_some()).await;
    assert_eq!(
        closed_with(states.last().unwrap()),
        Some((1001, "server shutting down"))
    );
    // Offline now: a publish waits for the next connection.
    let publisher = ann.clone();
    let offline = tokio::spawn(async move {
        publisher
            .publish(
                "chat:lobby",
                &ChatMessage {
                    text: "sent while away".into(),
                },
            )
            .await
    });
    // An attempt fails against the closed port, and the client keeps trying.
    states_until(&mut events, |s| {
        matches!(s, ConnectionState::Connecting { attempt: 2.. })
    })
    .await;

    let listener = TcpListener::bind(addr).await.unwrap();
    let (hub2, _) = start_on(&tokens, listener);
    states_until(&mut events, is_connected).await;
    // A new process, a new in-memory history: the client is told it may have missed
    // messages.
    expect_rejoined(&mut lobby, "ann", false, before).await;
    // The queued publish went out after the re-join, so it reached the room.
    let published = tokio::time::timeout(EVENT_TIMEOUT, offline)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(published.delivered, 1);
    assert_eq!(next_message(&mut lobby).await.data.text, "sent while away");
    assert_eq!(
        hub2.room::<ChatMessage>("chat:lobby")
            .unwrap()
            .member_count(),
        1
    );
    hub2.room::<ChatMessage>("chat:lobby")
        .unwrap()
        .publish(ChatMessage {
            text: "welcome back".into(),
        })
        .await
        .unwrap();
    assert_eq!(next_message(&mut lobby).await.data.text, "welcome back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_close_reconnects_and_rejoins() {
    let tokens = TestTokens::default();
    tokens.allow("a", "ann");
    let (hub, addr) = start(&tokens).await;
    let ann = builder(addr).token("a").build().unwrap();
    let mut events = ann.events();
    let mut lobby = ann.join::<ChatMessage>("chat:lobby").await.unwrap();
    states_until(&mut events, is_connected).await;
    let before = lobby.position();

    assert_eq!(hub.disconnect_user("ann", 1013u16, "slow consumer"), 1);
    let states = states_until(&mut events, is_connected).await;
    assert_eq!(
        closed_with(&states[0]),
        Some((1013, "slow consumer")),
        "{states:?}"
    );
    match &states[0] {
        ConnectionState::Disconnected { retry_in, .. } => {
            // The first wait after a lost connection is within [0, base].
            assert!(*retry_in <= Duration::from_millis(20), "{retry_in:?}")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(states[1], ConnectionState::Connecting { attempt: 1 }),
        "{states:?}"
    );
    expect_rejoined(&mut lobby, "ann", true, before).await;
    hub.room::<ChatMessage>("chat:lobby")
        .unwrap()
        .publish(ChatMessage {
            text: "still here".into(),
        })
        .await
        .unwrap();
    assert_eq!(next_message(&mut lobby).await.data.text, "still here");
    assert_eq!(tokens.attempts(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_close_or_a_kick_is_final() {
    let tokens = TestTokens::default();
    tokens.allow("a", "ann").allow("b", "bob");
    let (hub, addr) = start(&tokens).await;
    for (user, token, code, why) in [("ann", "a", 1000u16, "bye"), ("bob", "b", 4003, "banned")] {
        let client = builder(addr).token(token).build().unwrap();
        let mut events = client.events();
        let mut lobby = client.join::<ChatMessage>("chat:lobby").await.unwrap();
        states_until(&mut events, is_connected).await;

        assert_eq!(hub.disconnect_user(user, code, why), 1);
        let states = states_until(&mut events, ConnectionState::is_terminal).await;
        let last = states.last().unwrap();
        assert!(
            matches!(last, ConnectionState::GaveUp { attempts: 0, .. }),
            "{last:?}"
        );
        assert_eq!(closed_with(last), Some((code, why)));
        assert_eq!(states.len(), 1, "no attempt in between: {states:?}");
        // The client task is gone, so no attempt can follow; the room's stream ends.
        assert!(events.recv().await.is_none());
        assert!(
            tokio::time::timeout(EVENT_TIMEOUT, lobby.recv())
                .await
                .unwrap()
                .is_none()
        );
        let err = client
            .publish("chat:lobby", &ChatMessage { text: "x".into() })
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ClientError::GaveUp(Disconnect::Close { code: c, .. }) if *c == code),
            "{err:?}"
        );
    }
    assert_eq!(tokens.attempts(), 2);
}

/// Why a token provider was asked, in order.
type Asked = Arc<Mutex<Vec<TokenReason>>>;

/// A token provider that hands out `tokens` in order and records why it was asked.
fn provider(
    tokens: &[&str],
) -> (
    impl Fn(TokenReason) -> std::future::Ready<Result<String, &'static str>> + Send + Sync + 'static,
    Asked,
) {
    let queue: Arc<Mutex<VecDeque<String>>> =
        Arc::new(Mutex::new(tokens.iter().map(|t| t.to_string()).collect()));
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    let f = move |why| {
        log.lock().unwrap().push(why);
        std::future::ready(queue.lock().unwrap().pop_front().ok_or("no more tokens"))
    };
    (f, asked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_renewed_before_reconnecting() {
    let tokens = TestTokens::default();
    tokens
        .allow_for("short", "ann", Duration::from_millis(500))
        .allow("long", "ann");
    let (hub, addr) = start(&tokens).await;
    let (get_token, asked) = provider(&["short", "long"]);
    let ann = builder(addr).token_provider(get_token).build().unwrap();
    let mut events = ann.events();
    let mut lobby = ann.join::<ChatMessage>("chat:lobby").await.unwrap();
    states_until(&mut events, is_connected).await;
    let before = lobby.position();

    // The hub closes the connection with 1008 when the identity expires.
    let states = states_until(&mut events, is_connected).await;
    assert_eq!(
        closed_with(&states[0]),
        Some((1008, "token expired")),
        "{states:?}"
    );
    assert!(
        matches!(&states[0], ConnectionState::Disconnected { retry_in, .. } if retry_in.is_zero()),
        "a renewed token is tried at once: {states:?}"
    );
    assert!(
        matches!(states[1], ConnectionState::Connecting { attempt: 1 }),
        "{states:?}"
    );
    assert_eq!(states.len(), 3, "{states:?}");
    assert_eq!(
        *asked.lock().unwrap(),
        [TokenReason::Initial, TokenReason::Expired]
    );
    assert_eq!(
        tokens.seen(),
        [
            ("short".to_owned(), "header"),
            ("long".to_owned(), "header")
        ]
    );
    expect_rejoined(&mut lobby, "ann", true, before).await;
    assert_eq!(
        ann.publish(
            "chat:lobby",
            &ChatMessage {
                text: "renewed".into()
            }
        )
        .await
        .unwrap()
        .delivered,
        1
    );
    assert_eq!(hub.stats().expired, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_refused_after_it_worked_is_renewed_but_not_twice() {
    let tokens = TestTokens::default();
    tokens.allow("t1", "ann");
    let (hub, addr) = start(&tokens).await;
    let (get_token, asked) = provider(&["t1", "t2", "t3"]);
    let ann = builder(addr).token_provider(get_token).build().unwrap();
    let mut events = ann.events();
    let _lobby = ann.join::<ChatMessage>("chat:lobby").await.unwrap();
    states_until(&mut events, is_connected).await;

    // The server "restarts with a new key": t1 is no good any more, t2 is.
    tokens.revoke("t1");
    tokens.allow("t2", "ann");
    hub.disconnect_user("ann", 1012u16, "service restart");
    let states = states_until(&mut events, is_connected).await;
    let refused = states
        .iter()
        .filter(|s| matches!(s, ConnectionState::Disconnected { reason: Disconnect::Refused { status: 401 }, retry_in } if retry_in.is_zero()))
        .count();
    assert_eq!(refused, 1, "{states:?}");
    assert_eq!(
        *asked.lock().unwrap(),
        [TokenReason::Initial, TokenReason::Refused]
    );

    // Again, but the provider's new token (t3) is refused too: the client stops
    // rather than loop on bad tokens.
    tokens.revoke("t2");
    hub.disconnect_user("ann", 1012u16, "service restart");
    let states = states_until(&mut events, ConnectionState::is_terminal).await;
    assert!(
        matches!(
            states.last().unwrap(),
            ConnectionState::GaveUp {
                reason: Disconnect::Refused { status: 401 },
                ..
            }
        ),
        "{states:?}"
    );
    assert_eq!(
        *asked.lock().unwrap(),
        [
            TokenReason::Initial,
            TokenReason::Refused,
            TokenReason::Refused
        ]
    );
    let tried: Vec<String> = tokens.seen().into_iter().map(|(t, _)| t).collect();
    assert_eq!(tried, ["t1", "t1", "t2", "t2", "t3"]);
    let err = ann.call::<_, ()>("anything", &()).await.unwrap_err();
    assert!(matches!(err, ClientError::GaveUp(_)), "{err:?}");
    assert_eq!(err.code(), None::<ErrorCode>);
}
