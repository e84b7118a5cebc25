//! The status consumer: inventory outcomes from `order_status_queue` move orders along.
//!
//! The consume loop parses each delivery into an [`InventoryOutcome`]; [`StatusHandler::handle`]
//! applies it to the order through [`Orders`] as a guarded transition (the rules are
//! [`saga_domain::order::OrderStatus::next`]): a duplicate or a late event changes nothing, and is
//! only noted in the order's timeline. Each move announces itself (`order.status.updated`,
//! written into the outbox with the move: [`crate::lifecycle`]); nothing else is announced.
//!
//! An `inventory.released` for an order order-svc did not cancel (PLACED or CONFIRMED: a cancel
//! from order-svc moves it to CANCELLING first) means inventory-svc gave the stock back on an
//! `order.cancelled` that order-svc never sent, a forgery or a stray lab message. The stock is
//! gone either way, so the order follows it to CANCELLED, with a reason that says so
//! ([`saga_domain::order::UNASKED_RELEASE`]), and the log warns: orders and stock never disagree.
//! The hardened broker (scripts/broker-users.sh) refuses such a forgery in the first place.

use std::future::Future;

use saga_domain::envelope::Shape;
use saga_domain::events::{EventMeta, InventoryOutcome, unix_now_secs};
use saga_domain::order::OrderStatus;
use saga_domain::wire::Malformed;
use saga_platform::amqp::consumer::{DeliveryMeta, Handler, Outcome};
use tracing::{info, warn};

use crate::orders::{Applied, OrderStore};

/// The orders as the status consumer needs them. [`OrderStore`] does it in Redis (a Lua
/// compare-and-set); the unit tests use an in-memory fake.
pub trait Orders: Send + Sync + 'static {
    /// Apply an inventory outcome to its order, noting it in the order's timeline (with what
    /// its envelope said about the sender, if it came in one).
    fn apply(
        &self,
        outcome: &InventoryOutcome,
        meta: &EventMeta,
        redelivered: bool,
        envelope: &[(String, String)],
    ) -> impl Future<Output = Result<Applied, redis::RedisError>> + Send;
}

impl Orders for OrderStore {
    async fn apply(
        &self,
        outcome: &InventoryOutcome,
        meta: &EventMeta,
        redelivered: bool,
        envelope: &[(String, String)],
    ) -> Result<Applied, redis::RedisError> {
        OrderStore::apply(self, outcome, meta, redelivered, envelope)
            .await
            .map_err(crate::orders::WriteError::into_redis_error)
    }
}

pub struct StatusHandler<O> {
    pub orders: O,
}

impl<O: Orders> Handler for StatusHandler<O> {
    type Event = InventoryOutcome;

    fn parse(meta: &DeliveryMeta, body: &[u8]) -> Result<InventoryOutcome, Malformed> {
        InventoryOutcome::from_delivery(meta.event_type(), &meta.routing_key, body, meta.version())
    }

    async fn handle(&self, outcome: &InventoryOutcome, meta: &DeliveryMeta) -> Outcome {
        let order_id = outcome.order_id().as_str();
        let kind = outcome.event_type();
        let event = EventMeta {
            event_id: meta.event_id.clone().unwrap_or_default(),
            event_type: kind,
            correlation_id: meta
                .correlation_id
                .clone()
                .unwrap_or_else(|| order_id.to_owned()),
            app_id: meta.app_id.clone().unwrap_or_else(|| "unknown".into()),
            timestamp: unix_now_secs(),
            // The delivery's span: the status event this move publishes is its child.
            trace: meta.trace.clone(),
            version: meta.version(),
        };
        // A structured envelope's word on its sender goes into the timeline line, with its shape.
        let mut envelope = meta.kept.clone();
        if !matches!(meta.shape, Shape::Flat | Shape::CloudEventsBinary) {
            envelope.push(("shape".to_owned(), meta.shape.to_string()));
        }
        match self
            .orders
            .apply(outcome, &event, meta.redelivered, &envelope)
            .await
        {
            Ok(Applied::Moved { from, to: status }) => {
                match outcome {
                    InventoryOutcome::Failed { reason, .. } => {
                        info!(%status, %reason, "Order {order_id} failed: {reason}")
                    }
                    InventoryOutcome::Released { .. } if from != OrderStatus::Cancelling => {
                        warn!(%status, was = %from, app_id = meta.app_id.as_deref().unwrap_or("-"),
                              "Order {order_id} cancelled without a cancel from order-svc: inventory-svc released its stock on an order.cancelled order-svc never sent; the order follows the stock")
                    }
                    _ => info!(%status, "Order {order_id} {}", status.as_str().to_lowercase()),
                }
                Outcome::Processed(Vec::new())
            }
            Ok(Applied::Unchanged(status)) => {
                info!(%status, event = kind.name(), redelivered = meta.redelivered,
                      "Duplicate or stale {} for order {order_id}: order unchanged ({status})", kind.name());
                Outcome::Duplicate(Vec::new())
            }
            Ok(Applied::UnknownOrder | Applied::Replayed(_)) => {
                info!(
                    event = kind.name(),
                    "{} for order {order_id}, which this service never placed: nothing to update",
                    kind.name()
                );
                Outcome::Processed(Vec::new())
            }
            Err(e) => Outcome::Failed(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The handler against an in-memory order book that follows the domain's transition table,
    //! as the Lua compare-and-set does in Redis (which the integration tests exercise).

    use std::collections::HashMap;
    use std::sync::Mutex;

    use saga_domain::events::{EventType, FailureCode};
    use saga_domain::ids::{Item, OrderId, Qty};
    use saga_domain::order::OrderEvent;
    use saga_platform::amqp::retry::is_outage;

    use super::*;

    /// A delivery's metadata as the loop reads it off an event published with `kind`'s key.
    fn meta_for(kind: EventType) -> DeliveryMeta {
        DeliveryMeta {
            routing_key: kind.routing_key().into(),
            ..Default::default()
        }
    }

    #[derive(Default)]
    struct FakeOrders {
        statuses: Mutex<HashMap<String, OrderStatus>>,
        unreachable: Mutex<bool>,
    }

    impl FakeOrders {
        fn with(orders: &[(&str, OrderStatus)]) -> Self {
            let statuses = orders
                .iter()
                .map(|(id, s)| ((*id).to_owned(), *s))
                .collect();
            Self {
                statuses: Mutex::new(statuses),
                ..Default::default()
            }
        }
        fn status(&self, id: &str) -> Option<OrderStatus> {
            self.statuses.lock().unwrap().get(id).copied()
        }
    }

    impl Orders for FakeOrders {
        async fn apply(
            &self,
            outcome: &InventoryOutcome,
            _meta: &EventMeta,
            _redelivered: bool,
            _envelope: &[(String, String)],
        ) -> Result<Applied, redis::RedisError> {
            if *self.unreachable.lock().unwrap() {
                return Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into());
            }
            let event = match outcome {
                InventoryOutcome::Reserved { .. } => OrderEvent::Reserved,
                InventoryOutcome::Failed { .. } => OrderEvent::ReservationFailed,
                InventoryOutcome::Released { .. } => OrderEvent::Released,
            };
            let mut statuses = self.statuses.lock().unwrap();
            let Some(status) = statuses.get_mut(outcome.order_id().as_str()) else {
                return Ok(Applied::UnknownOrder);
            };
            Ok(match status.next(event) {
                Some(next) => {
                    let from = *status;
                    *status = next;
                    Applied::Moved { from, to: next }
                }
                None => Applied::Unchanged(*status),
            })
        }
    }

    fn reserved(id: &str) -> InventoryOutcome {
        InventoryOutcome::reserved_one(
            OrderId::parse(id).unwrap(),
            Item::parse("burger").unwrap(),
            Qty::parse(1).unwrap(),
            None,
            9,
        )
    }

    fn failed(id: &str) -> InventoryOutcome {
        InventoryOutcome::failed_one(
            OrderId::parse(id).unwrap(),
            Item::parse("burger").unwrap(),
            Qty::parse(1).unwrap(),
            None,
            FailureCode::InsufficientStock,
            "0 left".into(),
        )
    }

    fn released(id: &str) -> InventoryOutcome {
        InventoryOutcome::released_one(OrderId::parse(id).unwrap(), None)
    }

    fn label(outcome: &Outcome) -> &'static str {
        match outcome {
            Outcome::Processed(a) | Outcome::Duplicate(a) if !a.is_empty() => "announced?!",
            Outcome::Processed(_) => "processed",
            Outcome::Duplicate(_) => "duplicate",
            Outcome::Failed(e) if is_outage(e) => "outage",
            Outcome::Failed(_) => "failed",
        }
    }

    #[tokio::test]
    async fn outcomes_move_orders_by_the_table() {
        use OrderStatus::*;
        let handler = StatusHandler {
            orders: FakeOrders::with(&[
                ("a", Placed),
                ("b", Placed),
                ("c", Cancelling),
                ("d", Cancelled),
            ]),
        };
        // (what happens, outcome, handler's outcome, the order's status after)
        let steps = [
            ("reserved", reserved("a"), "processed", Some(Confirmed)),
            (
                "reserved again (duplicate)",
                reserved("a"),
                "duplicate",
                Some(Confirmed),
            ),
            (
                "a late failure for a confirmed order",
                failed("a"),
                "duplicate",
                Some(Confirmed),
            ),
            ("failed", failed("b"), "processed", Some(Failed)),
            (
                "released while cancelling",
                released("c"),
                "processed",
                Some(Cancelled),
            ),
            (
                "a stale reservation for a cancelled order",
                reserved("d"),
                "duplicate",
                Some(Cancelled),
            ),
            (
                "a release order-svc never asked for: the order follows the stock",
                released("a"),
                "processed",
                Some(Cancelled),
            ),
            (
                "an order never placed here",
                reserved("zzz"),
                "processed",
                None,
            ),
        ];
        for (what, outcome, expected, after) in steps {
            let id = outcome.order_id().to_string();
            let got = handler.handle(&outcome, &DeliveryMeta::default()).await;
            assert_eq!(label(&got), expected, "{what}");
            assert_eq!(handler.orders.status(&id), after, "{what}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_store_is_an_outage() {
        let handler = StatusHandler {
            orders: FakeOrders::with(&[("a", OrderStatus::Placed)]),
        };
        *handler.orders.unreachable.lock().unwrap() = true;
        let got = handler
            .handle(&reserved("a"), &DeliveryMeta::default())
            .await;
        assert_eq!(label(&got), "outage");
        assert_eq!(handler.orders.status("a"), Some(OrderStatus::Placed));
    }

    #[test]
    fn parsing_needs_to_know_the_event() {
        type H = StatusHandler<FakeOrders>;
        let body = br#"{"order_id":"a","item":"burger","qty":1,"remaining":3}"#;
        let ok = H::parse(&meta_for(EventType::InventoryReserved), body).unwrap();
        assert_eq!(ok.event_type(), EventType::InventoryReserved);
        let by_type = DeliveryMeta {
            routing_key: "order_status_queue".into(),
            kind: Some("InventoryFailed".into()),
            ..Default::default()
        };
        assert!(H::parse(&by_type, body).is_ok());
        let unknown = DeliveryMeta {
            routing_key: "order_status_queue".into(),
            ..Default::default()
        };
        assert!(
            H::parse(&unknown, body)
                .unwrap_err()
                .0
                .contains("cannot tell which event")
        );
        let poison = H::parse(
            &meta_for(EventType::InventoryReserved),
            br#"{"order_id":"a"}"#,
        );
        assert_eq!(poison.unwrap_err().0, "missing required field item");
    }
}
