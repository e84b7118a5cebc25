//! The exchange, queues and bindings: one definition, declared by every service at start-up.
//!
//! Declaring is idempotent, so start-up order never matters, and cheap, so it is done again after
//! every (re)connect and whenever a publish finds something missing (invariant 7: a deleted
//! exchange, binding or queue comes back without a restart). The four lab queues are durable,
//! classic and carry **no x-arguments**: a lab script's plain `queue_declare` must match them, or
//! the broker answers 406 PRECONDITION_FAILED. Each consumed queue also has a retry queue of our
//! own (`<queue>.retry`), which does carry arguments: a message parked there with a per-message
//! TTL is dead-lettered back to its work queue when the TTL runs out (see [`crate::retry`]).

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

use crate::events::EventType;

/// Names of the saga's exchange and queues; each is configurable, the defaults are the lab's.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Topic exchange every event is published to.
    #[arg(long, env = "EXCHANGE", default_value = "order_events")]
    pub exchange: String,
    /// Queue inventory-svc consumes (order.placed, order.cancelled).
    #[arg(long, env = "INVENTORY_QUEUE", default_value = "inventory_queue")]
    pub inventory_queue: String,
    /// Queue order-svc's status consumer reads (inventory outcomes).
    #[arg(long, env = "ORDER_STATUS_QUEUE", default_value = "order_status_queue")]
    pub order_status_queue: String,
    /// Queue notification-svc consumes (inventory outcomes).
    #[arg(long, env = "NOTIFICATION_QUEUE", default_value = "notification_queue")]
    pub notification_queue: String,
    /// Where poison messages go, published directly (no binding).
    #[arg(long, env = "DLQ_QUEUE", default_value = "dlq_queue")]
    pub dlq_queue: String,
}

impl Default for Topology {
    fn default() -> Self {
        Self {
            exchange: "order_events".into(),
            inventory_queue: "inventory_queue".into(),
            order_status_queue: "order_status_queue".into(),
            notification_queue: "notification_queue".into(),
            dlq_queue: "dlq_queue".into(),
        }
    }
}

impl Topology {
    /// Every queue of the topology, in the order a person would read them.
    pub fn queues(&self) -> [&str; 4] {
        [
            &self.inventory_queue,
            &self.order_status_queue,
            &self.notification_queue,
            &self.dlq_queue,
        ]
    }

    /// The queues the services consume (each has a retry queue).
    pub fn consumed_queues(&self) -> [&str; 3] {
        [
            &self.inventory_queue,
            &self.order_status_queue,
            &self.notification_queue,
        ]
    }

    /// Where a failed delivery from `queue` waits for its next attempt.
    pub fn retry_queue(queue: &str) -> String {
        format!("{queue}.retry")
    }

    /// `(queue, routing key)` pairs bound on the exchange.
    pub fn bindings(&self) -> Vec<(&str, &'static str)> {
        let outcomes = [
            EventType::InventoryReserved,
            EventType::InventoryFailed,
            EventType::InventoryReleased,
        ];
        let mut bindings = vec![
            (
                self.inventory_queue.as_str(),
                EventType::OrderPlaced.routing_key(),
            ),
            (
                self.inventory_queue.as_str(),
                EventType::OrderCancelled.routing_key(),
            ),
        ];
        for queue in [&self.order_status_queue, &self.notification_queue] {
            bindings.extend(outcomes.iter().map(|t| (queue.as_str(), t.routing_key())));
        }
        bindings
    }

    /// Declare the exchange, the four queues, their bindings and the retry queues. Idempotent.
    ///
    /// # Errors
    /// Any broker refusal, e.g. 406 if a queue already exists with other arguments.
    pub async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        channel
            .exchange_declare(
                self.exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        for queue in self.queues() {
            channel
                .queue_declare(
                    queue.into(),
                    QueueDeclareOptions::durable(),
                    FieldTable::default(),
                )
                .await?;
        }
        for queue in self.consumed_queues() {
            channel
                .queue_declare(
                    Self::retry_queue(queue).as_str().into(),
                    QueueDeclareOptions::durable(),
                    retry_queue_arguments(queue),
                )
                .await?;
        }
        for (queue, key) in self.bindings() {
            channel
                .queue_bind(
                    queue.into(),
                    self.exchange.as_str().into(),
                    key.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }
}

/// A retry queue has no consumer: messages sit there until their TTL ends, then the broker
/// dead-letters them through the default exchange straight back into `work_queue`.
fn retry_queue_arguments(work_queue: &str) -> FieldTable {
    let text = |s: &str| AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()));
    let mut args = FieldTable::default();
    args.insert("x-dead-letter-exchange".into(), text(""));
    args.insert("x-dead-letter-routing-key".into(), text(work_queue));
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_as_the_design_says() {
        let t = Topology::default();
        let b = t.bindings();
        assert!(b.contains(&("inventory_queue", "order.placed")));
        assert!(b.contains(&("inventory_queue", "order.cancelled")));
        assert!(b.contains(&("notification_queue", "inventory.released")));
        assert!(b.contains(&("order_status_queue", "inventory.failed")));
        assert!(!b.iter().any(|(q, _)| *q == "dlq_queue"));
        assert_eq!(b.len(), 8);
    }

    #[test]
    fn each_consumed_queue_has_a_retry_queue_that_leads_back_to_it() {
        let t = Topology::default();
        assert_eq!(
            Topology::retry_queue(&t.inventory_queue),
            "inventory_queue.retry"
        );
        let args = retry_queue_arguments("inventory_queue");
        let back = args.inner().get("x-dead-letter-routing-key");
        assert!(
            matches!(back, Some(AMQPValue::LongString(s)) if s.as_bytes() == b"inventory_queue")
        );
        assert!(!t.consumed_queues().contains(&t.dlq_queue.as_str()));
    }
}
