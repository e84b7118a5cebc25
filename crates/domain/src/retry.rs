//! The retry policy of invariant 4, as pure rules: what kind of failure an attempt ended in
//! ([`FailureKind`]), and what to do after a failed attempt that was not an outage
//! ([`RetryPolicy::after_failed_attempt`]). Which error is which kind, and how a message is
//! parked in a retry queue, is the broker's side (`saga_platform::amqp::retry`); only the consume
//! loop applies the policy.

use std::time::Duration;

/// How a failure that is not an outage is retried: `RABBITMQ_RETRY_COUNT` times,
/// `RABBITMQ_RETRY_DELAY` apart (the names the lab's seed uses).
/// (Read from the command line by `saga_platform::service::config::RetryArgs`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries of a failed message (not an outage) before it goes to the DLQ.
    pub count: u32,
    /// Wait between those retries, held by the broker in a retry queue.
    pub delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            count: 3,
            delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// What to do after attempt number `attempt` (1 for the first delivery) failed.
    pub fn after_failed_attempt(&self, attempt: u32) -> NextStep {
        if attempt > self.count {
            NextStep::GiveUp
        } else {
            NextStep::RetryLater
        }
    }
}

/// The decision for a failed attempt that was not an outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Park it in the retry queue; it comes back after the delay.
    RetryLater,
    /// Attempts exhausted: to the DLQ with the error as the reason.
    GiveUp,
}

/// What kind of failure an attempt ended in: the one question the consume loop asks of an
/// error (`saga_platform::amqp::consumer::decide`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// A dependency is away (broker, Redis, a webhook host): nobody's fault, it will pass.
    /// Waited out in place, without limit, never dead-lettered.
    Outage,
    /// This message failed (a script error on corrupt data, a webhook's 500, a panic): retried
    /// `RABBITMQ_RETRY_COUNT` times through the retry queue, then dead-lettered.
    Fault,
}

/// The longest `RABBITMQ_RETRY_DELAY`: a longer wait looks like a lost message. Also the retry
/// queues' own TTL (`saga_platform::amqp::topology`), so a message put there by hand without an expiration
/// comes back within it too, instead of staying for ever.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_count_attempts_after_the_first() {
        let policy = RetryPolicy {
            count: 3,
            delay: Duration::from_secs(1),
        };
        let steps: Vec<NextStep> = (1..=5).map(|a| policy.after_failed_attempt(a)).collect();
        use NextStep::*;
        assert_eq!(steps, [RetryLater, RetryLater, RetryLater, GiveUp, GiveUp]);
        let never = RetryPolicy { count: 0, ..policy };
        assert_eq!(never.after_failed_attempt(1), GiveUp);
    }
}
