//! The retry policy: which failures are waited out and which are retried a few times, then
//! dead-lettered (invariant 4). Only the consume loop ([`crate::amqp`]) applies it.
//!
//! - An **outage** (the broker or Redis away, refusing, timing out, loading, read-only, without
//!   a master) is nobody's fault and will pass: the delivery is retried in place with capped
//!   backoff, for as long as it takes, and never dead-lettered.
//! - Any **other failure** of a handler (a Redis script error on corrupt data, a webhook that
//!   answers 500, ...) may never pass by itself: the delivery is parked in the consumed queue's
//!   retry queue for [`RetryPolicy::delay`] (the broker holds it, so no prefetch slot is taken and
//!   a crash loses nothing), comes back, and after [`RetryPolicy::count`] retries goes to the DLQ
//!   with the last error as its reason. Fix the data, `sagactl dlq replay`, and it completes.

use std::time::Duration;

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use redis::{ErrorKind, ServerErrorKind};

use crate::amqp::PublishError;

/// Header carrying how many attempts a message has had so far (absent: none).
pub const ATTEMPTS_HEADER: &str = "x-retry-attempts";
/// Headers that remember where a parked message was first published, so that it is handled (and
/// dead-lettered, and replayed) as that message, not as one from the retry queue.
pub const ORIGINAL_EXCHANGE_HEADER: &str = "x-original-exchange";
pub const ORIGINAL_ROUTING_KEY_HEADER: &str = "x-original-routing-key";

/// How a failure that is not an outage is retried: `RABBITMQ_RETRY_COUNT` times,
/// `RABBITMQ_RETRY_DELAY` apart (the names the lab's seed uses).
#[derive(clap::Args, Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries of a failed message (not an outage) before it goes to the DLQ.
    #[arg(long = "retry-count", env = "RABBITMQ_RETRY_COUNT", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(0..=100))]
    pub count: u32,

    /// Wait between those retries, held by the broker in a retry queue: 500ms, 5s, 1m, ...
    #[arg(long = "retry-delay", env = "RABBITMQ_RETRY_DELAY", default_value = "5s",
          value_parser = parse_delay)]
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

/// A delay from a humane duration: `500ms`, `5s`, `1m`. Between 10 ms and one hour: a shorter
/// one is a hot loop through the broker, a longer one looks like a lost message.
fn parse_delay(s: &str) -> Result<Duration, String> {
    let delay = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e}; expected a duration such as 500ms, 5s or 1m"))?;
    if delay < Duration::from_millis(10) || delay > Duration::from_secs(3600) {
        return Err(format!("{s} is out of range: use 10ms to 1h"));
    }
    Ok(delay)
}

/// Marks a failure as an outage of something other than the broker or Redis that will pass
/// by itself (e.g. another instance holds the work for a moment): waited out, never retried to
/// exhaustion.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WaitOut(pub String);

/// Whether `err` means "a dependency is away" (wait it out) rather than "this message failed".
/// Looks through the whole chain of causes, so context added on the way up does not hide it.
pub fn is_outage(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        if let Some(redis) = cause.downcast_ref::<redis::RedisError>() {
            redis_is_outage(redis)
        } else {
            cause.is::<lapin::Error>()
                || cause.is::<PublishError>()
                || cause.is::<std::io::Error>()
                || cause.is::<tokio::time::error::Elapsed>()
                || cause.is::<WaitOut>()
        }
    })
}

/// A Redis error that says the store as a whole cannot serve now, not that this command failed.
fn redis_is_outage(err: &redis::RedisError) -> bool {
    if err.is_io_error() || err.is_timeout() || err.is_connection_dropped() {
        return true;
    }
    // A store that is full refuses every write until someone makes room; a master with fewer
    // replicas in sync than min-replicas-to-write refuses them until one is back (NOREPLICAS);
    // neither is this message's fault, so both are waited out like the rest. (A WAIT that timed
    // out, crate::replication::ReplicationLag, arrives as an I/O timeout: caught above.)
    if matches!(err.code(), Some("OOM" | "NOREPLICAS")) {
        return true;
    }
    matches!(
        err.kind(),
        ErrorKind::Io
            | ErrorKind::AuthenticationFailed
            | ErrorKind::ClusterConnectionNotFound
            | ErrorKind::MasterNameNotFoundBySentinel
            | ErrorKind::NoValidReplicasFoundBySentinel
            | ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::ReadOnly
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
            )
    )
}

/// How many attempts the message has had before this delivery (0 for a fresh one).
pub fn attempts_so_far(properties: &BasicProperties) -> u32 {
    let Some(value) = properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(ATTEMPTS_HEADER))
    else {
        return 0;
    };
    match value {
        AMQPValue::LongUInt(n) => *n,
        AMQPValue::LongInt(n) => u32::try_from(*n).unwrap_or(0),
        AMQPValue::LongLongInt(n) => u32::try_from(*n).unwrap_or(0),
        AMQPValue::ShortUInt(n) => u32::from(*n),
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes())
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

/// A string header's value, if present.
pub fn header_str(properties: &BasicProperties, name: &str) -> Option<String> {
    match properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// The properties of a message parked for another attempt: the attempt count so far, where it
/// was first published, and a per-message TTL after which the retry queue dead-letters it back
/// to the work queue. Everything else (ids, type, correlation id) travels unchanged.
pub fn parked_properties(
    properties: &BasicProperties,
    attempts: u32,
    exchange: &str,
    routing_key: &str,
    delay: Duration,
) -> BasicProperties {
    let mut headers: FieldTable = properties.headers().clone().unwrap_or_default();
    headers.insert(ATTEMPTS_HEADER.into(), AMQPValue::LongUInt(attempts));
    headers.insert(
        ORIGINAL_EXCHANGE_HEADER.into(),
        AMQPValue::LongString(LongString::from(exchange.as_bytes().to_vec())),
    );
    headers.insert(
        ORIGINAL_ROUTING_KEY_HEADER.into(),
        AMQPValue::LongString(LongString::from(routing_key.as_bytes().to_vec())),
    );
    properties
        .clone()
        .with_headers(headers)
        .with_expiration(ShortString::from(delay.as_millis().to_string()))
        .with_delivery_mode(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humane_delays_parse_and_silly_ones_do_not() {
        assert_eq!(parse_delay("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_delay("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_delay("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_delay("5").is_err(), "a bare number has no unit");
        assert!(parse_delay("1ms").is_err());
        assert!(parse_delay("2h").is_err());
        assert!(parse_delay("soon").is_err());
    }

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

    fn server_error(code: &str, detail: &str) -> anyhow::Error {
        let parsed = redis::parse_redis_value(format!("-{code} {detail}\r\n").as_bytes())
            .expect("a RESP error reply");
        let err = match parsed {
            redis::Value::ServerError(e) => redis::RedisError::from(e),
            other => panic!("not an error reply: {other:?}"),
        };
        anyhow::Error::new(err)
    }

    #[test]
    fn outages_are_told_apart_from_failures() {
        let refused =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(is_outage(&anyhow::Error::new(refused).context("reserving")));
        for code in [
            "LOADING",
            "READONLY",
            "MASTERDOWN",
            "TRYAGAIN",
            "OOM",
            "NOREPLICAS",
        ] {
            assert!(is_outage(&server_error(code, "x")), "{code}");
        }
        // A write no replica acknowledged in time: never a success, always waited out.
        let lag = crate::replication::ReplicationLag {
            acknowledged: 0,
            required: 1,
            within: std::time::Duration::from_secs(1),
        };
        assert!(is_outage(
            &anyhow::Error::new(lag.into_redis_error()).context("reserving")
        ));
        assert!(is_outage(&anyhow::Error::new(WaitOut("busy".into()))));
        // A Lua error on corrupt data, a wrong type, a webhook's 500: this message failed.
        let script = server_error(
            "ERR",
            "user_script:12: attempt to compare nil with number script: abc",
        );
        assert!(!is_outage(&script));
        assert!(!is_outage(&server_error(
            "WRONGTYPE",
            "Operation against a key"
        )));
        assert!(!is_outage(&anyhow::anyhow!("webhook answered 500")));
    }

    #[test]
    fn parked_messages_carry_their_attempts_and_origin() {
        let props = parked_properties(
            &BasicProperties::default().with_message_id("e1".into()),
            2,
            "order_events",
            "order.placed",
            Duration::from_millis(1500),
        );
        assert_eq!(attempts_so_far(&props), 2);
        assert_eq!(
            header_str(&props, ORIGINAL_ROUTING_KEY_HEADER).as_deref(),
            Some("order.placed")
        );
        assert_eq!(
            props.expiration().as_ref().map(|e| e.as_str()),
            Some("1500")
        );
        assert_eq!(props.message_id().as_ref().map(|e| e.as_str()), Some("e1"));
        assert_eq!(attempts_so_far(&BasicProperties::default()), 0);
    }
}
