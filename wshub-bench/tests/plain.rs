//! `broadcast --proto plain` against a relay that sends every message to every client
//! (the seeds' `ws` server): the raw payload is the message, and every client,
//! publisher included, receives every one.

mod common;

use wshub_bench::conn::{Proto, Target};
use wshub_bench::scenario::broadcast;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_burst_reaches_every_client() {
    let url = common::serve_relay(false).await;
    let mut target = Target::resolve(&url).await.unwrap();
    target.proto = Proto::Plain;
    let opts = broadcast::BroadcastOpts {
        subscribers: 10,
        messages: Some(300),
        progress: false,
        ..Default::default()
    };
    let r = broadcast::run(target, opts).await.unwrap();
    assert_eq!(r.connected, 11);
    assert_eq!(r.sent, 300);
    assert_eq!(r.expected, 300 * 11);
    common::assert_complete(&r);
}
