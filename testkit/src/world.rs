//! A world: one vhost on the broker and one Redis key prefix (the same name for both), so a
//! test, a benchmark section or a lab run never sees anyone else's queues or keys.
//!
//! Made through the management API (as an operator would in its UI) and removed the same way;
//! the Redis side is removed with `SCAN` + `UNLINK` in pages, never `KEYS`, which would block
//! Redis while a drain's 100k keys are listed.

use std::time::Duration;

use anyhow::Context;
use reqwest::Method;
use saga_platform::amqp::topology::Topology;
use saga_platform::redis::store::Keys;

/// Where the broker's management API and AMQP listener(s) are, and who we are on them.
#[derive(Debug, Clone)]
pub struct Broker {
    pub management_url: String,
    /// `host:port` of the AMQP listener; a cluster's nodes separated by commas.
    pub amqp_addr: String,
    pub user: String,
    pub password: String,
}

impl Default for Broker {
    /// The broker `scripts/deps.sh` starts: local, guest/guest.
    fn default() -> Self {
        Self {
            management_url: "http://127.0.0.1:15672".into(),
            amqp_addr: "127.0.0.1:5672".into(),
            user: "guest".into(),
            password: "guest".into(),
        }
    }
}

/// The Redis `scripts/deps.sh` starts.
pub const LOCAL_REDIS: &str = "redis://127.0.0.1:6379";

/// How a world's vhost is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VhostKind {
    /// Classic queues, as the lab profile has them.
    #[default]
    Classic,
    /// Quorum queues by default, with the cluster profile's policy on the consumed queues (as
    /// `scripts/cluster.sh` makes them).
    Quorum,
}

/// One vhost and one Redis prefix, named alike.
#[derive(Debug, Clone)]
pub struct World {
    pub name: String,
    /// The vhost to remove at the end; empty when the world lives on a private broker's
    /// default vhost (the node goes away with its test).
    pub vhost: String,
    pub prefix: String,
    /// One URL per broker node, joined by commas (what `RABBITMQ_URL` takes).
    pub amqp_url: String,
    pub redis_url: String,
    pub topology: Topology,
    pub keys: Keys,
    broker: Broker,
}

impl World {
    /// A fresh vhost called `name` (with permissions for our user) and the prefix `name`.
    ///
    /// # Errors
    /// The management API refused or is unreachable.
    pub async fn create(
        broker: &Broker,
        redis_url: &str,
        name: &str,
        kind: VhostKind,
    ) -> anyhow::Result<Self> {
        let world = Self::named(broker, redis_url, name, name);
        let settings = (kind == VhostKind::Quorum)
            .then(|| serde_json::json!({"default_queue_type": "quorum"}));
        world
            .management(Method::PUT, &format!("vhosts/{name}"), settings)
            .await
            .with_context(|| {
                format!(
                    "cannot create vhost {name} (is RabbitMQ with its management plugin running? scripts/deps.sh)"
                )
            })?;
        let grant = serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"});
        world
            .management(
                Method::PUT,
                &format!("permissions/{name}/{}", broker.user),
                Some(grant),
            )
            .await
            .with_context(|| format!("cannot grant permissions on vhost {name}"))?;
        if kind == VhostKind::Quorum {
            let policy = consumed_queues_policy(&world.topology);
            world
                .management(
                    Method::PUT,
                    &format!("policies/{name}/saga-consumed"),
                    Some(policy),
                )
                .await
                .with_context(|| format!("cannot set the policy on vhost {name}"))?;
        }
        Ok(world)
    }

    /// A world on a broker and Redis someone else made (a private node's default vhost): only
    /// the prefix is ours, and only the prefix is removed.
    pub fn on(amqp_url: &str, redis_url: &str, name: &str) -> Self {
        let mut world = Self::named(&Broker::default(), redis_url, name, "");
        world.amqp_url = amqp_url.to_owned();
        world
    }

    fn named(broker: &Broker, redis_url: &str, name: &str, vhost: &str) -> Self {
        let amqp_url = broker
            .amqp_addr
            .split(',')
            .map(|addr| format!("amqp://{}:{}@{addr}/{name}", broker.user, broker.password))
            .collect::<Vec<_>>()
            .join(",");
        Self {
            name: name.to_owned(),
            vhost: vhost.to_owned(),
            prefix: name.to_owned(),
            amqp_url,
            redis_url: redis_url.to_owned(),
            topology: Topology::default(),
            keys: Keys::new(name),
            broker: broker.clone(),
        }
    }

    /// The environment every service of this world starts with.
    pub fn service_env(&self) -> Vec<(String, String)> {
        vec![
            ("RABBITMQ_URL".into(), self.amqp_url.clone()),
            ("REDIS_URL".into(), self.redis_url.clone()),
            ("REDIS_PREFIX".into(), self.prefix.clone()),
        ]
    }

    /// A connection to this world's vhost, named so it is recognisable in the management UI.
    ///
    /// # Errors
    /// The broker is unreachable.
    pub async fn connect(&self, name: &str) -> anyhow::Result<lapin::Connection> {
        saga_platform::amqp::connect_once(&self.amqp_url, name)
            .await
            .with_context(|| format!("cannot connect to vhost {}", self.name))
    }

    /// Declare the saga's topology now, so queues can be filled or inspected before any
    /// service has started.
    ///
    /// # Errors
    /// The broker is unreachable.
    pub async fn declare_topology(&self) -> anyhow::Result<()> {
        let conn = self.connect("testkit setup").await?;
        saga_platform::amqp::declare_topology(&conn, &self.topology).await?;
        saga_platform::amqp::close_connection(&conn, 200, "declared").await;
        Ok(())
    }

    /// A request to the broker's management API (`path` after `/api/`).
    pub fn management_request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        http_client()
            .request(method, format!("{}/api/{path}", self.broker.management_url))
            .basic_auth(&self.broker.user, Some(&self.broker.password))
    }

    async fn management(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<()> {
        let mut request = self.management_request(method.clone(), path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        // Deleting what is already gone is fine: the goal is that it is gone.
        let gone = method == Method::DELETE && status == reqwest::StatusCode::NOT_FOUND;
        anyhow::ensure!(
            status.is_success() || gone,
            "{method} /api/{path}: {status} {}",
            response.text().await.unwrap_or_default()
        );
        Ok(())
    }

    /// Delete the vhost (its queues and messages go with it) and every key under the prefix.
    ///
    /// # Errors
    /// The management API or Redis is unreachable.
    pub async fn remove(&self) -> anyhow::Result<()> {
        if !self.vhost.is_empty() {
            self.management(Method::DELETE, &format!("vhosts/{}", self.vhost), None)
                .await
                .with_context(|| format!("cannot delete vhost {}", self.vhost))?;
        }
        let mut redis = saga_platform::redis::store::connect(&self.redis_url)?;
        let pattern = format!("{}:*", self.prefix);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
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
                return Ok(());
            }
            cursor = next;
        }
    }

    /// [`Self::remove`] from a `Drop`, where no runtime can be awaited: on a thread of its own
    /// with a runtime of its own. Best effort: a failed clean-up must not hide a test's verdict.
    pub fn remove_blocking(&self) {
        let world = self.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), world.remove()).await
            })?
        });
        if let Ok(Err(e)) = cleanup.join() {
            eprintln!("testkit: could not remove world {}: {e:#}", self.name);
        }
    }
}

/// One HTTP client for the management API: a short timeout, so a hung broker fails a test
/// instead of hanging it.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default()
}

/// The cluster profile's policy on the consumed queues (see `scripts/cluster.sh`): a bounded
/// number of deliveries, then at-least-once dead-lettering into the DLQ.
fn consumed_queues_policy(topology: &Topology) -> serde_json::Value {
    serde_json::json!({
        "pattern": format!("^({})$", topology.consumed_queues().join("|")),
        "apply-to": "queues",
        "priority": 10,
        "definition": {
            "delivery-limit": 1000,
            "dead-letter-exchange": "",
            "dead-letter-routing-key": topology.dlq_queue,
            "dead-letter-strategy": "at-least-once",
            "overflow": "reject-publish",
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_world_lists_every_node_in_its_url() {
        let broker = Broker {
            amqp_addr: "127.0.0.1:5672,127.0.0.1:5673".into(),
            ..Broker::default()
        };
        let world = World::named(&broker, LOCAL_REDIS, "w1", "w1");
        assert_eq!(
            world.amqp_url,
            "amqp://guest:guest@127.0.0.1:5672/w1,amqp://guest:guest@127.0.0.1:5673/w1"
        );
        assert_eq!(world.keys.prefix(), "w1");
    }

    #[test]
    fn the_policy_covers_exactly_the_consumed_queues() {
        let policy = consumed_queues_policy(&Topology::default());
        let pattern = policy["pattern"].as_str().unwrap();
        for queue in Topology::default().consumed_queues() {
            assert!(pattern.contains(queue), "{pattern} misses {queue}");
        }
        assert!(!pattern.contains(&Topology::default().dlq_queue));
    }
}
