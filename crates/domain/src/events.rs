//! The wire contract: event types, routing keys and event metadata, without the broker.
//!
//! Bodies are flat JSON, exactly as the classic lab has them; metadata (event id, type,
//! correlation id, publisher) rides in AMQP properties. Readers are tolerant: unknown fields are
//! ignored and a bare body with no properties is accepted. The events here are domain types;
//! their bodies, as serde structs, are in [`crate::wire`]. Anything a reader cannot make sense of
//! is [`Malformed`], with a reason a person can act on. How metadata becomes AMQP properties,
//! and which event a delivery carries, is the platform crate's part (`saga_platform::amqp`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{Item, OrderId, Qty, StudentId};
use crate::order::{OrderStatus, ReservationState};
use crate::trace::Trace;
use crate::wire::{self, InventoryOutcomeBody, Malformed};

/// Every event of the saga, with its routing key and its AMQP `type` name. In JSON (an order's
/// timeline, the outbox) it is its `type` name, e.g. `"OrderPlaced"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EventType {
    OrderPlaced,
    OrderCancelled,
    InventoryReserved,
    InventoryFailed,
    InventoryReleased,
    /// An order's status changed (every transition, order-svc's outbox).
    OrderStatusUpdated,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        Self::OrderPlaced,
        Self::OrderCancelled,
        Self::InventoryReserved,
        Self::InventoryFailed,
        Self::InventoryReleased,
        Self::OrderStatusUpdated,
    ];

    pub fn routing_key(self) -> &'static str {
        match self {
            Self::OrderPlaced => "order.placed",
            Self::OrderCancelled => "order.cancelled",
            Self::InventoryReserved => "inventory.reserved",
            Self::InventoryFailed => "inventory.failed",
            Self::InventoryReleased => "inventory.released",
            Self::OrderStatusUpdated => "order.status.updated",
        }
    }

    /// The `type` name, as every other word of the vocabulary is spelled: `as_str()`.
    pub const fn as_str(self) -> &'static str {
        self.name()
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::OrderPlaced => "OrderPlaced",
            Self::OrderCancelled => "OrderCancelled",
            Self::InventoryReserved => "InventoryReserved",
            Self::InventoryFailed => "InventoryFailed",
            Self::InventoryReleased => "InventoryReleased",
            Self::OrderStatusUpdated => "OrderStatusUpdated",
        }
    }

    pub fn from_routing_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.routing_key() == key)
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A customer asked for `qty` of `item` (routing key `order.placed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPlaced {
    pub order_id: OrderId,
    pub item: Item,
    pub qty: Qty,
    pub student_id: Option<StudentId>,
}

/// The order was cancelled; inventory must give back what it reserved (`order.cancelled`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderCancelled {
    pub order_id: OrderId,
    pub reason: String,
}

/// An order's status changed (`order.status.updated`): published by order-svc for every
/// transition, written into its outbox in the same atomic step as the transition itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderStatusUpdated {
    pub order_id: OrderId,
    pub old_status: OrderStatus,
    pub new_status: OrderStatus,
    /// `system` (order-svc's deadline), the service whose event caused it (`inventory-svc`), or
    /// who asked over HTTP (`customer` for a cancel, the caller of a PATCH).
    pub updated_by: String,
    pub reason: Option<String>,
    /// When it changed, ms since the Unix epoch.
    pub at: u64,
}

impl OrderStatusUpdated {
    pub fn to_body(&self) -> Vec<u8> {
        wire::to_json(&wire::OrderStatusUpdatedBody::from(self))
    }

    /// # Errors
    /// [`Malformed`] when the body names no usable order or statuses.
    pub fn from_body(body: &[u8]) -> Result<Self, Malformed> {
        wire::read::<wire::OrderStatusUpdatedBody>(body)?.try_into()
    }
}

/// Why inventory could not reserve: a business outcome, never poison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCode {
    UnknownItem,
    InsufficientStock,
}

impl FailureCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownItem => "unknown_item",
            Self::InsufficientStock => "insufficient_stock",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "unknown_item" => Some(Self::UnknownItem),
            "insufficient_stock" => Some(Self::InsufficientStock),
            _ => None,
        }
    }
}

/// What inventory-svc decided about one order; the bodies of its three outgoing events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventoryOutcome {
    Reserved {
        order_id: OrderId,
        item: Item,
        qty: Qty,
        student_id: Option<StudentId>,
        remaining: i64,
    },
    Failed {
        order_id: OrderId,
        item: Item,
        qty: Qty,
        student_id: Option<StudentId>,
        code: FailureCode,
        reason: String,
    },
    Released {
        order_id: OrderId,
        item: Option<Item>,
        qty: u32,
    },
}

impl OrderPlaced {
    pub fn to_body(&self) -> Vec<u8> {
        wire::to_json(&wire::OrderPlacedBody::from(self))
    }

    /// # Errors
    /// [`Malformed`] when the body is not an order we can serve.
    pub fn from_body(body: &[u8]) -> Result<Self, Malformed> {
        wire::read::<wire::OrderPlacedBody>(body)?.try_into()
    }
}

impl OrderCancelled {
    pub fn to_body(&self) -> Vec<u8> {
        wire::to_json(&wire::OrderCancelledBody::from(self))
    }

    /// # Errors
    /// [`Malformed`] when the body names no usable order.
    pub fn from_body(body: &[u8]) -> Result<Self, Malformed> {
        wire::read::<wire::OrderCancelledBody>(body)?.try_into()
    }
}

impl InventoryOutcome {
    pub fn event_type(&self) -> EventType {
        match self {
            Self::Reserved { .. } => EventType::InventoryReserved,
            Self::Failed { .. } => EventType::InventoryFailed,
            Self::Released { .. } => EventType::InventoryReleased,
        }
    }

    pub fn order_id(&self) -> &OrderId {
        match self {
            Self::Reserved { order_id, .. }
            | Self::Failed { order_id, .. }
            | Self::Released { order_id, .. } => order_id,
        }
    }

    /// The decision this outcome announces, as inventory's record and a notification name it.
    pub fn state(&self) -> ReservationState {
        match self {
            Self::Reserved { .. } => ReservationState::Reserved,
            Self::Failed { .. } => ReservationState::Failed,
            Self::Released { .. } => ReservationState::Released,
        }
    }

    /// The status word the lab's bodies carry (`RESERVED`, `FAILED`, `RELEASED`).
    pub fn status(&self) -> &'static str {
        match self {
            Self::Reserved { .. } => "RESERVED",
            Self::Failed { .. } => "FAILED",
            Self::Released { .. } => "RELEASED",
        }
    }

    pub fn to_body(&self) -> Vec<u8> {
        wire::to_json(&InventoryOutcomeBody::from(self))
    }

    /// Read an outcome off a delivery: `kind` is the event its routing key or `type` property
    /// named, if any (a message with neither cannot be told apart: poison).
    ///
    /// # Errors
    /// [`Malformed`] when the event cannot be told or its body is unusable.
    pub fn from_delivery(
        kind: Option<EventType>,
        routing_key: &str,
        body: &[u8],
    ) -> Result<Self, Malformed> {
        let kind = kind.ok_or_else(|| {
            Malformed(format!(
                "cannot tell which event this is (routing key {routing_key:?}, no known type)"
            ))
        })?;
        Self::from_body(kind, body)
    }

    /// Read an outcome event; `kind` comes from the routing key or the `type` property.
    ///
    /// # Errors
    /// [`Malformed`] when `kind` is no outcome or the body is unusable.
    pub fn from_body(kind: EventType, body: &[u8]) -> Result<Self, Malformed> {
        let body = match kind {
            EventType::InventoryReserved => InventoryOutcomeBody::Reserved(wire::read(body)?),
            EventType::InventoryFailed => InventoryOutcomeBody::Failed(wire::read(body)?),
            EventType::InventoryReleased => InventoryOutcomeBody::Released(wire::read(body)?),
            other => {
                return Err(Malformed(format!(
                    "{} is not an inventory outcome",
                    other.name()
                )));
            }
        };
        body.try_into()
    }
}

/// Metadata of an event we publish, carried in AMQP properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMeta {
    pub event_id: String,
    pub event_type: EventType,
    pub correlation_id: String,
    pub app_id: String,
    /// Seconds since the Unix epoch.
    pub timestamp: u64,
    /// The span that produced the event (an HTTP request, a delivery), if traced: its publish
    /// is a child of it (crate::trace).
    pub trace: Option<Trace>,
}

impl EventMeta {
    /// Metadata for a new event: fresh event id, now.
    pub fn new(event_type: EventType, correlation_id: &str, app_id: &str) -> Self {
        Self {
            event_id: uuid::Uuid::new_v4().to_string(),
            event_type,
            correlation_id: correlation_id.to_owned(),
            app_id: app_id.to_owned(),
            timestamp: unix_now_secs(),
            trace: None,
        }
    }

    /// The same, produced by the span `trace`.
    pub fn traced(mut self, trace: Option<&Trace>) -> Self {
        self.trace = trace.cloned();
        self
    }
}

pub fn unix_now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn unix_now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed(body: &str) -> Result<OrderPlaced, Malformed> {
        OrderPlaced::from_body(body.as_bytes())
    }

    #[test]
    fn reads_the_labs_bare_body() {
        let o =
            placed(r#"{"order_id":"x","item":"burger","qty":5,"student_id":"s1","extra":true}"#)
                .unwrap();
        assert_eq!(o.order_id.as_str(), "x");
        assert_eq!(o.qty.get(), 5);
        assert_eq!(o.student_id.unwrap().as_str(), "s1");
    }

    #[test]
    fn poison_reasons_are_readable() {
        let reason = |b: &str| placed(b).unwrap_err().0;
        assert_eq!(
            reason(r#"{"order_id":"x","item":"burger"}"#),
            "missing required field qty"
        );
        assert_eq!(
            reason(r#"{"order_id":"x","item":"burger","qty":0}"#),
            "qty must be at least 1, got 0"
        );
        assert_eq!(
            reason(r#"{"order_id":"x","item":"burger","qty":"two"}"#),
            "qty must be an integer, got string \"two\""
        );
        assert!(reason("not json at all").starts_with("body is not valid JSON"));
        assert!(reason("[1,2]").contains("not an object"));
        assert!(
            reason(r#"{"order_id":5,"item":"burger","qty":1}"#)
                .contains("order_id must be a string")
        );
        assert!(reason(r#"{"order_id":"x","item":"burger","qty":2.5}"#).contains("integer"));
    }

    #[test]
    fn outcomes_round_trip() {
        let o = InventoryOutcome::Failed {
            order_id: OrderId::parse("o1").unwrap(),
            item: Item::parse("pizza").unwrap(),
            qty: Qty::parse(3).unwrap(),
            student_id: None,
            code: FailureCode::InsufficientStock,
            reason: "only 2 pizza left".into(),
        };
        let back = InventoryOutcome::from_body(EventType::InventoryFailed, &o.to_body()).unwrap();
        assert_eq!(back, o);
    }

    #[test]
    fn a_status_event_round_trips_and_reads_as_documented() {
        let e = OrderStatusUpdated {
            order_id: OrderId::parse("o-6").unwrap(),
            old_status: OrderStatus::Placed,
            new_status: OrderStatus::Confirmed,
            updated_by: "inventory-svc".into(),
            reason: None,
            at: 1_700_000_000_000,
        };
        let body = e.to_body();
        assert_eq!(
            String::from_utf8_lossy(&body),
            r#"{"order_id":"o-6","old_status":"PLACED","new_status":"CONFIRMED","updated_by":"inventory-svc","at":1700000000000}"#
        );
        assert_eq!(OrderStatusUpdated::from_body(&body).unwrap(), e);
        let bad = OrderStatusUpdated::from_body(
            br#"{"order_id":"o-6","old_status":"PLACED","new_status":"LOST","updated_by":"x","at":1}"#,
        );
        assert!(bad.unwrap_err().0.contains("new_status"));
    }

    #[test]
    fn routing_keys_and_names() {
        for t in EventType::ALL {
            assert_eq!(EventType::from_routing_key(t.routing_key()), Some(t));
            assert_eq!(EventType::from_name(t.name()), Some(t));
            assert_eq!(
                serde_json::to_string(&t).unwrap(),
                format!("\"{}\"", t.name())
            );
        }
    }
}
