//! What notification-svc does with one inventory outcome: notify once, whatever the redeliveries.
//!
//! claim (Redis) → deliver (sink) → record as sent (Redis) → ack. A crash after the claim leaves
//! a pending claim that expires after a lease, so the redelivered message is still notified; a
//! duplicate finds 'sent' and is only acked.

use lapin::message::Delivery;
use redis::Script;
use redis::aio::ConnectionManager;
use shared::amqp::Publisher;
use shared::consumer::{Handler, Outcome};
use shared::events::{IncomingMeta, InventoryOutcome, unix_now_millis};
use shared::store::Keys;
use tracing::info;

use crate::sink::{Notification, Sink};

pub struct NotifyHandler {
    pub redis: ConnectionManager,
    pub keys: Keys,
    pub sink: Sink,
    pub claim: Script,
    /// Identifies this process in claims.
    pub instance: String,
    pub lease_ms: u64,
}

impl Handler for NotifyHandler {
    async fn handle(&self, delivery: &Delivery, _publisher: &Publisher) -> Outcome {
        let (_, outcome) = match InventoryOutcome::from_delivery(delivery) {
            Ok(read) => read,
            Err(poison) => return Outcome::DeadLetter(poison.0),
        };
        let order_id = outcome.order_id().to_string();
        let label = outcome.status().to_lowercase();
        let key = self.keys.notified(&order_id, &label);
        let owner = format!("{}-{}", self.instance, delivery.delivery_tag);

        let claim: String = match self
            .claim
            .key(&key)
            .arg(&owner)
            .arg(unix_now_millis())
            .arg(self.lease_ms)
            .invoke_async(&mut self.redis.clone())
            .await
        {
            Ok(c) => c,
            Err(e) => return Outcome::Failed(e.into()),
        };
        match claim.as_str() {
            "sent" => {
                info!(order_id, outcome = %label, redelivered = delivery.redelivered, "duplicate: already notified; not notifying again");
                return Outcome::Duplicate;
            }
            "busy" => {
                // Not a failure: the other instance's lease ends, then this one may send.
                return Outcome::Failed(
                    shared::retry::WaitOut("another instance is sending this notification".into())
                        .into(),
                );
            }
            _ => {}
        }

        let event_id = IncomingMeta::of(&delivery.properties)
            .event_id
            .unwrap_or_default();
        let notification = notification_of(&outcome, &label, event_id);
        if let Err(e) = self.sink.deliver(&notification).await {
            return Outcome::Failed(e.context("sink"));
        }
        let record = serde_json::to_string(&notification).unwrap_or_default();
        let written: redis::RedisResult<()> = redis::pipe()
            .atomic()
            .set(&key, "sent")
            .ignore()
            .rpush(self.keys.notifications(), record)
            .ignore()
            .query_async(&mut self.redis.clone())
            .await;
        match written {
            Ok(()) => {
                metrics::counter!("saga_notifications_total", "outcome" => label).increment(1);
                Outcome::Processed
            }
            // Our claim stays ours; the retry re-delivers to the sink (at-least-once at this edge).
            Err(e) => Outcome::Failed(e.into()),
        }
    }

    async fn dead_lettered(&self, delivery: &Delivery, reason: &str) {
        shared::store::record_dlq_hop(&self.redis, &self.keys, delivery, crate::SERVICE, reason)
            .await;
    }
}

fn notification_of(outcome: &InventoryOutcome, label: &str, event_id: String) -> Notification {
    let order_id = outcome.order_id().to_string();
    let (student_id, item, qty, message) = match outcome {
        InventoryOutcome::Reserved {
            item,
            qty,
            student_id,
            remaining,
            ..
        } => (
            student_id.as_ref().map(ToString::to_string),
            Some(item.to_string()),
            qty.get(),
            format!("order {order_id} confirmed: {qty} x {item} reserved ({remaining} left)"),
        ),
        InventoryOutcome::Failed {
            item,
            qty,
            student_id,
            reason,
            ..
        } => (
            student_id.as_ref().map(ToString::to_string),
            Some(item.to_string()),
            qty.get(),
            format!("order {order_id} failed: {reason}"),
        ),
        InventoryOutcome::Released { item, qty, .. } => (
            None,
            item.as_ref().map(ToString::to_string),
            *qty,
            format!("order {order_id} cancelled: {qty} unit(s) returned to stock"),
        ),
    };
    Notification {
        order_id,
        outcome: label.to_owned(),
        student_id,
        item,
        qty,
        message,
        event_id,
        at_ms: unix_now_millis(),
    }
}
