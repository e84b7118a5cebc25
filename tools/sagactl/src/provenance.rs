//! Why a message is in the DLQ and where it came from, whoever put it there.
//!
//! Two writers fill the DLQ:
//! - **our consumers**, with `x-dlq-reason`, `x-dlq-service`, `x-original-exchange`,
//!   `x-original-routing-key`, `x-dlq-at` (poison, or a failure that outlived its retries);
//! - **the broker**, in the cluster profile, when a message was delivered `delivery-limit` times
//!   without an ack (a consumer crashing on it again and again): it adds `x-death`, a list of
//!   `{queue, reason, exchange, routing-keys, count, time}`, most recent first.
//!
//! A message may carry both (parked in a retry queue, it picked up an `x-death` entry on its way
//! back, then failed for good): our own headers, when present, tell the last word.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use saga_domain::dlq::DlqHeaders;
use saga_platform::amqp::properties::header_str;

/// Who dead-lettered a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetteredBy {
    /// One of our consumers (its service name).
    Consumer(String),
    /// The broker, by a queue policy (x-death).
    Broker,
}

/// What a DLQ message says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub by: DeadLetteredBy,
    /// A sentence a person can act on.
    pub reason: String,
    /// Where it was first published: what a replay publishes to.
    pub exchange: Option<String>,
    pub routing_key: Option<String>,
    /// The queue it was dead-lettered from, when known.
    pub queue: Option<String>,
    /// When (Unix seconds), when known.
    pub at: Option<u64>,
}

impl Provenance {
    pub fn of(properties: &BasicProperties) -> Self {
        let headers = properties.headers();
        if let Some(ours) = DlqHeaders::read(|name| header_str(headers, name)) {
            return Self {
                by: DeadLetteredBy::Consumer(ours.service.unwrap_or_else(|| "?".into())),
                reason: ours.reason,
                exchange: ours.exchange,
                routing_key: ours.routing_key,
                queue: ours.queue,
                at: ours.at,
            };
        }
        match latest_death(headers) {
            Some(death) => Self {
                by: DeadLetteredBy::Broker,
                reason: explain(&death),
                exchange: death.exchange,
                routing_key: death.routing_key,
                queue: death.queue,
                at: death.time,
            },
            None => Self {
                by: DeadLetteredBy::Consumer("?".into()),
                reason: "(no reason given)".into(),
                exchange: None,
                routing_key: None,
                queue: None,
                at: None,
            },
        }
    }

    /// Who, in words: the service's name, or "the broker".
    pub fn who(&self) -> String {
        match &self.by {
            DeadLetteredBy::Consumer(service) => service.clone(),
            DeadLetteredBy::Broker => format!(
                "the broker (queue {})",
                self.queue.as_deref().unwrap_or("?")
            ),
        }
    }
}

/// Headers a dead-letterer added, which a replayed message must not carry: it starts afresh
/// (a new set of attempts, no history of deaths). Anything the publisher set stays.
pub fn is_dead_letter_header(name: &str) -> bool {
    DlqHeaders::is_ours(name)
        || ["x-retry-", "x-first-death-", "x-last-death-"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
        || name == "x-death"
        || name == "x-delivery-count"
}

/// One `x-death` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Death {
    queue: Option<String>,
    reason: Option<String>,
    exchange: Option<String>,
    routing_key: Option<String>,
    count: Option<i64>,
    time: Option<u64>,
}

/// The most recent `x-death` entry (the broker keeps the list newest first).
fn latest_death(headers: &Option<FieldTable>) -> Option<Death> {
    let AMQPValue::FieldArray(deaths) = headers.as_ref()?.inner().get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(entry) = deaths.as_slice().first()? else {
        return None;
    };
    let text = |key: &str| match entry.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    };
    let routing_key = match entry.inner().get("routing-keys") {
        Some(AMQPValue::FieldArray(keys)) => keys.as_slice().first().and_then(|k| match k {
            AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
            AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
            _ => None,
        }),
        _ => None,
    };
    let count = match entry.inner().get("count") {
        Some(AMQPValue::LongLongInt(n)) => Some(*n),
        Some(AMQPValue::LongInt(n)) => Some(i64::from(*n)),
        Some(AMQPValue::LongUInt(n)) => Some(i64::from(*n)),
        _ => None,
    };
    let time = match entry.inner().get("time") {
        Some(AMQPValue::Timestamp(t)) => Some(*t),
        _ => None,
    };
    Some(Death {
        queue: text("queue"),
        reason: text("reason"),
        exchange: text("exchange"),
        routing_key,
        count,
        time,
    })
}

/// The broker's one-word reason, as a sentence.
fn explain(death: &Death) -> String {
    let queue = death.queue.as_deref().unwrap_or("its queue");
    match death.reason.as_deref() {
        Some("delivery_limit") => format!(
            "delivery_limit: delivered the policy's limit of times from {queue} without an ack \
             (a consumer crashing on it?)"
        ),
        Some("rejected") => format!("rejected: a consumer of {queue} refused it without requeue"),
        Some("expired") => format!("expired: its time to live ran out in {queue}"),
        Some("maxlen") => format!("maxlen: {queue} was full"),
        Some(other) => format!("{other} (dead-lettered by the broker from {queue})"),
        None => format!("dead-lettered by the broker from {queue}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{FieldArray, LongString};

    fn text(s: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
    }

    fn death(queue: &str, reason: &str, exchange: &str, key: &str) -> AMQPValue {
        let mut entry = FieldTable::default();
        entry.insert("queue".into(), text(queue));
        entry.insert("reason".into(), text(reason));
        entry.insert("exchange".into(), text(exchange));
        entry.insert(
            "routing-keys".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![text(key)])),
        );
        entry.insert("count".into(), AMQPValue::LongLongInt(1));
        entry.insert("time".into(), AMQPValue::Timestamp(1_700_000_000));
        AMQPValue::FieldTable(entry)
    }

    fn with_headers(pairs: Vec<(&str, AMQPValue)>) -> BasicProperties {
        let mut headers = FieldTable::default();
        for (name, value) in pairs {
            headers.insert(name.into(), value);
        }
        BasicProperties::default().with_headers(headers)
    }

    #[test]
    fn the_broker_s_dead_letters_are_read_from_x_death() {
        let deaths = AMQPValue::FieldArray(FieldArray::from(vec![
            death(
                "inventory_queue",
                "delivery_limit",
                "order_events",
                "order.placed",
            ),
            death(
                "inventory_queue.retry",
                "expired",
                "",
                "inventory_queue.retry",
            ),
        ]));
        let found = Provenance::of(&with_headers(vec![("x-death", deaths)]));
        assert_eq!(found.by, DeadLetteredBy::Broker);
        assert!(
            found.reason.starts_with("delivery_limit"),
            "{}",
            found.reason
        );
        assert_eq!(found.exchange.as_deref(), Some("order_events"));
        assert_eq!(found.routing_key.as_deref(), Some("order.placed"));
        assert_eq!(found.at, Some(1_700_000_000));
        assert_eq!(found.who(), "the broker (queue inventory_queue)");
    }

    #[test]
    fn our_headers_have_the_last_word() {
        let deaths = AMQPValue::FieldArray(FieldArray::from(vec![death(
            "inventory_queue.retry",
            "expired",
            "",
            "inventory_queue.retry",
        )]));
        let found = Provenance::of(&with_headers(vec![
            ("x-death", deaths),
            ("x-dlq-reason", text("webhook answered 500")),
            ("x-dlq-service", text("notification-svc")),
            ("x-original-exchange", text("order_events")),
            ("x-original-routing-key", text("inventory.reserved")),
            ("x-dlq-at", text("1700000001")),
        ]));
        assert_eq!(
            found.by,
            DeadLetteredBy::Consumer("notification-svc".into())
        );
        assert_eq!(found.reason, "webhook answered 500");
        assert_eq!(found.routing_key.as_deref(), Some("inventory.reserved"));
        assert_eq!(found.at, Some(1_700_000_001));
    }

    #[test]
    fn a_bare_message_has_no_story() {
        let found = Provenance::of(&BasicProperties::default());
        assert_eq!(found.reason, "(no reason given)");
        assert!(found.routing_key.is_none());
    }

    #[test]
    fn replays_lose_every_dead_letter_header_and_keep_the_publisher_s() {
        for ours in [
            "x-death",
            "x-dlq-reason",
            "x-original-routing-key",
            "x-retry-attempts",
            "x-first-death-queue",
            "x-last-death-reason",
            "x-delivery-count",
        ] {
            assert!(is_dead_letter_header(ours), "{ours}");
        }
        assert!(!is_dead_letter_header("x-trace"));
    }
}
