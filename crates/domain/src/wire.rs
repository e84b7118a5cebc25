//! JSON bodies as they travel, as serde structs, and how they become domain types.
//!
//! Each body of docs/DESIGN.md §3 is a struct here, field for field, and `TryFrom` turns it into its
//! domain type in [`crate::events`] (built from the newtypes of [`crate::ids`]); `From` turns a
//! domain event back into its body. Reading takes two steps, each with its own kind of reason:
//!
//! 1. [`read`]: the body must be a JSON object, and each field we know must have the right JSON
//!    type (`qty must be an integer, got string "two"`). Unknown fields are ignored, and every
//!    field is an `Option`: absent and `null` are the same, as they are to a Python reader.
//! 2. `TryFrom`: required fields must be there (`missing required field qty`) and every value
//!    must make sense (`qty must be at least 1, got 0`); optional ones get their defaults.
//!
//! The reasons end up in an `x-dlq-reason` header or in an HTTP 400, so a person reads them:
//! hence the field name first, and a line and column only where they help (broken JSON). The
//! HTTP request bodies of the services are read the same way, with their own small structs next
//! to their routes.

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::events::{
    FailureCode, InventoryOutcome, OrderCancelled, OrderPlaced, OrderStatusUpdated,
};
use crate::ids::{Invalid, Item, OrderId, Qty, StudentId};
use crate::order::OrderStatus;

/// A body that cannot be made sense of, with the reason: a message goes to the DLQ with it, an
/// HTTP request gets a 400 with it. Retrying never helps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

impl From<Invalid> for Malformed {
    fn from(e: Invalid) -> Self {
        Malformed(e.0)
    }
}

/// Read a JSON body into its wire struct.
///
/// # Errors
/// [`Malformed`] when the body is not JSON, not an object, or a known field has the wrong type.
pub fn read<T: DeserializeOwned>(body: &[u8]) -> Result<T, Malformed> {
    // A `Value` first, so that "not JSON" and "not an object" get words of their own; reading
    // the struct from that `Value` then reports no line and column, which mean nothing here.
    let object = match serde_json::from_slice::<Value>(body) {
        Ok(object @ Value::Object(_)) => object,
        Ok(other) => {
            return Err(Malformed(format!(
                "body is JSON but not an object (got {})",
                kind_of(&other)
            )));
        }
        Err(e) => return Err(Malformed(format!("body is not valid JSON: {e}"))),
    };
    // The field readers below see only a value; serde_path_to_error knows which field it was.
    serde_path_to_error::deserialize(object)
        .map_err(|e| Malformed(format!("{} {}", e.path(), e.inner())))
}

/// A field the domain type cannot do without.
///
/// # Errors
/// [`Malformed`] naming the field when it was absent or `null`.
pub fn required<T>(value: Option<T>, field: &str) -> Result<T, Malformed> {
    value.ok_or_else(|| Malformed(format!("missing required field {field}")))
}

/// Field reader (`deserialize_with`) for a string: `null` is `None`, any other type is refused
/// as "must be a string, got number 5".
///
/// # Errors
/// A serde error with that reason.
pub fn text<'de, D: Deserializer<'de>>(field: D) -> Result<Option<String>, D::Error> {
    match Value::deserialize(field)? {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        other => Err(D::Error::custom(format!(
            "must be a string, got {}",
            kind_of(&other)
        ))),
    }
}

/// Field reader (`deserialize_with`) for an integer: `null` is `None`; `2.5` or `"two"` are
/// refused as "must be an integer, got ...". Whether the number makes sense is for `TryFrom`.
/// `2.0` (or `2e0`) is the integer 2, as JSON Schema's `"type": "integer"` has it: our
/// documents (docs/schemas/, the services' `/openapi.json`) say `integer`, and a sender
/// that checks against them may write one so.
///
/// # Errors
/// A serde error with that reason.
pub fn integer<'de, D: Deserializer<'de>>(field: D) -> Result<Option<i64>, D::Error> {
    // The whole floats an i64 holds exactly: beyond 2^53 a float is not one integer.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match Value::deserialize(field)? {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() <= EXACT)
                    .map(|f| f as i64)
            })
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("must be an integer, got {n}"))),
        other => Err(D::Error::custom(format!(
            "must be an integer, got {}",
            kind_of(&other)
        ))),
    }
}

/// A value described for a reason; long strings cut, so a reason stays a line.
fn kind_of(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {:?}", s.chars().take(40).collect::<String>()),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// A wire struct as the bytes of a message body.
pub(crate) fn to_json(body: &impl Serialize) -> Vec<u8> {
    // Cannot fail for the structs of this module: strings, integers and options only (serde_json
    // fails on non-string map keys and on failing `Serialize` impls). Were it ever to, the empty
    // body would reach the DLQ with its reason rather than be lost.
    serde_json::to_vec(body).unwrap_or_default()
}

// --- the bodies of docs/DESIGN.md §3 ------------------------------------------------------
//
// `#[serde(tag = "status", rename = ...)]` writes the lab's status word (`"status": "PLACED"`)
// into every body we send; a reader ignores it, as it ignores any field it does not know. Optional
// fields are written as `null` when absent, as the lab's bodies have them.

/// `order.placed`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, tag = "status", rename = "PLACED")]
pub struct OrderPlacedBody {
    #[serde(deserialize_with = "text")]
    pub order_id: Option<String>,
    #[serde(deserialize_with = "text")]
    pub item: Option<String>,
    #[serde(deserialize_with = "integer")]
    pub qty: Option<i64>,
    #[serde(deserialize_with = "text")]
    pub student_id: Option<String>,
}

/// `order.cancelled`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, tag = "status", rename = "CANCELLED")]
pub struct OrderCancelledBody {
    #[serde(deserialize_with = "text")]
    pub order_id: Option<String>,
    #[serde(deserialize_with = "text")]
    pub reason: Option<String>,
}

/// `inventory.reserved`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, tag = "status", rename = "RESERVED")]
pub struct InventoryReservedBody {
    #[serde(deserialize_with = "text")]
    pub order_id: Option<String>,
    #[serde(deserialize_with = "text")]
    pub item: Option<String>,
    #[serde(deserialize_with = "integer")]
    pub qty: Option<i64>,
    #[serde(deserialize_with = "text")]
    pub student_id: Option<String>,
    #[serde(deserialize_with = "integer")]
    pub remaining: Option<i64>,
}

/// `inventory.failed`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, tag = "status", rename = "FAILED")]
pub struct InventoryFailedBody {
    #[serde(deserialize_with = "text")]
    pub order_id: Option<String>,
    #[serde(deserialize_with = "text")]
    pub item: Option<String>,
    #[serde(deserialize_with = "integer")]
    pub qty: Option<i64>,
    #[serde(deserialize_with = "text")]
    pub student_id: Option<String>,
    #[serde(deserialize_with = "text")]
    pub reason: Option<String>,
    /// `unknown_item` or `insufficient_stock`.
    #[serde(deserialize_with = "text")]
    pub code: Option<String>,
}

/// `inventory.released`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, tag = "status", rename = "RELEASED")]
pub struct InventoryReleasedBody {
    #[serde(deserialize_with = "text")]
    pub order_id: Option<String>,
    #[serde(deserialize_with = "text")]
    pub item: Option<String>,
    #[serde(deserialize_with = "integer")]
    pub qty: Option<i64>,
}

/// `order.status.updated`: `{order_id, old_status, new_status, updated_by, reason?, at}`. No
/// lab status word: the statuses are its subject.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OrderStatusUpdatedBody {
    #[serde(deserialize_with = "text")]
    pub order_id: Option<String>,
    #[serde(deserialize_with = "text")]
    pub old_status: Option<String>,
    #[serde(deserialize_with = "text")]
    pub new_status: Option<String>,
    #[serde(deserialize_with = "text")]
    pub updated_by: Option<String>,
    #[serde(deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(deserialize_with = "integer")]
    pub at: Option<i64>,
}

/// Whichever of the three outcome bodies. A reader knows which one to expect from the routing
/// key (see [`InventoryOutcome::from_body`]); a writer writes the body as it is (`untagged`).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum InventoryOutcomeBody {
    Reserved(InventoryReservedBody),
    Failed(InventoryFailedBody),
    Released(InventoryReleasedBody),
}

// --- bodies into domain types, and back ---------------------------------------------------------

impl TryFrom<OrderPlacedBody> for OrderPlaced {
    type Error = Malformed;

    fn try_from(body: OrderPlacedBody) -> Result<Self, Malformed> {
        Ok(Self {
            order_id: OrderId::parse(&required(body.order_id, "order_id")?)?,
            item: Item::parse(&required(body.item, "item")?)?,
            qty: Qty::parse(required(body.qty, "qty")?)?,
            student_id: student_id(body.student_id)?,
        })
    }
}

impl From<&OrderPlaced> for OrderPlacedBody {
    fn from(o: &OrderPlaced) -> Self {
        Self {
            order_id: Some(o.order_id.to_string()),
            item: Some(o.item.to_string()),
            qty: Some(o.qty.get().into()),
            student_id: o.student_id.as_ref().map(ToString::to_string),
        }
    }
}

impl TryFrom<OrderStatusUpdatedBody> for OrderStatusUpdated {
    type Error = Malformed;

    fn try_from(body: OrderStatusUpdatedBody) -> Result<Self, Malformed> {
        let status = |value: Option<String>, field: &str| {
            let raw = required(value, field)?;
            OrderStatus::parse(&raw)
                .ok_or_else(|| Malformed(format!("{field} {raw:?} is not an order status")))
        };
        Ok(Self {
            order_id: OrderId::parse(&required(body.order_id, "order_id")?)?,
            old_status: status(body.old_status, "old_status")?,
            new_status: status(body.new_status, "new_status")?,
            updated_by: required(body.updated_by, "updated_by")?,
            reason: body.reason,
            at: u64::try_from(required(body.at, "at")?)
                .map_err(|_| Malformed("at must not be negative".into()))?,
        })
    }
}

impl From<&OrderStatusUpdated> for OrderStatusUpdatedBody {
    fn from(e: &OrderStatusUpdated) -> Self {
        Self {
            order_id: Some(e.order_id.to_string()),
            old_status: Some(e.old_status.to_string()),
            new_status: Some(e.new_status.to_string()),
            updated_by: Some(e.updated_by.clone()),
            reason: e.reason.clone(),
            at: i64::try_from(e.at).ok(),
        }
    }
}

/// Longest cancellation reason kept: it is shown, stored and logged, not read at length.
const MAX_REASON_CHARS: usize = 500;

impl TryFrom<OrderCancelledBody> for OrderCancelled {
    type Error = Malformed;

    fn try_from(body: OrderCancelledBody) -> Result<Self, Malformed> {
        Ok(Self {
            order_id: OrderId::parse(&required(body.order_id, "order_id")?)?,
            reason: body
                .reason
                .as_deref()
                .unwrap_or("cancelled")
                .chars()
                .take(MAX_REASON_CHARS)
                .collect(),
        })
    }
}

impl From<&OrderCancelled> for OrderCancelledBody {
    fn from(c: &OrderCancelled) -> Self {
        Self {
            order_id: Some(c.order_id.to_string()),
            reason: Some(c.reason.clone()),
        }
    }
}

impl TryFrom<InventoryOutcomeBody> for InventoryOutcome {
    type Error = Malformed;

    fn try_from(body: InventoryOutcomeBody) -> Result<Self, Malformed> {
        Ok(match body {
            InventoryOutcomeBody::Reserved(b) => Self::Reserved {
                order_id: OrderId::parse(&required(b.order_id, "order_id")?)?,
                item: Item::parse(&required(b.item, "item")?)?,
                qty: Qty::parse(required(b.qty, "qty")?)?,
                student_id: student_id(b.student_id)?,
                remaining: b.remaining.unwrap_or(0),
            },
            InventoryOutcomeBody::Failed(b) => Self::Failed {
                order_id: OrderId::parse(&required(b.order_id, "order_id")?)?,
                item: Item::parse(&required(b.item, "item")?)?,
                qty: Qty::parse(required(b.qty, "qty")?)?,
                student_id: student_id(b.student_id)?,
                // A failure we cannot classify is still a failure: the order fails either way.
                code: b
                    .code
                    .as_deref()
                    .and_then(FailureCode::parse)
                    .unwrap_or(FailureCode::InsufficientStock),
                reason: b.reason.unwrap_or_else(|| "no reason given".into()),
            },
            InventoryOutcomeBody::Released(b) => Self::Released {
                order_id: OrderId::parse(&required(b.order_id, "order_id")?)?,
                item: b.item.as_deref().map(Item::parse).transpose()?,
                // A count to report, not an order to serve: clamped rather than refused, so a
                // release never goes to the DLQ for it.
                qty: u32::try_from(b.qty.unwrap_or(0).max(0)).unwrap_or(u32::MAX),
            },
        })
    }
}

impl From<&InventoryOutcome> for InventoryOutcomeBody {
    fn from(o: &InventoryOutcome) -> Self {
        match o {
            InventoryOutcome::Reserved {
                order_id,
                item,
                qty,
                student_id,
                remaining,
            } => Self::Reserved(InventoryReservedBody {
                order_id: Some(order_id.to_string()),
                item: Some(item.to_string()),
                qty: Some(qty.get().into()),
                student_id: student_id.as_ref().map(ToString::to_string),
                remaining: Some(*remaining),
            }),
            InventoryOutcome::Failed {
                order_id,
                item,
                qty,
                student_id,
                code,
                reason,
            } => Self::Failed(InventoryFailedBody {
                order_id: Some(order_id.to_string()),
                item: Some(item.to_string()),
                qty: Some(qty.get().into()),
                student_id: student_id.as_ref().map(ToString::to_string),
                reason: Some(reason.clone()),
                code: Some(code.as_str().to_owned()),
            }),
            InventoryOutcome::Released {
                order_id,
                item,
                qty,
            } => Self::Released(InventoryReleasedBody {
                order_id: Some(order_id.to_string()),
                item: item.as_ref().map(ToString::to_string),
                qty: Some((*qty).into()),
            }),
        }
    }
}

fn student_id(raw: Option<String>) -> Result<Option<StudentId>, Malformed> {
    Ok(raw.as_deref().map(StudentId::parse).transpose()?)
}

/// The `order_id` of a JSON body, if it has a string one (for logs and spans; handlers parse for real).
pub fn peek_order_id(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Peek {
        order_id: Option<serde_json::Value>,
    }
    let peek: Peek = serde_json::from_slice(body).ok()?;
    match peek.order_id? {
        serde_json::Value::String(id) if id.len() <= 128 => Some(id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::events::EventType;

    fn placed(body: Value) -> Result<OrderPlaced, Malformed> {
        OrderPlaced::from_body(body.to_string().as_bytes())
    }

    fn outcome(kind: EventType, body: Value) -> Result<InventoryOutcome, Malformed> {
        InventoryOutcome::from_body(kind, body.to_string().as_bytes())
    }

    fn json_of(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    fn order_placed() -> OrderPlaced {
        OrderPlaced {
            order_id: OrderId::parse("o1").unwrap(),
            item: Item::parse("burger").unwrap(),
            qty: Qty::parse(5).unwrap(),
            student_id: None,
        }
    }

    /// The bodies the classic lab reads: the same fields and status words as the hand-written
    /// `json!` bodies before these structs, `null` for an absent student or item.
    #[test]
    fn bodies_keep_the_labs_shape() {
        assert_eq!(
            json_of(&order_placed().to_body()),
            json!({"order_id": "o1", "item": "burger", "qty": 5, "student_id": null, "status": "PLACED"})
        );
        let cancelled = OrderCancelled {
            order_id: OrderId::parse("o1").unwrap(),
            reason: "changed my mind".into(),
        };
        assert_eq!(
            json_of(&cancelled.to_body()),
            json!({"order_id": "o1", "reason": "changed my mind", "status": "CANCELLED"})
        );
        let reserved = InventoryOutcome::Reserved {
            order_id: OrderId::parse("o1").unwrap(),
            item: Item::parse("burger").unwrap(),
            qty: Qty::parse(5).unwrap(),
            student_id: Some(StudentId::parse("s1").unwrap()),
            remaining: 95,
        };
        assert_eq!(
            json_of(&reserved.to_body()),
            json!({"order_id": "o1", "item": "burger", "qty": 5, "student_id": "s1",
                   "remaining": 95, "status": "RESERVED"})
        );
        let failed = InventoryOutcome::Failed {
            order_id: OrderId::parse("o1").unwrap(),
            item: Item::parse("caviar").unwrap(),
            qty: Qty::parse(1).unwrap(),
            student_id: None,
            code: FailureCode::UnknownItem,
            reason: "no such item".into(),
        };
        assert_eq!(
            json_of(&failed.to_body()),
            json!({"order_id": "o1", "item": "caviar", "qty": 1, "student_id": null,
                   "status": "FAILED", "reason": "no such item", "code": "unknown_item"})
        );
        let released = InventoryOutcome::Released {
            order_id: OrderId::parse("o1").unwrap(),
            item: None,
            qty: 0,
        };
        assert_eq!(
            json_of(&released.to_body()),
            json!({"order_id": "o1", "item": null, "qty": 0, "status": "RELEASED"})
        );
    }

    #[test]
    fn every_event_round_trips() {
        let mut order = order_placed();
        assert_eq!(OrderPlaced::from_body(&order.to_body()).unwrap(), order);
        order.student_id = Some(StudentId::parse("Ada Lovelace").unwrap());
        assert_eq!(OrderPlaced::from_body(&order.to_body()).unwrap(), order);

        let cancelled = OrderCancelled {
            order_id: OrderId::parse("o1").unwrap(),
            reason: "too slow".into(),
        };
        assert_eq!(
            OrderCancelled::from_body(&cancelled.to_body()).unwrap(),
            cancelled
        );

        let outcomes = [
            InventoryOutcome::Reserved {
                order_id: OrderId::parse("o1").unwrap(),
                item: Item::parse("burger").unwrap(),
                qty: Qty::parse(5).unwrap(),
                student_id: Some(StudentId::parse("s1").unwrap()),
                remaining: 95,
            },
            InventoryOutcome::Failed {
                order_id: OrderId::parse("o1").unwrap(),
                item: Item::parse("caviar").unwrap(),
                qty: Qty::parse(1).unwrap(),
                student_id: None,
                code: FailureCode::UnknownItem,
                reason: "no such item".into(),
            },
            InventoryOutcome::Released {
                order_id: OrderId::parse("o1").unwrap(),
                item: Some(Item::parse("burger").unwrap()),
                qty: 5,
            },
        ];
        for o in outcomes {
            assert_eq!(
                InventoryOutcome::from_body(o.event_type(), &o.to_body()).unwrap(),
                o
            );
        }
    }

    #[test]
    fn readers_are_tolerant() {
        // No status, a status of the wrong type, unknown fields, explicit nulls: all fine.
        let o = placed(json!({"order_id": "o1", "item": "burger", "qty": 5}));
        assert_eq!(o.unwrap(), order_placed());
        let o = placed(json!({"order_id": "o1", "item": "burger", "qty": 5,
                              "student_id": null, "status": 7, "note": {"a": [1]}}));
        assert_eq!(o.unwrap(), order_placed());
    }

    #[test]
    fn each_reason_names_its_field() {
        let reason = |body: Value| placed(body).unwrap_err().0;
        assert_eq!(
            reason(json!({"item": "burger", "qty": 1})),
            "missing required field order_id"
        );
        assert_eq!(
            reason(json!({"order_id": null, "item": "burger", "qty": 1})),
            "missing required field order_id"
        );
        assert_eq!(
            reason(json!({"order_id": "o1", "qty": 1})),
            "missing required field item"
        );
        assert_eq!(
            reason(json!({"order_id": 5, "item": "burger", "qty": 1})),
            "order_id must be a string, got number 5"
        );
        assert_eq!(
            reason(json!({"order_id": "a b", "item": "burger", "qty": 1})),
            "order_id contains ' '"
        );
        assert_eq!(
            reason(json!({"order_id": "o1", "item": ["burger"], "qty": 1})),
            "item must be a string, got an array"
        );
        assert_eq!(
            reason(json!({"order_id": "o1", "item": "burger", "qty": 2.5})),
            "qty must be an integer, got 2.5"
        );
        // A whole number written as a float is that integer (JSON Schema's reading).
        let two: OrderPlacedBody =
            read(br#"{"order_id": "o1", "item": "burger", "qty": 2.0}"#).unwrap();
        assert_eq!(two.qty, Some(2));
        assert_eq!(
            reason(json!({"order_id": "o1", "item": "burger", "qty": 1e300})),
            "qty must be an integer, got 1e+300"
        );
        assert_eq!(
            reason(json!({"order_id": "o1", "item": "burger", "qty": true})),
            "qty must be an integer, got boolean true"
        );
        assert_eq!(
            reason(json!({"order_id": "o1", "item": "burger", "qty": -4})),
            "qty must be at least 1, got -4"
        );
        assert_eq!(
            reason(json!({"order_id": "o1", "item": "burger", "qty": 1_000_000})),
            "qty 1000000 is absurd (limit 10000)"
        );
        assert_eq!(
            reason(json!({"order_id": "o1", "item": "burger", "qty": 1, "student_id": 42})),
            "student_id must be a string, got number 42"
        );
        assert_eq!(
            reason(json!("o1")),
            "body is JSON but not an object (got string \"o1\")"
        );
        assert_eq!(
            read::<OrderPlacedBody>(b"{\"order_id\":").unwrap_err().0,
            "body is not valid JSON: EOF while parsing a value at line 1 column 12"
        );
    }

    #[test]
    fn a_cancellation_reason_is_defaulted_and_cut() {
        let c = OrderCancelled::from_body(br#"{"order_id":"o1"}"#).unwrap();
        assert_eq!(c.reason, "cancelled");
        let long = json!({"order_id": "o1", "reason": "é".repeat(600)}).to_string();
        let c = OrderCancelled::from_body(long.as_bytes()).unwrap();
        assert_eq!(c.reason.chars().count(), MAX_REASON_CHARS);
        assert_eq!(
            OrderCancelled::from_body(br#"{"order_id":"o1","reason":3}"#)
                .unwrap_err()
                .0,
            "reason must be a string, got number 3"
        );
    }

    #[test]
    fn outcome_defaults() {
        let base = json!({"order_id": "o1", "item": "burger", "qty": 2});
        let Ok(InventoryOutcome::Reserved { remaining, .. }) =
            outcome(EventType::InventoryReserved, base.clone())
        else {
            panic!("a reservation without remaining");
        };
        assert_eq!(remaining, 0);

        let failed = |extra: Value| {
            let mut body = base.clone();
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            match outcome(EventType::InventoryFailed, body) {
                Ok(InventoryOutcome::Failed { code, reason, .. }) => (code, reason),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(
            failed(json!({})),
            (FailureCode::InsufficientStock, "no reason given".into())
        );
        assert_eq!(
            failed(json!({"code": "unknown_item", "reason": "no caviar"})),
            (FailureCode::UnknownItem, "no caviar".into())
        );
        assert_eq!(
            failed(json!({"code": "out_to_lunch"})).0,
            FailureCode::InsufficientStock
        );

        let released = |body: Value| match outcome(EventType::InventoryReleased, body) {
            Ok(InventoryOutcome::Released { item, qty, .. }) => (item, qty),
            other => panic!("{other:?}"),
        };
        assert_eq!(released(json!({"order_id": "o1"})), (None, 0));
        assert_eq!(released(json!({"order_id": "o1", "qty": -3})), (None, 0));
        assert_eq!(
            released(json!({"order_id": "o1", "item": "burger", "qty": 1_i64 << 40})),
            (Some(Item::parse("burger").unwrap()), u32::MAX)
        );
    }

    #[test]
    fn outcome_reasons() {
        assert_eq!(
            outcome(
                EventType::InventoryReserved,
                json!({"order_id": "o1", "qty": 1})
            )
            .unwrap_err()
            .0,
            "missing required field item"
        );
        assert_eq!(
            outcome(
                EventType::InventoryFailed,
                json!({"order_id": "o1", "item": "burger", "qty": 1, "code": 5})
            )
            .unwrap_err()
            .0,
            "code must be a string, got number 5"
        );
        assert_eq!(
            outcome(
                EventType::InventoryReleased,
                json!({"order_id": "o1", "qty": "two"})
            )
            .unwrap_err()
            .0,
            "qty must be an integer, got string \"two\""
        );
        assert_eq!(
            outcome(EventType::OrderPlaced, json!({"order_id": "o1"}))
                .unwrap_err()
                .0,
            "OrderPlaced is not an inventory outcome"
        );
    }

    #[test]
    fn order_ids_are_peeked_only_when_they_are_strings() {
        assert_eq!(
            peek_order_id(br#"{"order_id":"o-1","qty":2}"#).as_deref(),
            Some("o-1")
        );
        assert_eq!(peek_order_id(br#"{"order_id":42}"#), None);
        assert_eq!(peek_order_id(b"not json"), None);
        assert_eq!(peek_order_id(br#"{"item":"burger"}"#), None);
    }
}
