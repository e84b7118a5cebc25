//! Waiting for work that crosses processes: poll, and give up when it stops moving.
//!
//! A fixed overall deadline does not fit a benchmark (100,000 messages take as long as they
//! take); what signals trouble is *no progress* for a while. [`Stall`] watches a counter and
//! fails the wait when it has not moved for [`STALL`].

use std::time::{Duration, Instant};

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
