//! The exchange, queues and bindings: one definition, declared by every service at start-up.
//!
//! Declaring is idempotent, so start-up order never matters, and cheap, so it is done again after
//! every (re)connect and whenever a publish finds something missing (invariant 7: a deleted
//! exchange, binding or queue comes back without a restart). The four lab queues are durable,
//! classic and carry **no x-arguments**: a lab script's plain `queue_declare` must match them, or
//! the broker answers 406 PRECONDITION_FAILED. Each consumed queue also has two helper queues of
//! our own. Its retry queue (`<queue>.retry`) carries arguments: a message parked there with a
//! per-message TTL is dead-lettered, when the TTL runs out, into the retry queue's way back
//! (`<queue>.retry.due`, plain), which the queue's consumer reads beside the work queue (see
//! [`crate::amqp::consumer`]). Not straight back into the work queue: dead-lettering to a queue that
//! is missing at that moment (deleted, not declared yet) drops the message without a trace.
//!
//! Beside the lab's four, one queue of ours: `order_catalog_queue`, order-svc's copy of the
//! catalog's events (`product.*`, inventory-svc's), plain like the lab's. The lab's queues get no
//! product bindings: a lab script reading them sees the events it knows, and nothing else.
//!
//! [`Topology::declarations`] lists what to declare queue by queue, so that one queue the broker
//! refuses stops only itself ([`crate::amqp::declare_topology`]).

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use saga_domain::events::EventType;

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
    /// Queue notification-svc consumes (inventory outcomes and order.status.updated).
    #[arg(long, env = "NOTIFICATION_QUEUE", default_value = "notification_queue")]
    pub notification_queue: String,
    /// Where poison messages go, published directly (no binding).
    #[arg(long, env = "DLQ_QUEUE", default_value = "dlq_queue")]
    pub dlq_queue: String,
    /// Queue order-svc's catalog replica reads (inventory-svc's product events).
    #[arg(
        long,
        env = "ORDER_CATALOG_QUEUE",
        default_value = "order_catalog_queue"
    )]
    pub order_catalog_queue: String,
}

impl Default for Topology {
    fn default() -> Self {
        Self {
            exchange: "order_events".into(),
            inventory_queue: "inventory_queue".into(),
            order_status_queue: "order_status_queue".into(),
            notification_queue: "notification_queue".into(),
            dlq_queue: "dlq_queue".into(),
            order_catalog_queue: "order_catalog_queue".into(),
        }
    }
}

impl Topology {
    /// The classic lab's four queues, in the order a person would read them.
    pub fn queues(&self) -> [&str; 4] {
        [
            &self.inventory_queue,
            &self.order_status_queue,
            &self.notification_queue,
            &self.dlq_queue,
        ]
    }

    /// The queues the services consume (each has a retry queue).
    pub fn consumed_queues(&self) -> [&str; 4] {
        [
            &self.inventory_queue,
            &self.order_status_queue,
            &self.notification_queue,
            &self.order_catalog_queue,
        ]
    }

    /// Where a failed delivery from `queue` waits for its next attempt.
    pub fn retry_queue(queue: &str) -> String {
        format!("{queue}.retry")
    }

    /// Where a parked message goes when its wait in [`Self::retry_queue`] is over; the consumer
    /// of `queue` reads it too.
    pub fn retry_due_queue(queue: &str) -> String {
        format!("{queue}.retry.due")
    }

    /// Every queue to declare, with its arguments and the routing keys it is bound with: the
    /// four lab queues and the catalog's (no arguments), then each consumed queue's retry queue
    /// and way back.
    pub fn declarations(&self) -> Vec<QueueDeclaration> {
        let bindings = self.bindings();
        let plain = self
            .queues()
            .into_iter()
            .chain([self.order_catalog_queue.as_str()]);
        let mut declarations: Vec<QueueDeclaration> = plain
            .map(|queue| QueueDeclaration {
                name: queue.to_owned(),
                arguments: FieldTable::default(),
                routing_keys: bindings
                    .iter()
                    .filter(|(q, _)| *q == queue)
                    .map(|(_, key)| *key)
                    .collect(),
                replaceable: false,
            })
            .collect();
        for queue in self.consumed_queues() {
            declarations.push(QueueDeclaration {
                name: Self::retry_queue(queue),
                arguments: retry_queue_arguments(queue),
                routing_keys: Vec::new(),
                replaceable: true,
            });
            declarations.push(QueueDeclaration {
                name: Self::retry_due_queue(queue),
                arguments: FieldTable::default(),
                routing_keys: Vec::new(),
                replaceable: true,
            });
        }
        declarations
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
        // Only notification-svc tells anyone about a status change (shipped, delivered, a
        // timeout); order-svc is its author and inventory has nothing to do with it.
        bindings.push((
            self.notification_queue.as_str(),
            EventType::OrderStatusUpdated.routing_key(),
        ));
        // Each product event by its own key rather than `product.#`: a key that names no event
        // would reach the replica only to be dead-lettered, and the contract tests hold every
        // binding to an event of EventType::ALL.
        bindings.extend(
            EventType::PRODUCT
                .iter()
                .map(|t| (self.order_catalog_queue.as_str(), t.routing_key())),
        );
        bindings
    }

    /// Declare the exchange on `channel`. Idempotent.
    ///
    /// # Errors
    /// The broker refused it (406: it exists with another type) or the channel is gone.
    pub async fn declare_exchange(&self, channel: &Channel) -> lapin::Result<()> {
        channel
            .exchange_declare(
                name(&self.exchange)?,
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
    }

    /// Declare everything on one channel, stopping at the first refusal (which closes the
    /// channel). For tests and tools that want all or nothing; the services declare queue by
    /// queue ([`crate::amqp::declare_topology`]). Idempotent.
    ///
    /// # Errors
    /// Any broker refusal, e.g. 406 if a queue already exists with other arguments.
    pub async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        self.declare_exchange(channel).await?;
        for queue in self.declarations() {
            queue.declare(channel, &self.exchange).await?;
        }
        Ok(())
    }
}

/// One queue of the topology: its name, arguments and bindings on the saga's exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueDeclaration {
    pub name: String,
    pub arguments: FieldTable,
    pub routing_keys: Vec<&'static str>,
    /// A helper queue of ours (nobody else declares it): if it exists with other arguments (an
    /// older version's), it may be deleted once empty and declared anew.
    pub replaceable: bool,
}

impl QueueDeclaration {
    /// Declare the queue (durable) and bind it. Idempotent.
    ///
    /// # Errors
    /// The broker refused (406 if the queue exists with other arguments; the channel is then
    /// closed) or the channel is gone.
    pub async fn declare(&self, channel: &Channel, exchange: &str) -> lapin::Result<()> {
        channel
            .queue_declare(
                name(&self.name)?,
                QueueDeclareOptions::durable(),
                self.arguments.clone(),
            )
            .await?;
        for key in &self.routing_keys {
            channel
                .queue_bind(
                    name(&self.name)?,
                    name(exchange)?,
                    name(key)?,
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }
}

/// A configured name as an AMQP short string, which holds at most 255 bytes.
fn name(name: &str) -> lapin::Result<ShortString> {
    ShortString::try_new(name).map_err(|e| {
        lapin::Error::from(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{name:?} cannot be an AMQP name: {e}"),
        ))
    })
}

/// A retry queue has no consumer: messages sit there until their TTL ends, then the broker
/// dead-letters them through the default exchange into the way back of `work_queue`. The queue's
/// own TTL is the longest retry delay ([`saga_domain::retry::MAX_DELAY`]): a parked message's own
/// expiration is shorter and wins, and one that someone put there without an expiration comes
/// back after an hour instead of never.
fn retry_queue_arguments(work_queue: &str) -> FieldTable {
    let text = |s: &str| AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()));
    let mut args = FieldTable::default();
    let ceiling = i32::try_from(saga_domain::retry::MAX_DELAY.as_millis()).unwrap_or(i32::MAX);
    args.insert("x-message-ttl".into(), AMQPValue::LongInt(ceiling));
    args.insert("x-dead-letter-exchange".into(), text(""));
    args.insert(
        "x-dead-letter-routing-key".into(),
        text(&Topology::retry_due_queue(work_queue)),
    );
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
        assert_eq!(b.len(), 9 + 5);
    }

    #[test]
    fn only_the_catalog_queue_hears_product_events() {
        let t = Topology::default();
        for (queue, key) in t.bindings() {
            let product = key.starts_with("product.");
            assert_eq!(queue == "order_catalog_queue", product, "{queue} {key}");
        }
        let catalog = t
            .declarations()
            .into_iter()
            .find(|d| d.name == "order_catalog_queue")
            .unwrap();
        assert_eq!(catalog.routing_keys.len(), 5);
        assert!(catalog.arguments.inner().is_empty());
        assert!(t.consumed_queues().contains(&"order_catalog_queue"));
        assert!(
            !t.queues().contains(&"order_catalog_queue"),
            "not a lab queue"
        );
    }

    #[test]
    fn only_notification_queue_hears_status_changes() {
        let t = Topology::default();
        let hearing: Vec<&str> = t
            .bindings()
            .into_iter()
            .filter(|(_, key)| *key == "order.status.updated")
            .map(|(queue, _)| queue)
            .collect();
        assert_eq!(hearing, ["notification_queue"]);
        let notification = t
            .declarations()
            .into_iter()
            .find(|d| d.name == "notification_queue")
            .unwrap();
        assert_eq!(
            notification.routing_keys,
            [
                "inventory.reserved",
                "inventory.failed",
                "inventory.released",
                "order.status.updated"
            ]
        );
        assert!(
            notification.arguments.inner().is_empty(),
            "a lab queue keeps no x-arguments"
        );
    }

    #[test]
    fn each_consumed_queue_has_a_retry_queue_that_leads_to_its_way_back() {
        let t = Topology::default();
        assert_eq!(
            Topology::retry_queue(&t.inventory_queue),
            "inventory_queue.retry"
        );
        let args = retry_queue_arguments("inventory_queue");
        let back = args.inner().get("x-dead-letter-routing-key");
        assert!(
            matches!(back, Some(AMQPValue::LongString(s)) if s.as_bytes() == b"inventory_queue.retry.due")
        );
        assert!(
            matches!(
                args.inner().get("x-message-ttl"),
                Some(AMQPValue::LongInt(3_600_000))
            ),
            "nothing stays in a retry queue for ever"
        );
        assert!(!t.consumed_queues().contains(&t.dlq_queue.as_str()));
    }

    #[test]
    fn the_lab_queues_are_declared_plainly_one_by_one() {
        let t = Topology::default();
        let all = t.declarations();
        assert_eq!(all.len(), 5 + 4 * 2);
        for queue in t.queues() {
            let d = all.iter().find(|d| d.name == queue).unwrap();
            assert!(d.arguments.inner().is_empty(), "{queue} has arguments");
        }
        let inventory = all.iter().find(|d| d.name == "inventory_queue").unwrap();
        assert_eq!(inventory.routing_keys, ["order.placed", "order.cancelled"]);
        let due = all
            .iter()
            .find(|d| d.name == "inventory_queue.retry.due")
            .unwrap();
        assert!(due.arguments.inner().is_empty() && due.routing_keys.is_empty());
        let bound: usize = all.iter().map(|d| d.routing_keys.len()).sum();
        assert_eq!(bound, t.bindings().len());
    }
}
