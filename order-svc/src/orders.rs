//! Orders in Redis, with a transactional outbox.
//!
//! Placing an order writes the order, its history, its index entries *and* its OrderPlaced
//! event into the outbox stream in one MULTI/EXEC: either all of it exists or none of it. The
//! [`crate::outbox::relay`] publishes the outbox later, so `POST /order` succeeds while the broker is down.
//! Status changes are guarded transitions: the rules are [`OrderStatus::next`], in Rust; a Lua
//! script applies the compare-and-set they give, atomically. Duplicates and stale events change
//! nothing.

use std::collections::HashMap;
use std::sync::Arc;

use redis::{AsyncCommands, Script};
use serde::Serialize;
use shared::domain::{DlqHop, HistoryEntry, OrderEvent, OrderStatus};
use shared::events::{
    EventMeta, EventType, InventoryOutcome, OrderCancelled, OrderPlaced, unix_now_millis,
};
use shared::ids::{Item, OrderId, Qty, StudentId};
use shared::store::Keys;
use shared::store::Redis;

use crate::outbox::{Outbox, entry_fields};

/// How many history entries an order keeps (a flood of duplicates cannot grow it forever).
const HISTORY_CAP: usize = 100;
pub const SERVICE: &str = "order-svc";

/// An order as stored and as `GET /order/{id}` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Order {
    pub order_id: String,
    pub item: String,
    pub qty: i64,
    pub student_id: Option<String>,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub correlation_id: String,
    pub created_at: u64,
    pub updated_at: u64,
}

impl Order {
    fn from_hash(h: HashMap<String, String>) -> Option<Self> {
        let text = |k: &str| h.get(k).cloned();
        let number = |k: &str| h.get(k).and_then(|v| v.parse::<i64>().ok());
        let millis = |k: &str| h.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        Some(Self {
            order_id: text("order_id")?,
            item: text("item")?,
            qty: number("qty")?,
            student_id: text("student_id").filter(|s| !s.is_empty()),
            status: text("status")?,
            reason: text("reason").filter(|s| !s.is_empty()),
            correlation_id: text("correlation_id").unwrap_or_default(),
            created_at: millis("created_at"),
            updated_at: millis("updated_at"),
        })
    }
}

/// An order with its timeline: every transition (or ignored event) and any DLQ hops.
#[derive(Debug, Clone, Serialize)]
pub struct OrderView {
    #[serde(flatten)]
    pub order: Order,
    pub history: Vec<HistoryEntry>,
    pub dlq_hops: Vec<DlqHop>,
}

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
}

#[derive(Clone)]
pub struct OrderStore {
    redis: Redis,
    keys: Keys,
    apply: Script,
    cancel: Script,
    /// The outbox's fill level: wakes the relay, and holds back new orders when full.
    pub outbox: Arc<Outbox>,
}

impl OrderStore {
    pub fn new(redis: Redis, keys: Keys, outbox: Arc<Outbox>) -> Self {
        Self {
            redis,
            keys,
            apply: Script::new(include_str!("lua/apply_outcome.lua")),
            cancel: Script::new(include_str!("lua/cancel.lua")),
            outbox,
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    /// Store a new order and its OrderPlaced event in one transaction.
    ///
    /// # Errors
    /// Redis unreachable: nothing was written.
    pub async fn place(
        &self,
        new: NewOrder,
        correlation_id: Option<String>,
    ) -> Result<Order, redis::RedisError> {
        let order_id = OrderId::generate();
        let correlation_id = correlation_id.unwrap_or_else(|| order_id.to_string());
        let now = unix_now_millis();
        let event = OrderPlaced {
            order_id: order_id.clone(),
            item: new.item,
            qty: new.qty,
            student_id: new.student_id,
        };
        let meta = EventMeta::new(EventType::OrderPlaced, &correlation_id, SERVICE);
        let order = Order {
            order_id: order_id.to_string(),
            item: event.item.to_string(),
            qty: event.qty.get().into(),
            student_id: event.student_id.as_ref().map(ToString::to_string),
            status: "PLACED".into(),
            reason: None,
            correlation_id: correlation_id.clone(),
            created_at: now,
            updated_at: now,
        };
        let id = order.order_id.as_str();
        let history = history_entry(now, "PLACED", &meta, false, true, None);

        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset_multiple(
                self.keys.order(id),
                &[
                    ("order_id", id),
                    ("item", &order.item),
                    ("qty", &order.qty.to_string()),
                    ("student_id", order.student_id.as_deref().unwrap_or("")),
                    ("status", "PLACED"),
                    ("correlation_id", &correlation_id),
                    ("created_at", &now.to_string()),
                    ("updated_at", &now.to_string()),
                ],
            )
            .ignore()
            .zadd(self.keys.orders(), id, now)
            .ignore()
            .zadd(
                format!("{}PLACED", self.keys.orders_by_status_prefix()),
                id,
                now,
            )
            .ignore()
            .rpush(self.keys.order_history(id), history.to_string())
            .ignore()
            .xadd(
                self.keys.outbox(),
                "*",
                &entry_fields(&meta, id, &event.to_body()),
            )
            .ignore();
        let () = pipe.query_async(&mut self.redis.clone()).await?;
        self.outbox.wrote();
        Ok(order)
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
        Ok(Order::from_hash(hash).map(|order| OrderView {
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
        status: Option<&str>,
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
        Ok((
            hashes.into_iter().filter_map(Order::from_hash).collect(),
            total,
        ))
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
        let entry = history_entry(now, "__STATUS__", meta, redelivered, false, None);
        let mut invocation = self.apply.prepare_invoke();
        invocation
            .key(self.keys.order(id))
            .key(self.keys.order_history(id))
            .key(self.keys.orders_by_status_prefix())
            .arg(reason)
            .arg(now)
            .arg(entry.to_string())
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

    /// Mark the order CANCELLING and put OrderCancelled in the outbox, atomically.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn cancel(
        &self,
        order_id: &OrderId,
        reason: &str,
        correlation_id: Option<String>,
    ) -> Result<Cancelled, redis::RedisError> {
        let id = order_id.as_str();
        let correlation_id = match correlation_id {
            Some(c) => c,
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
        let entry = history_entry(now, "CANCELLING", &meta, false, true, Some(reason));
        let moves = OrderStatus::transitions_on(OrderEvent::CancelRequested);
        let mut invocation = self.cancel.prepare_invoke();
        invocation
            .key(self.keys.order(id))
            .key(self.keys.order_history(id))
            .key(self.keys.orders_by_status_prefix())
            .key(self.keys.outbox())
            .arg(now)
            .arg(entry.to_string())
            .arg(moves.len() * 2);
        for (from, to) in moves {
            invocation.arg(from.as_str()).arg(to.as_str());
        }
        for (field, value) in entry_fields(&meta, id, &event.to_body()) {
            invocation.arg(field).arg(value);
        }
        let (started, status): (i64, String) =
            invocation.invoke_async(&mut self.redis.clone()).await?;
        Ok(match (started, OrderStatus::parse(&status)) {
            (1, _) => {
                self.outbox.wrote();
                Cancelled::Started
            }
            (_, None) => Cancelled::UnknownOrder,
            (_, Some(status)) => Cancelled::NotCancellable(status),
        })
    }
}

/// One line of an order's timeline, as JSON.
fn history_entry(
    at_ms: u64,
    status: &str,
    meta: &EventMeta,
    redelivered: bool,
    applied: bool,
    reason: Option<&str>,
) -> String {
    let entry = HistoryEntry {
        at: at_ms,
        status: status.to_owned(),
        event: meta.event_type.name().to_owned(),
        event_id: meta.event_id.clone(),
        service: meta.app_id.clone(),
        redelivered,
        applied,
        reason: reason.map(str::to_owned),
    };
    serde_json::to_string(&entry).unwrap_or_default()
}
