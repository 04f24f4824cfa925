//! The news_feed example (`examples/news_feed.rs`) in a real browser: headless
//! Chromium driven by `tests/browser/news.mjs` (playwright-core) shows, live and
//! newest first, the articles the script POSTs over HTTP.
//!
//! Needs Node.js >= 20, Chromium and `npm ci --prefix tests/peers`; without them the
//! test FAILS saying what to install (`bash .ci/run` installs everything). On a
//! failure the script saves a screenshot and the HTML of the page in
//! `target/browser-screenshots/`; the failure message lists them.
#![cfg(all(feature = "axum", feature = "tls"))]

#[path = "../examples/news_feed.rs"]
#[allow(dead_code)]
mod news_feed;
#[path = "browser/support.rs"]
mod support;

use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;

use news_feed::NewsOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_articles_posted_over_http() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = news_feed::start(listener, NewsOptions::default())
        .await
        .expect("starting the news_feed example");

    let outcome = support::run_script(
        "news.mjs",
        &server.url(),
        Duration::from_secs(45),
        support::no_control,
    )
    .await;
    let report = outcome.assert_ok();
    let fail = || outcome.report();

    // The page loads GET /articles when it starts: the article posted before it opened
    // is there too.
    assert_eq!(report["listed_on_load"], true, "{}", fail());
    assert_eq!(report["dialogs"], serde_json::json!([]), "{}", fail());
    assert_eq!(report["page_errors"], serde_json::json!([]), "{}", fail());
    let shown: Vec<&str> = report["order"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();

    // The page shows what the server lists, in the same order.
    let listed = support::http(server.local_addr, "GET", "/articles", &[], b"").await;
    assert_eq!(listed.status, 200, "{listed}");
    let listed = listed.json();
    let titles: Vec<&str> = listed["articles"]
        .as_array()
        .expect("articles")
        .iter()
        .filter_map(|a| a["title"].as_str())
        .collect();
    assert_eq!(shown, titles, "page vs GET /articles\n{}", fail());
    assert_eq!(titles.len(), 3, "{listed}");

    server.shutdown().await.unwrap();
}
