//! `broadcast` against an in-process hub for about a second: every message expected
//! arrives, and the latency histogram holds one sample per delivery.

mod common;

use std::time::Duration;

use wshub_bench::phases::Schedule;
use wshub_bench::scenario::broadcast;

const SUBSCRIBERS: usize = 20;
const ROOMS: usize = 2;
const PUBLISHERS: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_paced_delivers_everything() {
    let addr = common::serve(common::hub(SUBSCRIBERS + PUBLISHERS)).await;
    let target = common::target(addr).await;
    let opts = broadcast::BroadcastOpts {
        subscribers: SUBSCRIBERS,
        rooms: ROOMS,
        publishers: PUBLISHERS,
        schedule: Some(Schedule::fixed(Duration::from_secs(1), 200.0)),
        progress: false,
        ..Default::default()
    };
    let r = broadcast::run(target, opts).await.unwrap();
    assert_eq!(r.connected, (SUBSCRIBERS + PUBLISHERS) as u64);
    assert_eq!(r.sent, 200);
    // Each room holds 10 subscribers and 1 publisher, who gets its own messages.
    assert_eq!(r.expected, 200 * 11);
    common::assert_complete(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_burst_with_header_token() {
    let addr = common::serve(common::hub(SUBSCRIBERS + PUBLISHERS)).await;
    let mut target = common::target(addr).await;
    target.token_in_header = true;
    let opts = broadcast::BroadcastOpts {
        subscribers: SUBSCRIBERS,
        rooms: 1,
        publishers: 1,
        messages: Some(500),
        size: 256,
        progress: false,
        ..Default::default()
    };
    let r = broadcast::run(target, opts).await.unwrap();
    assert_eq!(r.sent, 500);
    assert_eq!(r.expected, 500 * (SUBSCRIBERS as u64 + 1));
    common::assert_complete(&r);
}
