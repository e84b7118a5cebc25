//! The stock ledger in Redis: atomic reserve and release, seeding, and manual adjustments.
//!
//! Every change to stock happens inside one Lua script together with the record of *why*
//! (the order's reservation record), so a crash can never leave stock moved without a record
//! or a record without its stock move. The same script schedules the record's compaction
//! ([`crate::retention`]), so no record escapes retention.

use std::collections::BTreeMap;

use redis::Script;
use saga_domain::events::{FailureCode, InventoryOutcome, OrderPlaced, unix_now_millis};
use saga_domain::ids::{Item, OrderId, Qty, StudentId};
use saga_domain::lines::{Line, Lines, ReleasedLine, ReservedLine, UnservedLine};
use saga_domain::order::{RecordLine, Reservation, ReservationState, StockLevel};
use saga_platform::redis::store::Keys;
use saga_platform::redis::store::Redis;
use saga_platform::service::config::RetentionArgs;

use crate::catalog::signals::Reading;

/// What the ledger decided for an order, and whether this call decided it or found it decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: InventoryOutcome,
    /// The event id the outcome is announced with; the same on every re-send.
    pub event_id: String,
    /// `false` when the order had been decided before: a duplicate or a redelivery.
    pub first_time: bool,
    /// The stock of the items the decision moved, read in the same atomic step (a reservation
    /// made now); `None`: read it afterwards ([`RedisLedger::read_stock`]).
    pub readings: Option<Vec<Reading>>,
}

/// What the ledger answers for an order: the decision with its announcement, or, for a
/// duplicate that found the record compacted, only the state that is left of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Decision(Decision),
    /// A duplicate (OrderPlaced or OrderCancelled) met a record compacted after
    /// `ORDER_RETENTION`: it took no stock and gave none back, and the event id the decision
    /// was announced with is gone (see the handler for why nothing is re-announced).
    Compacted {
        order_id: OrderId,
        state: ReservationState,
    },
}

/// Why the ledger could not answer.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("corrupt reservation record for order {0}: {1}")]
    Corrupt(String, String),
}

#[derive(Clone)]
pub struct RedisLedger {
    redis: Redis,
    keys: Keys,
    retention: RetentionArgs,
    reserve: Script,
    release: Script,
    set_stock: Script,
    reading: Script,
}

impl RedisLedger {
    /// The ledger under `keys`; every decision and release schedules its record's compaction
    /// `retention.order_retention` later.
    pub fn new(redis: Redis, keys: Keys, retention: RetentionArgs) -> Self {
        Self {
            redis,
            keys,
            retention,
            reserve: Script::new(include_str!("lua/reserve.lua")),
            release: Script::new(include_str!("lua/release.lua")),
            set_stock: Script::new(include_str!("lua/set_stock.lua")),
            reading: Script::new(include_str!("lua/stock_reading.lua")),
        }
    }

    /// Reserve stock for an order, or record why not; idempotent per order id. A reservation
    /// made now comes with its stock readings ([`Decision::readings`]).
    ///
    /// # Errors
    /// Redis unreachable (transient) or a record we cannot read.
    pub async fn reserve(&self, order: &OrderPlaced) -> Result<Verdict, LedgerError> {
        let id = order.order_id.as_str();
        let new_event_id = uuid::Uuid::new_v4().to_string();
        let mut invocation = self.reserve.prepare_invoke();
        invocation
            .key(self.keys.reservation(id))
            .key(self.keys.stock())
            .key(self.keys.stock_reserved())
            .key(self.keys.reservations_compacting())
            .arg(
                order
                    .student_id
                    .as_ref()
                    .map(StudentId::as_str)
                    .unwrap_or(""),
            )
            .arg(&new_event_id)
            .arg(unix_now_millis())
            .arg(id)
            .arg(self.retention_ms())
            .arg(ReservationState::Reserved.as_str())
            .arg(ReservationState::Failed.as_str());
        for line in &order.lines {
            invocation
                .key(self.keys.product(line.item.as_str()))
                .arg(line.item.as_str())
                .arg(line.qty.get());
        }
        let (is_new, flat, read): (i64, Vec<String>, Vec<i64>) =
            invocation.invoke_async(&mut self.redis.clone()).await?;
        let mut verdict = verdict_from_record(&order.order_id, is_new == 1, &flat)?;
        if let Verdict::Decision(decision) = &mut verdict
            && !read.is_empty()
        {
            let items = order.lines.iter().map(|l| l.item.clone());
            decision.readings = Some(readings(items, &read));
        }
        Ok(verdict)
    }

    /// Give back what an order reserved (if anything); idempotent per order id.
    ///
    /// # Errors
    /// Redis unreachable (transient) or a record we cannot read.
    pub async fn release(&self, order_id: &OrderId) -> Result<Verdict, LedgerError> {
        let (is_new, flat): (i64, Vec<String>) = self
            .release
            .key(self.keys.reservation(order_id.as_str()))
            .key(self.keys.stock())
            .key(self.keys.stock_released())
            .key(self.keys.reservations_compacting())
            .key(self.keys.reservations_archiving())
            .arg(uuid::Uuid::new_v4().to_string())
            .arg(unix_now_millis())
            .arg(order_id.as_str())
            .arg(self.retention_ms())
            .arg(ReservationState::Reserved.as_str())
            .arg(ReservationState::Released.as_str())
            .invoke_async(&mut self.redis.clone())
            .await?;
        verdict_from_record(order_id, is_new == 1, &flat)
    }

    fn retention_ms(&self) -> u64 {
        millis(self.retention.order_retention)
    }

    /// Put the starting stock in place for items that have none yet (restarts keep stock).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn seed(&self, stock: &[(Item, u32)]) -> Result<usize, redis::RedisError> {
        let mut conn = self.redis.clone();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (item, qty) in stock {
            pipe.hset_nx(self.keys.stock(), item.as_str(), *qty);
            pipe.hset_nx(self.keys.stock_initial(), item.as_str(), *qty);
        }
        let added: Vec<i64> = pipe.query_async(&mut conn).await?;
        Ok(added.iter().step_by(2).filter(|n| **n == 1).count())
    }

    /// Set an item's available units (creating the item if new), keeping the books balanced;
    /// its stock events go into the catalog's outbox in the same step (`lua/set_stock.lua`).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn set_available(
        &self,
        item: &Item,
        available: u32,
    ) -> Result<i64, redis::RedisError> {
        self.set_stock
            .key(self.keys.stock())
            .key(self.keys.stock_initial())
            .key(self.keys.product(item.as_str()))
            .key(self.keys.catalog_outbox())
            .arg(item.as_str())
            .arg(available)
            .arg(unix_now_millis())
            .arg(uuid::Uuid::new_v4().to_string())
            .invoke_async(&mut self.redis.clone())
            .await
    }

    /// Each item's stock now, with a fresh `seq` of its product and its threshold, in one atomic
    /// step: what a release's stock events say, and a duplicate's re-announced ones (a
    /// reservation made now reads the same inside `lua/reserve.lua`: see [`crate::catalog`]).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn read_stock(&self, items: &[Item]) -> Result<Vec<Reading>, redis::RedisError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = self.reading.key(self.keys.stock());
        for item in items {
            invocation
                .key(self.keys.product(item.as_str()))
                .arg(item.as_str());
        }
        let flat: Vec<i64> = invocation.invoke_async(&mut self.redis.clone()).await?;
        Ok(readings(items.iter().cloned(), &flat))
    }

    /// Every item with its available, initial, reserved and released units.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn levels(&self) -> Result<BTreeMap<String, StockLevel>, redis::RedisError> {
        let mut conn = self.redis.clone();
        type Column = BTreeMap<String, i64>;
        let (available, initial, reserved, released): (Column, Column, Column, Column) =
            redis::pipe()
                .hgetall(self.keys.stock())
                .hgetall(self.keys.stock_initial())
                .hgetall(self.keys.stock_reserved())
                .hgetall(self.keys.stock_released())
                .query_async(&mut conn)
                .await?;
        Ok(available
            .into_iter()
            .map(|(item, available)| {
                let level = StockLevel {
                    available,
                    initial: initial.get(&item).copied().unwrap_or(0),
                    reserved: reserved.get(&item).copied().unwrap_or(0),
                    released: released.get(&item).copied().unwrap_or(0),
                };
                (item, level)
            })
            .collect())
    }

    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn retention(&self) -> RetentionArgs {
        self.retention
    }
}

/// A window in whole milliseconds, as the scripts' scores are (saturating: windows are at most
/// ten years, see `parse_window`).
pub(crate) fn millis(window: std::time::Duration) -> u64 {
    u64::try_from(window.as_millis()).unwrap_or(u64::MAX)
}

/// The field a compacted record carries (crate::retention, `lua/compact.lua`): when it lost
/// everything but what dedupe and the ledger need.
const COMPACTED_AT: &str = "compacted_at";

/// What a reservation record answers: a fresh decision, or a duplicate's recorded one, or for
/// a duplicate that meets a compacted record (which no longer holds the announced event id),
/// only its state.
fn verdict_from_record(
    order_id: &OrderId,
    first_time: bool,
    flat: &[String],
) -> Result<Verdict, LedgerError> {
    let compacted = flat
        .chunks_exact(2)
        .any(|kv| kv[0] == COMPACTED_AT && !kv[1].is_empty());
    // A release of a compacted record is first_time and has written its own event id: it is
    // announced like any release. Only a *duplicate* can find the announcement gone.
    if compacted && !first_time {
        let pairs = flat.chunks_exact(2).map(|kv| (&kv[0], &kv[1]));
        let record = Reservation::from_hash(pairs)
            .map_err(|why| LedgerError::Corrupt(order_id.to_string(), why))?;
        let announced = match record.state {
            ReservationState::Reserved | ReservationState::Failed => &record.event_id,
            ReservationState::Released => &record.release_event_id,
        };
        if announced.is_none() {
            return Ok(Verdict::Compacted {
                order_id: order_id.clone(),
                state: record.state,
            });
        }
    }
    decision_from_record(order_id, first_time, flat).map(Verdict::Decision)
}

/// Rebuild the outcome event from a reservation record (as written by the Lua scripts).
fn decision_from_record(
    order_id: &OrderId,
    first_time: bool,
    flat: &[String],
) -> Result<Decision, LedgerError> {
    let corrupt = |what: &str| LedgerError::Corrupt(order_id.to_string(), what.to_owned());
    let pairs = flat.chunks_exact(2).map(|kv| (&kv[0], &kv[1]));
    let record = Reservation::from_hash(pairs).map_err(|why| corrupt(&why))?;
    let item = |raw: &str| Item::parse(raw).map_err(|e| corrupt(&e.0));
    let qty = |raw: i64| Qty::parse(raw).map_err(|_| corrupt("qty"));
    let code = |raw: Option<&str>| {
        raw.and_then(FailureCode::parse)
            .ok_or_else(|| corrupt("code"))
    };
    // A lab order's one line is `item`, `qty`, `remaining`; an order of several has `lines`.
    let lines: Vec<RecordLine> = if record.lines.is_empty() {
        record
            .item
            .iter()
            .map(|item| RecordLine {
                item: item.clone(),
                qty: record.qty,
                remaining: record.remaining,
                code: None,
            })
            .collect()
    } else {
        record.lines.clone()
    };
    let asked = || -> Result<Lines, LedgerError> {
        let lines = lines
            .iter()
            .map(|l| Ok(Line::new(item(&l.item)?, qty(l.qty)?)))
            .collect::<Result<_, LedgerError>>()?;
        Lines::new(lines).map_err(|e| corrupt(&e.0))
    };
    let student_id = record
        .student_id
        .as_deref()
        .and_then(|s| StudentId::parse(s).ok());
    let order_id = order_id.clone();
    let (outcome, event_id) = match record.state {
        ReservationState::Reserved => (
            InventoryOutcome::Reserved {
                order_id,
                lines: lines
                    .iter()
                    .map(|l| {
                        Ok(ReservedLine {
                            item: item(&l.item)?,
                            qty: qty(l.qty)?,
                            remaining: l.remaining.ok_or_else(|| corrupt("remaining"))?,
                        })
                    })
                    .collect::<Result<_, LedgerError>>()?,
                student_id,
            },
            &record.event_id,
        ),
        ReservationState::Failed => {
            let first = code(record.code.as_deref())?;
            // A lab order's one line is the line that could not be served.
            let unserved = if record.lines.is_empty() {
                lines.iter().map(|l| (l, Some(first))).collect::<Vec<_>>()
            } else {
                record
                    .unserved
                    .iter()
                    .map(|l| (l, l.code.as_deref().and_then(FailureCode::parse)))
                    .collect()
            };
            (
                InventoryOutcome::Failed {
                    order_id,
                    lines: asked()?,
                    student_id,
                    code: first,
                    reason: record.reason.clone().unwrap_or_default(),
                    unserved: unserved
                        .into_iter()
                        .map(|(l, why)| {
                            Ok(UnservedLine {
                                item: item(&l.item)?,
                                qty: qty(l.qty)?,
                                code: why.ok_or_else(|| corrupt("unserved code"))?,
                            })
                        })
                        .collect::<Result<_, LedgerError>>()?,
                },
                &record.event_id,
            )
        }
        ReservationState::Released => (
            InventoryOutcome::Released {
                order_id,
                // What went back: every line, or nothing (a failed order, or a tombstone: a
                // cancel before any OrderPlaced).
                lines: if record.released_qty == 0 {
                    Vec::new()
                } else {
                    lines
                        .iter()
                        .map(|l| {
                            Ok(ReleasedLine {
                                item: item(&l.item)?,
                                qty: u32::try_from(l.qty).map_err(|_| corrupt("qty"))?,
                            })
                        })
                        .collect::<Result<_, LedgerError>>()?
                },
            },
            &record.release_event_id,
        ),
    };
    Ok(Decision {
        outcome,
        event_id: event_id.clone().unwrap_or_default(),
        first_time,
        readings: None,
    })
}

/// Readings as the scripts return them: `{seq, stock, low_threshold}` per item, in turn.
fn readings(items: impl Iterator<Item = Item>, flat: &[i64]) -> Vec<Reading> {
    let at = unix_now_millis();
    items
        .zip(flat.chunks_exact(3))
        .map(|(item, r)| Reading {
            item,
            seq: u64::try_from(r[0]).unwrap_or(0),
            stock: r[1],
            low_threshold: u32::try_from(r[2]).unwrap_or(0),
            at,
        })
        .collect()
}

/// Items with their units, e.g. the starting stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockList(pub Vec<(Item, u32)>);

/// Parse `burger=100,pizza=50` into a stock list.
///
/// # Errors
/// A malformed pair, a bad item name or a negative/non-numeric quantity.
pub fn parse_stock_list(s: &str) -> Result<StockList, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let (item, qty) = pair
                .split_once('=')
                .ok_or_else(|| format!("expected item=qty, got {pair:?}"))?;
            let item = Item::parse(item.trim()).map_err(|e| e.0)?;
            let qty = qty
                .trim()
                .parse::<u32>()
                .map_err(|_| format!("bad quantity in {pair:?}"))?;
            Ok((item, qty))
        })
        .collect::<Result<_, _>>()
        .map(StockList)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(pairs: &[(&str, &str)]) -> Vec<String> {
        pairs
            .iter()
            .flat_map(|(k, v)| [k.to_string(), v.to_string()])
            .collect()
    }

    #[test]
    fn rebuilds_each_outcome_from_its_record() {
        let id = OrderId::parse("o1").unwrap();
        let reserved = rec(&[
            ("state", "reserved"),
            ("item", "burger"),
            ("qty", "2"),
            ("student_id", "s1"),
            ("event_id", "e1"),
            ("remaining", "98"),
        ]);
        let d = decision_from_record(&id, true, &reserved).unwrap();
        assert_eq!(d.event_id, "e1");
        let InventoryOutcome::Reserved { lines, .. } = &d.outcome else {
            panic!("{d:?}");
        };
        assert_eq!(lines[0].remaining, 98);

        let failed = rec(&[
            ("state", "failed"),
            ("item", "kebab"),
            ("qty", "1"),
            ("student_id", ""),
            ("event_id", "e2"),
            ("code", "unknown_item"),
            ("reason", "unknown item \"kebab\""),
        ]);
        let d = decision_from_record(&id, false, &failed).unwrap();
        assert!(matches!(
            d.outcome,
            InventoryOutcome::Failed {
                code: FailureCode::UnknownItem,
                student_id: None,
                ..
            }
        ));

        let tombstone = rec(&[
            ("state", "released"),
            ("released_qty", "0"),
            ("release_event_id", "e3"),
        ]);
        let d = decision_from_record(&id, true, &tombstone).unwrap();
        assert_eq!(d.event_id, "e3");
        assert!(matches!(
            &d.outcome,
            InventoryOutcome::Released { lines, .. } if lines.is_empty()
        ));

        assert!(decision_from_record(&id, true, &rec(&[("state", "weird")])).is_err());
    }

    #[test]
    fn a_duplicate_that_meets_a_compacted_record_gets_only_its_state() {
        let id = OrderId::parse("o1").unwrap();
        // What lua/compact.lua leaves of a reserved record.
        let compacted = rec(&[
            ("state", "reserved"),
            ("item", "burger"),
            ("qty", "2"),
            ("compacted_at", "1700000000000"),
        ]);
        assert_eq!(
            verdict_from_record(&id, false, &compacted).unwrap(),
            Verdict::Compacted {
                order_id: id.clone(),
                state: ReservationState::Reserved
            }
        );
        let tombstone = rec(&[
            ("state", "released"),
            ("released_qty", "0"),
            ("compacted_at", "1"),
        ]);
        assert!(matches!(
            verdict_from_record(&id, false, &tombstone).unwrap(),
            Verdict::Compacted {
                state: ReservationState::Released,
                ..
            }
        ));

        // The first release of a compacted record wrote its own event id: announced as usual,
        // and so is a duplicate of it until the record is compacted again.
        let released = rec(&[
            ("state", "released"),
            ("item", "burger"),
            ("qty", "2"),
            ("released_qty", "2"),
            ("compacted_at", "1700000000000"),
            ("release_event_id", "e9"),
        ]);
        for first_time in [true, false] {
            let Verdict::Decision(d) = verdict_from_record(&id, first_time, &released).unwrap()
            else {
                panic!("a release with its event id is a decision");
            };
            assert_eq!(d.event_id, "e9");
            assert!(matches!(
                &d.outcome,
                InventoryOutcome::Released { lines, .. } if lines.len() == 1 && lines[0].qty == 2
            ));
        }
    }

    #[test]
    fn an_order_of_several_lines_is_rebuilt_from_its_lines() {
        let id = OrderId::parse("o2").unwrap();
        let reserved = rec(&[
            ("state", "reserved"),
            ("event_id", "e1"),
            (
                "lines",
                r#"[{"item":"burger","qty":2,"remaining":98},{"item":"pizza","qty":1,"remaining":49}]"#,
            ),
        ]);
        let d = decision_from_record(&id, true, &reserved).unwrap();
        assert_eq!(d.outcome.schema_version().major, 2);
        let InventoryOutcome::Reserved { lines, .. } = &d.outcome else {
            panic!("{d:?}");
        };
        assert_eq!(
            lines.iter().map(|l| l.remaining).collect::<Vec<_>>(),
            [98, 49]
        );

        let failed = rec(&[
            ("state", "failed"),
            ("event_id", "e2"),
            ("code", "insufficient_stock"),
            ("reason", "insufficient stock for pizza"),
            (
                "lines",
                r#"[{"item":"burger","qty":2},{"item":"pizza","qty":9}]"#,
            ),
            (
                "unserved",
                r#"[{"item":"pizza","qty":9,"code":"insufficient_stock"}]"#,
            ),
        ]);
        let d = decision_from_record(&id, false, &failed).unwrap();
        let InventoryOutcome::Failed {
            lines, unserved, ..
        } = &d.outcome
        else {
            panic!("{d:?}");
        };
        assert_eq!(lines.len(), 2);
        assert_eq!(unserved.len(), 1);
        assert_eq!(unserved[0].item.as_str(), "pizza");

        // Released after a reservation: every line went back.
        let released = rec(&[
            ("state", "released"),
            ("released_qty", "3"),
            ("release_event_id", "e3"),
            (
                "lines",
                r#"[{"item":"burger","qty":2,"remaining":98},{"item":"pizza","qty":1,"remaining":49}]"#,
            ),
        ]);
        let d = decision_from_record(&id, true, &released).unwrap();
        let InventoryOutcome::Released { lines, .. } = &d.outcome else {
            panic!("{d:?}");
        };
        assert_eq!(lines.iter().map(|l| l.qty).sum::<u32>(), 3);
    }

    #[test]
    fn stock_lists() {
        let s = parse_stock_list("burger=100, pizza=50").unwrap().0;
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].1, 50);
        assert!(parse_stock_list("burger").is_err());
        assert!(parse_stock_list("burger=-1").is_err());
    }
}
