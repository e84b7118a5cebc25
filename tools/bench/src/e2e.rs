//! End to end: N orders over HTTP from C clients, until every order is final.
//!
//! Three figures come out of one run: how fast order-svc accepts (201s per second), how fast
//! orders become final (the saga's throughput: first POST until order-svc has applied the last
//! outcome), and each order's POST→final latency (POST sent → order-svc applied its outcome,
//! from the order's timeline).
//! Each service's RSS is read once idle and sampled throughout, and what the orders left in Redis
//! is weighed once they are final. The orders are the lab's (one line) unless a run says
//! otherwise ([`run_lines`]: orders of several lines, [`Mix::lines`]).

use std::time::{Duration, Instant};

use saga_client::load::Plan;

use crate::cpu::CpuUse;
use crate::load::{Mix, Placed, client};
use crate::saga::{Anchor, Saga, ServiceMemory, stamps, wait_all_final, wait_settled};
use crate::stats::{Latency, latencies, per_sec};
use crate::world::{Lab, RedisFootprint, World};

#[derive(Debug, Clone)]
pub struct E2eResult {
    pub inventories: usize,
    /// Lines in every order of the run: 1 for the lab's orders.
    pub lines_per_order: usize,
    pub concurrency: usize,
    pub accepted: usize,
    /// Orders not answered 201 (not retried).
    pub refused: usize,
    pub first_error: Option<String>,
    /// 201s per second, first POST to last 201.
    pub accept_per_sec: f64,
    /// Accepted orders per second, first POST until all are final in order-svc.
    pub orders_per_sec: f64,
    pub elapsed: Duration,
    /// First POST until every order's status event reached notification-svc (the CPU
    /// figures count until then).
    pub settled_after: Duration,
    pub latency: Latency,
    /// Accepted orders with no outcome in their timeline (0 unless something is wrong).
    pub missing: usize,
    pub memory: Vec<ServiceMemory>,
    /// CPU seconds per process, first POST until every order was final and its status event
    /// delivered ([`E2eResult::settled_after`]).
    pub cpu: Vec<CpuUse>,
    /// What the run left in Redis (kept for ever: orders, timelines, reservations,
    /// notifications), once every order was final.
    pub redis: Option<RedisFootprint>,
}

/// Run the end-to-end load in a fresh world named after `section`.
///
/// # Errors
/// A service did not start, the load stalled, or the broker or Redis failed.
pub async fn run(
    lab: &Lab,
    section: &str,
    orders: usize,
    concurrency: usize,
    inventories: usize,
) -> anyhow::Result<E2eResult> {
    run_with(
        lab,
        section,
        orders,
        concurrency,
        inventories,
        &[],
        &Mix::lab(),
    )
    .await
}

/// The end-to-end run again with orders of several lines ([`Mix::lines`]), to set beside the
/// lab's orders of one line from the same run.
///
/// # Errors
/// As [`run`].
pub async fn run_lines(lab: &Lab, orders: usize, concurrency: usize) -> anyhow::Result<E2eResult> {
    run_with(lab, "e2e-lines", orders, concurrency, 1, &[], &Mix::lines()).await
}

/// [`run`] with settings of the section's own for every service, and the orders of `mix`.
///
/// # Errors
/// As [`run`].
pub async fn run_with(
    lab: &Lab,
    section: &str,
    orders: usize,
    concurrency: usize,
    inventories: usize,
    env: &[(String, String)],
    mix: &Mix,
) -> anyhow::Result<E2eResult> {
    lab.in_world(section, async |world: &World<'_>| {
        let saga = Saga::start_with(world, inventories, env).await?;
        let client = client(&saga);

        let memory = saga.watch_memory()?;
        let anchor = Anchor::now();
        let cpu = saga.cpu_meter(world)?;
        let started = Instant::now();
        let plan = Plan::closed(orders, concurrency, mix.body.clone());
        let load = Placed::from(saga_client::load::run(&client, &plan, |_| {}).await);
        let accepted = load.placed.len();
        let all_final = wait_all_final(world, accepted as u64).await?;
        // CPU counts until the orders' status events have reached notification-svc too, so
        // that CPU per order includes all the work an order sets off (the ceiling counts it).
        let settled = wait_settled(world).await?;
        let cpu = cpu.finish();
        let memory = memory.finish().await?;

        let redis = world.redis_footprint().await.ok();
        let stamps = stamps(world, &load.placed, &anchor).await?;
        let (latency, missing) = latencies(&load.placed, &stamps.finals)?;
        saga.stop().await;

        let elapsed = all_final.saturating_duration_since(started);
        Ok(E2eResult {
            inventories,
            lines_per_order: mix.lines,
            concurrency,
            accepted,
            refused: load.refused,
            first_error: load.first_error,
            accept_per_sec: per_sec(
                accepted,
                load.last_answer
                    .unwrap_or(started)
                    .saturating_duration_since(started),
            ),
            orders_per_sec: per_sec(accepted, elapsed),
            elapsed,
            settled_after: settled.saturating_duration_since(started),
            latency,
            missing,
            memory,
            cpu,
            redis,
        })
    })
    .await
}

/// The end-to-end run again with every service exporting its spans over OTLP
/// (`OTEL_EXPORTER_OTLP_ENDPOINT`) to a collector in this process that takes them and throws
/// them away: what tracing costs the services, beside the run without it (the default). The
/// collector's own CPU is not the services' and is not counted.
///
/// # Errors
/// As [`run`], or the collector's port could not be bound.
pub async fn run_traced(lab: &Lab, orders: usize, concurrency: usize) -> anyhow::Result<E2eResult> {
    use warp::Filter;
    let collector = warp::path!("v1" / "traces")
        .and(warp::post())
        .and(warp::body::bytes())
        .map(|_: bytes::Bytes| warp::reply());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(warp::serve(collector).incoming(listener).run());
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), endpoint)];
    let result = run_with(lab, "e2e-traced", orders, concurrency, 1, &env, &Mix::lab()).await;
    server.abort();
    result
}

/// The end-to-end run again, with Redis's append-only file switched off for its length: what
/// durability costs, measured beside the run with it. AOF is switched back on afterwards, even if
/// the run failed (Redis then rewrites its AOF from memory; nothing is lost).
///
/// # Errors
/// Redis refused the settings, or the run failed.
pub async fn run_without_aof(
    lab: &Lab,
    orders: usize,
    concurrency: usize,
) -> anyhow::Result<E2eResult> {
    let mut redis = lab.redis().await?;
    let (_, was): (String, String) = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query_async(&mut redis)
        .await?;
    let set = async |value: &str| -> anyhow::Result<()> {
        let mut redis = lab.redis().await?;
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("appendonly")
            .arg(value)
            .query_async(&mut redis)
            .await?;
        Ok(())
    };
    set("no").await?;
    let result = run(lab, "e2e-no-aof", orders, concurrency, 1).await;
    set(&was).await?;
    result
}
