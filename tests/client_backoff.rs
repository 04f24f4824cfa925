//! `wshub::client`'s reconnect backoff on tokio's paused clock: against a port nobody
//! listens on, each wait before attempt `n` is within `[0, min(cap, base * 2^(n-1))]`,
//! the client waits exactly that long, the same seed gives the same waits, and the
//! client gives up after `max_attempts` failures in a row.

mod common;

use std::time::Duration;

use tokio::time::Instant;
use wshub::client::{Backoff, Client, ClientEvent, ConnectionState, Disconnect};

/// A `ws://` URL on which nothing listens (refused at once).
async fn dead_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("ws://{addr}/")
}

/// Runs a client with this backoff and seed to its end; returns each attempt's number,
/// each announced wait and how long the client really waited, and the final state.
async fn run(
    backoff: Backoff,
    seed: u64,
) -> (Vec<u32>, Vec<(Duration, Duration)>, ConnectionState) {
    let client = Client::builder(dead_url().await)
        .jitter_seed(seed)
        .configure(|o| o.backoff = backoff)
        .build()
        .unwrap();
    let mut events = client.events();
    let mut attempts = Vec::new();
    let mut waits = Vec::new();
    let mut announced: Option<(Duration, Instant)> = None;
    while let Some(event) = events.recv().await {
        let ClientEvent::State(state) = event else {
            continue;
        };
        match state {
            ConnectionState::Connecting { attempt } => {
                if let Some((retry_in, at)) = announced.take() {
                    waits.push((retry_in, at.elapsed()));
                }
                attempts.push(attempt);
            }
            ConnectionState::Disconnected { reason, retry_in } => {
                assert!(matches!(reason, Disconnect::Error(_)), "{reason:?}");
                announced = Some((retry_in, Instant::now()));
            }
            terminal @ ConnectionState::GaveUp { .. } => return (attempts, waits, terminal),
            other => panic!("{other:?}"),
        }
    }
    panic!("the events ended without a terminal state");
}

#[tokio::test(start_paused = true)]
async fn waits_grow_with_full_jitter_and_attempts_stop_at_the_max() {
    let base = Duration::from_millis(100);
    let cap = Duration::from_millis(1600);
    let backoff = Backoff::new(base, cap).with_max_attempts(Some(9));
    let (attempts, waits, end) = run(backoff.clone(), 1).await;

    assert_eq!(attempts, (1..=9).collect::<Vec<_>>());
    assert!(
        matches!(
            end,
            ConnectionState::GaveUp {
                attempts: 9,
                reason: Disconnect::Error(_)
            }
        ),
        "{end:?}"
    );
    assert_eq!(waits.len(), 8, "a wait before each attempt but the first");
    for (i, (announced, waited)) in waits.iter().enumerate() {
        let attempt = i as u32 + 2;
        let ceiling = cap.min(base * 2u32.pow(attempt - 1));
        assert_eq!(backoff.ceiling(attempt), ceiling);
        assert!(
            *announced <= ceiling,
            "attempt {attempt}: {announced:?} > {ceiling:?}"
        );
        // The paused clock only moves for the client's own sleep, which tokio's
        // timer rounds up to its next millisecond.
        assert!(
            waited >= announced && *waited <= *announced + Duration::from_millis(1),
            "attempt {attempt}: waited {waited:?} for {announced:?}"
        );
    }
    // Jittered, not fixed: the waits are not all at their ceiling.
    assert!(
        waits
            .iter()
            .enumerate()
            .any(|(i, (w, _))| *w < backoff.ceiling(i as u32 + 2) / 2),
        "{waits:?}"
    );

    // The same seed, the same waits; another seed, other waits.
    let (_, again, _) = run(backoff.clone(), 1).await;
    assert_eq!(again, waits);
    let (_, other, _) = run(backoff, 2).await;
    assert_ne!(other, waits);
}

#[tokio::test(start_paused = true)]
async fn one_attempt_means_no_retry() {
    let backoff =
        Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).with_max_attempts(Some(1));
    let (attempts, waits, end) = run(backoff, 3).await;
    assert_eq!(attempts, [1]);
    assert!(waits.is_empty());
    assert!(
        matches!(end, ConnectionState::GaveUp { attempts: 1, .. }),
        "{end:?}"
    );
}
