//! An entry of the catalog's outbox as the product events it stands for.
//!
//! The Lua scripts that change the catalog or the stock by hand write *what happened* (a
//! snapshot, a price change, a stock change from `before` to `after`) as flat stream fields;
//! [`events_of`] turns an entry into its events, each with an id derived from the entry's
//! `cause` (a UUID the writer drew), so an entry published twice (a crash between the confirm
//! and the delete) goes out with the same ids. The crossing rule lives once, in
//! [`saga_domain::product::stock_events`].

use std::collections::HashMap;

use saga_domain::events::EventType;
use saga_domain::ids::Item;
use saga_domain::product::{
    Currency, Price, ProductChange, ProductEvent, ProductName, StockSignal, derived_event_id,
    low_threshold, stock_events,
};

/// An outbox entry's fields, as Redis returns them.
pub type Fields = HashMap<String, String>;

/// One event to publish: its id and the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub event_id: String,
    pub event: ProductEvent,
}

/// The events an outbox entry stands for, in the order to publish them.
///
/// # Errors
/// Why the entry cannot be read (a field missing or unusable): nobody but our scripts writes
/// the outbox, so only a hand-made entry gets here.
pub fn events_of(fields: &Fields) -> Result<Vec<Outgoing>, String> {
    let entry = Entry(fields);
    let item = Item::parse(&entry.text("item")?).map_err(|e| e.0)?;
    let seq = u64::try_from(entry.number("seq")?).map_err(|_| "seq is negative".to_owned())?;
    let at = u64::try_from(entry.number("at")?).map_err(|_| "at is negative".to_owned())?;
    let cause = entry.text("cause")?;
    let changes = match entry.text("kind")?.as_str() {
        "snapshot" => vec![ProductChange::Snapshot {
            name: entry.name()?,
            price: entry.price("unit_price", "currency")?,
            stock: entry.number("stock")?.max(0),
            low_threshold: entry.threshold()?,
        }],
        "price" => vec![ProductChange::PriceChanged {
            name: entry.name()?,
            old: entry.price("old_unit_price", "old_currency")?,
            new: entry.price("unit_price", "currency")?,
        }],
        "stock" => {
            let (before, after) = (entry.number("before")?, entry.number("after")?);
            let threshold = entry.threshold()?;
            stock_events(before, after, threshold)
                .into_iter()
                .map(|signal| match signal {
                    StockSignal::Updated => ProductChange::StockUpdated {
                        stock: after,
                        previous: before,
                    },
                    StockSignal::Low => ProductChange::StockLow {
                        stock: after,
                        threshold,
                    },
                    StockSignal::Out => ProductChange::StockOut,
                })
                .collect()
        }
        other => return Err(format!("kind {other:?} is not a catalog entry")),
    };
    Ok(changes
        .into_iter()
        .map(|change| {
            let kind: EventType = change.event_type();
            Outgoing {
                event_id: derived_event_id(&cause, &item, kind),
                event: ProductEvent {
                    item: item.clone(),
                    seq,
                    at,
                    change,
                },
            }
        })
        .collect())
}

struct Entry<'a>(&'a Fields);

impl Entry<'_> {
    fn text(&self, name: &str) -> Result<String, String> {
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| format!("missing field {name}"))
    }

    fn number(&self, name: &str) -> Result<i64, String> {
        self.text(name)?
            .parse()
            .map_err(|_| format!("{name} is not an integer"))
    }

    fn name(&self) -> Result<ProductName, String> {
        ProductName::parse(&self.text("name")?).map_err(|e| e.0)
    }

    fn threshold(&self) -> Result<u32, String> {
        low_threshold(self.number("low_threshold")?).map_err(|e| e.0)
    }

    fn price(&self, amount: &str, currency: &str) -> Result<Price, String> {
        let currency = Currency::parse(&self.text(currency)?).map_err(|e| e.0)?;
        Price::new(self.number(amount)?, currency).map_err(|e| e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn kinds(fields: &Fields) -> Vec<EventType> {
        events_of(fields)
            .unwrap()
            .iter()
            .map(|o| o.event.event_type())
            .collect()
    }

    const COMMON: [(&str, &str); 4] = [
        ("item", "burger"),
        ("seq", "3"),
        ("at", "1700"),
        ("cause", "c-1"),
    ];

    #[test]
    fn a_stock_entry_announces_its_crossings() {
        let stock = |before: &str, after: &str| {
            let mut fields = entry(&COMMON);
            fields.extend(entry(&[
                ("kind", "stock"),
                ("before", before),
                ("after", after),
                ("low_threshold", "10"),
            ]));
            fields
        };
        use EventType::{ProductStockLow, ProductStockOut, ProductStockUpdated};
        assert_eq!(kinds(&stock("12", "11")), [ProductStockUpdated]);
        assert_eq!(
            kinds(&stock("10", "9")),
            [ProductStockUpdated, ProductStockLow]
        );
        assert_eq!(
            kinds(&stock("10", "0")),
            [ProductStockUpdated, ProductStockLow, ProductStockOut]
        );
        let events = events_of(&stock("10", "9")).unwrap();
        assert_eq!(
            events[0].event.change,
            ProductChange::StockUpdated {
                stock: 9,
                previous: 10
            }
        );
        assert_eq!(events[0].event.seq, 3);
        // Published twice, the same ids.
        assert_eq!(events, events_of(&stock("10", "9")).unwrap());
        assert_ne!(events[0].event_id, events[1].event_id);
    }

    #[test]
    fn snapshots_and_price_changes() {
        let mut snapshot = entry(&COMMON);
        snapshot.extend(entry(&[
            ("kind", "snapshot"),
            ("name", "Burger"),
            ("unit_price", "899"),
            ("currency", "EUR"),
            ("stock", "100"),
            ("low_threshold", "10"),
        ]));
        assert_eq!(kinds(&snapshot), [EventType::ProductSnapshot]);
        let mut price = entry(&COMMON);
        price.extend(entry(&[
            ("kind", "price"),
            ("name", "Burger"),
            ("unit_price", "950"),
            ("currency", "EUR"),
            ("old_unit_price", "899"),
            ("old_currency", "EUR"),
        ]));
        assert_eq!(kinds(&price), [EventType::ProductPriceChanged]);
    }

    #[test]
    fn a_hand_made_entry_says_what_is_wrong() {
        assert_eq!(events_of(&entry(&[])).unwrap_err(), "missing field item");
        let mut odd = entry(&COMMON);
        odd.insert("kind".into(), "gift".into());
        assert!(events_of(&odd).unwrap_err().contains("not a catalog entry"));
    }
}
