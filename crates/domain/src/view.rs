//! What order-svc's HTTP API answers: an order as order-svc keeps it ([`Order`]), with its
//! timeline and its DLQ hops (`GET /order/{id}`: [`OrderView`]), a page of them (`GET /orders?..`:
//! [`OrderPage`]) and the answer to a place or a cancel ([`OrderAck`]). order-svc serves these
//! types; `sagactl`, the board, the client and the tests read them, so each answer is declared
//! once.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::ids::{Invalid, Item, OrderId, Qty};
use crate::lines::{Line, Lines, total};
use crate::order::{DlqHop, HistoryEntry, OrderStatus};
use crate::owner::{Email, Owner, UserId};
use crate::product::{Currency, Price, Priced, ProductName};

/// An order as stored and as `GET /order/{id}` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Order {
    pub order_id: OrderId,
    /// What was ordered: `item` and `qty` for an order of one line, as the lab shows it, and
    /// `lines` for every order.
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(value_type = ShownLines))]
    pub lines: OrderLines,
    pub student_id: Option<String>,
    pub status: OrderStatus,
    /// Why the order failed or was cancelled, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub correlation_id: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    /// Milliseconds since the Unix epoch.
    pub updated_at: u64,
    /// Who placed it through the per-user API (`/api/v1/orders` with a token); absent for an
    /// order placed without one (the lab's routes, or the API with auth off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

impl Order {
    /// The order as its Redis hash holds it (`{prefix}:order:{id}`): field, text. No `reason`
    /// yet: a script adds it with the move that has one.
    pub fn to_hash(&self) -> Vec<(&'static str, String)> {
        vec![
            ("order_id", self.order_id.to_string()),
            ("student_id", self.student_id.clone().unwrap_or_default()),
            ("status", self.status.to_string()),
            ("correlation_id", self.correlation_id.clone()),
            ("created_at", self.created_at.to_string()),
            ("updated_at", self.updated_at.to_string()),
        ]
        .into_iter()
        .chain(self.lines.to_hash())
        .chain(self.owner.iter().flat_map(|owner| {
            [
                ("owner_id", owner.user_id.to_string()),
                ("owner_email", owner.email.to_string()),
            ]
        }))
        .collect()
    }

    /// The order from its Redis hash; `None` if a field it cannot do without is missing or not
    /// what it should be (no such order, or a record edited by hand). An empty text field is
    /// absent.
    pub fn from_hash(hash: &HashMap<String, String>) -> Option<Self> {
        let text = |k: &str| hash.get(k).cloned();
        let millis = |k: &str| hash.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        Some(Self {
            order_id: OrderId::parse(&text("order_id")?).ok()?,
            lines: OrderLines::from_hash(hash)?,
            student_id: text("student_id").filter(|s| !s.is_empty()),
            status: OrderStatus::parse(&text("status")?)?,
            reason: text("reason").filter(|s| !s.is_empty()),
            correlation_id: text("correlation_id").unwrap_or_default(),
            created_at: millis("created_at"),
            updated_at: millis("updated_at"),
            owner: Self::owner_from_hash(hash),
        })
    }

    /// The owner a hash records: both fields, valid, or none (an order placed without a token).
    fn owner_from_hash(hash: &HashMap<String, String>) -> Option<Owner> {
        Some(Owner {
            user_id: UserId::parse(hash.get("owner_id")?).ok()?,
            email: Email::parse(hash.get("owner_email")?).ok()?,
        })
    }
}

/// One line of an order as order-svc keeps and shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderLine {
    pub item: Item,
    pub qty: i64,
    /// The product's name and unit price (minor units of `currency`) when the order was
    /// placed; absent when order-svc's replica of the catalog did not know the item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

impl OrderLine {
    /// A line whose price is unknown.
    pub fn unpriced(item: Item, qty: i64) -> Self {
        Self {
            item,
            qty,
            name: None,
            unit_price: None,
            currency: None,
        }
    }

    /// The line's name and price as the domain has them, if it has a usable one.
    fn priced(&self) -> Option<Priced> {
        Some(Priced {
            name: ProductName::parse(self.name.as_deref()?).ok()?,
            price: Price::new(
                self.unit_price?,
                Currency::parse(self.currency.as_deref()?).ok()?,
            )
            .ok()?,
        })
    }
}

/// The lines of an order (at least one). In JSON, an order of one line also shows the lab's
/// `item` and `qty` beside `lines`, so a lab script reads it as it always did; an order of
/// several shows `lines` only. In Redis, a lab order keeps its `item` and `qty` fields as
/// before, and one of several a `lines` field (JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLines(pub Vec<OrderLine>);

impl OrderLines {
    /// The lines of an order as placed.
    pub fn of(lines: &Lines) -> Self {
        Self(
            lines
                .iter()
                .map(|l| {
                    let priced = l.priced.as_ref();
                    OrderLine {
                        item: l.item.clone(),
                        qty: l.qty.get().into(),
                        name: priced.map(|p| p.name.to_string()),
                        unit_price: priced.map(|p| p.price.amount_minor()),
                        currency: priced.map(|p| p.price.currency().to_string()),
                    }
                })
                .collect(),
        )
    }

    /// What the order costs, when every line has a price in one currency.
    pub fn total(&self) -> Option<(i64, Currency)> {
        let priced: Vec<(u32, Option<Priced>)> = self
            .0
            .iter()
            .map(|l| (u32::try_from(l.qty).unwrap_or(0), l.priced()))
            .collect();
        total(priced.iter().map(|(qty, p)| {
            (
                *qty,
                p.as_ref()
                    .map(|p| (p.price.amount_minor(), p.price.currency())),
            )
        }))
    }

    /// The lines as an OrderPlaced carries them (to re-send an order's event by hand).
    ///
    /// # Errors
    /// A line that could not have been placed (a record edited by hand).
    pub fn to_lines(&self) -> Result<Lines, Invalid> {
        let lines = self
            .0
            .iter()
            .map(|l| Ok(Line::new(l.item.clone(), Qty::parse(l.qty)?).priced(l.priced())))
            .collect::<Result<_, Invalid>>()?;
        Lines::new(lines)
    }

    /// The one line of a lab order, or `None` for an order of several.
    pub fn single(&self) -> Option<&OrderLine> {
        match self.0.as_slice() {
            [line] => Some(line),
            _ => None,
        }
    }

    /// `2 x burger`, or `3 lines, 7 units`.
    pub fn summary(&self) -> String {
        match self.single() {
            Some(line) => format!("{} x {}", line.qty, line.item),
            None => format!(
                "{} lines, {} units",
                self.0.len(),
                self.0.iter().map(|l| l.qty).sum::<i64>()
            ),
        }
    }

    fn to_hash(&self) -> Vec<(&'static str, String)> {
        match self.single() {
            Some(line) => {
                let mut fields = vec![
                    ("item", line.item.to_string()),
                    ("qty", line.qty.to_string()),
                ];
                // A lab order's price, when known, in fields of its own (none when unknown, so
                // an unpriced lab order's hash is as it always was).
                if let (Some(name), Some(price), Some(currency)) =
                    (&line.name, line.unit_price, &line.currency)
                {
                    fields.push(("name", name.clone()));
                    fields.push(("unit_price", price.to_string()));
                    fields.push(("currency", currency.clone()));
                }
                fields
            }
            None => vec![("lines", serde_json::to_string(&self.0).unwrap_or_default())],
        }
    }

    /// The lines an order's hash holds: `lines`, or a lab order's `item` and `qty`.
    pub fn from_hash(hash: &HashMap<String, String>) -> Option<Self> {
        if let Some(lines) = hash.get("lines").filter(|l| !l.is_empty()) {
            let lines: Vec<OrderLine> = serde_json::from_str(lines).ok()?;
            return (!lines.is_empty()).then_some(Self(lines));
        }
        Some(Self(vec![OrderLine {
            item: Item::parse(hash.get("item")?).ok()?,
            qty: hash.get("qty")?.parse().ok()?,
            name: hash.get("name").cloned(),
            unit_price: hash.get("unit_price").and_then(|p| p.parse().ok()),
            currency: hash.get("currency").cloned(),
        }]))
    }
}

impl Serialize for OrderLines {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        if let Some(line) = self.single() {
            map.serialize_entry("item", &line.item)?;
            map.serialize_entry("qty", &line.qty)?;
        }
        map.serialize_entry("lines", &self.0)?;
        if let Some((amount, currency)) = self.total() {
            map.serialize_entry("total", &amount)?;
            map.serialize_entry("currency", currency.as_str())?;
        }
        map.end()
    }
}

/// The lines as an answer shows them: `lines`, and for an order of one line the lab's `item`
/// and `qty` too (an older order-svc's answer has only those).
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShownLines {
    /// An order of one line: its item, as the lab shows it.
    item: Option<Item>,
    /// An order of one line: its quantity, as the lab shows it.
    qty: Option<i64>,
    /// Every line of the order.
    lines: Option<Vec<OrderLine>>,
    /// What the order costs in minor units of `currency`, when every line has a price in one
    /// currency (shown, not read: it is worked out from the lines).
    #[serde(default)]
    #[allow(dead_code)]
    total: Option<i64>,
    #[serde(default)]
    #[allow(dead_code)]
    currency: Option<String>,
}

impl<'de> Deserialize<'de> for OrderLines {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let shown = ShownLines::deserialize(deserializer)?;
        match (shown.lines, shown.item, shown.qty) {
            (Some(lines), _, _) if !lines.is_empty() => Ok(Self(lines)),
            (_, Some(item), Some(qty)) => Ok(Self(vec![OrderLine::unpriced(item, qty)])),
            _ => Err(serde::de::Error::custom(
                "an order must show its lines (or item and qty)",
            )),
        }
    }
}

/// An order with its timeline: every transition (or ignored event) and any DLQ hops.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderView {
    #[serde(flatten)]
    pub order: Order,
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
    #[serde(default)]
    pub dlq_hops: Vec<DlqHop>,
}

/// The answer to `POST /order` (201) and `POST /order/{id}/cancel` (202): which order, and
/// where it stands now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderAck {
    pub order_id: String,
    pub status: OrderStatus,
}

/// What is left of a finished order once its retention is over (order-svc's sweeper compacts
/// it): `GET /order/{id}` answers 404 with it, `"expired": true`, for the dedupe window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tombstone {
    /// The status it finished in.
    pub status: OrderStatus,
    /// When it finished and when it was compacted, ms since the Unix epoch.
    pub finished_at: u64,
    pub expired_at: u64,
    /// Whose it was, if it had an owner: the per-user API tells the owner "expired" and everyone
    /// else "no such order".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<UserId>,
}

/// A page of orders, newest first (`GET /orders?status=&limit=&offset=`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderPage {
    pub orders: Vec<Order>,
    /// Orders on this page.
    pub count: usize,
    /// Orders in all (with the status asked for, if any).
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_reads_back_as_it_was_written() {
        let json = r#"{"order_id":"o-1","item":"burger","qty":2,"student_id":null,
            "status":"CONFIRMED","correlation_id":"o-1","created_at":1,"updated_at":2,
            "history":[],"dlq_hops":[]}"#;
        let view: OrderView = serde_json::from_str(json).unwrap();
        assert_eq!(view.order.status, OrderStatus::Confirmed);
        assert_eq!(view.order.order_id.as_str(), "o-1");
        let again: OrderView =
            serde_json::from_value(serde_json::to_value(&view).unwrap()).unwrap();
        assert_eq!(again, view);
    }

    #[test]
    fn an_order_reads_back_from_the_hash_it_is_written_as() {
        let order = Order {
            order_id: OrderId::parse("o-1").unwrap(),
            lines: OrderLines(vec![OrderLine::unpriced(Item::parse("burger").unwrap(), 2)]),
            student_id: None,
            status: OrderStatus::Placed,
            reason: None,
            correlation_id: "trace:1".into(),
            created_at: 5,
            updated_at: 5,
            owner: None,
        };
        let hash: HashMap<String, String> = order
            .to_hash()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(Order::from_hash(&hash), Some(order.clone()));
        assert_eq!(Order::from_hash(&HashMap::new()), None);

        let owned = Order {
            owner: Some(Owner {
                user_id: UserId::parse("alice").unwrap(),
                email: Email::parse("alice@example.org").unwrap(),
            }),
            ..order
        };
        let hash: HashMap<String, String> = owned
            .to_hash()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(hash["owner_id"], "alice");
        assert_eq!(Order::from_hash(&hash), Some(owned.clone()));

        // An order of several lines keeps them as one JSON field, and shows no lab fields.
        let several = Order {
            lines: OrderLines(vec![
                OrderLine::unpriced(Item::parse("burger").unwrap(), 2),
                OrderLine::unpriced(Item::parse("pizza").unwrap(), 1),
            ]),
            ..owned
        };
        let hash: HashMap<String, String> = several
            .to_hash()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert!(!hash.contains_key("item"));
        assert_eq!(Order::from_hash(&hash), Some(several.clone()));
        let json = serde_json::to_value(&several).unwrap();
        assert_eq!(json.get("item"), None);
        assert_eq!(json["lines"][1]["item"], "pizza");
        assert_eq!(serde_json::from_value::<Order>(json).unwrap(), several);
    }

    #[test]
    fn a_priced_order_keeps_its_prices_and_shows_its_total() {
        let priced = |item: &str, qty, price| OrderLine {
            name: Some(format!("The {item}")),
            unit_price: Some(price),
            currency: Some("EUR".into()),
            ..OrderLine::unpriced(Item::parse(item).unwrap(), qty)
        };
        for lines in [
            vec![priced("burger", 2, 899)],
            vec![priced("burger", 2, 899), priced("pizza", 1, 1250)],
        ] {
            let lines = OrderLines(lines);
            let mut hash: HashMap<String, String> = lines
                .to_hash()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            hash.insert("order_id".into(), "o1".into());
            assert_eq!(OrderLines::from_hash(&hash), Some(lines.clone()));
            let shown = serde_json::to_value(&lines).unwrap();
            assert_eq!(shown["currency"], "EUR");
            assert_eq!(
                shown["total"],
                lines
                    .0
                    .iter()
                    .map(|l| l.qty * l.unit_price.unwrap())
                    .sum::<i64>()
            );
        }
        // A line whose price is unknown: no total.
        let mixed = OrderLines(vec![
            priced("burger", 2, 899),
            OrderLine::unpriced(Item::parse("caviar").unwrap(), 1),
        ]);
        assert_eq!(serde_json::to_value(&mixed).unwrap().get("total"), None);
    }

    #[test]
    fn an_order_of_one_line_shows_the_labs_fields() {
        let json = r#"{"order_id":"o1","item":"burger","qty":2,"student_id":null,
            "status":"CONFIRMED","correlation_id":"o-1","created_at":1,"updated_at":2}"#;
        let order = serde_json::from_str::<Order>(json).unwrap();
        assert_eq!(order.lines.summary(), "2 x burger");
        let shown = serde_json::to_value(&order).unwrap();
        assert_eq!(
            (shown["item"].as_str(), shown["qty"].as_i64()),
            (Some("burger"), Some(2))
        );
        assert_eq!(shown["lines"][0]["qty"], 2);
    }

    #[test]
    fn a_status_order_svc_never_sends_is_an_error() {
        let answer = r#"{ "order_id": "o1", "status": "LOST" }"#;
        assert!(serde_json::from_str::<OrderAck>(answer).is_err());
    }

    #[test]
    fn an_order_id_that_could_not_have_been_written_is_refused() {
        let json = r#"{"order_id":"o:1","item":"burger","qty":2,"student_id":null,
            "status":"CONFIRMED","correlation_id":"o-1","created_at":1,"updated_at":2}"#;
        let err = serde_json::from_str::<Order>(json).unwrap_err();
        assert!(err.to_string().contains("order_id contains ':'"), "{err}");
    }
}
