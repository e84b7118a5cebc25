//! The cluster profile, private to one test: `scripts/cluster.sh` itself, run under a node name
//! prefix, a data directory and a block of ports of the test's own (so it never meets the
//! demo's cluster or another test's), and wiped when the test ends.
//!
//! Going through the script, not a copy of it, means the drill tests what a person runs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::process::bin_dir;

/// A running cluster profile of the test's own.
pub struct Cluster {
    pub name: String,
    pub dir: PathBuf,
    pub base: u16,
    /// What `cluster.sh env` prints: RABBITMQ_URL, REDIS_URL, ORDER_URL, SAGA_RUN_DIR, ...
    pub env: HashMap<String, String>,
    /// Extra environment for the services (e.g. INITIAL_STOCK, REDIS_MIN_REPLICAS).
    extra: Vec<(String, String)>,
}

impl Cluster {
    /// Start brokers, Redis, Sentinels and the services (debug binaries of this build), with
    /// `extra` in the services' environment. Takes about a minute on two cores.
    ///
    /// # Errors
    /// The script failed; its output is in the error.
    pub async fn up(test: &str, extra: &[(&str, &str)]) -> anyhow::Result<Self> {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let name = format!("t{suffix}");
        let dir = std::env::temp_dir().join(format!("saga-cluster-{test}-{suffix}"));
        // A block of ports nobody listens on; the script derives every port from its base.
        let base = testkit::cluster_profile::free_base()
            .context("no free block of ports for a private cluster")?;
        let mut cluster = Self {
            name,
            dir,
            base,
            env: HashMap::new(),
            extra: extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        eprintln!(
            "{test}: private cluster {} (ports from {base}, data in {})",
            cluster.name,
            cluster.dir.display()
        );
        let up = cluster.script(&["up"]).await;
        if let Err(e) = up {
            cluster.dump_logs();
            return Err(e);
        }
        let printed = cluster.script(&["env"]).await?;
        cluster.env = printed
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Ok(cluster)
    }

    fn script_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("scripts")
            .join("cluster.sh")
    }

    /// The environment the script (and anything driving this cluster) runs with.
    pub fn script_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("CLUSTER_NAME".to_owned(), self.name.clone()),
            ("CLUSTER_DIR".to_owned(), self.dir.display().to_string()),
            ("CLUSTER_PORT_BASE".to_owned(), self.base.to_string()),
            ("SAGA_BIN_DIR".to_owned(), bin_dir().display().to_string()),
            ("SHUTDOWN_GRACE_SECS".to_owned(), "5".to_owned()),
            ("CLAIM_LEASE_MS".to_owned(), "2000".to_owned()),
        ];
        env.extend(self.extra.iter().cloned());
        env
    }

    /// Run `scripts/cluster.sh ARGS`; its standard output, or an error with both outputs.
    ///
    /// # Errors
    /// The script exited non-zero.
    pub async fn script(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = tokio::process::Command::new("bash")
            .arg(Self::script_path())
            .args(args)
            .envs(self.script_env())
            .output()
            .await
            .context("running scripts/cluster.sh")?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        anyhow::ensure!(
            out.status.success(),
            "scripts/cluster.sh {}: {}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            stdout.trim()
        );
        Ok(stdout)
    }

    /// `kill -9` a node (`rabbit2`, `redis-master`, `leader:inventory_queue`, ...); returns which
    /// node it was (`rabbit2`, `redis1`, ...).
    ///
    /// # Errors
    /// No such node, or it was not running.
    pub async fn kill(&self, node: &str) -> anyhow::Result<String> {
        let out = self.script(&["kill", node]).await?;
        out.lines()
            .find_map(|l| l.strip_prefix("killed "))
            .and_then(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .with_context(|| format!("cluster.sh kill {node} did not say what it killed: {out}"))
    }

    /// Start a node again and wait until it serves.
    ///
    /// # Errors
    /// It did not come back.
    pub async fn start(&self, node: &str) -> anyhow::Result<()> {
        self.script(&["start", node]).await.map(|_| ())
    }

    /// A setting of the profile (`RABBITMQ_URL`, `REDIS_URL`, `ORDER_URL`, ...).
    pub fn setting(&self, key: &str) -> String {
        self.env.get(key).cloned().unwrap_or_default()
    }

    /// The management API of node `i` (1..=3).
    pub fn management(&self, i: u16) -> String {
        format!("http://127.0.0.1:{}/api", self.base + 10_000 + i)
    }

    pub fn redis_port(&self, i: u16) -> u16 {
        self.base + 700 + i
    }

    /// Base URLs of the services' HTTP APIs: order, inventory (two), notification.
    pub fn service_urls(&self) -> [String; 4] {
        [91, 92, 93, 94].map(|i| format!("http://127.0.0.1:{}", self.base + i))
    }

    /// The services' and nodes' logs, printed on failure: the story of what went wrong.
    pub fn dump_logs(&self) {
        for sub in ["run", "rabbit1/log", "redis1", "sentinel1"] {
            let Ok(entries) = std::fs::read_dir(self.dir.join(sub)) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "log") {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().collect();
                    eprintln!("--- {} (last 40 lines)", path.display());
                    for line in &lines[lines.len().saturating_sub(40)..] {
                        eprintln!("{line}");
                    }
                }
            }
        }
    }

    /// How long to give the whole profile to settle after a fault (two cores, three brokers).
    pub const SETTLE: Duration = Duration::from_secs(90);
}

impl Drop for Cluster {
    /// Stop everything the script started and delete its data. Best effort: a failed clean-up
    /// must not hide the test's own verdict.
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("TEST_LOG").is_some() {
            self.dump_logs();
        }
        // CLUSTER_KEEP=1 keeps the data and logs (everything is stopped) to read afterwards.
        let keep = std::env::var_os("CLUSTER_KEEP").is_some();
        let down: &[&str] = if keep { &["down"] } else { &["down", "--wipe"] };
        let stopped = std::process::Command::new("bash")
            .arg(Self::script_path())
            .args(down)
            .envs(self.script_env())
            .output();
        match stopped {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "scripts/cluster.sh {}: {}",
                down.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => eprintln!("scripts/cluster.sh {}: {e}", down.join(" ")),
        }
        if keep {
            eprintln!("cluster kept (stopped) in {}", self.dir.display());
        }
    }
}
