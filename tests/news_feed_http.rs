//! The news_feed example's HTTP API (`examples/news_feed.rs`), started in this
//! process: every kind of bad input to `POST /articles` gets its exact status and a
//! JSON error naming the field at fault, and publishes nothing; a good article is
//! listed by `GET /articles` and reaches a WebSocket client (tokio-tungstenite) that
//! joined `news:latest`; clients may not publish there themselves.
#![cfg(all(feature = "axum", feature = "tls"))]

mod common;
#[path = "../examples/news_feed.rs"]
#[allow(dead_code)]
mod news_feed;
#[path = "browser/support.rs"]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::net::TcpListener;

use common::hub::Client;
use news_feed::{NewsOptions, NewsServer};
use support::{HttpResponse, http, post_json};

async fn start_news() -> NewsServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    news_feed::start(listener, NewsOptions::default())
        .await
        .expect("starting the news_feed example")
}

/// `POST /articles` with this content type (none if `None`) and raw body.
async fn post_raw(addr: SocketAddr, content_type: Option<&str>, body: &[u8]) -> HttpResponse {
    let headers: Vec<(&str, &str)> = content_type
        .map(|ct| vec![("Content-Type", ct)])
        .unwrap_or_default();
    http(addr, "POST", "/articles", &headers, body).await
}

/// Asserts a JSON error: `status`, a non-empty `error` and `field` (or none).
#[track_caller]
fn assert_error(resp: &HttpResponse, status: u16, field: Option<&str>, case: &str) {
    assert_eq!(resp.status, status, "{case}: {resp}");
    assert!(
        resp.header("content-type")
            .is_some_and(|ct| ct.starts_with("application/json")),
        "{case}: errors are JSON: {resp}"
    );
    let body = resp.json();
    let error = body["error"].as_str().unwrap_or_default();
    assert!(!error.is_empty(), "{case}: no `error` message: {resp}");
    match field {
        Some(field) => {
            assert_eq!(body["field"], field, "{case}: the field at fault: {resp}");
            assert!(
                error.contains(field),
                "{case}: the message should name {field}: {resp}"
            );
        }
        None => assert!(
            body.get("field").is_none(),
            "{case}: no field is at fault: {resp}"
        ),
    }
}

/// The articles `GET /articles` lists, newest first.
async fn list(addr: SocketAddr) -> Vec<Value> {
    let resp = http(addr, "GET", "/articles", &[], b"").await;
    assert_eq!(resp.status, 200, "GET /articles: {resp}");
    resp.json()["articles"]
        .as_array()
        .unwrap_or_else(|| panic!("GET /articles: no `articles` array: {resp}"))
        .clone()
}

/// A WebSocket client (tokio-tungstenite) joined to `news:latest`.
async fn reader(server: &NewsServer) -> Client {
    let mut client = Client::connect(&server.ws_url()).await;
    client.join_ok(news_feed::ROOM).await;
    client
}

#[tokio::test]
async fn bad_articles_are_refused_with_the_field_named() {
    let server = start_news().await;
    let addr = server.local_addr;
    let mut ws = reader(&server).await;

    let long_title = "t".repeat(news_feed::MAX_TITLE_CHARS + 1);
    let long_body = "b".repeat(news_feed::MAX_TEXT_CHARS + 1);
    let long_url = format!(
        "https://example.org/{}",
        "u".repeat(news_feed::MAX_URL_BYTES)
    );
    let field_cases: Vec<(&str, Value, &str)> = vec![
        ("missing title", json!({"body": "b"}), "title"),
        ("empty title", json!({"title": "", "body": "b"}), "title"),
        (
            "blank title",
            json!({"title": " \t ", "body": "b"}),
            "title",
        ),
        ("null title", json!({"title": null, "body": "b"}), "title"),
        ("numeric title", json!({"title": 42, "body": "b"}), "title"),
        ("array title", json!({"title": ["a"], "body": "b"}), "title"),
        (
            "object title",
            json!({"title": {"a": 1}, "body": "b"}),
            "title",
        ),
        (
            "boolean title",
            json!({"title": true, "body": "b"}),
            "title",
        ),
        (
            "title too long",
            json!({"title": long_title, "body": "b"}),
            "title",
        ),
        (
            "control character in title",
            json!({"title": "a\u{7}b", "body": "b"}),
            "title",
        ),
        (
            "line break in title",
            json!({"title": "a\nb", "body": "b"}),
            "title",
        ),
        (
            "title checked first",
            json!({"title": 1, "body": 2, "url": 3}),
            "title",
        ),
        ("missing body", json!({"title": "t"}), "body"),
        ("empty body", json!({"title": "t", "body": ""}), "body"),
        ("numeric body", json!({"title": "t", "body": 7}), "body"),
        ("array body", json!({"title": "t", "body": ["b"]}), "body"),
        (
            "body too long",
            json!({"title": "t", "body": long_body}),
            "body",
        ),
        (
            "control character in body",
            json!({"title": "t", "body": "a\u{0}b"}),
            "body",
        ),
        (
            "numeric url",
            json!({"title": "t", "body": "b", "url": 5}),
            "url",
        ),
        (
            "object url",
            json!({"title": "t", "body": "b", "url": {}}),
            "url",
        ),
        (
            "javascript: url",
            json!({"title": "t", "body": "b", "url": "javascript:alert(1)"}),
            "url",
        ),
        (
            "JavaScript: url",
            json!({"title": "t", "body": "b", "url": "JavaScript:alert(1)"}),
            "url",
        ),
        (
            "data: url",
            json!({"title": "t", "body": "b", "url": "data:text/html,<script>alert(1)</script>"}),
            "url",
        ),
        (
            "ftp: url",
            json!({"title": "t", "body": "b", "url": "ftp://example.org/f"}),
            "url",
        ),
        (
            "relative url",
            json!({"title": "t", "body": "b", "url": "/articles/1"}),
            "url",
        ),
        (
            "scheme-relative url",
            json!({"title": "t", "body": "b", "url": "//example.org/"}),
            "url",
        ),
        (
            "url without host",
            json!({"title": "t", "body": "b", "url": "https://"}),
            "url",
        ),
        (
            "url with a space",
            json!({"title": "t", "body": "b", "url": "https://exa mple.org/"}),
            "url",
        ),
        (
            "url too long",
            json!({"title": "t", "body": "b", "url": long_url}),
            "url",
        ),
    ];
    for (case, body, field) in &field_cases {
        let resp = post_json(addr, "/articles", body).await;
        assert_error(&resp, 400, Some(field), case);
    }

    let json_ct = Some("application/json");
    let request_cases: Vec<(&str, Option<&str>, Vec<u8>, u16)> = vec![
        (
            "invalid JSON",
            json_ct,
            br#"{"title": "t", "body": "#.to_vec(),
            400,
        ),
        ("not JSON at all", json_ct, b"title=t&body=b".to_vec(), 400),
        ("empty body", json_ct, Vec::new(), 400),
        (
            "a JSON array",
            json_ct,
            br#"[{"title": "t", "body": "b"}]"#.to_vec(),
            400,
        ),
        ("a JSON string", json_ct, br#""title""#.to_vec(), 400),
        ("JSON null", json_ct, b"null".to_vec(), 400),
        (
            "text/plain",
            Some("text/plain"),
            br#"{"title": "t", "body": "b"}"#.to_vec(),
            415,
        ),
        (
            "a form",
            Some("application/x-www-form-urlencoded"),
            b"title=t&body=b".to_vec(),
            415,
        ),
        (
            "multipart",
            Some("multipart/form-data; boundary=x"),
            b"--x--".to_vec(),
            415,
        ),
        (
            "no content type",
            None,
            br#"{"title": "t", "body": "b"}"#.to_vec(),
            415,
        ),
        (
            "json-ish content type",
            Some("application/jsonp"),
            br#"{"title": "t", "body": "b"}"#.to_vec(),
            415,
        ),
    ];
    for (case, content_type, body, status) in &request_cases {
        let resp = post_raw(addr, *content_type, body).await;
        assert_error(&resp, *status, None, case);
    }

    // Over the size limit: by Content-Length (answered before the body is read)...
    let limit = news_feed::MAX_BODY_BYTES;
    let huge = json!({"title": "t", "body": "b".repeat(2 * limit)}).to_string();
    let resp = post_json(addr, "/articles", &serde_json::from_str(&huge).unwrap()).await;
    assert_error(&resp, 413, None, "a body over the limit");
    // ...by the bytes actually sent (chunked: no Content-Length to go by)...
    let chunk = format!("{:x}\r\n{huge}\r\n0\r\n\r\n", huge.len());
    let resp = http(
        addr,
        "POST",
        "/articles",
        &[
            ("Content-Type", "application/json"),
            ("Transfer-Encoding", "chunked"),
        ],
        chunk.as_bytes(),
    )
    .await;
    assert_error(&resp, 413, None, "a chunked body over the limit");
    // ...and exactly at the limit: one byte more is too much.
    let at_limit = padded(r#"{"title": "At the limit", "body": "b"}"#, limit);
    let over_limit = padded(r#"{"title": "Over the limit", "body": "b"}"#, limit + 1);
    let resp = post_raw(addr, json_ct, over_limit.as_bytes()).await;
    assert_error(&resp, 413, None, "one byte over the limit");

    // Nothing was published nor kept.
    assert_eq!(list(addr).await, Vec::<Value>::new());
    assert_eq!(ws.recv_nothing(Duration::from_millis(300)).await, None);

    let resp = post_raw(addr, json_ct, at_limit.as_bytes()).await;
    assert_eq!(resp.status, 201, "a body of exactly {limit} bytes: {resp}");
    let msg = ws.recv().await;
    assert_eq!(msg["data"]["title"], "At the limit", "{msg}");
    // A charset parameter is still JSON.
    let resp = post_raw(
        addr,
        Some("Application/JSON; charset=utf-8"),
        br#"{"title": "With a charset", "body": "b"}"#,
    )
    .await;
    assert_eq!(resp.status, 201, "{resp}");
    assert_eq!(ws.recv().await["data"]["title"], "With a charset");

    ws.close().await;
    server.shutdown().await.unwrap();
}

/// `json` (an object) with spaces before its closing brace, `len` bytes in all.
fn padded(json: &str, len: usize) -> String {
    let open = json.strip_suffix('}').expect("an object");
    let out = format!("{open}{}}}", " ".repeat(len - json.len()));
    assert_eq!(out.len(), len);
    serde_json::from_str::<Value>(&out).expect("still JSON");
    out
}

#[tokio::test]
async fn a_good_article_is_listed_and_published_to_news_latest() {
    let server = start_news().await;
    let addr = server.local_addr;
    let mut alice = reader(&server).await;
    let mut bob = reader(&server).await;
    let before = now_ms();

    let resp = post_json(
        addr,
        "/articles",
        &json!({
            "title": "  Hello, <b>world</b>  ",
            "body": "Line one\nLine two\t(tabbed)\n",
            "url": " https://example.org/hello?a=1#top ",
            "ignored": "unknown fields are ignored",
        }),
    )
    .await;
    assert_eq!(resp.status, 201, "{resp}");
    let first = resp.json();
    assert_eq!(first["id"], 1, "{first}");
    assert_eq!(first["title"], "Hello, <b>world</b>", "trimmed: {first}");
    assert_eq!(
        first["body"], "Line one\nLine two\t(tabbed)",
        "trimmed: {first}"
    );
    assert_eq!(first["url"], "https://example.org/hello?a=1#top", "{first}");
    assert!(first.get("ignored").is_none(), "{first}");
    let at = first["published_at"].as_u64().expect("published_at");
    assert!((before..=now_ms()).contains(&at), "published_at {at}");

    // Both readers get it, typed, from the server (`from` null), in news:latest.
    for client in [&mut alice, &mut bob] {
        let msg = client.recv().await;
        assert_eq!(msg["op"], "message", "{msg}");
        assert_eq!(msg["room"], news_feed::ROOM, "{msg}");
        assert_eq!(msg["from"], Value::Null, "{msg}");
        assert_eq!(
            msg["data"], first,
            "the published article is the answered one"
        );
    }
    assert_eq!(list(addr).await, vec![first.clone()]);

    // No url (or an empty one): none in the article.
    for (n, body) in [
        json!({"title": "Second", "body": "no link"}),
        json!({"title": "Third", "body": "empty link", "url": ""}),
        json!({"title": "Fourth", "body": "null link", "url": null}),
    ]
    .into_iter()
    .enumerate()
    {
        let resp = post_json(addr, "/articles", &body).await;
        assert_eq!(resp.status, 201, "{body}: {resp}");
        let article = resp.json();
        assert_eq!(article["id"], n as u64 + 2, "{article}");
        assert!(article.get("url").is_none(), "{body}: {article}");
        assert_eq!(alice.recv().await["data"], article);
        assert_eq!(bob.recv().await["data"], article);
    }
    let titles: Vec<Value> = list(addr)
        .await
        .iter()
        .map(|a| a["title"].clone())
        .collect();
    assert_eq!(
        titles,
        [
            json!("Fourth"),
            json!("Third"),
            json!("Second"),
            json!("Hello, <b>world</b>")
        ]
    );

    // A client that joins later gets only what comes next (no history replay yet),
    // and GET /articles has the rest.
    let mut late = reader(&server).await;
    assert_eq!(late.recv_nothing(Duration::from_millis(200)).await, None);
    let resp = post_json(addr, "/articles", &json!({"title": "Fifth", "body": "b"})).await;
    assert_eq!(resp.status, 201, "{resp}");
    assert_eq!(late.recv().await["data"]["title"], "Fifth");

    for client in [alice, bob, late] {
        client.close().await;
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn only_the_server_publishes_to_news_latest() {
    let server = start_news().await;
    let mut mallory = reader(&server).await;
    let mut reader2 = reader(&server).await;

    let article = json!({"id": 999, "title": "Fake", "body": "fake", "published_at": 0});
    let reply = mallory.publish(news_feed::ROOM, article.clone()).await;
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["error"]["code"], "forbidden", "{reply}");
    // Fire-and-forget: a bare error, nothing delivered.
    mallory
        .send(json!({"op": "publish", "room": news_feed::ROOM, "data": article}))
        .await;
    let err = mallory.recv().await;
    assert_eq!(err["op"], "error", "{err}");
    assert_eq!(err["error"]["code"], "forbidden", "{err}");
    assert_eq!(reader2.recv_nothing(Duration::from_millis(300)).await, None);
    assert_eq!(list(server.local_addr).await, Vec::<Value>::new());

    // The connection stays usable: a real article still arrives.
    let resp = post_json(
        server.local_addr,
        "/articles",
        &json!({"title": "Real", "body": "b"}),
    )
    .await;
    assert_eq!(resp.status, 201, "{resp}");
    assert_eq!(mallory.recv().await["data"]["title"], "Real");
    assert_eq!(reader2.recv().await["data"]["title"], "Real");

    mallory.close().await;
    reader2.close().await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn get_articles_keeps_the_last_hundred_newest_first() {
    let server = start_news().await;
    let addr = server.local_addr;
    let total = news_feed::KEPT + 5;
    for n in 1..=total {
        let resp = post_json(
            addr,
            "/articles",
            &json!({"title": format!("#{n}"), "body": "b"}),
        )
        .await;
        assert_eq!(resp.status, 201, "{resp}");
    }
    let listed = list(addr).await;
    assert_eq!(listed.len(), news_feed::KEPT);
    let ids: Vec<u64> = listed.iter().filter_map(|a| a["id"].as_u64()).collect();
    let expected: Vec<u64> = (6..=total as u64).rev().collect();
    assert_eq!(ids, expected, "the newest {} first", news_feed::KEPT);
    server.shutdown().await.unwrap();
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
