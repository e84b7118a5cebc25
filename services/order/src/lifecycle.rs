//! Every move of an order goes through one compare-and-set (`lua/transition.lua`): inventory's
//! outcomes ([`OrderStore::apply`]), a customer's cancel ([`OrderStore::cancel`]), a PATCH
//! ([`OrderStore::set_status`]) and the decision deadline ([`crate::sweeper`]).
//!
//! [`OrderStore::transition`] asks the domain which moves the event allows
//! ([`OrderStatus::transitions_on`]) and builds, for each, everything the move implies: the
//! order's reason, its `order.status.updated` event (and, for a cancel or a timeout, the
//! `order.cancelled` that asks inventory for the stock back), its deadline, its retention. The
//! script applies the one move that starts from the order's status, with all of it, in one
//! atomic step; two requests that race cannot both move the order, and no move is ever
//! without its event.

use std::time::Duration;

use saga_domain::events::{
    EventMeta, EventType, OrderCancelled, OrderStatusUpdated, unix_now_millis,
};
use saga_domain::ids::OrderId;
use saga_domain::order::{OrderEvent, OrderStatus};
use saga_domain::trace::Trace;

use crate::SERVICE;
use crate::orders::{Applied, Idempotent, OrderStore, Seen, WriteError, history_entry};
use crate::outbox::entry_fields;

/// How long an order may take, and how long it is kept: order-svc's side of the lifecycle's
/// settings (`ORDER_DECISION_TIMEOUT`, `ORDER_RETENTION`, `DEDUPE_WINDOW`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// After this, an order still PLACED fails (reason `timeout`) and a CANCELLING one has its
    /// cancel sent again. `None`: never.
    pub decision_timeout: Option<Duration>,
    /// How long a finished order is kept whole before it is compacted.
    pub retention: Duration,
    /// How long a compacted order's tombstone is kept.
    pub dedupe_window: Duration,
}

impl Default for Windows {
    fn default() -> Self {
        Self {
            decision_timeout: Some(Duration::from_secs(300)),
            retention: Duration::from_secs(3 * 24 * 3600),
            dedupe_window: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// One request to move an order: what happened, who caused it, and why.
#[derive(Debug, Clone)]
pub struct Move<'a> {
    pub order_id: &'a OrderId,
    pub event: OrderEvent,
    /// `updated_by` in the status event: a service, `system`, `customer`, or a PATCH's caller.
    pub updated_by: &'a str,
    /// Why (inventory's reason, a cancel's reason, a PATCH's note): recorded with the move
    /// unless the move has a reason of its own ([`OrderStatus::reason_of_move`]).
    pub reason: Option<&'a str>,
    pub correlation_id: &'a str,
    /// The message that caused the move, if one did (an inventory outcome), and whether it was
    /// redelivered: the timeline line names it, and a duplicate of it is noted there even
    /// though it moves nothing. Requests (cancel, PATCH, deadline) that move nothing leave no
    /// trace.
    pub delivered: Option<(&'a EventMeta, bool)>,
    pub idempotent: Option<&'a Idempotent>,
    /// The span that asked for the move (a delivery, an HTTP request), if traced: the events
    /// the move publishes continue its trace.
    pub trace: Option<&'a Trace>,
    /// What the delivered message's envelope said about its sender, for the timeline line.
    pub envelope: &'a [(String, String)],
}

/// Whether a move on `event` asks inventory-svc to give the order's stock back: a cancel, and
/// a deadline that passed (a reservation may still arrive late; its cancel overtakes or
/// follows it, and the stock comes back either way).
pub fn sends_cancel(event: OrderEvent) -> bool {
    matches!(event, OrderEvent::CancelRequested | OrderEvent::TimedOut)
}

/// The HTTP status an Idempotency-Key's record keeps for a move (only a cancel carries a key).
const ACCEPTED: &str = "202";

impl OrderStore {
    /// Apply `m` as a guarded transition, with its events, deadline and retention, atomically.
    ///
    /// # Errors
    /// As [`OrderStore::place`]: Redis unreachable, or the write not acknowledged in time.
    pub async fn transition(&self, m: Move<'_>) -> Result<Applied, WriteError> {
        let now = unix_now_millis();
        let id = m.order_id.as_str();
        let status_meta = EventMeta::new(EventType::OrderStatusUpdated, m.correlation_id, SERVICE)
            .traced(m.trace);
        let cancel_meta = sends_cancel(m.event).then(|| {
            EventMeta::new(EventType::OrderCancelled, m.correlation_id, SERVICE).traced(m.trace)
        });
        // The timeline line: the message that caused the move, or what the move sends.
        let (line_meta, redelivered) = match m.delivered {
            Some((meta, redelivered)) => (meta, redelivered),
            None => (cancel_meta.as_ref().unwrap_or(&status_meta), false),
        };
        let line = history_entry(
            now,
            None,
            line_meta,
            redelivered,
            false,
            m.reason,
            m.envelope,
        );

        let mut invocation = self.scripts.transition.prepare_invoke();
        invocation
            .key(self.keys.order(id))
            .key(self.keys.order_history(id))
            .key(self.keys.orders_by_status_prefix())
            .key(self.keys.outbox())
            .key(self.keys.deadlines())
            .key(self.keys.orders_expiring())
            .key(self.idempotency_record(m.idempotent, id))
            .arg(now)
            .arg(line)
            .arg(crate::orders::HISTORY_CAP)
            .arg(if m.delivered.is_some() { "1" } else { "0" })
            .arg(&status_meta.event_id)
            .arg(m.idempotent.map_or("", |i| i.request.as_str()))
            .arg(self.window_ms())
            .arg(ACCEPTED);
        for (from, to) in OrderStatus::transitions_on(m.event) {
            let reason = from.reason_of_move(m.event).or(m.reason);
            let mut entries = Vec::new();
            if let Some(meta) = &cancel_meta {
                let body = OrderCancelled {
                    order_id: m.order_id.clone(),
                    reason: reason.unwrap_or("cancelled").to_owned(),
                }
                .to_body();
                entries.push(flat(entry_fields(meta, id, &body)));
            }
            let status_event = OrderStatusUpdated {
                order_id: m.order_id.clone(),
                old_status: from,
                new_status: to,
                updated_by: m.updated_by.to_owned(),
                reason: reason.map(str::to_owned),
                at: now,
            };
            entries.push(flat(entry_fields(
                &status_meta,
                id,
                &status_event.to_body(),
            )));
            let deadline = match (to, self.windows.decision_timeout) {
                (OrderStatus::Cancelling, Some(timeout)) => millis_after(now, timeout),
                _ => String::new(),
            };
            let expiry = if to.is_finished() {
                millis_after(now, self.windows.retention)
            } else {
                String::new()
            };
            invocation
                .arg(from.as_str())
                .arg(to.as_str())
                .arg(reason.unwrap_or_default())
                .arg(deadline)
                .arg(expiry)
                .arg(serde_json::Value::from(entries).to_string());
        }
        let answer = invocation
            .invoke_async::<(i64, String, String)>(&mut self.redis.clone())
            .await;
        let (code, first, second) = match answer {
            Ok(answer) => answer,
            Err(e) => return Err(self.unacknowledged(e, id, m.idempotent).await),
        };
        let (status, before) = (OrderStatus::parse(&first), OrderStatus::parse(&second));
        Ok(match (code, status, before) {
            (1, Some(to), Some(from)) => {
                self.outbox.wrote();
                Applied::Moved { from, to }
            }
            (2, _, _) => Applied::Replayed(Seen {
                same_request: m.idempotent.is_some_and(|i| i.request == second),
                order_id: first,
            }),
            (_, Some(status), _) => Applied::Unchanged(status),
            (_, None, _) => Applied::UnknownOrder,
        })
    }
}

/// An outbox entry's fields as the flat JSON array of strings the script unpacks into XADD.
fn flat(fields: Vec<(&'static str, String)>) -> serde_json::Value {
    fields
        .into_iter()
        .flat_map(|(field, value)| [field.to_owned(), value])
        .collect()
}

/// `now` plus `window`, in ms, as the script takes it.
pub fn millis_after(now: u64, window: Duration) -> String {
    now.saturating_add(u64::try_from(window.as_millis()).unwrap_or(u64::MAX))
        .to_string()
}
