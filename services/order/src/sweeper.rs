//! The sweeper: what time does to orders. Two sorted sets in Redis, read by time, each entry
//! handled in one atomic step that checks it again, so a sweep and an event that race cannot
//! both apply:
//!
//! - **Deadlines** (`Keys::deadlines`, `ORDER_DECISION_TIMEOUT`): an order still PLACED when its
//!   deadline passes is moved by the `TimedOut` event through the same compare-and-set as every
//!   transition ([`crate::lifecycle`]): FAILED, reason `timeout`, with an `order.cancelled` so
//!   that a reservation that arrives late is given back. If inventory's answer got there first,
//!   the move finds the order decided and changes nothing. An order still CANCELLING has its
//!   cancel sent again (`lua/deadline.lua`): the first one was lost, or is stuck somewhere.
//! - **Retention** (`Keys::orders_expiring`, `ORDER_RETENTION`): a finished order is compacted to
//!   a tombstone (`lua/compact.lua`).
//!
//! Several order-svc replicas may sweep at once: each step re-checks what it acts on, so the
//! second one finds nothing to do.

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use saga_domain::events::{EventMeta, EventType, OrderCancelled, unix_now_millis};
use saga_domain::ids::OrderId;
use saga_domain::order::{OrderEvent, OrderStatus};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::SERVICE;
use crate::lifecycle::{Move, millis_after};
use crate::orders::{Applied, HISTORY_CAP, OrderStore, WriteError, history_entry};
use crate::outbox::entry_fields;

/// How often the sweeper looks: a deadline is acted on at most this late. Two `ZRANGEBYSCORE`
/// that find nothing cost Redis next to nothing.
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// At most this many of each per look: a backlog is worked off over several looks, and a look
/// never holds Redis long.
const BATCH: isize = 200;
/// The reason a re-sent cancel carries.
const RESENT: &str = "cancel sent again: the order was still CANCELLING at its deadline";

/// What one look did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub timed_out: usize,
    pub cancels_resent: usize,
    pub compacted: usize,
}

pub struct Sweeper {
    pub store: OrderStore,
}

impl Sweeper {
    /// Look every [`SWEEP_EVERY`] until `shutdown`. A Redis that is away is waited out.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut away = false;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            match self.sweep_once().await {
                Ok(_) => away = false,
                Err(e) if !away => {
                    away = true;
                    warn!(error = %e, "Sweeper cannot reach the order store; deadlines and retention wait until it is back");
                }
                Err(_) => {}
            }
        }
    }

    /// One look at both sets: everything due, up to [`BATCH`] of each.
    ///
    /// # Errors
    /// Redis unreachable (what was done before stays done).
    pub async fn sweep_once(&self) -> Result<Swept, WriteError> {
        let store = &self.store;
        let now = unix_now_millis();
        let mut swept = Swept::default();
        let due: Vec<String> = store
            .redis
            .clone()
            .zrangebyscore_limit(store.keys.deadlines(), "-inf", now, 0, BATCH)
            .await?;
        for id in due {
            match self.deadline_passed(&id, now).await? {
                Deadline::TimedOut => swept.timed_out += 1,
                Deadline::CancelResent => swept.cancels_resent += 1,
                Deadline::Dropped => {}
            }
        }
        let expiring: Vec<String> = store
            .redis
            .clone()
            .zrangebyscore_limit(store.keys.orders_expiring(), "-inf", now, 0, BATCH)
            .await?;
        for id in expiring {
            if self.compact(&id, now).await? {
                swept.compacted += 1;
            }
        }
        Ok(swept)
    }

    async fn deadline_passed(&self, id: &str, now: u64) -> Result<Deadline, WriteError> {
        let store = &self.store;
        let Ok(order_id) = OrderId::parse(id) else {
            // Not an id order-svc writes: nothing to time out.
            let _: () = store.redis.clone().zrem(store.keys.deadlines(), id).await?;
            return Ok(Deadline::Dropped);
        };
        let correlation_id = store.correlation_of(&order_id, None).await?;
        let moved = store
            .transition(Move {
                order_id: &order_id,
                event: OrderEvent::TimedOut,
                updated_by: "system",
                reason: None,
                correlation_id: &correlation_id,
                delivered: None,
                idempotent: None,
                trace: None,
                envelope: &[],
            })
            .await?;
        if let Applied::Moved { to, .. } = moved {
            metrics::counter!("saga_order_timeouts_total", "kind" => "decision").increment(1);
            info!(order_id = %order_id, status = %to,
                  "Order {order_id} timed out: no decision within {}; failed it and sent a cancel so that a late reservation is given back",
                  self.timeout_shown());
            return Ok(Deadline::TimedOut);
        }
        if self.resend_cancel(&order_id, &correlation_id, now).await? {
            metrics::counter!("saga_order_timeouts_total", "kind" => "cancel_resent").increment(1);
            warn!(order_id = %order_id, "Order {order_id} still CANCELLING after {}: cancel sent again", self.timeout_shown());
            return Ok(Deadline::CancelResent);
        }
        Ok(Deadline::Dropped)
    }

    /// `lua/deadline.lua`: send the cancel again if the order is still CANCELLING; otherwise
    /// drop the deadline its decision left behind.
    async fn resend_cancel(
        &self,
        order_id: &OrderId,
        correlation_id: &str,
        now: u64,
    ) -> Result<bool, WriteError> {
        let store = &self.store;
        let id = order_id.as_str();
        let meta = EventMeta::new(EventType::OrderCancelled, correlation_id, SERVICE);
        let body = OrderCancelled {
            order_id: order_id.clone(),
            reason: RESENT.to_owned(),
        }
        .to_body();
        let line = history_entry(
            now,
            Some(OrderStatus::Cancelling),
            &meta,
            false,
            false,
            Some(RESENT),
            &[],
        );
        let next = millis_after(
            now,
            store.windows.decision_timeout.unwrap_or(RESEND_DEFAULT),
        );
        let mut invocation = store.scripts.deadline.prepare_invoke();
        invocation
            .key(store.keys.order(id))
            .key(store.keys.order_history(id))
            .key(store.keys.outbox())
            .key(store.keys.deadlines())
            .arg(id)
            .arg(now)
            .arg(next)
            .arg(OrderStatus::Cancelling.as_str())
            .arg(line)
            .arg(HISTORY_CAP);
        for (field, value) in entry_fields(&meta, id, &body) {
            invocation.arg(field).arg(value);
        }
        let resent: i64 = invocation.invoke_async(&mut store.redis.clone()).await?;
        if resent == 1 {
            store.outbox.wrote();
        }
        Ok(resent == 1)
    }

    /// `lua/compact.lua`: a finished order whose retention is over becomes a tombstone.
    async fn compact(&self, id: &str, now: u64) -> Result<bool, WriteError> {
        let store = &self.store;
        let mut invocation = store.scripts.compact.prepare_invoke();
        invocation
            .key(store.keys.order(id))
            .key(store.keys.order_history(id))
            .key(store.keys.order_dlq_hops(id))
            .key(store.keys.orders())
            .key(store.keys.orders_by_status_prefix())
            .key(store.keys.orders_expiring())
            .key(store.keys.order_tombstone(id))
            .key(store.keys.orders_by_owner_prefix())
            .arg(id)
            .arg(now)
            .arg(store.windows.dedupe_window.as_millis().max(1) as u64);
        for status in OrderStatus::FINISHED {
            invocation.arg(status.as_str());
        }
        let compacted: i64 = invocation.invoke_async(&mut store.redis.clone()).await?;
        if compacted == 1 {
            metrics::counter!("saga_orders_compacted_total").increment(1);
            info!(order_id = %id, "Order {id} compacted: finished longer ago than ORDER_RETENTION; a tombstone remains");
        }
        Ok(compacted == 1)
    }

    fn timeout_shown(&self) -> String {
        self.store.windows.decision_timeout.map_or_else(
            || "its deadline".to_owned(),
            |t| humantime::format_duration(t).to_string(),
        )
    }
}

/// A deadline set before the timeout was switched off is still honoured, with this as the next.
const RESEND_DEFAULT: Duration = Duration::from_secs(300);

/// What a passed deadline did.
enum Deadline {
    TimedOut,
    CancelResent,
    Dropped,
}
