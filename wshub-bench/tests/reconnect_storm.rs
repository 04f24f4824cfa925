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
