//! `broadcast --proto socketio` against a relay speaking engine.io v4 / Socket.IO: the
//! generator completes the open (`0{..}`, `40`, answering a ping on the way), publishes
//! `42["msg",DATA]` events and counts the relayed ones.

mod common;

use wshub_bench::conn::{Proto, Target};
use wshub_bench::phases::Schedule;
use wshub_bench::scenario::broadcast;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_events_reach_every_socket() {
    let url = common::serve_relay(true).await;
    let mut target = Target::resolve(&url).await.unwrap();
    target.proto = Proto::SocketIo;
    let opts = broadcast::BroadcastOpts {
        subscribers: 10,
        schedule: Some(Schedule::fixed(
            std::time::Duration::from_millis(500),
            200.0,
        )),
        progress: false,
        ..Default::default()
    };
    let r = broadcast::run(target, opts).await.unwrap();
    assert_eq!(r.connected, 11);
    assert_eq!(r.sent, 100);
    assert_eq!(r.expected, 100 * 11);
    common::assert_complete(&r);
}
