//! Authentication and authorization over real sockets.
//!
//! - An application-written [`Authenticator`] (a session cookie or `?token=`, looked up
//!   asynchronously): accepted, refused with 401 and with 403 at the handshake, and
//!   `authorize` refusing joins and publishes with `forbidden` replies.
//! - The built-in [`StaticTokens`] (bearer header and `?token=`) and a policy added to a
//!   built-in authenticator with `authorize_with`.
//! - JWT (feature `jwt`): HS256 and RS256 tokens made here with `jsonwebtoken`; expired,
//!   forged and algorithm-confused tokens refused with 401; a connection closed with
//!   1008 when its token expires, its presence leave broadcast to the room.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::hub::{ChatMessage, Client, serve, test_hub_builder};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wshub::auth::StaticTokens;
use wshub::{Action, AllowAnonymous, AuthRejection, AuthRequest, Authenticator, Identity};

/// What the application's authenticator saw of the last upgrade request.
#[derive(Debug, Clone, Default)]
struct Seen {
    path: String,
    peer: Option<SocketAddr>,
    user_agent: Option<String>,
}

/// How an application would authenticate: a session id from the `sid` cookie (sent by
/// browsers with the upgrade request) or from `?token=`, looked up in a session store
/// (here a `match` behind an `.await`). Admins may join `chat:staff-*` and publish to
/// `chat:announce-*`; nobody else may.
#[derive(Debug, Default)]
struct Sessions {
    seen: Arc<Mutex<Seen>>,
}

impl Authenticator for Sessions {
    async fn authenticate(&self, req: &AuthRequest) -> Result<Identity, AuthRejection> {
        *self.seen.lock().unwrap() = Seen {
            path: req.path().to_owned(),
            peer: req.peer_addr(),
            user_agent: req.header("user-agent").map(str::to_owned),
        };
        let sid = req
            .cookie("sid")
            .map(str::to_owned)
            .or_else(|| req.query_param("token"));
        // The session store is remote: authentication may await.
        tokio::time::sleep(Duration::from_millis(5)).await;
        match sid.as_deref() {
            None => Err(AuthRejection::Unauthorized("no session".into())),
            Some("s-ann") => Ok(Identity::new("ann", "Ann").with_claim("role", "admin")),
            Some("s-bob") => Ok(Identity::new("bob", "Bob").with_claim("role", "member")),
            Some("s-mallory") => Err(AuthRejection::Forbidden("account suspended".into())),
            Some(_) => Err(AuthRejection::Unauthorized(
                "session expired or unknown".into(),
            )),
        }
    }

    fn authorize(&self, identity: &Identity, room: &str, action: Action) -> bool {
        let admin = identity.claim("role") == Some(&json!("admin"));
        match action {
            Action::Join => admin || !room.starts_with("chat:staff-"),
            Action::Publish => admin || !room.starts_with("chat:announce-"),
            _ => false,
        }
    }
}

/// Sends a WebSocket upgrade request by hand and returns the status and body of the
/// response: what a refused client gets, and proof that no 101 was sent.
async fn raw_upgrade(url: &str, extra_headers: &[(&str, &str)]) -> (u16, String) {
    let rest = url.strip_prefix("ws://").expect("ws:// URL");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut tcp = tokio::net::TcpStream::connect(authority).await.unwrap();
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: wshub.v1\r\n"
    );
    for (k, v) in extra_headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf))
        .await
        .expect("the refusal did not end the connection")
        .unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_owned())
}

/// Asserts the handshake is refused with `status` (through the tungstenite client) and
/// that the response body says `reason`.
async fn assert_refused(url: &str, headers: &[(&str, &str)], status: u16, reason: &str) {
    match Client::connect_with(url, headers).await {
        Ok(c) => panic!("{url} was accepted as {}", c.user),
        Err(got) => assert_eq!(got, status, "{url} {headers:?}"),
    }
    let (got, body) = raw_upgrade(url, headers).await;
    assert_eq!(got, status, "{url} {headers:?}");
    assert!(
        body.contains(reason),
        "{url}: body {body:?} lacks {reason:?}"
    );
}

/// Joins `room`, publishes, and checks the message comes back.
async fn assert_round_trip(c: &mut Client, room: &str, text: &str) {
    let join = c.join(room, json!({})).await;
    assert_eq!(join["ok"], true, "{join}");
    let (reply, others) = c
        .request(json!({"op": "publish", "room": room, "data": {"text": text}}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert!(
        others
            .iter()
            .any(|m| m["op"] == "message" && m["data"]["text"] == text),
        "{others:?}"
    );
}

#[track_caller]
fn assert_forbidden(reply: &Value) {
    assert_eq!(reply["op"], "reply", "{reply}");
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["error"]["code"], "forbidden", "{reply}");
    assert!(reply["error"]["message"].is_string(), "{reply}");
    assert!(reply.get("data").is_none(), "{reply}");
}

// ---------------------------------------------------------------------------------
// An application's own authenticator
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_authenticator_accepts_and_refuses_at_the_handshake() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let hub = test_hub_builder()
        .authenticator(Sessions { seen: seen.clone() })
        .build();
    let base = serve(&hub).await;
    let url = format!("{base}ws");

    // A session cookie, as a browser sends it.
    let ann = Client::connect_with(
        &url,
        &[
            ("cookie", "theme=dark; sid=s-ann"),
            ("user-agent", "test/1"),
        ],
    )
    .await
    .expect("ann's cookie is accepted");
    assert_eq!(ann.user, "ann");
    {
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.path, "/ws");
        assert_eq!(seen.user_agent.as_deref(), Some("test/1"));
        let peer = seen.peer.expect("the authenticator sees the peer address");
        assert!(peer.ip().is_loopback(), "{peer}");
    }
    // The same session from the query string.
    let bob = Client::connect(&format!("{url}?token=s-bob")).await;
    assert_eq!(bob.user, "bob");

    assert_refused(&url, &[], 401, "no session").await;
    assert_refused(
        &format!("{url}?token=s-nobody"),
        &[],
        401,
        "session expired",
    )
    .await;
    assert_refused(
        &url,
        &[("cookie", "sid=s-mallory")],
        403,
        "account suspended",
    )
    .await;
    assert_refused(
        &format!("{url}?token=s-mallory"),
        &[],
        403,
        "account suspended",
    )
    .await;
    // Refused handshakes never became connections.
    assert_eq!(hub.stats().connections, 2);
    drop((ann, bob));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorize_refusals_are_forbidden_replies() {
    let hub = test_hub_builder()
        .authenticator(Sessions::default())
        .build();
    let url = serve(&hub).await;
    let mut ann = Client::connect_with(&url, &[("cookie", "sid=s-ann")])
        .await
        .unwrap();
    let mut bob = Client::connect_with(&url, &[("cookie", "sid=s-bob")])
        .await
        .unwrap();

    // Join refused for bob, allowed for ann.
    let (reply, others) = bob
        .request(json!({"op": "join", "room": "chat:staff-room"}))
        .await;
    assert_forbidden(&reply);
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("chat:staff-room")
    );
    assert!(others.is_empty(), "{others:?}");
    let (reply, _) = bob
        .request(json!({"op": "presence", "room": "chat:staff-room"}))
        .await;
    assert_eq!(
        reply["error"]["code"], "not_joined",
        "the refused join left no trace"
    );
    ann.join_ok("chat:staff-room").await;
    assert_eq!(
        hub.room::<ChatMessage>("chat:staff-room")
            .unwrap()
            .member_count(),
        1
    );

    // Publish refused for bob in a room he may join.
    ann.join_ok("chat:announce-1").await;
    bob.join_ok("chat:announce-1").await;
    let diff = ann.recv_diff_about("bob").await;
    assert_eq!(
        diff["joins"]["bob"]["metas"][0]["conn_id"],
        json!(bob.conn_id)
    );
    let (reply, others) = bob
        .request(json!({"op": "publish", "room": "chat:announce-1", "data": {"text": "me!"}}))
        .await;
    assert_forbidden(&reply);
    assert!(
        others.is_empty(),
        "bob got his own refused message: {others:?}"
    );
    assert_eq!(ann.recv_nothing(Duration::from_millis(300)).await, None);

    // Ann may; bob receives it; bob's connection still works elsewhere.
    let reply = ann
        .publish("chat:announce-1", json!({"text": "welcome"}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(
        common::hub::stored(&bob.recv().await),
        json!({"op": "message", "room": "chat:announce-1", "from": "ann",
               "data": {"text": "welcome"}})
    );
    assert_round_trip(&mut bob, "chat:general", "bob is fine").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_authenticator_with_a_room_policy() {
    // Guests may join anything but publish only to chat:public-*.
    let auth = AllowAnonymous::new().authorize_with(|id, room, action| {
        action != Action::Publish || id.claim("guest").is_none() || room.starts_with("chat:public-")
    });
    let hub = test_hub_builder().authenticator(auth).build();
    let url = serve(&hub).await;
    let mut guest = Client::connect(&format!("{url}?name=Zo%C3%AB")).await;
    assert!(guest.user.starts_with("guest-"), "{}", guest.user);
    guest.join_ok("chat:lobby").await;
    let reply = guest.publish("chat:lobby", json!({"text": "hi"})).await;
    assert_forbidden(&reply);
    assert_round_trip(&mut guest, "chat:public-lobby", "hi").await;
    // The name from ?name= shows in presence.
    let (reply, _) = guest
        .request(json!({"op": "presence", "room": "chat:lobby"}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert!(
        reply["data"]["presence"].get(&guest.user).is_some(),
        "{reply}"
    );
}

// ---------------------------------------------------------------------------------
// Static tokens
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_tokens_from_the_header_or_the_query() {
    let tokens = StaticTokens::new()
        .with("t-ann", Identity::new("ann", "Ann"))
        .with("t+odd/chars=", Identity::new("odd", "Odd"));
    let hub = test_hub_builder().authenticator(tokens).build();
    let url = serve(&hub).await;

    let ann = Client::connect_with(&url, &[("authorization", "Bearer t-ann")])
        .await
        .unwrap();
    assert_eq!(ann.user, "ann");
    let ann2 = Client::connect_with(&url, &[("authorization", "bearer   t-ann")])
        .await
        .unwrap();
    assert_eq!(ann2.user, "ann");
    let mut ann3 = Client::connect(&format!("{url}?token=t-ann")).await;
    assert_eq!(ann3.user, "ann");
    let odd = Client::connect(&format!("{url}?x=1&token=t%2Bodd%2Fchars%3D")).await;
    assert_eq!(odd.user, "odd");
    // One user, three connections, distinct conn ids.
    assert_ne!(ann.conn_id, ann2.conn_id);
    assert_ne!(ann2.conn_id, ann3.conn_id);

    assert_refused(&url, &[], 401, "missing token").await;
    assert_refused(
        &url,
        &[("authorization", "Bearer nope")],
        401,
        "invalid token",
    )
    .await;
    assert_refused(&format!("{url}?token=nope"), &[], 401, "invalid token").await;
    assert_refused(&format!("{url}?token="), &[], 401, "missing token").await;
    // A token is not a password for another scheme.
    assert_refused(
        &url,
        &[("authorization", "Basic t-ann")],
        401,
        "missing token",
    )
    .await;
    // The header wins over the query.
    assert_refused(
        &format!("{url}?token=t-ann"),
        &[("authorization", "Bearer nope")],
        401,
        "invalid token",
    )
    .await;

    assert_round_trip(&mut ann3, "chat:tokens", "hello").await;
}

// ---------------------------------------------------------------------------------
// JWT
// ---------------------------------------------------------------------------------

#[cfg(feature = "jwt")]
mod jwt {
    use std::time::{Instant, SystemTime, UNIX_EPOCH};

    use futures_util::StreamExt;
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    use tokio_tungstenite::tungstenite::Message;
    use wshub::auth::JwtAuth;

    use super::*;

    const SECRET: &[u8] = b"wshub-test-secret-0123456789abcdef";

    fn now_secs() -> f64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    }

    fn hs256(claims: &Value, secret: &[u8]) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    fn rs256(claims: &Value) -> String {
        let key = EncodingKey::from_rsa_pem(TEST_PRIVATE_PEM.as_bytes()).unwrap();
        encode(&Header::new(Algorithm::RS256), claims, &key).unwrap()
    }

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    /// Reads until the server's close frame; returns its code and reason. Then answers
    /// the close and reads until the server ends the connection.
    async fn read_close(c: &mut Client) -> (u16, String) {
        let close = loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), c.ws.next())
                .await
                .expect("timed out waiting for the close frame");
            match msg {
                Some(Ok(Message::Close(Some(f)))) => {
                    break (u16::from(f.code), f.reason.to_string());
                }
                Some(Ok(Message::Close(None))) => break (1005, String::new()),
                Some(Ok(_)) => {}
                other => panic!("connection ended without a close frame: {other:?}"),
            }
        };
        while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(5), c.ws.next()).await
        {
        }
        close
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hs256_valid_expired_and_forged_tokens() {
        let hub = test_hub_builder()
            .authenticator(JwtAuth::hs256(SECRET))
            .build();
        let url = serve(&hub).await;
        let exp = now_secs() as u64 + 600;

        let token = hs256(&json!({"sub": "u42", "name": "Ann", "exp": exp}), SECRET);
        let mut c = Client::connect_with(&url, &[("authorization", &bearer(&token))])
            .await
            .expect("a valid token connects");
        assert_eq!(c.user, "u42", "welcome.user is the sub");
        // The same token from the query string.
        let c2 = Client::connect(&format!("{url}?token={token}")).await;
        assert_eq!(c2.user, "u42");
        // The display name is not the user id: presence is keyed by sub.
        let join = c.join("chat:jwt", json!({})).await;
        assert!(join["data"]["presence"].get("u42").is_some(), "{join}");
        assert_round_trip(&mut c, "chat:jwt", "signed in").await;

        let expired = hs256(
            &json!({"sub": "u42", "exp": now_secs() as u64 - 10}),
            SECRET,
        );
        assert_refused(
            &url,
            &[("authorization", &bearer(&expired))],
            401,
            "token expired",
        )
        .await;
        assert_refused(&format!("{url}?token={expired}"), &[], 401, "token expired").await;

        let forged = hs256(
            &json!({"sub": "u42", "exp": exp}),
            b"not-the-secret-not-the-secret!!!!",
        );
        assert_refused(
            &url,
            &[("authorization", &bearer(&forged))],
            401,
            "invalid token",
        )
        .await;
        // A valid signature over other claims does not transfer.
        let mut parts: Vec<&str> = token.split('.').collect();
        let admin = hs256(&json!({"sub": "admin", "exp": exp}), b"x");
        parts[1] = admin.split('.').nth(1).unwrap();
        let spliced = parts.join(".");
        assert_refused(
            &url,
            &[("authorization", &bearer(&spliced))],
            401,
            "invalid token",
        )
        .await;
        // `alg: none` is never accepted.
        let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
        assert_refused(
            &url,
            &[("authorization", &bearer(&unsigned))],
            401,
            "invalid token",
        )
        .await;
        let no_exp = hs256(&json!({"sub": "u42"}), SECRET);
        assert_refused(
            &url,
            &[("authorization", &bearer(&no_exp))],
            401,
            "token lacks a required claim",
        )
        .await;
        assert_refused(&url, &[], 401, "missing token").await;
        assert_eq!(hub.stats().connections, 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connection_is_closed_with_1008_when_its_token_expires() {
        let hub = test_hub_builder()
            .authenticator(JwtAuth::hs256(SECRET))
            .build();
        let url = serve(&hub).await;
        let long = hs256(
            &json!({"sub": "watcher", "exp": now_secs() as u64 + 600}),
            SECRET,
        );
        let mut watcher = Client::connect_with(&url, &[("authorization", &bearer(&long))])
            .await
            .unwrap();
        watcher.join_ok("chat:expiry").await;

        // A token that expires 1.5 to 2.5 s from now (`exp` is in whole seconds).
        let exp = (now_secs() + 1.5).ceil() as u64;
        let exp_at = UNIX_EPOCH + Duration::from_secs(exp);
        let short = hs256(&json!({"sub": "brief", "exp": exp}), SECRET);
        let mut brief = Client::connect_with(&url, &[("authorization", &bearer(&short))])
            .await
            .expect("a token that has not expired yet connects");
        assert_eq!(brief.user, "brief");
        brief.join_ok("chat:expiry").await;
        let joined = watcher.recv_diff_about("brief").await;
        assert!(joined["joins"].get("brief").is_some(), "{joined}");
        // It works until it expires.
        assert_round_trip(&mut brief, "chat:expiry", "while it lasts").await;
        assert_eq!(watcher.recv().await["data"]["text"], "while it lasts");

        let started = Instant::now();
        let (code, reason) = read_close(&mut brief).await;
        let closed_at = SystemTime::now();
        assert_eq!(code, 1008, "{reason}");
        assert_eq!(reason, "token expired");
        assert!(
            closed_at + Duration::from_millis(50) >= exp_at,
            "closed {:?} before the token expired",
            exp_at.duration_since(closed_at).unwrap_or_default()
        );
        let late = closed_at.duration_since(exp_at).unwrap_or_default();
        assert!(
            late < Duration::from_secs(2),
            "closed {late:?} after expiry"
        );
        assert!(started.elapsed() < Duration::from_secs(4));

        // The room hears that it left, and nothing it could still say gets through.
        let leave = watcher.recv_diff_about("brief").await;
        assert_eq!(leave["room"], "chat:expiry");
        assert!(leave["leaves"].get("brief").is_some(), "{leave}");
        assert_eq!(leave["joins"], json!({}), "{leave}");
        assert_eq!(hub.stats().expired, 1);
        let room = hub.room::<ChatMessage>("chat:expiry").unwrap();
        assert_eq!(room.member_count(), 1);
        assert!(!room.presence().contains("brief"));
        // Reconnecting with the expired token is refused.
        assert_refused(
            &url,
            &[("authorization", &bearer(&short))],
            401,
            "token expired",
        )
        .await;
        assert_round_trip(&mut watcher, "chat:expiry", "still here").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rs256_tokens() {
        let hub = test_hub_builder()
            .authenticator(JwtAuth::rs256_pem(TEST_PUBLIC_PEM).unwrap())
            .build();
        let url = serve(&hub).await;
        let exp = now_secs() as u64 + 600;
        let token = rs256(&json!({"sub": "u9", "name": "Nine", "exp": exp, "role": "mod"}));
        let mut c = Client::connect(&format!("{url}?token={token}")).await;
        assert_eq!(c.user, "u9");
        assert_round_trip(&mut c, "chat:rsa", "signed with RSA").await;

        let expired = rs256(&json!({"sub": "u9", "exp": now_secs() as u64 - 10}));
        assert_refused(
            &url,
            &[("authorization", &bearer(&expired))],
            401,
            "token expired",
        )
        .await;
        // Algorithm confusion: HS256 keyed with the public key must not pass.
        let confused = hs256(
            &json!({"sub": "admin", "exp": exp}),
            TEST_PUBLIC_PEM.as_bytes(),
        );
        assert_refused(
            &url,
            &[("authorization", &bearer(&confused))],
            401,
            "invalid token",
        )
        .await;
        // Nor an HS256 token with any other secret.
        let hs = hs256(&json!({"sub": "u9", "exp": exp}), SECRET);
        assert_refused(
            &url,
            &[("authorization", &bearer(&hs))],
            401,
            "invalid token",
        )
        .await;
        // A tampered payload breaks the signature.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let other = rs256(&json!({"sub": "root", "exp": exp}));
        parts[1] = other.split('.').nth(1).unwrap().to_owned();
        assert_refused(
            &url,
            &[("authorization", &bearer(&parts.join(".")))],
            401,
            "invalid token",
        )
        .await;
        assert_eq!(hub.stats().connections, 1);
    }

    // The throwaway key pair of the unit tests in src/auth.rs (made with
    // `openssl genrsa 2048` for tests only).
    const TEST_PRIVATE_PEM: &str = include_str!("keys/test_rsa.pem");

    const TEST_PUBLIC_PEM: &str = include_str!("keys/test_rsa_pub.pem");
}
