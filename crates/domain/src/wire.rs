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
    EventType, FailureCode, InventoryOutcome, OrderCancelled, OrderPlaced, OrderStatusUpdated,
};
use crate::ids::{Invalid, Item, OrderId, Qty, StudentId};
use crate::lines::{Line, Lines, ReleasedLine, ReservedLine, UnservedLine};
use crate::order::OrderStatus;
use crate::product::{Currency, Price, Priced, ProductName};
use crate::version::SchemaVersion;

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
    serde_path_to_error::deserialize(object).map_err(|e| {
        // A line's reason ([`list`]) starts with its index: `lines[1].qty must be ...`.
        let inner = e.inner().to_string();
        let gap = if inner.starts_with('[') { "" } else { " " };
        Malformed(format!("{}{gap}{inner}", e.path()))
    })
}

/// The version a body's keys show when no header states one: a `lines` array is version 2
/// (an order of several lines), anything else the lab's version 1.
pub fn version_of(body: &[u8]) -> SchemaVersion {
    #[derive(Deserialize)]
    struct Peek {
        lines: Option<Value>,
    }
    match serde_json::from_slice::<Peek>(body) {
        Ok(Peek {
            lines: Some(Value::Array(_)),
        }) => SchemaVersion::V2,
        _ => SchemaVersion::V1,
    }
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

/// Field reader (`deserialize_with`) for a list of objects: `null` is `None`; each element is
/// read as `T`, and a reason names the element by its index (`[1].qty must be an integer`).
///
/// # Errors
/// A serde error with that reason.
pub fn list<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    field: D,
) -> Result<Option<Vec<T>>, D::Error> {
    match Value::deserialize(field)? {
        Value::Null => Ok(None),
        Value::Array(elements) => elements
            .into_iter()
            .enumerate()
            .map(|(i, element)| {
                if !element.is_object() {
                    return Err(D::Error::custom(format!(
                        "[{i}] must be an object, got {}",
                        kind_of(&element)
                    )));
                }
                serde_path_to_error::deserialize(element)
                    .map_err(|e| D::Error::custom(format!("[{i}].{} {}", e.path(), e.inner())))
            })
            .collect::<Result<Vec<T>, _>>()
            .map(Some),
        other => Err(D::Error::custom(format!(
            "must be an array, got {}",
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

/// Whichever of the outcome bodies. A reader knows which one to expect from the routing key
/// and the version (see [`InventoryOutcome::from_body_at`]).
#[derive(Debug)]
pub enum InventoryOutcomeBody {
    Reserved(InventoryReservedBody),
    Failed(InventoryFailedBody),
    Released(InventoryReleasedBody),
    /// Version 2 of any of the three: the event it is says which fields must be there.
    V2(EventType, OutcomeV2Body),
}

// --- version 2: an order of several lines -------------------------------------------------
//
// The same events, with `lines` where version 1 has `item` and `qty`. Each line is a
// [`LineBody`]; which of its optional fields are written depends on the event (`remaining` in
// InventoryReserved, `code` in an unserved line).

/// One line of a version-2 body.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LineBody {
    #[serde(deserialize_with = "text")]
    pub item: Option<String>,
    #[serde(deserialize_with = "integer")]
    pub qty: Option<i64>,
    /// InventoryReserved: units of the item left after this order.
    #[serde(deserialize_with = "integer", skip_serializing_if = "Option::is_none")]
    pub remaining: Option<i64>,
    /// InventoryFailed's `unserved`: why this line could not be served.
    #[serde(deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// OrderPlaced: the product's name and unit price (minor units of `currency`) when the
    /// order was placed, if order-svc's replica of the catalog knew them.
    #[serde(deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(deserialize_with = "integer", skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<i64>,
    #[serde(deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// `order.placed` version 2.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, tag = "status", rename = "PLACED")]
pub struct OrderPlacedV2Body {
    #[serde(deserialize_with = "text")]
    pub order_id: Option<String>,
    #[serde(deserialize_with = "list")]
    pub lines: Option<Vec<LineBody>>,
    #[serde(deserialize_with = "text")]
    pub student_id: Option<String>,
    /// What the order costs (minor units of `currency`), when every line has a price in one
    /// currency. Written for readers; a reader of ours works it out from the lines.
    #[serde(deserialize_with = "integer", skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
    #[serde(deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// `inventory.reserved`, `inventory.failed` and `inventory.released` version 2: the lines
/// (reserved with what is left, asked for, or given back) and, for a failure, which could not
/// be served and why.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OutcomeV2Body {
    #[serde(deserialize_with = "text")]
    pub order_id: Option<String>,
    #[serde(deserialize_with = "list")]
    pub lines: Option<Vec<LineBody>>,
    #[serde(deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub student_id: Option<String>,
    /// The lab's status word: RESERVED, FAILED or RELEASED.
    #[serde(deserialize_with = "text")]
    pub status: Option<String>,
    #[serde(deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(deserialize_with = "list", skip_serializing_if = "Option::is_none")]
    pub unserved: Option<Vec<LineBody>>,
}

/// An outcome as the bytes of its body, in the version it is written in.
pub(crate) fn outcome_to_json(outcome: &InventoryOutcome) -> Vec<u8> {
    match InventoryOutcomeBody::from(outcome) {
        InventoryOutcomeBody::Reserved(b) => to_json(&b),
        InventoryOutcomeBody::Failed(b) => to_json(&b),
        InventoryOutcomeBody::Released(b) => to_json(&b),
        InventoryOutcomeBody::V2(_, b) => to_json(&b),
    }
}

/// Read the lines of a version-2 body: `what` names the list in reasons (`lines`, `unserved`).
fn lines_of(
    lines: Option<Vec<LineBody>>,
    what: &str,
) -> Result<Vec<(Item, Qty, LineBody)>, Malformed> {
    required(lines, what)?
        .into_iter()
        .enumerate()
        .map(|(i, line)| {
            let at = |e: Malformed| Malformed(format!("{what}[{i}]: {e}"));
            let item = Item::parse(&required(line.item.clone(), "item").map_err(at)?)
                .map_err(|e| at(e.into()))?;
            let qty =
                Qty::parse(required(line.qty, "qty").map_err(at)?).map_err(|e| at(e.into()))?;
            Ok((item, qty, line))
        })
        .collect()
}

/// An order's lines from a version-2 body, with the limits of [`Lines::new`], each with its
/// price when it states one.
fn order_lines(lines: Option<Vec<LineBody>>) -> Result<Lines, Malformed> {
    let lines = lines_of(lines, "lines")?
        .into_iter()
        .enumerate()
        .map(|(i, (item, qty, body))| {
            let priced = priced_of(&body).map_err(|e| Malformed(format!("lines[{i}]: {e}")))?;
            Ok(Line::new(item, qty).priced(priced))
        })
        .collect::<Result<_, Malformed>>()?;
    Ok(Lines::new(lines)?)
}

/// A line's name and unit price, when all three fields are there (tolerant reader: with any
/// of them missing the price is unknown, as when the replica did not know the item). A value
/// that is there but makes no sense is refused, as any field's.
fn priced_of(line: &LineBody) -> Result<Option<Priced>, Malformed> {
    match (&line.name, line.unit_price, &line.currency) {
        (Some(name), Some(amount), Some(currency)) => Ok(Some(Priced {
            name: ProductName::parse(name)?,
            price: Price::new(amount, Currency::parse(currency)?)?,
        })),
        _ => Ok(None),
    }
}

/// The line of an order as OrderPlaced version 2 writes it: with its price when it has one.
fn placed_line_body(line: &Line) -> LineBody {
    let priced = line.priced.as_ref();
    LineBody {
        name: priced.map(|p| p.name.to_string()),
        unit_price: priced.map(|p| p.price.amount_minor()),
        currency: priced.map(|p| p.price.currency().to_string()),
        ..line_body(&line.item, line.qty.get().into())
    }
}

fn line_body(item: &Item, qty: i64) -> LineBody {
    LineBody {
        item: Some(item.to_string()),
        qty: Some(qty),
        ..LineBody::default()
    }
}

// --- bodies into domain types, and back ---------------------------------------------------------

impl TryFrom<OrderPlacedBody> for OrderPlaced {
    type Error = Malformed;

    fn try_from(body: OrderPlacedBody) -> Result<Self, Malformed> {
        Ok(Self {
            order_id: OrderId::parse(&required(body.order_id, "order_id")?)?,
            lines: Lines::single(
                Item::parse(&required(body.item, "item")?)?,
                Qty::parse(required(body.qty, "qty")?)?,
            ),
            student_id: student_id(body.student_id)?,
        })
    }
}

/// The flat lab body of an order's first line: an order of one line is exactly this.
impl From<&OrderPlaced> for OrderPlacedBody {
    fn from(o: &OrderPlaced) -> Self {
        let line = o.lines.first();
        Self {
            order_id: Some(o.order_id.to_string()),
            item: Some(line.item.to_string()),
            qty: Some(line.qty.get().into()),
            student_id: o.student_id.as_ref().map(ToString::to_string),
        }
    }
}

impl TryFrom<OrderPlacedV2Body> for OrderPlaced {
    type Error = Malformed;

    fn try_from(body: OrderPlacedV2Body) -> Result<Self, Malformed> {
        Ok(Self {
            order_id: OrderId::parse(&required(body.order_id, "order_id")?)?,
            lines: order_lines(body.lines)?,
            student_id: student_id(body.student_id)?,
        })
    }
}

impl From<&OrderPlaced> for OrderPlacedV2Body {
    fn from(o: &OrderPlaced) -> Self {
        let total = o.lines.total();
        Self {
            order_id: Some(o.order_id.to_string()),
            lines: Some(o.lines.iter().map(placed_line_body).collect()),
            student_id: o.student_id.as_ref().map(ToString::to_string),
            total: total.as_ref().map(|(amount, _)| *amount),
            currency: total.map(|(_, currency)| currency.to_string()),
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
                lines: vec![ReservedLine {
                    item: Item::parse(&required(b.item, "item")?)?,
                    qty: Qty::parse(required(b.qty, "qty")?)?,
                    remaining: b.remaining.unwrap_or(0),
                }],
                student_id: student_id(b.student_id)?,
            },
            InventoryOutcomeBody::Failed(b) => {
                let item = Item::parse(&required(b.item, "item")?)?;
                let qty = Qty::parse(required(b.qty, "qty")?)?;
                let code = failure_code(b.code.as_deref());
                Self::Failed {
                    order_id: OrderId::parse(&required(b.order_id, "order_id")?)?,
                    lines: Lines::single(item.clone(), qty),
                    student_id: student_id(b.student_id)?,
                    code,
                    reason: b.reason.unwrap_or_else(|| "no reason given".into()),
                    unserved: vec![UnservedLine { item, qty, code }],
                }
            }
            InventoryOutcomeBody::Released(b) => Self::Released {
                order_id: OrderId::parse(&required(b.order_id, "order_id")?)?,
                // A tombstone's release names no item and gives back nothing.
                lines: b
                    .item
                    .as_deref()
                    .map(Item::parse)
                    .transpose()?
                    .map(|item| ReleasedLine {
                        item,
                        qty: released_units(b.qty),
                    })
                    .into_iter()
                    .collect(),
            },
            InventoryOutcomeBody::V2(kind, b) => outcome_v2(kind, b)?,
        })
    }
}

/// A failure we cannot classify is still a failure: the order fails either way.
fn failure_code(code: Option<&str>) -> FailureCode {
    code.and_then(FailureCode::parse)
        .unwrap_or(FailureCode::InsufficientStock)
}

/// A count to report, not an order to serve: clamped rather than refused, so a release never
/// goes to the DLQ for it.
fn released_units(qty: Option<i64>) -> u32 {
    u32::try_from(qty.unwrap_or(0).max(0)).unwrap_or(u32::MAX)
}

fn outcome_v2(kind: EventType, b: OutcomeV2Body) -> Result<InventoryOutcome, Malformed> {
    let order_id = OrderId::parse(&required(b.order_id, "order_id")?)?;
    Ok(match kind {
        EventType::InventoryReserved => InventoryOutcome::Reserved {
            order_id,
            lines: lines_of(b.lines, "lines")?
                .into_iter()
                .map(|(item, qty, line)| ReservedLine {
                    item,
                    qty,
                    remaining: line.remaining.unwrap_or(0),
                })
                .collect(),
            student_id: student_id(b.student_id)?,
        },
        EventType::InventoryFailed => InventoryOutcome::Failed {
            order_id,
            lines: order_lines(b.lines)?,
            student_id: student_id(b.student_id)?,
            code: failure_code(b.code.as_deref()),
            reason: b.reason.unwrap_or_else(|| "no reason given".into()),
            unserved: lines_of(b.unserved, "unserved")?
                .into_iter()
                .map(|(item, qty, line)| UnservedLine {
                    item,
                    qty,
                    code: failure_code(line.code.as_deref()),
                })
                .collect(),
        },
        EventType::InventoryReleased => InventoryOutcome::Released {
            order_id,
            lines: required(b.lines, "lines")?
                .into_iter()
                .enumerate()
                .map(|(i, line)| {
                    let item = Item::parse(&required(line.item, "item")?)
                        .map_err(|e| Malformed(format!("lines[{i}]: {e}")))?;
                    Ok(ReleasedLine {
                        item,
                        qty: released_units(line.qty),
                    })
                })
                .collect::<Result<_, Malformed>>()?,
        },
        other => {
            return Err(Malformed(format!(
                "{} is not an inventory outcome",
                other.name()
            )));
        }
    })
}

impl From<&InventoryOutcome> for InventoryOutcomeBody {
    fn from(o: &InventoryOutcome) -> Self {
        let student = |s: &Option<StudentId>| s.as_ref().map(ToString::to_string);
        if o.schema_version().major == 2 {
            return Self::V2(o.event_type(), OutcomeV2Body::from(o));
        }
        match o {
            InventoryOutcome::Reserved {
                order_id,
                lines,
                student_id,
            } => {
                let line = lines.first();
                Self::Reserved(InventoryReservedBody {
                    order_id: Some(order_id.to_string()),
                    item: line.map(|l| l.item.to_string()),
                    qty: line.map(|l| l.qty.get().into()),
                    student_id: student(student_id),
                    remaining: line.map(|l| l.remaining),
                })
            }
            InventoryOutcome::Failed {
                order_id,
                lines,
                student_id,
                code,
                reason,
                ..
            } => Self::Failed(InventoryFailedBody {
                order_id: Some(order_id.to_string()),
                item: Some(lines.first().item.to_string()),
                qty: Some(lines.first().qty.get().into()),
                student_id: student(student_id),
                reason: Some(reason.clone()),
                code: Some(code.as_str().to_owned()),
            }),
            InventoryOutcome::Released { order_id, lines } => {
                let line = lines.first();
                Self::Released(InventoryReleasedBody {
                    order_id: Some(order_id.to_string()),
                    item: line.map(|l| l.item.to_string()),
                    qty: Some(line.map_or(0, |l| l.qty.into())),
                })
            }
        }
    }
}

impl From<&InventoryOutcome> for OutcomeV2Body {
    fn from(o: &InventoryOutcome) -> Self {
        let mut body = Self {
            order_id: Some(o.order_id().to_string()),
            status: Some(o.status().to_owned()),
            ..Self::default()
        };
        match o {
            InventoryOutcome::Reserved {
                lines, student_id, ..
            } => {
                body.lines = Some(
                    lines
                        .iter()
                        .map(|l| LineBody {
                            remaining: Some(l.remaining),
                            ..line_body(&l.item, l.qty.get().into())
                        })
                        .collect(),
                );
                body.student_id = student_id.as_ref().map(ToString::to_string);
            }
            InventoryOutcome::Failed {
                lines,
                student_id,
                code,
                reason,
                unserved,
                ..
            } => {
                body.lines = Some(
                    lines
                        .iter()
                        .map(|l| line_body(&l.item, l.qty.get().into()))
                        .collect(),
                );
                body.student_id = student_id.as_ref().map(ToString::to_string);
                body.code = Some(code.as_str().to_owned());
                body.reason = Some(reason.clone());
                body.unserved = Some(
                    unserved
                        .iter()
                        .map(|l| LineBody {
                            code: Some(l.code.as_str().to_owned()),
                            ..line_body(&l.item, l.qty.get().into())
                        })
                        .collect(),
                );
            }
            InventoryOutcome::Released { lines, .. } => {
                body.lines = Some(
                    lines
                        .iter()
                        .map(|l| line_body(&l.item, l.qty.into()))
                        .collect(),
                );
            }
        }
        body
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
            lines: Lines::single(item("burger"), qty(5)),
            student_id: None,
        }
    }

    fn item(name: &str) -> Item {
        Item::parse(name).unwrap()
    }

    fn qty(n: i64) -> Qty {
        Qty::parse(n).unwrap()
    }

    fn reserved(item_name: &str, n: i64, remaining: i64) -> ReservedLine {
        ReservedLine {
            item: item(item_name),
            qty: qty(n),
            remaining,
        }
    }

    fn failed_one(item_name: &str, n: i64, code: FailureCode, reason: &str) -> InventoryOutcome {
        InventoryOutcome::Failed {
            order_id: OrderId::parse("o1").unwrap(),
            lines: Lines::single(item(item_name), qty(n)),
            student_id: None,
            code,
            reason: reason.into(),
            unserved: vec![UnservedLine {
                item: item(item_name),
                qty: qty(n),
                code,
            }],
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
            lines: vec![reserved("burger", 5, 95)],
            student_id: Some(StudentId::parse("s1").unwrap()),
        };
        assert_eq!(
            json_of(&reserved.to_body()),
            json!({"order_id": "o1", "item": "burger", "qty": 5, "student_id": "s1",
                   "remaining": 95, "status": "RESERVED"})
        );
        let failed = failed_one("caviar", 1, FailureCode::UnknownItem, "no such item");
        assert_eq!(
            json_of(&failed.to_body()),
            json!({"order_id": "o1", "item": "caviar", "qty": 1, "student_id": null,
                   "status": "FAILED", "reason": "no such item", "code": "unknown_item"})
        );
        let released = InventoryOutcome::Released {
            order_id: OrderId::parse("o1").unwrap(),
            lines: vec![],
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
                lines: vec![reserved("burger", 5, 95)],
                student_id: Some(StudentId::parse("s1").unwrap()),
            },
            failed_one("caviar", 1, FailureCode::UnknownItem, "no such item"),
            InventoryOutcome::Released {
                order_id: OrderId::parse("o1").unwrap(),
                lines: vec![ReleasedLine {
                    item: item("burger"),
                    qty: 5,
                }],
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
        let Ok(InventoryOutcome::Reserved { lines, .. }) =
            outcome(EventType::InventoryReserved, base.clone())
        else {
            panic!("a reservation without remaining");
        };
        assert_eq!(lines[0].remaining, 0);

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
            Ok(InventoryOutcome::Released { lines, .. }) => lines,
            other => panic!("{other:?}"),
        };
        assert_eq!(released(json!({"order_id": "o1"})), vec![]);
        assert_eq!(released(json!({"order_id": "o1", "qty": -3})), vec![]);
        assert_eq!(
            released(json!({"order_id": "o1", "item": "burger", "qty": 1_i64 << 40})),
            vec![ReleasedLine {
                item: item("burger"),
                qty: u32::MAX
            }]
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

    /// Version 2: an order of several lines, and the outcomes about it, with `lines`.
    #[test]
    fn several_lines_travel_as_version_2() {
        let order = OrderPlaced {
            order_id: OrderId::parse("o2").unwrap(),
            lines: Lines::new(vec![
                Line::new(item("burger"), qty(2)),
                Line::new(item("pizza"), qty(1)),
            ])
            .unwrap(),
            student_id: None,
        };
        assert_eq!(order.schema_version(), SchemaVersion::V2);
        assert_eq!(order_placed().schema_version(), SchemaVersion::V1);
        assert_eq!(
            json_of(&order.to_body()),
            json!({"order_id": "o2", "lines": [{"item": "burger", "qty": 2}, {"item": "pizza", "qty": 1}],
                   "student_id": null, "status": "PLACED"})
        );
        assert_eq!(OrderPlaced::from_body(&order.to_body()).unwrap(), order);
        // Read as version 1, a version-2 body lacks the lab's fields; as 2, a lab body its lines.
        assert_eq!(
            OrderPlaced::from_body_at(&order.to_body(), SchemaVersion::V1)
                .unwrap_err()
                .0,
            "missing required field item"
        );
        assert_eq!(
            OrderPlaced::from_body_at(&order_placed().to_body(), SchemaVersion::V2)
                .unwrap_err()
                .0,
            "missing required field lines"
        );

        let failed = InventoryOutcome::Failed {
            order_id: order.order_id.clone(),
            lines: order.lines.clone(),
            student_id: None,
            code: FailureCode::InsufficientStock,
            reason: "insufficient stock for pizza: asked for 1, 0 left".into(),
            unserved: vec![UnservedLine {
                item: item("pizza"),
                qty: qty(1),
                code: FailureCode::InsufficientStock,
            }],
        };
        assert_eq!(
            json_of(&failed.to_body()),
            json!({"order_id": "o2", "lines": [{"item": "burger", "qty": 2}, {"item": "pizza", "qty": 1}],
                   "status": "FAILED", "code": "insufficient_stock",
                   "reason": "insufficient stock for pizza: asked for 1, 0 left",
                   "unserved": [{"item": "pizza", "qty": 1, "code": "insufficient_stock"}]})
        );
        let outcomes = [
            failed,
            InventoryOutcome::Reserved {
                order_id: order.order_id.clone(),
                lines: vec![reserved("burger", 2, 98), reserved("pizza", 1, 49)],
                student_id: Some(StudentId::parse("s1").unwrap()),
            },
            InventoryOutcome::Released {
                order_id: order.order_id.clone(),
                lines: vec![
                    ReleasedLine {
                        item: item("burger"),
                        qty: 2,
                    },
                    ReleasedLine {
                        item: item("pizza"),
                        qty: 1,
                    },
                ],
            },
        ];
        for o in outcomes {
            assert_eq!(o.schema_version(), SchemaVersion::V2, "{o:?}");
            assert_eq!(
                InventoryOutcome::from_body(o.event_type(), &o.to_body()).unwrap(),
                o
            );
        }
    }

    #[test]
    fn a_version_2_reason_names_the_line() {
        let reason = |body: Value| {
            OrderPlaced::from_body_at(body.to_string().as_bytes(), SchemaVersion::V2)
                .unwrap_err()
                .0
        };
        assert_eq!(
            reason(json!({"order_id": "o", "lines": "burger"})),
            "lines must be an array, got string \"burger\""
        );
        assert_eq!(
            reason(json!({"order_id": "o", "lines": [{"item": "a", "qty": 1}, 5]})),
            "lines[1] must be an object, got number 5"
        );
        assert_eq!(
            reason(json!({"order_id": "o", "lines": [{"item": "a", "qty": "x"}]})),
            "lines[0].qty must be an integer, got string \"x\""
        );
        assert_eq!(
            reason(
                json!({"order_id": "o", "lines": [{"item": "a", "qty": 1}, {"item": "b", "qty": 0}]})
            ),
            "lines[1]: qty must be at least 1, got 0"
        );
        assert_eq!(
            reason(json!({"order_id": "o", "lines": []})),
            "items must hold at least one line"
        );
        assert_eq!(
            reason(
                json!({"order_id": "o", "lines": [{"item": "a", "qty": 1}, {"item": "a", "qty": 2}]})
            ),
            "item \"a\" is on two lines; put its quantities on one"
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
