//! `reconnect-storm` against in-process hubs: after a cut (by the generator, or a
//! server restart) every client reconnects and rejoins, and each reconnect time is
//! recorded.

mod common;

use std::time::Duration;

use wshub_bench::scenario::reconnect_storm;

const CLIENTS: usize = 20;

fn opts() -> reconnect_storm::ReconnectStormOpts {
    reconnect_storm::ReconnectStormOpts {
        connections: CLIENTS,
        rooms: 2,
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(100),
        give_up: Duration::from_secs(10),
        progress: false,
        ..Default::default()
    }
}

fn assert_all_back(r: &wshub_bench::report::Report) {
    assert_eq!(r.connected, CLIENTS as u64);
    assert_eq!(r.dropped, CLIENTS as u64, "{}", r.table());
    assert_eq!(r.details["reconnected"], CLIENTS as u64, "{}", r.table());
    assert_eq!(r.details["gave_up"], 0);
    assert_eq!(r.details["dropped_again"], 0);
    assert_eq!(r.latency.count, CLIENTS as u64);
    assert_eq!(r.delivered_ratio, 1.0);
    // No reconnect outlasts the storm (the histogram keeps 3 significant digits).
    let storm_us = r.details["storm_s"].as_f64().unwrap() * 1e6;
    assert!(r.latency.max_us <= storm_us * 1.001 + 1.0, "{}", r.table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generator_cut_then_everyone_reconnects() {
    let addr = common::serve(common::hub(CLIENTS)).await;
    let opts = reconnect_storm::ReconnectStormOpts {
        cut_after: Some(Duration::from_millis(50)),
        ..opts()
    };
    let r = reconnect_storm::run(common::target(addr).await, opts)
        .await
        .unwrap();
    assert!(r.errors.is_empty(), "errors: {:?}", r.errors);
    assert_eq!(r.details["attempts"], CLIENTS as u64);
    assert_all_back(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_then_everyone_reconnects() {
    let old = common::hub(CLIENTS);
    let addr = common::serve(old.clone()).await;
    let storm = tokio::spawn(reconnect_storm::run(common::target(addr).await, opts()));
    // Restart once every client has joined: shut the old hub down (1001 to
    // everyone), then serve a new one on the same port.
    let members = |hub: &wshub::Hub| -> usize {
        (0..2)
            .filter_map(|r| {
                hub.find_room::<serde_json::Value>(&format!("bench:storm-{r}"))
                    .unwrap()
            })
            .map(|room| room.member_count())
            .sum()
    };
    while members(&old) < CLIENTS {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    old.shutdown().await;
    common::serve_at(common::hub(CLIENTS), addr).await;
    let r = storm.await.unwrap().unwrap();
    assert_all_back(&r);
    // Attempts before the new server listened were refused, and retried.
    let failures = r.details["reconnect_failures"].as_object().unwrap();
    let refused = failures
        .get("refused")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    assert_eq!(
        r.details["attempts"],
        CLIENTS as u64 + refused,
        "{}",
        r.table()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejoins_recover_what_was_published_meanwhile() {
    // One more token for the publisher (connection index CLIENTS).
    let addr = common::serve(common::hub(CLIENTS + 1)).await;
    let opts = reconnect_storm::ReconnectStormOpts {
        cut_after: Some(Duration::from_millis(200)),
        publish_rate: Some(200.0),
        ..opts()
    };
    let r = reconnect_storm::run(common::target(addr).await, opts)
        .await
        .unwrap();
    assert!(r.errors.is_empty(), "errors: {:?}", r.errors);
    assert_all_back(&r);
    // Every rejoin carried a position (messages arrived before the cut) and the hub,
    // which kept its history, recovered each one: nothing skipped, nothing twice.
    assert_eq!(r.details["recovered"], CLIENTS as u64, "{}", r.table());
    assert_eq!(r.details["not_recovered"], 0);
    assert_eq!(r.details["gaps"], 0, "{}", r.table());
    assert_eq!(r.details["duplicates"], 0, "{}", r.table());
    assert!(r.details["published"].as_u64().unwrap() > 0);
    assert!(r.details["messages_received"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_rejoins_are_not_recovered() {
    let old = common::hub(CLIENTS + 1);
    let addr = common::serve(old.clone()).await;
    let opts = reconnect_storm::ReconnectStormOpts {
        publish_rate: Some(200.0),
        ..opts()
    };
    let storm = tokio::spawn(reconnect_storm::run(common::target(addr).await, opts));
    // Every client and the publisher joined, and a message reached every client
    // (the publisher's are counted per client), so that each holds a position.
    let room = |hub: &wshub::Hub, r: usize| {
        hub.find_room::<serde_json::Value>(&format!("bench:storm-{r}"))
            .unwrap()
    };
    loop {
        let members: usize = (0..2)
            .filter_map(|r| room(&old, r))
            .map(|room| room.member_count())
            .sum();
        if members == CLIENTS + 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Two stored messages per room (20 ms at 200/s): the hub counts them.
    while old.stats().history_messages < 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    old.shutdown().await;
    common::serve_at(common::hub(CLIENTS + 1), addr).await;
    let r = storm.await.unwrap().unwrap();
    assert_all_back(&r);
    // The new hub's streams have another epoch: no rejoin can be recovered, and the
    // report says so rather than counting the difference as gaps.
    assert_eq!(r.details["recovered"], 0, "{}", r.table());
    assert_eq!(r.details["not_recovered"], CLIENTS as u64, "{}", r.table());
    assert_eq!(r.details["gaps"], 0, "{}", r.table());
    assert_eq!(r.details["duplicates"], 0);
}
