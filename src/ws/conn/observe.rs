//! What a connection reports as it runs, for its owner's metrics (the hub's, with the
//! `metrics` feature). The engine knows nothing of metrics: it calls an observer it was
//! given, from the connection's own task.

use std::time::Duration;

/// Told of one connection's traffic and ping round trips.
///
/// Called from the connection's task on every read and write, so an implementation
/// must be cheap and must not block or lock anything shared: the hub's adds to
/// per-thread counters (`crate::metrics`), so connections on different cores never
/// touch the same cache line.
pub(crate) trait ConnObserver: Send + Sync {
    /// `n` bytes were read from the stream: frames as they arrived (compressed, with
    /// their headers and masks).
    fn read(&self, n: usize);
    /// A data message of `payload` bytes was received (after inflating).
    fn message_received(&self, payload: usize);
    /// `n` bytes were written to the stream: frames as sent (compressed, with headers).
    fn written(&self, n: usize);
    /// Data messages of `payload` bytes in all, before compression and framing, were
    /// taken from the queue to be written.
    fn payload_sent(&self, payload: usize);
    /// A pong arrived `rtt` after our last ping was written.
    fn pong(&self, rtt: Duration);
}
