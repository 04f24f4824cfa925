//! `echo` against an in-process echo server, closed and open loop: every request is
//! echoed, one latency sample each.

mod common;

use std::time::Duration;

use wshub_bench::conn::Target;
use wshub_bench::phases::Schedule;
use wshub_bench::scenario::echo;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_closed_and_open_loop() {
    let url = common::serve_echo().await;
    let target = Target::resolve(&url).await.unwrap();
    let closed = echo::run(
        target.clone(),
        echo::EchoOpts {
            connections: 4,
            duration: Duration::from_millis(500),
            progress: false,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(closed.connected, 4);
    assert_eq!(closed.expected, closed.sent);
    common::assert_complete(&closed);

    let open = echo::run(
        target,
        echo::EchoOpts {
            connections: 4,
            schedule: Some(Schedule::fixed(Duration::from_millis(500), 400.0)),
            progress: false,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(open.sent, 200);
    common::assert_complete(&open);
}
