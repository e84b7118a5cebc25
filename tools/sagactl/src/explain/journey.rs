//! The journey model: an order's [`Timeline`] (what the services recorded in Redis) told as a
//! [`Journey`], a headline and its steps in time order, with nothing to do with how it is shown.
//!
//! [`journey`] is a pure function, so every story it tells is unit-tested below without Redis:
//! a plain confirmation, a redelivery, a duplicate that inventory absorbed, a DLQ hop, a
//! compensation, a cancel that overtook its order, an order shipped and delivered, one failed
//! by its decision deadline, and one compacted after its retention. Every move order-svc made
//! is followed by the `order.status.updated` it announced it with. Each step runs between two of five lanes
//! (client, order-svc, broker, inventory-svc, notification-svc) and says what happened, when,
//! with which event id, and why it could not lose or double anything.
//!
//! Some moments are not recorded anywhere (the outbox relay's publish has no timestamp): those
//! steps carry no time and are placed right after the step that caused them.

use std::collections::HashSet;

use serde::Serialize;

use saga_domain::events::EventType;
use saga_domain::order::{OrderStatus, ReservationState, TIMEOUT_REASON};

use crate::timeline::{DlqHop, HistoryEntry, ReservationRecord, Timeline};

/// Who takes part in an order's journey: the columns of the swimlane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lane {
    Client,
    OrderSvc,
    Broker,
    InventorySvc,
    NotificationSvc,
}

impl Lane {
    pub const ALL: [Lane; 5] = [
        Self::Client,
        Self::OrderSvc,
        Self::Broker,
        Self::InventorySvc,
        Self::NotificationSvc,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::OrderSvc => "order-svc",
            Self::Broker => "broker",
            Self::InventorySvc => "inventory-svc",
            Self::NotificationSvc => "notification-svc",
        }
    }

    /// The lane of a service named in a record; anything else (sagactl, a lab script) is a
    /// client.
    fn of_service(service: &str) -> Self {
        match service {
            "order-svc" => Self::OrderSvc,
            "inventory-svc" => Self::InventorySvc,
            "notification-svc" => Self::NotificationSvc,
            _ => Self::Client,
        }
    }
}

/// What kind of step it is; the swimlane draws each kind its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    /// A client's HTTP request.
    Request,
    /// A publish, confirmed by the broker.
    Publish,
    /// A delivery that did its work.
    Deliver,
    /// A delivery the broker made again because an earlier one was never acked.
    Redelivery,
    /// The same event again: absorbed, nothing changed.
    Duplicate,
    /// An event that arrived after the order had moved on: recorded, not applied.
    Late,
    /// A poison message moved to the DLQ.
    DeadLetter,
    /// The compensating step: stock given back for a cancelled order.
    Compensation,
    /// A notification sent.
    Notify,
    /// order-svc announcing a move (`order.status.updated`, from the outbox).
    StatusEvent,
    /// A deadline that passed: order-svc's sweeper acted on its own.
    Timeout,
}

/// One arrow of the journey.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Milliseconds since the Unix epoch; `None` when no record says when.
    pub at: Option<u64>,
    pub from: Lane,
    pub to: Lane,
    pub kind: StepKind,
    /// What happened, in a few words.
    pub what: String,
    /// The event, e.g. `InventoryReserved` (its type name in JSON).
    pub event: Option<EventType>,
    pub event_id: Option<String>,
    /// Why this step could not lose or double anything.
    pub why: String,
}

/// An order's journey: a headline and its steps in time order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Journey {
    pub order_id: String,
    /// One line: what was ordered and where it stands.
    pub headline: String,
    pub status: Option<String>,
    pub steps: Vec<Step>,
    /// What a reader should know that is not a step (e.g. "not decided yet").
    pub notes: Vec<String>,
}

/// Tell the story the records tell.
pub fn journey(timeline: &Timeline) -> Journey {
    let mut story = Story::default();
    let order_id = timeline.order_id.as_str();
    origin(&mut story, timeline);
    decision(&mut story, timeline);
    release(&mut story, timeline);
    order_svc_history(&mut story, timeline);
    for hop in &timeline.dlq_hops {
        dead_letter(&mut story, hop);
    }
    for note in &timeline.notifications {
        story.push(
            Some(note.at_ms),
            Step {
                at: Some(note.at_ms),
                from: Lane::Broker,
                to: Lane::NotificationSvc,
                kind: StepKind::Notify,
                what: format!("notified: {}", note.outcome),
                event: Some(note.outcome.event_type()),
                event_id: Some(note.event_id.clone()).filter(|id| !id.is_empty()),
                why: "the (order, outcome) pair was claimed in Redis before sending and recorded \
                      as sent after the sink took it: one notification however often the event \
                      is delivered"
                    .into(),
            },
        );
    }

    let mut notes = Vec::new();
    let status = timeline
        .order
        .as_ref()
        .map(|o| o.status.clone())
        .or_else(|| timeline.tombstone.as_ref().map(|t| t.status.to_string()));
    if timeline.order.is_some() && timeline.reservation.is_none() {
        notes.push(
            "inventory has not decided this order yet: its OrderPlaced is in the outbox or \
             waiting in the inventory queue (is inventory-svc running?)"
                .to_owned(),
        );
    }
    if let (None, Some(tomb)) = (&timeline.order, &timeline.tombstone) {
        notes.push(format!(
            "order-svc compacted this order after its retention (ORDER_RETENTION): it finished \
             {} at {} and was compacted at {}; its record, timeline and DLQ hops are gone, and \
             GET /order/{{id}} answers 404 \"expired\" from the small tombstone kept for the \
             dedupe window (DEDUPE_WINDOW)",
            tomb.status,
            super::utc(tomb.finished_at),
            super::utc(tomb.expired_at)
        ));
    } else if timeline.order.is_none() {
        notes.push(format!(
            "order-svc has no order {order_id}: it was published by hand (sagactl publish, a lab \
             script), so only inventory's and notification's records tell its story"
        ));
    }
    Journey {
        order_id: order_id.to_owned(),
        headline: headline(timeline),
        status,
        steps: story.into_steps(),
        notes,
    }
}

fn headline(timeline: &Timeline) -> String {
    let id = &timeline.order_id;
    match &timeline.order {
        Some(order) => {
            let student = order
                .student_id
                .as_deref()
                .map(|s| format!(" for {s}"))
                .unwrap_or_default();
            let reason = order
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            format!(
                "order {id}: {}{student}, {}{reason}",
                what_was_ordered(order),
                order.status
            )
        }
        None => match (&timeline.tombstone, &timeline.reservation) {
            (Some(tomb), _) => format!(
                "order {id}: {}, compacted after its retention (only a tombstone is left)",
                tomb.status
            ),
            (None, Some(r)) => format!(
                "order {id} (unknown to order-svc): inventory's record says {}",
                r.state
            ),
            (None, None) => format!("order {id} (unknown to order-svc)"),
        },
    }
}

/// `2 x burger`, or `3 lines, 7 units` for an order of several (whose record has no lab item).
fn what_was_ordered(order: &crate::timeline::OrderRecord) -> String {
    order.lines.as_ref().map_or_else(
        || format!("{} x {}", order.qty, order.item),
        crate::timeline::OrderLines::summary,
    )
}

/// Steps collected out of order, each with the time it sorts by.
#[derive(Default)]
struct Story {
    steps: Vec<(u64, usize, Step)>,
    /// The time of the last step pushed, for a step that has none of its own.
    last: u64,
}

impl Story {
    /// Add a step; `sort_at` `None` places it right after the step pushed before it.
    fn push(&mut self, sort_at: Option<u64>, step: Step) {
        let at = sort_at.unwrap_or(self.last);
        self.last = at;
        let seq = self.steps.len();
        self.steps.push((at, seq, step));
    }

    fn into_steps(mut self) -> Vec<Step> {
        self.steps.sort_by_key(|(at, seq, _)| (*at, *seq));
        self.steps.into_iter().map(|(_, _, step)| step).collect()
    }
}

/// How the order came in: through order-svc, or published by hand.
fn origin(story: &mut Story, timeline: &Timeline) {
    let placed = timeline
        .history
        .iter()
        .find(|h| h.event == Some(EventType::OrderPlaced));
    if let Some(order) = &timeline.order {
        let at = placed.map_or(order.created_at, |h| h.at);
        let event_id = placed.map(|h| h.event_id.clone());
        story.push(
            Some(at),
            Step {
                at: Some(at),
                from: Lane::Client,
                to: Lane::OrderSvc,
                kind: StepKind::Request,
                what: format!(
                    "POST /order: {}, 201 {}",
                    what_was_ordered(order),
                    OrderStatus::Placed
                ),
                event: Some(EventType::OrderPlaced),
                event_id: event_id.clone(),
                why: "answered at once: the order, its history and its OrderPlaced event were \
                      written to Redis in one MULTI/EXEC (the transactional outbox), so the \
                      order is safe even while the broker is down"
                    .into(),
            },
        );
        // Nothing downstream has seen it yet: it may still be in the outbox (broker away).
        let unseen = timeline.reservation.is_none() && timeline.dlq_hops.is_empty();
        let what = if unseen {
            "order.placed: in the outbox, or published and queued"
        } else {
            "order.placed (from the outbox)"
        };
        story.push(
            None,
            Step {
                at: None,
                from: Lane::OrderSvc,
                to: Lane::Broker,
                kind: StepKind::Publish,
                what: what.into(),
                event: Some(EventType::OrderPlaced),
                event_id,
                why: "the outbox relay publishes it with a publisher confirm and removes it \
                      from the outbox only after the broker's ack: a crash in between publishes \
                      it again, and inventory absorbs the copy as a duplicate"
                    .into(),
            },
        );
        return;
    }
    if timeline.tombstone.is_some() {
        return; // compacted: its placing is no longer recorded, but it was not by hand
    }
    // Published by hand: it starts at the broker, before anything inventory recorded.
    let first = [
        timeline.reservation.as_ref().and_then(|r| r.decided_at),
        timeline.reservation.as_ref().and_then(|r| r.released_at),
        timeline.dlq_hops.first().map(|h| h.at),
    ]
    .into_iter()
    .flatten()
    .min();
    if let Some(first) = first {
        story.push(
            Some(first),
            Step {
                at: None,
                from: Lane::Client,
                to: Lane::Broker,
                kind: StepKind::Publish,
                what: "published by hand, not through order-svc".into(),
                event: None,
                event_id: None,
                why: "order-svc has no record of this order, so the outcomes inventory \
                      announces change nothing there"
                    .into(),
            },
        );
    }
}

/// What a reservation took, line by line, with what was left of each item: "2 burger (98
/// left)", or "2 burger (98 left), 1 pizza (49 left)" for an order of several lines.
fn reserved_lines(record: &ReservationRecord) -> String {
    let left = |remaining: Option<i64>| {
        remaining
            .map(|r| format!(" ({r} left)"))
            .unwrap_or_default()
    };
    if record.lines.is_empty() {
        let item = record.item.as_deref().unwrap_or("?");
        format!("{} {item}{}", record.qty, left(record.remaining))
    } else {
        record
            .lines
            .iter()
            .map(|l| format!("{} {}{}", l.qty, l.item, left(l.remaining)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// inventory-svc's decision about the OrderPlaced, from its reservation record.
fn decision(story: &mut Story, timeline: &Timeline) {
    let Some(record) = &timeline.reservation else {
        return;
    };
    let Some(decided_at) = record.decided_at else {
        return; // a tombstone: no OrderPlaced was ever decided
    };
    // A failed decision keeps its code even after a cancel turned the record `released`.
    let failed = record.code.is_some() || record.state == ReservationState::Failed;
    let (what, event, why) = if failed {
        (
            format!(
                "OrderPlaced: not reserved: {}",
                record.reason.as_deref().unwrap_or("no reason recorded")
            ),
            EventType::InventoryFailed,
            "a business outcome, not poison: the refusal and its reason were recorded in the \
             same atomic Lua step that checked the stock, and no stock moved",
        )
    } else {
        (
            format!("OrderPlaced: reserved {}", reserved_lines(record)),
            EventType::InventoryReserved,
            "one Lua script checked the order's reservation record, took the stock and \
             recorded the outcome in one atomic step: a second copy of this OrderPlaced finds \
             the record and takes nothing",
        )
    };
    story.push(
        Some(decided_at),
        Step {
            at: Some(decided_at),
            from: Lane::Broker,
            to: Lane::InventorySvc,
            kind: StepKind::Deliver,
            what,
            event: Some(EventType::OrderPlaced),
            event_id: None,
            why: why.into(),
        },
    );
    story.push(
        Some(decided_at),
        Step {
            at: Some(decided_at),
            from: Lane::InventorySvc,
            to: Lane::Broker,
            kind: StepKind::Publish,
            what: event.routing_key().into(),
            event: Some(event),
            event_id: record.event_id.clone(),
            why: "published with a confirm before the OrderPlaced was acked: a crash before the \
                  ack redelivers the OrderPlaced, and the record makes the redelivery re-send \
                  this very event id"
                .into(),
        },
    );
}

/// inventory-svc's compensation for a cancel, from its reservation record.
fn release(story: &mut Story, timeline: &Timeline) {
    let Some(record) = &timeline.reservation else {
        return;
    };
    let Some(released_at) = record.released_at else {
        return;
    };
    let (what, why) = if record.is_tombstone() {
        (
            "OrderCancelled before any OrderPlaced: nothing to give back, tombstone recorded"
                .to_owned(),
            "the cancel overtook its order: the tombstone makes the late OrderPlaced a \
             duplicate, so it can never take stock for a cancelled order",
        )
    } else if record.released_qty == 0 {
        (
            "OrderCancelled: nothing had been reserved, nothing to give back".to_owned(),
            "the record said no stock was taken, and the release is recorded, so a second \
             cancel gives back nothing either",
        )
    } else {
        (
            format!(
                "OrderCancelled: gave back {} {}",
                record.released_qty,
                record.item.as_deref().unwrap_or("?")
            ),
            "the compensating step: one Lua script gave back exactly what the record says was \
             reserved and marked the record released, so a redelivered cancel gives back \
             nothing more",
        )
    };
    story.push(
        Some(released_at),
        Step {
            at: Some(released_at),
            from: Lane::Broker,
            to: Lane::InventorySvc,
            kind: StepKind::Compensation,
            what,
            event: Some(EventType::OrderCancelled),
            event_id: None,
            why: why.into(),
        },
    );
    story.push(
        Some(released_at),
        Step {
            at: Some(released_at),
            from: Lane::InventorySvc,
            to: Lane::Broker,
            kind: StepKind::Publish,
            what: EventType::InventoryReleased.routing_key().into(),
            event: Some(EventType::InventoryReleased),
            event_id: record.release_event_id.clone(),
            why: "published with a confirm before the OrderCancelled was acked".into(),
        },
    );
}

/// Everything order-svc's history says after the order was placed: cancels it took, and every
/// outcome that reached it, applied or not.
fn order_svc_history(story: &mut Story, timeline: &Timeline) {
    let tombstone = timeline
        .reservation
        .as_ref()
        .is_some_and(|r| r.is_tombstone());
    let mut status = OrderStatus::Placed;
    let mut seen: HashSet<&str> = HashSet::new();
    for entry in &timeline.history {
        let first_time = seen.insert(entry.event_id.as_str());
        match entry.event {
            Some(EventType::OrderPlaced) => {}
            Some(EventType::OrderCancelled) if entry.status == OrderStatus::Failed => {
                decision_deadline(story, entry);
            }
            Some(EventType::OrderCancelled) if !entry.applied => cancel_resent(story, entry),
            Some(EventType::OrderCancelled) => cancel_request(story, entry),
            Some(EventType::OrderStatusUpdated) => status_request(story, entry, status),
            _ => outcome(story, entry, status, first_time, tombstone),
        }
        if entry.applied {
            announced(story, entry, status);
            status = entry.status;
        }
    }
}

/// The `order.status.updated` a move was announced with: written into the outbox in the very
/// Lua step that moved the order, relayed later (its publish time is not recorded).
fn announced(story: &mut Story, entry: &HistoryEntry, before: OrderStatus) {
    let Some(id) = &entry.status_event_id else {
        return; // the order's creation, or a line written before status events existed
    };
    story.push(
        Some(entry.at),
        Step {
            at: None,
            from: Lane::OrderSvc,
            to: Lane::Broker,
            kind: StepKind::StatusEvent,
            what: format!(
                "announced {} {before} → {}",
                EventType::OrderStatusUpdated.routing_key(),
                entry.status
            ),
            event: Some(EventType::OrderStatusUpdated),
            event_id: Some(id.clone()),
            why: "written into the outbox in the same Lua step as the move, so a crash can \
                  never leave a move unannounced; relayed with a publisher confirm, and a copy \
                  sent twice carries the same event id"
                .into(),
        },
    );
}

/// A `PATCH /order/{id}/status` that moved the order (SHIPPED, DELIVERED).
fn status_request(story: &mut Story, entry: &HistoryEntry, before: OrderStatus) {
    if !entry.applied {
        return; // a refused PATCH changes nothing and leaves no trace; a stray line says less
    }
    let note = entry
        .reason
        .as_deref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    story.push(
        Some(entry.at),
        Step {
            at: Some(entry.at),
            from: Lane::Client,
            to: Lane::OrderSvc,
            kind: StepKind::Request,
            what: format!(
                "PATCH /order/{{id}}/status: {before} → {}{note}",
                entry.status
            ),
            event: Some(EventType::OrderStatusUpdated),
            event_id: Some(entry.event_id.clone()),
            why: "the same compare-and-set as every transition: the order moved only because \
                  it was in the one status this request may move it from, so of two requests \
                  that race one wins and the other gets a 409"
                .into(),
        },
    );
}

/// The decision deadline passed while the order was still PLACED: failed, with a cancel.
fn decision_deadline(story: &mut Story, entry: &HistoryEntry) {
    story.push(
        Some(entry.at),
        Step {
            at: Some(entry.at),
            from: Lane::OrderSvc,
            to: Lane::Broker,
            kind: StepKind::Timeout,
            what: format!(
                "decision deadline passed: {} → {} ({}), {} sent",
                OrderStatus::Placed,
                OrderStatus::Failed,
                entry.reason.as_deref().unwrap_or(TIMEOUT_REASON),
                EventType::OrderCancelled.routing_key()
            ),
            event: Some(EventType::OrderCancelled),
            event_id: Some(entry.event_id.clone()),
            why: "the decision deadline passed; order-svc failed it and sent a cancel so that \
                  a late reservation is given back. The sweeper goes through the same \
                  compare-and-set as inventory's outcome, so a deadline and an outcome that \
                  race cannot both apply"
                .into(),
        },
    );
}

/// The order stayed CANCELLING past its deadline: the cancel was sent again.
fn cancel_resent(story: &mut Story, entry: &HistoryEntry) {
    story.push(
        Some(entry.at),
        Step {
            at: Some(entry.at),
            from: Lane::OrderSvc,
            to: Lane::Broker,
            kind: StepKind::Timeout,
            what: format!(
                "still {} past its deadline: {} sent again",
                entry.status,
                EventType::OrderCancelled.routing_key()
            ),
            event: Some(EventType::OrderCancelled),
            event_id: Some(entry.event_id.clone()),
            why: "inventory had not given the stock back in time (the cancel may have been \
                  lost): sending it again is safe, since inventory's release is recorded and \
                  gives back nothing twice"
                .into(),
        },
    );
}

fn cancel_request(story: &mut Story, entry: &HistoryEntry) {
    let reason = entry
        .reason
        .as_deref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    story.push(
        Some(entry.at),
        Step {
            at: Some(entry.at),
            from: Lane::Client,
            to: Lane::OrderSvc,
            kind: StepKind::Request,
            what: format!(
                "POST /order/{{id}}/cancel: {}{reason}",
                OrderStatus::Cancelling
            ),
            event: Some(EventType::OrderCancelled),
            event_id: Some(entry.event_id.clone()),
            why: "the status change and the OrderCancelled event were written in one Lua step \
                  (the outbox): the compensation cannot be forgotten"
                .into(),
        },
    );
    story.push(
        None,
        Step {
            at: None,
            from: Lane::OrderSvc,
            to: Lane::Broker,
            kind: StepKind::Publish,
            what: format!(
                "{} (from the outbox)",
                EventType::OrderCancelled.routing_key()
            ),
            event: Some(EventType::OrderCancelled),
            event_id: Some(entry.event_id.clone()),
            why: "relayed from the outbox with a publisher confirm, like every event".into(),
        },
    );
}

/// An inventory outcome reaching order-svc.
fn outcome(
    story: &mut Story,
    entry: &HistoryEntry,
    status_before: OrderStatus,
    first_time: bool,
    tombstone: bool,
) {
    let event = entry.event;
    let name = event.map_or("", EventType::as_str);
    let event_id = Some(entry.event_id.clone());
    let step = |kind, what: String, why: &str| Step {
        at: Some(entry.at),
        from: Lane::Broker,
        to: Lane::OrderSvc,
        kind,
        what,
        event,
        event_id: event_id.clone(),
        why: why.to_owned(),
    };
    let moved = format!("{name}: {status_before} → {}", entry.status);
    let unchanged = format!("{name} again: no change ({})", entry.status);
    let step = match (entry.applied, entry.redelivered, first_time) {
        (true, false, _) => step(
            StepKind::Deliver,
            moved,
            "a guarded transition (compare-and-set in Lua): the order moved only because it \
             was in the one status this event may move it from, so any later copy changes \
             nothing",
        ),
        (true, true, _) => step(
            StepKind::Redelivery,
            format!("{moved} (redelivered)"),
            "the broker delivered it again because an earlier delivery was never acked (a \
             consumer died or lost its connection); it had not been applied, so it was applied \
             now, once",
        ),
        (false, true, false) => step(
            StepKind::Redelivery,
            format!("{unchanged} (redelivered)"),
            "redelivery: order-svc had applied it but died before its ack; the guarded \
             transition found the order already moved and changed nothing, then acked",
        ),
        (false, _, false) => {
            // The same event id again, not a broker redelivery: inventory announced its
            // recorded decision a second time. Show where that came from.
            let (cause, why) = if tombstone && event == Some(EventType::InventoryReleased) {
                (
                    "the late OrderPlaced, after the cancel",
                    "the tombstone was already there: the recorded release was re-sent with \
                     its original event id; no stock moved",
                )
            } else {
                (
                    "the same command again (a duplicate or a redelivery)",
                    "duplicate: the reservation record already existed, so the recorded \
                     outcome was re-sent with its original event id; no stock moved",
                )
            };
            story.push(
                Some(entry.at),
                Step {
                    at: None,
                    from: Lane::Broker,
                    to: Lane::InventorySvc,
                    kind: StepKind::Duplicate,
                    what: cause.into(),
                    event: None,
                    event_id: None,
                    why: why.into(),
                },
            );
            story.push(
                None,
                Step {
                    at: None,
                    from: Lane::InventorySvc,
                    to: Lane::Broker,
                    kind: StepKind::Duplicate,
                    what: format!("{name} re-sent (same event id)"),
                    event,
                    event_id: event_id.clone(),
                    why: "published with a confirm, like the first time".into(),
                },
            );
            step(
                StepKind::Duplicate,
                unchanged,
                "the same event id again: the guarded transition changed nothing",
            )
        }
        (false, _, true) => step(
            StepKind::Late,
            format!("late {name}: no change ({})", entry.status),
            "a stale event for an order that had moved on: recorded in the history, never \
             applied, since transitions only move forward",
        ),
    };
    story.push(Some(entry.at), step);
}

/// A poison message about the order, moved to the DLQ.
fn dead_letter(story: &mut Story, hop: &DlqHop) {
    let service = Lane::of_service(&hop.service);
    let redelivered = if hop.redelivered {
        " (redelivered)"
    } else {
        ""
    };
    story.push(
        Some(hop.at),
        Step {
            at: Some(hop.at),
            from: Lane::Broker,
            to: service,
            kind: StepKind::Deliver,
            what: format!("{}{redelivered}: {}", hop.routing_key, hop.reason),
            event: None,
            event_id: None,
            why: "read into domain types at the edge: a message that cannot be is refused there, \
                  before it touches any state"
                .into(),
        },
    );
    let why = match hop.attempts {
        Some(attempts) => format!(
            "gave up after {attempts} attempts, each waiting broker-side in the retry queue: \
             moved to the DLQ with the last error as its reason, acked only after that \
             publish was confirmed"
        ),
        None => "poison is about the message, not the moment: retrying cannot fix it, so it \
                 was moved to the DLQ byte for byte with x-dlq-* headers saying why, and acked \
                 only after that publish was confirmed; the messages behind it kept flowing"
            .to_owned(),
    };
    story.push(
        Some(hop.at),
        Step {
            at: Some(hop.at),
            from: service,
            to: Lane::Broker,
            kind: StepKind::DeadLetter,
            what: "dead-lettered to the DLQ".into(),
            event: None,
            event_id: None,
            why,
        },
    );
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::timeline::{NotificationOutcome, NotificationRecord, OrderRecord};

    const T0: u64 = 1_700_000_000_000;

    fn entry(at: u64, status: &str, event: &str, id: &str, service: &str) -> HistoryEntry {
        HistoryEntry {
            at: T0 + at,
            status: saga_domain::order::OrderStatus::parse(status).unwrap(),
            event: saga_domain::events::EventType::from_name(event),
            event_id: id.into(),
            service: service.into(),
            redelivered: false,
            applied: true,
            reason: None,
            status_event_id: None,
            envelope: Default::default(),
        }
    }

    fn order(status: &str) -> Option<OrderRecord> {
        Some(OrderRecord {
            item: "burger".into(),
            qty: 2,
            student_id: Some("s1".into()),
            status: status.into(),
            created_at: T0,
            updated_at: T0 + 40,
            ..OrderRecord::default()
        })
    }

    fn reserved(at: u64) -> Option<ReservationRecord> {
        Some(ReservationRecord {
            state: saga_domain::order::ReservationState::Reserved,
            item: Some("burger".into()),
            qty: 2,
            event_id: Some("e-reserved".into()),
            decided_at: Some(T0 + at),
            remaining: Some(98),
            ..ReservationRecord::default()
        })
    }

    /// A plain order: placed, reserved, confirmed, notified.
    pub(crate) fn confirmed() -> Timeline {
        Timeline {
            order_id: "o1".into(),
            order: order("CONFIRMED"),
            history: vec![
                entry(0, "PLACED", "OrderPlaced", "e-placed", "order-svc"),
                entry(
                    30,
                    "CONFIRMED",
                    "InventoryReserved",
                    "e-reserved",
                    "inventory-svc",
                ),
            ],
            reservation: reserved(20),
            notifications: vec![NotificationRecord {
                order_id: "o1".into(),
                outcome: saga_domain::order::NotificationOutcome::Reserved,
                event_id: "e-reserved".into(),
                at_ms: T0 + 35,
                ..NotificationRecord::default()
            }],
            ..Timeline::default()
        }
    }

    fn lanes(journey: &Journey) -> Vec<(&str, &str, StepKind)> {
        journey
            .steps
            .iter()
            .map(|s| (s.from.name(), s.to.name(), s.kind))
            .collect()
    }

    #[test]
    fn a_plain_order_crosses_every_lane_in_time_order() {
        let j = journey(&confirmed());
        assert_eq!(j.headline, "order o1: 2 x burger for s1, CONFIRMED");
        assert_eq!(
            lanes(&j),
            [
                ("client", "order-svc", StepKind::Request),
                ("order-svc", "broker", StepKind::Publish),
                ("broker", "inventory-svc", StepKind::Deliver),
                ("inventory-svc", "broker", StepKind::Publish),
                ("broker", "order-svc", StepKind::Deliver),
                ("broker", "notification-svc", StepKind::Notify),
            ]
        );
        assert_eq!(
            j.steps[1].at, None,
            "the relay's publish time is not recorded"
        );
        assert_eq!(j.steps[1].event_id.as_deref(), Some("e-placed"));
        assert_eq!(j.steps[3].event_id.as_deref(), Some("e-reserved"));
        assert!(j.steps[2].what.contains("reserved 2 burger (98 left)"));
        assert_eq!(j.steps[4].what, "InventoryReserved: PLACED → CONFIRMED");
        assert!(j.notes.is_empty());
    }

    #[test]
    fn a_reservation_of_several_lines_names_each_line() {
        let mut t = confirmed();
        let record = t.reservation.as_mut().expect("reserved");
        record.lines = [("burger", 2, 98), ("pizza", 1, 49)]
            .into_iter()
            .map(|(item, qty, left)| saga_domain::order::RecordLine {
                item: item.into(),
                qty,
                remaining: Some(left),
                code: None,
            })
            .collect();
        let j = journey(&t);
        assert_eq!(
            j.steps[2].what,
            "OrderPlaced: reserved 2 burger (98 left), 1 pizza (49 left)"
        );
    }

    #[test]
    fn a_redelivery_that_changed_nothing_is_told_as_one() {
        let mut t = confirmed();
        let mut again = entry(
            900,
            "CONFIRMED",
            "InventoryReserved",
            "e-reserved",
            "inventory-svc",
        );
        again.applied = false;
        again.redelivered = true;
        t.history.push(again);
        let j = journey(&t);
        let last = j.steps.last().unwrap();
        assert_eq!(last.kind, StepKind::Redelivery);
        assert_eq!(last.to, Lane::OrderSvc);
        assert!(last.what.contains("again: no change"), "{}", last.what);
        assert!(last.why.contains("died before its ack"), "{}", last.why);
    }

    #[test]
    fn a_duplicate_absorbed_by_inventory_shows_where_it_came_from() {
        let mut t = confirmed();
        let mut again = entry(
            900,
            "CONFIRMED",
            "InventoryReserved",
            "e-reserved",
            "inventory-svc",
        );
        again.applied = false;
        t.history.push(again);
        let j = journey(&t);
        let tail: Vec<_> = lanes(&j).into_iter().rev().take(3).rev().collect();
        assert_eq!(
            tail,
            [
                ("broker", "inventory-svc", StepKind::Duplicate),
                ("inventory-svc", "broker", StepKind::Duplicate),
                ("broker", "order-svc", StepKind::Duplicate),
            ]
        );
        let absorbed = &j.steps[j.steps.len() - 3];
        assert!(absorbed.why.contains("reservation record already existed"));
        assert!(absorbed.why.contains("no stock moved"));
        assert_eq!(
            j.steps[j.steps.len() - 2].event_id.as_deref(),
            Some("e-reserved"),
            "re-sent with its original event id"
        );
    }

    #[test]
    fn a_dlq_hop_is_a_delivery_then_a_dead_letter() {
        let mut t = confirmed();
        t.dlq_hops.push(DlqHop {
            at: T0 + 500,
            service: "inventory-svc".into(),
            routing_key: "order.placed".into(),
            reason: "missing required field qty".into(),
            redelivered: false,
            attempts: None,
        });
        let j = journey(&t);
        let i = j
            .steps
            .iter()
            .position(|s| s.kind == StepKind::DeadLetter)
            .expect("a dead-letter step");
        assert_eq!(j.steps[i].from, Lane::InventorySvc);
        assert_eq!(j.steps[i].to, Lane::Broker);
        assert!(j.steps[i].why.contains("byte for byte"));
        assert_eq!(
            j.steps[i - 1].what,
            "order.placed: missing required field qty"
        );
        assert_eq!(j.steps[i - 1].to, Lane::InventorySvc);
        // A retried failure says how many attempts it had.
        t.dlq_hops[0].attempts = Some(4);
        let j = journey(&t);
        assert!(j.steps.iter().any(|s| s.why.contains("after 4 attempts")));
    }

    #[test]
    fn a_cancel_is_compensated_once() {
        let mut t = confirmed();
        t.order = order("CANCELLED");
        let mut cancel = entry(100, "CANCELLING", "OrderCancelled", "e-cancel", "order-svc");
        cancel.reason = Some("changed my mind".into());
        t.history.push(cancel);
        t.history.push(entry(
            160,
            "CANCELLED",
            "InventoryReleased",
            "e-released",
            "inventory-svc",
        ));
        let record = t.reservation.as_mut().unwrap();
        record.state = saga_domain::order::ReservationState::Released;
        record.released_qty = 2;
        record.release_event_id = Some("e-released".into());
        record.released_at = Some(T0 + 150);
        let j = journey(&t);
        let kinds: Vec<StepKind> = j.steps.iter().map(|s| s.kind).collect();
        let c = kinds
            .iter()
            .position(|k| *k == StepKind::Compensation)
            .unwrap();
        assert!(j.steps[c].what.contains("gave back 2 burger"));
        assert_eq!(
            j.steps[c - 2].what,
            "POST /order/{id}/cancel: CANCELLING (changed my mind)"
        );
        assert_eq!(j.steps[c + 1].event_id.as_deref(), Some("e-released"));
        assert_eq!(
            j.steps[c + 2].what,
            "InventoryReleased: CANCELLING → CANCELLED"
        );
    }

    #[test]
    fn a_cancel_that_overtook_its_order_leaves_a_tombstone_and_absorbs_the_late_order() {
        // The cancel reached inventory first (a tombstone, no decision ever made); the late
        // OrderPlaced then found the tombstone and re-sent the recorded release.
        let mut late = entry(
            400,
            "CANCELLED",
            "InventoryReleased",
            "e-released",
            "inventory-svc",
        );
        late.applied = false;
        let t = Timeline {
            order_id: "o2".into(),
            order: order("CANCELLED"),
            history: vec![
                entry(0, "PLACED", "OrderPlaced", "e-placed", "order-svc"),
                entry(10, "CANCELLING", "OrderCancelled", "e-cancel", "order-svc"),
                entry(
                    60,
                    "CANCELLED",
                    "InventoryReleased",
                    "e-released",
                    "inventory-svc",
                ),
                late,
            ],
            reservation: Some(ReservationRecord {
                state: saga_domain::order::ReservationState::Released,
                released_qty: 0,
                release_event_id: Some("e-released".into()),
                released_at: Some(T0 + 50),
                ..ReservationRecord::default()
            }),
            ..Timeline::default()
        };
        let j = journey(&t);
        assert!(
            !j.steps.iter().any(|s| s.what.starts_with("OrderPlaced:")),
            "no stock decision was ever made"
        );
        let tomb = j
            .steps
            .iter()
            .find(|s| s.kind == StepKind::Compensation)
            .unwrap();
        assert!(
            tomb.what.contains("before any OrderPlaced"),
            "{}",
            tomb.what
        );
        assert!(tomb.why.contains("overtook its order"));
        let absorbed = j
            .steps
            .iter()
            .find(|s| s.kind == StepKind::Duplicate && s.to == Lane::InventorySvc)
            .unwrap();
        assert_eq!(absorbed.what, "the late OrderPlaced, after the cancel");
        assert!(absorbed.why.contains("tombstone was already there"));
        assert_eq!(
            j.steps.last().unwrap().what,
            "InventoryReleased again: no change (CANCELLED)"
        );
    }

    #[test]
    fn an_order_published_by_hand_starts_at_the_broker() {
        let t = Timeline {
            order_id: "lab-1".into(),
            reservation: reserved(20),
            ..Timeline::default()
        };
        let j = journey(&t);
        assert_eq!(j.steps[0].from, Lane::Client);
        assert_eq!(j.steps[0].to, Lane::Broker);
        assert!(j.notes[0].contains("published by hand"));
        assert!(j.headline.contains("unknown to order-svc"));
    }

    #[test]
    fn an_undecided_order_says_what_it_waits_for() {
        let t = Timeline {
            order_id: "o3".into(),
            order: order("PLACED"),
            history: vec![entry(0, "PLACED", "OrderPlaced", "e-placed", "order-svc")],
            ..Timeline::default()
        };
        let j = journey(&t);
        assert_eq!(j.steps.len(), 2);
        assert_eq!(
            j.steps[1].what,
            "order.placed: in the outbox, or published and queued"
        );
        assert!(j.notes[0].contains("has not decided"));
    }
    fn moved(at: u64, status: &str, event: &str, id: &str, status_event: &str) -> HistoryEntry {
        let service = if event.starts_with("Inventory") {
            "inventory-svc"
        } else {
            "order-svc"
        };
        HistoryEntry {
            status_event_id: Some(status_event.into()),
            ..entry(at, status, event, id, service)
        }
    }

    #[test]
    fn a_shipped_and_delivered_order_announces_every_move() {
        let mut t = confirmed();
        t.order = order("DELIVERED");
        t.history[1].status_event_id = Some("s-confirmed".into());
        let mut ship = moved(
            100,
            "SHIPPED",
            "OrderStatusUpdated",
            "s-shipped",
            "s-shipped",
        );
        ship.reason = Some("DHL 123".into());
        t.history.push(ship);
        t.history.push(moved(
            200,
            "DELIVERED",
            "OrderStatusUpdated",
            "s-delivered",
            "s-delivered",
        ));
        for (at, outcome) in [
            (110, NotificationOutcome::Shipped),
            (210, NotificationOutcome::Delivered),
        ] {
            t.notifications.push(NotificationRecord {
                order_id: "o1".into(),
                outcome,
                event_id: format!("s-{outcome}"),
                at_ms: T0 + at,
                ..NotificationRecord::default()
            });
        }
        let j = journey(&t);
        let announced: Vec<&str> = j
            .steps
            .iter()
            .filter(|s| s.kind == StepKind::StatusEvent)
            .map(|s| s.what.as_str())
            .collect();
        assert_eq!(
            announced,
            [
                "announced order.status.updated PLACED → CONFIRMED",
                "announced order.status.updated CONFIRMED → SHIPPED",
                "announced order.status.updated SHIPPED → DELIVERED",
            ]
        );
        let ship = j
            .steps
            .iter()
            .position(|s| s.what.starts_with("PATCH"))
            .unwrap();
        assert_eq!(
            j.steps[ship].what,
            "PATCH /order/{id}/status: CONFIRMED → SHIPPED (DHL 123)"
        );
        assert_eq!(j.steps[ship].from, Lane::Client);
        assert_eq!(j.steps[ship + 1].kind, StepKind::StatusEvent);
        assert_eq!(j.steps[ship + 1].event_id.as_deref(), Some("s-shipped"));
        let told: Vec<&str> = j
            .steps
            .iter()
            .filter(|s| s.kind == StepKind::Notify)
            .map(|s| s.what.as_str())
            .collect();
        assert_eq!(
            told,
            [
                "notified: reserved",
                "notified: shipped",
                "notified: delivered"
            ]
        );
        assert!(
            j.mermaid()
                .contains("O-)B: announced order.status.updated CONFIRMED → SHIPPED [s-shippe]")
        );
    }

    #[test]
    fn a_timeout_fails_the_order_and_gives_a_late_reservation_back() {
        let mut timed_out = moved(100, "FAILED", "OrderCancelled", "e-cancel", "s-failed");
        timed_out.reason = Some("timeout".into());
        let mut late = entry(
            300,
            "FAILED",
            "InventoryReserved",
            "e-reserved",
            "inventory-svc",
        );
        late.applied = false;
        let mut record = reserved(250);
        if let Some(r) = record.as_mut() {
            r.state = saga_domain::order::ReservationState::Released;
            r.released_qty = 2;
            r.released_at = Some(T0 + 260);
        }
        let mut failed = order("FAILED");
        if let Some(o) = failed.as_mut() {
            o.reason = Some("timeout".into());
        }
        let t = Timeline {
            order_id: "o4".into(),
            order: failed,
            history: vec![
                entry(0, "PLACED", "OrderPlaced", "e-placed", "order-svc"),
                timed_out,
                late,
            ],
            reservation: record,
            ..Timeline::default()
        };
        let j = journey(&t);
        assert_eq!(j.headline, "order o4: 2 x burger for s1, FAILED (timeout)");
        let deadline = j
            .steps
            .iter()
            .position(|s| s.kind == StepKind::Timeout)
            .unwrap();
        assert_eq!(
            j.steps[deadline].what,
            "decision deadline passed: PLACED → FAILED (timeout), order.cancelled sent"
        );
        assert!(j.steps[deadline].why.starts_with(
            "the decision deadline passed; order-svc failed it and sent a cancel so that a \
             late reservation is given back"
        ));
        assert_eq!(
            j.steps[deadline + 1].what,
            "announced order.status.updated PLACED → FAILED"
        );
        assert!(
            j.steps
                .iter()
                .any(|s| s.kind == StepKind::Compensation && s.what.contains("gave back 2"))
        );
        assert_eq!(
            j.steps.last().unwrap().what,
            "late InventoryReserved: no change (FAILED)"
        );
        assert!(
            !j.steps
                .iter()
                .any(|s| s.kind == StepKind::Request && s.what.contains("cancel"))
        );
    }

    #[test]
    fn a_cancel_past_its_deadline_is_sent_again() {
        let mut t = confirmed();
        t.order = order("CANCELLING");
        t.history.push(moved(
            100,
            "CANCELLING",
            "OrderCancelled",
            "e-cancel",
            "s-cancelling",
        ));
        let mut again = entry(
            5_100,
            "CANCELLING",
            "OrderCancelled",
            "e-cancel",
            "order-svc",
        );
        again.applied = false;
        again.reason = Some("timeout".into());
        t.history.push(again);
        let j = journey(&t);
        let last = j.steps.last().unwrap();
        assert_eq!(last.kind, StepKind::Timeout);
        assert_eq!(
            last.what,
            "still CANCELLING past its deadline: order.cancelled sent again"
        );
    }

    #[test]
    fn a_compacted_order_says_it_expired_after_retention() {
        let t = Timeline {
            order_id: "o5".into(),
            reservation: reserved(20),
            tombstone: Some(crate::timeline::Tombstone {
                status: OrderStatus::Delivered,
                finished_at: T0 + 1_000,
                expired_at: T0 + 4_000,
                owner_id: None,
            }),
            ..Timeline::default()
        };
        assert!(!t.is_unknown());
        let j = journey(&t);
        assert_eq!(
            j.headline,
            "order o5: DELIVERED, compacted after its retention (only a tombstone is left)"
        );
        assert_eq!(j.status.as_deref(), Some("DELIVERED"));
        assert!(j.notes[0].starts_with("order-svc compacted this order after its retention"));
        assert!(!j.notes.iter().any(|n| n.contains("by hand")));
        assert!(!j.steps.iter().any(|s| s.what.contains("by hand")));
    }
}
