//! The catalog: products, their prices, and the events inventory-svc announces about them.
//!
//! inventory-svc owns the catalog; everyone else learns it from its events (docs/DESIGN.md §3,
//! "Product events"): a [`ProductChange::Snapshot`] of every product when it starts (and on
//! demand), [`ProductChange::PriceChanged`], and the stock signals [`ProductChange::StockUpdated`],
//! [`ProductChange::StockLow`] and [`ProductChange::StockOut`]. A product's id is its [`Item`].
//!
//! Money is an integer in minor units with its [`Currency`] (`{899, EUR}` is 8.99 euros), never a
//! float: a sum of prices is exact.
//!
//! **Order.** Every product event carries `seq`, a per-product counter inventory-svc increments
//! in the same Redis step that reads or changes what the event says, and `at`, when (ms). Events
//! may arrive late, twice or out of order (retries, re-sends, several publishers); a replica keeps
//! per product the highest `seq` it applied and ignores anything older, so it converges on
//! inventory's latest word whatever the order of arrival.
//!
//! The bodies are flat JSON like every event's ([`crate::wire`]): serde structs read field by field
//! with reasons a person can act on, then `TryFrom` into [`ProductEvent`].

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::events::EventType;
use crate::ids::{Invalid, Item};
use crate::wire::{self, Malformed, required};

/// The highest unit price we accept, in minor units (a million in a two-decimal currency): far
/// above any menu, and low enough that a line's total (`MAX_QTY` units) fits an `i64` with room.
pub const MAX_UNIT_PRICE: i64 = 100_000_000;
/// The longest product name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// The highest low-stock threshold.
pub const MAX_LOW_THRESHOLD: i64 = 1_000_000_000;

/// An ISO 4217 currency code: three ASCII capital letters (`EUR`, `USD`). Whether the code is
/// assigned is not checked: a lab may price in `XTS`, the code reserved for tests.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency(String);

impl Currency {
    /// # Errors
    /// Anything but three capital letters A to Z.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Invalid(format!(
                "currency must be three capital letters (e.g. EUR), got {:?}",
                raw.chars().take(20).collect::<String>()
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// What a product is called on a menu: 1 to [`MAX_NAME_CHARS`] characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProductName(String);

impl ProductName {
    /// # Errors
    /// Empty (or only spaces), too long, or with a control character.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.trim().is_empty() {
            return Err(Invalid("name must not be empty".into()));
        }
        if raw.chars().count() > MAX_NAME_CHARS {
            return Err(Invalid(format!(
                "name longer than {MAX_NAME_CHARS} characters"
            )));
        }
        if let Some(bad) = raw.chars().find(|c| c.is_control()) {
            return Err(Invalid(format!("name contains {bad:?}")));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProductName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ProductName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// A unit price: an amount in minor units (cents for EUR) from 0 to [`MAX_UNIT_PRICE`], and its
/// currency.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Price {
    amount_minor: i64,
    currency: Currency,
}

impl Price {
    /// # Errors
    /// A negative amount, or one above [`MAX_UNIT_PRICE`].
    pub fn new(amount_minor: i64, currency: Currency) -> Result<Self, Invalid> {
        if !(0..=MAX_UNIT_PRICE).contains(&amount_minor) {
            return Err(Invalid(format!(
                "unit_price must be 0..={MAX_UNIT_PRICE} (minor units), got {amount_minor}"
            )));
        }
        Ok(Self {
            amount_minor,
            currency,
        })
    }

    pub fn amount_minor(&self) -> i64 {
        self.amount_minor
    }

    pub fn currency(&self) -> &Currency {
        &self.currency
    }
}

impl fmt::Display for Price {
    /// `8.99 EUR` for `{899, EUR}`: two decimals, as most currencies have.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (units, cents) = (self.amount_minor / 100, self.amount_minor % 100);
        write!(f, "{units}.{cents:02} {}", self.currency)
    }
}

/// A product's name and unit price as an order's line copies them when it is placed (from
/// order-svc's replica of the catalog): a snapshot, which no later price change touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Priced {
    pub name: ProductName,
    pub price: Price,
}

/// A low-stock threshold: `product.stock.low` is announced when the stock falls below it.
///
/// # Errors
/// Negative, or above [`MAX_LOW_THRESHOLD`].
pub fn low_threshold(raw: i64) -> Result<u32, Invalid> {
    if !(0..=MAX_LOW_THRESHOLD).contains(&raw) {
        return Err(Invalid(format!(
            "low_threshold must be 0..={MAX_LOW_THRESHOLD}, got {raw}"
        )));
    }
    Ok(raw as u32)
}

/// One product of the catalog, as inventory-svc keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub item: Item,
    pub name: ProductName,
    pub price: Price,
    /// Below this many units the product is low on stock (0: never).
    pub low_threshold: u32,
}

/// An event about one product (routing keys `product.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductEvent {
    pub item: Item,
    /// The product's counter when inventory said this: a higher `seq` is newer information.
    pub seq: u64,
    /// When inventory said it, ms since the Unix epoch.
    pub at: u64,
    pub change: ProductChange,
}

/// What a [`ProductEvent`] says about its product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProductChange {
    /// Everything about the product (`product.snapshot`): at start-up, on demand, and when a
    /// product is added or its name or threshold change.
    Snapshot {
        name: ProductName,
        price: Price,
        stock: i64,
        low_threshold: u32,
    },
    /// Its price or currency changed (`product.price.changed`).
    PriceChanged {
        name: ProductName,
        old: Price,
        new: Price,
    },
    /// Its stock changed (`product.stock.updated`): `stock` is the stock when the event was
    /// made, `previous` the stock just before the change that caused it.
    StockUpdated { stock: i64, previous: i64 },
    /// Its stock fell below its threshold with this change (`product.stock.low`).
    StockLow { stock: i64, threshold: u32 },
    /// Its stock reached 0 with this change (`product.stock.out`).
    StockOut,
}

impl ProductChange {
    pub fn event_type(&self) -> EventType {
        match self {
            Self::Snapshot { .. } => EventType::ProductSnapshot,
            Self::PriceChanged { .. } => EventType::ProductPriceChanged,
            Self::StockUpdated { .. } => EventType::ProductStockUpdated,
            Self::StockLow { .. } => EventType::ProductStockLow,
            Self::StockOut => EventType::ProductStockOut,
        }
    }
}

/// A stock signal, before it is dressed as an event: see [`stock_events`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockSignal {
    Updated,
    Low,
    Out,
}

impl StockSignal {
    pub fn event_type(self) -> EventType {
        match self {
            Self::Updated => EventType::ProductStockUpdated,
            Self::Low => EventType::ProductStockLow,
            Self::Out => EventType::ProductStockOut,
        }
    }
}

/// What one change of an item's stock from `before` to `after` announces, in this order:
/// `Updated` whenever it changed; `Low` when it crossed the threshold downwards (from at least
/// `threshold` to below it; a threshold of 0 is never crossed); `Out` when it reached 0 from
/// above. Each crossing is announced by exactly the one change that made it, so a consumer sees
/// one `Low` per fall below the threshold, however many orders follow while it stays low.
pub fn stock_events(before: i64, after: i64, threshold: u32) -> Vec<StockSignal> {
    let mut signals = Vec::new();
    if before == after {
        return signals;
    }
    signals.push(StockSignal::Updated);
    let threshold = i64::from(threshold);
    if before >= threshold && after < threshold {
        signals.push(StockSignal::Low);
    }
    if before > 0 && after <= 0 {
        signals.push(StockSignal::Out);
    }
    signals
}

/// The event id of a product event caused by another event (`cause`: the id inventory
/// announced its decision with): the same cause, item and kind give the same id, so a re-send
/// of the stock events of a redelivered order is recognised as the same events. A UUID (v5),
/// like every event id.
pub fn derived_event_id(cause: &str, item: &Item, kind: EventType) -> String {
    /// Our own namespace for these ids (a v4 UUID drawn once).
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6f1c_2a54_8d3e_4b7a_9c1f_0e5d_7a2b_3c4d);
    let name = format!("{cause}/{item}/{}", kind.routing_key());
    uuid::Uuid::new_v5(&NAMESPACE, name.as_bytes()).to_string()
}

impl ProductEvent {
    pub fn event_type(&self) -> EventType {
        self.change.event_type()
    }

    pub fn to_body(&self) -> Vec<u8> {
        let (item, seq, at) = (
            Some(self.item.to_string()),
            i64::try_from(self.seq).ok(),
            i64::try_from(self.at).ok(),
        );
        match &self.change {
            ProductChange::Snapshot {
                name,
                price,
                stock,
                low_threshold,
            } => wire::to_json(&ProductSnapshotBody {
                item,
                name: Some(name.to_string()),
                unit_price: Some(price.amount_minor),
                currency: Some(price.currency.to_string()),
                stock: Some(*stock),
                low_threshold: Some((*low_threshold).into()),
                seq,
                at,
            }),
            ProductChange::PriceChanged { name, old, new } => {
                wire::to_json(&ProductPriceChangedBody {
                    item,
                    name: Some(name.to_string()),
                    unit_price: Some(new.amount_minor),
                    currency: Some(new.currency.to_string()),
                    old_unit_price: Some(old.amount_minor),
                    old_currency: Some(old.currency.to_string()),
                    seq,
                    at,
                })
            }
            ProductChange::StockUpdated { stock, previous } => {
                wire::to_json(&ProductStockUpdatedBody {
                    item,
                    stock: Some(*stock),
                    previous: Some(*previous),
                    seq,
                    at,
                })
            }
            ProductChange::StockLow { stock, threshold } => wire::to_json(&ProductStockLowBody {
                item,
                stock: Some(*stock),
                threshold: Some((*threshold).into()),
                seq,
                at,
            }),
            ProductChange::StockOut => wire::to_json(&ProductStockOutBody { item, seq, at }),
        }
    }

    /// Read a product event; `kind` comes from the routing key or the `type` property.
    ///
    /// # Errors
    /// [`Malformed`] when `kind` is no product event or the body is unusable.
    pub fn from_body(kind: EventType, body: &[u8]) -> Result<Self, Malformed> {
        match kind {
            EventType::ProductSnapshot => wire::read::<ProductSnapshotBody>(body)?.try_into(),
            EventType::ProductPriceChanged => {
                wire::read::<ProductPriceChangedBody>(body)?.try_into()
            }
            EventType::ProductStockUpdated => {
                wire::read::<ProductStockUpdatedBody>(body)?.try_into()
            }
            EventType::ProductStockLow => wire::read::<ProductStockLowBody>(body)?.try_into(),
            EventType::ProductStockOut => wire::read::<ProductStockOutBody>(body)?.try_into(),
            other => Err(Malformed(format!(
                "{} is not a product event",
                other.name()
            ))),
        }
    }

    /// Read a product event off a delivery: `kind` is the event its routing key or `type`
    /// property named, if any.
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
}

// --- the bodies (docs/schemas/product.*.v1.json) ---------------------------------------------

/// `product.snapshot`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ProductSnapshotBody {
    #[serde(deserialize_with = "wire::text")]
    pub item: Option<String>,
    #[serde(deserialize_with = "wire::text")]
    pub name: Option<String>,
    #[serde(deserialize_with = "wire::integer")]
    pub unit_price: Option<i64>,
    #[serde(deserialize_with = "wire::text")]
    pub currency: Option<String>,
    #[serde(deserialize_with = "wire::integer")]
    pub stock: Option<i64>,
    #[serde(deserialize_with = "wire::integer")]
    pub low_threshold: Option<i64>,
    #[serde(deserialize_with = "wire::integer")]
    pub seq: Option<i64>,
    #[serde(deserialize_with = "wire::integer")]
    pub at: Option<i64>,
}

/// `product.price.changed`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ProductPriceChangedBody {
    #[serde(deserialize_with = "wire::text")]
    pub item: Option<String>,
    #[serde(deserialize_with = "wire::text")]
    pub name: Option<String>,
    #[serde(deserialize_with = "wire::integer")]
    pub unit_price: Option<i64>,
    #[serde(deserialize_with = "wire::text")]
    pub currency: Option<String>,
    #[serde(deserialize_with = "wire::integer")]
    pub old_unit_price: Option<i64>,
    #[serde(deserialize_with = "wire::text")]
    pub old_currency: Option<String>,
    #[serde(deserialize_with = "wire::integer")]
    pub seq: Option<i64>,
    #[serde(deserialize_with = "wire::integer")]
    pub at: Option<i64>,
}

/// `product.stock.updated`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ProductStockUpdatedBody {
    #[serde(deserialize_with = "wire::text")]
    pub item: Option<String>,
    #[serde(deserialize_with = "wire::integer")]
    pub stock: Option<i64>,
    #[serde(deserialize_with = "wire::integer")]
    pub previous: Option<i64>,
    #[serde(deserialize_with = "wire::integer")]
    pub seq: Option<i64>,
    #[serde(deserialize_with = "wire::integer")]
    pub at: Option<i64>,
}

/// `product.stock.low`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ProductStockLowBody {
    #[serde(deserialize_with = "wire::text")]
    pub item: Option<String>,
    #[serde(deserialize_with = "wire::integer")]
    pub stock: Option<i64>,
    #[serde(deserialize_with = "wire::integer")]
    pub threshold: Option<i64>,
    #[serde(deserialize_with = "wire::integer")]
    pub seq: Option<i64>,
    #[serde(deserialize_with = "wire::integer")]
    pub at: Option<i64>,
}

/// `product.stock.out`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ProductStockOutBody {
    #[serde(deserialize_with = "wire::text")]
    pub item: Option<String>,
    #[serde(deserialize_with = "wire::integer")]
    pub seq: Option<i64>,
    #[serde(deserialize_with = "wire::integer")]
    pub at: Option<i64>,
}

// --- bodies into domain types -----------------------------------------------------------------

/// A required integer that must not be negative (`seq`, `at`, `stock`, `previous`).
fn non_negative(value: Option<i64>, field: &str) -> Result<i64, Malformed> {
    let value = required(value, field)?;
    if value < 0 {
        return Err(Malformed(format!(
            "{field} must not be negative, got {value}"
        )));
    }
    Ok(value)
}

/// The fields every product event has: its item, `seq` and `at`.
fn header(
    item: Option<String>,
    seq: Option<i64>,
    at: Option<i64>,
    change: ProductChange,
) -> Result<ProductEvent, Malformed> {
    Ok(ProductEvent {
        item: Item::parse(&required(item, "item")?)?,
        seq: non_negative(seq, "seq")? as u64,
        at: non_negative(at, "at")? as u64,
        change,
    })
}

fn name(raw: Option<String>) -> Result<ProductName, Malformed> {
    Ok(ProductName::parse(&required(raw, "name")?)?)
}

fn price(
    amount: Option<i64>,
    currency: Option<String>,
    amount_field: &str,
    currency_field: &str,
) -> Result<Price, Malformed> {
    let amount = required(amount, amount_field)?;
    let currency = Currency::parse(&required(currency, currency_field)?)?;
    Price::new(amount, currency).map_err(|e| Malformed(e.0.replacen("unit_price", amount_field, 1)))
}

impl TryFrom<ProductSnapshotBody> for ProductEvent {
    type Error = Malformed;

    fn try_from(b: ProductSnapshotBody) -> Result<Self, Malformed> {
        let change = ProductChange::Snapshot {
            name: name(b.name)?,
            price: price(b.unit_price, b.currency, "unit_price", "currency")?,
            stock: non_negative(b.stock, "stock")?,
            low_threshold: low_threshold(required(b.low_threshold, "low_threshold")?)?,
        };
        header(b.item, b.seq, b.at, change)
    }
}

impl TryFrom<ProductPriceChangedBody> for ProductEvent {
    type Error = Malformed;

    fn try_from(b: ProductPriceChangedBody) -> Result<Self, Malformed> {
        let change = ProductChange::PriceChanged {
            name: name(b.name)?,
            new: price(b.unit_price, b.currency, "unit_price", "currency")?,
            old: price(
                b.old_unit_price,
                b.old_currency,
                "old_unit_price",
                "old_currency",
            )?,
        };
        header(b.item, b.seq, b.at, change)
    }
}

impl TryFrom<ProductStockUpdatedBody> for ProductEvent {
    type Error = Malformed;

    fn try_from(b: ProductStockUpdatedBody) -> Result<Self, Malformed> {
        let change = ProductChange::StockUpdated {
            stock: non_negative(b.stock, "stock")?,
            previous: non_negative(b.previous, "previous")?,
        };
        header(b.item, b.seq, b.at, change)
    }
}

impl TryFrom<ProductStockLowBody> for ProductEvent {
    type Error = Malformed;

    fn try_from(b: ProductStockLowBody) -> Result<Self, Malformed> {
        let change = ProductChange::StockLow {
            stock: non_negative(b.stock, "stock")?,
            threshold: low_threshold(required(b.threshold, "threshold")?)
                .map_err(|e| Malformed(e.0.replacen("low_threshold", "threshold", 1)))?,
        };
        header(b.item, b.seq, b.at, change)
    }
}

impl TryFrom<ProductStockOutBody> for ProductEvent {
    type Error = Malformed;

    fn try_from(b: ProductStockOutBody) -> Result<Self, Malformed> {
        header(b.item, b.seq, b.at, ProductChange::StockOut)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn eur(amount: i64) -> Price {
        Price::new(amount, Currency::parse("EUR").unwrap()).unwrap()
    }

    fn event(change: ProductChange) -> ProductEvent {
        ProductEvent {
            item: Item::parse("burger").unwrap(),
            seq: 7,
            at: 1_764_892_800_123,
            change,
        }
    }

    fn every_change() -> Vec<ProductChange> {
        let name = ProductName::parse("Burger").unwrap();
        vec![
            ProductChange::Snapshot {
                name: name.clone(),
                price: eur(899),
                stock: 100,
                low_threshold: 10,
            },
            ProductChange::PriceChanged {
                name,
                old: eur(899),
                new: eur(950),
            },
            ProductChange::StockUpdated {
                stock: 9,
                previous: 10,
            },
            ProductChange::StockLow {
                stock: 9,
                threshold: 10,
            },
            ProductChange::StockOut,
        ]
    }

    #[test]
    fn every_product_event_round_trips() {
        for change in every_change() {
            let e = event(change);
            let back = ProductEvent::from_body(e.event_type(), &e.to_body()).unwrap();
            assert_eq!(back, e);
        }
    }

    #[test]
    fn bodies_are_flat_and_carry_seq_and_at() {
        let json_of = |c| serde_json::from_slice::<Value>(&event(c).to_body()).unwrap();
        let changes = every_change();
        assert_eq!(
            json_of(changes[1].clone()),
            json!({"item": "burger", "name": "Burger", "unit_price": 950, "currency": "EUR",
                   "old_unit_price": 899, "old_currency": "EUR", "seq": 7, "at": 1_764_892_800_123_u64})
        );
        assert_eq!(
            json_of(ProductChange::StockOut),
            json!({"item": "burger", "seq": 7, "at": 1_764_892_800_123_u64})
        );
    }

    #[test]
    fn reasons_name_their_field() {
        let reason = |kind, body: Value| {
            ProductEvent::from_body(kind, body.to_string().as_bytes())
                .unwrap_err()
                .0
        };
        let snapshot = json!({"item": "burger", "name": "Burger", "unit_price": 899,
                              "currency": "EUR", "stock": 3, "low_threshold": 1, "seq": 1, "at": 1});
        let with = |field: &str, value: Value| {
            let mut body = snapshot.clone();
            body[field] = value;
            body
        };
        assert_eq!(
            reason(EventType::ProductSnapshot, with("unit_price", json!(-1))),
            "unit_price must be 0..=100000000 (minor units), got -1"
        );
        assert_eq!(
            reason(EventType::ProductSnapshot, with("unit_price", json!(8.99))),
            "unit_price must be an integer, got 8.99"
        );
        assert!(
            reason(EventType::ProductSnapshot, with("currency", json!("eur")))
                .contains("three capital letters")
        );
        assert_eq!(
            reason(EventType::ProductSnapshot, with("seq", Value::Null)),
            "missing required field seq"
        );
        assert_eq!(
            reason(EventType::ProductSnapshot, with("stock", json!(-2))),
            "stock must not be negative, got -2"
        );
        assert_eq!(
            reason(EventType::ProductSnapshot, with("item", json!("a:b"))),
            "item contains ':'"
        );
        assert_eq!(
            reason(
                EventType::ProductPriceChanged,
                json!({"item": "burger", "name": "B", "unit_price": 1, "currency": "EUR",
                       "old_unit_price": -5, "old_currency": "EUR", "seq": 1, "at": 1})
            ),
            "old_unit_price must be 0..=100000000 (minor units), got -5"
        );
        assert_eq!(
            reason(EventType::OrderPlaced, snapshot),
            "OrderPlaced is not a product event"
        );
    }

    #[test]
    fn currencies_names_and_prices() {
        assert!(Currency::parse("EUR").is_ok());
        for bad in ["eur", "EU", "EURO", "E1R", "", "ÉUR"] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
        assert!(ProductName::parse("Crème brûlée").is_ok());
        assert!(ProductName::parse("  ").is_err());
        assert!(ProductName::parse("a\nb").is_err());
        assert!(ProductName::parse(&"n".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert_eq!(eur(899).to_string(), "8.99 EUR");
        assert_eq!(eur(5).to_string(), "0.05 EUR");
        let usd = Currency::parse("USD").unwrap();
        assert!(Price::new(MAX_UNIT_PRICE + 1, usd.clone()).is_err());
        assert!(Price::new(0, usd).is_ok());
        assert_eq!(low_threshold(0), Ok(0));
        assert!(low_threshold(-1).is_err());
    }

    /// Every cell that matters, threshold 10: where the change starts and where it ends.
    #[test]
    fn stock_signals_cell_by_cell() {
        use StockSignal::{Low, Out, Updated};
        let cases: &[(i64, i64, u32, &[StockSignal])] = &[
            // No change: nothing at all.
            (10, 10, 10, &[]),
            (0, 0, 10, &[]),
            // Above the threshold, staying at or above it.
            (50, 11, 10, &[Updated]),
            (50, 10, 10, &[Updated]),
            // Crossing downwards: from at or above to below.
            (11, 9, 10, &[Updated, Low]),
            (10, 9, 10, &[Updated, Low]),
            // Already below: no second Low.
            (9, 8, 10, &[Updated]),
            // To zero: Out, and Low too if it started at or above the threshold.
            (1, 0, 10, &[Updated, Out]),
            (10, 0, 10, &[Updated, Low, Out]),
            (100, 0, 10, &[Updated, Low, Out]),
            // Back up (a release, a restock): never Low, never Out.
            (0, 5, 10, &[Updated]),
            (9, 20, 10, &[Updated]),
            // A threshold of 0 is never crossed; reaching 0 is still Out.
            (5, 0, 0, &[Updated, Out]),
            (5, 1, 0, &[Updated]),
            // A threshold of 1 is crossed exactly when the stock runs out.
            (1, 0, 1, &[Updated, Low, Out]),
        ];
        for (before, after, threshold, want) in cases {
            assert_eq!(
                stock_events(*before, *after, *threshold),
                *want,
                "{before} -> {after}, threshold {threshold}"
            );
        }
    }

    #[test]
    fn derived_ids_are_uuids_the_same_for_the_same_cause() {
        let burger = Item::parse("burger").unwrap();
        let pizza = Item::parse("pizza").unwrap();
        let id = derived_event_id("e-1", &burger, EventType::ProductStockLow);
        assert!(uuid::Uuid::parse_str(&id).is_ok());
        assert_eq!(
            id,
            derived_event_id("e-1", &burger, EventType::ProductStockLow)
        );
        for other in [
            derived_event_id("e-2", &burger, EventType::ProductStockLow),
            derived_event_id("e-1", &pizza, EventType::ProductStockLow),
            derived_event_id("e-1", &burger, EventType::ProductStockOut),
        ] {
            assert_ne!(id, other);
        }
    }
}
