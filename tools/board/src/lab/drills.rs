//! The lab drills, run from the page one at a time, their output streamed as it comes.
//!
//! A drill is the very script a student runs (`scripts/lab/<drill>.sh`), started with the
//! board's view of the demo in its environment (which broker vhost, Redis prefix, service URLs
//! and run directory), and with the `sagactl` beside this binary as its `SAGACTL`. Its output goes to the
//! page line by line (`drill-line`); when it ends, its verdict (the script's exit status: PASS
//! or FAIL) and whole output are the `drill` topic, which a page opening later also gets.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use saga_domain::events::unix_now_millis;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use crate::page::DrillLine;
use crate::{Board, lock};

/// The drills, in the order the lab teaches them (scripts/lab/run_all.sh runs the same).
/// schema_evolution restarts inventory-svc twice through scripts/svc.sh (reading version 1
/// only, then every version), so it wants the demo's processes, in the board's run directory,
/// as the fault buttons do.
pub const DRILLS: [&str; 5] = [
    "smoke",
    "backlog-drain",
    "idempotency",
    "dlq",
    "schema_evolution",
];
/// A drill still running after this long is stopped and counted as failed.
const DRILL_TIMEOUT: Duration = Duration::from_secs(300);
/// The most output lines kept for a page that opens later.
const LINES_KEPT: usize = 2000;

/// One run of a drill.
#[derive(Debug, Clone, Serialize)]
pub struct DrillRun {
    pub name: String,
    pub state: DrillState,
    pub started_at: u64,
    pub ended_at: Option<u64>,
    pub exit_code: Option<i32>,
    pub lines: Vec<String>,
}

/// Where a drill run is: its verdict is the script's exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DrillState {
    Running,
    Passed,
    Failed,
}

#[derive(Default)]
pub struct Drills {
    current: Mutex<Option<DrillRun>>,
    /// Dropping the child kills it: set while a drill runs, so the board can stop it on exit.
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

/// Why a drill did not start.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("no drill {0:?}; the drills are: {list}", list = DRILLS.join(", "))]
    Unknown(String),
    #[error("the {0} drill is running; wait for it to end")]
    Busy(String),
    #[error("no scripts directory: start the board from the repository, or give --scripts-dir")]
    NoScripts,
    #[error("cannot start the drill: {0}")]
    Spawn(String),
}

impl Drills {
    /// The drill running now, if any.
    pub fn running(&self) -> Option<String> {
        lock(&self.current)
            .as_ref()
            .filter(|run| run.state == DrillState::Running)
            .map(|run| run.name.clone())
    }

    /// Stop a running drill (the board is shutting down).
    pub async fn stop(&self) {
        if let Some(stop) = lock(&self.stop).take() {
            let _ = stop.send(());
        }
    }
}

/// Start drill `name`; its output streams to the page.
///
/// # Errors
/// See [`DrillError`]: nothing was started.
pub fn start(board: &Arc<Board>, name: &str) -> Result<DrillRun, DrillError> {
    let name = DRILLS
        .into_iter()
        .find(|d| *d == name)
        .ok_or_else(|| DrillError::Unknown(name.to_owned()))?;
    let scripts = board.scripts_dir.clone().ok_or(DrillError::NoScripts)?;
    let script = scripts.join("lab").join(format!("{name}.sh"));
    let run = {
        let mut current = lock(&board.drills.current);
        if let Some(busy) = current
            .as_ref()
            .filter(|run| run.state == DrillState::Running)
        {
            return Err(DrillError::Busy(busy.name.clone()));
        }
        let run = DrillRun {
            name: name.to_owned(),
            state: DrillState::Running,
            started_at: unix_now_millis(),
            ended_at: None,
            exit_code: None,
            lines: vec![format!("$ bash {}", display(&script))],
        };
        *current = Some(run.clone());
        run
    };
    let mut command = Command::new("bash");
    command
        .arg(&script)
        .current_dir(scripts.parent().unwrap_or(&scripts))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    environment(board, &mut command);
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            *lock(&board.drills.current) = None;
            return Err(DrillError::Spawn(e.to_string()));
        }
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    *lock(&board.drills.stop) = Some(stop_tx);
    board.hub.set(&run);
    board.record(true, format!("drill {name}: bash {}", display(&script)));
    tokio::spawn(supervise(board.clone(), child, stop_rx));
    Ok(run)
}

/// What a drill needs to know to work on the demo the board shows.
fn environment(board: &Board, command: &mut Command) {
    let common = &board.common;
    command
        .env("ORDER_URL", &board.urls.order)
        .env("INVENTORY_URL", &board.urls.inventory)
        .env("RABBITMQ_MANAGEMENT_URL", &board.urls.management)
        .envs(saga_env(common))
        .env("SAGA_RUN_DIR", &board.args.run_dir);
    // The sagactl built with this board (beside it in target/<profile>/), as a drill expects.
    let sagactl = std::env::current_exe()
        .ok()
        .map(|me| me.with_file_name("sagactl"))
        .filter(|beside| beside.is_file());
    if let Some(sagactl) = sagactl {
        command.env("SAGACTL", sagactl);
    }
}

/// Stream the drill's output until it ends, times out, or the board stops it.
async fn supervise(
    board: Arc<Board>,
    mut child: tokio::process::Child,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut readers = tokio::task::JoinSet::new();
    if let Some(out) = child.stdout.take() {
        readers.spawn(forward(board.clone(), out));
    }
    if let Some(err) = child.stderr.take() {
        readers.spawn(forward(board.clone(), err));
    }
    let outcome = tokio::select! {
        status = child.wait() => status.ok().and_then(|s| s.code()),
        _ = tokio::time::sleep(DRILL_TIMEOUT) => {
            add_line(&board, format!("(stopped: still running after {} s)", DRILL_TIMEOUT.as_secs()));
            None
        }
        _ = stop => None,
    };
    let _ = child.kill().await;
    // The output pipes close with the process; what is left in them is still shown.
    while readers.join_next().await.is_some() {}
    let run = {
        let mut current = lock(&board.drills.current);
        let Some(run) = current.as_mut() else { return };
        run.state = if outcome == Some(0) {
            DrillState::Passed
        } else {
            DrillState::Failed
        };
        run.exit_code = outcome;
        run.ended_at = Some(unix_now_millis());
        run.clone()
    };
    lock(&board.drills.stop).take();
    board.record(
        run.state == DrillState::Passed,
        format!(
            "drill {}: {}",
            run.name,
            if run.state == DrillState::Passed {
                "PASS"
            } else {
                "FAIL"
            }
        ),
    );
    board.hub.set(&run);
    // The drill may have left the DLQ changed; the board did not look while it ran.
    board.dlq_dirty.notify_one();
}

async fn forward(board: Arc<Board>, stream: impl AsyncRead + Unpin) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        add_line(&board, strip_ansi(&line));
    }
}

fn add_line(board: &Board, line: String) {
    board.hub.send(&DrillLine(line.clone()));
    let mut current = lock(&board.drills.current);
    if let Some(run) = current.as_mut() {
        if run.lines.len() < LINES_KEPT {
            run.lines.push(line);
        }
        // Pages that open now get the output so far, without re-sending it to those open.
        board.hub.keep(&*run);
    }
}

/// A line as a page shows it: without terminal color codes (the services' logs, which the
/// idempotency drill greps and prints, are colored on a terminal).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... final byte in @..~
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// The settings a saga process started from the board (a drill script, `svc.sh start`) needs to
/// find the same broker, Redis, prefix and topology as the board: one list for both.
pub(super) fn saga_env(
    common: &saga_platform::service::config::Common,
) -> [(&'static str, &str); 8] {
    let topology = &common.topology;
    [
        ("RABBITMQ_URL", &common.rabbitmq_url),
        ("REDIS_URL", &common.redis_url),
        ("REDIS_PREFIX", &common.redis_prefix),
        ("EXCHANGE", &topology.exchange),
        ("INVENTORY_QUEUE", &topology.inventory_queue),
        ("ORDER_STATUS_QUEUE", &topology.order_status_queue),
        ("NOTIFICATION_QUEUE", &topology.notification_queue),
        ("DLQ_QUEUE", &topology.dlq_queue),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn color_codes_are_stripped() {
        assert_eq!(
            strip_ansi("\u{1b}[32mINFO\u{1b}[0m Reserved 3 burger"),
            "INFO Reserved 3 burger"
        );
        assert_eq!(strip_ansi("plain"), "plain");
    }
}
