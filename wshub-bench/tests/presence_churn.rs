//! `presence-churn` against an in-process hub: the churners run every scheduled
//! join-leave cycle, members receive presence diffs, and every member's view ends with
//! exactly the members in it.

mod common;

use std::time::Duration;

use wshub_bench::phases::Schedule;
use wshub_bench::scenario::presence_churn;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_is_announced_and_views_end_right() {
    // Unpaced: a churning room's diffs would otherwise come up to a second apart,
    // and a 250 ms stay could fall within one gap and go unannounced.
    let addr = common::serve(common::unpaced_hub(13)).await;
    let opts = presence_churn::PresenceChurnOpts {
        members: 10,
        churners: 3,
        // 6 cycles over 1.2 s: each churner's two cycles 600 ms apart, each 250 ms in
        // the room. Both the stay and the gap outlast wshub's 100 ms presence tick, so
        // every join and every leave is announced, to every member.
        schedule: Some(Schedule::fixed(Duration::from_millis(1200), 5.0)),
        dwell: Duration::from_millis(250),
        drain: Duration::from_millis(500),
        progress: false,
        ..Default::default()
    };
    let r = presence_churn::run(common::target(addr).await, opts)
        .await
        .unwrap();
    assert!(r.errors.is_empty(), "errors: {:?}", r.errors);
    assert_eq!((r.connected, r.connect_failed, r.dropped), (13, 0, 0));
    assert_eq!(r.details["cycles"], 6, "{}", r.table());
    assert_eq!(r.latency.count, 6);
    assert_eq!(r.details["joins_announced"], 6 * 10, "{}", r.table());
    assert_eq!(r.details["leaves_announced"], 6 * 10, "{}", r.table());
    assert!(r.details["diff_bytes"].as_u64().unwrap() > 0);
    assert_eq!(r.details["stale_views"], 0, "{}", r.table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_cycles_leave_views_right() {
    // No dwell: joins and leaves inside one tick may go unannounced, but every
    // member's view must still end with exactly the members.
    let addr = common::serve(common::hub(13)).await;
    let opts = presence_churn::PresenceChurnOpts {
        members: 10,
        churners: 3,
        schedule: Some(Schedule::fixed(Duration::from_millis(600), 20.0)),
        // Paced diffs (the default hub): the last may come up to `presence_tick_max`
        // (1 s) after the one before.
        drain: Duration::from_millis(1500),
        progress: false,
        ..Default::default()
    };
    let r = presence_churn::run(common::target(addr).await, opts)
        .await
        .unwrap();
    assert!(r.errors.is_empty(), "errors: {:?}", r.errors);
    assert_eq!(r.details["cycles"], 12, "{}", r.table());
    assert_eq!(r.details["joins_announced"], r.details["leaves_announced"]);
    assert_eq!(r.details["stale_views"], 0, "{}", r.table());
}
