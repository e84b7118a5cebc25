//! Where each section runs: a fresh vhost and Redis prefix, and the release service binaries.
//!
//! Every section gets a world of its own (`bench-<run>-<section>`), so one section's leftovers
//! (a backlog of outcome copies, 100k reservation keys) never slow the next one down, and a
//! running demo or a test suite on the same broker and Redis is never touched. A section
//! removes its world when it ends; [`Lab::clean_up_all`] removes whatever an error or a Ctrl-C
//! left behind.

use std::collections::{BTreeMap, HashSet};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use saga_platform::redis::store::Redis;
use testkit::service::{ServiceKind, ServiceProcess, Spawn};
use testkit::world::{Broker, VhostKind};

use crate::cpu::Watched;

/// How to reach the broker and Redis, and where the binaries are.
#[derive(Debug, Clone)]
pub struct LabConfig {
    pub management_url: String,
    /// `host:port` of the AMQP listener; a cluster's nodes separated by commas.
    pub amqp_addr: String,
    pub user: String,
    pub password: String,
    /// A Redis URL, or a Sentinel one (`redis+sentinel://...`).
    pub redis_url: String,
    pub bin_dir: PathBuf,
    /// Passed to every service as `RABBITMQ_PREFETCH`, so the ceiling and the services are
    /// known to use the same value.
    pub prefetch: u16,
    /// Worlds are quorum-default vhosts with the cluster profile's policy on the consumed
    /// queues (as `scripts/cluster.sh` makes them).
    pub quorum: bool,
    /// Added to every service's environment.
    pub service_env: Vec<(String, String)>,
    /// The broker and Redis processes whose CPU is counted; `None`: every `beam.smp` and
    /// `redis-server` on the machine.
    pub helpers: Option<Vec<Watched>>,
}

/// One benchmark run: makes worlds and remembers which are still to be removed.
pub struct Lab {
    config: LabConfig,
    run_id: String,
    log_dir: PathBuf,
    http: reqwest::Client,
    /// Worlds made and not removed yet.
    open: Mutex<Vec<testkit::World>>,
}

impl Lab {
    /// Check the binaries are there and make a log directory for the services.
    ///
    /// # Errors
    /// A service binary is missing, or the log directory cannot be made.
    pub fn new(config: LabConfig) -> anyhow::Result<Self> {
        for kind in ServiceKind::ALL {
            let path = config.bin_dir.join(kind.binary());
            anyhow::ensure!(
                path.is_file(),
                "{} not found: build first (cargo build --release --workspace --bins), or pass --bin-dir",
                path.display()
            );
        }
        let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        let log_dir = std::env::temp_dir().join(format!("saga-bench-{run_id}"));
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("cannot create {}", log_dir.display()))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build an HTTP client")?;
        Ok(Self {
            config,
            run_id,
            log_dir,
            http,
            open: Mutex::new(Vec::new()),
        })
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    pub fn config(&self) -> &LabConfig {
        &self.config
    }

    /// A fresh vhost (with the saga's topology declared) and Redis prefix for one section.
    ///
    /// # Errors
    /// The management API refused, or the broker is unreachable.
    pub async fn world(&self, section: &str) -> anyhow::Result<World<'_>> {
        let name = format!("bench-{}-{section}", self.run_id);
        let kind = if self.config.quorum {
            VhostKind::Quorum
        } else {
            VhostKind::Classic
        };
        let world =
            testkit::World::create(&self.broker(), &self.config.redis_url, &name, kind).await?;
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(world.clone());
        // Declared by us first, so queues can be filled before any service has started.
        world.declare_topology().await?;
        Ok(World { lab: self, world })
    }

    fn broker(&self) -> Broker {
        Broker {
            management_url: self.config.management_url.clone(),
            amqp_addr: self.config.amqp_addr.clone(),
            user: self.config.user.clone(),
            password: self.config.password.clone(),
        }
    }

    /// Run `body` in a fresh [`world`](Self::world) named after `section`, then remove the
    /// world whatever `body` returned (a failed removal is reported and retried at the end).
    ///
    /// # Errors
    /// The world could not be made, or `body` failed.
    pub async fn in_world<T>(
        &self,
        section: &str,
        body: impl AsyncFnOnce(&World<'_>) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let world = self.world(section).await?;
        let result = body(&world).await;
        if let Err(e) = world.close().await {
            crate::progress(&format!("{e:#} (retried at the end)"));
        }
        result
    }

    /// `GET /api/overview` of the management API (versions, among others).
    ///
    /// # Errors
    /// The management API is unreachable or answered with an error.
    pub async fn overview(&self) -> anyhow::Result<serde_json::Value> {
        let response = self
            .http
            .get(format!("{}/api/overview", self.config.management_url))
            .basic_auth(&self.config.user, Some(&self.config.password))
            .send()
            .await?
            .error_for_status()?;
        Ok(response.json().await?)
    }

    /// A Redis connection (to the master, with a Sentinel URL).
    ///
    /// # Errors
    /// Redis is unreachable.
    pub async fn redis(&self) -> anyhow::Result<Redis> {
        let redis = saga_platform::redis::store::connect(&self.config.redis_url)?;
        saga_platform::redis::store::ping(&redis)
            .await
            .with_context(|| {
                format!(
                    "cannot reach Redis at {} (scripts/deps.sh)",
                    saga_platform::service::config::redact_url(&self.config.redis_url)
                )
            })?;
        Ok(redis)
    }

    /// Remove every world not removed yet. Best effort: reports, never fails.
    pub async fn clean_up_all(&self) {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for world in open {
            if let Err(e) = self.remove(&world).await {
                crate::progress(&format!("could not remove {}: {e:#}", world.name));
            }
        }
    }

    async fn remove(&self, world: &testkit::World) -> anyhow::Result<()> {
        world.remove().await?;
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|w| w.name != world.name);
        Ok(())
    }
}

/// Keys and bytes a world holds in Redis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedisFootprint {
    pub keys: u64,
    pub bytes: u64,
}

/// One section's [`testkit::World`] (vhost and Redis prefix, the same name for both), with
/// the lab's settings for the services started in it.
pub struct World<'lab> {
    lab: &'lab Lab,
    world: testkit::World,
}

impl Deref for World<'_> {
    type Target = testkit::World;
    fn deref(&self) -> &testkit::World {
        &self.world
    }
}

impl World<'_> {
    /// A Redis connection.
    ///
    /// # Errors
    /// Redis is unreachable.
    pub async fn redis(&self) -> anyhow::Result<Redis> {
        self.lab.redis().await
    }

    /// What this world keeps in Redis: the bytes of every key under its prefix (`MEMORY USAGE`,
    /// exact: every field of every hash), and how many keys there are.
    ///
    /// # Errors
    /// Redis is unreachable.
    pub async fn redis_footprint(&self) -> anyhow::Result<RedisFootprint> {
        let kinds = self.redis_footprint_by_kind(&HashSet::new()).await?;
        Ok(kinds
            .values()
            .fold(RedisFootprint::default(), |all, kind| RedisFootprint {
                keys: all.keys + kind.keys,
                bytes: all.bytes + kind.bytes,
            }))
    }

    /// [`redis_footprint`](Self::redis_footprint), by kind of key: each key with its prefix
    /// taken off and an order id of `orders` replaced by `<id>` (`order:<id>`,
    /// `notified:<id>:shipped`, `orders:expiring`), so per-order records add up under one name.
    ///
    /// # Errors
    /// Redis is unreachable.
    pub async fn redis_footprint_by_kind(
        &self,
        orders: &HashSet<String>,
    ) -> anyhow::Result<BTreeMap<String, RedisFootprint>> {
        let mut redis = self.redis().await?;
        let prefix = format!("{}:", self.keys.prefix());
        let (mut cursor, mut kinds) = (0_u64, BTreeMap::<String, RedisFootprint>::new());
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut redis)
                .await?;
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.cmd("MEMORY")
                    .arg("USAGE")
                    .arg(key)
                    .arg("SAMPLES")
                    .arg(0);
            }
            let sizes: Vec<Option<u64>> = pipe.query_async(&mut redis).await?;
            for (key, size) in keys.iter().zip(sizes) {
                let kind = key_kind(key.strip_prefix(&prefix).unwrap_or(key), orders);
                let entry = kinds.entry(kind).or_default();
                entry.keys += 1;
                entry.bytes += size.unwrap_or(0);
            }
            if next == 0 {
                return Ok(kinds);
            }
            cursor = next;
        }
    }

    /// The broker and Redis processes to count CPU for, if the lab names them.
    pub fn helpers(&self) -> Option<Vec<Watched>> {
        self.lab.config.helpers.clone()
    }

    /// Start one service in this world. `instance` tells two of a kind apart. It is not
    /// waited for beyond reporting its port: see [`ServiceProcess::wait_ready`].
    ///
    /// # Errors
    /// The binary cannot be started.
    pub async fn spawn(
        &self,
        kind: ServiceKind,
        instance: usize,
    ) -> anyhow::Result<ServiceProcess> {
        self.spawn_with(kind, instance, &[]).await
    }

    /// [`spawn`](Self::spawn) with settings of this section's own on top of the lab's (e.g. a
    /// short `ORDER_RETENTION`).
    ///
    /// # Errors
    /// The binary cannot be started.
    pub async fn spawn_with(
        &self,
        kind: ServiceKind,
        instance: usize,
        extra_env: &[(String, String)],
    ) -> anyhow::Result<ServiceProcess> {
        let config = &self.lab.config;
        let mut env = self.world.service_env();
        env.extend([
            ("RABBITMQ_PREFETCH".to_owned(), config.prefetch.to_string()),
            // Logging every order would measure the terminal, not the saga.
            ("RUST_LOG".to_owned(), "warn".to_owned()),
            ("LOG_FORMAT".to_owned(), "pretty".to_owned()),
            ("SHUTDOWN_GRACE_SECS".to_owned(), "5".to_owned()),
        ]);
        if kind == ServiceKind::Inventory {
            // Far more than any run orders, so every order is reserved (no failure path).
            env.push(("INITIAL_STOCK".to_owned(), crate::load::initial_stock()));
        }
        env.extend(config.service_env.iter().cloned());
        env.extend(extra_env.iter().cloned());
        let log = self
            .lab
            .log_dir
            .join(format!("{}-{}-{instance}.log", self.name, kind.binary()));
        ServiceProcess::spawn(Spawn {
            binary: config.bin_dir.join(kind.binary()),
            kind,
            label: label(kind, instance),
            env,
            log_file: Some(log),
        })
        .await
    }

    /// Remove the vhost and the Redis keys.
    ///
    /// # Errors
    /// The management API or Redis refused; [`Lab::clean_up_all`] tries again at the end.
    pub async fn close(self) -> anyhow::Result<()> {
        self.lab.remove(&self.world).await
    }
}

/// A key (prefix already off) with any segment that is one of `orders` written `<id>`.
fn key_kind(key: &str, orders: &HashSet<String>) -> String {
    key.split(':')
        .map(|segment| {
            if orders.contains(segment) {
                "<id>"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join(":")
}

/// `order-svc`, or `inventory-svc #2` for a second instance: how reports name a service.
pub fn label(kind: ServiceKind, instance: usize) -> String {
    if instance > 1 {
        format!("{} #{instance}", kind.binary())
    } else {
        kind.binary().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_kind_names_the_order_id_once_for_all_orders() {
        let orders: HashSet<String> = ["o-1".to_owned()].into();
        assert_eq!(
            key_kind("notified:o-1:shipped", &orders),
            "notified:<id>:shipped"
        );
        assert_eq!(key_kind("order:o-1:history", &orders), "order:<id>:history");
        assert_eq!(key_kind("orders:expiring", &orders), "orders:expiring");
    }
}
