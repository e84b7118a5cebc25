//! A real service process: spawned from `target/<profile>/`, its log captured, killable.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::poll::eventually;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    Order,
    Inventory,
    Notification,
}

impl ServiceKind {
    pub fn binary(self) -> &'static str {
        match self {
            Self::Order => "order-svc",
            Self::Inventory => "inventory-svc",
            Self::Notification => "notification-svc",
        }
    }
}

/// Where cargo put the binaries: the test executable lives in `target/<profile>/deps/`.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// A free loopback port (bind to 0, read it, release it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

pub struct Service {
    pub kind: ServiceKind,
    pub addr: SocketAddr,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    env: Vec<(String, String)>,
    label: String,
}

impl Service {
    /// Spawn the binary with `env` and a fresh HTTP port.
    ///
    /// # Errors
    /// The binary is missing (run `cargo build --bins`) or cannot be executed.
    pub fn spawn(
        kind: ServiceKind,
        label: &str,
        mut env: Vec<(String, String)>,
    ) -> anyhow::Result<Self> {
        // A restart keeps its port (clients keep working); a first start gets a free one.
        let addr: SocketAddr = match env
            .iter()
            .find(|(k, _)| k == "HTTP_ADDR")
            .and_then(|(_, v)| v.parse().ok())
        {
            Some(addr) => addr,
            None => {
                let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
                env.push(("HTTP_ADDR".into(), addr.to_string()));
                addr
            }
        };
        let path = bin_dir().join(kind.binary());
        anyhow::ensure!(
            path.exists(),
            "{} not found: build the binaries first (cargo build --bins)",
            path.display()
        );
        let mut child = Command::new(&path)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(
                "RUST_LOG",
                std::env::var("SERVICE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("LOG_FORMAT", "pretty")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let label = format!("{}[{}]", kind.binary(), label);
        if let Some(out) = child.stdout.take() {
            capture(out, log.clone(), label.clone());
        }
        if let Some(err) = child.stderr.take() {
            capture(err, log.clone(), label.clone());
        }
        Ok(Self {
            kind,
            addr,
            child,
            log,
            env,
            label,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Wait until `/health` answers 200.
    ///
    /// # Errors
    /// The deadline passed or the process exited.
    pub async fn wait_healthy(&self, timeout: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let url = self.url("/health");
        eventually(&format!("{} /health", self.label), timeout, || async {
            match client.get(&url).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("status {}", r.status())),
                Err(e) => Err(format!("{e}; log tail: {:?}", self.log_tail(5))),
            }
        })
        .await
    }

    /// Status code of `/ready`.
    pub async fn ready_status(&self) -> Option<u16> {
        reqwest::Client::new()
            .get(self.url("/ready"))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// `kill -9`: no chance to ack, close or flush anything.
    pub async fn kill9(&mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM, then wait for the exit status.
    ///
    /// # Errors
    /// It did not exit within `timeout`.
    pub async fn terminate(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => anyhow::bail!("{} did not exit within {timeout:?} of SIGTERM", self.label),
        }
    }

    /// Start the same service again (same environment and port), e.g. after a kill.
    ///
    /// # Errors
    /// It did not come back healthy.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let _ = self.child.kill().await;
        let label = self
            .label
            .split('[')
            .nth(1)
            .unwrap_or("")
            .trim_end_matches(']')
            .to_owned();
        let mut fresh = Self::spawn(self.kind, &label, self.env.clone())?;
        // Keep one log across restarts so a test can read the whole story.
        let old = std::mem::take(&mut *self.log.lock().unwrap_or_else(|e| e.into_inner()));
        fresh
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .splice(0..0, old);
        std::mem::swap(self, &mut fresh);
        self.wait_healthy(Duration::from_secs(20)).await
    }

    /// Every captured log line so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log().iter().any(|l| l.contains(needle))
    }

    pub fn log_tail(&self, n: usize) -> Vec<String> {
        let log = self.log();
        log[log.len().saturating_sub(n)..].to_vec()
    }
}

fn capture<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    stream: R,
    log: Arc<Mutex<Vec<String>>>,
    label: String,
) {
    let echo = std::env::var_os("TEST_LOG").is_some();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if echo {
                eprintln!("{label} {line}");
            }
            log.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
}
