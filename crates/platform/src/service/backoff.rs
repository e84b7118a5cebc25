//! Capped exponential backoff with jitter, for every outage (broker or Redis away).
//!
//! Invariant 4 of the design: an outage is waited out, but never in a hot loop, and the wait is
//! capped so a service notices quickly that its dependency is back. The schedule and its jitter
//! come from `backon`; this wraps it for loops that reconnect rather than call one closure again
//! (so `backon`'s `retry` combinator does not fit them), and makes every wait end at shutdown.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

/// Delays that double from a floor to a cap, with jitter; `reset` after a success.
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
    cap: Duration,
    attempts: u32,
}

impl Backoff {
    /// From `floor`, doubling, up to `cap`, for ever.
    pub fn new(floor: Duration, cap: Duration) -> Self {
        // Jitter spreads many consumers retrying together, so they do not stampede the
        // dependency when it returns.
        let builder = ExponentialBuilder::new()
            .with_min_delay(floor)
            .with_max_delay(cap)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Self {
            delays: builder.build(),
            builder,
            cap,
            attempts: 0,
        }
    }

    /// The policy used for broker and Redis outages: 100 ms, doubling, capped at 5 s.
    pub fn for_outages() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(5))
    }

    /// The delay to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        self.attempts += 1;
        self.delays.next().unwrap_or(self.cap)
    }

    /// How many failures in a row so far (1 after the first `next_delay`).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    pub fn reset(&mut self) {
        self.delays = self.builder.build();
        self.attempts = 0;
    }

    /// Sleep for the next delay, unless shutdown comes first: `false` then, so the caller stops.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    /// Whether this attempt deserves a log line: the 1st, 2nd, 4th, 8th... so an outage of any
    /// length writes a handful of lines, not one per retry.
    pub fn worth_logging(&self) -> bool {
        self.attempts.is_power_of_two()
    }
}

/// A random number below `bound` (0 if `bound` is 0), for picking where to start in a list of
/// nodes and for spreading test ports; `fastrand`, the generator `backon`'s jitter uses.
pub fn random_below(bound: u64) -> u64 {
    fastrand::u64(..bound.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps_with_at_most_the_delay_again_as_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let d: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert!((100..=200).contains(&d[0]), "{d:?}");
        assert!((200..=400).contains(&d[1]), "{d:?}");
        assert!((350..=700).contains(&d[2]), "{d:?}");
        assert!((350..=700).contains(&d[4]), "{d:?}");
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert!(b.next_delay() <= Duration::from_millis(200));
    }

    #[test]
    fn logs_on_powers_of_two_only() {
        let mut b = Backoff::for_outages();
        let logged: Vec<u32> = (0..20)
            .filter_map(|_| {
                b.next_delay();
                b.worth_logging().then_some(b.attempts())
            })
            .collect();
        assert_eq!(logged, vec![1, 2, 4, 8, 16]);
    }

    #[tokio::test]
    async fn a_wait_ends_at_shutdown() {
        let mut b = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let waited = tokio::time::timeout(Duration::from_secs(1), b.wait(&shutdown)).await;
        assert_eq!(waited, Ok(false));
    }
}
