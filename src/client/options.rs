//! How a client waits, retries and bounds itself: [`ClientOptions`], [`Backoff`],
//! [`TokenPlacement`].

use std::time::Duration;

use rand::Rng;

use crate::ws::WsConfig;
use crate::ws::handshake::ClientConfig;

/// Settings of a [`Client`](super::Client). Start from `ClientOptions::default()` (or
/// [`ClientBuilder::configure`](super::ClientBuilder::configure)) and change fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// How long to wait between connection attempts. Default: [`Backoff::default`]
    /// (500 ms base, 10 s cap, no limit on attempts).
    pub backoff: Backoff,
    /// How long `publish`, `call`, `join` and `leave` wait for their reply, counted
    /// from the call (time spent waiting for a connection included). Default: 15 s:
    /// longer than the hub's default `rpc_timeout` (10 s), so a slow method's
    /// `timeout` reply from the server arrives before the client gives up on it.
    pub request_timeout: Duration,
    /// Most requests (publishes with a reply, calls) waiting for their reply at once,
    /// over all handles. One more waits for a place (within its timeout). Default: 128,
    /// above the hub's burst of 100 messages, so a client is not held back by itself
    /// before the server would refuse it anyway (`rate_limited`), and bounded, so an
    /// application that publishes while the server is away cannot pile up requests.
    pub max_pending_requests: usize,
    /// Events a room's [`Subscription`](super::Subscription) holds for the application.
    /// When it is full the oldest event is dropped and the application is told how
    /// many with a [`RoomEvent::Lagged`](super::RoomEvent::Lagged): a handle that is
    /// not read never holds up the socket, the other rooms or the replies. Default:
    /// 1,024 (a room's whole default history, 100 messages, ten times over).
    pub room_buffer: usize,
    /// [`ClientEvent`](super::ClientEvent)s an [`Events`](super::Events) receiver holds
    /// before the oldest are dropped (it then gets a `Lagged`). Default: 64; the
    /// current state is always readable with [`Client::state`](super::Client::state).
    pub event_buffer: usize,
    /// A connection that has received nothing (not even a ping) for this long is
    /// taken as lost and replaced. The hub pings every 25 s by default, so a live
    /// connection is never idle that long. Set it above the server's ping interval.
    /// Default: 60 s (the hub's own `pong_timeout`).
    pub idle_timeout: Duration,
    /// The engine's handshake settings: extra headers (an `Origin`, cookies), the
    /// handshake timeout (default 10 s, which also bounds the TCP and TLS connects and
    /// the token provider), permessage-deflate (offered by default). The client always
    /// offers the `wshub.v1` subprotocol and sets `Authorization` itself when the token
    /// goes in the header.
    pub handshake: ClientConfig,
    /// The engine's connection settings (message size limits, outbound queue, close
    /// timeout). Default: [`WsConfig::default`].
    pub ws: WsConfig,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            backoff: Backoff::default(),
            request_timeout: Duration::from_secs(15),
            max_pending_requests: 128,
            room_buffer: 1024,
            event_buffer: 64,
            idle_timeout: Duration::from_secs(60),
            handshake: ClientConfig::default(),
            ws: WsConfig::default(),
        }
    }
}

/// Exponential backoff with full jitter between connection attempts.
///
/// The wait before attempt `n` (counted from 1 since the last connection that was
/// established, or since the client started) is a uniformly random duration in
/// `[0, min(cap, base * 2^(n-1))]`; the first attempt after starting has no wait.
/// "Full jitter" spreads the clients of a restarted server over the whole window,
/// so they do not all come back at the same instant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backoff {
    /// The longest first wait. Default: 500 ms (as `wshub.js`): a server that only
    /// dropped the connection is back in a quarter of a second on average.
    pub base: Duration,
    /// The longest wait of all. Default: 10 s (as `wshub.js`): a client comes back at
    /// most about 10 s after a long outage ends.
    pub cap: Duration,
    /// Give up after this many failed attempts in a row (`None`: never). Default:
    /// `None`: a client of a long outage comes back when the server does, at the cost
    /// of one attempt every `cap / 2` on average meanwhile. Policy closes (1000,
    /// 4000-4999, a refused token) end the client whatever this says.
    pub max_attempts: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(10),
            max_attempts: None,
        }
    }
}

impl Backoff {
    /// A backoff with this `base` and `cap`, and no limit on attempts.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap,
            max_attempts: None,
        }
    }

    /// Sets [`max_attempts`](Self::max_attempts).
    pub fn with_max_attempts(mut self, max_attempts: Option<u32>) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// The longest wait before attempt `attempt` (from 1): `min(cap, base *
    /// 2^(attempt-1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.base
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.cap)
            .min(self.cap)
    }

    /// A random wait in `[0, ceiling(attempt)]`.
    pub(crate) fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=nanos))
    }
}

/// Where the client puts its token in the upgrade request (PROTOCOL.md section 1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TokenPlacement {
    /// `Authorization: Bearer <token>`, which the built-in authenticators read first.
    /// The default: headers stay out of access logs.
    #[default]
    Header,
    /// A query parameter of this name, percent-encoded: `?token=<token>` for the
    /// built-in authenticators (`"token"`), as browsers must send it.
    Query(String),
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let ceilings: Vec<u64> = (1..=7).map(|n| b.ceiling(n).as_millis() as u64).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000, 1000]);
        // No overflow however many attempts.
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(1));
        let huge = Backoff::new(Duration::from_secs(u64::MAX / 4), Duration::MAX);
        assert_eq!(huge.ceiling(40), Duration::MAX);
    }

    #[test]
    fn delays_are_spread_over_the_whole_window() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 1..=6 {
            let ceiling = b.ceiling(attempt);
            let delays: Vec<Duration> = (0..200).map(|_| b.delay(attempt, &mut rng)).collect();
            assert!(delays.iter().all(|d| *d <= ceiling), "attempt {attempt}");
            // Full jitter: both halves of the window are used.
            assert!(delays.iter().any(|d| *d < ceiling / 2), "attempt {attempt}");
            assert!(delays.iter().any(|d| *d > ceiling / 2), "attempt {attempt}");
        }
    }
}
