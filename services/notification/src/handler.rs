//! What notification-svc does with one inventory outcome: notify once, whatever the redeliveries.
//!
//! claim ([`Claims`]) → deliver ([`Deliver`], the sink) → record as sent ([`Claims`]) → the loop
//! acks. A crash after the claim leaves a pending claim that expires after a lease, so the
//! redelivered message is still notified; a duplicate finds 'sent' and is only acked.
//!
//! Once within the saga, at least once outside it: a failure between the sink's success and the
//! record (Redis away) delivers again on the retry. The webhook sink sends the same
//! `Idempotency-Key` every time ([`crate::sink::idempotency_key`]) so a receiver can drop it.

use std::future::Future;

use redis::Script;
use saga_domain::events::{InventoryOutcome, unix_now_millis};
use saga_domain::order::Notification;
use saga_domain::wire::Malformed;
use saga_platform::amqp::consumer::{DeliveryMeta, Handler, Outcome};
use saga_platform::amqp::retry::WaitOut;
use saga_platform::redis::store::Keys;
use saga_platform::redis::store::Redis;
use tracing::info;

use crate::sink::Sink;

/// What a claim on one (order, outcome) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Ours to send (new, ours already, or taken over from a sender whose lease ran out).
    Ours,
    /// Sent before: a duplicate.
    AlreadySent,
    /// Another sender holds it right now.
    Busy,
}

/// The record of what was sent, as the handler needs it. [`RedisClaims`] keeps it in Redis
/// (a Lua claim with a lease); the unit tests use an in-memory fake.
pub trait Claims: Send + Sync + 'static {
    /// Claim the right to send `outcome`'s notification for `order_id`, as `owner`.
    fn claim(
        &self,
        order_id: &str,
        outcome: &str,
        owner: &str,
    ) -> impl Future<Output = Result<Claim, redis::RedisError>> + Send;

    /// Give back a claim `owner` holds (the sink refused): the next attempt claims it at once.
    fn unclaim(
        &self,
        order_id: &str,
        outcome: &str,
        owner: &str,
    ) -> impl Future<Output = Result<(), redis::RedisError>> + Send;

    /// Record the notification as sent (and keep it in the list of everything sent).
    fn record_sent(
        &self,
        notification: &Notification,
    ) -> impl Future<Output = Result<(), redis::RedisError>> + Send;
}

/// Where a notification goes. [`Sink`] is a log line, a file or a webhook.
pub trait Deliver: Send + Sync + 'static {
    /// Hand the notification over; an error means it was not accepted.
    fn deliver(&self, n: &Notification) -> impl Future<Output = anyhow::Result<()>> + Send;
}

impl Deliver for Sink {
    async fn deliver(&self, n: &Notification) -> anyhow::Result<()> {
        Sink::deliver(self, n).await
    }
}

/// Claims in Redis, each a key holding `pending:<owner>:<ms>` or `sent`.
pub struct RedisClaims {
    pub redis: Redis,
    pub keys: Keys,
    pub claim: Script,
    pub unclaim: Script,
    pub lease_ms: u64,
}

impl RedisClaims {
    pub fn new(redis: Redis, keys: Keys, lease_ms: u64) -> Self {
        Self {
            redis,
            keys,
            claim: Script::new(include_str!("lua/claim.lua")),
            unclaim: Script::new(include_str!("lua/unclaim.lua")),
            lease_ms,
        }
    }
}

impl Claims for RedisClaims {
    async fn claim(
        &self,
        order_id: &str,
        outcome: &str,
        owner: &str,
    ) -> Result<Claim, redis::RedisError> {
        let answer: String = self
            .claim
            .key(self.keys.notified(order_id, outcome))
            .arg(owner)
            .arg(unix_now_millis())
            .arg(self.lease_ms)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(match answer.as_str() {
            "sent" => Claim::AlreadySent,
            "busy" => Claim::Busy,
            _ => Claim::Ours,
        })
    }

    async fn unclaim(
        &self,
        order_id: &str,
        outcome: &str,
        owner: &str,
    ) -> Result<(), redis::RedisError> {
        let _gone: i64 = self
            .unclaim
            .key(self.keys.notified(order_id, outcome))
            .arg(owner)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(())
    }

    async fn record_sent(&self, n: &Notification) -> Result<(), redis::RedisError> {
        let record = serde_json::to_string(n).unwrap_or_default();
        redis::pipe()
            .atomic()
            .set(self.keys.notified(&n.order_id, n.outcome.as_str()), "sent")
            .ignore()
            .rpush(self.keys.notifications(), record)
            .ignore()
            .query_async(&mut self.redis.clone())
            .await
    }
}

pub struct NotifyHandler<C, D> {
    pub claims: C,
    pub sink: D,
    /// Identifies this process in claims.
    pub instance: String,
}

impl<C: Claims, D: Deliver> Handler for NotifyHandler<C, D> {
    type Event = InventoryOutcome;

    fn parse(meta: &DeliveryMeta, body: &[u8]) -> Result<InventoryOutcome, Malformed> {
        InventoryOutcome::from_delivery(meta.event_type(), &meta.routing_key, body)
    }

    async fn handle(&self, outcome: &InventoryOutcome, meta: &DeliveryMeta) -> Outcome {
        let order_id = outcome.order_id().as_str();
        let label = outcome.state().as_str();
        let owner = format!("{}-{}", self.instance, meta.delivery_tag);
        match self.claims.claim(order_id, label, &owner).await {
            Err(e) => return Outcome::Failed(e.into()),
            Ok(Claim::AlreadySent) => {
                info!(outcome = %label, redelivered = meta.redelivered,
                      "Duplicate detected for order {order_id}: already notified ({label}); not notifying again");
                return Outcome::Duplicate(Vec::new());
            }
            // Not a failure: the other sender's lease ends, then this one may send.
            Ok(Claim::Busy) => {
                let busy = WaitOut("another instance is sending this notification".into());
                return Outcome::Failed(busy.into());
            }
            Ok(Claim::Ours) => {}
        }
        let event_id = meta.event_id.clone().unwrap_or_default();
        let notification = notification_of(outcome, event_id);
        if let Err(e) = self.sink.deliver(&notification).await {
            // The next attempt may come as another delivery (back from the retry queue), with
            // another owner: let it claim at once. Should this fail, the lease frees the claim.
            let _ = self.claims.unclaim(order_id, label, &owner).await;
            return Outcome::Failed(e.context("sink"));
        }
        match self.claims.record_sent(&notification).await {
            Ok(()) => {
                metrics::counter!("saga_notifications_total", "outcome" => label).increment(1);
                Outcome::Processed(Vec::new())
            }
            // Our claim stays ours; the retry re-delivers to the sink (at-least-once at this edge).
            Err(e) => Outcome::Failed(e.into()),
        }
    }
}

fn notification_of(outcome: &InventoryOutcome, event_id: String) -> Notification {
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
        outcome: saga_domain::order::NotificationOutcome::of_reservation(outcome.state()),
        student_id,
        item,
        qty,
        message,
        event_id,
        at_ms: unix_now_millis(),
    }
}

#[cfg(test)]
mod tests {
    //! The handler against in-memory claims and sink. The Lua claim with its lease is exercised
    //! against real Redis by the integration tests (two notification-svc, kill -9 mid-send).

    use std::collections::HashMap;
    use std::sync::Mutex;

    use saga_domain::events::EventType;
    use saga_domain::ids::{Item, OrderId, Qty};
    use saga_platform::amqp::retry::is_outage;

    use super::*;

    #[derive(Default)]
    struct FakeClaims {
        /// (order, outcome) → owner while pending, or "sent".
        claims: Mutex<HashMap<(String, String), String>>,
        unreachable: Mutex<bool>,
    }

    impl Claims for FakeClaims {
        async fn claim(
            &self,
            order: &str,
            outcome: &str,
            owner: &str,
        ) -> Result<Claim, redis::RedisError> {
            if *self.unreachable.lock().unwrap() {
                return Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into());
            }
            let mut claims = self.claims.lock().unwrap();
            let key = (order.to_owned(), outcome.to_owned());
            Ok(match claims.get(&key).map(String::as_str) {
                Some("sent") => Claim::AlreadySent,
                Some(holder) if holder != owner => Claim::Busy,
                _ => {
                    claims.insert(key, owner.to_owned());
                    Claim::Ours
                }
            })
        }

        async fn unclaim(
            &self,
            order: &str,
            outcome: &str,
            owner: &str,
        ) -> Result<(), redis::RedisError> {
            let mut claims = self.claims.lock().unwrap();
            let key = (order.to_owned(), outcome.to_owned());
            if claims.get(&key).is_some_and(|holder| holder == owner) {
                claims.remove(&key);
            }
            Ok(())
        }

        async fn record_sent(&self, n: &Notification) -> Result<(), redis::RedisError> {
            let key = (n.order_id.clone(), n.outcome.to_string());
            self.claims.lock().unwrap().insert(key, "sent".into());
            Ok(())
        }
    }

    #[derive(Default)]
    struct FakeSink {
        sent: Mutex<Vec<Notification>>,
        failing: Mutex<bool>,
    }

    impl Deliver for FakeSink {
        async fn deliver(&self, n: &Notification) -> anyhow::Result<()> {
            anyhow::ensure!(
                !*self.failing.lock().unwrap(),
                "webhook answered 500 Internal Server Error"
            );
            self.sent.lock().unwrap().push(n.clone());
            Ok(())
        }
    }

    fn handler() -> NotifyHandler<FakeClaims, FakeSink> {
        NotifyHandler {
            claims: FakeClaims::default(),
            sink: FakeSink::default(),
            instance: "me".into(),
        }
    }

    fn reserved(id: &str) -> InventoryOutcome {
        InventoryOutcome::Reserved {
            order_id: OrderId::parse(id).unwrap(),
            item: Item::parse("burger").unwrap(),
            qty: Qty::parse(2).unwrap(),
            student_id: None,
            remaining: 8,
        }
    }

    fn released(id: &str) -> InventoryOutcome {
        InventoryOutcome::Released {
            order_id: OrderId::parse(id).unwrap(),
            item: Some(Item::parse("burger").unwrap()),
            qty: 2,
        }
    }

    fn label(outcome: &Outcome) -> &'static str {
        match outcome {
            Outcome::Processed(_) => "processed",
            Outcome::Duplicate(_) => "duplicate",
            Outcome::Failed(e) if is_outage(e) => "outage",
            Outcome::Failed(_) => "failed",
        }
    }

    fn delivery(tag: u64) -> DeliveryMeta {
        DeliveryMeta {
            delivery_tag: tag,
            event_id: Some(format!("event-{tag}")),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn one_notification_per_order_and_outcome() {
        let h = handler();
        // (what happens, outcome, delivery tag, handler's outcome, notifications sent so far)
        let steps = [
            ("reserved", reserved("a"), 1, "processed", 1),
            ("reserved, redelivered", reserved("a"), 2, "duplicate", 1),
            (
                "released: another outcome",
                released("a"),
                3,
                "processed",
                2,
            ),
            ("another order", reserved("b"), 4, "processed", 3),
        ];
        for (what, outcome, tag, expected, sent) in steps {
            let got = h.handle(&outcome, &delivery(tag)).await;
            assert_eq!(label(&got), expected, "{what}");
            assert_eq!(h.sink.sent.lock().unwrap().len(), sent, "{what}");
        }
        let first = h.sink.sent.lock().unwrap()[0].clone();
        assert_eq!(
            (first.order_id.as_str(), first.outcome.as_str()),
            ("a", "reserved")
        );
        assert_eq!(
            first.event_id, "event-1",
            "the receiver can deduplicate by event id"
        );
    }

    #[tokio::test]
    async fn a_claim_held_by_another_sender_is_waited_out() {
        let h = handler();
        h.claims
            .claims
            .lock()
            .unwrap()
            .insert(("a".into(), "reserved".into()), "someone-else".into());
        let got = h.handle(&reserved("a"), &delivery(1)).await;
        assert_eq!(
            label(&got),
            "outage",
            "busy is waited out, never dead-lettered"
        );
        assert!(h.sink.sent.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_failing_sink_is_a_failure_and_a_missing_store_an_outage() {
        let h = handler();
        *h.sink.failing.lock().unwrap() = true;
        assert_eq!(
            label(&h.handle(&reserved("a"), &delivery(1)).await),
            "failed"
        );
        // The retry comes back from the retry queue as another delivery: the claim was given
        // back, so it sends at once when the sink is back.
        *h.sink.failing.lock().unwrap() = false;
        assert_eq!(
            label(&h.handle(&reserved("a"), &delivery(7)).await),
            "processed"
        );
        assert_eq!(h.sink.sent.lock().unwrap().len(), 1);

        *h.claims.unreachable.lock().unwrap() = true;
        assert_eq!(
            label(&h.handle(&reserved("b"), &delivery(2)).await),
            "outage"
        );
    }

    #[test]
    fn parsing_reads_outcomes_and_refuses_orders() {
        type H = NotifyHandler<FakeClaims, FakeSink>;
        let meta = |kind: EventType| DeliveryMeta {
            routing_key: kind.routing_key().into(),
            ..Default::default()
        };
        let body = br#"{"order_id":"a","item":"burger","qty":1}"#;
        assert!(H::parse(&meta(EventType::InventoryReleased), body).is_ok());
        let wrong = H::parse(&meta(EventType::OrderPlaced), body).unwrap_err();
        assert_eq!(wrong.0, "OrderPlaced is not an inventory outcome");
    }
}
