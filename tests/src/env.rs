//! One isolated world per test: its own vhost on the shared broker and its own Redis prefix.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use redis::AsyncCommands;
use serde_json::Value;
use testkit::Endpoint;
use testkit::inproc::InProcess;
use testkit::service::{Spawn, bin_dir};
use testkit::world::{Broker, VhostKind, World};

use crate::process::{ServiceKind, ServiceProcess};

pub const REDIS_URL: &str = testkit::world::LOCAL_REDIS;

/// A test's [`World`] (its vhost, prefix, URLs, keys: `env.amqp_url`, `env.keys`, ...), with
/// what the test adds to every service it starts. The world is removed when the env is dropped.
pub struct TestEnv {
    world: World,
    /// Extra environment for every service this env spawns (e.g. INITIAL_STOCK).
    pub service_env: HashMap<String, String>,
    http: reqwest::Client,
}

impl Deref for TestEnv {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

impl DerefMut for TestEnv {
    fn deref_mut(&mut self) -> &mut World {
        &mut self.world
    }
}

fn world_name(test: &str) -> String {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!("t-{test}-{suffix}")
}

impl TestEnv {
    /// A fresh vhost and prefix named after the test.
    ///
    /// # Errors
    /// The broker's management API or Redis is not reachable (run `scripts/deps.sh`).
    pub async fn new(test: &str) -> anyhow::Result<Self> {
        let world = World::create(
            &Broker::default(),
            REDIS_URL,
            &world_name(test),
            VhostKind::Classic,
        )
        .await?;
        Ok(Self::around(world))
    }

    /// An env on a broker and/or Redis the test started itself (a private node or server), so
    /// that it can stop and start them. The vhost is the private broker's default one.
    ///
    /// # Errors
    /// Never, today; kept fallible like [`Self::new`].
    pub fn on_private(
        test: &str,
        amqp_url: Option<&str>,
        redis_url: Option<&str>,
    ) -> anyhow::Result<Self> {
        let name = world_name(test);
        let amqp_url = amqp_url.map_or_else(
            || format!("amqp://guest:guest@127.0.0.1:5672/{name}"),
            str::to_owned,
        );
        let world = World::on(&amqp_url, redis_url.unwrap_or(REDIS_URL), &name);
        Ok(Self::around(world))
    }

    fn around(world: World) -> Self {
        Self {
            world,
            service_env: HashMap::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }

    /// Same, with a starting stock for inventory-svc (e.g. `"widget=5"`).
    pub async fn with_stock(test: &str, stock: &str) -> anyhow::Result<Self> {
        let mut env = Self::new(test).await?;
        env.service_env.insert("INITIAL_STOCK".into(), stock.into());
        Ok(env)
    }

    /// Start one service against this env and wait until it answers `/health`.
    ///
    /// # Errors
    /// The process did not start or never became healthy.
    pub async fn start(&self, kind: ServiceKind) -> anyhow::Result<ServiceProcess> {
        self.start_with(kind, &[]).await
    }

    /// Start one service with extra environment variables.
    ///
    /// # Errors
    /// The process did not start or never became healthy.
    pub async fn start_with(
        &self,
        kind: ServiceKind,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<ServiceProcess> {
        let env = self.service_env_with(extra);
        let service = ServiceProcess::spawn(Spawn::new(&bin_dir(), kind, &self.name, env)).await?;
        service.wait_healthy(Duration::from_secs(20)).await?;
        Ok(service)
    }

    /// Run one service inside this test's process (its `App` on port 0), where a separate
    /// process is not the point of the test: no log, kill or `/metrics` of its own.
    ///
    /// # Errors
    /// A bad setting, or the port cannot be bound.
    pub async fn start_in_process(&self, kind: ServiceKind) -> anyhow::Result<InProcess> {
        InProcess::start(kind, &self.service_env_with(&[])).await
    }

    /// The three services, in-process.
    ///
    /// # Errors
    /// Any of them failed to start.
    pub async fn start_all_in_process(&self) -> anyhow::Result<(InProcess, InProcess, InProcess)> {
        Ok((
            self.start_in_process(ServiceKind::Order).await?,
            self.start_in_process(ServiceKind::Inventory).await?,
            self.start_in_process(ServiceKind::Notification).await?,
        ))
    }

    /// What every service of this env is started with, then `extra`.
    fn service_env_with(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = self.world.service_env();
        env.extend([
            ("SHUTDOWN_GRACE_SECS".into(), "5".into()),
            ("CLAIM_LEASE_MS".into(), "2000".into()),
        ]);
        env.extend(self.service_env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        env
    }

    /// The three services, started together.
    ///
    /// # Errors
    /// Any of them failed to start.
    pub async fn start_all(
        &self,
    ) -> anyhow::Result<(ServiceProcess, ServiceProcess, ServiceProcess)> {
        let (o, i, n) = tokio::join!(
            self.start(ServiceKind::Order),
            self.start(ServiceKind::Inventory),
            self.start(ServiceKind::Notification)
        );
        Ok((o?, i?, n?))
    }

    /// A Redis connection for inspecting state.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn redis(&self) -> anyhow::Result<redis::aio::MultiplexedConnection> {
        Ok(redis::Client::open(self.redis_url.as_str())?
            .get_multiplexed_async_connection()
            .await?)
    }

    /// Available units of `item`, if the item exists.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn stock(&self, item: &str) -> anyhow::Result<Option<i64>> {
        Ok(self.redis().await?.hget(self.keys.stock(), item).await?)
    }

    /// Available units of `item` once inventory-svc has seeded its stock (it seeds just after
    /// it answers `/health`, so a test that reads stock first waits for that).
    ///
    /// # Errors
    /// The item never appeared.
    pub async fn seeded_stock(&self, item: &str) -> anyhow::Result<i64> {
        crate::eventually(
            &format!("{item} stock seeded"),
            Duration::from_secs(20),
            || async {
                match self.stock(item).await {
                    Ok(Some(n)) => Ok(n),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await
    }

    /// Wait until `item` has exactly `n` units available; `what` says what that means.
    ///
    /// # Errors
    /// It did not within `timeout`; the error has the last stock seen.
    pub async fn until_stock(
        &self,
        what: &str,
        item: &str,
        n: i64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        crate::eventually(what, timeout, || async {
            match self.stock(item).await {
                Ok(Some(available)) if available == n => Ok(()),
                other => Err(format!("{item} available {other:?}, want {n}")),
            }
        })
        .await
    }

    /// Wait until exactly `n` notifications are recorded for `order_id`.
    ///
    /// # Errors
    /// It did not within `timeout`; the error has the last ones seen.
    pub async fn until_notified(
        &self,
        what: &str,
        order_id: &str,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        crate::eventually(what, timeout, || async {
            match self.notifications_for(order_id).await {
                Ok(seen) if seen.len() == n => Ok(()),
                other => Err(format!("{other:?}, want {n}")),
            }
        })
        .await
    }

    /// How many notifications were recorded in all.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn notification_count(&self) -> anyhow::Result<usize> {
        Ok(self.redis().await?.llen(self.keys.notifications()).await?)
    }

    /// How many notifications were recorded for `order_id`.
    ///
    /// # Errors
    /// Redis unreachable or an unreadable record.
    pub async fn notifications_for(&self, order_id: &str) -> anyhow::Result<Vec<Value>> {
        let all: Vec<String> = self
            .redis()
            .await?
            .lrange(self.keys.notifications(), 0, -1)
            .await?;
        Ok(all
            .iter()
            .filter_map(|s| serde_json::from_str::<Value>(s).ok())
            .filter(|n| n["order_id"] == order_id)
            .collect())
    }

    /// Run the real `sagactl` as a script would (from the target directory, configured by
    /// environment only) against this env: its broker, management API, Redis and prefix, and the
    /// order-svc and inventory-svc among `services`.
    ///
    /// # Errors
    /// The binary cannot be run.
    pub async fn sagactl(
        &self,
        services: &[&dyn Endpoint],
        args: &[&str],
    ) -> anyhow::Result<std::process::Output> {
        let mut command = tokio::process::Command::new(bin_dir().join("sagactl"));
        command
            .args(args)
            .env("RABBITMQ_URL", &self.amqp_url)
            .env("REDIS_URL", &self.redis_url)
            .env("REDIS_PREFIX", &self.prefix)
            .env(
                "RABBITMQ_MANAGEMENT_URL",
                "http://guest:guest@127.0.0.1:15672",
            );
        for service in services {
            match service.kind() {
                ServiceKind::Order => command.env("ORDER_URL", service.url("")),
                ServiceKind::Inventory => command.env("INVENTORY_URL", service.url("")),
                ServiceKind::Notification => &mut command,
            };
        }
        Ok(command.output().await?)
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

impl Drop for TestEnv {
    /// Remove the vhost and every key under the prefix; a failed clean-up is reported, and must
    /// not hide the test's own verdict.
    fn drop(&mut self) {
        self.world.remove_blocking();
    }
}
