//! Dependencies a fault test owns: a private redis-server and a private RabbitMQ node, on free
//! ports, in temporary directories. A test breaks only what it started.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::eventually;
use crate::process::free_port;

fn temp_dir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn port_open(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

/// `INFO replication` of the Redis on `port` (role, replicas, link status): how a test tells a
/// master from a replica and whether they are in touch.
///
/// # Errors
/// That Redis does not answer.
pub async fn replication_info(port: u16) -> anyhow::Result<String> {
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}"))?
        .get_multiplexed_async_connection()
        .await?;
    Ok(redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut conn)
        .await?)
}

/// The project's one way of running redis-server (settings in `deploy/redis.conf`), shared with
/// `scripts/deps.sh`: a private Redis is started exactly as the demo's is.
fn redis_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scripts")
        .join("redis-server.sh")
}

/// Run `scripts/redis-server.sh ARGS`; its one-line error becomes the error.
async fn run_redis_script(args: &[&OsStr]) -> anyhow::Result<()> {
    let script = redis_script();
    let out = tokio::process::Command::new("bash")
        .arg(&script)
        .args(args)
        .output()
        .await
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "{} {}: {}",
        script.display(),
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// A redis-server of the test's own, started like the demo's (`scripts/redis-server.sh`: AOF,
/// fsync every second), so a restart, even after [`PrivateRedis::kill9`], keeps what it answered.
pub struct PrivateRedis {
    pub port: u16,
    dir: PathBuf,
}

impl PrivateRedis {
    /// # Errors
    /// redis-server missing or not answering.
    pub async fn start() -> anyhow::Result<Self> {
        let me = Self {
            port: free_port(),
            dir: temp_dir("saga-redis")?,
        };
        me.up().await?;
        Ok(me)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Start (or start again) on the same port and data directory; returns once it answers PONG,
    /// its append-only file loaded.
    ///
    /// # Errors
    /// The script failed (its error line says why), e.g. no answer within 30 s.
    pub async fn up(&self) -> anyhow::Result<()> {
        let port = self.port.to_string();
        run_redis_script(&["start".as_ref(), port.as_ref(), self.dir.as_os_str()]).await
    }

    /// Shut it down (flushing its append-only file) and wait until it is gone.
    ///
    /// # Errors
    /// It did not go away within 30 s.
    pub async fn down(&self) -> anyhow::Result<()> {
        let port = self.port.to_string();
        run_redis_script(&["stop".as_ref(), port.as_ref()]).await
    }

    /// Kill it with SIGKILL, as a crash would (no shutdown, no last flush), and wait until its
    /// port is closed. [`PrivateRedis::up`] starts it again from its append-only file.
    ///
    /// # Errors
    /// No pid file (it is not running), `kill` failed, or the port stayed open for 10 s.
    pub async fn kill9(&self) -> anyhow::Result<()> {
        let pidfile = self.dir.join("redis.pid");
        let pid = std::fs::read_to_string(&pidfile)
            .with_context(|| format!("reading {} (is it running?)", pidfile.display()))?;
        let pid = pid.trim();
        // A positive number only: 0 or -1 would signal a whole process group, or everything.
        let pid = pid
            .parse::<i32>()
            .ok()
            .filter(|pid| *pid > 0)
            .with_context(|| format!("{} holds {pid:?}, not a pid", pidfile.display()))?;
        kill(Pid::from_raw(pid), Signal::SIGKILL)
            .with_context(|| format!("kill -9 {pid} failed"))?;
        let port = self.port;
        eventually(
            "private redis killed",
            Duration::from_secs(10),
            || async move {
                if port_open(port).await {
                    Err("still open".into())
                } else {
                    Ok(())
                }
            },
        )
        .await
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        // No waiting in a destructor: a throwaway server needs no orderly stop.
        let _ = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "shutdown", "nosave"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A RabbitMQ node of the test's own (unique node name, ports and data directory).
pub struct PrivateBroker {
    pub port: u16,
    pub node: String,
    dir: PathBuf,
}

impl PrivateBroker {
    /// Start the node and wait until AMQP answers (about 10-15 s).
    ///
    /// # Errors
    /// rabbitmq-server missing or the node did not come up.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = temp_dir("saga-rabbit")?;
        std::fs::write(dir.join("enabled_plugins"), "[].")?;
        let _ = Command::new("chown")
            .arg("-R")
            .arg("rabbitmq:rabbitmq")
            .arg(&dir)
            .status();
        let port = free_port();
        let node = format!(
            "saga{}@localhost",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let status = Command::new("rabbitmq-server")
            .arg("-detached")
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", free_port().to_string())
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_PID_FILE", dir.join("pid"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .status()?;
        anyhow::ensure!(status.success(), "rabbitmq-server -detached failed");
        let me = Self { port, node, dir };
        me.wait_open(Duration::from_secs(60)).await?;
        Ok(me)
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    async fn wait_open(&self, timeout: Duration) -> anyhow::Result<()> {
        let port = self.port;
        eventually("private broker accepting AMQP", timeout, || async move {
            if port_open(port).await {
                Ok(())
            } else {
                Err("port closed".into())
            }
        })
        .await
    }

    fn ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        let out = Command::new("rabbitmqctl")
            .arg("-n")
            .arg(&self.node)
            .args(args)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "rabbitmqctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Stop the broker application (the node stays): every connection drops, the port closes.
    ///
    /// # Errors
    /// rabbitmqctl failed.
    pub fn stop_app(&self) -> anyhow::Result<()> {
        self.ctl(&["stop_app"])
    }

    /// Start it again and wait for AMQP.
    ///
    /// # Errors
    /// rabbitmqctl failed or the port did not open.
    pub async fn start_app(&self) -> anyhow::Result<()> {
        self.ctl(&["start_app"])?;
        self.wait_open(Duration::from_secs(60)).await
    }
}

impl PrivateBroker {
    /// Raise (or clear) a memory alarm: while raised, the broker blocks every publisher.
    ///
    /// # Errors
    /// rabbitmqctl failed.
    pub fn set_memory_alarm(&self, raised: bool) -> anyhow::Result<()> {
        let watermark = if raised { "0.000001" } else { "0.4" };
        self.ctl(&["set_vm_memory_high_watermark", watermark])
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = self.ctl(&["stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Close every client connection of `vhost` from the broker's side, as an operator would
/// (`rabbitmqctl close_all_connections`); the services must notice and reconnect by themselves.
///
/// # Errors
/// rabbitmqctl failed.
pub fn close_all_connections(vhost: &str) -> anyhow::Result<()> {
    let out = Command::new("rabbitmqctl")
        .args([
            "close_all_connections",
            "-p",
            vhost,
            "fault test: closing every connection",
        ])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "rabbitmqctl close_all_connections: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
