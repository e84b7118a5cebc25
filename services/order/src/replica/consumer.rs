//! The catalog consumer: inventory's product events from `order_catalog_queue` feed the
//! replica. The consume loop parses each delivery into a [`ProductEvent`] (anything else on this
//! queue is poison); [`CatalogHandler::handle`] applies it if it is newer than what the replica
//! holds. Nothing is announced: the replica is order-svc's own business.

use std::future::Future;

use saga_domain::product::ProductEvent;
use saga_domain::wire::Malformed;
use saga_platform::amqp::consumer::{DeliveryMeta, Handler, Outcome};
use tracing::{debug, info};

use super::Replica;

/// The replica as the consumer needs it. [`Replica`] does it in Redis (a Lua step that keeps
/// only newer information); the unit tests use an in-memory fake.
pub trait ReplicaStore: Send + Sync + 'static {
    /// Apply the event if it is newer than what is held; whether anything changed.
    fn apply(
        &self,
        event: &ProductEvent,
    ) -> impl Future<Output = Result<bool, redis::RedisError>> + Send;
}

impl ReplicaStore for Replica {
    async fn apply(&self, event: &ProductEvent) -> Result<bool, redis::RedisError> {
        Replica::apply(self, event).await
    }
}

pub struct CatalogHandler<R> {
    pub replica: R,
}

impl<R: ReplicaStore> Handler for CatalogHandler<R> {
    type Event = ProductEvent;

    fn parse(meta: &DeliveryMeta, body: &[u8]) -> Result<ProductEvent, Malformed> {
        ProductEvent::from_delivery(meta.event_type(), &meta.routing_key, body)
    }

    async fn handle(&self, event: &ProductEvent, meta: &DeliveryMeta) -> Outcome {
        match self.replica.apply(event).await {
            Ok(true) => {
                info!(item = %event.item, seq = event.seq, event = event.event_type().routing_key(),
                      "catalog replica updated");
                Outcome::Processed(Vec::new())
            }
            // Older than what is held, a duplicate, or an alert (low, out) that changes no
            // state: acked all the same.
            Ok(false) => {
                debug!(item = %event.item, seq = event.seq, event = event.event_type().routing_key(),
                       redelivered = meta.redelivered, "catalog replica unchanged (not newer)");
                Outcome::Duplicate(Vec::new())
            }
            Err(e) => Outcome::Failed(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use saga_domain::events::EventType;
    use saga_domain::ids::Item;
    use saga_domain::product::ProductChange;

    use super::*;

    /// Keeps the highest seq per item, as `lua/replica_apply.lua` does for the stock.
    #[derive(Default)]
    struct Fake(Mutex<HashMap<String, u64>>);

    impl ReplicaStore for Fake {
        async fn apply(&self, event: &ProductEvent) -> Result<bool, redis::RedisError> {
            let mut held = self.0.lock().unwrap();
            let seq = held.entry(event.item.to_string()).or_default();
            let newer = event.seq > *seq;
            *seq = (*seq).max(event.seq);
            Ok(newer)
        }
    }

    fn meta(routing_key: &str) -> DeliveryMeta {
        DeliveryMeta {
            routing_key: routing_key.into(),
            ..DeliveryMeta::default()
        }
    }

    #[test]
    fn only_product_events_belong_here() {
        let body = br#"{"item":"burger","stock":3,"previous":4,"seq":1,"at":1}"#;
        let parsed = CatalogHandler::<Fake>::parse(&meta("product.stock.updated"), body).unwrap();
        assert_eq!(parsed.event_type(), EventType::ProductStockUpdated);
        let why = CatalogHandler::<Fake>::parse(&meta("order.placed"), body).unwrap_err();
        assert_eq!(why.0, "OrderPlaced is not a product event");
        let unknown = CatalogHandler::<Fake>::parse(&meta("product.gift"), body).unwrap_err();
        assert!(unknown.0.contains("cannot tell which event"), "{unknown}");
    }

    #[tokio::test]
    async fn an_older_event_is_acked_and_changes_nothing() {
        let handler = CatalogHandler {
            replica: Fake::default(),
        };
        let event = |seq| ProductEvent {
            item: Item::parse("burger").unwrap(),
            seq,
            at: 1,
            change: ProductChange::StockUpdated {
                stock: 1,
                previous: 2,
            },
        };
        let m = meta("product.stock.updated");
        assert!(matches!(
            handler.handle(&event(5), &m).await,
            Outcome::Processed(_)
        ));
        assert!(matches!(
            handler.handle(&event(4), &m).await,
            Outcome::Duplicate(_)
        ));
        assert!(matches!(
            handler.handle(&event(5), &m).await,
            Outcome::Duplicate(_)
        ));
    }
}
