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
use crate::lines::{Lines, ReleasedLine, ReservedLine, UnservedLine};
use crate::order::{OrderStatus, ReservationState};
use crate::trace::Trace;
use crate::version::SchemaVersion;
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
    /// Everything about one product (inventory-svc, at start-up and on demand:
    /// crate::product).
    ProductSnapshot,
    /// A product's price changed (inventory-svc).
    ProductPriceChanged,
    /// A product's stock changed (inventory-svc).
    ProductStockUpdated,
    /// A product's stock fell below its threshold (inventory-svc).
    ProductStockLow,
    /// A product's stock reached 0 (inventory-svc).
    ProductStockOut,
}

impl EventType {
    pub const ALL: [EventType; 11] = [
        Self::OrderPlaced,
        Self::OrderCancelled,
        Self::InventoryReserved,
        Self::InventoryFailed,
        Self::InventoryReleased,
        Self::OrderStatusUpdated,
        Self::ProductSnapshot,
        Self::ProductPriceChanged,
        Self::ProductStockUpdated,
        Self::ProductStockLow,
        Self::ProductStockOut,
    ];

    /// The catalog's events (`product.*`, crate::product), published by inventory-svc.
    pub const PRODUCT: [EventType; 5] = [
        Self::ProductSnapshot,
        Self::ProductPriceChanged,
        Self::ProductStockUpdated,
        Self::ProductStockLow,
        Self::ProductStockOut,
    ];

    pub fn routing_key(self) -> &'static str {
        match self {
            Self::OrderPlaced => "order.placed",
            Self::OrderCancelled => "order.cancelled",
            Self::InventoryReserved => "inventory.reserved",
            Self::InventoryFailed => "inventory.failed",
            Self::InventoryReleased => "inventory.released",
            Self::OrderStatusUpdated => "order.status.updated",
            Self::ProductSnapshot => "product.snapshot",
            Self::ProductPriceChanged => "product.price.changed",
            Self::ProductStockUpdated => "product.stock.updated",
            Self::ProductStockLow => "product.stock.low",
            Self::ProductStockOut => "product.stock.out",
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
            Self::ProductSnapshot => "ProductSnapshot",
            Self::ProductPriceChanged => "ProductPriceChanged",
            Self::ProductStockUpdated => "ProductStockUpdated",
            Self::ProductStockLow => "ProductStockLow",
            Self::ProductStockOut => "ProductStockOut",
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

/// A customer asked for the order's lines (routing key `order.placed`): one line travels as
/// the lab's flat body (version 1), several as version 2 ([`crate::version`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPlaced {
    pub order_id: OrderId,
    pub lines: Lines,
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

/// What inventory-svc decided about one order; the bodies of its three outgoing events. An
/// outcome about one line (or none) travels as version 1, the lab's flat body; one about
/// several as version 2, with its `lines`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventoryOutcome {
    /// Every line was taken, all in one step.
    Reserved {
        order_id: OrderId,
        lines: Vec<ReservedLine>,
        student_id: Option<StudentId>,
    },
    /// Nothing was taken: `unserved` names the lines that could not be served, `code` and
    /// `reason` the first of them (the lab's fields).
    Failed {
        order_id: OrderId,
        lines: Lines,
        student_id: Option<StudentId>,
        code: FailureCode,
        reason: String,
        unserved: Vec<UnservedLine>,
    },
    /// A cancel gave these lines back (none when nothing had been reserved).
    Released {
        order_id: OrderId,
        lines: Vec<ReleasedLine>,
    },
}

impl OrderPlaced {
    /// The version this order is written in: 1 (the lab's flat body) for one line, 2 for more.
    pub fn schema_version(&self) -> SchemaVersion {
        SchemaVersion::for_lines(self.lines.len())
    }

    pub fn to_body(&self) -> Vec<u8> {
        match self.lines.single_line() {
            Some(_) => wire::to_json(&wire::OrderPlacedBody::from(self)),
            None => wire::to_json(&wire::OrderPlacedV2Body::from(self)),
        }
    }

    /// Read a body written at `version` (major 1: the flat lab body; major 2: `lines`).
    ///
    /// # Errors
    /// [`Malformed`] when the body is not an order we can serve, or the major is unknown.
    pub fn from_body_at(body: &[u8], version: SchemaVersion) -> Result<Self, Malformed> {
        match version.major {
            1 => wire::read::<wire::OrderPlacedBody>(body)?.try_into(),
            2 => wire::read::<wire::OrderPlacedV2Body>(body)?.try_into(),
            _ => Err(Malformed(format!(
                "OrderPlaced version {version} has no reader here"
            ))),
        }
    }

    /// Read a body whose version is not stated: the version its keys show (a `lines` array is
    /// version 2, anything else the lab's version 1). For our own bodies read back (tests,
    /// sagactl); a consumer reads at the version the message states ([`Self::from_body_at`]).
    ///
    /// # Errors
    /// [`Malformed`] when the body is not an order we can serve.
    pub fn from_body(body: &[u8]) -> Result<Self, Malformed> {
        Self::from_body_at(body, wire::version_of(body))
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
    /// A lab order's reservation: `qty` of `item` taken, `remaining` left.
    pub fn reserved_one(
        order_id: OrderId,
        item: Item,
        qty: Qty,
        student_id: Option<StudentId>,
        remaining: i64,
    ) -> Self {
        Self::Reserved {
            order_id,
            lines: vec![ReservedLine {
                item,
                qty,
                remaining,
            }],
            student_id,
        }
    }

    /// A lab order's failure: its one line could not be served, for `code`.
    pub fn failed_one(
        order_id: OrderId,
        item: Item,
        qty: Qty,
        student_id: Option<StudentId>,
        code: FailureCode,
        reason: String,
    ) -> Self {
        Self::Failed {
            order_id,
            lines: Lines::single(item.clone(), qty),
            student_id,
            code,
            reason,
            unserved: vec![UnservedLine { item, qty, code }],
        }
    }

    /// A lab order's release: `qty` of `item` given back, or nothing.
    pub fn released_one(order_id: OrderId, given_back: Option<(Item, u32)>) -> Self {
        Self::Released {
            order_id,
            lines: given_back
                .map(|(item, qty)| ReleasedLine { item, qty })
                .into_iter()
                .collect(),
        }
    }

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

    /// The version this outcome is written in: 1 for one line or none, 2 for more.
    pub fn schema_version(&self) -> SchemaVersion {
        SchemaVersion::for_lines(match self {
            Self::Reserved { lines, .. } => lines.len(),
            Self::Failed { lines, .. } => lines.len(),
            Self::Released { lines, .. } => lines.len(),
        })
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
        wire::outcome_to_json(self)
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
        version: SchemaVersion,
    ) -> Result<Self, Malformed> {
        let kind = kind.ok_or_else(|| {
            Malformed(format!(
                "cannot tell which event this is (routing key {routing_key:?}, no known type)"
            ))
        })?;
        Self::from_body_at(kind, body, version)
    }

    /// Read an outcome event written at `version`; `kind` comes from the routing key or the
    /// `type` property.
    ///
    /// # Errors
    /// [`Malformed`] when `kind` is no outcome, the major is unknown or the body is unusable.
    pub fn from_body_at(
        kind: EventType,
        body: &[u8],
        version: SchemaVersion,
    ) -> Result<Self, Malformed> {
        let body = match (kind, version.major) {
            (EventType::InventoryReserved, 1) => InventoryOutcomeBody::Reserved(wire::read(body)?),
            (EventType::InventoryFailed, 1) => InventoryOutcomeBody::Failed(wire::read(body)?),
            (EventType::InventoryReleased, 1) => InventoryOutcomeBody::Released(wire::read(body)?),
            (
                EventType::InventoryReserved
                | EventType::InventoryFailed
                | EventType::InventoryReleased,
                2,
            ) => InventoryOutcomeBody::V2(kind, wire::read(body)?),
            (
                EventType::InventoryReserved
                | EventType::InventoryFailed
                | EventType::InventoryReleased,
                _,
            ) => {
                return Err(Malformed(format!(
                    "{} version {version} has no reader here",
                    kind.name()
                )));
            }
            (other, _) => {
                return Err(Malformed(format!(
                    "{} is not an inventory outcome",
                    other.name()
                )));
            }
        };
        body.try_into()
    }

    /// Read an outcome whose version is not stated: the version its keys show (see
    /// [`OrderPlaced::from_body`]).
    ///
    /// # Errors
    /// [`Malformed`] when `kind` is no outcome or the body is unusable.
    pub fn from_body(kind: EventType, body: &[u8]) -> Result<Self, Malformed> {
        Self::from_body_at(kind, body, wire::version_of(body))
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
    /// The schema version the body is written in (`x-schema-version`).
    pub version: SchemaVersion,
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
            version: event_type.schema_version(),
        }
    }

    /// The same, for a body written at `version` (an order of several lines: 2.0).
    pub fn versioned(mut self, version: SchemaVersion) -> Self {
        self.version = version;
        self
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
        assert_eq!(o.lines.first().qty.get(), 5);
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
            lines: Lines::single(Item::parse("pizza").unwrap(), Qty::parse(3).unwrap()),
            student_id: None,
            code: FailureCode::InsufficientStock,
            reason: "only 2 pizza left".into(),
            unserved: vec![UnservedLine {
                item: Item::parse("pizza").unwrap(),
                qty: Qty::parse(3).unwrap(),
                code: FailureCode::InsufficientStock,
            }],
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
