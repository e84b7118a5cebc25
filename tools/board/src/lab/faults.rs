//! Breaking the demo on purpose, from the page: what the README tells a class to do by hand.
//!
//! | button | what it does | by hand |
//! |---|---|---|
//! | stop | SIGTERM, wait for a clean exit (SIGKILL after 15 s) | `scripts/svc.sh stop NAME` |
//! | kill -9 | SIGKILL: no chance to ack, flush or close anything | `kill -9 PID` |
//! | start | `scripts/svc.sh start NAME` with the board's broker, Redis and run directory | the same |
//! | close connections | every client connection of the board's vhost, except the board's own | `rabbitmqctl close_all_connections -p VHOST` |
//!
//! None of it is allowed unless the board was started with `--allow-faults` and listens on a
//! loopback address ([`Board::faults_refused`]); the routes answer 403 otherwise. Each acts on
//! a process only after checking, in /proc, that the pid still runs that service's binary.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::process::Command;

use super::processes::{self, Instance};
use crate::{Board, CONNECTION_NAME};

/// How long a stopped service may take to drain before it is killed (svc.sh waits as long).
const STOP_GRACE: Duration = Duration::from_secs(15);

/// What can be done to a service instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceAction {
    Stop,
    Start,
    Kill,
}

impl ServiceAction {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "stop" => Some(Self::Stop),
            "start" => Some(Self::Start),
            "kill" => Some(Self::Kill),
            _ => None,
        }
    }
}

/// Why a fault action did not happen.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("{0}")]
    Refused(String),
    #[error("no service instance {0:?} in the run directory")]
    UnknownInstance(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Failed(String),
}

/// Stop, start or kill one instance; returns what was done, as a person would type it.
///
/// # Errors
/// See [`FaultError`]; nothing was done, except for a failed start (see its output).
pub async fn act_on_service(
    board: &Board,
    name: &str,
    action: ServiceAction,
) -> Result<String, FaultError> {
    if let Some(why) = board.faults_refused() {
        return Err(FaultError::Refused(why));
    }
    let instance = processes::scan(&board.args.run_dir)
        .into_iter()
        .find(|i| i.name == name)
        .ok_or_else(|| FaultError::UnknownInstance(name.to_owned()))?;
    match action {
        ServiceAction::Kill => kill(&instance).await,
        ServiceAction::Stop => stop(&instance).await,
        ServiceAction::Start => start(board, &instance).await,
    }
}

fn running_pid(instance: &Instance) -> Result<u32, FaultError> {
    match instance.pid {
        Some(pid) if instance.running => Ok(pid),
        _ => Err(FaultError::Conflict(format!(
            "{} is not running",
            instance.name
        ))),
    }
}

fn signal(pid: u32, signal: Signal) -> Result<(), FaultError> {
    let target = i32::try_from(pid)
        .map(Pid::from_raw)
        .map_err(|_| FaultError::Failed(format!("{pid} is not a pid")))?;
    nix::sys::signal::kill(target, signal)
        .map_err(|e| FaultError::Failed(format!("kill -{} {pid} failed: {e}", signal.as_str())))
}

async fn kill(instance: &Instance) -> Result<String, FaultError> {
    let pid = running_pid(instance)?;
    signal(pid, Signal::SIGKILL)?;
    gone(pid, instance.service, Duration::from_secs(5)).await;
    Ok(format!("kill -9 {pid}  ({})", instance.name))
}

async fn stop(instance: &Instance) -> Result<String, FaultError> {
    let pid = running_pid(instance)?;
    signal(pid, Signal::SIGTERM)?;
    if gone(pid, instance.service, STOP_GRACE).await {
        return Ok(format!(
            "kill -TERM {pid}  ({} stopped cleanly)",
            instance.name
        ));
    }
    signal(pid, Signal::SIGKILL)?;
    gone(pid, instance.service, Duration::from_secs(5)).await;
    Ok(format!(
        "kill -TERM {pid}, then kill -9 after {} s  ({} did not stop in time)",
        STOP_GRACE.as_secs(),
        instance.name
    ))
}

/// Wait until `pid` no longer runs `service`; `false` if it still does after `timeout`.
async fn gone(pid: u32, service: &str, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while processes::runs(pid, service) {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// `scripts/svc.sh start NAME`, pointed at the broker, Redis and run directory the board
/// watches; everything else (binaries, HTTP addresses, log level) comes from the board's own
/// environment, which scripts/up.sh gives it as it gives the services.
async fn start(board: &Board, instance: &Instance) -> Result<String, FaultError> {
    if instance.running {
        return Err(FaultError::Conflict(format!(
            "{} is already running (pid {})",
            instance.name,
            instance.pid.unwrap_or_default()
        )));
    }
    if !instance.startable {
        return Err(FaultError::Conflict(format!(
            "{} was started by another script (scripts/svc.sh knows {}): start it the way it was \
             started",
            instance.name,
            processes::SERVICES.join(", ")
        )));
    }
    let scripts = board.scripts_dir.as_ref().ok_or_else(|| {
        FaultError::Conflict(
            "no scripts directory: start the board from the repository, or give --scripts-dir"
                .into(),
        )
    })?;
    let svc = scripts.join("svc.sh");
    let common = &board.common;
    let output = Command::new("bash")
        .arg(&svc)
        .arg("start")
        .arg(&instance.name)
        .env("SAGA_RUN_DIR", &board.args.run_dir)
        .envs(super::drills::saga_env(common))
        .current_dir(scripts.parent().unwrap_or(scripts))
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| FaultError::Failed(format!("cannot run {}: {e}", svc.display())))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let said = said.trim();
    if output.status.success() {
        Ok(format!("scripts/svc.sh start {}  ({said})", instance.name))
    } else {
        Err(FaultError::Failed(format!(
            "scripts/svc.sh start {} failed: {said}",
            instance.name
        )))
    }
}

/// Close every client connection of the board's vhost but the board's own; returns how many.
///
/// # Errors
/// Refused, or the management API is unreachable.
pub async fn close_connections(board: &Board) -> Result<String, FaultError> {
    if let Some(why) = board.faults_refused() {
        return Err(FaultError::Refused(why));
    }
    let connections = board
        .management
        .connections(&board.vhost)
        .await
        .map_err(|e| FaultError::Failed(format!("{e:#}")))?;
    let mut closed = Vec::new();
    for connection in connections
        .iter()
        .filter(|c| c.client_name.as_deref() != Some(CONNECTION_NAME))
    {
        board
            .management
            .close_connection(&connection.name, "closed from the classroom board")
            .await
            .map_err(|e| FaultError::Failed(format!("{e:#}")))?;
        closed.push(
            connection
                .client_name
                .clone()
                .unwrap_or_else(|| connection.name.clone()),
        );
    }
    Ok(format!(
        "rabbitmqctl close_all_connections -p {} \"closed from the classroom board\"  ({} closed: {})",
        board.vhost,
        closed.len(),
        if closed.is_empty() {
            "none open".to_owned()
        } else {
            closed.join(", ")
        }
    ))
}
