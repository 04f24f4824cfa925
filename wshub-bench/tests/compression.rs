//! `broadcast --deflate`: every subscriber negotiates permessage-deflate with the hub
//! (wshub's engine client), 1.5 KiB messages all arrive, and `--server-pid` reports the
//! server's CPU per publish (the hub runs in this process).

mod common;

use wshub_bench::scenario::broadcast;

const SUBSCRIBERS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_subscribers_get_everything() {
    let addr = common::serve(common::hub(SUBSCRIBERS + 1)).await;
    let mut target = common::target(addr).await;
    target.deflate = true;
    let opts = broadcast::BroadcastOpts {
        subscribers: SUBSCRIBERS,
        messages: Some(200),
        size: 1536,
        server_pid: Some(std::process::id()),
        progress: false,
        ..Default::default()
    };
    let r = broadcast::run(target, opts).await.unwrap();
    assert_eq!(r.details["compressed_subscribers"], SUBSCRIBERS as u64);
    assert_eq!(r.expected, 200 * (SUBSCRIBERS as u64 + 1));
    common::assert_complete(&r);
    assert!(r.details["server_cpu_per_publish_ms"].as_f64().unwrap() >= 0.0);
    assert!(r.details["server_rss_kib"].as_u64().unwrap() > 0);
}
