//! What inventory-svc does with one delivery from `inventory_queue`.
//!
//! The consume loop parses each delivery into a [`Command`] (poison goes to the DLQ there);
//! [`InventoryHandler::handle`] decides it through the [`Ledger`] (in Redis: one Lua script) and
//! returns the decision's event for the loop to publish, with confirms, before it acks. A
//! duplicate re-announces the recorded decision with its original event id: the first attempt
//! may have died after the Redis write and before its publish, so "skip silently" would lose the
//! outcome. A duplicate that meets a record compacted after `ORDER_RETENTION` re-announces
//! nothing (see [`InventoryHandler::handle`] for why); it takes no stock and gives none back.
//!
//! A decision that moved stock also announces the product's stock events after the outcome
//! (`product.stock.updated`, and `.low` or `.out` when it crossed them: [`crate::catalog::signals`]),
//! published and confirmed by the loop before the ack like the outcome, and re-sent with it.

use std::future::Future;

use saga_domain::events::{EventMeta, EventType, InventoryOutcome, OrderCancelled, OrderPlaced};
use saga_domain::ids::{Item, OrderId};
use saga_domain::order::ReservationState;
use saga_domain::wire::Malformed;
use saga_platform::amqp::consumer::{Announcement, DeliveryMeta, Handler, Outcome};
use tracing::info;

use crate::catalog::signals::{self, Reading};
use crate::stock::{Decision, LedgerError, RedisLedger, Verdict};

pub const SERVICE: &str = "inventory-svc";

/// The stock ledger as the handler needs it: decide an order once, give a cancelled order's
/// stock back once. [`RedisLedger`] does it in Lua; the unit tests use an in-memory fake.
pub trait Ledger: Send + Sync + 'static {
    /// Reserve stock for the order, or record why not; on a second call, the recorded decision
    /// (or, once the record is compacted, what is left of it).
    fn reserve(
        &self,
        order: &OrderPlaced,
    ) -> impl Future<Output = Result<Verdict, LedgerError>> + Send;

    /// Give back what the order reserved (if anything); on a second call, the recorded release
    /// (or, once the record is compacted, what is left of it).
    fn release(
        &self,
        order_id: &OrderId,
    ) -> impl Future<Output = Result<Verdict, LedgerError>> + Send;

    /// The stock of `items` now, each with a fresh `seq`, for their stock events. A ledger that
    /// keeps no catalog reads nothing, and its decisions announce no stock events.
    fn read_stock(
        &self,
        _items: &[Item],
    ) -> impl Future<Output = Result<Vec<Reading>, LedgerError>> + Send {
        async { Ok(Vec::new()) }
    }
}

impl Ledger for RedisLedger {
    async fn reserve(&self, order: &OrderPlaced) -> Result<Verdict, LedgerError> {
        RedisLedger::reserve(self, order).await
    }
    async fn release(&self, order_id: &OrderId) -> Result<Verdict, LedgerError> {
        RedisLedger::release(self, order_id).await
    }
    async fn read_stock(&self, items: &[Item]) -> Result<Vec<Reading>, LedgerError> {
        Ok(RedisLedger::read_stock(self, items).await?)
    }
}

pub struct InventoryHandler<L> {
    pub ledger: L,
    /// The majors of OrderPlaced read (`ORDER_PLACED_READS`): `[1, 2]`, or `[1]` in the
    /// schema-evolution drill.
    pub order_placed_reads: &'static [u16],
}

/// The two commands inventory-svc understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Reserve(OrderPlaced),
    Release(OrderCancelled),
}

impl<L: Ledger> Handler for InventoryHandler<L> {
    type Event = Command;

    fn parse(meta: &DeliveryMeta, body: &[u8]) -> Result<Command, Malformed> {
        // Lab scripts may publish straight to the queue with no type: an order is the default.
        match meta.event_type() {
            Some(EventType::OrderCancelled) => {
                Ok(Command::Release(OrderCancelled::from_body(body)?))
            }
            Some(EventType::OrderPlaced) | None => Ok(Command::Reserve(OrderPlaced::from_body_at(
                body,
                meta.version(),
            )?)),
            Some(other) => Err(Malformed(format!(
                "{} does not belong on the inventory queue",
                other.name()
            ))),
        }
    }

    fn reads(&self, event: EventType) -> &'static [u16] {
        match event {
            EventType::OrderPlaced => self.order_placed_reads,
            other => other.majors(),
        }
    }

    async fn handle(&self, command: &Command, meta: &DeliveryMeta) -> Outcome {
        let decision = match command {
            Command::Reserve(order) => self.ledger.reserve(order).await,
            Command::Release(cancel) => self.ledger.release(&cancel.order_id).await,
        };
        let decision = match decision {
            Ok(Verdict::Decision(decision)) => decision,
            // The record was compacted, so this is a duplicate from long ago (ORDER_RETENTION
            // after the decision): it took no stock and gave none back. Nothing is re-announced.
            // The re-announce exists for a first attempt that died between the ledger and its
            // publish; that redelivery comes within moments, not days, and order-svc's decision
            // deadline covers even that case. A re-announce now would need a fresh event id
            // (the recorded one is gone), which consumers could not tell from a new decision:
            // it could re-notify a customer or reach an order that has itself expired.
            Ok(Verdict::Compacted { order_id, state }) => {
                log_compacted_duplicate(&order_id, state, meta.redelivered);
                return Outcome::Duplicate(Vec::new());
            }
            Err(e) => return Outcome::Failed(e.into()),
        };
        log_decision(&decision, meta.redelivered);
        record_stock_gauge(&decision.outcome);
        // A duplicate re-announces the recorded decision with its original event id: the first
        // attempt may have died after the ledger and before its publish.
        let mut announce = vec![announcement(&decision, meta.correlation_id.as_deref())];
        // Its stock events after it, for the same reason (their ids derive from the decision's).
        match self.stock_events(&decision, meta).await {
            Ok(events) => announce.extend(events),
            Err(e) => return Outcome::Failed(e.into()),
        }
        if decision.first_time {
            Outcome::Processed(announce)
        } else {
            Outcome::Duplicate(announce)
        }
    }
}

impl<L: Ledger> InventoryHandler<L> {
    /// The stock events of what the decision moved, line by line.
    async fn stock_events(
        &self,
        decision: &Decision,
        meta: &DeliveryMeta,
    ) -> Result<Vec<Announcement>, LedgerError> {
        let moves = signals::stock_moves(&decision.outcome);
        // A reservation made now read its stock in its own step; anything else reads it now.
        let readings = match &decision.readings {
            Some(readings) => readings.clone(),
            None => {
                let items: Vec<Item> = moves.iter().map(|m| m.item.clone()).collect();
                self.ledger.read_stock(&items).await?
            }
        };
        let order_id = decision.outcome.order_id().as_str();
        let correlation_id = meta.correlation_id.as_deref().unwrap_or(order_id);
        Ok(signals::announcements(
            &moves,
            &readings,
            &decision.event_id,
            correlation_id,
        ))
    }
}

/// The decision's event, with its recorded event id.
fn announcement(decision: &Decision, correlation_id: Option<&str>) -> Announcement {
    let event_type = decision.outcome.event_type();
    let order_id = decision.outcome.order_id().as_str();
    let mut meta = EventMeta::new(event_type, correlation_id.unwrap_or(order_id), SERVICE)
        .versioned(decision.outcome.schema_version());
    meta.event_id = decision.event_id.clone();
    Announcement {
        meta,
        body: decision.outcome.to_body(),
    }
}

/// One readable line per business event, worded as the classic lab's drills grep for them
/// (`Reserved 5 burger for order <id>`, `Duplicate detected for order <id>`). The order id is
/// in the text and in the delivery's span; the rest are structured fields as well.
fn log_decision(decision: &Decision, redelivered: bool) {
    let order_id = decision.outcome.order_id().as_str();
    if !decision.first_time {
        info!(verdict = "duplicate", outcome = decision.outcome.status(), event_id = %decision.event_id, redelivered,
              "Duplicate detected for order {order_id}: re-sending the recorded outcome");
        return;
    }
    match &decision.outcome {
        InventoryOutcome::Reserved { lines, .. } => match lines.as_slice() {
            [line] => {
                let (item, qty, remaining) = (&line.item, line.qty, line.remaining);
                info!(%item, %qty, remaining, "Reserved {qty} {item} for order {order_id}")
            }
            lines => {
                let what = words(lines.iter().map(|l| (l.qty.get(), &l.item)));
                info!(lines = lines.len(), "Reserved {what} for order {order_id}")
            }
        },
        InventoryOutcome::Failed {
            lines,
            reason,
            code,
            unserved,
            ..
        } => {
            let line = lines.first();
            let (item, qty) = (&line.item, line.qty);
            info!(%item, %qty, code = code.as_str(), lines = lines.len(), unserved = unserved.len(),
                  "InventoryFailed for order {order_id}: {reason}")
        }
        InventoryOutcome::Released { lines, .. } => match lines.as_slice() {
            [] => info!(
                "Cancel for order {order_id} arrived before the order, or the order had failed: recorded, nothing to release"
            ),
            [line] => {
                let (item, qty) = (&line.item, line.qty);
                info!(%item, qty, "Released {qty} {item} for order {order_id} (order cancelled)")
            }
            lines => {
                let what = words(lines.iter().map(|l| (l.qty, &l.item)));
                info!(
                    lines = lines.len(),
                    "Released {what} for order {order_id} (order cancelled)"
                )
            }
        },
    }
}

fn log_compacted_duplicate(order_id: &OrderId, state: ReservationState, redelivered: bool) {
    info!(
        verdict = "duplicate",
        outcome = state.as_str(),
        compacted = true,
        redelivered,
        "Duplicate detected for order {order_id}: its record ({state}) was compacted after retention; nothing taken, nothing re-sent"
    );
}

/// `2 burger, 1 pizza`: the lines of a log line.
fn words<'a, Q: std::fmt::Display>(
    lines: impl Iterator<Item = (Q, &'a saga_domain::ids::Item)>,
) -> String {
    lines
        .map(|(qty, item)| format!("{qty} {item}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn record_stock_gauge(outcome: &InventoryOutcome) {
    if let InventoryOutcome::Reserved { lines, .. } = outcome {
        for line in lines {
            metrics::gauge!("saga_stock_available", "item" => line.item.to_string())
                .set(line.remaining as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The handler against an in-memory ledger that keeps the Lua scripts' promises (decide once,
    //! release once, a cancel before its order leaves a tombstone). The scripts themselves are
    //! exercised against real Redis by the integration tests.

    use std::collections::{HashMap, HashSet};
    use std::sync::Mutex;

    use saga_domain::events::FailureCode;
    use saga_domain::ids::{Item, Qty};
    use saga_domain::lines::{Line, Lines, ReleasedLine, ReservedLine, UnservedLine};
    use saga_platform::amqp::retry::is_outage;

    use super::*;

    /// What the fake should do on its next call.
    #[derive(Clone, Copy, PartialEq)]
    enum Mood {
        Fine,
        /// Redis unreachable: an outage.
        Unreachable,
        /// A record that cannot be read: a failure no waiting cures.
        Corrupt,
    }

    struct FakeLedger {
        stock: Mutex<HashMap<String, i64>>,
        records: Mutex<HashMap<String, Decision>>,
        /// Records compacted after retention: the announcement is gone, the stock facts stay.
        compacted: Mutex<HashSet<String>>,
        mood: Mutex<Mood>,
    }

    impl FakeLedger {
        fn with(stock: &[(&str, i64)]) -> Self {
            Self {
                stock: Mutex::new(stock.iter().map(|(i, q)| ((*i).to_owned(), *q)).collect()),
                records: Mutex::new(HashMap::new()),
                compacted: Mutex::new(HashSet::new()),
                mood: Mutex::new(Mood::Fine),
            }
        }

        fn trouble(&self) -> Result<(), LedgerError> {
            match *self.mood.lock().unwrap() {
                Mood::Fine => Ok(()),
                Mood::Unreachable => Err(LedgerError::Redis(redis::RedisError::from(
                    std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
                ))),
                Mood::Corrupt => Err(LedgerError::Corrupt("o".into(), "qty".into())),
            }
        }

        fn available(&self, item: &str) -> Option<i64> {
            self.stock.lock().unwrap().get(item).copied()
        }

        /// What `lua/compact.lua` does to a record, as far as the handler can tell.
        fn compact(&self, order_id: &str) {
            self.compacted.lock().unwrap().insert(order_id.to_owned());
        }

        /// A duplicate's answer: the recorded decision, or only its state once compacted.
        fn recorded(&self, recorded: &Decision) -> Verdict {
            let order_id = recorded.outcome.order_id();
            if self.compacted.lock().unwrap().contains(order_id.as_str()) {
                let state = match recorded.outcome {
                    InventoryOutcome::Reserved { .. } => ReservationState::Reserved,
                    InventoryOutcome::Failed { .. } => ReservationState::Failed,
                    InventoryOutcome::Released { .. } => ReservationState::Released,
                };
                return Verdict::Compacted {
                    order_id: order_id.clone(),
                    state,
                };
            }
            Verdict::Decision(Decision {
                first_time: false,
                ..recorded.clone()
            })
        }
    }

    impl Ledger for FakeLedger {
        async fn reserve(&self, order: &OrderPlaced) -> Result<Verdict, LedgerError> {
            self.trouble()?;
            let mut records = self.records.lock().unwrap();
            if let Some(recorded) = records.get(order.order_id.as_str()) {
                return Ok(self.recorded(recorded));
            }
            let mut stock = self.stock.lock().unwrap();
            // All or nothing, as lua/reserve.lua: look at every line, then take them all.
            let unserved: Vec<UnservedLine> = order
                .lines
                .iter()
                .filter_map(|line| {
                    let code = match stock.get(line.item.as_str()) {
                        None => FailureCode::UnknownItem,
                        Some(left) if *left < i64::from(line.qty.get()) => {
                            FailureCode::InsufficientStock
                        }
                        Some(_) => return None,
                    };
                    Some(UnservedLine {
                        item: line.item.clone(),
                        qty: line.qty,
                        code,
                    })
                })
                .collect();
            let outcome = match unserved.first() {
                Some(first) => InventoryOutcome::Failed {
                    order_id: order.order_id.clone(),
                    lines: order.lines.clone(),
                    student_id: None,
                    code: first.code,
                    reason: format!("{} unserved", first.item),
                    unserved,
                },
                None => InventoryOutcome::Reserved {
                    order_id: order.order_id.clone(),
                    lines: order
                        .lines
                        .iter()
                        .map(|line| {
                            let left = stock.get_mut(line.item.as_str()).unwrap();
                            *left -= i64::from(line.qty.get());
                            ReservedLine {
                                item: line.item.clone(),
                                qty: line.qty,
                                remaining: *left,
                            }
                        })
                        .collect(),
                    student_id: None,
                },
            };
            let decision = Decision {
                outcome,
                event_id: format!("event-{}", records.len() + 1),
                first_time: true,
                readings: None,
            };
            records.insert(order.order_id.to_string(), decision.clone());
            Ok(Verdict::Decision(decision))
        }

        async fn release(&self, order_id: &OrderId) -> Result<Verdict, LedgerError> {
            self.trouble()?;
            let mut records = self.records.lock().unwrap();
            let previous = records.get(order_id.as_str()).cloned();
            if let Some(
                d @ Decision {
                    outcome: InventoryOutcome::Released { .. },
                    ..
                },
            ) = &previous
            {
                return Ok(self.recorded(d));
            }
            // A release writes a fresh event id, compacted record or not (lua/release.lua).
            self.compacted.lock().unwrap().remove(order_id.as_str());
            let lines = match previous.map(|d| d.outcome) {
                Some(InventoryOutcome::Reserved { lines, .. }) => lines
                    .into_iter()
                    .map(|line| {
                        *self
                            .stock
                            .lock()
                            .unwrap()
                            .entry(line.item.to_string())
                            .or_default() += i64::from(line.qty.get());
                        ReleasedLine {
                            item: line.item,
                            qty: line.qty.get(),
                        }
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let decision = Decision {
                outcome: InventoryOutcome::Released {
                    order_id: order_id.clone(),
                    lines,
                },
                event_id: format!("release-{order_id}"),
                first_time: true,
                readings: None,
            };
            records.insert(order_id.to_string(), decision.clone());
            Ok(Verdict::Decision(decision))
        }
    }

    fn place(id: &str, item: &str, qty: u32) -> Command {
        place_lines(id, &[(item, qty)])
    }

    fn place_lines(id: &str, lines: &[(&str, u32)]) -> Command {
        let lines = lines
            .iter()
            .map(|(item, qty)| {
                Line::new(
                    Item::parse(item).unwrap(),
                    Qty::parse(i64::from(*qty)).unwrap(),
                )
            })
            .collect();
        Command::Reserve(OrderPlaced {
            order_id: OrderId::parse(id).unwrap(),
            lines: Lines::new(lines).unwrap(),
            student_id: None,
        })
    }

    fn cancel(id: &str) -> Command {
        Command::Release(OrderCancelled {
            order_id: OrderId::parse(id).unwrap(),
            reason: "changed my mind".into(),
        })
    }

    /// The outcome's label and its announced event types.
    fn summary(outcome: &Outcome) -> (&'static str, Vec<EventType>) {
        let types = |a: &[Announcement]| a.iter().map(|a| a.meta.event_type).collect();
        match outcome {
            Outcome::Processed(a) => ("processed", types(a)),
            Outcome::Duplicate(a) => ("duplicate", types(a)),
            Outcome::Failed(e) if is_outage(e) => ("outage", vec![]),
            Outcome::Failed(_) => ("failed", vec![]),
        }
    }

    #[tokio::test]
    async fn each_command_in_turn() {
        use EventType::*;
        let handler = InventoryHandler {
            order_placed_reads: &[1, 2],
            ledger: FakeLedger::with(&[("burger", 5)]),
        };
        let meta = DeliveryMeta::default();
        // (what happens, command, outcome, announced, burger left after)
        let steps = [
            (
                "new order",
                place("a", "burger", 2),
                "processed",
                vec![InventoryReserved],
                3,
            ),
            (
                "the same order again",
                place("a", "burger", 2),
                "duplicate",
                vec![InventoryReserved],
                3,
            ),
            (
                "not enough stock",
                place("b", "burger", 4),
                "processed",
                vec![InventoryFailed],
                3,
            ),
            (
                "unknown item",
                place("c", "kebab", 1),
                "processed",
                vec![InventoryFailed],
                3,
            ),
            (
                "cancel a reserved order",
                cancel("a"),
                "processed",
                vec![InventoryReleased],
                5,
            ),
            (
                "the cancel again",
                cancel("a"),
                "duplicate",
                vec![InventoryReleased],
                5,
            ),
            (
                "a cancel before its order",
                cancel("d"),
                "processed",
                vec![InventoryReleased],
                5,
            ),
            (
                "its late order",
                place("d", "burger", 1),
                "duplicate",
                vec![InventoryReleased],
                5,
            ),
        ];
        for (what, command, label, announced, left) in steps {
            let outcome = handler.handle(&command, &meta).await;
            assert_eq!(summary(&outcome), (label, announced), "{what}");
            assert_eq!(handler.ledger.available("burger"), Some(left), "{what}");
        }
    }

    #[tokio::test]
    async fn after_compaction_a_duplicate_takes_nothing_and_announces_nothing() {
        use EventType::*;
        let handler = InventoryHandler {
            order_placed_reads: &[1, 2],
            ledger: FakeLedger::with(&[("burger", 10)]),
        };
        let meta = DeliveryMeta::default();
        for command in [
            place("a", "burger", 2),
            place("b", "burger", 3),
            cancel("b"),
        ] {
            handler.handle(&command, &meta).await;
        }
        assert_eq!(handler.ledger.available("burger"), Some(8));
        handler.ledger.compact("a");
        handler.ledger.compact("b");
        // (what happens, command, outcome, announced, burger left after)
        let steps = [
            (
                "a duplicate of a compacted reserved order",
                place("a", "burger", 2),
                "duplicate",
                vec![],
                8,
            ),
            (
                "a duplicate of a compacted released order",
                place("b", "burger", 3),
                "duplicate",
                vec![],
                8,
            ),
            (
                "a duplicate cancel of it",
                cancel("b"),
                "duplicate",
                vec![],
                8,
            ),
            (
                "cancelling the compacted reserved order gives its stock back",
                cancel("a"),
                "processed",
                vec![InventoryReleased],
                10,
            ),
            (
                "and a duplicate of that cancel re-announces it, once",
                cancel("a"),
                "duplicate",
                vec![InventoryReleased],
                10,
            ),
        ];
        for (what, command, label, announced, left) in steps {
            let outcome = handler.handle(&command, &meta).await;
            assert_eq!(summary(&outcome), (label, announced), "{what}");
            assert_eq!(handler.ledger.available("burger"), Some(left), "{what}");
        }
    }

    #[tokio::test]
    async fn a_duplicate_re_announces_the_recorded_event_id() {
        let handler = InventoryHandler {
            order_placed_reads: &[1, 2],
            ledger: FakeLedger::with(&[("burger", 5)]),
        };
        let meta = DeliveryMeta {
            correlation_id: Some("corr-1".into()),
            ..Default::default()
        };
        let order = place("a", "burger", 1);
        let ids: Vec<(String, String)> =
            futures_util::future::join_all([1, 2].map(|_| handler.handle(&order, &meta)))
                .await
                .into_iter()
                .map(|outcome| match outcome {
                    Outcome::Processed(a) | Outcome::Duplicate(a) => {
                        (a[0].meta.event_id.clone(), a[0].meta.correlation_id.clone())
                    }
                    Outcome::Failed(e) => panic!("{e}"),
                })
                .collect();
        assert_eq!(ids[0], ids[1]);
        assert_eq!(ids[0].1, "corr-1");
    }

    #[tokio::test]
    async fn trouble_is_reported_for_the_loop_to_classify() {
        let handler = InventoryHandler {
            order_placed_reads: &[1, 2],
            ledger: FakeLedger::with(&[("burger", 5)]),
        };
        let meta = DeliveryMeta::default();
        for (mood, label) in [(Mood::Unreachable, "outage"), (Mood::Corrupt, "failed")] {
            *handler.ledger.mood.lock().unwrap() = mood;
            let outcome = handler.handle(&place("a", "burger", 1), &meta).await;
            assert_eq!(summary(&outcome).0, label);
            assert_eq!(handler.ledger.available("burger"), Some(5), "nothing moved");
        }
    }

    #[test]
    fn parsing_tells_commands_and_poison_apart() {
        type H = InventoryHandler<FakeLedger>;
        let meta = |key: &str| DeliveryMeta {
            routing_key: key.into(),
            ..Default::default()
        };
        let order = br#"{"order_id":"a","item":"burger","qty":1}"#;
        assert!(matches!(
            H::parse(&meta("order.placed"), order),
            Ok(Command::Reserve(_))
        ));
        // A lab script's bare message straight to the queue: an order.
        assert!(matches!(
            H::parse(&meta("inventory_queue"), order),
            Ok(Command::Reserve(_))
        ));
        let cancel = br#"{"order_id":"a"}"#;
        assert!(matches!(
            H::parse(&meta("order.cancelled"), cancel),
            Ok(Command::Release(_))
        ));
        let wrong = H::parse(&meta("inventory.reserved"), order).unwrap_err();
        assert_eq!(
            wrong.0,
            "InventoryReserved does not belong on the inventory queue"
        );
        let bad = H::parse(
            &meta("order.placed"),
            br#"{"order_id":"a","item":"burger","qty":0}"#,
        );
        assert_eq!(bad.unwrap_err().0, "qty must be at least 1, got 0");
    }
}
