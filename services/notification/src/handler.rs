//! What notification-svc does with one event: notify once per (order, outcome), whatever the
//! redeliveries and whichever event brings the news first.
//!
//! Two kinds of event arrive on `notification_queue` ([`NotifyEvent`]): inventory's outcomes and
//! order-svc's `order.status.updated`. Each stands for a [`NotificationOutcome`] (a status event
//! for CANCELLING or PLACED stands for none: nothing to tell yet) and the claim is per (order,
//! outcome), so `inventory.failed` and the status event to FAILED are one notification, as are
//! `inventory.released` and CANCELLED. CONFIRMED is told by `inventory.reserved` alone
//! ([`told_by_inventory`]).
//!
//! claim ([`Claims`]) → deliver ([`Deliver`], the sink) → record as sent ([`Claims`]) → the loop
//! acks. A crash after the claim leaves a pending claim that expires after a lease, so the
//! redelivered message is still notified; a duplicate finds 'sent' and is only acked.
//!
//! Once within the saga, at least once outside it: a failure between the sink's success and the
//! record (Redis away) delivers again on the retry. The webhook sink sends the same
//! `Idempotency-Key` every time ([`crate::sink::idempotency_key`]) so a receiver can drop it.
//!
//! What is kept, and how long: a sent mark lives `ORDER_RETENTION + DEDUPE_WINDOW` (a duplicate
//! of an order's event can arrive at most that late and still be told apart); the list of sent
//! notifications keeps the newest [`NOTIFICATIONS_KEPT`].

use std::future::Future;
use std::time::Duration;

use redis::Script;
use saga_domain::events::{EventType, InventoryOutcome, OrderStatusUpdated, unix_now_millis};
use saga_domain::order::{Notification, NotificationOutcome, OrderStatus};
use saga_domain::wire::Malformed;
use saga_platform::amqp::consumer::{DeliveryMeta, Handler, Outcome};
use saga_platform::amqp::retry::WaitOut;
use saga_platform::redis::store::Keys;
use saga_platform::redis::store::Redis;
use tracing::info;

use crate::sink::Sink;

/// How many notifications `p:notifications` keeps, the newest: it is a record for people and
/// tools (`sagactl check` and `timeline`, the board), not the dedupe (the sent marks are), and
/// without a bound it grows by one line (~250 bytes) per outcome for ever. 100,000 lines is
/// about 25 MB, more than a semester of demos or a benchmark run sends, and more than
/// `sagactl timeline` searches (its last 20,000).
pub const NOTIFICATIONS_KEPT: isize = 100_000;

/// One event from `notification_queue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyEvent {
    /// inventory-svc's decision: reserved, failed or released.
    Inventory(InventoryOutcome),
    /// order-svc says an order's status changed.
    StatusUpdated(OrderStatusUpdated),
}

impl NotifyEvent {
    pub fn order_id(&self) -> &str {
        match self {
            Self::Inventory(outcome) => outcome.order_id().as_str(),
            Self::StatusUpdated(update) => update.order_id.as_str(),
        }
    }

    /// What the customer is told about this event, if anything: a status event for a step in
    /// flight (CANCELLING, PLACED) tells nothing, and neither does CONFIRMED (see
    /// [`told_by_inventory`]).
    pub fn outcome(&self) -> Option<NotificationOutcome> {
        match self {
            Self::Inventory(outcome) => Some(NotificationOutcome::of_reservation(outcome.state())),
            Self::StatusUpdated(update) if told_by_inventory(update.new_status) => None,
            Self::StatusUpdated(update) => NotificationOutcome::of_status(update.new_status),
        }
    }
}

/// A status event to CONFIRMED is never news here: an order becomes CONFIRMED only by
/// inventory's `inventory.reserved`, which this queue receives too, so that event tells it (or,
/// for a timed-out order, knows it is no news). Claiming it again would cost a Redis call per
/// order, on the saga's busiest path, only to find "sent". FAILED and CANCELLED are different:
/// a timeout and a cancel move an order there without inventory's word, so their status events
/// are claimed like every other.
pub const fn told_by_inventory(status: OrderStatus) -> bool {
    matches!(status, OrderStatus::Confirmed)
}

/// What a claim on one (order, outcome) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Ours to send (new, ours already, or taken over from a sender whose lease ran out).
    Ours,
    /// Sent before: a duplicate.
    AlreadySent,
    /// Another sender holds it right now.
    Busy,
    /// The customer was told something that makes it no news
    /// ([`NotificationOutcome::superseded_by`]): nothing to send.
    Superseded,
}

/// The record of what was sent, as the handler needs it. [`RedisClaims`] keeps it in Redis
/// (a Lua claim with a lease); the unit tests use an in-memory fake.
pub trait Claims: Send + Sync + 'static {
    /// Claim the right to send `outcome`'s notification for `order_id`, as `owner`, unless the
    /// notification `unless` names was sent (then it is [`Claim::Superseded`]).
    fn claim(
        &self,
        order_id: &str,
        outcome: &str,
        owner: &str,
        unless: Option<NotificationOutcome>,
    ) -> impl Future<Output = Result<Claim, redis::RedisError>> + Send;

    /// Give back a claim `owner` holds (the sink refused): the next attempt claims it at once.
    fn unclaim(
        &self,
        order_id: &str,
        outcome: &str,
        owner: &str,
    ) -> impl Future<Output = Result<(), redis::RedisError>> + Send;

    /// Record the notification as sent, for the dedupe window, and keep it in the list of
    /// what was sent (the newest [`NOTIFICATIONS_KEPT`]).
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
    /// How long a sent mark is kept: a duplicate later than this is notified again.
    pub sent_ttl: Duration,
}

impl RedisClaims {
    /// Claims with a `lease_ms` lease; sent marks live `sent_ttl`
    /// ([`sent_mark_ttl`] of the service's retention settings).
    pub fn new(redis: Redis, keys: Keys, lease_ms: u64, sent_ttl: Duration) -> Self {
        Self {
            redis,
            keys,
            claim: Script::new(include_str!("lua/claim.lua")),
            unclaim: Script::new(include_str!("lua/unclaim.lua")),
            lease_ms,
            sent_ttl,
        }
    }
}

/// How long a sent mark must outlive its order: the order is kept `ORDER_RETENTION` once
/// finished, and a late duplicate of its events is recognised for `DEDUPE_WINDOW` after that,
/// as order-svc's tombstone and inventory's reservation stub are.
pub fn sent_mark_ttl(retention: &saga_platform::service::config::RetentionArgs) -> Duration {
    retention
        .order_retention
        .saturating_add(retention.dedupe_window)
}

impl Claims for RedisClaims {
    async fn claim(
        &self,
        order_id: &str,
        outcome: &str,
        owner: &str,
        superseding: Option<NotificationOutcome>,
    ) -> Result<Claim, redis::RedisError> {
        let answer: String = self
            .claim
            .key(self.keys.notified(order_id, outcome))
            .key(match superseding {
                Some(other) => self.keys.notified(order_id, other.as_str()),
                None => self.keys.notified(order_id, outcome),
            })
            .arg(owner)
            .arg(unix_now_millis())
            .arg(self.lease_ms)
            .arg(if superseding.is_some() { "1" } else { "0" })
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(match answer.as_str() {
            "sent" => Claim::AlreadySent,
            "busy" => Claim::Busy,
            "superseded" => Claim::Superseded,
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
        // At least a millisecond: PX 0 is an error, and the window is never that short anyway.
        let ttl_ms = u64::try_from(self.sent_ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        redis::pipe()
            .atomic()
            .pset_ex(
                self.keys.notified(&n.order_id, n.outcome.as_str()),
                "sent",
                ttl_ms,
            )
            .ignore()
            .rpush(self.keys.notifications(), record)
            .ignore()
            .ltrim(self.keys.notifications(), -NOTIFICATIONS_KEPT, -1)
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
    type Event = NotifyEvent;

    fn parse(meta: &DeliveryMeta, body: &[u8]) -> Result<NotifyEvent, Malformed> {
        match meta.event_type() {
            Some(EventType::OrderStatusUpdated) => {
                OrderStatusUpdated::from_body(body).map(NotifyEvent::StatusUpdated)
            }
            kind => InventoryOutcome::from_delivery(kind, &meta.routing_key, body, meta.version())
                .map(NotifyEvent::Inventory),
        }
    }

    async fn handle(&self, event: &NotifyEvent, meta: &DeliveryMeta) -> Outcome {
        let order_id = event.order_id();
        let Some(outcome) = event.outcome() else {
            if let NotifyEvent::StatusUpdated(update) = event {
                let why = if told_by_inventory(update.new_status) {
                    "told by inventory's reservation"
                } else {
                    "nothing to tell the customer"
                };
                info!(old_status = %update.old_status, new_status = %update.new_status,
                      "order {order_id} is now {}: {why}", update.new_status);
            }
            return Outcome::Processed(Vec::new());
        };
        let label = outcome.as_str();
        let owner = format!("{}-{}", self.instance, meta.delivery_tag);
        // Only inventory's word can be no news: a status event tells the order's real status
        // (an order told FAILED by inventory that a cancel then moved to CANCELLED is told so).
        let unless = match event {
            NotifyEvent::Inventory(_) => outcome.superseded_by(),
            NotifyEvent::StatusUpdated(_) => None,
        };
        match self.claims.claim(order_id, label, &owner, unless).await {
            Err(e) => return Outcome::Failed(e.into()),
            Ok(Claim::AlreadySent) => {
                info!(outcome = %label, redelivered = meta.redelivered,
                      "Duplicate detected for order {order_id}: already notified ({label}); not notifying again");
                return Outcome::Duplicate(Vec::new());
            }
            // Not a failure: another delivery (a duplicate on this instance, or another
            // instance) is at the sink; it records the notification as sent, or its lease ends.
            Ok(Claim::Busy) => {
                let busy = WaitOut("another delivery is sending this notification".into());
                return Outcome::Failed(busy.into());
            }
            Ok(Claim::Superseded) => {
                info!(outcome = %label,
                      "Order {order_id} was already told it failed: {label} after that is no news (a late answer to a timed-out order); not notifying");
                return Outcome::Processed(Vec::new());
            }
            Ok(Claim::Ours) => {}
        }
        let event_id = meta.event_id.clone().unwrap_or_default();
        let notification = match event {
            NotifyEvent::Inventory(inventory) => notification_of(inventory, event_id),
            NotifyEvent::StatusUpdated(update) => notification_of_status(update, outcome, event_id),
        };
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
    // The lab's one line names its item and quantity; an order of several, its units in all.
    let (student_id, item, qty, message) = match outcome {
        InventoryOutcome::Reserved {
            lines, student_id, ..
        } => {
            let what = match lines.as_slice() {
                [line] => format!(
                    "{} x {} reserved ({} left)",
                    line.qty, line.item, line.remaining
                ),
                lines => format!(
                    "{} lines reserved ({})",
                    lines.len(),
                    lines
                        .iter()
                        .map(|l| format!("{} x {}", l.qty, l.item))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            (
                student_id.as_ref().map(ToString::to_string),
                lines
                    .first()
                    .map(|l| l.item.to_string())
                    .filter(|_| lines.len() == 1),
                lines.iter().map(|l| l.qty.get()).sum(),
                format!("Order {order_id} confirmed: {what}"),
            )
        }
        InventoryOutcome::Failed {
            lines,
            student_id,
            reason,
            ..
        } => (
            student_id.as_ref().map(ToString::to_string),
            lines.single_line().map(|l| l.item.to_string()),
            u32::try_from(lines.units()).unwrap_or(u32::MAX),
            format!("Order {order_id} failed: {reason}"),
        ),
        InventoryOutcome::Released { lines, .. } => {
            let qty: u32 = lines.iter().map(|l| l.qty).sum();
            (
                None,
                match lines.as_slice() {
                    [line] => Some(line.item.to_string()),
                    _ => None,
                },
                qty,
                format!("Order {order_id} cancelled: {qty} unit(s) returned to stock"),
            )
        }
    };
    Notification {
        order_id,
        outcome: NotificationOutcome::of_reservation(outcome.state()),
        student_id,
        item,
        qty,
        message,
        event_id,
        at_ms: unix_now_millis(),
    }
}

/// A status event knows no student, item or quantity: only the order, its new status and why.
fn notification_of_status(
    update: &OrderStatusUpdated,
    outcome: NotificationOutcome,
    event_id: String,
) -> Notification {
    let order_id = update.order_id.to_string();
    let what = match update.new_status {
        OrderStatus::Confirmed => "confirmed",
        OrderStatus::Failed => "failed",
        OrderStatus::Cancelled => "cancelled",
        OrderStatus::Shipped => "shipped",
        OrderStatus::Delivered => "delivered",
        // Never told (see NotifyEvent::outcome); named anyway, as the status says.
        OrderStatus::Placed | OrderStatus::Cancelling => update.new_status.as_str(),
    };
    let message = match update.reason.as_deref().filter(|r| !r.is_empty()) {
        Some(reason) => format!("Order {order_id} {what}: {reason}"),
        None => format!("Order {order_id} {what}"),
    };
    Notification {
        order_id,
        outcome,
        student_id: None,
        item: None,
        qty: 0,
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

    use saga_domain::events::{EventType, FailureCode};
    use saga_domain::ids::{Item, OrderId, Qty, StudentId};
    use saga_domain::order::OrderStatus::{
        Cancelled, Cancelling, Confirmed, Delivered, Failed, Placed, Shipped,
    };
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
            unless: Option<NotificationOutcome>,
        ) -> Result<Claim, redis::RedisError> {
            if *self.unreachable.lock().unwrap() {
                return Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into());
            }
            let mut claims = self.claims.lock().unwrap();
            let key = (order.to_owned(), outcome.to_owned());
            let sent = |o: NotificationOutcome| {
                claims
                    .get(&(order.to_owned(), o.as_str().to_owned()))
                    .map(String::as_str)
                    == Some("sent")
            };
            if unless.is_some_and(sent) && claims.get(&key).map(String::as_str) != Some("sent") {
                return Ok(Claim::Superseded);
            }
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

    fn reserved(id: &str) -> NotifyEvent {
        NotifyEvent::Inventory(InventoryOutcome::reserved_one(
            OrderId::parse(id).unwrap(),
            Item::parse("burger").unwrap(),
            Qty::parse(2).unwrap(),
            None,
            8,
        ))
    }

    fn released(id: &str) -> NotifyEvent {
        NotifyEvent::Inventory(InventoryOutcome::released_one(
            OrderId::parse(id).unwrap(),
            Some((Item::parse("burger").unwrap(), 2)),
        ))
    }

    fn no_stock(id: &str) -> NotifyEvent {
        NotifyEvent::Inventory(InventoryOutcome::failed_one(
            OrderId::parse(id).unwrap(),
            Item::parse("burger").unwrap(),
            Qty::parse(2).unwrap(),
            Some(StudentId::parse("s-1").unwrap()),
            FailureCode::InsufficientStock,
            "insufficient stock".into(),
        ))
    }

    fn moved(id: &str, old: OrderStatus, new: OrderStatus, reason: Option<&str>) -> NotifyEvent {
        NotifyEvent::StatusUpdated(OrderStatusUpdated {
            order_id: OrderId::parse(id).unwrap(),
            old_status: old,
            new_status: new,
            updated_by: "api".into(),
            reason: reason.map(str::to_owned),
            at: 1_700_000_000_000,
        })
    }

    fn sent(h: &NotifyHandler<FakeClaims, FakeSink>) -> Vec<(String, NotificationOutcome)> {
        h.sink
            .sent
            .lock()
            .unwrap()
            .iter()
            .map(|n| (n.order_id.clone(), n.outcome))
            .collect()
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

    /// `told_by_inventory` holds only while inventory's reservation is the one way to
    /// CONFIRMED: a new way there in the domain's table must make this fail.
    #[test]
    fn only_inventorys_reservation_confirms_an_order() {
        use saga_domain::order::OrderEvent;
        for from in OrderStatus::ALL {
            for event in OrderEvent::ALL {
                if from.next(event) == Some(Confirmed) {
                    assert_eq!(
                        event,
                        OrderEvent::Reserved,
                        "{from} --{event:?}--> CONFIRMED"
                    );
                }
            }
        }
        assert!(told_by_inventory(Confirmed));
        for other in [Failed, Cancelled, Shipped, Delivered] {
            assert!(!told_by_inventory(other), "{other} is claimed");
        }
    }

    #[tokio::test]
    async fn the_whole_life_is_told_once_per_order_and_outcome() {
        use NotificationOutcome as N;
        let h = handler();
        // (what happens, event, handler's outcome)
        let steps = [
            ("reserved", reserved("a"), "processed"),
            (
                "CONFIRMED: told by the reservation, not claimed again",
                moved("a", Placed, Confirmed, None),
                "processed",
            ),
            ("SHIPPED", moved("a", Confirmed, Shipped, None), "processed"),
            (
                "SHIPPED again",
                moved("a", Confirmed, Shipped, None),
                "duplicate",
            ),
            (
                "DELIVERED",
                moved("a", Shipped, Delivered, None),
                "processed",
            ),
            (
                "DELIVERED again",
                moved("a", Shipped, Delivered, None),
                "duplicate",
            ),
            (
                "CANCELLING: nothing to tell",
                moved("b", Confirmed, Cancelling, None),
                "processed",
            ),
            (
                "CANCELLED first",
                moved("b", Cancelling, Cancelled, None),
                "processed",
            ),
            ("released: the same news", released("b"), "duplicate"),
        ];
        for (tag, (what, event, expected)) in (1..).zip(steps) {
            let got = h.handle(&event, &delivery(tag)).await;
            assert_eq!(label(&got), expected, "{what}");
        }
        assert_eq!(
            sent(&h),
            [
                ("a".to_owned(), N::Reserved),
                ("a".to_owned(), N::Shipped),
                ("a".to_owned(), N::Delivered),
                ("b".to_owned(), N::Released),
            ]
        );
        let shipped = h.sink.sent.lock().unwrap()[1].clone();
        assert_eq!(shipped.message, "Order a shipped");
        assert_eq!(
            (shipped.student_id, shipped.item, shipped.qty),
            (None, None, 0),
            "a status event knows no student, item or quantity"
        );
        assert_eq!(shipped.event_id, "event-3");
    }

    #[tokio::test]
    async fn a_step_in_flight_is_acked_and_told_to_nobody() {
        let h = handler();
        for (tag, new) in [(1, Cancelling), (2, Placed)] {
            let got = h
                .handle(&moved("a", Placed, new, None), &delivery(tag))
                .await;
            assert_eq!(label(&got), "processed", "{new}");
        }
        assert!(h.sink.sent.lock().unwrap().is_empty());
        assert!(
            h.claims.claims.lock().unwrap().is_empty(),
            "nothing claimed either"
        );
    }

    #[tokio::test]
    async fn inventory_failed_and_the_failed_status_are_one_notification() {
        let h = handler();
        let failed = moved("a", Placed, Failed, Some("insufficient stock"));
        assert_eq!(
            label(&h.handle(&no_stock("a"), &delivery(1)).await),
            "processed"
        );
        assert_eq!(label(&h.handle(&failed, &delivery(2)).await), "duplicate");

        // The other way round, and a deadline's reason reaches the customer.
        let timeout = moved(
            "b",
            Placed,
            Failed,
            Some(saga_domain::order::TIMEOUT_REASON),
        );
        assert_eq!(label(&h.handle(&timeout, &delivery(3)).await), "processed");
        assert_eq!(
            label(&h.handle(&no_stock("b"), &delivery(4)).await),
            "duplicate"
        );

        let sent = h.sink.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].student_id.as_deref(), Some("s-1"));
        assert_eq!(sent[0].message, "Order a failed: insufficient stock");
        assert_eq!(sent[1].message, "Order b failed: timeout");
        assert_eq!(sent[1].outcome, NotificationOutcome::Failed);
    }

    #[tokio::test]
    async fn inventory_s_late_word_after_a_failure_is_no_news_but_the_order_s_status_always_is() {
        let h = handler();
        // a: failed by its deadline; inventory's late reservation and its release say nothing new.
        let timeout = moved(
            "a",
            Placed,
            Failed,
            Some(saga_domain::order::TIMEOUT_REASON),
        );
        assert_eq!(label(&h.handle(&timeout, &delivery(1)).await), "processed");
        assert_eq!(
            label(&h.handle(&reserved("a"), &delivery(2)).await),
            "processed"
        );
        assert_eq!(
            label(&h.handle(&released("a"), &delivery(3)).await),
            "processed"
        );
        // b: inventory failed it, but a cancel had moved the order on: it ends CANCELLED, and
        // the customer is told so by the status event, however inventory's release is ordered.
        assert_eq!(
            label(&h.handle(&no_stock("b"), &delivery(4)).await),
            "processed"
        );
        assert_eq!(
            label(&h.handle(&released("b"), &delivery(5)).await),
            "processed"
        );
        let cancelled = moved("b", Cancelling, Cancelled, None);
        assert_eq!(
            label(&h.handle(&cancelled, &delivery(6)).await),
            "processed"
        );
        assert_eq!(
            sent(&h),
            [
                ("a".to_owned(), NotificationOutcome::Failed),
                ("b".to_owned(), NotificationOutcome::Failed),
                ("b".to_owned(), NotificationOutcome::Released),
            ]
        );
    }

    #[test]
    fn parsing_tells_status_events_from_outcomes() {
        type H = NotifyHandler<FakeClaims, FakeSink>;
        let body = br#"{"order_id":"o-6","old_status":"CONFIRMED","new_status":"SHIPPED","updated_by":"api","at":1700000000000}"#;
        let by_key = DeliveryMeta {
            routing_key: "order.status.updated".into(),
            ..Default::default()
        };
        let event = H::parse(&by_key, body).unwrap();
        assert_eq!(event.order_id(), "o-6");
        assert_eq!(event.outcome(), Some(NotificationOutcome::Shipped));
        // Published straight to the queue: the `type` property tells it.
        let by_type = DeliveryMeta {
            routing_key: "notification_queue".into(),
            kind: Some("OrderStatusUpdated".into()),
            ..Default::default()
        };
        assert_eq!(H::parse(&by_type, body).unwrap(), event);
        let unknown = br#"{"order_id":"o-6","old_status":"CONFIRMED","new_status":"LOST","updated_by":"api","at":1}"#;
        assert!(
            H::parse(&by_key, unknown).is_err(),
            "an unknown status is poison"
        );
    }

    #[test]
    fn a_sent_mark_outlives_its_order_by_the_dedupe_window() {
        let defaults = saga_platform::service::config::RetentionArgs::default();
        assert_eq!(
            sent_mark_ttl(&defaults),
            Duration::from_secs(33 * 24 * 3600),
            "3 days kept whole, then 30 days of dedupe"
        );
    }
}
