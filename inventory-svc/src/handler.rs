//! What inventory-svc does with one delivery from `inventory_queue`.
//!
//! Parse (poison → DLQ), decide in Redis (one Lua script), announce the decision with a
//! confirmed publish, and only then let the consume loop ack. A duplicate re-announces the
//! recorded decision with its original event id: the first attempt may have died after the
//! Redis write and before its publish, so "skip silently" would lose the outcome.

use lapin::message::Delivery;
use shared::amqp::Publisher;
use shared::consumer::{Handler, Outcome};
use shared::events::{
    EventMeta, EventType, IncomingMeta, InventoryOutcome, OrderCancelled, OrderPlaced, Poison,
};
use tracing::info;

use crate::stock::{Decision, Ledger};

pub const SERVICE: &str = "inventory-svc";

pub struct InventoryHandler {
    pub ledger: Ledger,
    pub exchange: String,
}

/// The two commands inventory-svc understands.
enum Command {
    Reserve(OrderPlaced),
    Release(OrderCancelled),
}

impl Command {
    fn parse(delivery: &Delivery) -> Result<Self, Poison> {
        // Lab scripts may publish straight to the queue with no type: an order is the default.
        match EventType::of_delivery(delivery.routing_key.as_str(), &delivery.properties) {
            Some(EventType::OrderCancelled) => {
                Ok(Self::Release(OrderCancelled::from_body(&delivery.data)?))
            }
            Some(EventType::OrderPlaced) | None => {
                Ok(Self::Reserve(OrderPlaced::from_body(&delivery.data)?))
            }
            Some(other) => Err(Poison(format!(
                "{} does not belong on the inventory queue",
                other.name()
            ))),
        }
    }
}

impl Handler for InventoryHandler {
    async fn handle(&self, delivery: &Delivery, publisher: &Publisher) -> Outcome {
        let command = match Command::parse(delivery) {
            Ok(command) => command,
            Err(poison) => return Outcome::DeadLetter(poison.0),
        };
        let decision = match &command {
            Command::Reserve(order) => self.ledger.reserve(order).await,
            Command::Release(cancel) => self.ledger.release(&cancel.order_id).await,
        };
        let decision = match decision {
            Ok(decision) => decision,
            Err(e) => return Outcome::Failed(e.into()),
        };
        log_decision(&decision, delivery.redelivered);
        record_stock_gauge(&decision.outcome);

        let incoming = IncomingMeta::of(&delivery.properties);
        if let Err(e) = self
            .announce(&decision, incoming.correlation_id.as_deref(), publisher)
            .await
        {
            return Outcome::Failed(e.into());
        }
        if decision.first_time {
            Outcome::Processed
        } else {
            Outcome::Duplicate
        }
    }

    async fn dead_lettered(&self, delivery: &Delivery, reason: &str) {
        let (redis, keys) = (self.ledger.redis(), self.ledger.keys());
        shared::store::record_dlq_hop(redis, keys, delivery, SERVICE, reason).await;
    }
}

impl InventoryHandler {
    /// Publish the decision's event (with its recorded event id) and wait for the confirm.
    async fn announce(
        &self,
        decision: &Decision,
        correlation_id: Option<&str>,
        publisher: &Publisher,
    ) -> Result<(), shared::amqp::PublishError> {
        let event_type = decision.outcome.event_type();
        let order_id = decision.outcome.order_id().as_str();
        let mut meta = EventMeta::new(event_type, correlation_id.unwrap_or(order_id), SERVICE);
        meta.event_id = decision.event_id.clone();
        publisher
            .publish(
                &self.exchange,
                event_type.routing_key(),
                &decision.outcome.to_body(),
                meta.properties(),
            )
            .await
    }
}

/// One readable line per business event, worded as the classic lab's drills grep for them
/// (`Reserved 5 burger for order <id>`, `Duplicate detected for order <id>`). The order id is
/// in the text and in the delivery's span; the rest are structured fields as well.
fn log_decision(decision: &Decision, redelivered: bool) {
    let order_id = decision.outcome.order_id().as_str();
    if !decision.first_time {
        info!(verdict = "duplicate", outcome = decision.outcome.status(), event_id = %decision.event_id, redelivered,
              "Duplicate detected for order {order_id}: re-sending the recorded outcome");
        return;
    }
    match &decision.outcome {
        InventoryOutcome::Reserved {
            item,
            qty,
            remaining,
            ..
        } => {
            info!(%item, %qty, remaining, "Reserved {qty} {item} for order {order_id}")
        }
        InventoryOutcome::Failed {
            item,
            qty,
            reason,
            code,
            ..
        } => {
            info!(%item, %qty, code = code.as_str(), "InventoryFailed for order {order_id}: {reason}")
        }
        InventoryOutcome::Released { item, qty, .. } => match item {
            Some(item) => {
                info!(%item, qty, "Released {qty} {item} for order {order_id} (order cancelled)")
            }
            None => info!(
                "Cancel for order {order_id} arrived before the order: recorded, nothing to release"
            ),
        },
    }
}

fn record_stock_gauge(outcome: &InventoryOutcome) {
    if let InventoryOutcome::Reserved {
        item, remaining, ..
    } = outcome
    {
        metrics::gauge!("saga_stock_available", "item" => item.to_string()).set(*remaining as f64);
    }
}
