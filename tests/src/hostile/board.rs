//! A `sagactl board` of the hostile suite's own, that can reach nothing but its test's world.
//!
//! Random requests reach every button, so the board must not be able to hurt anything else:
//! no `--allow-faults` (the fault routes answer 403), its run directory is an empty one of its
//! own (never the demo's `/tmp/saga-run`), and its scripts directory has no drills in it (a
//! drill request starts `bash` on a script that is not there, which fails at once).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

use crate::process::{ServiceProcess, bin_dir, free_port};
use crate::{TestEnv, eventually};

pub struct Board {
    pub url: String,
    child: Child,
    dir: PathBuf,
}

impl Board {
    /// Start the board against `env` and the given order-svc and inventory-svc; wait until it
    /// answers.
    ///
    /// # Errors
    /// It did not start or never answered.
    pub async fn start(
        env: &TestEnv,
        order: &ServiceProcess,
        inventory: &ServiceProcess,
    ) -> anyhow::Result<Self> {
        Self::start_with(env, order, inventory, &[]).await
    }

    /// [`Board::start`] with extra environment (e.g. `PROMETHEUS_URL`).
    ///
    /// # Errors
    /// It did not start or never answered.
    pub async fn start_with(
        env: &TestEnv,
        order: &ServiceProcess,
        inventory: &ServiceProcess,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("hostile-board-{}", env.name));
        let (run_dir, scripts_dir) = (dir.join("run"), dir.join("scripts"));
        std::fs::create_dir_all(&run_dir)?;
        std::fs::create_dir_all(scripts_dir.join("lab"))?;
        let url = format!("http://127.0.0.1:{}", free_port());
        let addr = url.trim_start_matches("http://").to_owned();
        let child = Command::new(bin_dir().join("sagactl"))
            .arg("board")
            .args(["--addr", &addr, "--check-every", "1"])
            .arg("--run-dir")
            .arg(&run_dir)
            .arg("--scripts-dir")
            .arg(&scripts_dir)
            .env_remove("BOARD_ALLOW_FAULTS")
            .env_remove("BOARD_ALLOW_REDIS_STOP")
            .env("RABBITMQ_URL", &env.amqp_url)
            .env("REDIS_URL", &env.redis_url)
            .env("REDIS_PREFIX", &env.prefix)
            .env("ORDER_URL", order.url(""))
            .env("INVENTORY_URL", inventory.url(""))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .envs(extra.iter().copied())
            .kill_on_drop(true)
            .spawn()
            .context("starting sagactl board")?;
        let board = Self { url, child, dir };
        board.wait_healthy(Duration::from_secs(30)).await?;
        Ok(board)
    }

    /// Wait until `/health` answers 200.
    ///
    /// # Errors
    /// The deadline passed.
    pub async fn wait_healthy(&self, within: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let health = format!("{}/health", self.url);
        eventually("the board answering /health", within, || async {
            match client.get(&health).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("status {}", r.status())),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
