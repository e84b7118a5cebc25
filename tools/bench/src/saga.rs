//! The saga itself in a world: order-svc, one or more inventory-svc, notification-svc.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;

use saga_domain::order::{HistoryEntry, OrderStatus};
use testkit::poll::{STALL, Stall};
use testkit::service::{ServiceKind, ServiceProcess};

use crate::cpu::{CpuMeter, Watched};
use crate::rss::{RssStats, Sampler, rss_bytes};
use crate::world::World;

/// How long a service may take from spawn to `/ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often RSS is sampled during a load.
const RSS_EVERY: Duration = Duration::from_millis(100);

/// The three services, running and ready.
pub struct Saga {
    pub order: ServiceProcess,
    pub inventories: Vec<ServiceProcess>,
    pub notification: ServiceProcess,
}

/// One service's memory over a run.
#[derive(Debug, Clone)]
pub struct ServiceMemory {
    pub service: String,
    /// Ready, before the first order.
    pub idle: u64,
    /// Sampled every 100 ms from the first order until every order was final.
    pub under_load: RssStats,
}

impl Saga {
    /// Start every service and wait until each one's `/ready` says 200.
    ///
    /// # Errors
    /// A service did not start or never became ready.
    pub async fn start(world: &World<'_>, inventories: usize) -> anyhow::Result<Self> {
        Self::start_with(world, inventories, &[]).await
    }

    /// [`start`](Self::start) with settings of the section's own for every service.
    ///
    /// # Errors
    /// A service did not start or never became ready.
    pub async fn start_with(
        world: &World<'_>,
        inventories: usize,
        env: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let mut inventory_services = Vec::new();
        for i in 1..=inventories.max(1) {
            inventory_services.push(world.spawn_with(ServiceKind::Inventory, i, env).await?);
        }
        let saga = Self {
            order: world.spawn_with(ServiceKind::Order, 1, env).await?,
            inventories: inventory_services,
            notification: world.spawn_with(ServiceKind::Notification, 1, env).await?,
        };
        for service in saga.services() {
            service.wait_ready(READY_TIMEOUT).await?;
        }
        Ok(saga)
    }

    pub fn services(&self) -> impl Iterator<Item = &ServiceProcess> {
        std::iter::once(&self.order)
            .chain(&self.inventories)
            .chain(std::iter::once(&self.notification))
    }

    pub fn order_url(&self) -> String {
        self.order.url("")
    }

    /// Each service's RSS now, and a sampler per service from now on.
    ///
    /// # Errors
    /// A service has exited.
    pub fn watch_memory(&self) -> anyhow::Result<MemoryWatch> {
        let services = self
            .services()
            .map(|s| {
                let pid = pid_of(s)?;
                Ok((
                    s.label().to_owned(),
                    rss_bytes(pid)?,
                    Sampler::start(pid, RSS_EVERY),
                ))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(MemoryWatch { services })
    }

    /// Start counting CPU time: the broker, Redis, every service and this benchmark.
    ///
    /// # Errors
    /// A service has exited.
    pub fn cpu_meter(&self, world: &World<'_>) -> anyhow::Result<CpuMeter> {
        let services = self
            .services()
            .map(|s| {
                Ok(Watched {
                    label: s.label().to_owned(),
                    pids: vec![pid_of(s)?],
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(match world.helpers() {
            Some(helpers) => CpuMeter::start_with(helpers, services),
            None => CpuMeter::start(services),
        })
    }

    /// SIGTERM every service and wait for them.
    pub async fn stop(self) {
        self.order.stop().await;
        for inventory in self.inventories {
            inventory.stop().await;
        }
        self.notification.stop().await;
    }
}

/// A running service's process id.
///
/// # Errors
/// It has exited.
pub fn pid_of(service: &ServiceProcess) -> anyhow::Result<u32> {
    service
        .pid()
        .with_context(|| format!("{} has exited", service.label()))
}

/// Idle readings and running samplers, one per service.
pub struct MemoryWatch {
    services: Vec<(String, u64, Sampler)>,
}

impl MemoryWatch {
    /// Stop sampling.
    ///
    /// # Errors
    /// A sampler task panicked.
    pub async fn finish(self) -> anyhow::Result<Vec<ServiceMemory>> {
        let mut memory = Vec::new();
        for (service, idle, sampler) in self.services {
            memory.push(ServiceMemory {
                service,
                idle,
                under_load: sampler.finish().await?,
            });
        }
        Ok(memory)
    }
}

/// Wait until order-svc has applied every outcome (no order of this world is still PLACED)
/// and return when that was first seen. One ZCARD every 20 ms, however many orders.
///
/// # Errors
/// The count stood still for [`STALL`], or Redis failed.
pub async fn wait_all_final(world: &World<'_>, orders: u64) -> anyhow::Result<Instant> {
    let mut redis = world.redis().await?;
    let placed = format!("{}PLACED", world.keys.orders_by_status_prefix());
    let mut stall = Stall::new("orders final in order-svc", STALL);
    loop {
        let pending: u64 = redis::cmd("ZCARD")
            .arg(&placed)
            .query_async(&mut redis)
            .await
            .context("cannot count the orders still PLACED")?;
        if pending == 0 {
            return Ok(Instant::now());
        }
        stall.observe(orders.saturating_sub(pending), orders)?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until what the orders set off has all been delivered: order-svc's outbox is empty
/// (every `order.status.updated` published and confirmed) and `notification_queue` has nothing
/// ready (notification-svc has taken every outcome copy and status event; at most its
/// prefetch is still being worked on). Return when that was first seen. Binaries from before
/// the status event settle as soon as their outcome copies are taken.
///
/// # Errors
/// The backlog stood still for [`STALL`], or Redis or the broker failed.
pub async fn wait_settled(world: &World<'_>) -> anyhow::Result<Instant> {
    let mut redis = world.redis().await?;
    let conn = world.connect("saga-bench settle watch").await?;
    let channel = conn.create_channel().await?;
    let mut stall = Stall::new(
        "events still to deliver to notification-svc (outbox + notification_queue)",
        STALL,
    );
    let settled = loop {
        let outbox: u64 = redis::cmd("XLEN")
            .arg(world.keys.outbox())
            .query_async(&mut redis)
            .await
            .context("cannot read the outbox's length")?;
        let queued = saga_platform::amqp::depth(&channel, &world.topology.notification_queue)
            .await?
            .messages;
        let left = outbox + u64::from(queued);
        if left == 0 {
            break Instant::now();
        }
        stall.observe(left, 0)?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = conn.close(200, "settled".into()).await;
    Ok(settled)
}

/// One moment read on both clocks, to place the services' Unix-millisecond stamps on the
/// bench's monotonic timeline. Take it before the first order goes out.
#[derive(Debug, Clone, Copy)]
pub struct Anchor {
    instant: Instant,
    unix_ms: u64,
}

impl Anchor {
    pub fn now() -> Self {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        Self {
            instant: Instant::now(),
            unix_ms: u64::try_from(unix_ms).unwrap_or(u64::MAX),
        }
    }

    pub fn instant(&self) -> Instant {
        self.instant
    }

    fn instant_of(&self, unix_ms: u64) -> Instant {
        self.instant + Duration::from_millis(unix_ms.saturating_sub(self.unix_ms))
    }
}

/// When each order was decided and became final, on the bench's clock.
#[derive(Debug, Default)]
pub struct Stamps {
    /// inventory-svc decided it: the reservation record's `decided_at`.
    pub decided: HashMap<String, Instant>,
    /// order-svc's status consumer applied its outcome (CONFIRMED or FAILED), from the order's
    /// own timeline. This is "final".
    pub finals: HashMap<String, Instant>,
}

/// Read the services' own millisecond stamps of each order (see [`Stamps`]). Read once, after
/// the run, in pipelined chunks: nothing is polled while orders are in flight, and no extra
/// consumer competes for the broker.
///
/// # Errors
/// Redis failed.
pub async fn stamps(
    world: &World<'_>,
    placed: &[(String, Instant)],
    anchor: &Anchor,
) -> anyhow::Result<Stamps> {
    let mut redis = world.redis().await?;
    let mut stamps = Stamps::default();
    for chunk in placed.chunks(1_000) {
        let mut pipe = redis::pipe();
        for (order_id, _) in chunk {
            pipe.cmd("LRANGE")
                .arg(world.keys.order_history(order_id))
                .arg(0)
                .arg(-1);
            pipe.cmd("HGET")
                .arg(world.keys.reservation(order_id))
                .arg("decided_at");
        }
        let replies: Vec<redis::Value> = pipe
            .query_async(&mut redis)
            .await
            .context("cannot read the order timelines")?;
        for ((order_id, _), pair) in chunk.iter().zip(replies.chunks(2)) {
            let [timeline, decided] = pair else { continue };
            let timeline: Vec<String> = redis::from_redis_value(timeline.clone())?;
            let outcome = timeline
                .iter()
                .filter_map(|step| serde_json::from_str::<HistoryEntry>(step).ok())
                .filter(|step| {
                    step.applied
                        && matches!(step.status, OrderStatus::Confirmed | OrderStatus::Failed)
                })
                .map(|step| step.at)
                .min();
            if let Some(unix_ms) = outcome {
                stamps
                    .finals
                    .insert(order_id.clone(), anchor.instant_of(unix_ms));
            }
            let decided: Option<u64> = redis::from_redis_value(decided.clone())?;
            if let Some(unix_ms) = decided {
                stamps
                    .decided
                    .insert(order_id.clone(), anchor.instant_of(unix_ms));
            }
        }
    }
    Ok(stamps)
}
