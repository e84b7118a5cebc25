//! `--cluster`: the end-to-end and fixed-rate sections again, on the cluster profile.
//!
//! The profile is `scripts/cluster.sh` itself (3 RabbitMQ nodes, Redis master + 2 replicas +
//! 3 Sentinels), started without its services on a private name, directory and block of ports,
//! and wiped at the end. Each section's world is a quorum-default vhost with the profile's
//! policy; the services get the node list and the Sentinel URL, so they wait for a replica on
//! every write (`WAIT`), as in production. CPU is counted per node (from the pid files), so the
//! table shows what three brokers cost on two cores.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cpu::Watched;
use crate::world::LabConfig;

/// A running cluster profile (brokers and stores only).
pub struct ClusterProfile {
    script: PathBuf,
    name: String,
    dir: PathBuf,
    base: u16,
    /// What `cluster.sh env` prints.
    env: HashMap<String, String>,
}

impl ClusterProfile {
    /// Start it (about a minute from cold on two cores).
    ///
    /// # Errors
    /// The script failed; its message is in the error.
    pub async fn start(script: &Path) -> anyhow::Result<Self> {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let base = testkit::cluster_profile::free_base()
            .context("no free block of ports for the cluster profile")?;
        let mut profile = Self {
            script: script.to_owned(),
            name: format!("bench{id}"),
            dir: std::env::temp_dir().join(format!("saga-bench-cluster-{id}")),
            base,
            env: HashMap::new(),
        };
        profile.script_run(&["up"]).await?;
        profile.env = profile
            .script_run(&["env"])
            .await?
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Ok(profile)
    }

    async fn script_run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = tokio::process::Command::new("bash")
            .arg(&self.script)
            .args(args)
            .env("CLUSTER_NAME", &self.name)
            .env("CLUSTER_DIR", &self.dir)
            .env("CLUSTER_PORT_BASE", self.base.to_string())
            .env("CLUSTER_SERVICES", "0")
            .output()
            .await
            .with_context(|| format!("cannot run {}", self.script.display()))?;
        anyhow::ensure!(
            out.status.success(),
            "{} {}: {}",
            self.script.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `base` pointed at this profile: node list, Sentinel URL, node 1's management API,
    /// quorum-default worlds, CPU per node; `service_env` added to every service's environment.
    pub fn lab_config(&self, base: &LabConfig, service_env: &[(&str, &str)]) -> LabConfig {
        let nodes: Vec<String> = (1..=3)
            .map(|i| format!("127.0.0.1:{}", self.base + i))
            .collect();
        LabConfig {
            management_url: format!("http://127.0.0.1:{}", self.base + 10_001),
            amqp_addr: nodes.join(","),
            redis_url: self.env.get("REDIS_URL").cloned().unwrap_or_default(),
            quorum: true,
            service_env: service_env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            helpers: Some(self.helpers()),
            ..base.clone()
        }
    }

    /// Every broker node, Redis and Sentinel, each on its own line of the CPU table.
    fn helpers(&self) -> Vec<Watched> {
        let pid = |file: PathBuf| -> Vec<u32> {
            std::fs::read_to_string(file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .into_iter()
                .collect()
        };
        let mut helpers = Vec::new();
        for i in 1..=3 {
            helpers.push(Watched {
                label: format!("RabbitMQ node {i}"),
                pids: pid(self.dir.join(format!("rabbit{i}/pid"))),
            });
        }
        for i in 1..=3 {
            helpers.push(Watched {
                label: format!("Redis {i} ({})", if i == 1 { "master" } else { "replica" }),
                pids: pid(self.dir.join(format!("redis{i}/redis.pid"))),
            });
        }
        helpers.push(Watched {
            label: "Sentinels (3)".into(),
            pids: (1..=3)
                .flat_map(|i| pid(self.dir.join(format!("sentinel{i}/sentinel.pid"))))
                .collect(),
        });
        helpers
    }

    /// Stop everything and delete its data. Best effort.
    pub async fn stop(self) {
        if let Err(e) = self.script_run(&["down", "--wipe"]).await {
            crate::progress(&format!("could not stop the cluster profile: {e:#}"));
        }
    }
}
