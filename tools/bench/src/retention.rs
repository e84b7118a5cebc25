//! What a finished order keeps in Redis once retention has compacted it, beside what it kept
//! before.
//!
//! The services run with a short `ORDER_RETENTION` ([`RETENTION`]) and a long `DEDUPE_WINDOW`
//! (the default, 30 days). N orders are placed and confirmed, then taken through their whole
//! life over HTTP (`PATCH /order/{id}/status` to SHIPPED, then to DELIVERED), because only a
//! *finished* order (DELIVERED, FAILED, CANCELLED) is compacted and a benchmark order is
//! reserved, i.e. CONFIRMED. Redis is weighed once every order is DELIVERED and its events
//! delivered (before), and again once order-svc has turned every order into a tombstone and
//! inventory-svc has compacted every reservation record (after). What stays is what the
//! dedupe window needs: order-svc's tombstone, inventory-svc's compacted record and
//! notification-svc's marks, each until `DEDUPE_WINDOW` is over.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use futures_util::stream;
use saga_client::load::Plan;
use saga_domain::order::OrderStatus;
use testkit::poll::{STALL, Stall};

use crate::load::{Placed, client};
use crate::saga::{Saga, wait_all_final, wait_settled};
use crate::world::{Lab, RedisFootprint, World};

/// `ORDER_RETENTION` for this section: short, so the run waits seconds for compaction, but
/// long enough that nothing is compacted before the "before" weighing (placing, confirming
/// and two PATCHes of a few thousand orders take a few seconds here). inventory-svc counts
/// from its decision, order-svc from the order's finish.
pub const RETENTION: Duration = Duration::from_secs(20);
/// `DEDUPE_WINDOW` for this section: the default, so nothing compacted is deleted meanwhile.
const DEDUPE_WINDOW: &str = "30days";
/// The status every order is taken to (through SHIPPED): the finished status it is weighed in.
pub const FINISHED_AS: OrderStatus = OrderStatus::Delivered;

#[derive(Debug, Clone)]
pub struct RetentionResult {
    /// Orders placed, confirmed and taken to [`FINISHED_AS`].
    pub orders: usize,
    /// PATCHes that did not answer 200 (0 unless something is wrong).
    pub patch_failures: usize,
    /// Every key of the world, by kind, once every order was finished (whole records).
    pub before: BTreeMap<String, RedisFootprint>,
    /// The same once every order was compacted.
    pub after: BTreeMap<String, RedisFootprint>,
    /// From the last order finished until the last one compacted (at least [`RETENTION`]).
    pub compacted_after: Duration,
}

impl RetentionResult {
    /// Every key's bytes and count, all kinds together.
    pub fn total(kinds: &BTreeMap<String, RedisFootprint>) -> RedisFootprint {
        kinds
            .values()
            .fold(RedisFootprint::default(), |sum, kind| RedisFootprint {
                keys: sum.keys + kind.keys,
                bytes: sum.bytes + kind.bytes,
            })
    }
}

/// Place `orders`, finish them, weigh Redis before and after compaction.
///
/// # Errors
/// A service did not start, an order did not finish, or compaction stalled.
pub async fn run(lab: &Lab, orders: usize, concurrency: usize) -> anyhow::Result<RetentionResult> {
    lab.in_world("retention", async |world: &World<'_>| {
        let env = [
            (
                "ORDER_RETENTION".to_owned(),
                format!("{}s", RETENTION.as_secs()),
            ),
            ("DEDUPE_WINDOW".to_owned(), DEDUPE_WINDOW.to_owned()),
        ];
        let saga = Saga::start_with(world, 1, &env).await?;
        let plan = Plan::closed(orders, concurrency, crate::load::body());
        let load = Placed::from(saga_client::load::run(&client(&saga), &plan, |_| {}).await);
        let ids: Vec<String> = load.placed.iter().map(|(id, _)| id.clone()).collect();
        wait_all_final(world, ids.len() as u64).await?;

        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build an HTTP client")?;
        let mut patch_failures = 0;
        for status in [OrderStatus::Shipped, FINISHED_AS] {
            patch_failures += patch_all(&http, &saga.order_url(), &ids, status, concurrency).await;
        }
        wait_count(world, FINISHED_AS, ids.len() as u64).await?;
        wait_settled(world).await?;
        let finished = Instant::now();
        let set: HashSet<String> = ids.iter().cloned().collect();
        let before = world.redis_footprint_by_kind(&set).await?;

        wait_compacted(world).await?;
        let compacted_after = finished.elapsed();
        let after = world.redis_footprint_by_kind(&set).await?;
        saga.stop().await;
        Ok(RetentionResult {
            orders: ids.len(),
            patch_failures,
            before,
            after,
            compacted_after,
        })
    })
    .await
}

/// `PATCH /order/{id}/status` of every order to `status`, `concurrency` at once; how many did
/// not answer 200.
async fn patch_all(
    http: &reqwest::Client,
    base: &str,
    ids: &[String],
    status: OrderStatus,
    concurrency: usize,
) -> usize {
    let body = serde_json::json!({ "status": status, "updated_by": "saga-bench" });
    stream::iter(ids)
        .map(|id| {
            let request = http
                .patch(format!("{base}/order/{id}/status"))
                .json(&body)
                .send();
            async move { matches!(request.await, Ok(r) if r.status() == reqwest::StatusCode::OK) }
        })
        .buffer_unordered(concurrency.max(1))
        .filter(|ok| std::future::ready(!ok))
        .count()
        .await
}

/// Wait until `n` orders have `status` in order-svc's index.
async fn wait_count(world: &World<'_>, status: OrderStatus, n: u64) -> anyhow::Result<()> {
    let mut redis = world.redis().await?;
    let key = format!("{}{status}", world.keys.orders_by_status_prefix());
    let mut stall = Stall::new(&format!("orders {status}"), STALL);
    loop {
        let count: u64 = redis::cmd("ZCARD")
            .arg(&key)
            .query_async(&mut redis)
            .await?;
        if count >= n {
            return Ok(());
        }
        stall.observe(count, n)?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until order-svc has compacted every finished order (`orders:expiring` empty) and
/// inventory-svc every reservation record (`reservations:compacting` empty). The first is due
/// [`RETENTION`] after the last order finished, so the deadline is that plus [`STALL`].
async fn wait_compacted(world: &World<'_>) -> anyhow::Result<()> {
    let mut redis = world.redis().await?;
    let deadline = Instant::now() + RETENTION + STALL;
    loop {
        let (orders, records): (u64, u64) = redis::pipe()
            .cmd("ZCARD")
            .arg(world.keys.orders_expiring())
            .cmd("ZCARD")
            .arg(world.keys.reservations_compacting())
            .query_async(&mut redis)
            .await?;
        if orders == 0 && records == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "not compacted within {:?}: {orders} orders and {records} reservation records left",
            RETENTION + STALL
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
