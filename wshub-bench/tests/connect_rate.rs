//! `connect-rate` against in-process hubs: every scheduled connection authenticates,
//! joins and closes; a handshake refused by the server is counted by its HTTP status.

mod common;

use std::time::Duration;

use wshub_bench::phases::Schedule;
use wshub_bench::scenario::connect_rate;

fn opts(n: u64) -> connect_rate::ConnectRateOpts {
    // n connections over 250 ms.
    connect_rate::ConnectRateOpts {
        schedule: Some(Schedule::fixed(Duration::from_millis(250), n as f64 * 4.0)),
        progress: false,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_tokens_connect_join_and_close() {
    let hub = common::hub(40);
    let addr = common::serve(hub.clone()).await;
    let r = connect_rate::run(common::target(addr).await, opts(40))
        .await
        .unwrap();
    assert!(r.errors.is_empty(), "errors: {:?}", r.errors);
    assert_eq!(r.details["attempts"], 40, "{}", r.table());
    assert_eq!(r.details["completed"], 40);
    assert_eq!(r.connected, 40);
    assert_eq!(r.latency.count, 40);
    assert!(r.failures.is_empty());
    assert!(r.details["connects_per_s"].as_f64().unwrap() > 0.0);
    // Every connection closed again.
    assert_eq!(r.delivered_ratio, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_minted_per_connection() {
    let addr = common::serve(common::jwt_hub("s3cret")).await;
    let mut target = common::target(addr).await;
    target.token = None;
    target.jwt_secret = Some("s3cret".into());
    let r = connect_rate::run(target.clone(), opts(20)).await.unwrap();
    assert!(r.errors.is_empty(), "errors: {:?}", r.errors);
    assert_eq!(r.details["completed"], 20, "{}", r.table());
    assert_eq!(r.latency.count, 20);

    // The wrong secret: every handshake refused with 401, counted by status.
    target.jwt_secret = Some("wrong".into());
    let r = connect_rate::run(target, opts(20)).await.unwrap();
    assert_eq!(r.details["completed"], 0);
    assert_eq!(r.connected, 0);
    assert_eq!(r.failures, [("401".to_string(), 20)].into());
}
