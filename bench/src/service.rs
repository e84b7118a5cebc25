//! One real service process, spawned from the release build, its output in a log file.
//!
//! The child is killed when its [`Service`] is dropped, so an error or a Ctrl-C anywhere in a
//! section never leaves services running behind the benchmark.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::process::{Child, Command};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    Order,
    Inventory,
    Notification,
}

impl ServiceKind {
    pub const ALL: [ServiceKind; 3] = [Self::Order, Self::Inventory, Self::Notification];

    pub fn binary(self) -> &'static str {
        match self {
            Self::Order => "order-svc",
            Self::Inventory => "inventory-svc",
            Self::Notification => "notification-svc",
        }
    }
}

pub struct Service {
    pub kind: ServiceKind,
    pub instance: usize,
    pub addr: SocketAddr,
    child: Child,
    log: PathBuf,
}

impl Service {
    /// Start `binary` with `env`, a free HTTP port and its output appended to `log`.
    ///
    /// # Errors
    /// No free port, the log cannot be opened, or the binary cannot be executed.
    pub fn spawn(
        binary: &Path,
        kind: ServiceKind,
        instance: usize,
        env: Vec<(String, String)>,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let addr = free_port()?;
        let out = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(binary)
            .envs(env)
            .env("HTTP_ADDR", addr.to_string())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        Ok(Self {
            kind,
            instance,
            addr,
            child,
            log: log.to_owned(),
        })
    }

    /// `order-svc`, or `inventory-svc #2` for a second instance.
    pub fn label(&self) -> String {
        if self.instance > 1 {
            format!("{} #{}", self.kind.binary(), self.instance)
        } else {
            self.kind.binary().to_owned()
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The process id, while it runs.
    ///
    /// # Errors
    /// The process has already exited.
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child
            .id()
            .with_context(|| format!("{} has exited", self.label()))
    }

    /// Poll `/ready` until it says 200: HTTP up, broker connections consuming, Redis reachable.
    ///
    /// # Errors
    /// The process exited, or it was not ready within `timeout`; the log tail says why.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = self.url("/ready");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!(
                    "{} exited ({status}) before it was ready; log tail:\n{}",
                    self.label(),
                    self.log_tail(10)
                );
            }
            let last = match client.get(&url).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => format!("/ready answered {}", r.status()),
                Err(e) => format!("{e}"),
            };
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "{} not ready within {timeout:?} ({last}); log tail:\n{}",
                    self.label(),
                    self.log_tail(10)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within 10 s.
    pub async fn stop(mut self) {
        if let Ok(pid) = self.pid() {
            // tokio can only SIGKILL a child; `kill -TERM` gives it the clean shutdown a person
            // would, without unsafe code or a signal crate.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
            if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
                .await
                .is_err()
            {
                let _ = self.child.kill().await;
            }
        }
    }

    /// The last `n` lines of the service's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(n)..].join("\n");
        format!("{tail}\n(full log: {})", self.log.display())
    }
}

/// A free loopback port: bind to port 0, read it, let it go for the service to take.
fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("no free loopback port")?;
    Ok(listener.local_addr()?)
}
