//! `wshub::client` against the real `Hub`: tokens in the header and in the query, a
//! refused token (no retry, a clear error), typed joins and messages, publish replies
//! and errors with their exact codes, RPC calls, and presence kept from the join
//! snapshot plus diffs.

mod common;

use std::time::Duration;

use common::client::{EVENT_TIMEOUT, TestTokens, next_event, next_message, states_until};
use common::hub::{Article, ChatMessage, serve, test_hub_builder};
use serde::{Deserialize, Serialize};
use serde_json::json;
use wshub::client::{
    Client, ClientError, ConnectionState, Disconnect, JoinOptions, Published, RoomEvent,
};
use wshub::{ErrorCode, Hub, RpcContext, RpcError};

#[derive(Deserialize)]
struct AddReq {
    a: i64,
    b: i64,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct AddResp {
    sum: i64,
    caller: String,
}

/// The test hub (`chat:*` typed `ChatMessage`, `news:*` server-only) with `tokens`
/// and two RPC methods.
async fn start(tokens: &TestTokens) -> (Hub, String) {
    let hub = test_hub_builder()
        .authenticator(tokens.clone())
        .rpc("math.add", |ctx: RpcContext, req: AddReq| async move {
            Ok::<_, RpcError>(AddResp {
                sum: req.a + req.b,
                caller: ctx.identity().user_id.clone(),
            })
        })
        .rpc("never", |_ctx: RpcContext, _: ()| async move {
            std::future::pending::<()>().await;
            Ok::<_, RpcError>(())
        })
        .build();
    let url = serve(&hub).await;
    (hub, url)
}

fn client(url: &str, token: &str) -> Client {
    Client::builder(url).token(token).build().unwrap()
}

fn user_of(state: &ConnectionState) -> &str {
    match state {
        ConnectionState::Connected { user, .. } => user,
        other => panic!("not connected: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_go_in_the_bearer_header_or_the_query() {
    let tokens = TestTokens::default();
    // A token with characters a query must escape.
    tokens.allow("ann-key", "ann").allow("bob key+/=&é", "bob");
    let (_hub, url) = start(&tokens).await;

    let ann = client(&url, "ann-key");
    ann.connected().await.unwrap();
    assert_eq!(user_of(&ann.state()), "ann");

    let bob = Client::builder(format!("{url}?lang=en"))
        .token("bob key+/=&é")
        .token_in_query()
        .build()
        .unwrap();
    bob.connected().await.unwrap();
    assert_eq!(user_of(&bob.state()), "bob");

    assert_eq!(
        tokens.seen(),
        [
            ("ann-key".to_owned(), "header"),
            ("bob key+/=&é".to_owned(), "query")
        ]
    );
    ann.close().await;
    assert!(matches!(ann.state(), ConnectionState::Closed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_tried_once_and_says_why() {
    let tokens = TestTokens::default();
    let (hub, url) = start(&tokens).await;
    let eve = client(&url, "forged");
    let mut events = eve.events();

    let err = eve.connected().await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::GaveUp(Disconnect::Refused { status: 401 })
        ),
        "{err:?}"
    );
    let states = states_until(&mut events, ConnectionState::is_terminal).await;
    assert!(matches!(
        states[0],
        ConnectionState::Connecting { attempt: 1 }
    ));
    assert!(
        matches!(
            states[1],
            ConnectionState::GaveUp {
                reason: Disconnect::Refused { status: 401 },
                attempts: 1
            }
        ),
        "{states:?}"
    );
    assert_eq!(states.len(), 2, "{states:?}");
    // The client task is gone: no second attempt can follow.
    assert!(events.recv().await.is_none());
    assert_eq!(tokens.attempts(), 1);
    assert_eq!(hub.stats().connections, 0);
    // Requests say why too.
    let err = eve
        .publish("chat:lobby", &json!({"text": "hi"}))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::GaveUp(Disconnect::Refused { status: 401 })
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_rooms_carry_messages_with_their_sender() {
    let tokens = TestTokens::default();
    tokens.allow("a", "ann").allow("b", "bob");
    let (hub, url) = start(&tokens).await;
    let ann = client(&url, "a");
    let bob = client(&url, "b");
    let mut ann_lobby = ann.join::<ChatMessage>("chat:lobby").await.unwrap();
    let mut bob_lobby = bob.join::<ChatMessage>("chat:lobby").await.unwrap();
    assert_eq!(bob_lobby.room(), "chat:lobby");

    let published = ann
        .publish(
            "chat:lobby",
            &ChatMessage {
                text: "hello bob".into(),
            },
        )
        .await
        .unwrap();
    // Stored in the room's history: the first message of its stream.
    assert_eq!(published.delivered, 2);
    let position = published.position.clone().expect("stored");
    assert_eq!(position.seq, 1);
    for sub in [&mut bob_lobby, &mut ann_lobby] {
        let m = next_message(sub).await;
        assert_eq!(
            m.data,
            ChatMessage {
                text: "hello bob".into()
            }
        );
        assert_eq!(m.from.as_deref(), Some("ann"));
        assert_eq!(
            (m.seq, m.epoch.as_deref()),
            (Some(1), Some(&*position.epoch))
        );
    }

    // From the server: no sender.
    hub.room::<ChatMessage>("chat:lobby")
        .unwrap()
        .publish(ChatMessage {
            text: "from the server".into(),
        })
        .await
        .unwrap();
    for sub in [&mut bob_lobby, &mut ann_lobby] {
        let m = next_message(sub).await;
        assert_eq!((m.from, m.data.text.as_str()), (None, "from the server"));
    }

    // Ephemeral, fire and forget, through the subscription.
    bob_lobby
        .publish_ephemeral(&ChatMessage {
            text: "typing".into(),
        })
        .await
        .unwrap();
    let m = next_message(&mut ann_lobby).await;
    assert_eq!(
        (m.from.as_deref(), m.data.text.as_str()),
        (Some("bob"), "typing")
    );

    // A subscription with the wrong type says so, message by message.
    let mut wrong = ann.join::<Article>("chat:typed").await.unwrap();
    bob.join::<ChatMessage>("chat:typed")
        .await
        .unwrap()
        .publish(&ChatMessage { text: "x".into() })
        .await
        .unwrap();
    match next_event(&mut wrong).await {
        RoomEvent::Undecodable { message, error } => {
            assert_eq!(message.data, json!({"text": "x"}));
            assert!(error.contains("title"), "{error}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_the_protocol_code() {
    let tokens = TestTokens::default();
    tokens.allow("a", "ann");
    let (_hub, url) = start(&tokens).await;
    let ann = client(&url, "a");

    let code = |r: Result<Published, ClientError>| r.unwrap_err().code();
    assert_eq!(
        code(
            ann.publish("chat:elsewhere", &ChatMessage { text: "hi".into() })
                .await
        ),
        Some(ErrorCode::NotJoined)
    );
    let _lobby = ann.join::<ChatMessage>("chat:lobby").await.unwrap();
    let big = ChatMessage {
        text: "x".repeat(70 * 1024),
    };
    let err = ann.publish("chat:lobby", &big).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TooLarge), "{err}");
    let ClientError::Server(server) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(server.code_str(), "too_large");
    assert!(!server.message().is_empty());
    assert_eq!(
        code(
            ann.publish("chat:lobby", &json!({"not": "a chat message"}))
                .await
        ),
        Some(ErrorCode::InvalidData)
    );
    let _news = ann.join::<Article>("news:today").await.unwrap();
    assert_eq!(
        code(
            ann.publish(
                "news:today",
                &Article {
                    title: "mine".into()
                }
            )
            .await
        ),
        Some(ErrorCode::Forbidden)
    );
    let err = ann.join::<ChatMessage>("nowhere:1").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    let err = ann.join::<ChatMessage>("chat:lobby").await.unwrap_err();
    assert!(
        matches!(err, ClientError::AlreadyJoined(ref r) if r == "chat:lobby"),
        "{err:?}"
    );
    // The connection is still fine.
    assert_eq!(
        ann.publish("chat:lobby", &ChatMessage { text: "ok".into() })
            .await
            .unwrap()
            .delivered,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_calls_answer_typed_or_with_a_code() {
    let tokens = TestTokens::default();
    tokens.allow("a", "ann");
    let (_hub, url) = start(&tokens).await;
    let ann = client(&url, "a");

    let resp: AddResp = ann
        .call("math.add", &json!({"a": 2, "b": 40}))
        .await
        .unwrap();
    assert_eq!(
        resp,
        AddResp {
            sum: 42,
            caller: "ann".into()
        }
    );
    let err = ann.call::<_, AddResp>("math.sub", &()).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    let err = ann
        .call::<_, AddResp>("math.add", &json!({"a": "two"}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidData));
    let err = ann
        .call::<_, String>("math.add", &json!({"a": 1, "b": 1}))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Decode(_)), "{err:?}");

    // A method that never answers: the client's own timeout.
    let impatient = ann.with_timeout(Duration::from_millis(300));
    let err = impatient.call::<_, ()>("never", &()).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Timeout(t) if t == Duration::from_millis(300)),
        "{err:?}"
    );
    // Other calls are not held up by it.
    let resp: AddResp = ann
        .call("math.add", &json!({"a": 1, "b": 1}))
        .await
        .unwrap();
    assert_eq!(resp.sum, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_the_join_snapshot_plus_diffs() {
    let tokens = TestTokens::default();
    tokens.allow("a", "ann").allow("b", "bob");
    let (_hub, url) = start(&tokens).await;
    let ann = client(&url, "a");
    let bob = client(&url, "b");

    let mut ann_room = ann
        .join_with::<ChatMessage>("chat:p", JoinOptions::new().meta(json!({"status": "here"})))
        .await
        .unwrap();
    let snapshot = ann_room.presence();
    assert_eq!(snapshot.len(), 1);
    assert_eq!(
        snapshot.get("ann").unwrap()[0].meta,
        json!({"status": "here"})
    );

    let bob_room = bob.join::<ChatMessage>("chat:p").await.unwrap();
    // Bob's snapshot has both; Ann hears of Bob in a diff.
    assert!(bob_room.presence().contains("ann") && bob_room.presence().contains("bob"));
    let diff = loop {
        match next_event(&mut ann_room).await {
            RoomEvent::PresenceDiff(d) if d.joins.contains("bob") => break d,
            RoomEvent::PresenceDiff(_) => continue,
            other => panic!("{other:?}"),
        }
    };
    assert!(diff.leaves.is_empty());
    let users: Vec<String> = ann_room
        .presence()
        .iter()
        .map(|(u, _)| u.to_owned())
        .collect();
    assert_eq!(users, ["ann", "bob"]);

    bob_room.leave().await.unwrap();
    loop {
        match tokio::time::timeout(EVENT_TIMEOUT, ann_room.recv())
            .await
            .unwrap()
            .unwrap()
        {
            RoomEvent::PresenceDiff(d) if d.leaves.contains("bob") => break,
            RoomEvent::PresenceDiff(_) => continue,
            other => panic!("{other:?}"),
        }
    }
    let users: Vec<String> = ann_room
        .presence()
        .iter()
        .map(|(u, _)| u.to_owned())
        .collect();
    assert_eq!(users, ["ann"]);
    // Bob can publish there no more.
    let err = bob
        .publish("chat:p", &ChatMessage { text: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotJoined));
}
