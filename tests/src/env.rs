//! One isolated world per test: its own vhost on the shared broker and its own Redis prefix.

use std::collections::HashMap;
use std::time::Duration;

use redis::AsyncCommands;
use serde_json::Value;
use shared::store::Keys;
use shared::topology::Topology;

use crate::process::{Service, ServiceKind};

pub const MANAGEMENT: &str = "http://127.0.0.1:15672";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

pub struct TestEnv {
    pub name: String,
    pub vhost: String,
    pub prefix: String,
    pub amqp_url: String,
    pub redis_url: String,
    pub topology: Topology,
    pub keys: Keys,
    /// Extra environment for every service this env spawns (e.g. INITIAL_STOCK).
    pub service_env: HashMap<String, String>,
    http: reqwest::Client,
}

impl TestEnv {
    /// A fresh vhost and prefix named after the test.
    ///
    /// # Errors
    /// The broker's management API or Redis is not reachable (run `scripts/deps.sh`).
    pub async fn new(test: &str) -> anyhow::Result<Self> {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let name = format!("t-{test}-{suffix}");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let vhost_url = format!("{MANAGEMENT}/api/vhosts/{name}");
        let created = http
            .put(&vhost_url)
            .basic_auth("guest", Some("guest"))
            .send()
            .await?;
        anyhow::ensure!(
            created.status().is_success(),
            "cannot create vhost {name}: {}",
            created.status()
        );
        let perms = http
            .put(format!("{MANAGEMENT}/api/permissions/{name}/guest"))
            .basic_auth("guest", Some("guest"))
            .json(&serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}))
            .send()
            .await?;
        anyhow::ensure!(
            perms.status().is_success(),
            "cannot grant permissions on {name}: {}",
            perms.status()
        );
        Ok(Self {
            amqp_url: format!("amqp://guest:guest@127.0.0.1:5672/{name}"),
            redis_url: REDIS_URL.to_owned(),
            vhost: name.clone(),
            prefix: name.clone(),
            keys: Keys::new(&name),
            topology: Topology::default(),
            service_env: HashMap::new(),
            name,
            http,
        })
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
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let name = format!("t-{test}-{suffix}");
        Ok(Self {
            amqp_url: amqp_url.map_or_else(
                || format!("amqp://guest:guest@127.0.0.1:5672/{name}"),
                str::to_owned,
            ),
            redis_url: redis_url.unwrap_or(REDIS_URL).to_owned(),
            // No vhost of ours to delete on a private broker: the node goes away with the test.
            vhost: String::new(),
            prefix: name.clone(),
            keys: Keys::new(&name),
            topology: Topology::default(),
            service_env: HashMap::new(),
            name,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        })
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
    pub async fn start(&self, kind: ServiceKind) -> anyhow::Result<Service> {
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
    ) -> anyhow::Result<Service> {
        let mut env: Vec<(String, String)> = vec![
            ("RABBITMQ_URL".into(), self.amqp_url.clone()),
            ("REDIS_URL".into(), self.redis_url.clone()),
            ("REDIS_PREFIX".into(), self.prefix.clone()),
            ("SHUTDOWN_GRACE_SECS".into(), "5".into()),
            ("CLAIM_LEASE_MS".into(), "2000".into()),
        ];
        env.extend(self.service_env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let service = Service::spawn(kind, &self.name, env)?;
        service.wait_healthy(Duration::from_secs(20)).await?;
        Ok(service)
    }

    /// The three services, started together.
    ///
    /// # Errors
    /// Any of them failed to start.
    pub async fn start_all(&self) -> anyhow::Result<(Service, Service, Service)> {
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

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

impl Drop for TestEnv {
    /// Remove the vhost and every key under the prefix. Best effort: a failed clean-up must
    /// not hide the test's own verdict.
    fn drop(&mut self) {
        let vhost = self.vhost.clone();
        let prefix = self.prefix.clone();
        let redis_url = self.redis_url.clone();
        if !vhost.is_empty() {
            let _ = std::process::Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-u", "guest:guest", "-X", "DELETE"])
                .arg(format!("{MANAGEMENT}/api/vhosts/{vhost}"))
                .status();
        }
        if let Ok(client) = redis::Client::open(redis_url.as_str())
            && let Ok(mut conn) = client.get_connection()
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}:*"))
                .query(&mut conn)
                .unwrap_or_default();
            for chunk in keys.chunks(500) {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(chunk).query(&mut conn);
            }
        }
    }
}
