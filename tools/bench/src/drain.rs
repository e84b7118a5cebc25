//! Backlog drain: OrderPlaced piles up while inventory-svc is down; how fast does it catch up,
//! and does its memory stay flat while it does?
//!
//! N persistent OrderPlaced go into `inventory_queue` first (with confirms, in a bounded
//! window). Then the consumer starts: inventory-svc itself, or the broker-only [`Relay`] for
//! the ceiling. Nothing else runs, so each processed order leaves exactly one outcome copy in
//! `order_status_queue`; its depth, read by passive declare every 100 ms, is the progress.
//! inventory-svc's RSS is read on the same tick. Its prefetch bounds what it holds, so the
//! RSS must not depend on the backlog.

use std::time::{Duration, Instant};

use anyhow::Context;
use saga_domain::events::EventType;
use testkit::poll::{STALL, Stall};
use testkit::service::ServiceKind;

use crate::broker;
use crate::ceiling::{Flow, Relay, confirm_channel, deadline};
use crate::rss::{RssStats, rss_bytes};
use crate::stats::per_sec;
use crate::world::{Lab, World};

/// How often progress (and RSS) is read.
const WATCH_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct DrainResult {
    pub messages: usize,
    /// How fast the backlog was published (broker-only, confirms in a window).
    pub prefill_per_sec: f64,
    /// From starting the consumer until its first outcome was seen.
    pub startup: Duration,
    /// Messages per second from the first outcome seen until the last.
    pub per_sec: f64,
    /// inventory-svc's RSS from its first outcome until the backlog was gone.
    pub rss: Option<RssStats>,
    /// Every reading of the drain: seconds since the consumer started, outcomes so far.
    pub progress: Vec<(f64, u64)>,
}

/// Drain a backlog of `n` with inventory-svc.
///
/// # Errors
/// The prefill failed, inventory-svc exited, or the drain stalled.
pub async fn inventory_svc(lab: &Lab, n: usize, window: usize) -> anyhow::Result<DrainResult> {
    lab.in_world("drain", async |world: &World<'_>| {
        let prefill_per_sec = prefill(world, n, window).await?;
        let started = Instant::now();
        let inventory = world.spawn(ServiceKind::Inventory, 1).await?;
        let drained = watch(world, n, Some(crate::saga::pid_of(&inventory)?), started)
            .await
            .with_context(|| {
                format!(
                    "inventory-svc log tail:\n{}",
                    inventory.log_tail(10).join("\n")
                )
            })?;
        inventory.stop().await;
        Ok(DrainResult {
            messages: n,
            prefill_per_sec,
            startup: drained.startup,
            per_sec: drained.per_sec,
            rss: drained.rss,
            progress: drained.progress,
        })
    })
    .await
}

/// Drain a backlog of `n` with the broker-only relay: the drain's ceiling.
///
/// # Errors
/// The prefill failed, the broker refused something, or the drain stalled.
pub async fn broker_only(lab: &Lab, n: usize, flow: Flow) -> anyhow::Result<DrainResult> {
    lab.in_world("drain-ceiling", async |world: &World<'_>| {
        let prefill_per_sec = prefill(world, n, flow.confirm_window).await?;
        let started = Instant::now();
        let conn = world.connect("saga-bench drain relay").await?;
        let relay = Relay::inventory(&conn, &world.topology, flow.prefetch).await?;
        let (drained, _) = tokio::try_join!(watch(world, n, None, started), relay.run(n))?;
        let _ = conn.close(200, "drained".into()).await;
        Ok(DrainResult {
            messages: n,
            prefill_per_sec,
            startup: drained.startup,
            per_sec: drained.per_sec,
            rss: None,
            progress: drained.progress,
        })
    })
    .await
}

/// Queue `n` OrderPlaced for new orders into `inventory_queue`; the publish rate.
async fn prefill(world: &World<'_>, n: usize, window: usize) -> anyhow::Result<f64> {
    let messages = broker::order_placed(n)?;
    let conn = world.connect("saga-bench prefill").await?;
    let channel = confirm_channel(&conn).await?;
    let started = Instant::now();
    let publish = broker::publish_all(
        &channel,
        &world.topology.exchange,
        EventType::OrderPlaced.routing_key(),
        &messages,
        window,
        None,
    );
    tokio::time::timeout(deadline(n), publish)
        .await
        .with_context(|| format!("prefilling {n} messages took over {:?}", deadline(n)))??;
    let rate = per_sec(n, started.elapsed());
    let queued = u64::from(
        saga_platform::amqp::depth(&channel, &world.topology.inventory_queue)
            .await?
            .messages,
    );
    anyhow::ensure!(
        queued == n as u64,
        "prefilled {n} messages but {queued} are queued"
    );
    let _ = conn.close(200, "prefilled".into()).await;
    Ok(rate)
}

struct Drained {
    startup: Duration,
    per_sec: f64,
    rss: Option<RssStats>,
    progress: Vec<(f64, u64)>,
}

/// Follow the drain until `n` outcomes are queued; sample `pid`'s RSS meanwhile.
async fn watch(
    world: &World<'_>,
    n: usize,
    pid: Option<u32>,
    started: Instant,
) -> anyhow::Result<Drained> {
    let conn = world.connect("saga-bench drain watch").await?;
    let channel = conn.create_channel().await?;
    let goal = n as u64;
    let mut stall = Stall::new("drain (outcomes in order_status_queue)", STALL);
    let mut rss = RssStats::default();
    let mut first: Option<(Instant, u64)> = None;
    let mut progress = Vec::new();
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let finished = loop {
        tick.tick().await;
        let done = u64::from(
            saga_platform::amqp::depth(&channel, &world.topology.order_status_queue)
                .await?
                .messages,
        );
        let now = Instant::now();
        progress.push((now.saturating_duration_since(started).as_secs_f64(), done));
        if done > 0 {
            first.get_or_insert((now, done));
            if let Some(pid) = pid {
                rss.record(rss_bytes(pid).context("inventory-svc exited during the drain")?);
            }
        }
        if done >= goal {
            break now;
        }
        stall.observe(done, goal)?;
    };
    let _ = conn.close(200, "watched".into()).await;

    let (first_at, first_done) = first.unwrap_or((finished, 0));
    // Counted from the first outcome seen, so start-up (connect, seed, declare) is not in
    // the rate; it is reported on its own. A drain too short for two readings falls back
    // to counting from the start.
    let per_sec = if finished > first_at && goal > first_done {
        (goal - first_done) as f64 / (finished - first_at).as_secs_f64()
    } else {
        per_sec(n, finished - started)
    };
    Ok(Drained {
        startup: first_at.saturating_duration_since(started),
        per_sec,
        rss: pid.map(|_| rss),
        progress,
    })
}
