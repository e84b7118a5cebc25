//! The stock events of a reservation or a release: what the consume loop publishes after the
//! order's outcome, with confirms, before it acks (so a redelivery re-sends them, with the same
//! ids).
//!
//! Line-agnostic: the ledger reports each line's change as a [`StockMove`]; [`announcements`]
//! makes the events of any number of them from [`Reading`]s of the stock taken right after (see
//! [`crate::catalog`] for why a fresh reading). Pure, so every case is a unit test.

use saga_domain::events::{EventMeta, InventoryOutcome};
use saga_domain::ids::Item;
use saga_domain::product::{
    ProductChange, ProductEvent, StockSignal, derived_event_id, stock_events,
};
use saga_platform::amqp::consumer::Announcement;

use crate::handler::SERVICE;

/// One line's change of stock, as the ledger reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockMove {
    pub item: Item,
    /// Units taken (a reservation) or, negative, given back (a release).
    pub taken: i64,
    /// The stock right after the change, when the ledger reports it (a reservation's
    /// `remaining`); otherwise the reading stands in for it.
    pub after: Option<i64>,
}

/// An item's stock read for its events: a consistent (`seq`, `stock`) pair, its threshold, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub item: Item,
    pub seq: u64,
    pub stock: i64,
    pub low_threshold: u32,
    /// ms since the Unix epoch.
    pub at: u64,
}

/// The stock moves an outcome reports, one per line: a reservation took each line's `qty` and
/// left its `remaining`; a release gave each line's `qty` back; a failure moved nothing.
pub fn stock_moves(outcome: &InventoryOutcome) -> Vec<StockMove> {
    match outcome {
        InventoryOutcome::Reserved { lines, .. } => lines
            .iter()
            .map(|line| StockMove {
                item: line.item.clone(),
                taken: i64::from(line.qty.get()),
                after: Some(line.remaining),
            })
            .collect(),
        InventoryOutcome::Released { lines, .. } => lines
            .iter()
            .filter(|line| line.qty > 0)
            .map(|line| StockMove {
                item: line.item.clone(),
                taken: -i64::from(line.qty),
                after: None,
            })
            .collect(),
        InventoryOutcome::Failed { .. } => Vec::new(),
    }
}

/// The stock events of `moves`, given the readings taken after them; `cause` is the event id
/// the decision was announced with (the events' ids derive from it), `correlation_id` the
/// order's. A move without a reading announces nothing.
pub fn announcements(
    moves: &[StockMove],
    readings: &[Reading],
    cause: &str,
    correlation_id: &str,
) -> Vec<Announcement> {
    let mut out = Vec::new();
    for m in moves {
        let Some(reading) = readings.iter().find(|r| r.item == m.item) else {
            continue;
        };
        let after = m.after.unwrap_or(reading.stock);
        let before = after + m.taken;
        let threshold = reading.low_threshold;
        for signal in stock_events(before, after, threshold) {
            let change = match signal {
                // The reading's stock, with the reading's seq: the pair a replica can trust.
                StockSignal::Updated => ProductChange::StockUpdated {
                    stock: reading.stock.max(0),
                    previous: before.max(0),
                },
                StockSignal::Low => ProductChange::StockLow {
                    stock: after.max(0),
                    threshold,
                },
                StockSignal::Out => ProductChange::StockOut,
            };
            let kind = change.event_type();
            let event = ProductEvent {
                item: m.item.clone(),
                seq: reading.seq,
                at: reading.at,
                change,
            };
            let mut meta = EventMeta::new(kind, correlation_id, SERVICE);
            meta.event_id = derived_event_id(cause, &m.item, kind);
            out.push(Announcement {
                meta,
                body: event.to_body(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use saga_domain::events::EventType;
    use saga_domain::ids::{OrderId, Qty};

    use super::*;

    fn burger() -> Item {
        Item::parse("burger").unwrap()
    }

    fn reading(stock: i64, threshold: u32) -> Reading {
        Reading {
            item: burger(),
            seq: 12,
            stock,
            low_threshold: threshold,
            at: 1_700,
        }
    }

    fn reserved(qty: i64, remaining: i64) -> InventoryOutcome {
        InventoryOutcome::reserved_one(
            OrderId::parse("o1").unwrap(),
            burger(),
            Qty::parse(qty).unwrap(),
            None,
            remaining,
        )
    }

    fn kinds(announced: &[Announcement]) -> Vec<EventType> {
        announced.iter().map(|a| a.meta.event_type).collect()
    }

    #[test]
    fn a_reservation_that_crosses_the_threshold_says_so_once() {
        let moves = stock_moves(&reserved(2, 9));
        let events = announcements(&moves, &[reading(9, 10)], "e-1", "o1");
        assert_eq!(
            kinds(&events),
            [EventType::ProductStockUpdated, EventType::ProductStockLow]
        );
        let updated =
            ProductEvent::from_body(EventType::ProductStockUpdated, &events[0].body).unwrap();
        assert_eq!(
            updated.change,
            ProductChange::StockUpdated {
                stock: 9,
                previous: 11
            }
        );
        assert_eq!(updated.seq, 12);
        // The next reservation, already below: no second Low.
        let next = announcements(
            &stock_moves(&reserved(1, 8)),
            &[reading(8, 10)],
            "e-2",
            "o2",
        );
        assert_eq!(kinds(&next), [EventType::ProductStockUpdated]);
    }

    #[test]
    fn the_last_units_make_it_out() {
        let events = announcements(&stock_moves(&reserved(3, 0)), &[reading(0, 1)], "e", "o");
        assert_eq!(
            kinds(&events),
            [
                EventType::ProductStockUpdated,
                EventType::ProductStockLow,
                EventType::ProductStockOut
            ]
        );
    }

    #[test]
    fn the_stock_announced_is_the_readings_and_the_crossing_the_changes() {
        // Another order took 4 more between this reservation (10 -> 9) and the reading (5).
        let events = announcements(&stock_moves(&reserved(1, 9)), &[reading(5, 10)], "e", "o");
        let read = |a: &Announcement| ProductEvent::from_body(a.meta.event_type, &a.body).unwrap();
        assert_eq!(
            read(&events[0]).change,
            ProductChange::StockUpdated {
                stock: 5,
                previous: 10
            }
        );
        assert_eq!(
            read(&events[1]).change,
            ProductChange::StockLow {
                stock: 9,
                threshold: 10
            }
        );
    }

    #[test]
    fn a_release_reads_its_after_and_a_failure_moves_nothing() {
        let released =
            InventoryOutcome::released_one(OrderId::parse("o1").unwrap(), Some((burger(), 3)));
        let events = announcements(&stock_moves(&released), &[reading(7, 10)], "e", "o");
        assert_eq!(kinds(&events), [EventType::ProductStockUpdated]);
        let tombstone = InventoryOutcome::released_one(OrderId::parse("o1").unwrap(), None);
        assert!(stock_moves(&tombstone).is_empty());
        assert!(announcements(&stock_moves(&reserved(1, 5)), &[], "e", "o").is_empty());
    }

    #[test]
    fn a_re_send_has_the_same_ids_and_the_order_as_correlation() {
        let moves = stock_moves(&reserved(2, 9));
        let first = announcements(&moves, &[reading(9, 10)], "e-1", "o1");
        let again = announcements(&moves, &[reading(9, 10)], "e-1", "o1");
        let ids = |a: &[Announcement]| {
            a.iter()
                .map(|a| a.meta.event_id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&first), ids(&again));
        assert_eq!(first[0].meta.correlation_id, "o1");
        assert_eq!(first[0].meta.app_id, SERVICE);
    }
}
