//! The catalog inventory-svc owns: products (name, unit price in minor units, currency, low-stock
//! threshold) in Redis, and the product events that tell everyone else about them.
//!
//! - this module: [`Catalog`], the products in Redis: seeding, listing, changing, announcing.
//!   Every change is written in one Lua script together with what it announces, as an entry of
//!   the catalog's outbox (`{prefix}:catalog:outbox`); nothing is published from here.
//! - [`outbox`]: an outbox entry as the product events it stands for (a stock change becomes
//!   `updated`, and `low` or `out` when it crossed them).
//! - [`relay`]: publishes the outbox with confirms and deletes an entry only once confirmed.
//! - [`signals`]: the stock events of a reservation or a release, which the consume loop
//!   publishes with the order's outcome, before it acks.
//! - [`http`]: `GET /products`, `PUT /products/{item}`, `POST /products/announce`.
//!
//! **Re-sending.** Every start writes a snapshot of every product into the outbox, and so does
//! `POST /products/announce`: whoever missed an event gets the state it led to.
//!
//! **Where a stock event's stock comes from.** Each stock event carries the product's `seq` and
//! its stock as one consistent pair, so a replica that keeps the highest `seq` ends with the
//! latest stock, however concurrent orders interleave. A reservation made now reads the pair in
//! its own atomic step (`lua/reserve.lua`, given the products' keys: the stock it left, exactly);
//! a release and a duplicate's re-announcement read it right after, in one more atomic step
//! (`lua/stock_reading.lua`, [`crate::stock::RedisLedger::read_stock`]). The *crossings* (low,
//! out) come from the change's own before and after, which the ledger reports exactly.

pub mod http;
pub mod outbox;
pub mod relay;
pub mod signals;

use std::sync::Arc;

use redis::Script;
use saga_domain::events::unix_now_millis;
use saga_domain::ids::Item;
use saga_domain::product::{Currency, MAX_UNIT_PRICE};
use saga_platform::redis::store::{Keys, Redis};
use serde::Serialize;
use tokio::sync::Notify;
use utoipa::ToSchema;

use crate::stock::StockList;

/// The catalog's settings: what the seeded products cost and when they run low.
#[derive(clap::Args, Debug, Clone)]
pub struct CatalogArgs {
    /// Currency of the seeded prices, and of a product added without one (ISO 4217).
    #[arg(long, env = "CATALOG_CURRENCY", default_value = "EUR",
          value_parser = |s: &str| Currency::parse(s).map_err(|e| e.0))]
    pub catalog_currency: Currency,

    /// Unit prices of the seeded products, in minor units (`burger=899` is 8.99): each item of
    /// INITIAL_STOCK with a price here becomes a product, named after the item, when it is not
    /// one yet (restarts keep products). Others become products through PUT /products/{item}.
    #[arg(long, env = "CATALOG_PRICES", default_value = "burger=899,pizza=1250,sushi=1590,salad=750",
          value_parser = parse_price_list)]
    pub catalog_prices: PriceList,

    /// A seeded product's low-stock threshold, as a percentage of its starting stock (rounded
    /// up); also the default of a product added over HTTP, of its stock then.
    #[arg(long, env = "CATALOG_LOW_PERCENT", default_value_t = 10,
          value_parser = clap::value_parser!(u8).range(0..=100))]
    pub catalog_low_percent: u8,
}

/// Items with their unit prices in minor units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceList(pub Vec<(Item, i64)>);

/// Parse `burger=899,pizza=1250`.
///
/// # Errors
/// A malformed pair, a bad item, or a price that is not 0..=MAX_UNIT_PRICE.
pub fn parse_price_list(s: &str) -> Result<PriceList, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let (item, price) = pair
                .split_once('=')
                .ok_or_else(|| format!("expected item=price, got {pair:?}"))?;
            let item = Item::parse(item.trim()).map_err(|e| e.0)?;
            let price = price
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|p| (0..=MAX_UNIT_PRICE).contains(p))
                .ok_or_else(|| {
                    format!("bad price in {pair:?}: minor units, 0..={MAX_UNIT_PRICE}")
                })?;
            Ok((item, price))
        })
        .collect::<Result<_, _>>()
        .map(PriceList)
}

/// One product as `GET /products` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Listing {
    #[schema(value_type = Item)]
    pub item: String,
    /// What the menu calls it.
    pub name: String,
    /// The price of one unit, in minor units of `currency` (`899` is 8.99).
    pub unit_price: i64,
    /// ISO 4217 (`EUR`).
    pub currency: String,
    /// Below this many units the product is low on stock (0: never).
    pub low_threshold: i64,
    /// Units available.
    pub stock: i64,
    /// Below its threshold.
    pub low: bool,
    /// No stock left.
    pub out: bool,
    /// The product's counter: the `seq` of the last event made about it.
    pub seq: i64,
}

impl Listing {
    fn new(item: String, fields: &Fields, stock: i64) -> Self {
        let number = |name: &str| fields.number(name);
        let low_threshold = number("low_threshold");
        Self {
            item,
            name: fields.text("name"),
            unit_price: number("unit_price"),
            currency: fields.text("currency"),
            low_threshold,
            stock,
            low: stock < low_threshold,
            out: stock <= 0,
            seq: number("seq"),
        }
    }
}

/// A product's hash as Redis returns it.
struct Fields(std::collections::HashMap<String, String>);

impl Fields {
    fn text(&self, name: &str) -> String {
        self.0.get(name).cloned().unwrap_or_default()
    }
    fn number(&self, name: &str) -> i64 {
        self.0.get(name).and_then(|v| v.parse().ok()).unwrap_or(0)
    }
}

/// What a caller asked to change about a product; `None` keeps what it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductUpdate {
    pub name: Option<saga_domain::product::ProductName>,
    pub unit_price: Option<i64>,
    pub currency: Option<Currency>,
    pub low_threshold: Option<u32>,
}

/// What became of an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Updated {
    /// Written, with its events in the outbox; `added` when the item was no product before.
    Written { listing: Listing, added: bool },
    /// It already was so: nothing written, nothing announced.
    Unchanged(Listing),
    /// The item is no product yet, and the update lacks a name or a unit price to add it.
    Incomplete,
}

/// The catalog in Redis.
#[derive(Clone)]
pub struct Catalog {
    redis: Redis,
    keys: Keys,
    args: Arc<CatalogArgs>,
    /// Rung when something was written into the outbox: the relay looks at once.
    written: Arc<Notify>,
    seed: Script,
    update: Script,
    announce: Script,
}

impl Catalog {
    pub fn new(redis: Redis, keys: Keys, args: CatalogArgs) -> Self {
        Self {
            redis,
            keys,
            args: Arc::new(args),
            written: Arc::new(Notify::new()),
            seed: Script::new(include_str!("../lua/product_seed.lua")),
            update: Script::new(include_str!("../lua/product_update.lua")),
            announce: Script::new(include_str!("../lua/catalog_announce.lua")),
        }
    }

    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Tell the relay that the outbox has something new (after a write that made events).
    pub fn wake_relay(&self) {
        self.written.notify_one();
    }

    /// Make every item of `stock` with a price in `CATALOG_PRICES` a product, if it is not one
    /// yet (named after the item, its threshold `CATALOG_LOW_PERCENT` of its starting stock).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn seed(&self, stock: &StockList) -> Result<usize, redis::RedisError> {
        let mut invocation = self.seed.key(self.keys.products());
        let mut any = false;
        for (item, units) in &stock.0 {
            let Some((_, price)) = self.args.catalog_prices.0.iter().find(|(i, _)| i == item)
            else {
                continue;
            };
            let threshold =
                (u64::from(*units) * u64::from(self.args.catalog_low_percent)).div_ceil(100);
            invocation
                .key(self.keys.product(item.as_str()))
                .arg(item.as_str())
                .arg(seeded_name(item))
                .arg(*price)
                .arg(self.args.catalog_currency.as_str())
                .arg(threshold);
            any = true;
        }
        if !any {
            return Ok(0);
        }
        invocation.invoke_async(&mut self.redis.clone()).await
    }

    /// Write a snapshot of every product into the outbox (each a consistent reading with a
    /// fresh `seq`). How many products were announced.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn announce(&self) -> Result<usize, redis::RedisError> {
        let mut conn = self.redis.clone();
        let mut items: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.products())
            .query_async(&mut conn)
            .await?;
        items.sort();
        let mut invocation = self.announce.key(self.keys.stock());
        invocation
            .key(self.keys.catalog_outbox())
            .arg(unix_now_millis())
            .arg(uuid::Uuid::new_v4().to_string());
        for item in &items {
            invocation.key(self.keys.product(item)).arg(item);
        }
        let announced: usize = invocation.invoke_async(&mut conn).await?;
        self.wake_relay();
        Ok(announced)
    }

    /// Change or add a product, with its events into the outbox in the same step.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn update(
        &self,
        item: &Item,
        update: &ProductUpdate,
    ) -> Result<Updated, redis::RedisError> {
        let text = |v: Option<String>| v.unwrap_or_default();
        let reply: Vec<String> = self
            .update
            .key(self.keys.product(item.as_str()))
            .key(self.keys.products())
            .key(self.keys.stock())
            .key(self.keys.catalog_outbox())
            .arg(item.as_str())
            .arg(text(update.name.as_ref().map(ToString::to_string)))
            .arg(text(update.unit_price.map(|p| p.to_string())))
            .arg(text(update.currency.as_ref().map(ToString::to_string)))
            .arg(text(update.low_threshold.map(|t| t.to_string())))
            .arg(unix_now_millis())
            .arg(uuid::Uuid::new_v4().to_string())
            .arg(self.args.catalog_currency.as_str())
            .arg(self.args.catalog_low_percent)
            .invoke_async(&mut self.redis.clone())
            .await?;
        let [
            verdict,
            name,
            unit_price,
            currency,
            low_threshold,
            stock,
            seq,
        ] = reply.as_slice()
        else {
            return Ok(Updated::Incomplete);
        };
        let fields = Fields(
            [
                ("name", name),
                ("unit_price", unit_price),
                ("currency", currency),
                ("low_threshold", low_threshold),
                ("seq", seq),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect(),
        );
        let listing = Listing::new(item.to_string(), &fields, stock.parse().unwrap_or(0));
        Ok(match verdict.as_str() {
            "unchanged" => Updated::Unchanged(listing),
            verdict => {
                self.wake_relay();
                Updated::Written {
                    listing,
                    added: verdict == "added",
                }
            }
        })
    }

    /// Every product with its stock, by item.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn list(&self) -> Result<Vec<Listing>, redis::RedisError> {
        let mut conn = self.redis.clone();
        let mut items: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.products())
            .query_async(&mut conn)
            .await?;
        items.sort();
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for item in &items {
            pipe.hgetall(self.keys.product(item))
                .hget(self.keys.stock(), item);
        }
        type Reply = (std::collections::HashMap<String, String>, Option<i64>);
        let replies: Vec<Reply> = pipe.query_async(&mut conn).await?;
        Ok(items
            .into_iter()
            .zip(replies)
            .filter(|(_, (fields, _))| fields.contains_key("name"))
            .map(|(item, (fields, stock))| Listing::new(item, &Fields(fields), stock.unwrap_or(0)))
            .collect())
    }

    /// Tell the relay to look at the outbox now, and let it wait for this when idle.
    pub(crate) fn written(&self) -> Arc<Notify> {
        self.written.clone()
    }
}

/// A seeded product's name: its item, capitalised (`burger` → `Burger`).
fn seeded_name(item: &Item) -> String {
    let mut chars = item.as_str().chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_lists() {
        let list = parse_price_list("burger=899, pizza=1250").unwrap().0;
        assert_eq!(list[1], (Item::parse("pizza").unwrap(), 1250));
        assert!(parse_price_list("burger").is_err());
        assert!(parse_price_list("burger=8.99").is_err());
        assert!(parse_price_list("burger=-1").is_err());
        assert!(parse_price_list(&format!("burger={}", MAX_UNIT_PRICE + 1)).is_err());
        assert_eq!(parse_price_list("").unwrap().0, []);
    }

    #[test]
    fn seeded_names_are_capitalised_items() {
        assert_eq!(seeded_name(&Item::parse("burger").unwrap()), "Burger");
        assert_eq!(seeded_name(&Item::parse("égg roll").unwrap()), "Égg roll");
    }
}
