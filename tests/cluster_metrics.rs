//! The backplane in the metrics (features `redis` and `metrics`): a node's scrape
//! shows Redis failures by operation, rooms closed because continuity was lost, and
//! the bus queue, each series from the start at zero. Redis is killed under a member
//! of a room with history: a publish fails `unavailable` (one publish error), the
//! subscription drops (one loss), Redis comes back empty so the member is closed with
//! 1013 (one continuity loss), and the node serves again.

mod common;

use std::time::Duration;

use common::hub::{Client, serve, test_hub_builder};
use common::services::RedisServer;
use serde_json::json;
use wshub::Hub;
use wshub::redis::{RedisBackplane, RedisOptions};

/// The value of `series` (a name with its labels) in a scrape of `hub`.
fn sample(hub: &Hub, series: &str) -> f64 {
    let text = hub.metrics_text().expect("metrics are on");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

fn backplane_samples(hub: &Hub) -> [f64; 5] {
    [
        r#"wshub_backplane_errors_total{op="publish"}"#,
        r#"wshub_backplane_errors_total{op="presence"}"#,
        r#"wshub_backplane_errors_total{op="subscription"}"#,
        "wshub_backplane_gaps_filled_total",
        "wshub_backplane_continuity_losses_total",
    ]
    .map(|s| sample(hub, s))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_shows_in_the_metrics() {
    let mut redis = RedisServer::start();
    let mut options = RedisOptions::default();
    options.command_timeout = Duration::from_millis(300);
    options.reconnect_min = Duration::from_millis(20);
    options.reconnect_max = Duration::from_millis(200);
    let hub = test_hub_builder()
        .backplane(RedisBackplane::new(&redis.url(), options).unwrap())
        .build();
    let url = serve(&hub).await;

    let mut c = Client::connect(&url).await;
    c.join_ok("chat:m").await;
    let r = c.publish("chat:m", json!({"text": "one"})).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(backplane_samples(&hub), [0.0; 5]);
    assert_eq!(sample(&hub, "wshub_backplane_bus_queue"), 0.0);

    redis.kill();
    let r = c.publish("chat:m", json!({"text": "lost"})).await;
    assert_eq!(r["error"]["code"], "unavailable", "{r}");
    let mut redis = tokio::task::spawn_blocking(move || {
        redis.start_again();
        redis
    })
    .await
    .unwrap();
    // Back, but empty: the room's history is gone, so its member is closed to re-join
    // and learn it did not recover.
    assert_eq!(c.expect_close().await, 1013);

    // Serving again (a publish waits for the subscription, so the loss was seen).
    let mut d = Client::connect(&url).await;
    d.join_ok("chat:m").await;
    let r = d.publish("chat:m", json!({"text": "again"})).await;
    assert_eq!(r["ok"], true, "{r}");
    // publish, presence, subscription, gaps filled, continuity losses. Presence
    // writes may or may not have failed: the re-sync that follows the resubscription
    // (and the closed member's leave) race the command connection's own reconnect.
    let [publish, _presence, subscription, gaps, continuity] = backplane_samples(&hub);
    assert_eq!(
        [publish, subscription, gaps, continuity],
        [1.0, 1.0, 0.0, 1.0]
    );
    redis.kill();
}
