//! Acknowledged means replicated: `saga_platform::redis::store::Redis` with `REDIS_MIN_REPLICAS=1` against a
//! real master and replica of the test's own, the replica reaching its master through a link the
//! test can cut ([`harness::partition`]). Seconds, not the minute a whole cluster takes.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use harness::eventually;
use harness::partition::Partition;
use harness::process::free_port;
use saga_platform::amqp::retry::is_outage;
use saga_platform::redis::replication::{MinReplicas, Replication};
use saga_platform::redis::store::Redis;

/// A redis-server on a free port (AOF on, like every Redis of this project), `args` added;
/// shut down and removed when dropped.
struct Server {
    port: u16,
    dir: PathBuf,
}

impl Server {
    fn start(args: &[&str]) -> anyhow::Result<Self> {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "saga-repl-{port}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)?;
        let status = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--daemonize",
                "yes",
            ])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .args(args)
            .status()?;
        anyhow::ensure!(status.success(), "redis-server did not start");
        Ok(Self { port, dir })
    }

    async fn info(&self) -> anyhow::Result<String> {
        harness::private::replication_info(self.port).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "shutdown", "nosave"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A master, and a replica linked to it through a relay that can be cut.
async fn master_and_replica() -> anyhow::Result<(Server, Server, Partition)> {
    let master = Server::start(&[])?;
    eventually("the master answers", Duration::from_secs(10), || async {
        master.info().await.map(|_| ()).map_err(|e| e.to_string())
    })
    .await?;
    let link = Partition::start(([127, 0, 0, 1], master.port).into()).await?;
    let replica = Server::start(&["--replicaof", "127.0.0.1", &link.addr.port().to_string()])?;
    eventually("the replica in sync", Duration::from_secs(15), || async {
        let info = replica.info().await.map_err(|e| e.to_string())?;
        if info.contains("master_link_status:up") {
            Ok(())
        } else {
            Err("link not up yet".into())
        }
    })
    .await?;
    Ok((master, replica, link))
}

fn waiting_for_one_replica(master: &Server) -> anyhow::Result<Redis> {
    saga_platform::redis::store::connect_with(
        &format!("redis://127.0.0.1:{}", master.port),
        Replication {
            min_replicas: MinReplicas::Exactly(1),
            wait_timeout: Duration::from_millis(300),
        },
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_no_replica_can_hear_is_never_acknowledged() -> anyhow::Result<()> {
    let (master, _replica, link) = master_and_replica().await?;
    let redis = waiting_for_one_replica(&master)?;
    let mut conn = redis.clone();

    // Healthy: many writes at once, each acknowledged (a few WAIT rounds cover them all).
    let writes = (0..50).map(|i| {
        let mut conn = redis.clone();
        async move {
            redis::cmd("SET")
                .arg(format!("k{i}"))
                .arg(i)
                .query_async::<()>(&mut conn)
                .await
        }
    });
    for written in futures_util::future::join_all(writes).await {
        written?;
    }

    link.cut();
    let refused = redis::cmd("SET")
        .arg("alone")
        .arg(1)
        .query_async::<()>(&mut conn)
        .await
        .expect_err("a write the replica cannot hear must not be acknowledged");
    let refused = anyhow::Error::new(refused);
    assert!(
        is_outage(&refused),
        "a WAIT timeout is an outage: {refused:#}"
    );
    assert!(format!("{refused:#}").contains("WAIT"), "{refused:#}");

    // A script that only reads (a duplicate finding an earlier attempt's record) on a fresh
    // handle: its WAIT must still cover what the master holds, so it too is refused.
    let fresh = waiting_for_one_replica(&master)?;
    let reread = redis::Script::new("return redis.call('GET', KEYS[1])")
        .key("alone")
        .invoke_async::<Option<String>>(&mut fresh.clone())
        .await;
    assert!(
        reread.is_err(),
        "a fresh connection's WAIT must cover earlier writes: {reread:?}"
    );

    // Reads never wait.
    let read: Option<String> = redis::cmd("GET").arg("k1").query_async(&mut conn).await?;
    assert_eq!(read.as_deref(), Some("1"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn one_redis_without_replicas_works_as_before() -> anyhow::Result<()> {
    let single = Server::start(&[])?;
    let redis =
        saga_platform::redis::store::connect(&format!("redis://127.0.0.1:{}", single.port))?;
    assert!(
        !redis.policy().is_on(),
        "auto means no WAIT with a plain URL"
    );
    eventually("a write", Duration::from_secs(10), || async {
        redis::cmd("SET")
            .arg("k")
            .arg("v")
            .query_async::<()>(&mut redis.clone())
            .await
            .map_err(|e| e.to_string())
    })
    .await?;
    assert_eq!(redis.readiness().await.as_deref(), Ok("up"));
    Ok(())
}
