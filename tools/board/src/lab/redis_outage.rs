//! Stop Redis for a few seconds, then start it again: the "Redis blips" drill.
//!
//! Stopping a Redis is only safe when it is the demo's own and keeps its data, so the board
//! refuses unless it was told it may (`--allow-redis-stop`, on top of `--allow-faults` on
//! loopback) and the Redis at `--redis-url` is on this machine, persists to an append-only
//! file and has no password. Before stopping it the board reads how it runs (`INFO server`,
//! `CONFIG GET`): its executable and config file, its port and addresses, where and how it
//! persists. `SHUTDOWN` flushes the AOF and closes the port; after the outage the same
//! executable starts again with those settings, finds its AOF and serves the same data.
//! Should the board itself be stopped during the outage, it starts Redis first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use saga_domain::events::unix_now_millis;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::{Board, lock};

/// The settings a restarted Redis must keep: where it listens and how it persists. Each is
/// passed on the command line, which overrides its config file.
const KEPT_SETTINGS: [&str; 13] = [
    "port",
    "bind",
    "dir",
    "dbfilename",
    "save",
    "appendonly",
    "appendfsync",
    "appendfilename",
    "appenddirname",
    "logfile",
    "protected-mode",
    "maxmemory",
    "maxmemory-policy",
];
/// Settings that take several values on one line.
const MULTI_VALUED: [&str; 2] = ["bind", "save"];
pub const MAX_SECONDS: u64 = 120;

/// An outage in progress.
#[derive(Debug, Clone, Serialize)]
pub struct Outage {
    pub stopped_at: u64,
    pub back_at: u64,
    /// The command that starts it again, as a person would type it.
    pub restart: String,
    #[serde(skip)]
    argv: Vec<String>,
    #[serde(skip)]
    cancel: CancellationToken,
}

#[derive(Default)]
pub struct RedisOutage {
    current: Mutex<Option<Outage>>,
}

/// Why Redis was not stopped.
#[derive(Debug, thiserror::Error)]
pub enum RedisStopError {
    #[error("stopping Redis is off: start the board with --allow-faults --allow-redis-stop")]
    NotAllowed,
    #[error("seconds must be between 1 and {MAX_SECONDS}, got {0}")]
    BadSeconds(u64),
    #[error("Redis is already stopped by the board; it is back at {0}")]
    AlreadyStopped(String),
    #[error("refusing to stop this Redis: {0}")]
    Unsafe(String),
    #[error("cannot stop Redis: {0}")]
    Failed(String),
}

impl RedisOutage {
    pub fn state(&self) -> Option<Outage> {
        lock(&self.current).clone()
    }

    /// End an outage now (the board is shutting down): Redis is started at once.
    pub async fn end_now(&self, board: &Board) {
        let outage = lock(&self.current).take();
        if let Some(outage) = outage {
            outage.cancel.cancel();
            restart(board, &outage).await;
        }
    }
}

/// Stop the board's Redis for `seconds`, then start it again.
///
/// # Errors
/// See [`RedisStopError`]: Redis was not stopped.
pub async fn stop_for(
    board: &std::sync::Arc<Board>,
    seconds: u64,
) -> Result<Outage, RedisStopError> {
    if !board.args.allow_redis_stop || board.faults_refused().is_some() {
        return Err(RedisStopError::NotAllowed);
    }
    if !(1..=MAX_SECONDS).contains(&seconds) {
        return Err(RedisStopError::BadSeconds(seconds));
    }
    if let Some(outage) = board.redis_outage.state() {
        return Err(RedisStopError::AlreadyStopped(sagactl::explain::utc(
            outage.back_at,
        )));
    }
    let url = &board.common.redis_url;
    let client =
        redis::Client::open(url.as_str()).map_err(|e| RedisStopError::Unsafe(e.to_string()))?;
    ensure_local(client.get_connection_info())?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| RedisStopError::Failed(format!("Redis does not answer: {e}")))?;
    let argv = restart_command(&mut conn).await?;

    // SHUTDOWN answers by closing the connection: an error (or no answer at all) is the
    // expected outcome; whether it worked is what the port says next.
    let _ = tokio::time::timeout(
        Duration::from_secs(3),
        redis::cmd("SHUTDOWN").query_async::<()>(&mut conn),
    )
    .await;
    wait_until(Duration::from_secs(10), || async {
        (!answers(&client).await).then_some(())
    })
    .await
    .ok_or_else(|| RedisStopError::Failed("Redis still answers after SHUTDOWN".into()))?;

    let now = unix_now_millis();
    let outage = Outage {
        stopped_at: now,
        back_at: now + seconds * 1000,
        restart: shell_words(&argv),
        argv,
        cancel: CancellationToken::new(),
    };
    *lock(&board.redis_outage.current) = Some(outage.clone());
    board.record(
        true,
        format!(
            "redis-cli -u {} shutdown  (back in {seconds} s)",
            saga_platform::service::config::redact_url(url)
        ),
    );
    let board = board.clone();
    let timer = outage.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(seconds)) => {}
            // Ended early: whoever cancelled restarts it.
            _ = timer.cancel.cancelled() => return,
        }
        let ours = lock(&board.redis_outage.current).take();
        if let Some(outage) = ours {
            restart(&board, &outage).await;
        }
    });
    Ok(outage)
}

/// Only a Redis on this machine: the board starts it again with a local command.
fn ensure_local(info: &redis::ConnectionInfo) -> Result<(), RedisStopError> {
    match info.addr() {
        redis::ConnectionAddr::Tcp(host, _) => {
            let local = host == "localhost"
                || host
                    .trim_matches(['[', ']'])
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if local {
                Ok(())
            } else {
                Err(RedisStopError::Unsafe(format!(
                    "{host} is not this machine: the board can only restart a local Redis"
                )))
            }
        }
        redis::ConnectionAddr::Unix(_) => Ok(()),
        _ => Err(RedisStopError::Unsafe(
            "a TLS Redis is not the demo's: refusing".into(),
        )),
    }
}

/// How to start this Redis again: its executable and config file, with every setting that
/// decides where it listens and how it persists. Refuses a Redis that would lose data or
/// needs a password.
async fn restart_command(
    conn: &mut redis::aio::MultiplexedConnection,
) -> Result<Vec<String>, RedisStopError> {
    let failed = |e: redis::RedisError| RedisStopError::Failed(e.to_string());
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(conn)
        .await
        .map_err(failed)?;
    let persistence: String = redis::cmd("INFO")
        .arg("persistence")
        .query_async(conn)
        .await
        .map_err(failed)?;
    let field = |text: &str, name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_owned())
    };
    if field(&persistence, "aof_enabled").as_deref() != Some("1") {
        return Err(RedisStopError::Unsafe(
            "it does not persist to an append-only file (appendonly no): stopping it would lose \
             every order"
                .into(),
        ));
    }
    let mut settings: HashMap<String, String> = HashMap::new();
    for name in KEPT_SETTINGS.iter().chain(&["requirepass"]) {
        let pair: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(*name)
            .query_async(conn)
            .await
            .map_err(failed)?;
        if let [key, value] = pair.as_slice() {
            settings.insert(key.clone(), value.clone());
        }
    }
    if settings.get("requirepass").is_some_and(|p| !p.is_empty()) {
        return Err(RedisStopError::Unsafe(
            "it has a password, which the board will not put on a command line".into(),
        ));
    }
    // Redis reports its executable as its argv[0] made absolute against its working
    // directory, which is wrong when it was started from the PATH: then use the PATH too.
    let executable = field(&info, "executable")
        .filter(|e| std::path::Path::new(e).is_file())
        .unwrap_or_else(|| "redis-server".into());
    let config_file = field(&info, "config_file").filter(|c| !c.is_empty());
    Ok(argv(&executable, config_file.as_deref(), &settings))
}

/// `redis-server [config file] --name value... --daemonize yes`.
fn argv(
    executable: &str,
    config_file: Option<&str>,
    settings: &HashMap<String, String>,
) -> Vec<String> {
    let mut argv = vec![executable.to_owned()];
    argv.extend(config_file.map(str::to_owned));
    for name in KEPT_SETTINGS {
        let Some(value) = settings.get(name) else {
            continue;
        };
        argv.push(format!("--{name}"));
        if MULTI_VALUED.contains(&name) && !value.is_empty() {
            argv.extend(value.split_whitespace().map(str::to_owned));
        } else {
            // One value, quoted by Redis itself: a path with spaces stays one path, and an empty
            // `save` stays "no snapshots".
            argv.push(value.clone());
        }
    }
    argv.extend(["--daemonize".to_owned(), "yes".to_owned()]);
    argv
}

/// Start Redis again and wait until it answers.
async fn restart(board: &Board, outage: &Outage) {
    let Some((program, args)) = outage.argv.split_first() else {
        return;
    };
    let started = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await;
    let url = board.common.redis_url.clone();
    let answered = match (&started, redis::Client::open(url.as_str())) {
        (Ok(out), Ok(client)) if out.status.success() => {
            wait_until(Duration::from_secs(15), || async {
                answers(&client).await.then_some(())
            })
            .await
            .is_some()
        }
        _ => false,
    };
    let why = match &started {
        Err(e) => format!(": {e}"),
        Ok(out) if !out.status.success() => {
            format!(": {}", String::from_utf8_lossy(&out.stderr).trim())
        }
        _ => String::new(),
    };
    board.record(
        answered,
        if answered {
            format!("{}  (Redis is back)", outage.restart)
        } else {
            format!(
                "{}  did not bring Redis back{why}; run it by hand",
                outage.restart
            )
        },
    );
}

/// Does Redis answer PING within a second?
async fn answers(client: &redis::Client) -> bool {
    let ping = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), ping).await,
        Ok(Ok(_))
    )
}

/// Poll `check` every 100 ms until it gives `Some`, or `None` after `timeout`.
async fn wait_until<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A command line as a person would type it.
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|word| {
            if !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,".contains(c))
            {
                word.clone()
            } else {
                format!("'{}'", word.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restart_keeps_where_it_listens_and_how_it_persists() {
        let settings: HashMap<String, String> = [
            ("port", "6390"),
            ("bind", "127.0.0.1 -::1"),
            ("dir", "/var/lib/my redis"),
            ("save", ""),
            ("appendonly", "yes"),
            ("appendfsync", "everysec"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let argv = argv("/usr/bin/redis-server", Some("/etc/redis.conf"), &settings);
        assert_eq!(
            argv,
            [
                "/usr/bin/redis-server",
                "/etc/redis.conf",
                "--port",
                "6390",
                "--bind",
                "127.0.0.1",
                "-::1",
                "--dir",
                "/var/lib/my redis",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--daemonize",
                "yes"
            ]
        );
        assert_eq!(shell_words(&argv[8..11]), "'/var/lib/my redis' --save ''");
    }

    #[test]
    fn only_a_local_redis_may_be_stopped() {
        let info = |url: &str| {
            redis::Client::open(url)
                .unwrap()
                .get_connection_info()
                .clone()
        };
        assert!(ensure_local(&info("redis://127.0.0.1:6379")).is_ok());
        assert!(ensure_local(&info("redis://localhost:6379")).is_ok());
        assert!(ensure_local(&info("redis://[::1]:6379")).is_ok());
        assert!(ensure_local(&info("redis://10.0.0.5:6379")).is_err());
    }
}
