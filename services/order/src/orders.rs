//! Orders in Redis, with a transactional outbox.
//!
//! Placing an order writes the order, its history, its index entries *and* its OrderPlaced
//! event into the outbox stream in one atomic step (`lua/place.lua`): either all of it exists
//! or none of it. The [`crate::outbox::relay`] publishes the outbox later, so `POST /order`
//! succeeds while the broker is down.
//!
//! **Idempotency**: a request with an `Idempotency-Key` ([`Idempotent`]) records the key, the
//! request and the order in that same atomic step, for the idempotency window. A retry finds
//! the record and writes nothing: it gets the order the key first made (or a conflict, if the
//! key came with another request). There is no moment at which the order exists and its key
//! does not, so the first attempt having succeeded, failed after writing (a `WAIT` that timed
//! out) or still running makes no difference: one key, one order. Cancelling works the same way
//! (`lua/cancel.lua`).
//! Status changes are guarded transitions: the rules are [`OrderStatus::next`], in Rust; a Lua
//! script applies the compare-and-set they give, atomically. Duplicates and stale events change
//! nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::{AsyncCommands, Script};
use saga_domain::events::{
    EventMeta, EventType, InventoryOutcome, OrderCancelled, OrderPlaced, unix_now_millis,
};
use saga_domain::ids::{CorrelationId, IdempotencyKey, Item, OrderId, Qty, StudentId};
use saga_domain::order::{HistoryEntry, OrderEvent, OrderStatus};
pub use saga_domain::view::{Order, OrderView};
use saga_platform::redis::replication::ReplicationLag;
use saga_platform::redis::store::Keys;
use saga_platform::redis::store::Redis;

use crate::SERVICE;
use crate::outbox::{Outbox, entry_fields};

/// How many history entries an order keeps (a flood of duplicates cannot grow it forever).
const HISTORY_CAP: usize = 100;

/// A validated request to place an order.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub item: Item,
    pub qty: Qty,
    pub student_id: Option<StudentId>,
}

/// What applying an inventory outcome did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The order moved from one status to another.
    Moved { from: OrderStatus, to: OrderStatus },
    /// Nothing changed: a duplicate, or a stale event for an order now in this status.
    Unchanged(OrderStatus),
    /// No such order here (e.g. an OrderPlaced a lab script published by hand).
    UnknownOrder,
}

/// What a cancel request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    Started,
    NotCancellable(OrderStatus),
    UnknownOrder,
    /// The Idempotency-Key was used before: what for.
    Seen(Seen),
}

/// An `Idempotency-Key`, with the request it came with (as the key's record keeps it, so that a
/// retry can be told from another request under the same key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotent {
    pub key: IdempotencyKey,
    pub request: String,
}

/// What a key already recorded was first used for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub order_id: String,
    /// Whether this request is the same as the first: a retry (`true`), or another request
    /// under the same key (`false`, a conflict).
    pub same_request: bool,
}

/// What placing an order did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placed {
    New(Order),
    /// The Idempotency-Key was used before: what for.
    Seen(Seen),
}

/// Why a write cannot be promised.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Written on the master, but not acknowledged by the replicas it must reach in time
    /// ([`ReplicationLag`]): the order may exist (and will be processed if it survives). The
    /// client must retry with the same `Idempotency-Key`, which finds it.
    #[error("{lag}")]
    Unacknowledged {
        order_id: String,
        lag: ReplicationLag,
    },
    /// Redis unreachable or refusing: nothing may have been written.
    #[error(transparent)]
    Store(#[from] redis::RedisError),
}

#[derive(Clone)]
pub struct OrderStore {
    redis: Redis,
    keys: Keys,
    apply: Script,
    place: Script,
    cancel: Script,
    /// How long an Idempotency-Key's record is kept (`IDEMPOTENCY_WINDOW`).
    idempotency_window: Duration,
    /// The outbox's fill level: wakes the relay, and holds back new orders when full.
    pub outbox: Arc<Outbox>,
}

impl OrderStore {
    pub fn new(
        redis: Redis,
        keys: Keys,
        outbox: Arc<Outbox>,
        idempotency_window: Duration,
    ) -> Self {
        Self {
            redis,
            keys,
            apply: Script::new(include_str!("lua/apply_outcome.lua")),
            place: Script::new(include_str!("lua/place.lua")),
            cancel: Script::new(include_str!("lua/cancel.lua")),
            idempotency_window,
            outbox,
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    /// Store a new order and its OrderPlaced event in one atomic step, with its
    /// Idempotency-Key's record when there is one (and nothing at all if that key was used
    /// before).
    ///
    /// # Errors
    /// [`WriteError::Store`]: Redis unreachable, nothing written;
    /// [`WriteError::Unacknowledged`]: written, but not acknowledged by the replicas in time.
    pub async fn place(
        &self,
        new: NewOrder,
        correlation_id: Option<CorrelationId>,
        idempotent: Option<&Idempotent>,
    ) -> Result<Placed, WriteError> {
        let order_id = OrderId::generate();
        let correlation_id =
            correlation_id.map_or_else(|| order_id.to_string(), |c| c.as_str().to_owned());
        let now = unix_now_millis();
        let event = OrderPlaced {
            order_id: order_id.clone(),
            item: new.item,
            qty: new.qty,
            student_id: new.student_id,
        };
        let meta = EventMeta::new(EventType::OrderPlaced, &correlation_id, SERVICE);
        let order = Order {
            order_id: order_id.clone(),
            item: event.item.clone(),
            qty: event.qty.get().into(),
            student_id: event.student_id.as_ref().map(ToString::to_string),
            status: OrderStatus::Placed,
            reason: None,
            correlation_id: correlation_id.clone(),
            created_at: now,
            updated_at: now,
        };
        let id = order.order_id.as_str();
        let history = history_entry(now, Some(OrderStatus::Placed), &meta, false, true, None);
        let fields = order.to_hash();
        let mut invocation = self.place.prepare_invoke();
        invocation
            .key(self.keys.order(id))
            .key(self.keys.order_history(id))
            .key(self.keys.orders())
            .key(format!(
                "{}{}",
                self.keys.orders_by_status_prefix(),
                OrderStatus::Placed
            ))
            .key(self.keys.outbox())
            .key(self.idempotency_record(idempotent, id))
            .arg(idempotent.map_or("", |i| i.request.as_str()))
            .arg(self.window_ms())
            .arg(id)
            .arg(now)
            .arg(history)
            .arg(fields.len() * 2);
        for (field, value) in &fields {
            invocation.arg(*field).arg(value);
        }
        for (field, value) in entry_fields(&meta, id, &event.to_body()) {
            invocation.arg(field).arg(value);
        }
        let placed = invocation
            .invoke_async::<(i64, String, String)>(&mut self.redis.clone())
            .await;
        match placed {
            Ok((1, _, _)) => {
                self.outbox.wrote();
                Ok(Placed::New(order))
            }
            Ok((_, first_order, first_request)) => Ok(Placed::Seen(Seen {
                same_request: idempotent.is_some_and(|i| i.request == first_request),
                order_id: first_order,
            })),
            Err(e) => Err(self.unacknowledged(e, id, idempotent).await),
        }
    }

    /// The Idempotency-Key's record, or (without a key) a key that stands in for it: Lua wants
    /// every key it may touch declared, and this one is never touched then.
    fn idempotency_record(&self, idempotent: Option<&Idempotent>, order_id: &str) -> String {
        idempotent.map_or_else(
            || self.keys.order(order_id),
            |i| self.keys.idempotency(&i.key),
        )
    }

    fn window_ms(&self) -> u64 {
        self.idempotency_window.as_millis().max(1) as u64
    }

    /// A failed write as the caller must see it: if only its replication is unconfirmed, the
    /// order it wrote (ours, or, with a key already recorded, the first one) may exist.
    async fn unacknowledged(
        &self,
        err: redis::RedisError,
        order_id: &str,
        idempotent: Option<&Idempotent>,
    ) -> WriteError {
        let Some(lag) = ReplicationLag::of(&err).cloned() else {
            return WriteError::Store(err);
        };
        self.outbox.wrote();
        let mut order_id = order_id.to_owned();
        if let Some(idempotent) = idempotent {
            // A read: answered at once, no WAIT. Which order the key names now.
            let recorded: Result<Option<String>, _> = self
                .redis
                .clone()
                .hget(self.keys.idempotency(&idempotent.key), "order_id")
                .await;
            if let Ok(Some(recorded)) = recorded {
                order_id = recorded;
            }
        }
        WriteError::Unacknowledged { order_id, lag }
    }

    /// The order and its history, if it exists.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn get(&self, order_id: &OrderId) -> Result<Option<OrderView>, redis::RedisError> {
        let id = order_id.as_str();
        let (hash, history, dlq_hops): (HashMap<String, String>, Vec<String>, Vec<String>) =
            redis::pipe()
                .hgetall(self.keys.order(id))
                .lrange(self.keys.order_history(id), 0, -1)
                .lrange(self.keys.order_dlq_hops(id), 0, -1)
                .query_async(&mut self.redis.clone())
                .await?;
        fn parse<T: serde::de::DeserializeOwned>(entries: Vec<String>) -> Vec<T> {
            entries
                .iter()
                .filter_map(|h| serde_json::from_str(h).ok())
                .collect()
        }
        Ok(Order::from_hash(&hash).map(|order| OrderView {
            order,
            history: parse(history),
            dlq_hops: parse(dlq_hops),
        }))
    }

    /// Orders newest first, optionally only those in `status`; returns the page and the total.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn list(
        &self,
        status: Option<OrderStatus>,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<Order>, usize), redis::RedisError> {
        let index = match status {
            Some(s) => format!("{}{s}", self.keys.orders_by_status_prefix()),
            None => self.keys.orders(),
        };
        let mut conn = self.redis.clone();
        if limit == 0 {
            // ZREVRANGE's stop would be -1, which means "to the end": answer the count alone.
            return Ok((Vec::new(), conn.zcard(&index).await?));
        }
        let (total, ids): (usize, Vec<String>) = redis::pipe()
            .zcard(&index)
            .zrevrange(&index, offset as isize, (offset + limit) as isize - 1)
            .query_async(&mut conn)
            .await?;
        if ids.is_empty() {
            return Ok((Vec::new(), total));
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(self.keys.order(id));
        }
        let hashes: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await?;
        Ok((hashes.iter().filter_map(Order::from_hash).collect(), total))
    }

    /// Apply an inventory outcome as a guarded transition.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn apply(
        &self,
        outcome: &InventoryOutcome,
        meta: &EventMeta,
        redelivered: bool,
    ) -> Result<Applied, redis::RedisError> {
        let id = outcome.order_id().as_str();
        let (event, reason) = match outcome {
            InventoryOutcome::Reserved { .. } => (OrderEvent::Reserved, ""),
            InventoryOutcome::Failed { reason, .. } => {
                (OrderEvent::ReservationFailed, reason.as_str())
            }
            InventoryOutcome::Released { .. } => (OrderEvent::Released, ""),
        };
        let now = unix_now_millis();
        // The status after the event is the script's to tell: it adds it, and marks the entry
        // applied if the order moved.
        let entry = history_entry(now, None, meta, redelivered, false, None);
        let mut invocation = self.apply.prepare_invoke();
        invocation
            .key(self.keys.order(id))
            .key(self.keys.order_history(id))
            .key(self.keys.orders_by_status_prefix())
            .arg(reason)
            .arg(now)
            .arg(entry)
            .arg(HISTORY_CAP);
        for (from, to) in OrderStatus::transitions_on(event) {
            let reason = from.reason_of_move(event).unwrap_or_default();
            invocation.arg(from.as_str()).arg(to.as_str()).arg(reason);
        }
        let (moved, status, before): (i64, String, String) =
            invocation.invoke_async(&mut self.redis.clone()).await?;
        let (status, before) = (OrderStatus::parse(&status), OrderStatus::parse(&before));
        Ok(match (moved, status, before) {
            (1, Some(to), Some(from)) => Applied::Moved { from, to },
            (_, Some(status), _) => Applied::Unchanged(status),
            (_, None, _) => Applied::UnknownOrder,
        })
    }

    /// Mark the order CANCELLING and put OrderCancelled in the outbox, atomically, with the
    /// Idempotency-Key's record when there is one (and nothing at all if that key was used
    /// before).
    ///
    /// # Errors
    /// As [`Self::place`].
    pub async fn cancel(
        &self,
        order_id: &OrderId,
        reason: &str,
        correlation_id: Option<CorrelationId>,
        idempotent: Option<&Idempotent>,
    ) -> Result<Cancelled, WriteError> {
        let id = order_id.as_str();
        let correlation_id = match correlation_id {
            Some(c) => c.as_str().to_owned(),
            None => self
                .redis
                .clone()
                .hget::<_, _, Option<String>>(self.keys.order(id), "correlation_id")
                .await?
                .unwrap_or_else(|| id.to_owned()),
        };
        let meta = EventMeta::new(EventType::OrderCancelled, &correlation_id, SERVICE);
        let event = OrderCancelled {
            order_id: order_id.clone(),
            reason: reason.to_owned(),
        };
        let now = unix_now_millis();
        let entry = history_entry(
            now,
            Some(OrderStatus::Cancelling),
            &meta,
            false,
            true,
            Some(reason),
        );
        let moves = OrderStatus::transitions_on(OrderEvent::CancelRequested);
        let mut invocation = self.cancel.prepare_invoke();
        invocation
            .key(self.keys.order(id))
            .key(self.keys.order_history(id))
            .key(self.keys.orders_by_status_prefix())
            .key(self.keys.outbox())
            .key(self.idempotency_record(idempotent, id))
            .arg(now)
            .arg(entry)
            .arg(idempotent.map_or("", |i| i.request.as_str()))
            .arg(self.window_ms())
            .arg(moves.len() * 2);
        for (from, to) in moves {
            invocation.arg(from.as_str()).arg(to.as_str());
        }
        for (field, value) in entry_fields(&meta, id, &event.to_body()) {
            invocation.arg(field).arg(value);
        }
        let answer = invocation
            .invoke_async::<(i64, String, String)>(&mut self.redis.clone())
            .await;
        let (outcome, status, first_request) = match answer {
            Ok(answer) => answer,
            Err(e) => return Err(self.unacknowledged(e, id, idempotent).await),
        };
        Ok(match (outcome, OrderStatus::parse(&status)) {
            (1, _) => {
                self.outbox.wrote();
                Cancelled::Started
            }
            (2, _) => Cancelled::Seen(Seen {
                same_request: idempotent.is_some_and(|i| i.request == first_request),
                order_id: status,
            }),
            (_, None) => Cancelled::UnknownOrder,
            (_, Some(status)) => Cancelled::NotCancellable(status),
        })
    }
}

/// One line of an order's timeline, as JSON. Without a status (`None`), the line has no
/// `status` field: the script that applies the event adds the one it moved the order to.
fn history_entry(
    at_ms: u64,
    status: Option<OrderStatus>,
    meta: &EventMeta,
    redelivered: bool,
    applied: bool,
    reason: Option<&str>,
) -> String {
    let entry = HistoryEntry {
        at: at_ms,
        // Replaced below when the script is to tell the status.
        status: status.unwrap_or(OrderStatus::Placed),
        event: Some(meta.event_type),
        event_id: meta.event_id.clone(),
        service: meta.app_id.clone(),
        redelivered,
        applied,
        reason: reason.map(str::to_owned),
        status_event_id: None,
    };
    let mut json = serde_json::to_value(&entry).unwrap_or_default();
    if let (None, Some(fields)) = (status, json.as_object_mut()) {
        fields.remove("status");
    }
    json.to_string()
}
