//! Token buckets for rate limits: per connection, and shared by all the connections of
//! one user or one host.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

/// A token bucket with no timer: tokens are topped up from the elapsed time whenever a
/// message arrives.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl TokenBucket {
    pub(crate) fn new(rate: f64, burst: f64) -> Self {
        TokenBucket {
            tokens: burst,
            last: Instant::now(),
            rate,
            burst,
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
    }

    /// Takes one token if there is one. An infinite rate always has one.
    pub(crate) fn take(&mut self) -> bool {
        if self.rate.is_infinite() {
            return true;
        }
        self.refill();
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket is full again: forgetting it then loses nothing.
    pub(crate) fn is_full(&mut self) -> bool {
        self.refill();
        self.tokens >= self.burst
    }
}

/// A bucket shared by every connection of one user or one host. A std mutex: it is
/// held for a few float operations, never across an `.await`.
#[derive(Debug)]
pub(crate) struct SharedBucket(Mutex<TokenBucket>);

impl SharedBucket {
    pub(crate) fn new(rate: f64, burst: f64) -> Arc<Self> {
        Arc::new(SharedBucket(Mutex::new(TokenBucket::new(rate, burst))))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, TokenBucket> {
        // Every critical section is a few assignments: a poisoned lock is still sound.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn token_bucket_refills_with_time() {
        let mut b = TokenBucket::new(10.0, 3.0);
        assert!(b.take() && b.take() && b.take());
        assert!(!b.take());
        assert!(!b.is_full());
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(b.take());
        assert!(!b.take());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(b.is_full());
        // Capped at the burst.
        assert!(b.take() && b.take() && b.take());
        assert!(!b.take());
    }

    #[tokio::test(start_paused = true)]
    async fn an_infinite_rate_never_limits() {
        let mut b = TokenBucket::new(f64::INFINITY, 1.0);
        for _ in 0..10_000 {
            assert!(b.take());
        }
    }
}
