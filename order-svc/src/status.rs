//! The status consumer: inventory outcomes from `order_status_queue` move orders along.

use lapin::message::Delivery;
use shared::amqp::Publisher;
use shared::consumer::{Handler, Outcome};
use shared::events::{EventMeta, IncomingMeta, InventoryOutcome, unix_now_secs};
use tracing::info;

use crate::orders::{Applied, OrderStore};

pub struct StatusHandler {
    pub store: OrderStore,
}

impl Handler for StatusHandler {
    async fn handle(&self, delivery: &Delivery, _publisher: &Publisher) -> Outcome {
        let (kind, outcome) = match InventoryOutcome::from_delivery(delivery) {
            Ok(read) => read,
            Err(poison) => return Outcome::DeadLetter(poison.0),
        };
        let order_id = outcome.order_id().to_string();

        let incoming = IncomingMeta::of(&delivery.properties);
        let meta = EventMeta {
            event_id: incoming.event_id.unwrap_or_default(),
            event_type: kind,
            correlation_id: incoming.correlation_id.unwrap_or_else(|| order_id.clone()),
            app_id: incoming.app_id.unwrap_or_else(|| "unknown".into()),
            timestamp: unix_now_secs(),
        };
        match self
            .store
            .apply(&outcome, &meta, delivery.redelivered)
            .await
        {
            Ok(Applied::Moved(status)) => {
                match &outcome {
                    InventoryOutcome::Failed { reason, .. } => {
                        info!(order_id, %status, %reason, "order failed")
                    }
                    _ => info!(order_id, %status, "order {}", status.to_lowercase()),
                }
                Outcome::Processed
            }
            Ok(Applied::Unchanged(status)) => {
                info!(order_id, %status, event = kind.name(), redelivered = delivery.redelivered,
                      "duplicate or stale outcome: order unchanged");
                Outcome::Duplicate
            }
            Ok(Applied::UnknownOrder) => {
                info!(
                    order_id,
                    event = kind.name(),
                    "outcome for an order this service never placed; nothing to update"
                );
                Outcome::Processed
            }
            Err(e) => Outcome::Failed(e.into()),
        }
    }

    async fn dead_lettered(&self, delivery: &Delivery, reason: &str) {
        shared::store::record_dlq_hop(
            self.store.redis(),
            self.store.keys(),
            delivery,
            crate::orders::SERVICE,
            reason,
        )
        .await;
    }
}
