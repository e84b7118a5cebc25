//! Redis: the connection, and where every key lives.
//!
//! The connection is a [`Redis`] (see [`crate::redis::client`]): one Redis, or the master
//! Sentinel names, with `WAIT` after writes when replicas are required. All keys sit under one prefix ([`Keys`]), so a test, a demo and a benchmark can share one
//! Redis without touching each other. The layout is written down here once; the services, the
//! checker and `sagactl` all read it from here.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use crate::redis::client::Redis;
use crate::redis::replication::Replication;
use crate::service::backoff::Backoff;
use crate::service::config::redact_url;
use saga_domain::order::DlqHop;

/// A Redis connection that reconnects by itself (following the master, with a Sentinel URL).
/// Created lazily, so a service starts even while Redis is away; commands fail fast instead of
/// hanging during an outage. Replicas required as `REDIS_MIN_REPLICAS=auto` says.
///
/// # Errors
/// Only if the URL is unusable (config validation already refused bad ones).
pub fn connect(url: &str) -> anyhow::Result<Redis> {
    connect_with(url, Replication::default())
}

/// [`connect`] with an explicit `WAIT` policy (the services pass their `REDIS_MIN_REPLICAS`).
///
/// # Errors
/// Only if the URL is unusable (config validation already refused bad ones).
pub fn connect_with(url: &str, replication: Replication) -> anyhow::Result<Redis> {
    Redis::new(url, replication)
}

/// Wait until Redis answers PING, retrying with capped backoff and a few log lines.
/// Returns `false` if shutdown came first.
pub async fn wait_until_reachable(redis: &Redis, url: &str, shutdown: &CancellationToken) -> bool {
    let mut backoff = Backoff::for_outages();
    loop {
        match ping(redis).await {
            Ok(()) => {
                info!(redis = %redact_url(url), "connected to Redis");
                return true;
            }
            Err(e) => {
                let delay = backoff.next_delay();
                if backoff.worth_logging() {
                    warn!(redis = %redact_url(url), attempt = backoff.attempts(), retry_in_ms = delay.as_millis() as u64,
                          cause = %e, "Redis unreachable; retrying");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// One PING with a short deadline (used by `/ready`).
///
/// # Errors
/// Redis did not answer PONG within a second.
pub async fn ping(redis: &Redis) -> anyhow::Result<()> {
    let mut conn = redis.clone();
    let reply: String = tokio::time::timeout(
        Duration::from_secs(1),
        redis::cmd("PING").query_async(&mut conn),
    )
    .await
    .map_err(|_| anyhow::anyhow!("no answer within 1 s"))??;
    anyhow::ensure!(reply == "PONG", "unexpected PING reply {reply:?}");
    Ok(())
}

/// The Redis key layout, all under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    // --- order-svc ---
    /// Hash: one order (`item`, `qty`, `student_id`, `status`, `reason`, times).
    pub fn order(&self, order_id: &str) -> String {
        format!("{}:order:{order_id}", self.prefix)
    }
    /// List of JSON entries: the order's history, oldest first.
    pub fn order_history(&self, order_id: &str) -> String {
        format!("{}:order:{order_id}:history", self.prefix)
    }
    /// Sorted set of order ids by creation time (ms), for listing.
    pub fn orders(&self) -> String {
        format!("{}:orders", self.prefix)
    }
    /// Prefix of the per-status sorted sets (`...:orders:status:CONFIRMED`), for filtering.
    pub fn orders_by_status_prefix(&self) -> String {
        format!("{}:orders:status:", self.prefix)
    }
    /// Prefix of the per-owner sorted sets (`...:orders:owner:<user_id>`): the orders a user
    /// placed through the per-user API, by creation time. A user id has no `:`
    /// (`saga_domain::owner::UserId`).
    pub fn orders_by_owner_prefix(&self) -> String {
        format!("{}:orders:owner:", self.prefix)
    }
    /// Sorted set of the orders `user_id` placed through the per-user API, by creation time (ms).
    pub fn orders_by_owner(&self, user_id: &saga_domain::owner::UserId) -> String {
        format!("{}{user_id}", self.orders_by_owner_prefix())
    }
    /// Stream: events written with their order, waiting to be published (the outbox).
    pub fn outbox(&self) -> String {
        format!("{}:outbox", self.prefix)
    }
    /// Stream: outbox entries that can never be published as they are (e.g. a property longer
    /// than AMQP allows), moved aside by the relay with `parked_reason`, so that the entries
    /// behind them flow. `sagactl outbox list` shows them, `sagactl outbox replay` puts one
    /// back.
    pub fn outbox_parked(&self) -> String {
        format!("{}:outbox:parked", self.prefix)
    }
    /// Hash: what one `Idempotency-Key` was first used for (`request`), and the order it
    /// made or cancelled (`order_id`, `status`); expires after the idempotency window. Written
    /// in the same atomic step as the order (order-svc's `lua/place.lua`, `lua/cancel.lua`).
    pub fn idempotency(&self, key: &saga_domain::ids::IdempotencyKey) -> String {
        format!("{}:idempotency:{key}", self.prefix)
    }

    /// Sorted set: order id → the time (ms) its decision deadline passes (a PLACED order) or its
    /// cancel is sent again (a CANCELLING one). The sweeper reads what is due; every transition
    /// that decides the order removes it, in the same script.
    pub fn deadlines(&self) -> String {
        format!("{}:orders:deadlines", self.prefix)
    }
    /// Sorted set: finished order id → the time (ms) it is compacted (`ORDER_RETENTION` after
    /// it finished).
    pub fn orders_expiring(&self) -> String {
        format!("{}:orders:expiring", self.prefix)
    }
    /// String (JSON): what is left of a compacted order (its final status and when it finished
    /// and expired), so that `GET /order/{id}` can say "expired"; kept `DEDUPE_WINDOW`.
    pub fn order_tombstone(&self, order_id: &str) -> String {
        format!("{}:order:{order_id}:expired", self.prefix)
    }

    /// List of JSON entries: poison messages about this order that went to the DLQ.
    pub fn order_dlq_hops(&self, order_id: &str) -> String {
        format!("{}:order:{order_id}:dlq", self.prefix)
    }

    // --- inventory-svc ---
    /// Hash item → units available now. An item absent here is unknown.
    pub fn stock(&self) -> String {
        format!("{}:stock", self.prefix)
    }
    /// Hash item → units the stock started with (plus any `stock set` adjustments).
    pub fn stock_initial(&self) -> String {
        format!("{}:stock:initial", self.prefix)
    }
    /// Hash item → units ever reserved.
    pub fn stock_reserved(&self) -> String {
        format!("{}:stock:reserved", self.prefix)
    }
    /// Hash item → units ever released by cancellations.
    pub fn stock_released(&self) -> String {
        format!("{}:stock:released", self.prefix)
    }
    /// Hash: what inventory decided for one order, and the event id it announced it with.
    pub fn reservation(&self, order_id: &str) -> String {
        format!("{}:reservation:{order_id}", self.prefix)
    }
    /// Sorted set: order id → the time (ms) its reservation record is compacted to what dedupe
    /// and the ledger need (`ORDER_RETENTION` after the decision or the release). Written by the
    /// same script as the decision or the release; inventory-svc's sweeper takes what is due.
    pub fn reservations_compacting(&self) -> String {
        format!("{}:reservations:compacting", self.prefix)
    }
    /// Sorted set: order id → the time (ms) its compacted record is folded into the archived
    /// totals and deleted (`DEDUPE_WINDOW` after the compaction).
    pub fn reservations_archiving(&self) -> String {
        format!("{}:reservations:archiving", self.prefix)
    }
    /// Hash item → units reserved by records that were archived (folded in and deleted): the
    /// `reserved` books equal the records' sums plus this.
    pub fn stock_archived_reserved(&self) -> String {
        format!("{}:stock:archived:reserved", self.prefix)
    }
    /// Hash item → units released by records that were archived: the `released` books equal
    /// the records' sums plus this.
    pub fn stock_archived_released(&self) -> String {
        format!("{}:stock:archived:released", self.prefix)
    }

    // --- inventory-svc's catalog ---
    /// Hash: one product (`name`, `unit_price`, `currency`, `low_threshold`) and `seq`, the
    /// counter its events carry (incremented by every script that reads or changes it for an
    /// event). An item never contains `:` (`saga_domain::ids::Item`).
    pub fn product(&self, item: &str) -> String {
        format!("{}:product:{item}", self.prefix)
    }
    /// Set: the items that are products.
    pub fn products(&self) -> String {
        format!("{}:products", self.prefix)
    }
    /// Stream: product events written with the change they announce, waiting for the catalog's
    /// relay (the catalog's outbox).
    pub fn catalog_outbox(&self) -> String {
        format!("{}:catalog:outbox", self.prefix)
    }

    // --- order-svc's catalog replica ---
    /// Hash: what order-svc learnt about one product from inventory's events, with the `seq`
    /// and `at` of what it applied (`info_seq`, `stock_seq`, ...) and `updated_at`.
    pub fn replica_product(&self, item: &str) -> String {
        format!("{}:replica:product:{item}", self.prefix)
    }
    /// Set: the items the replica knows.
    pub fn replica_products(&self) -> String {
        format!("{}:replica:products", self.prefix)
    }

    // --- notification-svc ---
    /// String: claim / record of the notification for (order, outcome).
    pub fn notified(&self, order_id: &str, outcome: &str) -> String {
        format!("{}:notified:{order_id}:{outcome}", self.prefix)
    }
    /// List of JSON lines: every notification sent, in order.
    pub fn notifications(&self) -> String {
        format!("{}:notifications", self.prefix)
    }
}

/// The fields a parked outbox entry has beyond the entry's own ([`Keys::outbox_parked`]): why
/// it was parked, when (ms since the Unix epoch), and its id in the outbox it was taken from.
/// A replay puts the entry back without them.
pub mod parked {
    pub const REASON: &str = "parked_reason";
    pub const AT: &str = "parked_at";
    pub const FROM: &str = "parked_from";
    pub const ALL: [&str; 3] = [REASON, AT, FROM];
}

/// How many DLQ hops an order's timeline keeps (the newest): a flood of poison about one order
/// cannot grow it for ever.
pub const DLQ_HOPS_KEPT: isize = 50;

/// An order's timeline as the consume loop writes to it: the DLQ hops of messages about it.
#[derive(Clone)]
pub struct Timeline {
    redis: Redis,
    keys: Keys,
}

impl std::fmt::Debug for Timeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timeline")
            .field("prefix", &self.keys.prefix())
            .finish()
    }
}

impl Timeline {
    pub fn new(redis: Redis, keys: Keys) -> Self {
        Self { redis, keys }
    }

    /// Note that a message about `order_id` went to the DLQ. Best effort: a missing note loses
    /// no message, the DLQ entry itself is the record.
    pub async fn record_dlq_hop(&self, order_id: &str, hop: &DlqHop) {
        let Ok(order_id) = saga_domain::ids::OrderId::parse(order_id) else {
            return;
        };
        let key = self.keys.order_dlq_hops(order_id.as_str());
        let line = serde_json::to_string(hop).unwrap_or_default();
        let result: redis::RedisResult<()> = redis::pipe()
            .rpush(&key, line)
            .ignore()
            .ltrim(&key, -DLQ_HOPS_KEPT, -1)
            .ignore()
            .query_async(&mut self.redis.clone())
            .await;
        if let Err(e) = result {
            warn!(order_id = %order_id, cause = %e, "could not note the DLQ hop in the order's timeline");
        }
    }
}
