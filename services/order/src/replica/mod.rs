//! order-svc's replica of the catalog: what inventory-svc's product events said, kept in Redis
//! keys of order-svc's own (`{prefix}:replica:product:<item>`), so a restart keeps it.
//!
//! - this module: [`Replica`]: apply an event (`lua/replica_apply.lua`: only if it is newer than
//!   what is held, by the product's `seq`), list the products with their age, and
//!   [`Replica::lookup`] the name and price of items for an order.
//! - [`consumer`]: the handler of `order_catalog_queue`, fed only by those events.
//! - [`prices`]: the names and prices orders copy, held in memory for a moment and forgotten
//!   when this process applies a change to them.
//! - [`coalesce`]: stock updates of one item that arrive together are written once, by the
//!   newest (a group commit: only the newest stock is kept anyway).
//!
//! The replica informs, inventory decides: an item the replica does not know is still an item
//! inventory may know (it is the one that says `unknown_item`).

pub mod coalesce;
pub mod consumer;
pub mod prices;

use std::collections::HashMap;
use std::sync::Arc;

use redis::Script;
use saga_domain::events::unix_now_millis;
use saga_domain::ids::Item;
use saga_domain::lines::Lines;
pub use saga_domain::product::Priced;
use saga_domain::product::{Currency, Price, ProductChange, ProductEvent, ProductName};
use saga_platform::redis::store::{Keys, Redis};
use serde::Serialize;
use utoipa::ToSchema;

use self::prices::PriceCache;

/// One product as order-svc's `GET /products` shows it. A part inventory has not told yet (an
/// item only seen in a stock event has no name or price) is `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ReplicaListing {
    #[schema(value_type = Item)]
    pub item: String,
    /// What the menu calls it.
    pub name: Option<String>,
    /// The price of one unit, in minor units of `currency` (`899` is 8.99).
    pub unit_price: Option<i64>,
    /// ISO 4217 (`EUR`).
    pub currency: Option<String>,
    /// Below this many units the product is low on stock (0: never).
    pub low_threshold: Option<i64>,
    /// Units available, as inventory last said.
    pub stock: Option<i64>,
    /// Below its threshold.
    pub low: bool,
    /// No stock left.
    pub out: bool,
    /// How old the newest information held is: ms since inventory said it.
    pub age_ms: Option<u64>,
    /// When inventory said the name and price (ms since the Unix epoch).
    pub info_at: Option<u64>,
    /// When inventory said the stock (ms since the Unix epoch).
    pub stock_at: Option<u64>,
    /// The `seq` of the name and price held.
    pub info_seq: Option<u64>,
    /// The `seq` of the stock held.
    pub stock_seq: Option<u64>,
    /// When the replica last changed this entry (ms since the Unix epoch).
    pub updated_at: Option<u64>,
}

impl ReplicaListing {
    fn new(item: String, fields: &HashMap<String, String>, now: u64) -> Self {
        let text = |name: &str| fields.get(name).filter(|v| !v.is_empty()).cloned();
        let number = |name: &str| text(name).and_then(|v| v.parse::<i64>().ok());
        let time = |name: &str| text(name).and_then(|v| v.parse::<u64>().ok());
        let stock = number("stock");
        let low_threshold = number("low_threshold");
        let (info_at, stock_at) = (time("info_at"), time("stock_at"));
        let newest = info_at.max(stock_at);
        Self {
            item,
            name: text("name"),
            unit_price: number("unit_price"),
            currency: text("currency"),
            low_threshold,
            low: matches!((stock, low_threshold), (Some(s), Some(t)) if s < t),
            out: stock.is_some_and(|s| s <= 0),
            stock,
            age_ms: newest.map(|at| now.saturating_sub(at)),
            info_at,
            stock_at,
            info_seq: time("info_seq"),
            stock_seq: time("stock_seq"),
            updated_at: time("updated_at"),
        }
    }

    /// The name and price, when the replica holds a usable pair.
    fn priced(&self) -> Option<Priced> {
        let name = ProductName::parse(self.name.as_deref()?).ok()?;
        let currency = Currency::parse(self.currency.as_deref()?).ok()?;
        let price = Price::new(self.unit_price?, currency).ok()?;
        Some(Priced { name, price })
    }
}

/// The replica in Redis.
#[derive(Clone)]
pub struct Replica {
    redis: Redis,
    keys: Keys,
    /// Shared: warp clones the replica for every request.
    apply: Arc<Script>,
    prices: Arc<PriceCache>,
}

impl Replica {
    pub fn new(redis: Redis, keys: Keys) -> Self {
        Self {
            redis,
            keys,
            apply: Arc::new(Script::new(include_str!("../lua/replica_apply.lua"))),
            prices: Arc::default(),
        }
    }

    /// Apply an event if it is newer than what the replica holds. Whether anything changed
    /// (`false`: older or the same as what is held, or an alert that changes no state:
    /// `product.stock.low` and `.out` are shown from the stock and threshold held).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn apply(&self, event: &ProductEvent) -> Result<bool, redis::RedisError> {
        let (kind, name, price, threshold, stock) = match &event.change {
            ProductChange::Snapshot {
                name,
                price,
                stock,
                low_threshold,
            } => (
                "snapshot",
                Some(name),
                Some(price),
                Some(*low_threshold),
                Some(*stock),
            ),
            ProductChange::PriceChanged { name, new, .. } => {
                ("price", Some(name), Some(new), None, None)
            }
            ProductChange::StockUpdated { stock, .. } => ("stock", None, None, None, Some(*stock)),
            ProductChange::StockLow { .. } | ProductChange::StockOut => return Ok(false),
        };
        let text = |v: Option<String>| v.unwrap_or_default();
        let changed: i64 = self
            .apply
            .key(self.keys.replica_product(event.item.as_str()))
            .key(self.keys.replica_products())
            .arg(kind)
            .arg(event.item.as_str())
            .arg(event.seq)
            .arg(event.at)
            .arg(unix_now_millis())
            .arg(text(name.map(ToString::to_string)))
            .arg(text(price.map(|p| p.amount_minor().to_string())))
            .arg(text(price.map(|p| p.currency().to_string())))
            .arg(text(threshold.map(|t| t.to_string())))
            .arg(text(stock.map(|s| s.to_string())))
            .invoke_async(&mut self.redis.clone())
            .await?;
        if changed == 1 && name.is_some() {
            self.prices.forget(&event.item);
        }
        Ok(changed == 1)
    }

    /// Every product the replica knows, by item, with how old its information is.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn list(&self) -> Result<Vec<ReplicaListing>, redis::RedisError> {
        let mut conn = self.redis.clone();
        let mut items: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.replica_products())
            .query_async(&mut conn)
            .await?;
        items.sort();
        let items: Vec<Item> = items.iter().filter_map(|i| Item::parse(i).ok()).collect();
        self.listings(&items).await
    }

    /// The name and unit price the replica holds for each item (`None`: not known, or known
    /// only from its stock), in the order asked: what an order's lines copy when it is placed.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn lookup(
        &self,
        items: &[Item],
    ) -> Result<Vec<(Item, Option<Priced>)>, redis::RedisError> {
        let listings = self.listings(items).await?;
        Ok(items
            .iter()
            .cloned()
            .zip(listings.iter().map(ReplicaListing::priced))
            .collect())
    }

    /// The same lines, each with the name and unit price the replica holds for its item (or
    /// none: an item it does not know keeps an unknown price). Read through [`PriceCache`]:
    /// Redis is asked only for what it does not hold fresh.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn price(&self, lines: Lines) -> Result<Lines, redis::RedisError> {
        let items: Vec<Item> = lines.iter().map(|l| l.item.clone()).collect();
        let held = self.prices.get(&items);
        let mut known: HashMap<Item, Priced> = HashMap::new();
        let mut missing = Vec::new();
        for (item, priced) in items.into_iter().zip(held.prices) {
            match priced {
                Some(priced) => {
                    known.insert(item, priced);
                }
                None => missing.push(item),
            }
        }
        if !missing.is_empty() {
            let read: Vec<(Item, Priced)> = self
                .lookup(&missing)
                .await?
                .into_iter()
                .filter_map(|(item, priced)| Some((item, priced?)))
                .collect();
            self.prices.keep(held.generation, read.iter().cloned());
            known.extend(read);
        }
        Ok(lines.priced_by(|item| known.get(item).cloned()))
    }

    async fn listings(&self, items: &[Item]) -> Result<Vec<ReplicaListing>, redis::RedisError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for item in items {
            pipe.hgetall(self.keys.replica_product(item.as_str()));
        }
        let hashes: Vec<HashMap<String, String>> =
            pipe.query_async(&mut self.redis.clone()).await?;
        let now = unix_now_millis();
        Ok(items
            .iter()
            .zip(hashes)
            .map(|(item, fields)| ReplicaListing::new(item.to_string(), &fields, now))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_listing_shows_markers_and_age() {
        let held = fields(&[
            ("name", "Burger"),
            ("unit_price", "899"),
            ("currency", "EUR"),
            ("low_threshold", "10"),
            ("stock", "9"),
            ("info_at", "1000"),
            ("stock_at", "1500"),
        ]);
        let listing = ReplicaListing::new("burger".into(), &held, 2_000);
        assert!(listing.low && !listing.out);
        assert_eq!(listing.age_ms, Some(500), "the newest information counts");
        let priced = listing.priced().unwrap();
        assert_eq!(priced.price.to_string(), "8.99 EUR");
        assert_eq!(priced.name.as_str(), "Burger");
    }

    #[test]
    fn an_item_known_only_by_its_stock_has_no_price() {
        let held = fields(&[("stock", "0"), ("stock_at", "5")]);
        let listing = ReplicaListing::new("widget".into(), &held, 10);
        assert!(listing.out && !listing.low, "no threshold known");
        assert_eq!(listing.priced(), None);
        let nothing = ReplicaListing::new("caviar".into(), &HashMap::new(), 10);
        assert_eq!((nothing.age_ms, nothing.priced()), (None, None));
    }
}
