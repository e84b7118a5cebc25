//! The invariant checker: wait until every order is decided, then verify that nothing was lost
//! and nothing was doubled, that no order is past its deadline and that every transition was
//! announced once (docs/DESIGN.md §6), reading Redis directly and peeking at the DLQ.
//!
//! The rules themselves are pure and live in the domain ([`saga_domain::invariants`], each
//! numbered by the invariant of docs/DESIGN.md §6 it serves); this module reads Redis and the
//! DLQ, waits for the saga to settle, applies the rules and prints what broke, one readable line
//! per violation in [`Report::violations`].
//!
//! [`check`] is a library function so the integration tests apply the very rules a person runs
//! with `sagactl check`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use redis::AsyncCommands;
use saga_domain::events::EventType;
use saga_domain::events::unix_now_millis;
use saga_domain::invariants::STATUSES_AGREE;
pub use saga_domain::invariants::{
    Archived, DeadLetter, Ledger, OrderStatuses, RuleResult, StockBooks, doubled_notifications,
    in_flight_orders, is_final, lifecycle_rules, orders_without_record, settled_rules,
    statuses_disagree_after_timeouts, statuses_disagree_with_records, totals_disagree_with_records,
    unbalanced_stock, unfinished_orders, valid_events_in_dlq,
};
use saga_domain::order::{HistoryEntry, OrderStatus, Reservation, TIMEOUT_REASON};
use saga_platform::amqp::properties::DeliveryEvent;
use saga_platform::amqp::topology::Topology;
use saga_platform::redis::store::Keys;
use saga_platform::redis::store::Redis;
use saga_platform::service::config::{Common, redact_url};
use serde::{Serialize, Serializer};

use crate::broker::{self, Held};
use crate::output::{Output, print_json};
use crate::provenance::Provenance;

const POLL_EVERY: Duration = Duration::from_millis(200);
/// Keys per Redis pipeline, so a big run does not build one huge request.
const BATCH: usize = 1000;
/// The most DLQ messages the checker holds at once while peeking.
const DLQ_PEEK_LIMIT: usize = 10_000;

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

    let lifecycle = read_lifecycle(&redis, &keys, &orders).await?;
    let mut violations = unfinished_orders(&orders, timeout);
    for rule in all_rules(&orders, &ledger, &notifications, &dead_letters, &lifecycle) {
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

/// What the lifecycle's rules read besides the statuses: order-svc's deadlines, which FAILED
/// orders failed by their deadline, and every order's timeline.
#[derive(Debug, Clone, Default)]
pub struct Lifecycle {
    /// `(order id, due ms)`, from `Keys::deadlines()`.
    pub deadlines: Vec<(String, u64)>,
    /// FAILED orders whose reason is the deadline's ([`TIMEOUT_REASON`]).
    pub timed_out: std::collections::BTreeSet<String>,
    pub histories: BTreeMap<String, Vec<HistoryEntry>>,
    /// When it was read (ms): what "past its deadline" is measured against.
    pub read_at: u64,
}

/// Every rule `sagactl check` applies once the saga has settled, but "every order decided":
/// the settled rules (with the statuses judged knowing which orders timed out) and the
/// lifecycle's.
pub fn all_rules(
    orders: &OrderStatuses,
    ledger: &Ledger,
    notifications: &[String],
    dead_letters: &[DeadLetter],
    lifecycle: &Lifecycle,
) -> Vec<RuleResult> {
    let mut rules = settled_rules(orders, ledger, notifications, dead_letters);
    for rule in rules.iter_mut().filter(|r| r.id == STATUSES_AGREE.id) {
        rule.violations =
            statuses_disagree_after_timeouts(orders, &lifecycle.timed_out, &ledger.records);
    }
    rules.extend(lifecycle_rules(
        &lifecycle.deadlines,
        orders,
        &lifecycle.histories,
        lifecycle.read_at,
    ));
    rules
}

// --- reading ---------------------------------------------------------------------------------

/// The deadlines, the timed-out orders and the timelines of `orders`, in pipelined batches.
///
/// # Errors
/// Redis unreachable.
pub async fn read_lifecycle(
    redis: &Redis,
    keys: &Keys,
    orders: &OrderStatuses,
) -> anyhow::Result<Lifecycle> {
    let mut conn = redis.clone();
    let read_at = unix_now_millis();
    let deadlines: Vec<(String, f64)> = conn
        .zrange_withscores(keys.deadlines(), 0, -1)
        .await
        .context("reading order-svc's deadlines")?;
    let deadlines = deadlines
        .into_iter()
        .map(|(id, due)| (id, due.max(0.0) as u64))
        .collect();
    let failed: Vec<&String> = orders
        .iter()
        .filter(|(_, s)| s.as_deref() == Some(OrderStatus::Failed.as_str()))
        .map(|(id, _)| id)
        .collect();
    let mut timed_out = std::collections::BTreeSet::new();
    for batch in failed.chunks(BATCH) {
        let mut pipe = redis::pipe();
        for id in batch {
            pipe.hget(keys.order(id), "reason");
        }
        let reasons: Vec<Option<String>> = pipe.query_async(&mut conn).await?;
        for (id, reason) in batch.iter().zip(reasons) {
            if reason.as_deref() == Some(TIMEOUT_REASON) {
                timed_out.insert((*id).clone());
            }
        }
    }
    let ids: Vec<&String> = orders.keys().collect();
    let mut histories = BTreeMap::new();
    for batch in ids.chunks(BATCH) {
        let mut pipe = redis::pipe();
        for id in batch {
            pipe.lrange(keys.order_history(id), 0, -1);
        }
        let lines: Vec<Vec<String>> = pipe.query_async(&mut conn).await?;
        for (id, lines) in batch.iter().zip(lines) {
            // Unreadable lines are the timeline reader's business, not this rule's.
            let history = lines
                .iter()
                .filter_map(|line| serde_json::from_str(line).ok())
                .collect();
            histories.insert((*id).clone(), history);
        }
    }
    Ok(Lifecycle {
        deadlines,
        timed_out,
        histories,
        read_at,
    })
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

/// The stock books, every reservation record and the archived totals, as one consistent
/// snapshot.
///
/// # Errors
/// Redis unreachable, or a reply that is not what the layout promises.
pub async fn read_ledger(redis: &Redis, keys: &Keys) -> anyhow::Result<Ledger> {
    // SCAN cannot run inside MULTI, so the records' keys are listed first. A reservation made
    // between that list and the MULTI would be in the books but not among the records (a false
    // "books say 4, records add up to 2" under load), so the keys are listed again afterwards:
    // if no new key appeared, none appeared before the MULTI either. A key that went away
    // meanwhile is harmless: inventory-svc deletes a record only when it folds it into the
    // archived totals, in one script, and the MULTI reads those totals too.
    const ATTEMPTS: usize = 5;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let listed = reservation_keys(redis, keys).await?;
        let ledger = read_ledger_of(redis, keys, &listed).await?;
        let again = reservation_keys(redis, keys).await?;
        if no_key_appeared(&listed, &again) || attempt == ATTEMPTS {
            return Ok(ledger);
        }
    }
}

/// Whether every key of `again` was already in `listed` (both sorted).
fn no_key_appeared(listed: &[String], again: &[String]) -> bool {
    again.iter().all(|key| listed.binary_search(key).is_ok())
}

/// Every reservation record's key, in one SCAN.
async fn reservation_keys(redis: &Redis, keys: &Keys) -> anyhow::Result<Vec<String>> {
    let mut conn = redis.clone();
    let mut record_keys: Vec<String> = Vec::new();
    let mut scan = conn.scan_match::<_, String>(keys.reservation("*")).await?;
    while let Some(key) = scan.next_item().await {
        record_keys.push(key?);
    }
    record_keys.sort();
    record_keys.dedup();
    Ok(record_keys)
}

/// The books, the archived totals and the records of `record_keys`, read in one MULTI/EXEC.
async fn read_ledger_of(
    redis: &Redis,
    keys: &Keys,
    record_keys: &[String],
) -> anyhow::Result<Ledger> {
    let mut conn = redis.clone();
    let record_prefix = keys.reservation("");
    // One MULTI/EXEC: the reserve, release and archive scripts are atomic too, so the books,
    // the archive and the records are read at one consistent moment and always agree when
    // nothing is broken.
    let mut pipe = redis::pipe();
    pipe.atomic()
        .hgetall(keys.stock())
        .hgetall(keys.stock_initial())
        .hgetall(keys.stock_reserved())
        .hgetall(keys.stock_released())
        .hgetall(keys.stock_archived_reserved())
        .hgetall(keys.stock_archived_released());
    for key in record_keys {
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
    let archived = Archived {
        reserved: next_column()?,
        released: next_column()?,
    };
    let mut ledger = Ledger {
        books,
        archived,
        ..Ledger::default()
    };
    for (key, reply) in record_keys.iter().zip(replies) {
        let fields: HashMap<String, String> = redis::from_redis_value(reply)?;
        let order_id = key.strip_prefix(&record_prefix).unwrap_or(key);
        add_record(&mut ledger, order_id, &fields);
    }
    Ok(ledger)
}

/// One record's hash into the ledger. An empty hash is a record archived since it was listed
/// (its units are in the archived totals read in the same MULTI), not an unreadable one.
fn add_record(ledger: &mut Ledger, order_id: &str, fields: &HashMap<String, String>) {
    if fields.is_empty() {
        return;
    }
    match Reservation::from_hash(fields) {
        Ok(record) => {
            ledger.records.insert(order_id.to_owned(), record);
        }
        Err(why) => ledger.unreadable.push((order_id.to_owned(), why)),
    }
}

/// What the checker needs from a message taken off the DLQ.
/// Ours (`x-dlq-*`) or the broker's (`x-death`) alike: [`Provenance`] reads both.
pub fn dead_letter_of(message: &lapin::message::Delivery) -> DeadLetter {
    let origin = Provenance::of(&message.properties);
    let routing_key = origin.routing_key.unwrap_or_default();
    DeadLetter {
        event_type: EventType::of_delivery(&routing_key, &message.properties),
        reason: Some(origin.reason),
        body: message.data.clone(),
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
    let dead_letters = held.messages.iter().map(dead_letter_of).collect();
    held.requeue_rest().await?;
    let _ = conn.close(200, "done".into()).await;
    Ok(dead_letters)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn records_archived_while_the_ledger_is_read_are_not_a_new_record_nor_unreadable() {
        let keys = |ks: &[&str]| ks.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        // A record archived (deleted) between the two listings: the snapshot stands.
        assert!(no_key_appeared(&keys(&["a", "b", "c"]), &keys(&["a", "c"])));
        // A record made meanwhile (even as another went away): read again.
        assert!(!no_key_appeared(&keys(&["a", "b"]), &keys(&["a", "d"])));

        let mut ledger = Ledger::default();
        let hash = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        add_record(&mut ledger, "gone", &HashMap::new());
        add_record(
            &mut ledger,
            "compacted",
            &hash(&[
                ("state", "reserved"),
                ("item", "burger"),
                ("qty", "2"),
                ("compacted_at", "1"),
            ]),
        );
        add_record(&mut ledger, "broken", &hash(&[("item", "burger")]));
        assert_eq!(ledger.records.len(), 1);
        assert_eq!(ledger.records["compacted"].qty, 2);
        assert_eq!(
            ledger.unreadable,
            [("broken".to_owned(), "no state".to_owned())]
        );
    }
}
