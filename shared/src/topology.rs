//! The exchange, queues and bindings: one definition, declared by every service at start-up.
//!
//! Declaring is idempotent, so start-up order never matters. The four lab queues are durable,
//! classic and carry **no x-arguments**: a lab script's plain `queue_declare` must match them, or
//! the broker answers 406 PRECONDITION_FAILED.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
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

    /// Declare the exchange, the four queues and their bindings. Idempotent.
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
}
