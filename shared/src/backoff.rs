//! Capped exponential backoff with jitter, for every transient failure (broker or Redis away).
//!
//! Invariant 4 of the design: transient is not poison. We retry, but never in a hot loop, and the
//! wait is capped so a service notices quickly that its dependency is back.

use std::time::Duration;

/// Doubles the delay after each failure, from `initial` up to `max`; `reset` after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    attempts: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
            attempts: 0,
        }
    }

    /// The policy used for broker and Redis outages: 100 ms, doubling, capped at 5 s.
    pub fn for_outages() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(5))
    }

    /// The delay to wait before the next attempt, with up to 20% jitter so that many
    /// consumers retrying together do not stampede the dependency when it returns.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        self.attempts += 1;
        let jitter_ms = random_below(base.as_millis() as u64 / 5 + 1);
        base + Duration::from_millis(jitter_ms)
    }

    /// How many failures in a row so far (1 after the first `next_delay`).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
        self.attempts = 0;
    }

    /// Sleep for the next delay.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    /// Whether this attempt deserves a log line: the 1st, 2nd, 4th, 8th... so an outage of any
    /// length writes a handful of lines, not one per retry.
    pub fn worth_logging(&self) -> bool {
        self.attempts.is_power_of_two()
    }
}

/// A small, dependency-free random number below `bound` (0 if `bound` is 0), for jitter and
/// for picking where to start in a list of nodes; quality does not matter here.
pub fn random_below(bound: u64) -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::Instant::now()) % bound.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let d: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert!((100..=120).contains(&d[0]), "{d:?}");
        assert!((200..=240).contains(&d[1]), "{d:?}");
        assert!((350..=420).contains(&d[2]), "{d:?}");
        assert!((350..=420).contains(&d[4]), "{d:?}");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(120));
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
}
