//! The chat example's display names over real HTTP (`POST /login`, `GET /session`),
//! against the example's server started in this process: invisible, control, bidi
//! and look-alike characters are refused with a 400 naming the problem, names are
//! NFKC-normalised, reserved names are refused, a name (and every name that looks
//! like it) is held by one person at a time, who keeps it by presenting their token,
//! and the registry of names is bounded.
#![cfg(all(feature = "axum", feature = "tls", feature = "jwt"))]

#[path = "../examples/chat.rs"]
#[allow(dead_code)]
mod chat;
#[path = "browser/support.rs"]
mod support;

use std::net::SocketAddr;

use serde_json::{Value, json};
use tokio::net::TcpListener;

use chat::{ChatOptions, ChatServer};
use support::{HttpResponse, post_json};

async fn start_chat(options: ChatOptions) -> ChatServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    chat::start(listener, options)
        .await
        .expect("starting the chat example")
}

/// `POST /login` for `name`, with the login cookie `cookie` if given.
async fn login(addr: SocketAddr, name: &str, cookie: Option<&str>) -> HttpResponse {
    let body = json!({ "name": name }).to_string();
    let mut headers = vec![("Content-Type", "application/json")];
    let cookie = cookie.map(|c| format!("chat_token={c}"));
    if let Some(cookie) = &cookie {
        headers.push(("Cookie", cookie));
    }
    support::http(addr, "POST", "/login", &headers, body.as_bytes()).await
}

/// The token of a successful login.
fn token(resp: &HttpResponse) -> String {
    assert_eq!(resp.status, 200, "{resp}");
    resp.json()["token"].as_str().expect("a token").to_owned()
}

/// `GET /session` for `token`: what the hub's handshake would say of it.
async fn session(addr: SocketAddr, token: &str) -> HttpResponse {
    support::http(addr, "GET", &format!("/session?token={token}"), &[], b"").await
}

fn error(resp: &HttpResponse) -> Value {
    resp.json()["error"].clone()
}

/// Each of the attack's inputs gets 400, naming the field and the problem.
#[tokio::test]
async fn invisible_control_and_look_alike_characters_are_refused() {
    let server = start_chat(ChatOptions::default()).await;
    let addr = server.local_addr;
    let invisible = |cp: &str| format!("names may not contain invisible characters ({cp})");
    let cases = [
        ("soft hyphen", "al\u{AD}ice", invisible("U+00AD")),
        ("word joiner", "al\u{2060}ice", invisible("U+2060")),
        (
            "Mongolian vowel separator",
            "alice\u{180E}",
            invisible("U+180E"),
        ),
        (
            "tag characters",
            "alice\u{E0061}\u{E0062}",
            invisible("U+E0061"),
        ),
        ("Hangul filler", "\u{3164}", invisible("U+3164")),
        ("zero-width space", "al\u{200B}ice", invisible("U+200B")),
        (
            "blank Braille pattern",
            "al\u{2800}ice",
            "names may only contain letters, digits, spaces and - _ . ' (U+2800 is not allowed)"
                .into(),
        ),
        (
            "a Cyrillic а in a Latin name",
            "\u{430}lice",
            "names must use one script (this one mixes Cyrillic and Latin)".into(),
        ),
        (
            "a Greek ο in a Latin name",
            "b\u{3BF}b",
            "names must use one script (this one mixes Latin and Greek)".into(),
        ),
        (
            "a dot above a dotless i, drawn as i",
            "al\u{131}\u{307}ce",
            "names may not contain combining accents (U+0307): type the accented letter itself"
                .into(),
        ),
        (
            "an overlay mark",
            "alic\u{338}e",
            "names may only contain letters, digits, spaces and - _ . ' (U+0338 is not allowed)"
                .into(),
        ),
        (
            "a right-to-left override",
            "alice\u{202E}nimda",
            "names may not contain bidirectional text controls (U+202E)".into(),
        ),
        (
            "a bell",
            "ali\u{7}ce",
            "names may not contain control characters (U+0007)".into(),
        ),
        (
            "a newline",
            "ali\nce",
            "names may not contain control characters (U+000A)".into(),
        ),
        (
            "HTML",
            "<b>eve</b>",
            "names may only contain letters, digits, spaces and - _ . ' (U+003C is not allowed)"
                .into(),
        ),
        (
            "two spaces",
            "mary  jane",
            "names may only have single spaces between words".into(),
        ),
        (
            "too long",
            &"a".repeat(33),
            "names must be 1 to 32 characters long".into(),
        ),
    ];
    for (what, name, expected) in cases {
        let resp = login(addr, name, None).await;
        assert_eq!(resp.status, 400, "{what}: {resp}");
        assert_eq!(error(&resp), expected.as_str(), "{what}: {resp}");
        assert_eq!(resp.json()["field"], "name", "{what}: {resp}");
    }
    server.shutdown().await.unwrap();
}

/// A Kelvin sign K is taken as K: the login, the token and the session all carry
/// the NFKC form.
#[tokio::test]
async fn names_are_nfkc_normalised_and_trimmed() {
    let server = start_chat(ChatOptions::default()).await;
    let addr = server.local_addr;
    for (typed, name, user) in [
        ("\u{212A}elvin", "Kelvin", "kelvin"),
        ("  Ｚｏｅ ", "Zoe", "zoe"),
        ("Jose\u{301}", "José", "josé"),
        ("O\u{2019}Neil", "O'Neil", "o'neil"),
    ] {
        let resp = login(addr, typed, None).await;
        let token = token(&resp);
        assert_eq!(resp.json()["name"], name, "{typed:?}: {resp}");
        assert_eq!(resp.json()["user"], user, "{typed:?}: {resp}");
        let session = session(addr, &token).await;
        assert_eq!(session.status, 200, "{session}");
        assert_eq!(session.json()["name"], name, "{typed:?}: {session}");
        assert_eq!(session.json()["user"], user, "{typed:?}: {session}");
    }
    server.shutdown().await.unwrap();
}

/// Names that would pass for the service are refused in any spelling.
#[tokio::test]
async fn reserved_names_are_refused() {
    let server = start_chat(ChatOptions::default()).await;
    let addr = server.local_addr;
    for (typed, shown) in [
        ("ADMIN", "ADMIN"),
        ("admin", "admin"),
        ("Ad-Min", "Ad-Min"),
        ("ＳＹＳＴＥＭ", "SYSTEM"),
        ("r00t", "r00t"),
        ("Moderator", "Moderator"),
        ("server", "server"),
    ] {
        let resp = login(addr, typed, None).await;
        assert_eq!(resp.status, 400, "{typed}: {resp}");
        assert_eq!(
            error(&resp),
            format!("the name \"{shown}\" is reserved"),
            "{typed}: {resp}"
        );
    }
    server.shutdown().await.unwrap();
}

/// Real names in other scripts and with basic punctuation are accepted as typed.
#[tokio::test]
async fn names_in_other_scripts_are_accepted() {
    let server = start_chat(ChatOptions::default()).await;
    let addr = server.local_addr;
    for name in [
        "José",
        "Zoë",
        "Дмитрий",
        "山田太郎",
        "O'Brien",
        "Mary-Jane",
        "Ελένη",
        "김민준",
        "j.doe_2",
    ] {
        let resp = login(addr, name, None).await;
        assert_eq!(resp.status, 200, "{name}: {resp}");
        assert_eq!(resp.json()["name"], name, "{resp}");
        assert_eq!(resp.json()["user"], name.to_lowercase(), "{resp}");
    }
    server.shutdown().await.unwrap();
}

/// A held name, and every name that looks like it, gets 409 for anyone but its
/// holder, who gets it again by presenting a valid token (the cookie `POST /login`
/// sets, or `token` in the body).
#[tokio::test]
async fn a_taken_name_is_refused_to_others_and_kept_by_its_holder() {
    let server = start_chat(ChatOptions::default()).await;
    let addr = server.local_addr;

    let alice = login(addr, "alice", None).await;
    let alice_token = token(&alice);
    let cookie = alice
        .header("set-cookie")
        .expect("a login cookie")
        .to_owned();
    assert!(
        cookie.starts_with(&format!("chat_token={alice_token};")),
        "{cookie}"
    );
    for attribute in [
        "Path=/login",
        "HttpOnly",
        "SameSite=Strict",
        "Max-Age=43200",
    ] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    // Over plain http a browser would drop a `Secure` cookie.
    assert!(!cookie.contains("Secure"), "{cookie}");

    for (what, name) in [
        ("another case", "Alice"),
        ("capitals", "ALICE"),
        ("a capital I for the l", "AIice"),
        ("fullwidth letters", "ａｌｉｃｅ"),
    ] {
        let resp = login(addr, name, None).await;
        assert_eq!(resp.status, 409, "{what}: {resp}");
        assert_eq!(resp.json()["field"], "name", "{resp}");
        let shown = resp.json()["error"].as_str().unwrap_or_default().to_owned();
        assert!(
            shown.starts_with("the name \"")
                && shown.ends_with("is taken (or looks like one that is): pick another"),
            "{what}: {resp}"
        );
    }
    // A whole-script look-alike: Cyrillic р, а, с, е for Latin "pace".
    token(&login(addr, "pace", None).await);
    let resp = login(addr, "\u{440}\u{430}\u{441}\u{435}", None).await;
    assert_eq!(resp.status, 409, "{resp}");
    assert_eq!(
        error(&resp),
        "the name \"\u{440}\u{430}\u{441}\u{435}\" is taken (or looks like one that is): pick another"
    );

    // Someone else's valid token does not help.
    let bob_token = token(&login(addr, "bob", None).await);
    let resp = login(addr, "Alice", Some(&bob_token)).await;
    assert_eq!(resp.status, 409, "{resp}");

    // Alice's cookie does, in any case, and so does her token in the body; she is
    // the same user each time.
    let again = login(addr, "Alice", Some(&alice_token)).await;
    token(&again);
    assert_eq!(again.json()["user"], "alice", "{again}");
    assert_eq!(again.json()["name"], "Alice", "{again}");
    let body = json!({"name": "alice", "token": alice_token});
    let again = post_json(addr, "/login", &body).await;
    assert_eq!(again.status, 200, "{again}");
    assert_eq!(again.json()["user"], "alice", "{again}");

    // Bob is still bob, and alice's tokens still work.
    let resp = login(addr, "Bob", None).await;
    assert_eq!(resp.status, 409, "{resp}");
    assert_eq!(session(addr, &alice_token).await.status, 200);
    server.shutdown().await.unwrap();
}

/// At most `max_names` names are held: past that, logins get 503 and the holders
/// keep theirs.
#[tokio::test]
async fn the_registry_of_names_is_bounded() {
    let server = start_chat(ChatOptions {
        max_names: 3,
        ..ChatOptions::default()
    })
    .await;
    let addr = server.local_addr;
    let mut tokens = Vec::new();
    for name in ["ann", "bea", "cy"] {
        tokens.push(token(&login(addr, name, None).await));
    }
    let resp = login(addr, "dee", None).await;
    assert_eq!(resp.status, 503, "{resp}");
    assert_eq!(error(&resp), "too many names are in use: try again later");
    // A holder still signs in again, and still connects.
    let resp = login(addr, "Ann", Some(&tokens[0])).await;
    assert_eq!(resp.status, 200, "{resp}");
    assert_eq!(session(addr, &tokens[1]).await.status, 200);
    server.shutdown().await.unwrap();
}

/// After a restart with the same key the registry is empty: the first to come back
/// with a name gets it, from a token or a login, and the other is told.
#[tokio::test]
async fn after_a_restart_the_holder_of_a_token_takes_its_name_back() {
    let options = ChatOptions {
        secret: Some(b"chat_names test key".to_vec()),
        ..ChatOptions::default()
    };
    let first = start_chat(options.clone()).await;
    let alice_token = token(&login(first.local_addr, "alice", None).await);
    first.shutdown().await.unwrap();

    // Alice's token comes back first: the name is hers again.
    let second = start_chat(options.clone()).await;
    let addr = second.local_addr;
    assert_eq!(session(addr, &alice_token).await.status, 200);
    let resp = login(addr, "Alice", None).await;
    assert_eq!(resp.status, 409, "{resp}");
    second.shutdown().await.unwrap();

    // Someone else signs in as alice first: her old token is refused, saying why.
    let third = start_chat(options).await;
    let addr = third.local_addr;
    token(&login(addr, "ALICE", None).await);
    let resp = session(addr, &alice_token).await;
    assert_eq!(resp.status, 401, "{resp}");
    assert_eq!(
        error(&resp),
        "this name is now held by someone else: sign in again"
    );
    third.shutdown().await.unwrap();
}

/// One host cannot hold every name: past a burst of 20 sign-ins it gets one every 6 s
/// (429 in between). Refused sign-ins (a bad or taken name) do not count.
#[tokio::test]
async fn one_host_cannot_sign_in_every_name() {
    let server = start_chat(ChatOptions::default()).await;
    let addr = server.local_addr;
    // Refusals are free.
    for _ in 0..30 {
        assert_eq!(login(addr, "ADMIN", None).await.status, 400);
    }
    for i in 0..20 {
        let resp = login(addr, &format!("user{i}"), None).await;
        assert_eq!(resp.status, 200, "sign-in {i}: {resp}");
    }
    let resp = login(addr, "user20", None).await;
    assert_eq!(resp.status, 429, "{resp}");
    assert_eq!(
        error(&resp),
        "too many sign-ins from your address: try again in a minute"
    );
    server.shutdown().await.unwrap();
}
