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
//! Status changes are guarded transitions: the rules are [`OrderStatus::next`], in Rust; one Lua
//! script applies the compare-and-set they give, with the move's events, atomically
//! ([`crate::lifecycle`]). Duplicates and stale events change nothing.
//!
//! A finished order is kept whole for `ORDER_RETENTION`, then compacted by the sweeper to a
//! tombstone ([`Tombstone`]) that `GET /order/{id}` answers "expired" from.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::{AsyncCommands, Script};
use saga_domain::events::{EventMeta, EventType, InventoryOutcome, OrderPlaced, unix_now_millis};
use saga_domain::ids::{CorrelationId, IdempotencyKey, OrderId, StudentId};
use saga_domain::lines::Lines;
use saga_domain::order::{HistoryEntry, OrderEvent, OrderStatus};
use saga_domain::owner::{Owner, UserId};
use saga_domain::trace::Trace;
pub use saga_domain::view::{Order, OrderLines, OrderView, Tombstone};
use saga_platform::redis::replication::ReplicationLag;
use saga_platform::redis::store::Keys;
use saga_platform::redis::store::Redis;
use saga_platform::service::spans::Spans;

use crate::SERVICE;
use crate::lifecycle::{Move, Windows, millis_after};
use crate::outbox::{Outbox, entry_fields};

/// How many history entries an order keeps (a flood of duplicates cannot grow it forever).
pub(crate) const HISTORY_CAP: usize = 100;

/// A validated request to place an order.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub lines: Lines,
    pub student_id: Option<StudentId>,
    /// Who places it, when it comes through the per-user API with a token: stored with the
    /// order and indexed per owner (`Keys::orders_by_owner`), in the same atomic step.
    pub owner: Option<Owner>,
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
    /// The request's Idempotency-Key was used before: what for. Nothing was written.
    Replayed(Seen),
}

/// What a `PATCH .../status` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusSet {
    /// The order moved; here it is now.
    Moved(Box<OrderView>),
    /// The order is in `status`, from which the request is not allowed.
    Conflict(OrderStatus),
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

/// order-svc's Lua scripts, each one atomic step. Shared behind an `Arc` by every clone of the
/// store (one per HTTP request): a `Script` owns its source, 8 KB for the four, and copying them
/// per request showed in order-svc's profile under load (allocation and memmove).
pub(crate) struct Scripts {
    pub place: Script,
    pub transition: Script,
    pub deadline: Script,
    pub compact: Script,
}

impl WriteError {
    /// As a plain store error, for a consumer: a write not acknowledged by the replicas is an
    /// outage like any other there (the message is retried, and the move is idempotent).
    pub fn into_redis_error(self) -> redis::RedisError {
        match self {
            Self::Store(e) => e,
            Self::Unacknowledged { lag, .. } => lag.into_redis_error(),
        }
    }
}

#[derive(Clone)]
pub struct OrderStore {
    pub(crate) redis: Redis,
    pub(crate) keys: Keys,
    pub(crate) scripts: Arc<Scripts>,
    /// How long an Idempotency-Key's record is kept (`IDEMPOTENCY_WINDOW`).
    idempotency_window: Duration,
    /// The decision deadline and the retention windows.
    pub(crate) windows: Windows,
    /// The outbox's fill level: wakes the relay, and holds back new orders when full.
    pub outbox: Arc<Outbox>,
    /// Where the spans of the requests that write orders go (nowhere by default).
    pub spans: Spans,
}

impl OrderStore {
    pub fn new(
        redis: Redis,
        keys: Keys,
        outbox: Arc<Outbox>,
        idempotency_window: Duration,
        windows: Windows,
    ) -> Self {
        Self {
            redis,
            keys,
            scripts: Arc::new(Scripts {
                place: Script::new(include_str!("lua/place.lua")),
                transition: Script::new(include_str!("lua/transition.lua")),
                deadline: Script::new(include_str!("lua/deadline.lua")),
                compact: Script::new(include_str!("lua/compact.lua")),
            }),
            idempotency_window,
            windows,
            outbox,
            spans: Spans::off(),
        }
    }

    /// Export the spans of the requests that write orders.
    pub fn with_spans(mut self, spans: Spans) -> Self {
        self.spans = spans;
        self
    }

    pub fn windows(&self) -> Windows {
        self.windows
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
        trace: &Trace,
    ) -> Result<Placed, WriteError> {
        let order_id = OrderId::generate();
        let correlation_id =
            correlation_id.map_or_else(|| order_id.to_string(), |c| c.as_str().to_owned());
        let now = unix_now_millis();
        let event = OrderPlaced {
            order_id: order_id.clone(),
            lines: new.lines,
            student_id: new.student_id,
        };
        let meta = EventMeta::new(EventType::OrderPlaced, &correlation_id, SERVICE)
            .traced(Some(trace))
            .versioned(event.schema_version());
        let order = Order {
            order_id: order_id.clone(),
            lines: OrderLines::of(&event.lines),
            student_id: event.student_id.as_ref().map(ToString::to_string),
            status: OrderStatus::Placed,
            reason: None,
            correlation_id: correlation_id.clone(),
            created_at: now,
            updated_at: now,
            owner: new.owner,
        };
        let id = order.order_id.as_str();
        let history = history_entry(
            now,
            Some(OrderStatus::Placed),
            &meta,
            false,
            true,
            None,
            &[],
        );
        let fields = order.to_hash();
        let deadline = self
            .windows
            .decision_timeout
            .map(|timeout| millis_after(now, timeout))
            .unwrap_or_default();
        let mut invocation = self.scripts.place.prepare_invoke();
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
            .key(self.keys.deadlines())
            // Without an owner a stand-in that the script never touches (as for the key's record).
            .key(order.owner.as_ref().map_or_else(
                || self.keys.order(id),
                |owner| self.keys.orders_by_owner(&owner.user_id),
            ))
            .arg(idempotent.map_or("", |i| i.request.as_str()))
            .arg(self.window_ms())
            .arg(id)
            .arg(now)
            .arg(history)
            .arg(deadline)
            .arg(if order.owner.is_some() { "1" } else { "" })
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
    pub(crate) fn idempotency_record(
        &self,
        idempotent: Option<&Idempotent>,
        order_id: &str,
    ) -> String {
        idempotent.map_or_else(
            || self.keys.order(order_id),
            |i| self.keys.idempotency(&i.key),
        )
    }

    pub(crate) fn window_ms(&self) -> u64 {
        self.idempotency_window.as_millis().max(1) as u64
    }

    /// A failed write as the caller must see it: if only its replication is unconfirmed, the
    /// order it wrote (ours, or, with a key already recorded, the first one) may exist.
    pub(crate) async fn unacknowledged(
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

    /// What is left of an order compacted after its retention, if it was (and its tombstone
    /// has not expired too).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn tombstone(
        &self,
        order_id: &OrderId,
    ) -> Result<Option<Tombstone>, redis::RedisError> {
        let raw: Option<String> = self
            .redis
            .clone()
            .get(self.keys.order_tombstone(order_id.as_str()))
            .await?;
        Ok(raw.and_then(|raw| serde_json::from_str(&raw).ok()))
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
        self.page(&index, offset, limit).await
    }

    /// The orders `user_id` placed through the per-user API, newest first; the page and the
    /// total.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn list_owned(
        &self,
        user_id: &UserId,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<Order>, usize), redis::RedisError> {
        self.page(&self.keys.orders_by_owner(user_id), offset, limit)
            .await
    }

    /// Who owns the order (`None`: no such order, or one placed without a token). An owner
    /// never changes, so what this reads stays true for any move that follows it.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn owner_of(&self, order_id: &OrderId) -> Result<Option<UserId>, redis::RedisError> {
        let owner: Option<String> = self
            .redis
            .clone()
            .hget(self.keys.order(order_id.as_str()), "owner_id")
            .await?;
        Ok(owner.and_then(|id| UserId::parse(&id).ok()))
    }

    /// One page of the orders in the sorted set `index`, newest first, and its size.
    async fn page(
        &self,
        index: &str,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<Order>, usize), redis::RedisError> {
        let mut conn = self.redis.clone();
        if limit == 0 {
            // ZREVRANGE's stop would be -1, which means "to the end": answer the count alone.
            return Ok((Vec::new(), conn.zcard(index).await?));
        }
        let (total, ids): (usize, Vec<String>) = redis::pipe()
            .zcard(index)
            .zrevrange(index, offset as isize, (offset + limit) as isize - 1)
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

    /// Apply an inventory outcome as a guarded transition ([`crate::lifecycle`]).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn apply(
        &self,
        outcome: &InventoryOutcome,
        meta: &EventMeta,
        redelivered: bool,
        envelope: &[(String, String)],
    ) -> Result<Applied, WriteError> {
        let (event, reason) = match outcome {
            InventoryOutcome::Reserved { .. } => (OrderEvent::Reserved, None),
            InventoryOutcome::Failed { reason, .. } => {
                (OrderEvent::ReservationFailed, Some(reason.as_str()))
            }
            InventoryOutcome::Released { .. } => (OrderEvent::Released, None),
        };
        self.transition(Move {
            order_id: outcome.order_id(),
            event,
            updated_by: &meta.app_id,
            reason,
            correlation_id: &meta.correlation_id,
            delivered: Some((meta, redelivered)),
            idempotent: None,
            trace: meta.trace.as_ref(),
            envelope,
        })
        .await
    }

    /// Mark the order CANCELLING and put OrderCancelled (and the status event) in the outbox,
    /// atomically, with the Idempotency-Key's record when there is one (and nothing at all if
    /// that key was used before).
    ///
    /// # Errors
    /// As [`Self::place`].
    pub async fn cancel(
        &self,
        order_id: &OrderId,
        reason: &str,
        correlation_id: Option<CorrelationId>,
        idempotent: Option<&Idempotent>,
        trace: &Trace,
    ) -> Result<Cancelled, WriteError> {
        let correlation_id = self.correlation_of(order_id, correlation_id).await?;
        let moved = self
            .transition(Move {
                order_id,
                event: OrderEvent::CancelRequested,
                updated_by: "customer",
                reason: Some(reason),
                correlation_id: &correlation_id,
                delivered: None,
                idempotent,
                trace: Some(trace),
                envelope: &[],
            })
            .await?;
        Ok(match moved {
            Applied::Moved { .. } => Cancelled::Started,
            Applied::Replayed(seen) => Cancelled::Seen(seen),
            Applied::Unchanged(status) => Cancelled::NotCancellable(status),
            Applied::UnknownOrder => Cancelled::UnknownOrder,
        })
    }

    /// `PATCH .../status`: move the order to `target` (SHIPPED, DELIVERED, or CANCELLED, which
    /// starts a cancel) through the same compare-and-set as every transition.
    ///
    /// # Errors
    /// As [`Self::place`].
    pub async fn set_status(
        &self,
        order_id: &OrderId,
        target: OrderStatus,
        note: Option<&str>,
        updated_by: &str,
        trace: &Trace,
    ) -> Result<StatusSet, WriteError> {
        let Some(event) = OrderStatus::requested(target) else {
            // Nobody may ask for it: a conflict with whatever the order's status is.
            return Ok(match self.get(order_id).await? {
                Some(view) => StatusSet::Conflict(view.order.status),
                None => StatusSet::UnknownOrder,
            });
        };
        let correlation_id = self.correlation_of(order_id, None).await?;
        let reason = match event {
            OrderEvent::CancelRequested => Some(note.unwrap_or("cancelled by request")),
            _ => note,
        };
        let moved = self
            .transition(Move {
                order_id,
                event,
                updated_by,
                reason,
                correlation_id: &correlation_id,
                delivered: None,
                idempotent: None,
                // The request's span: the status event (and a cancel it starts) continue it.
                trace: Some(trace),
                envelope: &[],
            })
            .await?;
        Ok(match moved {
            Applied::Moved { .. } => match self.get(order_id).await? {
                Some(view) => StatusSet::Moved(Box::new(view)),
                None => StatusSet::UnknownOrder,
            },
            Applied::Unchanged(status) => StatusSet::Conflict(status),
            Applied::UnknownOrder | Applied::Replayed(_) => StatusSet::UnknownOrder,
        })
    }

    /// The correlation id an event about the order carries: the request's, else the order's
    /// own (its events are followed by it), else its id.
    pub(crate) async fn correlation_of(
        &self,
        order_id: &OrderId,
        given: Option<CorrelationId>,
    ) -> Result<String, redis::RedisError> {
        if let Some(given) = given {
            return Ok(given.as_str().to_owned());
        }
        let id = order_id.as_str();
        Ok(self
            .redis
            .clone()
            .hget::<_, _, Option<String>>(self.keys.order(id), "correlation_id")
            .await?
            .unwrap_or_else(|| id.to_owned()))
    }
}

/// One line of an order's timeline, as JSON. Without a status (`None`), the line has no
/// `status` field: the script that applies the event adds the one it moved the order to.
pub(crate) fn history_entry(
    at_ms: u64,
    status: Option<OrderStatus>,
    meta: &EventMeta,
    redelivered: bool,
    applied: bool,
    reason: Option<&str>,
    envelope: &[(String, String)],
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
        envelope: envelope.iter().cloned().collect(),
    };
    let mut json = serde_json::to_value(&entry).unwrap_or_default();
    if let (None, Some(fields)) = (status, json.as_object_mut()) {
        fields.remove("status");
    }
    json.to_string()
}
