//! The names and prices `POST /order` copies into an order's lines, kept in memory for a moment,
//! so that placing an order does not read Redis for a price that has not changed.
//!
//! Prices change rarely and orders arrive often, so [`PriceCache`] holds each product's name and
//! price for [`FRESH_FOR`] after it was read. Two rules keep it from ever serving a price older
//! than the replica's:
//!
//! - **The writer forgets.** When this process applies a snapshot or a price change to the
//!   replica, it forgets that product as soon as Redis answers ([`PriceCache::forget`]), so the
//!   next order reads the new price from Redis. The catalog consumer runs in the same process as
//!   the API; only an order placed in the microseconds between Redis applying the change and
//!   the consumer hearing back can still get the old price, as it would a moment earlier.
//! - **A read that raced a change is not kept.** A read from Redis that began before a
//!   `forget` may have seen the old price; [`PriceCache::keep`] drops it (the generation moved).
//!
//! [`FRESH_FOR`] bounds the rest: a replica changed by someone else (another order-svc sharing
//! the keys, a hand edit) is seen within a second. Only known products are kept, so items
//! nobody sells cannot fill it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use saga_domain::ids::Item;
use saga_domain::product::Priced;

/// How long a price read from the replica is used without reading it again.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

/// At most this many products are kept (a catalog is a menu, not a warehouse).
const CAPACITY: usize = 10_000;

#[derive(Default)]
pub struct PriceCache {
    inner: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    /// Moves on every [`PriceCache::forget`].
    generation: u64,
    prices: HashMap<Item, (Priced, Instant)>,
}

/// What the cache answered for some items: a price for each item it holds fresh, and the
/// generation to hand back to [`PriceCache::keep`] with what is read for the others.
pub struct Answer {
    pub prices: Vec<Option<Priced>>,
    pub generation: u64,
}

impl PriceCache {
    /// The fresh prices held for `items`, in the order asked.
    pub fn get(&self, items: &[Item]) -> Answer {
        let held = self.lock();
        let now = Instant::now();
        Answer {
            prices: items
                .iter()
                .map(|item| {
                    held.prices
                        .get(item)
                        .filter(|(_, read)| now.duration_since(*read) < FRESH_FOR)
                        .map(|(priced, _)| priced.clone())
                })
                .collect(),
            generation: held.generation,
        }
    }

    /// Keep prices read from Redis, unless a change was applied since `generation` was given
    /// (the read may have seen the price before it).
    pub fn keep(&self, generation: u64, read: impl IntoIterator<Item = (Item, Priced)>) {
        let mut held = self.lock();
        if held.generation != generation {
            return;
        }
        let now = Instant::now();
        held.prices
            .retain(|_, (_, at)| now.duration_since(*at) < FRESH_FOR);
        for (item, priced) in read {
            if held.prices.len() >= CAPACITY {
                break;
            }
            held.prices.insert(item, (priced, now));
        }
    }

    /// The product's name or price changed in the replica: read it afresh next time.
    pub fn forget(&self, item: &Item) {
        let mut held = self.lock();
        held.generation += 1;
        held.prices.remove(item);
    }

    fn lock(&self) -> MutexGuard<'_, Held> {
        // Every change is one step (a counter, a map), so a panic elsewhere leaves it whole.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use saga_domain::product::{Currency, Price, ProductName};

    use super::*;

    fn burger(cents: i64) -> (Item, Priced) {
        let price = Price::new(cents, Currency::parse("EUR").unwrap()).unwrap();
        let name = ProductName::parse("Burger").unwrap();
        (Item::parse("burger").unwrap(), Priced { name, price })
    }

    #[test]
    fn a_price_read_is_served_until_forgotten() {
        let cache = PriceCache::default();
        let items = [burger(0).0, Item::parse("caviar").unwrap()];
        let before = cache.get(&items);
        assert_eq!(before.prices, [None, None]);
        cache.keep(before.generation, [burger(899)]);
        assert_eq!(cache.get(&items).prices, [Some(burger(899).1), None]);
        cache.forget(&items[0]);
        assert_eq!(cache.get(&items).prices, [None, None]);
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_kept() {
        let cache = PriceCache::default();
        let asked = cache.get(&[burger(0).0]);
        // The price changes while the read is on its way to Redis.
        cache.forget(&burger(0).0);
        cache.keep(asked.generation, [burger(899)]);
        assert_eq!(
            cache.get(&[burger(0).0]).prices,
            [None],
            "the old price is dropped"
        );
    }
}
