//! Where each section runs: a fresh vhost and Redis prefix, and the release service binaries.
//!
//! Every section gets a world of its own (`bench-<run>-<section>`), so one section's leftovers
//! (a backlog of outcome copies, 100k reservation keys) never slow the next one down, and a
//! running demo or a test suite on the same broker and Redis is never touched. A section
//! removes its world when it ends; [`Lab::clean_up_all`] removes whatever an error or a Ctrl-C
//! left behind.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use lapin::Connection;
use reqwest::Method;
use shared::store::{Keys, Redis};
use shared::topology::Topology;

use crate::cpu::Watched;
use crate::service::{Service, ServiceKind};

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
    open: Mutex<Vec<String>>,
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
                "{} not found: build first (cargo build --release --bins), or pass --bin-dir",
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
        let vhost = self
            .config
            .quorum
            .then(|| serde_json::json!({"default_queue_type": "quorum"}));
        self.management(Method::PUT, &format!("/api/vhosts/{name}"), vhost)
            .await
            .with_context(|| format!("cannot create vhost {name} (is RabbitMQ with its management plugin running? scripts/deps.sh)"))?;
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.clone());
        let grant = serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"});
        self.management(
            Method::PUT,
            &format!("/api/permissions/{name}/{}", self.config.user),
            Some(grant),
        )
        .await
        .with_context(|| format!("cannot grant permissions on vhost {name}"))?;
        if self.config.quorum {
            self.management(
                Method::PUT,
                &format!("/api/policies/{name}/saga-consumed"),
                Some(consumed_queues_policy(&Topology::default())),
            )
            .await
            .with_context(|| format!("cannot set the policy on vhost {name}"))?;
        }
        let world = World {
            lab: self,
            amqp_url: self
                .config
                .amqp_addr
                .split(',')
                .map(|addr| {
                    format!(
                        "amqp://{}:{}@{addr}/{name}",
                        self.config.user, self.config.password
                    )
                })
                .collect::<Vec<_>>()
                .join(","),
            keys: Keys::new(&name),
            topology: Topology::default(),
            name,
        };
        // Declared by us first, so queues can be filled before any service has started.
        let conn = world.connect("saga-bench setup").await?;
        let channel = conn.create_channel().await?;
        world.topology.declare(&channel).await?;
        let _ = conn.close(200, "declared".into()).await;
        Ok(world)
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
        let redis = shared::store::connect(&self.config.redis_url)?;
        shared::store::ping(&redis).await.with_context(|| {
            format!(
                "cannot reach Redis at {} (scripts/deps.sh)",
                shared::config::redact_url(&self.config.redis_url)
            )
        })?;
        Ok(redis)
    }

    /// Remove every world not removed yet. Best effort: reports, never fails.
    pub async fn clean_up_all(&self) {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for name in open {
            if let Err(e) = self.remove(&name).await {
                crate::progress(&format!("could not remove {name}: {e:#}"));
            }
        }
    }

    /// Delete the vhost (its queues and messages go with it) and every key under the prefix.
    async fn remove(&self, name: &str) -> anyhow::Result<()> {
        self.management(Method::DELETE, &format!("/api/vhosts/{name}"), None)
            .await
            .with_context(|| format!("cannot delete vhost {name}"))?;
        let mut redis = self.redis().await?;
        let mut cursor: u64 = 0;
        // SCAN + UNLINK in pages: a drain leaves 100k keys, and KEYS would block Redis meanwhile.
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{name}:*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut redis)
                .await?;
            if !keys.is_empty() {
                let () = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut redis)
                    .await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|n| n != name);
        Ok(())
    }

    async fn management(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<()> {
        let mut request = self
            .http
            .request(
                method.clone(),
                format!("{}{path}", self.config.management_url),
            )
            .basic_auth(&self.config.user, Some(&self.config.password));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        // Deleting what is already gone is fine: the goal is that it is gone.
        let gone = method == Method::DELETE && status == reqwest::StatusCode::NOT_FOUND;
        anyhow::ensure!(
            status.is_success() || gone,
            "{method} {path}: {status} {}",
            response.text().await.unwrap_or_default()
        );
        Ok(())
    }
}

/// The cluster profile's policy on the consumed queues (see `scripts/cluster.sh`): a bounded
/// number of deliveries, then at-least-once dead-lettering into the DLQ.
fn consumed_queues_policy(topology: &Topology) -> serde_json::Value {
    serde_json::json!({
        "pattern": format!("^({})$", topology.consumed_queues().join("|")),
        "apply-to": "queues",
        "priority": 10,
        "definition": {
            "delivery-limit": 20,
            "dead-letter-exchange": "",
            "dead-letter-routing-key": topology.dlq_queue,
            "dead-letter-strategy": "at-least-once",
            "overflow": "reject-publish",
        },
    })
}

/// One section's vhost and Redis prefix (the same name for both).
/// Keys and bytes a world holds in Redis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedisFootprint {
    pub keys: u64,
    pub bytes: u64,
}

pub struct World<'lab> {
    lab: &'lab Lab,
    pub name: String,
    pub amqp_url: String,
    pub topology: Topology,
    pub keys: Keys,
}

impl World<'_> {
    /// A connection to this world's vhost, named so it is recognisable in the management UI.
    ///
    /// # Errors
    /// The broker is unreachable.
    pub async fn connect(&self, name: &str) -> anyhow::Result<Connection> {
        shared::amqp::connect_once(&self.amqp_url, name)
            .await
            .with_context(|| format!("cannot connect to vhost {}", self.name))
    }

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
        let mut redis = self.redis().await?;
        let (mut cursor, mut footprint) = (0_u64, RedisFootprint::default());
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}:*", self.keys.prefix()))
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
            footprint.keys += keys.len() as u64;
            footprint.bytes += sizes.into_iter().flatten().sum::<u64>();
            if next == 0 {
                return Ok(footprint);
            }
            cursor = next;
        }
    }

    /// The broker and Redis processes to count CPU for, if the lab names them.
    pub fn helpers(&self) -> Option<Vec<Watched>> {
        self.lab.config.helpers.clone()
    }

    /// Start one service in this world on a free port. `instance` tells two of a kind apart.
    /// It is not waited for: see [`Service::wait_ready`].
    ///
    /// # Errors
    /// The binary cannot be started.
    pub fn spawn(&self, kind: ServiceKind, instance: usize) -> anyhow::Result<Service> {
        let config = &self.lab.config;
        let mut env = vec![
            ("RABBITMQ_URL".to_owned(), self.amqp_url.clone()),
            ("REDIS_URL".to_owned(), config.redis_url.clone()),
            ("REDIS_PREFIX".to_owned(), self.name.clone()),
            ("RABBITMQ_PREFETCH".to_owned(), config.prefetch.to_string()),
            // Logging every order would measure the terminal, not the saga.
            ("RUST_LOG".to_owned(), "warn".to_owned()),
            ("LOG_FORMAT".to_owned(), "pretty".to_owned()),
            ("SHUTDOWN_GRACE_SECS".to_owned(), "5".to_owned()),
        ];
        if kind == ServiceKind::Inventory {
            // Far more than any run orders, so every order is reserved (no failure path).
            env.push(("INITIAL_STOCK".to_owned(), "burger=100000000".to_owned()));
        }
        env.extend(config.service_env.iter().cloned());
        let log = self
            .lab
            .log_dir
            .join(format!("{}-{}-{instance}.log", self.name, kind.binary()));
        Service::spawn(
            &config.bin_dir.join(kind.binary()),
            kind,
            instance,
            env,
            &log,
        )
    }

    /// Remove the vhost and the Redis keys.
    ///
    /// # Errors
    /// The management API or Redis refused; [`Lab::clean_up_all`] tries again at the end.
    pub async fn close(self) -> anyhow::Result<()> {
        self.lab.remove(&self.name).await
    }
}
