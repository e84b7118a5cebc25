//! The cluster profile (`scripts/cluster.sh`: 3 RabbitMQ nodes, a quorum-default vhost, Redis
//! master + 2 replicas + 3 Sentinels, two inventory-svc) on private node names and ports.
//!
//! One profile is started for the whole story, because three Erlang VMs take most of a minute
//! on two cores: the lab's plain declares and drills work on it unchanged; the failover drill
//! loses the node leading `inventory_queue` and the Redis master and nothing is lost or
//! doubled; a cluster that loses its majority makes `/ready` say so. The same drill with `WAIT`
//! switched off is `#[ignore]`d: a demonstration, run by hand (see docs/SCALING.md).

mod drill;

use std::time::Duration;

use drill::Drill;
use harness::cluster::Cluster;
use harness::eventually;
use harness::process::bin_dir;
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};
use saga_platform::amqp::topology::Topology;

/// Enough for most of the drill's orders to be confirmed and the rest to fail on stock.
const STOCK: &str = "burger=600,pizza=500,sushi=300,salad=700";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cluster_profile_runs_the_lab_and_survives_a_failover() -> anyhow::Result<()> {
    let cluster = Cluster::up(
        "failover",
        &[("INITIAL_STOCK", STOCK), ("REDIS_PREFIX", drill::PREFIX)],
    )
    .await?;

    eprintln!("== lab compatibility: plain declares on the quorum vhost");
    plain_declares_get_no_406(&cluster).await?;
    eprintln!("== lab compatibility: scripts/lab/run_all.sh against the cluster profile");
    lab_drills_pass(&cluster).await?;

    eprintln!("== failover drill (WAIT on)");
    let report = drill::run(&cluster, Drill::default(), "failover drill").await?;
    eprintln!("{report}");
    let problems = report.problems();
    if !problems.is_empty() {
        // The test fails with an error, not a panic, so Drop would not show the story.
        cluster.dump_logs();
    }
    anyhow::ensure!(
        problems.is_empty(),
        "the failover drill failed: {problems:#?}"
    );
    anyhow::ensure!(
        report.partition_held,
        "Sentinel re-linked the replicas before the master died: the drill did not test WAIT"
    );

    eprintln!("== a Redis outage with connection churn dead-letters nothing valid");
    an_outage_with_churn_dead_letters_nothing(&cluster).await?;

    eprintln!("== a cluster without its majority: /ready says so");
    ready_says_when_the_quorum_is_lost(&cluster).await?;
    Ok(())
}

/// The same drill with `REDIS_MIN_REPLICAS=0`: what an acknowledged write is worth without
/// `WAIT` when the master dies cut off from its replicas. A demonstration: it prints what the
/// checker found and fails only if the drill could not be run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a demonstration (about 3 minutes): cargo test -p saga-tests --test it cluster:: -- --ignored"]
async fn without_wait_a_failover_takes_back_acknowledged_writes() -> anyhow::Result<()> {
    let cluster = Cluster::up(
        "nowait",
        &[
            ("INITIAL_STOCK", STOCK),
            ("REDIS_PREFIX", drill::PREFIX),
            ("REDIS_MIN_REPLICAS", "0"),
        ],
    )
    .await?;
    let report = drill::run(&cluster, Drill::default(), "failover drill, WAIT off").await?;
    eprintln!("{report}");
    eprintln!(
        "WAIT off: {} of {} orders answered 201 are gone; {} other problem(s): {:#?}",
        report.lost.len(),
        report.accepted.len(),
        report.problems().len(),
        report.problems()
    );
    Ok(())
}

/// A lab script's `queue_declare(name, durable=True)`, with no arguments, on a fresh channel
/// each time: accepted for all four queues, which are quorum queues here; an explicit classic
/// declare is what gets the 406.
async fn plain_declares_get_no_406(cluster: &Cluster) -> anyhow::Result<()> {
    let conn =
        saga_platform::amqp::connect_once(&cluster.setting("RABBITMQ_URL"), "lab script").await?;
    let topology = Topology::default();
    for queue in topology.queues() {
        for _ in 0..2 {
            let channel = conn.create_channel().await?;
            channel
                .queue_declare(
                    queue.into(),
                    QueueDeclareOptions::durable(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| anyhow::anyhow!("plain declare of {queue}: {e}"))?;
        }
        let info: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/queues/saga/{queue}", cluster.management(1)))
            .basic_auth("guest", Some("guest"))
            .send()
            .await?
            .json()
            .await?;
        anyhow::ensure!(
            info["type"] == "quorum",
            "{queue} is {} here, not a quorum queue",
            info["type"]
        );
    }
    let channel = conn.create_channel().await?;
    let mut classic = FieldTable::default();
    classic.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from(b"classic".to_vec())),
    );
    let refused = channel
        .queue_declare(
            topology.inventory_queue.as_str().into(),
            QueueDeclareOptions::durable(),
            classic,
        )
        .await;
    anyhow::ensure!(
        refused.as_ref().is_err_and(
            |e| e.to_string().contains("406") || e.to_string().contains("PRECONDITION_FAILED")
        ),
        "an explicit classic declare should be refused with 406: {refused:?}"
    );
    saga_platform::amqp::close_connection(&conn, 200, "done").await;
    Ok(())
}

/// `scripts/lab/run_all.sh` with the profile's settings (`scripts/cluster.sh env`).
async fn lab_drills_pass(cluster: &Cluster) -> anyhow::Result<()> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/lab/run_all.sh");
    let out = tokio::process::Command::new("bash")
        .arg(script)
        .envs(cluster.script_env())
        .envs(cluster.env.iter())
        .env("SAGACTL", bin_dir().join("sagactl"))
        .env("REDIS_PREFIX", drill::PREFIX)
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.contains("summary"))
        .collect();
    eprintln!("{}", summary.join("\n"));
    anyhow::ensure!(
        out.status.success(),
        "the lab drills failed on the cluster profile:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// More returns than the delivery limit the profile once had (20): each counted once per message.
const CHURNS: usize = 22;

/// While Redis refuses writes (an outage: waited out, never dead-lettered), inventory-svc holds
/// a few valid OrderPlaced unacked; it is restarted again and again, and a quorum queue counts
/// every return of those deliveries. With a delivery limit that counts such returns (20, as the
/// profile had), valid messages went to the DLQ; now they are all processed once Redis is back.
async fn an_outage_with_churn_dead_letters_nothing(cluster: &Cluster) -> anyhow::Result<()> {
    const ORDERS: usize = 6;
    let url = cluster.setting("RABBITMQ_URL");
    let topology = Topology::default();
    let tap = "churn-tap";
    let conn = saga_platform::amqp::connect_once(&url, "churn test").await?;
    let channel = conn.create_channel().await?;
    channel
        .queue_declare(
            tap.into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await?;
    for key in ["inventory.reserved", "inventory.failed"] {
        channel
            .queue_bind(
                tap.into(),
                topology.exchange.as_str().into(),
                key.into(),
                lapin::options::QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    // The lab drills left their poison in the DLQ: only what this phase adds counts.
    let dlq_before = saga_platform::amqp::depth(&conn.create_channel().await?, &topology.dlq_queue)
        .await?
        .messages;
    // The outage: every Redis node wants more replicas in sync than there are, so the master
    // refuses every write (NOREPLICAS) while reads and connections work.
    set_min_replicas(cluster, 5).await?;
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await?;
    for i in 0..ORDERS {
        // The lab's flat OrderPlaced, a wire sample as its producer sends it.
        let body = serde_json::json!({
            "order_id": format!("churn-{i}"), "item": "salad", "qty": 1, "status": "PLACED"
        });
        let confirm = channel
            .basic_publish(
                topology.exchange.as_str().into(),
                "order.placed".into(),
                lapin::options::BasicPublishOptions::default(),
                body.to_string().as_bytes(),
                lapin::BasicProperties::default(),
            )
            .await?
            .await?;
        anyhow::ensure!(confirm.is_ack(), "publish not confirmed");
    }
    saga_platform::amqp::close_connection(&conn, 200, "published").await;

    let inventories = &cluster.service_urls()[1..3];
    for churn in 1..=CHURNS {
        // Every message held unacked by the inventory-svc instances (none ready) ...
        eventually(
            "the orders held by inventory-svc",
            Cluster::SETTLE,
            || async {
                let depth = inventory_depth(&url, &topology)
                    .await
                    .map_err(|e| e.to_string())?;
                if depth.messages == 0 && depth.consumers == 2 {
                    Ok(())
                } else {
                    Err(format!("{depth:?}"))
                }
            },
        )
        .await?;
        // ... and returned when the broker closes their connections: one more delivery for
        // each, on the broker's count. Both instances say they reconnected.
        let before = reconnects(inventories).await?;
        close_every_connection(cluster).await?;
        eventually(
            "both inventory-svc reconnected",
            Cluster::SETTLE,
            || async {
                let now = reconnects(inventories).await.map_err(|e| e.to_string())?;
                if now >= before + 2.0 {
                    Ok(())
                } else {
                    Err(format!("churn {churn}: {before} -> {now}"))
                }
            },
        )
        .await?;
    }
    set_min_replicas(cluster, 1).await?;

    let conn = saga_platform::amqp::connect_once(&url, "churn test").await?;
    let channel = conn.create_channel().await?;
    eventually("an outcome for every order", Cluster::SETTLE, || async {
        match saga_platform::amqp::depth(&channel, tap).await {
            Ok(d) if d.messages as usize >= ORDERS => Ok(()),
            other => {
                let dlq = saga_platform::amqp::depth(&channel, &topology.dlq_queue).await;
                Err(format!(
                    "outcomes {other:?}; DLQ (had {dlq_before}) {dlq:?}"
                ))
            }
        }
    })
    .await?;
    let dlq =
        saga_platform::amqp::depth(&conn.create_channel().await?, &topology.dlq_queue).await?;
    anyhow::ensure!(
        dlq.messages == dlq_before,
        "{} valid message(s) dead-lettered by the outage and its churn",
        dlq.messages.saturating_sub(dlq_before)
    );
    saga_platform::amqp::close_connection(&conn, 200, "checked").await;
    Ok(())
}

async fn inventory_depth(
    url: &str,
    topology: &Topology,
) -> anyhow::Result<saga_platform::amqp::Depth> {
    let conn = saga_platform::amqp::connect_once(url, "churn test").await?;
    let depth =
        saga_platform::amqp::depth(&conn.create_channel().await?, &topology.inventory_queue).await;
    saga_platform::amqp::close_connection(&conn, 200, "looked").await;
    depth
}

/// How many times the inventory-svc instances have reconnected, in all.
async fn reconnects(urls: &[String]) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for url in urls {
        let page = reqwest::get(format!("{url}/metrics")).await?.text().await?;
        total += harness::http::metric(&page, "saga_reconnects_total", &[]);
    }
    Ok(total)
}

/// `rabbitmqctl close_all_connections` for the profile's vhost, on each of its nodes.
async fn close_every_connection(cluster: &Cluster) -> anyhow::Result<()> {
    let closes = (1..=3).map(|i| {
        tokio::process::Command::new("rabbitmqctl")
            .args(["-q", "-n", &format!("{}-rabbit{i}@localhost", cluster.name)])
            .args(["close_all_connections", "-p", "saga", "churn test"])
            .output()
    });
    for out in futures_util::future::join_all(closes).await {
        let out = out?;
        anyhow::ensure!(
            out.status.success(),
            "close_all_connections: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// `CONFIG SET min-replicas-to-write n` on every Redis node of the profile (whichever is master).
async fn set_min_replicas(cluster: &Cluster, n: u32) -> anyhow::Result<()> {
    for i in 1..=3 {
        let mut conn = redis::Client::open(format!("redis://127.0.0.1:{}", cluster.redis_port(i)))?
            .get_multiplexed_async_connection()
            .await?;
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("min-replicas-to-write")
            .arg(n)
            .query_async(&mut conn)
            .await?;
    }
    Ok(())
}

/// Kill two of the three RabbitMQ nodes: the third pauses (pause_minority) and every queue
/// has lost its quorum; order-svc's `/ready` answers 503 and says why. Then both come back.
async fn ready_says_when_the_quorum_is_lost(cluster: &Cluster) -> anyhow::Result<()> {
    let ready = format!("{}/ready", cluster.service_urls()[0]);
    cluster.kill("rabbit2").await?;
    cluster.kill("rabbit3").await?;
    let http = reqwest::Client::new();
    let detail = eventually(
        "/ready to say the broker is gone",
        Duration::from_secs(60),
        || async {
            let r = http.get(&ready).send().await.map_err(|e| e.to_string())?;
            let status = r.status().as_u16();
            let v: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
            let detail = v["checks"]["broker_detail"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            if status == 503
                && v["checks"]["broker"] == "down"
                && detail.contains("none of the 3 nodes")
            {
                Ok(detail)
            } else {
                Err(format!("{status} {v}"))
            }
        },
    )
    .await?;
    eprintln!("/ready without a majority: 503, broker_detail: {detail}");
    let (two, three) = tokio::join!(cluster.start("rabbit2"), cluster.start("rabbit3"));
    two?;
    three?;
    eventually(
        "/ready once the majority is back",
        Cluster::SETTLE,
        || async {
            match http.get(&ready).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(r.status().to_string()),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_node_list_or_sentinel_url_exits_with_one_readable_line() -> anyhow::Result<()>
{
    for (bin, var, value, says) in [
        (
            "order-svc",
            "RABBITMQ_URL",
            "amqp://guest:secret@h1:5672/v,,amqp://guest:secret@h2:5672/v",
            "node 2 of 3 is empty",
        ),
        (
            "inventory-svc",
            "RABBITMQ_URL",
            "amqp://guest:secret@h1/v,http://guest:secret@h2/v",
            "node 2 of 2",
        ),
        (
            "notification-svc",
            "RABBITMQ_URL",
            "amqp://h1:5672/a,amqp://h2:5672/b",
            "same vhost",
        ),
        (
            "sagactl",
            "RABBITMQ_URL",
            "amqp://h1:5672/v,amqp://h1:5672/v",
            "repeats node 1",
        ),
        (
            "order-svc",
            "REDIS_URL",
            "redis+sentinel://:secret@h1:26379,h2:x/saga",
            "Sentinel 2: port",
        ),
        (
            "inventory-svc",
            "REDIS_URL",
            "redis+sentinel://h1:26379,h2:26379",
            "names no master",
        ),
        ("notification-svc", "REDIS_MIN_REPLICAS", "many", "auto"),
        ("order-svc", "REDIS_WAIT_TIMEOUT", "0s", "10ms to 10s"),
    ] {
        let mut cmd = std::process::Command::new(bin_dir().join(bin));
        cmd.env(var, value).env("HTTP_ADDR", "127.0.0.1:0");
        if bin == "sagactl" {
            cmd.arg("queues");
        }
        let out = cmd.output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bin} {var}={value}: {stderr}");
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{bin} {var}={value}: {stderr}"
        );
        assert!(stderr.contains(says), "{bin} {var}={value}: {stderr}");
        assert!(
            !stderr.contains("secret"),
            "{bin} leaked a password: {stderr}"
        );
    }
    Ok(())
}
