//! The retry policy's broker side: which failures are waited out and which are retried a few
//! times, then dead-lettered (invariant 4). The policy itself, pure, is
//! [`saga_domain::retry`]; only the consume loop ([`crate::amqp::consumer::decide`]) applies it.
//!
//! - An **outage** (the broker or Redis away, refusing, timing out, loading, read-only, without
//!   a master, unable to persist, busy with a script) is nobody's fault and will pass: the
//!   delivery is retried in place with capped backoff, for as long as it takes, and never
//!   dead-lettered.
//! - Any **other failure** of a handler (a Redis script error on corrupt data, a webhook that
//!   answers 500, a panic, ...) may never pass by itself: the delivery is parked in the consumed
//!   queue's retry queue for [`RetryPolicy::delay`](saga_domain::retry::RetryPolicy::delay) (the broker holds it, so no prefetch slot is
//!   taken and a crash loses nothing), comes back, and after [`RetryPolicy::count`](saga_domain::retry::RetryPolicy::count) retries goes
//!   to the DLQ with the last error as its reason. Fix the data, `sagactl dlq replay`, and it
//!   completes.
//!
//! Which is which is said by the adapter that failed ([`Classify`]: the Redis client, the
//! broker's publisher), and read off an error's chain by [`failure_kind`]. A parked message
//! carries its attempts and origin in headers that are believed only when the broker's
//! `x-death` says the message really expired in our retry queue ([`Parked::of`]).

use std::time::Duration;

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, MAX_SHORT_STRING_LENGTH, ShortString};

use crate::amqp::PublishError;
use saga_domain::retry::FailureKind;

/// Header carrying how many attempts a message has had so far (absent: none).
pub const ATTEMPTS_HEADER: &str = "x-retry-attempts";
/// Headers that remember where a parked message was first published, so that it is handled (and
/// dead-lettered, and replayed) as that message, not as one from the retry queue.
/// (The same headers a DLQ copy carries: one name each, in [`saga_domain::dlq::header`].)
pub const ORIGINAL_EXCHANGE_HEADER: &str = saga_domain::dlq::header::ORIGINAL_EXCHANGE;
pub const ORIGINAL_ROUTING_KEY_HEADER: &str = saga_domain::dlq::header::ORIGINAL_ROUTING_KEY;
/// The header the broker writes when it dead-letters a message (here: a parked message whose
/// delay ran out), a list of tables naming the queue and the reason.
pub const DEATH_HEADER: &str = "x-death";

/// Marks a failure as an outage of something other than the broker or Redis that will pass
/// by itself (e.g. another instance holds the work for a moment, a webhook's host is
/// unreachable): waited out, never retried to exhaustion. An adapter whose own error type is
/// not [`Classify`] wraps an outage in this.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WaitOut(pub String);

/// An adapter's own verdict on its errors. Each adapter knows what its errors mean: the Redis
/// client ([`crate::redis::client`]), the broker ([`crate::amqp::PublishError`]); a handler
/// with an error of another kind says "outage" by wrapping it in [`WaitOut`].
pub trait Classify {
    fn failure_kind(&self) -> FailureKind;
}

impl Classify for WaitOut {
    fn failure_kind(&self) -> FailureKind {
        FailureKind::Outage
    }
}

/// A handler (or a parser) panicked on a delivery: a fault of this message, never an outage.
#[derive(Debug, thiserror::Error)]
#[error("panicked: {0}")]
pub struct Panicked(pub String);

impl Classify for Panicked {
    fn failure_kind(&self) -> FailureKind {
        FailureKind::Fault
    }
}

/// The kind of `err`: the first cause in its chain that an adapter classifies decides, so
/// context added on the way up does not hide it. Plain I/O errors and timeouts (a socket to a
/// dependency) are outages; anything no adapter claims is a fault of this message.
pub fn failure_kind(err: &anyhow::Error) -> FailureKind {
    fn classify<E: Classify + std::error::Error + 'static>(
        cause: &(dyn std::error::Error + 'static),
    ) -> Option<FailureKind> {
        cause.downcast_ref::<E>().map(Classify::failure_kind)
    }
    err.chain()
        .find_map(|cause| {
            classify::<redis::RedisError>(cause)
                .or_else(|| classify::<PublishError>(cause))
                .or_else(|| classify::<lapin::Error>(cause))
                .or_else(|| classify::<WaitOut>(cause))
                .or_else(|| classify::<Panicked>(cause))
                .or_else(|| {
                    (cause.is::<std::io::Error>() || cause.is::<tokio::time::error::Elapsed>())
                        .then_some(FailureKind::Outage)
                })
        })
        .unwrap_or(FailureKind::Fault)
}

/// Whether `err` means "a dependency is away" (wait it out) rather than "this message failed".
pub fn is_outage(err: &anyhow::Error) -> bool {
    failure_kind(err) == FailureKind::Outage
}

/// How a message that came back from its retry queue remembers its past: the attempts it has
/// had, and where it was first published (so it is handled, dead-lettered and replayed as that
/// message, not as one from the retry queue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    pub attempts: u32,
    pub exchange: String,
    pub routing_key: String,
}

impl Parked {
    /// The past of a delivery taken from `retry_queue`'s way back, if it has one we can trust.
    ///
    /// Retry headers are believed only on a message that really came back from this service's
    /// own retry queue: the broker's `x-death` names `retry_queue` with reason `expired`, and
    /// the headers hold what we write ourselves (a count, and names that fit an AMQP short
    /// string). Anyone can publish any headers, so anything else is a first attempt, and its
    /// `x-retry-attempts` and `x-original-*` are ignored (never used for routing).
    pub fn of(properties: &BasicProperties, retry_queue: &str) -> Option<Self> {
        let headers = properties.headers().as_ref()?;
        if !expired_in(headers, retry_queue) {
            return None;
        }
        let attempts = match headers.inner().get(ATTEMPTS_HEADER)? {
            AMQPValue::LongUInt(n) => *n,
            AMQPValue::LongInt(n) => u32::try_from(*n).ok()?,
            AMQPValue::LongLongInt(n) => u32::try_from(*n).ok()?,
            AMQPValue::ShortUInt(n) => u32::from(*n),
            _ => return None,
        };
        let name = |key: &str| match headers.inner().get(key)? {
            AMQPValue::LongString(s) => {
                let s = std::str::from_utf8(s.as_bytes()).ok()?;
                (s.len() <= MAX_SHORT_STRING_LENGTH).then(|| s.to_owned())
            }
            _ => None,
        };
        Some(Self {
            attempts: attempts.max(1),
            exchange: name(ORIGINAL_EXCHANGE_HEADER)?,
            routing_key: name(ORIGINAL_ROUTING_KEY_HEADER)?,
        })
    }
}

/// Whether the broker's `x-death` says the message expired in `queue` (a per-message TTL ran out
/// there and the queue dead-lettered it).
fn expired_in(headers: &FieldTable, queue: &str) -> bool {
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get(DEATH_HEADER) else {
        return false;
    };
    let text = |table: &FieldTable, key: &str| match table.inner().get(key) {
        Some(AMQPValue::LongString(s)) => Some(s.as_bytes().to_vec()),
        Some(AMQPValue::ShortString(s)) => Some(s.as_str().as_bytes().to_vec()),
        _ => None,
    };
    deaths.as_slice().iter().any(|death| match death {
        AMQPValue::FieldTable(death) => {
            text(death, "queue").as_deref() == Some(queue.as_bytes())
                && text(death, "reason").as_deref() == Some(b"expired".as_slice())
        }
        _ => false,
    })
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
/// was first published, and a per-message TTL after which the retry queue dead-letters it to
/// its way back. Everything else (ids, type, correlation id) travels unchanged; headers that
/// would not fit a frame are dropped from the parked copy ([`crate::amqp::headers::fit`]), and the
/// dropped names are returned for the log.
pub fn parked_properties(
    properties: &BasicProperties,
    parked: &Parked,
    delay: Duration,
    budget: usize,
) -> (BasicProperties, Vec<String>) {
    let text = |s: &str| AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()));
    let ours = [
        (ATTEMPTS_HEADER, AMQPValue::LongUInt(parked.attempts)),
        (ORIGINAL_EXCHANGE_HEADER, text(&parked.exchange)),
        (ORIGINAL_ROUTING_KEY_HEADER, text(&parked.routing_key)),
    ];
    // Without the sender's `x-death`: the broker writes a fresh one when the parked copy
    // expires (which is what `Parked::of` reads), and RabbitMQ 3.10 crashes the queue process
    // that dead-letters a message whose `x-death` is malformed: a forged one on a persistent
    // parked copy would crash-loop the retry queue and every message parked behind it.
    let senders: Option<FieldTable> = properties.headers().as_ref().map(|headers| {
        let mut kept = FieldTable::default();
        for (name, value) in headers.inner() {
            if name.as_str() != DEATH_HEADER {
                kept.insert(name.clone(), value.clone());
            }
        }
        kept
    });
    let fitted = crate::amqp::headers::fit(senders.as_ref(), &ours, budget);
    // A millisecond count: at most 20 digits, always a valid short string.
    let expiration = ShortString::try_new(delay.as_millis().to_string()).unwrap_or_default();
    let properties = properties
        .clone()
        .with_headers(fitted.headers)
        .with_expiration(expiration)
        .with_delivery_mode(2);
    (properties, fitted.dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parked_copy_carries_no_x_death_of_the_senders() {
        let mut headers = FieldTable::default();
        headers.insert(
            "x-death".into(),
            AMQPValue::FieldArray(vec![AMQPValue::Boolean(true)].into()),
        );
        headers.insert("trace".into(), AMQPValue::LongUInt(7));
        let parked = Parked {
            attempts: 1,
            exchange: "order_events".into(),
            routing_key: "order.placed".into(),
        };
        let (props, dropped) = parked_properties(
            &BasicProperties::default().with_headers(headers),
            &parked,
            Duration::from_secs(1),
            crate::amqp::headers::MAX_HEADERS_SIZE,
        );
        let kept = props.headers().clone().unwrap_or_default();
        assert!(!kept.contains_key("x-death"), "the broker writes its own");
        assert!(kept.contains_key("trace"));
        assert!(
            dropped.is_empty(),
            "not 'dropped for size': left out on purpose"
        );
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
        let lag = crate::redis::replication::ReplicationLag {
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
    fn misconf_busy_and_unblocked_are_outages_and_a_panic_is_a_fault() {
        for (code, detail) in [
            (
                "MISCONF",
                "Errors writing to the AOF file: No such file or directory",
            ),
            ("BUSY", "Redis is busy running a script."),
            ("UNBLOCKED", "client unblocked via CLIENT UNBLOCK"),
        ] {
            assert_eq!(
                failure_kind(&server_error(code, detail)),
                FailureKind::Outage,
                "{code}"
            );
        }
        let panicked = anyhow::Error::new(Panicked("index out of bounds".into()));
        assert_eq!(failure_kind(&panicked), FailureKind::Fault);
        assert_eq!(panicked.to_string(), "panicked: index out of bounds");
    }

    fn text(s: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
    }

    /// What the broker adds when a message's TTL ends in `queue`.
    fn x_death(queue: &str, reason: &str) -> (ShortString, AMQPValue) {
        let mut death = FieldTable::default();
        death.insert("queue".into(), text(queue));
        death.insert("reason".into(), text(reason));
        death.insert("count".into(), AMQPValue::LongLongInt(1));
        let deaths = vec![AMQPValue::FieldTable(death)];
        ("x-death".into(), AMQPValue::FieldArray(deaths.into()))
    }

    fn with(headers: Vec<(ShortString, AMQPValue)>) -> BasicProperties {
        let mut table = FieldTable::default();
        for (k, v) in headers {
            table.insert(k, v);
        }
        BasicProperties::default().with_headers(table)
    }

    #[test]
    fn parked_messages_carry_their_attempts_and_origin() {
        let parked = Parked {
            attempts: 2,
            exchange: "order_events".into(),
            routing_key: "order.placed".into(),
        };
        let (props, dropped) = parked_properties(
            &BasicProperties::default().with_message_id("e1".into()),
            &parked,
            Duration::from_millis(1500),
            crate::amqp::headers::MAX_HEADERS_SIZE,
        );
        assert!(dropped.is_empty());
        assert_eq!(
            header_str(&props, ORIGINAL_ROUTING_KEY_HEADER).as_deref(),
            Some("order.placed")
        );
        assert_eq!(
            props.expiration().as_ref().map(|e| e.as_str()),
            Some("1500")
        );
        assert_eq!(props.message_id().as_ref().map(|e| e.as_str()), Some("e1"));
        // Back from the retry queue, the broker has added x-death: the past is believed.
        let mut headers: Vec<(ShortString, AMQPValue)> = props
            .headers()
            .clone()
            .unwrap_or_default()
            .inner()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        headers.push(x_death("inventory_queue.retry", "expired"));
        assert_eq!(
            Parked::of(&with(headers), "inventory_queue.retry"),
            Some(parked)
        );
    }

    #[test]
    fn forged_retry_headers_are_not_believed() {
        let forged = |extra: Vec<(ShortString, AMQPValue)>| {
            let mut headers = vec![
                (ATTEMPTS_HEADER.into(), AMQPValue::LongUInt(99)),
                (ORIGINAL_EXCHANGE_HEADER.into(), text("order_events")),
                (ORIGINAL_ROUTING_KEY_HEADER.into(), text("order.placed")),
            ];
            headers.extend(extra);
            Parked::of(&with(headers), "inventory_queue.retry")
        };
        assert_eq!(forged(vec![]), None, "no x-death");
        assert_eq!(
            forged(vec![x_death("inventory_queue.retry", "rejected")]),
            None
        );
        assert_eq!(
            forged(vec![x_death("someone_elses.retry", "expired")]),
            None
        );
        assert!(forged(vec![x_death("inventory_queue.retry", "expired")]).is_some());
        // Even with a perfect x-death, a name no short string can hold is not used.
        let too_long = vec![
            (ATTEMPTS_HEADER.into(), AMQPValue::LongUInt(1)),
            (ORIGINAL_EXCHANGE_HEADER.into(), text(&"x".repeat(300))),
            (ORIGINAL_ROUTING_KEY_HEADER.into(), text("order.placed")),
            x_death("inventory_queue.retry", "expired"),
        ];
        assert_eq!(Parked::of(&with(too_long), "inventory_queue.retry"), None);
        assert_eq!(Parked::of(&BasicProperties::default(), "q.retry"), None);
    }
}
