//! The invariants of docs/DESIGN.md §6, as pure rules over what the services left in Redis and
//! the DLQ: no I/O here. `sagactl check` reads the data and applies them; the board shows one
//! light per rule; the integration tests end with the checker. Each rule serves the invariant(s)
//! numbered in the design document ([`Rule::invariants`]), and has a stable id:
//!
//! | rule | invariant |
//! |---|---|
//! | [`NOTHING_LOST`]: every order reaches a final status and keeps its record | 1 |
//! | [`STOCK_CONSERVED`]: per item, `initial = available + reserved - released` | 2 |
//! | [`RESERVED_ONCE`]: the totals are the sums of the reservation records (+ archived totals) | 2 |
//! | [`NOTIFIED_ONCE`]: at most one notification per (order, outcome) | 2 |
//! | [`STATUSES_AGREE`]: a final status agrees with inventory's record | 1, 2 |
//! | [`ONLY_POISON_IN_DLQ`]: no valid event sits in the DLQ | 3, 4 |
//!
//! Each rule is a function returning one readable line per violation (empty: it holds).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::events::{EventType, InventoryOutcome, OrderCancelled, OrderPlaced};
use crate::order::{
    Notification, NotificationOutcome, OrderStatus, Reservation, ReservationState, StockLevel,
};

/// How many order ids a violation line names before it says "and N more".
const IDS_SHOWN: usize = 5;

/// One rule of the checker: a stable id, the rule in words, the invariants it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// A short stable name, e.g. `stock-conserved` (the board's light, the design's table).
    pub id: &'static str,
    /// The rule in words.
    pub title: &'static str,
    /// The invariants of docs/DESIGN.md §6 it serves, by number.
    pub invariants: &'static [u8],
}

/// Invariant 1: nothing accepted is lost.
pub const NOTHING_LOST: Rule = Rule {
    id: "nothing-lost",
    title: "nothing accepted is lost: every order reaches a final status",
    invariants: &[1],
};
/// Invariant 2: nothing is doubled (stock is conserved).
pub const STOCK_CONSERVED: Rule = Rule {
    id: "stock-conserved",
    title: "stock is conserved: initial = available + reserved - released",
    invariants: &[2],
};
/// Invariant 2: nothing is doubled (stock taken at most once per order).
pub const RESERVED_ONCE: Rule = Rule {
    id: "reserved-once",
    title: "stock taken at most once per order (totals = reservation records)",
    invariants: &[2],
};
/// Invariant 2: nothing is doubled (one notification per order and outcome).
pub const NOTIFIED_ONCE: Rule = Rule {
    id: "notified-once",
    title: "at most one notification per (order, outcome)",
    invariants: &[2],
};
/// Invariants 1 and 2: what order-svc says and what inventory-svc did agree.
pub const STATUSES_AGREE: Rule = Rule {
    id: "statuses-agree",
    title: "decided statuses agree with inventory's records",
    invariants: &[1, 2],
};
/// Invariants 3 and 4: only poison is dead-lettered.
pub const ONLY_POISON_IN_DLQ: Rule = Rule {
    id: "only-poison-in-dlq",
    title: "only poison in the DLQ",
    invariants: &[3, 4],
};

/// Every rule, in the order the checker reports them.
pub const RULES: [Rule; 6] = [
    NOTHING_LOST,
    STOCK_CONSERVED,
    RESERVED_ONCE,
    NOTIFIED_ONCE,
    STATUSES_AGREE,
    ONLY_POISON_IN_DLQ,
];

/// One rule and what it found, for a reader that shows the rules one by one (the board's
/// invariant lights) rather than as one list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleResult {
    /// The rule's stable id ([`Rule::id`]).
    pub id: &'static str,
    /// The rule in words.
    pub title: &'static str,
    /// Empty when the rule holds.
    pub violations: Vec<String>,
}

impl RuleResult {
    fn of(rule: Rule, violations: Vec<String>) -> Self {
        Self {
            id: rule.id,
            title: rule.title,
            violations,
        }
    }

    /// The invariants of docs/DESIGN.md §6 this result speaks for.
    pub fn invariants(&self) -> &'static [u8] {
        RULES
            .iter()
            .chain(LIFECYCLE_RULES.iter())
            .find(|rule| rule.id == self.id)
            .map_or(&[], |rule| rule.invariants)
    }
}

// --- what the rules read ----------------------------------------------------------------------

/// Every order id with its status as stored (`None`: in the index but its record is gone).
pub type OrderStatuses = BTreeMap<String, Option<String>>;

/// Whether a stored status is final. A status order-svc does not know is not: it never settles.
pub fn is_final(status: &str) -> bool {
    OrderStatus::parse(status).is_some_and(OrderStatus::is_decided)
}

/// Inventory's books: one hash per column, item → units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StockBooks {
    pub available: BTreeMap<String, i64>,
    pub initial: BTreeMap<String, i64>,
    pub reserved: BTreeMap<String, i64>,
    pub released: BTreeMap<String, i64>,
}

impl StockBooks {
    /// Every item any column mentions.
    pub fn items(&self) -> BTreeSet<&str> {
        [
            &self.available,
            &self.initial,
            &self.reserved,
            &self.released,
        ]
        .into_iter()
        .flat_map(|column| column.keys().map(String::as_str))
        .collect()
    }
}

/// The stock books and every reservation record, read as one snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    pub books: StockBooks,
    pub records: BTreeMap<String, Reservation>,
    /// What records archived after retention counted before they were deleted.
    pub archived: Archived,
    /// Records that could not be read: `(order_id, why)`.
    pub unreadable: Vec<(String, String)>,
}

/// Per-item units of the reservation records inventory-svc archived (folded into these totals
/// and deleted, `DEDUPE_WINDOW` after their compaction), so that the books still add up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Archived {
    pub reserved: BTreeMap<String, i64>,
    pub released: BTreeMap<String, i64>,
}

/// A message in the DLQ, as far as the checker cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The event it was, from its original routing key (`x-original-routing-key` or `x-death`)
    /// or its `type` property.
    pub event_type: Option<EventType>,
    pub reason: Option<String>,
    pub body: Vec<u8>,
}

// --- the rules ---------------------------------------------------------------------------------

/// Every rule but [`NOTHING_LOST`]: those that must hold at *every* moment, not only once the
/// saga has settled ("every order final" is about the end of a run; a live reader judges
/// in-flight orders with [`in_flight_orders`] and [`orders_without_record`] instead).
pub fn settled_rules(
    orders: &OrderStatuses,
    ledger: &Ledger,
    notifications: &[String],
    dead_letters: &[DeadLetter],
) -> Vec<RuleResult> {
    vec![
        RuleResult::of(STOCK_CONSERVED, unbalanced_stock(&ledger.books)),
        RuleResult::of(RESERVED_ONCE, totals_disagree_with_records(ledger)),
        RuleResult::of(NOTIFIED_ONCE, doubled_notifications(notifications)),
        RuleResult::of(
            STATUSES_AGREE,
            statuses_disagree_with_records(orders, &ledger.records),
        ),
        RuleResult::of(ONLY_POISON_IN_DLQ, valid_events_in_dlq(dead_letters)),
    ]
}

/// [`NOTHING_LOST`] (invariant 1): every order is final, and every indexed order still has its record.
pub fn unfinished_orders(orders: &OrderStatuses, timeout: Duration) -> Vec<String> {
    let mut violations = Vec::new();
    let in_flight = in_flight_orders(orders);
    if !in_flight.is_empty() {
        violations.push(format!(
            "{} order(s) not final after {} s: {}",
            in_flight.len(),
            timeout.as_secs(),
            some_of(&in_flight)
        ));
    }
    violations.extend(orders_without_record(orders));
    violations
}

/// Orders not final yet, as `id (STATUS)`: normal while the saga runs, a violation at its end.
pub fn in_flight_orders(orders: &OrderStatuses) -> Vec<String> {
    orders
        .iter()
        .filter_map(|(id, status)| {
            status
                .as_deref()
                .filter(|s| !is_final(s))
                .map(|s| format!("{id} ({s})"))
        })
        .collect()
}

/// Orders in the index whose record is gone: always a violation (an accepted order was lost).
pub fn orders_without_record(orders: &OrderStatuses) -> Vec<String> {
    let missing: Vec<String> = orders
        .iter()
        .filter(|(_, status)| status.is_none())
        .map(|(id, _)| id.clone())
        .collect();
    if missing.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "{} order(s) in the orders index have no order record: {}",
        missing.len(),
        some_of(&missing)
    )]
}

/// [`STOCK_CONSERVED`] (invariant 2): per item, `initial = available + reserved - released`.
pub fn unbalanced_stock(books: &StockBooks) -> Vec<String> {
    let units = |column: &BTreeMap<String, i64>, item: &str| column.get(item).copied().unwrap_or(0);
    books
        .items()
        .into_iter()
        .filter_map(|item| {
            let level = StockLevel {
                available: units(&books.available, item),
                initial: units(&books.initial, item),
                reserved: units(&books.reserved, item),
                released: units(&books.released, item),
            };
            let StockLevel {
                available,
                initial,
                reserved,
                released,
            } = level;
            let accounted = available + reserved - released;
            (!level.is_balanced()).then(|| {
                format!(
                    "stock of {item} not conserved: initial {initial} != available {available} + reserved {reserved} - released {released} (= {accounted})"
                )
            })
        })
        .collect()
}

/// [`RESERVED_ONCE`] (invariant 2): the `reserved` and `released` totals are the sums of the
/// reservation records, plus what archived records counted ([`Ledger::archived`]).
///
/// A record in state `reserved` holds its lines ([`Reservation::held`]: `qty` of `item` for a lab
/// order, `lines` for one of several); a `released` one once held them and gave them back
/// (`released_qty` 0 when nothing had been reserved), so it counts in both totals. A compacted record
/// keeps exactly these fields, so compaction changes no sum; archiving moves a record's units
/// from the records into the archived totals in one step.
pub fn totals_disagree_with_records(ledger: &Ledger) -> Vec<String> {
    let mut violations: Vec<String> = ledger
        .unreadable
        .iter()
        .map(|(order_id, why)| format!("reservation record of order {order_id} unreadable: {why}"))
        .collect();
    let mut reserved: BTreeMap<&str, i64> = BTreeMap::new();
    let mut released: BTreeMap<&str, i64> = BTreeMap::new();
    for (order_id, record) in &ledger.records {
        let held = record.held();
        match record.state {
            ReservationState::Reserved if !held.is_empty() => {
                for (item, qty) in held {
                    *reserved.entry(item).or_default() += qty;
                }
            }
            // Given back: each line's units were reserved once and released once (nothing
            // when the order had failed, or for a tombstone).
            ReservationState::Released if record.released_qty == 0 => {}
            ReservationState::Released if !held.is_empty() => {
                for (item, qty) in held {
                    *reserved.entry(item).or_default() += qty;
                    *released.entry(item).or_default() += qty;
                }
            }
            ReservationState::Failed => {}
            state => violations.push(format!(
                "reservation record of order {order_id} makes no sense: state {state}, item {:?}",
                record.item
            )),
        }
    }
    let any_archived = !ledger.archived.reserved.is_empty() || !ledger.archived.released.is_empty();
    for (sums, archived) in [
        (&mut reserved, &ledger.archived.reserved),
        (&mut released, &ledger.archived.released),
    ] {
        for (item, units) in archived {
            *sums.entry(item.as_str()).or_default() += units;
        }
    }
    // Name the archive in the report only where there is one: the lab's ledgers have none.
    let what = if any_archived {
        "the reservation records and archived totals"
    } else {
        "the reservation records"
    };
    for (column, books, records) in [
        (
            ReservationState::Reserved,
            &ledger.books.reserved,
            &reserved,
        ),
        (
            ReservationState::Released,
            &ledger.books.released,
            &released,
        ),
    ] {
        let items: BTreeSet<&str> = books
            .keys()
            .map(String::as_str)
            .chain(records.keys().copied())
            .collect();
        for item in items {
            let booked = books.get(item).copied().unwrap_or(0);
            let recorded = records.get(item).copied().unwrap_or(0);
            if booked != recorded {
                violations.push(format!(
                    "{column} {item}: the books say {booked} but {what} add up to {recorded}"
                ));
            }
        }
    }
    violations
}

/// [`NOTIFIED_ONCE`] (invariant 2): at most one notification per (order, outcome).
pub fn doubled_notifications(notifications: &[String]) -> Vec<String> {
    let mut violations = Vec::new();
    let mut sent: BTreeMap<(String, NotificationOutcome), usize> = BTreeMap::new();
    for (index, line) in notifications.iter().enumerate() {
        match serde_json::from_str::<Notification>(line) {
            Ok(note) => *sent.entry((note.order_id, note.outcome)).or_default() += 1,
            Err(_) => violations.push(format!(
                "notification #{} is not JSON with order_id and outcome",
                index + 1
            )),
        }
    }
    violations.extend(sent.into_iter().filter(|(_, times)| *times > 1).map(
        |((order_id, outcome), times)| {
            format!("order {order_id} was notified {times} times for {outcome}")
        },
    ));
    violations
}

/// [`STATUSES_AGREE`] (invariants 1, 2): a final status agrees with inventory's record of the order.
pub fn statuses_disagree_with_records(
    orders: &OrderStatuses,
    records: &BTreeMap<String, Reservation>,
) -> Vec<String> {
    orders
        .iter()
        .filter_map(|(order_id, status)| {
            let status = OrderStatus::parse(status.as_deref()?)?;
            let expected = ReservationState::of_decided(status)?;
            match records.get(order_id) {
                None => Some(format!(
                    "order {order_id} is {status} but inventory has no reservation record for it"
                )),
                Some(record) if record.state != expected => Some(format!(
                    "order {order_id} is {status} but inventory's record says {} (expected {expected})",
                    record.state
                )),
                Some(_) => None,
            }
        })
        .collect()
}

/// [`ONLY_POISON_IN_DLQ`] (invariants 3, 4): only poison in the DLQ. A message that parses as the saga event it says it is (or,
/// saying nothing, as an OrderPlaced) should have been processed, not dead-lettered.
pub fn valid_events_in_dlq(dead_letters: &[DeadLetter]) -> Vec<String> {
    dead_letters
        .iter()
        .filter_map(|dead| {
            let (name, order_id) = match dead.event_type {
                None | Some(EventType::OrderPlaced) => OrderPlaced::from_body(&dead.body)
                    .ok()
                    .map(|e| (EventType::OrderPlaced.name(), e.order_id.to_string()))?,
                Some(EventType::OrderCancelled) => OrderCancelled::from_body(&dead.body)
                    .ok()
                    .map(|e| (EventType::OrderCancelled.name(), e.order_id.to_string()))?,
                Some(kind) => InventoryOutcome::from_body(kind, &dead.body)
                    .ok()
                    .map(|e| (kind.name(), e.order_id().to_string()))?,
            };
            Some(format!(
                "the DLQ holds a valid {name} for order {order_id} (dead-lettered because: {})",
                dead.reason.as_deref().unwrap_or("no reason given")
            ))
        })
        .collect()
}

/// The first few of a list, then how many more.
fn some_of(ids: &[String]) -> String {
    let shown = ids[..ids.len().min(IDS_SHOWN)].join(", ");
    match ids.len().saturating_sub(IDS_SHOWN) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    fn record(state: &str, item: Option<&str>, qty: i64, released_qty: i64) -> Reservation {
        let mut fields = vec![
            ("state", state.to_owned()),
            ("qty", qty.to_string()),
            ("released_qty", released_qty.to_string()),
        ];
        fields.extend(item.map(|item| ("item", item.to_owned())));
        Reservation::from_hash(fields).unwrap()
    }

    fn statuses(pairs: &[(&str, Option<&str>)]) -> OrderStatuses {
        pairs
            .iter()
            .map(|(id, s)| (id.to_string(), s.map(str::to_owned)))
            .collect()
    }

    #[test]
    fn in_flight_and_vanished_orders_are_reported() {
        let orders = statuses(&[("a", Some("CONFIRMED")), ("b", Some("PLACED")), ("c", None)]);
        let v = unfinished_orders(&orders, Duration::from_secs(30));
        assert_eq!(v.len(), 2);
        assert_eq!(v[0], "1 order(s) not final after 30 s: b (PLACED)");
        assert!(v[1].contains("no order record: c"));
        assert!(unfinished_orders(&statuses(&[("a", Some("FAILED"))]), Duration::ZERO).is_empty());
    }

    #[test]
    fn stock_must_be_conserved() {
        let balanced = StockBooks {
            available: column(&[("burger", 95)]),
            initial: column(&[("burger", 100)]),
            reserved: column(&[("burger", 7)]),
            released: column(&[("burger", 2)]),
        };
        assert!(unbalanced_stock(&balanced).is_empty());
        let doubled = StockBooks {
            available: column(&[("burger", 92)]),
            ..balanced
        };
        let v = unbalanced_stock(&doubled);
        assert_eq!(v.len(), 1);
        assert!(v[0].starts_with("stock of burger not conserved"));
    }

    #[test]
    fn totals_must_match_the_records() {
        let mut ledger = Ledger {
            books: StockBooks {
                reserved: column(&[("burger", 5)]),
                released: column(&[("burger", 2)]),
                ..StockBooks::default()
            },
            ..Ledger::default()
        };
        ledger
            .records
            .insert("o1".into(), record("reserved", Some("burger"), 3, 0));
        ledger
            .records
            .insert("o2".into(), record("released", Some("burger"), 2, 2));
        ledger
            .records
            .insert("o3".into(), record("failed", Some("burger"), 9, 0));
        ledger
            .records
            .insert("o4".into(), record("released", None, 0, 0));
        assert_eq!(totals_disagree_with_records(&ledger), Vec::<String>::new());

        // A reservation taken twice shows up as books larger than the records.
        ledger.books.reserved = column(&[("burger", 8)]);
        let v = totals_disagree_with_records(&ledger);
        assert_eq!(
            v,
            ["reserved burger: the books say 8 but the reservation records add up to 5"]
        );
    }

    #[test]
    fn archived_records_still_count_in_the_totals() {
        // Books: 3 + 2 (records) + 6 reserved and 2 + 4 released (archived records).
        let mut ledger = Ledger {
            books: StockBooks {
                reserved: column(&[("burger", 11), ("pizza", 1)]),
                released: column(&[("burger", 6)]),
                ..StockBooks::default()
            },
            archived: Archived {
                reserved: column(&[("burger", 6), ("pizza", 1)]),
                released: column(&[("burger", 4)]),
            },
            ..Ledger::default()
        };
        // A compacted record keeps state, item, qty and released_qty: it counts as before.
        ledger
            .records
            .insert("o1".into(), record("reserved", Some("burger"), 3, 0));
        ledger
            .records
            .insert("o2".into(), record("released", Some("burger"), 2, 2));
        assert_eq!(totals_disagree_with_records(&ledger), Vec::<String>::new());

        // Archiving a record moves its units from the records to the archive: still balanced.
        ledger.records.remove("o1");
        *ledger.archived.reserved.entry("burger".into()).or_default() += 3;
        assert_eq!(totals_disagree_with_records(&ledger), Vec::<String>::new());

        // A duplicate that took stock again after the archive shows up as books too large.
        *ledger.books.reserved.entry("pizza".into()).or_default() += 1;
        assert_eq!(
            totals_disagree_with_records(&ledger),
            [
                "reserved pizza: the books say 2 but the reservation records and archived totals add up to 1"
            ]
        );
    }

    #[test]
    fn one_notification_per_order_and_outcome() {
        let line =
            |id: &str, outcome: &str| format!(r#"{{"order_id":"{id}","outcome":"{outcome}"}}"#);
        let fine = [
            line("a", "reserved"),
            line("a", "released"),
            line("b", "failed"),
        ];
        assert!(doubled_notifications(&fine).is_empty());
        let doubled = [
            line("a", "reserved"),
            line("a", "reserved"),
            "nonsense".to_owned(),
        ];
        let v = doubled_notifications(&doubled);
        assert_eq!(v.len(), 2);
        assert!(v.contains(&"order a was notified 2 times for reserved".to_owned()));
    }

    #[test]
    fn final_statuses_agree_with_the_records() {
        let orders = statuses(&[
            ("a", Some("CONFIRMED")),
            ("b", Some("FAILED")),
            ("c", Some("CANCELLED")),
            ("d", Some("CONFIRMED")),
            ("e", Some("PLACED")),
        ]);
        let mut records = BTreeMap::new();
        records.insert("a".to_owned(), record("reserved", Some("burger"), 1, 0));
        records.insert("b".to_owned(), record("failed", Some("burger"), 1, 0));
        records.insert("c".to_owned(), record("released", Some("burger"), 1, 1));
        assert_eq!(
            statuses_disagree_with_records(&orders, &records),
            ["order d is CONFIRMED but inventory has no reservation record for it"]
        );
        records.insert("d".to_owned(), record("failed", Some("burger"), 1, 0));
        assert!(
            statuses_disagree_with_records(&orders, &records)[0].contains("record says failed")
        );
    }

    #[test]
    fn only_poison_belongs_in_the_dlq() {
        let dead = |event_type, body: &str| DeadLetter {
            event_type,
            reason: Some("why".into()),
            body: body.as_bytes().to_vec(),
        };
        let valid = r#"{"order_id":"o1","item":"burger","qty":1}"#;
        let letters = [
            dead(
                Some(EventType::OrderPlaced),
                r#"{"order_id":"o2","item":"burger"}"#,
            ),
            dead(Some(EventType::InventoryReserved), r#"{"order_id":"o5"}"#),
            dead(None, valid),
        ];
        assert_eq!(
            valid_events_in_dlq(&letters),
            ["the DLQ holds a valid OrderPlaced for order o1 (dead-lettered because: why)"]
        );
        let reserved = r#"{"order_id":"o3","item":"burger","qty":1,"student_id":"s","remaining":4,"status":"RESERVED"}"#;
        let cancelled = r#"{"order_id":"o4","reason":"changed my mind"}"#;
        let found = valid_events_in_dlq(&[
            dead(Some(EventType::InventoryReserved), reserved),
            dead(Some(EventType::OrderCancelled), cancelled),
            dead(Some(EventType::OrderCancelled), "not json"),
        ]);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("valid InventoryReserved for order o3"));
        assert!(found[1].contains("valid OrderCancelled for order o4"));
    }

    #[test]
    fn every_rule_names_the_invariants_it_serves() {
        let results = settled_rules(&OrderStatuses::new(), &Ledger::default(), &[], &[]);
        let ids: Vec<&str> = results.iter().map(|r| r.id).collect();
        assert_eq!(ids, RULES[1..].iter().map(|r| r.id).collect::<Vec<_>>());
        assert_eq!(results[4].invariants(), [3, 4]);
        assert!(RULES.iter().all(|rule| !rule.invariants.is_empty()));
    }

    #[test]
    fn long_id_lists_are_shortened() {
        let ids: Vec<String> = (1..=7).map(|i| i.to_string()).collect();
        assert_eq!(some_of(&ids), "1, 2, 3, 4, 5 and 2 more");
    }
}

// --- the lifecycle's rules (invariant 9) ------------------------------------------------------

/// Invariant 9: nothing stays undecided for ever (order-svc's sweeper acts on every deadline).
pub const NO_ORDER_PAST_DEADLINE: Rule = Rule {
    id: "no-order-past-deadline",
    title: "no order past its deadline: the sweeper acts on every deadline",
    invariants: &[9],
};
/// Invariant 9: every transition is announced by exactly one `order.status.updated`.
pub const STATUS_EVENT_PER_TRANSITION: Rule = Rule {
    id: "status-event-per-transition",
    title: "one status event per transition",
    invariants: &[9],
};

/// The lifecycle's rules, after [`RULES`] in the checker's report.
pub const LIFECYCLE_RULES: [Rule; 2] = [NO_ORDER_PAST_DEADLINE, STATUS_EVENT_PER_TRANSITION];

/// How late a deadline may be before it is a violation: the sweeper runs about every second,
/// and a busy Redis or a restarting order-svc may hold it up a little.
pub const DEADLINE_GRACE: Duration = Duration::from_secs(10);

/// [`NO_ORDER_PAST_DEADLINE`] (invariant 9): no deadline (`(order id, due ms)` from order-svc's
/// deadlines set) is older than `now_ms` minus `grace`; each is named with the order's status.
pub fn orders_past_deadline(
    deadlines: &[(String, u64)],
    orders: &OrderStatuses,
    now_ms: u64,
    grace: Duration,
) -> Vec<String> {
    let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
    let mut late: Vec<&(String, u64)> = deadlines
        .iter()
        .filter(|(_, due)| due.saturating_add(grace_ms) < now_ms)
        .collect();
    late.sort_by_key(|(_, due)| *due);
    let named: Vec<String> = late
        .iter()
        .map(|(id, due)| {
            let status = orders
                .get(id)
                .and_then(Option::as_deref)
                .unwrap_or("no record");
            format!(
                "{id} ({status}, {:.1} s overdue)",
                now_ms.saturating_sub(*due) as f64 / 1000.0
            )
        })
        .collect();
    if named.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "{} order(s) past their deadline by more than {} s (is order-svc's sweeper running?): {}",
        named.len(),
        grace.as_secs(),
        some_of(&named)
    )]
}

/// [`STATUS_EVENT_PER_TRANSITION`] (invariant 9): in every order's timeline, each applied line
/// after the first (the creation, which announces nothing) names the status event of its move,
/// and no status event id is named twice (across orders too).
pub fn transitions_without_status_event(
    histories: &BTreeMap<String, Vec<crate::order::HistoryEntry>>,
) -> Vec<String> {
    let mut unannounced = Vec::new();
    let mut repeated = Vec::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for (order_id, history) in histories {
        let mut missing = 0;
        let mut doubled = 0;
        // The first line is the creation (or, in a capped timeline, a move whose
        // announcement is not in question).
        for line in history.iter().skip(1).filter(|line| line.applied) {
            match line.status_event_id.as_deref() {
                None | Some("") => missing += 1,
                Some(id) if !seen.insert(id) => doubled += 1,
                Some(_) => {}
            }
        }
        if missing > 0 {
            unannounced.push(format!("{order_id} ({missing})"));
        }
        if doubled > 0 {
            repeated.push(format!("{order_id} ({doubled})"));
        }
    }
    let mut violations = Vec::new();
    if !unannounced.is_empty() {
        violations.push(format!(
            "{} order(s) have transitions without a status event: {}",
            unannounced.len(),
            some_of(&unannounced)
        ));
    }
    if !repeated.is_empty() {
        violations.push(format!(
            "{} order(s) name a status event another transition already named: {}",
            repeated.len(),
            some_of(&repeated)
        ));
    }
    violations
}

/// [`STATUSES_AGREE`] with the lifecycle's exception: an order FAILED by its decision deadline
/// (its id in `timed_out`) sent a cancel, so inventory's record may say `failed`, or `released`
/// (a late reservation given back, or a tombstone if the cancel came first). Every other order
/// is judged by [`statuses_disagree_with_records`].
pub fn statuses_disagree_after_timeouts(
    orders: &OrderStatuses,
    timed_out: &BTreeSet<String>,
    records: &BTreeMap<String, Reservation>,
) -> Vec<String> {
    let (exempt, judged): (OrderStatuses, OrderStatuses) = orders
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .partition(|(id, status)| {
            timed_out.contains(id) && status.as_deref() == Some(OrderStatus::Failed.as_str())
        });
    let mut violations = statuses_disagree_with_records(&judged, records);
    for order_id in exempt.keys() {
        match records.get(order_id) {
            None => violations.push(format!(
                "order {order_id} is FAILED (timeout) but inventory has no record of it: its \
                 cancel has not arrived"
            )),
            Some(record) if record.state == ReservationState::Reserved => {
                violations.push(format!(
                    "order {order_id} is FAILED (timeout) but inventory still holds its \
                     reservation: the cancel did not give it back"
                ));
            }
            Some(_) => {}
        }
    }
    violations
}

/// The lifecycle's rules with what they found, for the checker's report and the board's lights.
pub fn lifecycle_rules(
    deadlines: &[(String, u64)],
    orders: &OrderStatuses,
    histories: &BTreeMap<String, Vec<crate::order::HistoryEntry>>,
    now_ms: u64,
) -> Vec<RuleResult> {
    vec![
        RuleResult::of(
            NO_ORDER_PAST_DEADLINE,
            orders_past_deadline(deadlines, orders, now_ms, DEADLINE_GRACE),
        ),
        RuleResult::of(
            STATUS_EVENT_PER_TRANSITION,
            transitions_without_status_event(histories),
        ),
    ]
}

#[cfg(test)]
mod lifecycle_tests {
    use super::*;
    use crate::order::HistoryEntry;

    fn statuses(pairs: &[(&str, &str)]) -> OrderStatuses {
        pairs
            .iter()
            .map(|(id, s)| (id.to_string(), Some(s.to_string())))
            .collect()
    }

    #[test]
    fn a_deadline_older_than_the_grace_is_reported_with_its_order() {
        let orders = statuses(&[("a", "PLACED"), ("b", "CANCELLING")]);
        let deadlines = vec![("a".to_owned(), 100_000), ("b".to_owned(), 95_000)];
        let grace = Duration::from_secs(10);
        assert!(orders_past_deadline(&deadlines, &orders, 104_000, grace).is_empty());
        let found = orders_past_deadline(&deadlines, &orders, 109_000, grace);
        assert_eq!(
            found,
            [
                "1 order(s) past their deadline by more than 10 s (is order-svc's sweeper \
              running?): b (CANCELLING, 14.0 s overdue)"
            ]
        );
    }

    fn line(status: OrderStatus, applied: bool, status_event: Option<&str>) -> HistoryEntry {
        HistoryEntry {
            at: 0,
            status,
            event: None,
            event_id: String::new(),
            service: String::new(),
            redelivered: false,
            applied,
            reason: None,
            status_event_id: status_event.map(str::to_owned),
            envelope: Default::default(),
        }
    }

    #[test]
    fn every_move_after_creation_names_one_status_event_of_its_own() {
        use OrderStatus::*;
        let good = vec![
            line(Placed, true, None),
            line(Confirmed, true, Some("s1")),
            line(Confirmed, false, None), // a duplicate moves nothing, announces nothing
            line(Shipped, true, Some("s2")),
        ];
        let unannounced = vec![line(Placed, true, None), line(Failed, true, None)];
        let doubled = vec![line(Placed, true, None), line(Cancelling, true, Some("s2"))];
        let histories: BTreeMap<String, Vec<HistoryEntry>> = [
            ("a".to_owned(), good),
            ("b".to_owned(), unannounced),
            ("c".to_owned(), doubled),
        ]
        .into();
        assert_eq!(
            transitions_without_status_event(&histories),
            [
                "1 order(s) have transitions without a status event: b (1)",
                "1 order(s) name a status event another transition already named: c (1)",
            ]
        );
    }

    fn record(state: &str) -> Reservation {
        Reservation::from_hash(vec![
            ("state", state.to_owned()),
            ("item", "burger".to_owned()),
            ("qty", "1".to_owned()),
            ("released_qty", "1".to_owned()),
        ])
        .unwrap()
    }

    #[test]
    fn a_timed_out_order_may_be_failed_or_released_but_not_reserved() {
        let orders = statuses(&[
            ("f", "FAILED"),
            ("r", "FAILED"),
            ("k", "FAILED"),
            ("s", "SHIPPED"),
            ("x", "FAILED"),
        ]);
        let timed_out: BTreeSet<String> = ["f", "r", "k"].map(str::to_owned).into();
        let records: BTreeMap<String, Reservation> = [
            ("f", record("failed")),
            ("r", record("released")),
            ("k", record("reserved")),
            ("s", record("reserved")),
            ("x", record("released")),
        ]
        .map(|(id, r)| (id.to_owned(), r))
        .into();
        let found = statuses_disagree_after_timeouts(&orders, &timed_out, &records);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().any(|v| v.starts_with("order x is FAILED but")));
        assert!(
            found
                .iter()
                .any(|v| v.starts_with("order k is FAILED (timeout)"))
        );
        assert_eq!(LIFECYCLE_RULES[0].invariants, &[9]);
    }
}
