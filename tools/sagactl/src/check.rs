//! The invariant checker: wait until every order is final, then verify that nothing was lost and
//! nothing was doubled (docs/DESIGN.md §6), reading Redis directly and peeking at the DLQ.
//!
//! Each broken rule becomes one readable line in [`Report::violations`]:
//! 1. every order in order-svc's index reaches a final status (CONFIRMED, FAILED, CANCELLED)
//!    before the deadline: nothing accepted is lost;
//! 2. stock is conserved, per item: `initial = available + reserved - released`;
//! 3. the per-item `reserved` and `released` totals are exactly what the reservation records add
//!    up to: stock was taken at most once per order;
//! 4. at most one notification per (order, outcome);
//! 5. an order's final status agrees with inventory's record of it (CONFIRMED has a record in
//!    state `reserved`, FAILED in `failed`, CANCELLED in `released`);
//! 6. no valid event sits in the DLQ, whoever put it there (a consumer, with `x-dlq-*`, or the
//!    broker's delivery limit, with `x-death`): only poison belongs there.
//!
//! [`check`] is a library function so the integration tests apply the very rules a person runs
//! with `sagactl check`. The rules themselves are plain functions over data read from Redis, so
//! they are unit-tested below without Redis.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use redis::AsyncCommands;
use saga_domain::events::{EventType, InventoryOutcome, OrderCancelled, OrderPlaced};
use saga_domain::order::{OrderStatus, Reservation, StockLevel};
use saga_platform::amqp::properties::DeliveryEvent;
use saga_platform::amqp::topology::Topology;
use saga_platform::redis::store::Keys;
use saga_platform::redis::store::Redis;
use saga_platform::service::config::{Common, redact_url};
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::broker::{self, Held};
use crate::output::{Output, print_json};
use crate::provenance::Provenance;

/// The statuses an order never leaves (a cancel can still move a CONFIRMED order on, but only
/// if someone asks; the checker does not wait for that).
pub const FINAL_STATUSES: [&str; 3] = [
    OrderStatus::FINAL[0].as_str(),
    OrderStatus::FINAL[1].as_str(),
    OrderStatus::FINAL[2].as_str(),
];

const POLL_EVERY: Duration = Duration::from_millis(200);
/// Keys per Redis pipeline, so a big run does not build one huge request.
const BATCH: usize = 1000;
/// The most DLQ messages the checker holds at once while peeking.
const DLQ_PEEK_LIMIT: usize = 10_000;
/// How many order ids a violation line names before it says "and N more".
const IDS_SHOWN: usize = 5;

#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  sagactl check\n  sagactl --redis-prefix test-1a2b check --timeout 60\n  sagactl check --json"
)]
pub struct CheckArgs {
    /// Seconds to wait for every order to become final before checking anyway (and failing).
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    #[command(flatten)]
    output: Output,
}

/// What the checker saw, and every rule it found broken (`check --json` prints it, with `ok`
/// and the prefix it checked).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Orders in order-svc's index.
    pub orders: usize,
    /// How many orders ended in each status.
    pub by_status: BTreeMap<String, usize>,
    /// How long the checker waited for every order to be final (the timeout if they were not).
    #[serde(rename = "waited_secs", serialize_with = "as_secs")]
    pub waited: Duration,
    /// Items in the stock books.
    pub items: usize,
    /// Reservation records inventory keeps (one per order it has decided).
    pub reservations: usize,
    /// Notifications sent.
    pub notifications: usize,
    /// Messages in the DLQ.
    pub dlq_messages: usize,
    /// One line per broken rule; empty when every invariant holds.
    pub violations: Vec<String>,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// A duration as (fractional) seconds: what a script compares with a number.
fn as_secs<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

/// What `check --json` prints.
#[derive(Debug, Serialize)]
struct CheckDoc<'a> {
    prefix: &'a str,
    /// Every invariant holds.
    ok: bool,
    #[serde(flatten)]
    report: &'a Report,
}

/// Wait up to `timeout` for every order under `prefix` to be final, then check the invariants.
///
/// # Errors
/// Only if Redis or the broker cannot be read; broken invariants are in [`Report::violations`].
pub async fn check(
    redis_url: &str,
    prefix: &str,
    amqp_url: &str,
    topology: &Topology,
    timeout: Duration,
) -> anyhow::Result<Report> {
    let redis = saga_platform::redis::store::connect(redis_url)?;
    saga_platform::redis::store::ping(&redis)
        .await
        .with_context(|| format!("cannot reach Redis at {}", redact_url(redis_url)))?;
    let keys = Keys::new(prefix);

    let started = Instant::now();
    let orders = wait_until_final(&redis, &keys, timeout).await?;
    let waited = started.elapsed();
    let ledger = read_ledger(&redis, &keys).await?;
    let notifications: Vec<String> = redis.clone().lrange(keys.notifications(), 0, -1).await?;
    let dead_letters = peek_dlq(amqp_url, &topology.dlq_queue).await?;

    let mut violations = unfinished_orders(&orders, timeout);
    for rule in settled_rules(&orders, &ledger, &notifications, &dead_letters) {
        violations.extend(rule.violations);
    }

    let mut by_status = BTreeMap::new();
    for status in orders.values().flatten() {
        *by_status.entry(status.clone()).or_insert(0) += 1;
    }
    Ok(Report {
        orders: orders.len(),
        by_status,
        waited,
        items: ledger.books.items().len(),
        reservations: ledger.records.len(),
        notifications: notifications.len(),
        dlq_messages: dead_letters.len(),
        violations,
    })
}

/// `sagactl check`: run the checker and print its report.
///
/// # Errors
/// Redis or the broker unreachable, or any invariant broken.
pub async fn run(common: &Common, args: CheckArgs) -> anyhow::Result<()> {
    if !args.output.json {
        outln!(
            "checking prefix {:?} (waiting up to {} s for every order to be final)",
            common.redis_prefix,
            args.timeout
        )?;
    }
    let report = check(
        &common.redis_url,
        &common.redis_prefix,
        &common.rabbitmq_url,
        &common.topology,
        Duration::from_secs(args.timeout),
    )
    .await?;
    if args.output.json {
        print_json(&CheckDoc {
            prefix: &common.redis_prefix,
            ok: report.is_ok(),
            report: &report,
        })?;
    } else {
        outln!("{}", report.to_string().trim_end())?;
    }
    if !report.is_ok() {
        bail!("{} invariant violation(s)", report.violations.len());
    }
    Ok(())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let statuses: Vec<String> = self
            .by_status
            .iter()
            .map(|(status, n)| format!("{status} {n}"))
            .collect();
        let statuses = if statuses.is_empty() {
            String::new()
        } else {
            format!(": {}", statuses.join(", "))
        };
        writeln!(
            f,
            "orders          {}{statuses} (waited {:.1} s)",
            self.orders,
            self.waited.as_secs_f64()
        )?;
        writeln!(f, "stock items     {}", self.items)?;
        writeln!(f, "reservations    {}", self.reservations)?;
        writeln!(f, "notifications   {}", self.notifications)?;
        writeln!(f, "dlq messages    {}", self.dlq_messages)?;
        if self.is_ok() {
            return writeln!(f, "PASS: every invariant holds");
        }
        writeln!(f, "FAIL: {} violation(s)", self.violations.len())?;
        for violation in &self.violations {
            writeln!(f, "  - {violation}")?;
        }
        Ok(())
    }
}

// --- reading ---------------------------------------------------------------------------------

/// Every order id with its status (`None`: in the index but its record is gone).
pub type OrderStatuses = BTreeMap<String, Option<String>>;

pub fn is_final(status: &str) -> bool {
    FINAL_STATUSES.contains(&status)
}

/// Poll until no order is in flight any more, or the deadline passes; the last reading wins.
async fn wait_until_final(
    redis: &Redis,
    keys: &Keys,
    timeout: Duration,
) -> anyhow::Result<OrderStatuses> {
    let deadline = Instant::now() + timeout;
    loop {
        let orders = read_statuses(redis, keys).await?;
        let in_flight = orders.values().flatten().any(|status| !is_final(status));
        if !in_flight || Instant::now() >= deadline {
            return Ok(orders);
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Every order in order-svc's index with its status, read in pipelined batches.
///
/// # Errors
/// Redis unreachable.
pub async fn read_statuses(redis: &Redis, keys: &Keys) -> anyhow::Result<OrderStatuses> {
    let mut conn = redis.clone();
    let ids: Vec<String> = conn
        .zrange(keys.orders(), 0, -1)
        .await
        .context("reading the orders index")?;
    let mut orders = BTreeMap::new();
    for batch in ids.chunks(BATCH) {
        let mut pipe = redis::pipe();
        for id in batch {
            pipe.hget(keys.order(id), "status");
        }
        let statuses: Vec<Option<String>> = pipe.query_async(&mut conn).await?;
        orders.extend(batch.iter().cloned().zip(statuses));
    }
    Ok(orders)
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
    fn items(&self) -> BTreeSet<&str> {
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
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    pub books: StockBooks,
    pub records: BTreeMap<String, Reservation>,
    /// Records that could not be read: `(order_id, why)`.
    pub unreadable: Vec<(String, String)>,
}

/// The stock books and every reservation record, as one consistent snapshot.
///
/// # Errors
/// Redis unreachable, or a reply that is not what the layout promises.
pub async fn read_ledger(redis: &Redis, keys: &Keys) -> anyhow::Result<Ledger> {
    let mut conn = redis.clone();
    let record_prefix = keys.reservation("");
    let mut record_keys: Vec<String> = Vec::new();
    {
        let mut scan = conn.scan_match::<_, String>(keys.reservation("*")).await?;
        while let Some(key) = scan.next_item().await {
            record_keys.push(key?);
        }
    }
    // One MULTI/EXEC: the reserve and release scripts are atomic too, so the books and the
    // records are read at one consistent moment and always agree when nothing is broken.
    let mut pipe = redis::pipe();
    pipe.atomic()
        .hgetall(keys.stock())
        .hgetall(keys.stock_initial())
        .hgetall(keys.stock_reserved())
        .hgetall(keys.stock_released());
    for key in &record_keys {
        pipe.hgetall(key);
    }
    let replies: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
    let mut replies = replies.into_iter();
    let mut next_column = || -> anyhow::Result<BTreeMap<String, i64>> {
        let reply = replies
            .next()
            .context("Redis sent fewer replies than asked for")?;
        Ok(redis::from_redis_value(reply)?)
    };
    let books = StockBooks {
        available: next_column()?,
        initial: next_column()?,
        reserved: next_column()?,
        released: next_column()?,
    };
    let mut ledger = Ledger {
        books,
        ..Ledger::default()
    };
    for (key, reply) in record_keys.iter().zip(replies) {
        let fields: HashMap<String, String> = redis::from_redis_value(reply)?;
        let order_id = key.strip_prefix(&record_prefix).unwrap_or(key).to_owned();
        match Reservation::from_hash(&fields) {
            Ok(record) => {
                ledger.records.insert(order_id, record);
            }
            Err(why) => ledger.unreadable.push((order_id, why)),
        }
    }
    Ok(ledger)
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

impl DeadLetter {
    /// What the checker needs from a message taken off the DLQ.
    /// Ours (`x-dlq-*`) or the broker's (`x-death`) alike: [`Provenance`] reads both.
    pub fn of(message: &lapin::message::Delivery) -> Self {
        let origin = Provenance::of(&message.properties);
        let routing_key = origin.routing_key.unwrap_or_default();
        Self {
            event_type: EventType::of_delivery(&routing_key, &message.properties),
            reason: Some(origin.reason),
            body: message.data.clone(),
        }
    }
}

/// Every message in the DLQ, given back untouched afterwards.
async fn peek_dlq(amqp_url: &str, dlq: &str) -> anyhow::Result<Vec<DeadLetter>> {
    let conn = broker::connect(amqp_url).await?;
    let depth = {
        let channel = conn.create_channel().await?;
        broker::depth(&channel, dlq).await?.messages as usize
    };
    let held = Held::take(&conn, dlq, depth.min(DLQ_PEEK_LIMIT)).await?;
    let dead_letters = held.messages.iter().map(DeadLetter::of).collect();
    held.requeue_rest().await?;
    let _ = conn.close(200, "done".into()).await;
    Ok(dead_letters)
}

// --- the rules -------------------------------------------------------------------------------

/// One rule and what it found, for a reader that shows the rules one by one (the board's
/// invariant lights) rather than as one list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleResult {
    /// A short stable name, e.g. `stock-conserved`.
    pub id: &'static str,
    /// The rule in words.
    pub title: &'static str,
    /// Empty when the rule holds.
    pub violations: Vec<String>,
}

/// Rules 2 to 6: those that must hold at *every* moment, not only once the saga has settled
/// (rule 1, every order final, is about the end of a run; a live reader judges in-flight orders
/// with [`in_flight_orders`] and [`orders_without_record`] instead).
pub fn settled_rules(
    orders: &OrderStatuses,
    ledger: &Ledger,
    notifications: &[String],
    dead_letters: &[DeadLetter],
) -> Vec<RuleResult> {
    vec![
        RuleResult {
            id: "stock-conserved",
            title: "stock is conserved: initial = available + reserved - released",
            violations: unbalanced_stock(&ledger.books),
        },
        RuleResult {
            id: "reserved-once",
            title: "stock taken at most once per order (totals = reservation records)",
            violations: totals_disagree_with_records(ledger),
        },
        RuleResult {
            id: "notified-once",
            title: "at most one notification per (order, outcome)",
            violations: doubled_notifications(notifications),
        },
        RuleResult {
            id: "statuses-agree",
            title: "final statuses agree with inventory's records",
            violations: statuses_disagree_with_records(orders, &ledger.records),
        },
        RuleResult {
            id: "only-poison-in-dlq",
            title: "only poison in the DLQ",
            violations: valid_events_in_dlq(dead_letters),
        },
    ]
}

/// Rule 1: every order is final, and every indexed order still has its record.
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

/// Rule 2: per item, `initial = available + reserved - released`.
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

/// Rule 3: the `reserved` and `released` totals are the sums of the reservation records.
///
/// A record in state `reserved` holds `qty`; a `released` one once held `released_qty` (0 when
/// nothing had been reserved) and gave it back, so it counts in both totals.
pub fn totals_disagree_with_records(ledger: &Ledger) -> Vec<String> {
    let mut violations: Vec<String> = ledger
        .unreadable
        .iter()
        .map(|(order_id, why)| format!("reservation record of order {order_id} unreadable: {why}"))
        .collect();
    let mut reserved: BTreeMap<&str, i64> = BTreeMap::new();
    let mut released: BTreeMap<&str, i64> = BTreeMap::new();
    for (order_id, record) in &ledger.records {
        match (record.state.as_str(), record.item.as_deref()) {
            ("reserved", Some(item)) => *reserved.entry(item).or_default() += record.qty,
            ("released", Some(item)) => {
                *reserved.entry(item).or_default() += record.released_qty;
                *released.entry(item).or_default() += record.released_qty;
            }
            ("released", None) if record.released_qty == 0 => {} // a tombstone
            ("failed", _) => {}
            (state, _) => violations.push(format!(
                "reservation record of order {order_id} makes no sense: state {state:?}, item {:?}",
                record.item
            )),
        }
    }
    for (column, books, records) in [
        ("reserved", &ledger.books.reserved, &reserved),
        ("released", &ledger.books.released, &released),
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
                    "{column} {item}: the books say {booked} but the reservation records add up to {recorded}"
                ));
            }
        }
    }
    violations
}

/// Rule 4: at most one notification per (order, outcome).
pub fn doubled_notifications(notifications: &[String]) -> Vec<String> {
    let mut violations = Vec::new();
    let mut sent: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (index, line) in notifications.iter().enumerate() {
        let parsed = serde_json::from_str::<Value>(line).ok();
        let field = |name: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        match (field("order_id"), field("outcome")) {
            (Some(order_id), Some(outcome)) => *sent.entry((order_id, outcome)).or_default() += 1,
            _ => violations.push(format!(
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

/// Rule 5: a final status agrees with inventory's record of the order.
pub fn statuses_disagree_with_records(
    orders: &OrderStatuses,
    records: &BTreeMap<String, Reservation>,
) -> Vec<String> {
    orders
        .iter()
        .filter_map(|(order_id, status)| {
            let status = status.as_deref()?;
            let expected = match status {
                "CONFIRMED" => "reserved",
                "FAILED" => "failed",
                "CANCELLED" => "released",
                _ => return None,
            };
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

/// Rule 6: only poison in the DLQ. A message that parses as the saga event it says it is (or,
/// saying nothing, as an OrderPlaced) should have been processed, not dead-lettered.
pub fn valid_events_in_dlq(dead_letters: &[DeadLetter]) -> Vec<String> {
    dead_letters
        .iter()
        .filter_map(|dead| {
            let (name, order_id) = match dead.event_type {
                None | Some(EventType::OrderPlaced) => OrderPlaced::from_body(&dead.body)
                    .ok()
                    .map(|e| ("OrderPlaced", e.order_id.to_string()))?,
                Some(EventType::OrderCancelled) => OrderCancelled::from_body(&dead.body)
                    .ok()
                    .map(|e| ("OrderCancelled", e.order_id.to_string()))?,
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
        Reservation {
            state: state.into(),
            item: item.map(str::to_owned),
            qty,
            released_qty,
            ..Reservation::default()
        }
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
    fn reservation_records_are_read_leniently_but_not_blindly() {
        let fields = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let tombstone =
            Reservation::from_hash(&fields(&[("state", "released"), ("released_qty", "0")]));
        assert_eq!(tombstone, Ok(record("released", None, 0, 0)));
        assert!(Reservation::from_hash(&fields(&[("state", "reserved"), ("qty", "x")])).is_err());
    }

    #[test]
    fn the_json_report_is_flat_with_ok_and_seconds() {
        let report = Report {
            orders: 2,
            by_status: [("CONFIRMED".to_owned(), 2)].into(),
            waited: Duration::from_millis(1500),
            violations: vec!["stock of burger not conserved".into()],
            ..Report::default()
        };
        let doc = serde_json::to_value(CheckDoc {
            prefix: "saga",
            ok: report.is_ok(),
            report: &report,
        })
        .unwrap();
        assert_eq!(doc["prefix"], "saga");
        assert_eq!(doc["ok"], false);
        assert_eq!(doc["orders"], 2);
        assert_eq!(doc["by_status"]["CONFIRMED"], 2);
        assert_eq!(doc["waited_secs"], 1.5);
        assert_eq!(doc["violations"][0], "stock of burger not conserved");
    }

    #[test]
    fn long_id_lists_are_shortened() {
        let ids: Vec<String> = (1..=7).map(|i| i.to_string()).collect();
        assert_eq!(some_of(&ids), "1, 2, 3, 4, 5 and 2 more");
    }
}
