//! A real service process: spawned from a build directory, its output captured, signalled.
//!
//! Ports are never guessed: a service starts on `HTTP_ADDR=127.0.0.1:0`, the kernel picks a free
//! port, and the service reports it (`saga_platform::service::http::bind` logs `listening on http://ADDR` under
//! the `listening` target, whatever else the log filter hides). Picking a port first and passing
//! it on would race with every other test doing the same. A restart asks for the same address
//! again, so clients keep working.
//!
//! SIGTERM goes through `nix` (what a container runtime or a person's Ctrl-C sends); `kill -9`
//! through tokio. The child is killed when its [`ServiceProcess`] is dropped, so an error anywhere never
//! leaves a service running behind a test or a benchmark.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::poll::eventually;

/// The words `saga_platform::service::http::bind` reports its address with.
const LISTENING: &str = "listening on http://";

/// How long a process may take to report its address.
const START_TIMEOUT: Duration = Duration::from_secs(20);

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

/// A running service as a client sees it: which one it is and where it answers. A process
/// ([`ServiceProcess`]) and an in-process service (`inproc::InProcess`) alike.
pub trait Endpoint {
    fn kind(&self) -> ServiceKind;
    /// `path` on the service, e.g. `url("/order")`.
    fn url(&self, path: &str) -> String;
}

impl Endpoint for ServiceProcess {
    fn kind(&self) -> ServiceKind {
        self.kind
    }
    fn url(&self, path: &str) -> String {
        ServiceProcess::url(self, path)
    }
}

/// Where cargo put the binaries of the running test: a test executable lives in
/// `target/<profile>/deps/`.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// How to start one service.
#[derive(Debug, Clone)]
pub struct Spawn {
    pub binary: PathBuf,
    pub kind: ServiceKind,
    /// Tells processes apart in logs and errors, e.g. the test's or the world's name.
    pub label: String,
    pub env: Vec<(String, String)>,
    /// Also append the output to this file (the benchmark keeps its services' logs).
    pub log_file: Option<PathBuf>,
}

impl Spawn {
    /// `kind`'s binary in `dir`, labelled `label`, with `env`.
    pub fn new(dir: &Path, kind: ServiceKind, label: &str, env: Vec<(String, String)>) -> Self {
        Self {
            binary: dir.join(kind.binary()),
            kind,
            label: format!("{}[{label}]", kind.binary()),
            env,
            log_file: None,
        }
    }
}

pub struct ServiceProcess {
    pub kind: ServiceKind,
    pub addr: SocketAddr,
    spec: Spawn,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl ServiceProcess {
    /// Start the process and wait until it reports its HTTP address (not until it is healthy:
    /// see [`Self::wait_healthy`] and [`Self::wait_ready`]).
    ///
    /// # Errors
    /// The binary is missing (build it first), cannot run, or exits before it listens.
    pub async fn spawn(spec: Spawn) -> anyhow::Result<Self> {
        anyhow::ensure!(
            spec.binary.is_file(),
            "{} not found: build the binaries first (cargo build --workspace --bins)",
            spec.binary.display()
        );
        let mut env = spec.env.clone();
        if !env.iter().any(|(k, _)| k == "HTTP_ADDR") {
            env.push(("HTTP_ADDR".into(), "127.0.0.1:0".into()));
        }
        // Whatever the caller filters, the line that reports the address must get through.
        let filter = match env.iter().position(|(k, _)| k == "RUST_LOG") {
            Some(i) => env.remove(i).1,
            None => std::env::var("SERVICE_LOG").unwrap_or_else(|_| "info".into()),
        };
        let mut child = Command::new(&spec.binary)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", format!("{filter},listening=info"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", spec.binary.display()))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, mut addr_rx) = watch::channel(None);
        let file = match &spec.log_file {
            Some(path) => Some(Arc::new(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open {}", path.display()))?,
            ))),
            None => None,
        };
        let capture = Capture {
            log: log.clone(),
            file,
            label: spec.label.clone(),
            addr: Arc::new(addr_tx),
        };
        if let Some(out) = child.stdout.take() {
            capture.clone().start(out);
        }
        if let Some(err) = child.stderr.take() {
            capture.start(err);
        }
        let reported = tokio::time::timeout(START_TIMEOUT, addr_rx.wait_for(Option::is_some)).await;
        let addr = match reported {
            Ok(Ok(addr)) => (*addr).context("address reported")?,
            // The sender went away with the output: the process ended before it listened.
            Ok(Err(_)) | Err(_) => {
                let tail = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
                anyhow::bail!(
                    "{} did not report its address within {START_TIMEOUT:?}; log tail: {:?}",
                    spec.label,
                    &tail[tail.len().saturating_sub(10)..]
                );
            }
        };
        Ok(Self {
            kind: spec.kind,
            addr,
            spec,
            child,
            log,
        })
    }

    pub fn label(&self) -> &str {
        &self.spec.label
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Wait until `/health` answers 200: the process serves HTTP.
    ///
    /// # Errors
    /// The deadline passed.
    pub async fn wait_healthy(&self, timeout: Duration) -> anyhow::Result<()> {
        self.wait_for_page("/health", timeout).await
    }

    /// Wait until `/ready` answers 200: broker connections consuming, Redis reachable.
    ///
    /// # Errors
    /// The deadline passed.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        self.wait_for_page("/ready", timeout).await
    }

    async fn wait_for_page(&self, path: &str, timeout: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = self.url(path);
        eventually(&format!("{} {path}", self.label()), timeout, || async {
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
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            kill(Pid::from_raw(pid), Signal::SIGTERM)
                .with_context(|| format!("cannot signal {}", self.label()))?;
        }
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => anyhow::bail!(
                "{} did not exit within {timeout:?} of SIGTERM",
                self.label()
            ),
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within 10 s. Never fails: for the end of a run.
    pub async fn stop(mut self) {
        if self.terminate(Duration::from_secs(10)).await.is_err() {
            let _ = self.child.kill().await;
        }
    }

    /// Start the same service again (same environment and address), e.g. after a kill.
    ///
    /// # Errors
    /// It did not come back healthy.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let _ = self.child.kill().await;
        let mut spec = self.spec.clone();
        spec.env.retain(|(k, _)| k != "HTTP_ADDR");
        spec.env.push(("HTTP_ADDR".into(), self.addr.to_string()));
        let mut fresh = Self::spawn(spec).await?;
        // Keep one log across restarts so a test can read the whole story.
        let old = std::mem::take(&mut *self.log.lock().unwrap_or_else(|e| e.into_inner()));
        fresh
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .splice(0..0, old);
        std::mem::swap(self, &mut fresh);
        self.wait_healthy(START_TIMEOUT).await
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

/// Where a process's output goes: memory, an optional file, `TEST_LOG` echo; and the address it
/// reports.
#[derive(Clone)]
struct Capture {
    log: Arc<Mutex<Vec<String>>>,
    file: Option<Arc<Mutex<std::fs::File>>>,
    label: String,
    addr: Arc<watch::Sender<Option<SocketAddr>>>,
}

impl Capture {
    fn start<R: tokio::io::AsyncRead + Unpin + Send + 'static>(self, stream: R) {
        let echo = std::env::var_os("TEST_LOG").is_some();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if echo {
                    eprintln!("{} {line}", self.label);
                }
                if let Some(addr) = reported_addr(&line) {
                    self.addr.send_replace(Some(addr));
                }
                if let Some(file) = &self.file {
                    let _ = writeln!(file.lock().unwrap_or_else(|e| e.into_inner()), "{line}");
                }
                self.log
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(line);
            }
        });
    }
}

/// The address in a `listening on http://ADDR` line, in either log format.
fn reported_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(LISTENING)? + LISTENING.len()..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '"')
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_reported_address_in_both_log_formats() {
        let pretty = "2026-12-04T15:00:00Z  INFO listening on http://127.0.0.1:40123";
        let json = r#"{"level":"INFO","fields":{"message":"listening on http://127.0.0.1:40123"},"target":"listening"}"#;
        for line in [pretty, json] {
            assert_eq!(reported_addr(line), Some(([127, 0, 0, 1], 40123).into()));
        }
        assert_eq!(reported_addr("order-svc HTTP ready"), None);
    }
}
