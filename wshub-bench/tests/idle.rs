//! `idle` against an in-process hub: every connection opens, joins and is held to the
//! end, and with the server's pid (this process) the report carries its RSS.

mod common;

use std::time::Duration;

use wshub_bench::scenario::idle;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_holds_every_connection_and_reads_server_rss() {
    let hub = common::hub(30);
    let addr = common::serve(hub.clone()).await;
    let opts = idle::IdleOpts {
        connections: 30,
        rooms: 2,
        hold: Duration::from_millis(200),
        server_pid: Some(std::process::id()),
        progress: false,
        ..Default::default()
    };
    let r = idle::run(common::target(addr).await, opts).await.unwrap();
    assert!(r.errors.is_empty(), "errors: {:?}", r.errors);
    assert_eq!((r.connected, r.connect_failed, r.dropped), (30, 0, 0));
    assert_eq!(r.details["held"], 30);
    // The `bench` namespace tracks presence: every join reply said so.
    assert_eq!(r.details["joined_with_presence"], 30);
    for key in [
        "server_rss_before_kib",
        "server_rss_joined_kib",
        "server_rss_end_kib",
    ] {
        assert!(r.details[key].as_u64().unwrap() > 0, "{}", r.table());
    }
    assert!(r.details["server_rss_per_conn_kib"].is_f64());
    assert!(r.table().contains("server_rss_per_conn_kib"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_counts_refused_connections() {
    // Ten tokens, twenty connections: the last ten are refused with 401.
    let addr = common::serve(common::hub(10)).await;
    let opts = idle::IdleOpts {
        connections: 20,
        hold: Duration::from_millis(50),
        progress: false,
        ..Default::default()
    };
    let r = idle::run(common::target(addr).await, opts).await.unwrap();
    assert_eq!((r.connected, r.connect_failed, r.dropped), (10, 10, 0));
    assert_eq!(r.failures, [("401".to_string(), 10)].into());
    assert_eq!(r.details["held"], 10);
    assert!(r.details.get("server_rss_end_kib").is_none());
}
