//! Why a message is in the DLQ, in the headers our consume loop puts on its copy: written once
//! here ([`DlqHeaders::to_pairs`]), read once here ([`DlqHeaders::read`]). The platform turns
//! the pairs into an AMQP field table; `sagactl dlq` and its provenance read them back. (The
//! broker's own `x-death`, written when a queue policy dead-letters, is the platform's and
//! sagactl's business: it is not ours to write.)

/// The names of the headers, as they travel.
pub mod header {
    /// Why, in a sentence a person can act on.
    pub const REASON: &str = "x-dlq-reason";
    /// The service whose consumer gave up on it.
    pub const SERVICE: &str = "x-dlq-service";
    /// Where it was first published: what a replay publishes to.
    pub const ORIGINAL_EXCHANGE: &str = "x-original-exchange";
    pub const ORIGINAL_ROUTING_KEY: &str = "x-original-routing-key";
    /// The queue it was read from.
    pub const ORIGINAL_QUEUE: &str = "x-original-queue";
    /// When, in Unix seconds.
    pub const AT: &str = "x-dlq-at";
    /// Attempts made before giving up (absent for poison, which is never retried).
    pub const ATTEMPTS: &str = "x-dlq-attempts";
    /// The prefixes of every header a dead-letterer (we, or the retry path) adds.
    pub const PREFIXES: [&str; 2] = ["x-dlq-", "x-original-"];
}

/// The DLQ copy's headers, typed. Written complete by the consume loop; read leniently (a
/// message dead-lettered by hand, or by an older version, may lack some).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqHeaders {
    pub reason: String,
    pub service: Option<String>,
    pub exchange: Option<String>,
    pub routing_key: Option<String>,
    pub queue: Option<String>,
    /// Unix seconds.
    pub at: Option<u64>,
    pub attempts: Option<u32>,
}

impl DlqHeaders {
    /// The headers as (name, text) pairs, in the order they are written; absent ones are left
    /// out.
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let optional = [
            (header::SERVICE, self.service.clone()),
            (header::ORIGINAL_EXCHANGE, self.exchange.clone()),
            (header::ORIGINAL_ROUTING_KEY, self.routing_key.clone()),
            (header::ORIGINAL_QUEUE, self.queue.clone()),
            (header::AT, self.at.map(|at| at.to_string())),
            (header::ATTEMPTS, self.attempts.map(|n| n.to_string())),
        ];
        std::iter::once((header::REASON, self.reason.clone()))
            .chain(
                optional
                    .into_iter()
                    .filter_map(|(name, value)| Some((name, value?))),
            )
            .collect()
    }

    /// Read the headers through `text`, which gives a header's value as text. `None` without a
    /// reason: then no consumer of ours dead-lettered it.
    pub fn read(text: impl Fn(&str) -> Option<String>) -> Option<Self> {
        Some(Self {
            reason: text(header::REASON)?,
            service: text(header::SERVICE),
            exchange: text(header::ORIGINAL_EXCHANGE),
            routing_key: text(header::ORIGINAL_ROUTING_KEY),
            queue: text(header::ORIGINAL_QUEUE),
            at: text(header::AT).and_then(|t| t.parse().ok()),
            attempts: text(header::ATTEMPTS).and_then(|t| t.parse().ok()),
        })
    }

    /// Whether `name` is a header a dead-letterer of ours adds.
    pub fn is_ours(name: &str) -> bool {
        header::PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn written_headers_read_back_as_they_were() {
        let written = DlqHeaders {
            reason: "qty must be at least 1, got 0".into(),
            service: Some("inventory-svc".into()),
            exchange: Some("order_events".into()),
            routing_key: Some("order.placed".into()),
            queue: Some("inventory_queue".into()),
            at: Some(1_700_000_000),
            attempts: None,
        };
        let pairs = written.to_pairs();
        let names: Vec<&str> = pairs.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            [
                "x-dlq-reason",
                "x-dlq-service",
                "x-original-exchange",
                "x-original-routing-key",
                "x-original-queue",
                "x-dlq-at"
            ]
        );
        let table: HashMap<&str, String> = pairs.into_iter().collect();
        let read = DlqHeaders::read(|name| table.get(name).cloned());
        assert_eq!(read, Some(written));
    }

    #[test]
    fn without_a_reason_no_consumer_of_ours_dead_lettered_it() {
        assert_eq!(DlqHeaders::read(|_| None), None);
        assert!(DlqHeaders::is_ours("x-original-queue"));
        assert!(!DlqHeaders::is_ours("x-death"));
    }
}
