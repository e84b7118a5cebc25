//! Waiting for effects that cross processes: poll with a deadline, never a fixed sleep.
//!
//! - [`eventually`]: a test's wait, with an overall deadline and the last state seen.
//! - [`Stall`]: a benchmark's or a drill's wait. 100,000 messages take as long as they take, so
//!   a fixed deadline does not fit; what signals trouble is *no progress* for a while.

use std::future::Future;
use std::time::{Duration, Instant};

/// Poll `check` every 50 ms until it returns `Some`, or fail after `timeout` with `what` and the
/// last state seen (the closure's `Err`), so a failing test says what it was waiting for.
///
/// # Errors
/// The deadline passed.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(value) => return Ok(value),
            Err(state) => state,
        };
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long a counter may stand still before a wait gives up.
pub const STALL: Duration = Duration::from_secs(30);

/// Watches a counter that should keep moving towards its goal.
#[derive(Debug)]
pub struct Stall {
    what: String,
    last: Option<u64>,
    since: Instant,
    limit: Duration,
}

impl Stall {
    /// `what` names the wait in the error, e.g. "orders final in order-svc".
    pub fn new(what: &str, limit: Duration) -> Self {
        Self {
            what: what.to_owned(),
            last: None,
            since: Instant::now(),
            limit,
        }
    }

    /// Record the counter's current value.
    ///
    /// # Errors
    /// It has not changed for longer than the limit.
    pub fn observe(&mut self, value: u64, goal: u64) -> anyhow::Result<()> {
        if self.last != Some(value) {
            self.last = Some(value);
            self.since = Instant::now();
            return Ok(());
        }
        anyhow::ensure!(
            self.since.elapsed() <= self.limit,
            "{} stalled at {value} of {goal} for {:?}",
            self.what,
            self.limit
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fails_only_when_the_counter_stands_still_too_long() {
        let mut stall = Stall::new("test", Duration::ZERO);
        assert!(stall.observe(1, 10).is_ok());
        assert!(stall.observe(2, 10).is_ok());
        std::thread::sleep(Duration::from_millis(2));
        let err = stall.observe(2, 10).unwrap_err().to_string();
        assert!(err.contains("stalled at 2 of 10"), "{err}");

        let mut patient = Stall::new("test", Duration::from_secs(60));
        assert!(patient.observe(2, 10).is_ok());
        assert!(patient.observe(2, 10).is_ok());
    }
}
