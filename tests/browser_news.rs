//! The news_feed example (`examples/news_feed.rs`) in a real browser: headless
//! Chromium driven by `tests/browser/news.mjs` (playwright-core) shows, live and
//! newest first, the articles the script POSTs over HTTP; driven by
//! `tests/browser/news_history.mjs`, through a proxy that cuts connections, it fills
//! itself from the room's history and recovers what it missed.
//!
//! Needs Node.js >= 20, Chromium and `npm ci --prefix tests/peers`; without them the
//! test FAILS saying what to install (`bash .ci/run` installs everything). On a
//! failure the script saves a screenshot and the HTML of the page in
//! `target/browser-screenshots/`; the failure message lists them.
#![cfg(all(feature = "axum", feature = "tls"))]

mod common;
#[path = "../examples/news_feed.rs"]
#[allow(dead_code)]
mod news_feed;
#[path = "browser/support.rs"]
mod support;

use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::TcpListener;

use common::cut_proxy::CutProxy;
use news_feed::{NewArticle, NewsOptions, NewsServer};

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

    // The page fills itself from the room's history when it starts: the article posted
    // before it opened is there too.
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

async fn start_news() -> NewsServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    news_feed::start(listener, NewsOptions::default())
        .await
        .expect("starting the news_feed example")
}

/// Publishes an article titled `title` on `server`, as `POST /articles` does.
async fn publish(server: &NewsServer, title: &str) -> Result<u64, String> {
    let new = NewArticle {
        title: title.to_owned(),
        body: format!("The body of {title}."),
        url: None,
    };
    server
        .articles
        .publish(new)
        .await
        .map(|a| a.id)
        .map_err(|e| e.to_string())
}

/// History and recovery in the page (`PROTOCOL.md` section 9), through a proxy that
/// cuts connections without a close frame. The page shows the 3 articles POSTed before
/// it opened without asking `GET /articles` (it joins with `history`); while 60 more
/// are published, one every 10 ms, the proxy cuts its connection twice, and it shows
/// all 63 once each, newest first; after a new hub takes over the address (a restart,
/// a new epoch) it shows exactly the new hub's articles, then a live one, without a
/// reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_fills_itself_from_history_and_recovers() {
    const FIRST: u64 = 4;
    const LAST: u64 = 63;
    const CUT_EVERY: u64 = 20;
    const HELD: u64 = 5;
    let mut server = start_news().await;
    let proxy = CutProxy::start(server.local_addr).await;
    let mut cuts = 0;

    let outcome = support::run_script(
        "news_history.mjs",
        &proxy.http_url("/"),
        Duration::from_secs(60),
        async |cmd: &str| -> Result<String, String> {
            match cmd {
                "stream" => {
                    // A steady rate; the reconnection is held for the HELD articles
                    // after each cut, so each recovery has those at least to send.
                    let room = server
                        .hub
                        .room::<news_feed::Article>(news_feed::ROOM)
                        .map_err(|e| e.to_string())?;
                    let members = || room.connections().iter().map(|c| c.conn_id).collect();
                    let mut cut_member = None;
                    let mut tick = tokio::time::interval(Duration::from_millis(10));
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    for n in FIRST..=LAST {
                        tick.tick().await;
                        let id = publish(&server, &format!("Article {n}")).await?;
                        if id != n {
                            return Err(format!("article {n} got id {id}"));
                        }
                        let k = n - FIRST + 1;
                        if k % CUT_EVERY == 0 && n < LAST {
                            // Each cut cuts the page's latest connection, once it is
                            // back in the room (its reconnection waits up to 500 ms).
                            cut_member = Some(support::one_new_member(members, cut_member).await?);
                            proxy.hold();
                            proxy.cut();
                            cuts += 1;
                        }
                        if k % CUT_EVERY == HELD {
                            proxy.release();
                        }
                    }
                    proxy.release();
                    Ok(format!("published {}, cut {cuts} times", LAST - FIRST + 1))
                }
                "restart" => {
                    let next = start_news().await;
                    for title in ["After restart 1", "After restart 2"] {
                        publish(&next, title).await?;
                    }
                    proxy.retarget(next.local_addr);
                    let old = std::mem::replace(&mut server, next);
                    tokio::time::timeout(Duration::from_secs(10), old.shutdown())
                        .await
                        .map_err(|_| "the old server did not stop within 10 s".to_owned())?
                        .map_err(|e| format!("the old server stopped with an error: {e}"))?;
                    Ok(format!("restarted on {}", server.local_addr))
                }
                other => match other.strip_prefix("publish ") {
                    Some(title) => publish(&server, title).await.map(|id| format!("id {id}")),
                    None => Err(format!("unknown control command `{other}`")),
                },
            }
        },
    )
    .await;
    let report = outcome.assert_ok();
    let fail = || outcome.report();
    assert_eq!(cuts, 2, "{}", fail());
    assert_eq!(
        report["on_load"],
        json!([[3, "Early 3"], [2, "Early 2"], [1, "Early 1"]]),
        "{}",
        fail()
    );
    assert_eq!(report["after_cuts"], LAST, "{}", fail());
    assert_eq!(
        report["connections_after_cuts"],
        3,
        "one connection, then one per cut\n{}",
        fail()
    );
    // Each cut is recovered (`since`), not papered over by reloading the history: the
    // re-join is answered `recovered: true` with what was missed, at least the HELD
    // articles published while the reconnection was held.
    let recoveries = report["recoveries_after_cuts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(recoveries.len(), 2, "one re-join per cut\n{}", fail());
    for r in &recoveries {
        let (since, replayed) = (r["since"].as_u64(), r["replayed"].as_u64());
        assert_eq!(r["recovered"], true, "{r}\n{}", fail());
        assert_eq!(
            r["seq"].as_u64(),
            since.zip(replayed).map(|(s, n)| s + n),
            "everything after `since` is replayed: {r}\n{}",
            fail()
        );
        assert!(replayed.unwrap_or(0) >= HELD, "{r}\n{}", fail());
    }
    // The restart is not: the new hub cannot vouch for the old positions, and replays
    // its 2 articles.
    assert_eq!(
        report["recoveries"][2],
        json!({"since": LAST, "recovered": false, "replayed": 2, "seq": 2}),
        "{}",
        fail()
    );
    assert_eq!(
        report["after_restart"],
        json!([
            [3, "Live after restart"],
            [2, "After restart 2"],
            [1, "After restart 1"]
        ]),
        "{}",
        fail()
    );
    assert_eq!(
        report["list_requests"],
        json!([]),
        "the page never asks GET /articles\n{}",
        fail()
    );
    assert_eq!(report["dialogs"], json!([]), "{}", fail());
    assert_eq!(report["page_errors"], json!([]), "{}", fail());
    server.shutdown().await.unwrap();
}
