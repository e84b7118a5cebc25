//! The failover drill: orders at a fixed rate through the cluster profile while it loses the
//! RabbitMQ node leading `inventory_queue`, then (cut off from its replicas) the Redis master;
//! both come back. Then the checks: every order that got a 201 exists and is final, the
//! invariant checker passes, the outbox is empty, and the services' counters show they saw
//! both faults.
//!
//! The schedule is random but seeded (`FAULT_SEED`), printed with the results. The Redis fault
//! is a partition followed by a crash ([`harness::partition`]), because a crash alone on one
//! machine loses nothing (the kernel delivers what the dead master had written): it is the
//! master answering while its replicas cannot hear it that `WAIT` exists for.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use lapin::BasicProperties;
use saga_client::{Answer, OrderClient, order_body};
use saga_platform::amqp::topology::Topology;
use saga_platform::redis::store::Keys;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use fastrand::Rng;
use harness::cluster::Cluster;
use harness::eventually;
use harness::http::metric;
use harness::load::fault_rng;
use harness::partition::Partition;

/// Items the drill orders, all four of the default stock.
const ITEMS: [&str; 4] = ["burger", "pizza", "sushi", "salad"];
/// Redis key prefix of the drill's services.
pub const PREFIX: &str = "drill";
/// How long the master answers writes its replicas cannot hear before it dies.
const PARTITION: Duration = Duration::from_millis(1500);
/// The service names, in the order of [`Cluster::service_urls`].
const SERVICES: [&str; 4] = [
    "order-svc",
    "inventory-svc",
    "inventory-svc-2",
    "notification-svc",
];

/// The drill's shape.
#[derive(Debug, Clone, Copy)]
pub struct Drill {
    pub orders: usize,
    /// Orders started per second.
    pub rate: u32,
    /// Percent of accepted orders cancelled a moment later.
    pub cancel_percent: u64,
    /// Percent of accepted orders whose OrderPlaced is also published raw, a second time.
    pub duplicate_percent: u64,
}

impl Default for Drill {
    fn default() -> Self {
        Self {
            orders: 1000,
            // 25 s of orders: the faults (a broker node down and back, about 10 s; then the
            // Redis partition and crash, about 4 s) land well inside it.
            rate: 40,
            cancel_percent: 5,
            duplicate_percent: 3,
        }
    }
}

/// What the drill saw.
#[derive(Debug, Default)]
pub struct DrillReport {
    pub seed: u64,
    /// What happened when, relative to the first order.
    pub schedule: Vec<String>,
    /// Ids answered 201.
    pub accepted: Vec<String>,
    /// Answers other than 201 (and connection errors) on the way, each retried.
    pub refused: usize,
    pub cancels: usize,
    pub duplicates: usize,
    pub check: sagactl::check::Report,
    /// Orders that got a 201 and are absent (lost) or not final.
    pub lost: Vec<String>,
    pub not_final: Vec<String>,
    /// Reservations for orders order-svc does not know (the lab drills' hand-published
    /// `lab-*` orders aside): stock held for an order that a failover erased.
    pub ghosts: Vec<String>,
    pub outbox_left: u64,
    /// The services' broker connections on the killed node when it died.
    pub connections_on_killed_node: usize,
    /// New broker connections the services made during the drill.
    pub broker_reconnects: f64,
    /// Per service: how often it followed the Redis master to a new address.
    pub master_changes: Vec<(String, f64)>,
    /// Whether the replicas were still cut off when the master died (false: Sentinel put them
    /// back on the master first, and the partition tested nothing).
    pub partition_held: bool,
    /// What order-svc's `/ready` said while it was not ready: (from, to, why), in seconds.
    pub not_ready: Vec<(f64, f64, String)>,
}

impl DrillReport {
    /// Everything that makes the drill a failure; empty when it passed.
    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = self.check.violations.clone();
        if !self.lost.is_empty() {
            problems.push(format!(
                "{} order(s) answered 201 are gone: {:?}",
                self.lost.len(),
                &self.lost[..self.lost.len().min(5)]
            ));
        }
        if !self.not_final.is_empty() {
            problems.push(format!(
                "{} order(s) answered 201 are not final: {:?}",
                self.not_final.len(),
                &self.not_final[..self.not_final.len().min(5)]
            ));
        }
        if !self.ghosts.is_empty() {
            problems.push(format!(
                "{} reservation(s) for orders order-svc does not know: {:?}",
                self.ghosts.len(),
                &self.ghosts[..self.ghosts.len().min(5)]
            ));
        }
        if self.outbox_left > 0 {
            problems.push(format!("{} event(s) left in the outbox", self.outbox_left));
        }
        if self.broker_reconnects < self.connections_on_killed_node as f64 {
            problems.push(format!(
                "{} connection(s) were on the killed node but the services reconnected only {} time(s)",
                self.connections_on_killed_node, self.broker_reconnects
            ));
        }
        for (service, changes) in &self.master_changes {
            if *changes < 1.0 {
                problems.push(format!(
                    "{service} never followed the Redis master to its new address"
                ));
            }
        }
        if !self
            .not_ready
            .iter()
            .any(|(_, _, why)| why.contains("redis down"))
        {
            problems
                .push("order-svc's /ready never said Redis was down during the failover".into());
        }
        problems
    }
}

impl std::fmt::Display for DrillReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "seed {} (rerun with FAULT_SEED={})",
            self.seed, self.seed
        )?;
        writeln!(f, "schedule:")?;
        for line in &self.schedule {
            writeln!(f, "  {line}")?;
        }
        writeln!(
            f,
            "orders: {} accepted (201), {} refused answers on the way (retried), {} cancels, {} raw duplicates",
            self.accepted.len(),
            self.refused,
            self.cancels,
            self.duplicates
        )?;
        writeln!(
            f,
            "201 orders lost: {}, not final: {}; reservations without an order: {}; outbox left: {}",
            self.lost.len(),
            self.not_final.len(),
            self.ghosts.len(),
            self.outbox_left
        )?;
        writeln!(
            f,
            "broker: {} service connection(s) on the killed node, {} reconnect(s); partition held until the kill: {}",
            self.connections_on_killed_node, self.broker_reconnects, self.partition_held
        )?;
        let changes: Vec<String> = self
            .master_changes
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect();
        writeln!(f, "Redis master changes seen: {}", changes.join(", "))?;
        writeln!(f, "order-svc /ready while not ready:")?;
        for (from, to, why) in &self.not_ready {
            writeln!(f, "  {from:>6.1} s to {to:>6.1} s  {why}")?;
        }
        write!(f, "checker:\n{}", self.check)
    }
}

/// A clock for the schedule, and the schedule itself.
#[derive(Clone)]
struct Log {
    started: Instant,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Log {
    fn note(&self, what: impl std::fmt::Display) {
        self.note_at(self.now(), what);
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Note something that happened at `at` (a fault is noted once its command returned, but
    /// happened when it was started).
    fn note_at(&self, at: Duration, what: impl std::fmt::Display) {
        let line = format!("{:>6.1} s  {what}", at.as_secs_f64());
        eprintln!("drill: {line}");
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
    }

    async fn until(&self, at: Duration) {
        tokio::time::sleep_until((self.started + at).into()).await;
    }
}

/// Run the drill against `cluster`, whose services use Redis prefix [`PREFIX`].
///
/// # Errors
/// The drill could not be carried out (a node would not come back, the checker could not
/// read); broken invariants are in the report, not errors.
pub async fn run(cluster: &Cluster, drill: Drill, test: &str) -> anyhow::Result<DrillReport> {
    let mut rng = fault_rng(test);
    let seed = rng.u64(1..);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let urls = cluster.service_urls();
    let before = metrics(&http, &urls).await?;
    let log = Log {
        started: Instant::now(),
        lines: Arc::new(Mutex::new(Vec::new())),
    };
    log.note(format!(
        "start: {} orders at {}/s over {ITEMS:?}, ~{}% cancelled, ~{}% published twice",
        drill.orders, drill.rate, drill.cancel_percent, drill.duplicate_percent
    ));
    let load = tokio::spawn(load(
        urls[0].clone(),
        cluster.setting("RABBITMQ_URL"),
        drill,
        Rng::with_seed(rng.u64(1..)),
        log.clone(),
    ));
    let watching = tokio_util::sync::CancellationToken::new();
    let readiness = tokio::spawn(watch_readiness(
        http.clone(),
        urls[0].clone(),
        log.started,
        watching.clone(),
    ));
    let faults = faults(cluster, &mut rng, &log).await;
    let outcome = load.await.context("the load task")?;
    watching.cancel();
    let not_ready = readiness.await.context("the /ready watcher")?;
    log.note(format!(
        "load done: {} accepted, {} refused answers retried",
        outcome.accepted.len(),
        outcome.refused
    ));
    let faults = faults?;

    let redis_url = cluster.setting("REDIS_URL");
    let amqp_url = cluster.setting("RABBITMQ_URL");
    let check = sagactl::check::check(
        &redis_url,
        PREFIX,
        &amqp_url,
        &Topology::default(),
        Cluster::SETTLE,
    )
    .await?;
    log.note(format!(
        "checker done: {} violation(s)",
        check.violations.len()
    ));
    let (lost, not_final) = accepted_orders_state(&redis_url, &outcome.accepted).await?;
    let ghosts = reservations_without_orders(&redis_url).await?;
    let outbox_left = outbox_when_drained(&redis_url).await?;
    let after = metrics(&http, &urls).await?;
    let counter = |pages: &[String], i: usize, name: &str| metric(&pages[i], name, &[]);
    let broker_reconnects = (0..urls.len())
        .map(|i| {
            counter(&after, i, "saga_broker_connects_total")
                - counter(&before, i, "saga_broker_connects_total")
        })
        .sum();
    let master_changes = SERVICES
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let name = "saga_redis_master_changes_total";
            (
                (*s).to_owned(),
                counter(&after, i, name) - counter(&before, i, name),
            )
        })
        .collect();
    let schedule = log.lines.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(DrillReport {
        seed,
        schedule,
        accepted: outcome.accepted,
        refused: outcome.refused,
        cancels: outcome.cancels,
        duplicates: outcome.duplicates,
        check,
        lost,
        not_final,
        ghosts,
        outbox_left,
        connections_on_killed_node: faults.connections_on_killed_node,
        broker_reconnects,
        master_changes,
        partition_held: faults.partition_held,
        not_ready,
    })
}

/// Poll `/ready` every 250 ms until `done`; the spells it was not ready, merged by reason.
async fn watch_readiness(
    http: reqwest::Client,
    base: String,
    started: Instant,
    done: tokio_util::sync::CancellationToken,
) -> Vec<(f64, f64, String)> {
    let mut spells: Vec<(f64, f64, String)> = Vec::new();
    while !done.is_cancelled() {
        let at = started.elapsed().as_secs_f64();
        let answer = http.get(format!("{base}/ready")).send().await;
        let why = match answer {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => {
                let v: Value = r.json().await.unwrap_or_default();
                let part = |name: &str| {
                    (v["checks"][name] != "up").then(|| {
                        format!(
                            "{name} down: {}",
                            v["checks"][format!("{name}_detail")]
                                .as_str()
                                .unwrap_or("?")
                        )
                    })
                };
                Some(
                    [part("broker"), part("redis")]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            }
            Err(e) => Some(format!("no answer: {e}")),
        };
        if let Some(why) = why {
            // Details carry addresses and timings: merge spells by their first words.
            let key: String = why.chars().take(40).collect();
            match spells.last_mut() {
                Some((_, to, last)) if last.chars().take(40).collect::<String>() == key => *to = at,
                _ => spells.push((at, at, why)),
            }
        }
        tokio::select! {
            _ = done.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
    spells
}

/// Each service's `/metrics` page, in [`Cluster::service_urls`] order.
async fn metrics(http: &reqwest::Client, urls: &[String]) -> anyhow::Result<Vec<String>> {
    let mut pages = Vec::new();
    for url in urls {
        let page = http
            .get(format!("{url}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        pages.push(page);
    }
    Ok(pages)
}

// --- the load ----------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct LoadOutcome {
    accepted: Vec<String>,
    refused: usize,
    cancels: usize,
    duplicates: usize,
}

/// One order, and what may follow it.
struct Plan {
    item: &'static str,
    qty: u64,
    cancel_after: Option<Duration>,
    duplicate: bool,
}

/// `drill.orders` orders at `drill.rate` per second, each retried until accepted (as a client
/// would: a 503 says "come back"), some cancelled, some published again raw.
async fn load(
    order_url: String,
    amqp_url: String,
    drill: Drill,
    mut rng: Rng,
    log: Log,
) -> LoadOutcome {
    let client = OrderClient::new(&order_url, Duration::from_secs(10));
    let in_flight = Arc::new(Semaphore::new(128));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(drill.rate)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut orders = JoinSet::new();
    for _ in 0..drill.orders {
        tick.tick().await;
        let plan = Plan {
            item: ITEMS[rng.usize(..ITEMS.len())],
            qty: rng.u64(1..4),
            cancel_after: (rng.u64(0..100) < drill.cancel_percent)
                .then(|| Duration::from_millis(rng.u64(0..800))),
            duplicate: rng.u64(0..100) < drill.duplicate_percent,
        };
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let (client, amqp_url) = (client.clone(), amqp_url.clone());
        orders.spawn(async move {
            let _permit = permit;
            one_order(&client, &amqp_url, plan).await
        });
    }
    let mut total = LoadOutcome::default();
    while let Some(done) = orders.join_next().await {
        match done {
            Ok(one) => {
                total.accepted.extend(one.accepted);
                total.refused += one.refused;
                total.cancels += one.cancels;
                total.duplicates += one.duplicates;
            }
            Err(e) => log.note(format!("an order task failed: {e}")),
        }
    }
    total
}

async fn one_order(client: &OrderClient, amqp_url: &str, plan: Plan) -> LoadOutcome {
    let mut outcome = LoadOutcome::default();
    let body = Bytes::from(order_body(plan.item, plan.qty as i64, "drill").to_string());
    let deadline = Instant::now() + Duration::from_secs(120);
    let id = loop {
        match client.post(body.clone()).await {
            Answer::Accepted(id) => break id,
            _ => outcome.refused += 1,
        }
        if Instant::now() > deadline {
            return outcome;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    outcome.accepted.push(id.clone());
    if plan.duplicate {
        // The lab's flat OrderPlaced, a wire sample as its producer sends it.
        let raw = json!({"order_id": id, "item": plan.item, "qty": plan.qty,
                         "student_id": "drill", "status": "PLACED"});
        if publish_raw(amqp_url, raw.to_string().as_bytes()).await {
            outcome.duplicates += 1;
        }
    }
    if let Some(after) = plan.cancel_after {
        tokio::time::sleep(after).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match client.cancel(&id, "drill").await {
                // Started, or not cancellable any more (already failed): either way decided.
                Ok((202 | 409, _)) => {
                    outcome.cancels += 1;
                    break;
                }
                // The order is gone: a lost write, which the checks report; asking again
                // will not bring it back.
                Ok((404, _)) => break,
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    outcome
}

/// Publish `body` as a bare `order.placed` (no properties, as pika would), confirmed, retrying
/// for up to a minute through whatever node answers.
async fn publish_raw(amqp_url: &str, body: &[u8]) -> bool {
    let topology = Topology::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let sent = async {
            let conn = saga_platform::amqp::connect_once(amqp_url, "drill duplicate").await?;
            let publisher = saga_platform::amqp::Publisher::open(&conn).await?;
            let published = publisher
                .publish(
                    &topology.exchange,
                    "order.placed",
                    body,
                    BasicProperties::default(),
                )
                .await;
            saga_platform::amqp::close_connection(&conn, 200, "done").await;
            published.map_err(anyhow::Error::from)
        };
        if sent.await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    false
}

// --- the faults --------------------------------------------------------------------------------

struct FaultsOutcome {
    connections_on_killed_node: usize,
    partition_held: bool,
}

/// Kill the RabbitMQ node leading `inventory_queue` and bring it back; once it is back, cut the
/// Redis master off from its replicas, kill it, and bring it back. One after the other, so that
/// the broker is whole while the master is alone: a front door held back by a struggling broker
/// (503 busy) would take fewer orders during the partition and test less. Times from `rng`.
async fn faults(cluster: &Cluster, rng: &mut Rng, log: &Log) -> anyhow::Result<FaultsOutcome> {
    let rabbit_kill_at = Duration::from_millis(rng.u64(2_000..3_500));
    let rabbit_down_for = Duration::from_millis(rng.u64(2_000..4_000));
    let redis_fault_after = Duration::from_millis(rng.u64(500..2_000));

    log.until(rabbit_kill_at).await;
    let (rabbit, node_name) = leader_of(cluster, "inventory_queue").await?;
    let connections = connections_on(cluster, &node_name).await?;
    let at = log.now();
    cluster.kill(&rabbit).await?;
    log.note_at(at, format!(
        "kill -9 {rabbit} ({node_name}), leader of inventory_queue; {connections} service connection(s) on it"
    ));
    log.until(rabbit_kill_at + rabbit_down_for).await;
    log.note(format!("starting {rabbit} again"));
    cluster.start(&rabbit).await?;
    log.note(format!("{rabbit} is back in the cluster"));
    tokio::time::sleep(redis_fault_after).await;
    let partition_held = redis_partition_then_crash(cluster, log).await?;
    Ok(FaultsOutcome {
        connections_on_killed_node: connections,
        partition_held,
    })
}

/// The node leading `queue` in vhost `saga`: (`rabbitN`, its Erlang node name).
async fn leader_of(cluster: &Cluster, queue: &str) -> anyhow::Result<(String, String)> {
    let http = reqwest::Client::new();
    for i in 1..=3 {
        let url = format!("{}/queues/saga/{queue}", cluster.management(i));
        let Ok(r) = http
            .get(&url)
            .basic_auth("guest", Some("guest"))
            .send()
            .await
        else {
            continue;
        };
        let v: Value = r.json().await.unwrap_or_default();
        if let Some(leader) = v["leader"].as_str() {
            let n = (1..=3)
                .find(|n| leader == format!("{}-rabbit{n}@localhost", cluster.name))
                .context("the leader is not one of our nodes")?;
            return Ok((format!("rabbit{n}"), leader.to_owned()));
        }
    }
    anyhow::bail!("no node says who leads {queue}")
}

/// How many of the services' connections (named `*-svc*` by the client) are on `node`.
async fn connections_on(cluster: &Cluster, node: &str) -> anyhow::Result<usize> {
    // `name` is the addresses; the name a client gives its connection is `user_provided_name`.
    let url = format!(
        "{}/connections?columns=node,user_provided_name",
        cluster.management(1)
    );
    let list: Vec<Value> = reqwest::Client::new()
        .get(&url)
        .basic_auth("guest", Some("guest"))
        .send()
        .await?
        .json()
        .await?;
    Ok(list
        .iter()
        .filter(|c| c["node"] == node)
        .filter(|c| {
            c["user_provided_name"]
                .as_str()
                .unwrap_or("")
                .contains("-svc")
        })
        .count())
}

/// Route both replicas to the master through a [`Partition`], cut it, let the master take
/// writes alone for [`PARTITION`], kill it, wait for Sentinel to promote a replica, end the
/// partition, start the old master again (it comes back as a replica). Returns whether the
/// replicas were still cut off when the master died.
async fn redis_partition_then_crash(cluster: &Cluster, log: &Log) -> anyhow::Result<bool> {
    let master_port = sentinel_master(cluster).await?;
    let master = (1..=3)
        .find(|i| cluster.redis_port(*i) == master_port)
        .map(|i| format!("redis{i}"))
        .context("Sentinel names a master that is not ours")?;
    let replicas: Vec<u16> = (1..=3)
        .map(|i| cluster.redis_port(i))
        .filter(|p| *p != master_port)
        .collect();
    let target: SocketAddr = ([127, 0, 0, 1], master_port).into();
    let partition = Partition::start(target).await?;
    for port in &replicas {
        replica_command(
            *port,
            &["REPLICAOF", "127.0.0.1", &partition.addr.port().to_string()],
        )
        .await?;
    }
    eventually(
        "replicas linked through the relay",
        Duration::from_secs(10),
        || async {
            for port in &replicas {
                let info = harness::private::replication_info(*port)
                    .await
                    .map_err(|e| e.to_string())?;
                let through = format!("master_port:{}", partition.addr.port());
                if !(info.contains(&through) && info.contains("master_link_status:up")) {
                    return Err(format!("replica {port} not linked yet"));
                }
            }
            Ok(())
        },
    )
    .await?;
    partition.cut();
    log.note(format!(
        "partition: {master} (the Redis master) cut off from its replicas; it keeps answering"
    ));
    tokio::time::sleep(PARTITION).await;
    // Sentinel puts a replica that follows another address back on the master after its
    // failover-timeout; if that happened, the replicas saw every write and the cut meant nothing.
    let mut held = true;
    for port in &replicas {
        let info = harness::private::replication_info(*port).await?;
        held &= info.contains(&format!("master_port:{}", partition.addr.port()));
    }
    let at = log.now();
    let killed = cluster.kill("redis-master").await?;
    log.note_at(
        at,
        format!("kill -9 {killed} (the Redis master) while cut off"),
    );
    let promoted = eventually(
        "Sentinel promotes a replica",
        Duration::from_secs(30),
        || async {
            match sentinel_master(cluster).await {
                Ok(port) if port != master_port => Ok(port),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await?;
    let promoted = (1..=3)
        .find(|i| cluster.redis_port(*i) == promoted)
        .map_or_else(|| promoted.to_string(), |i| format!("redis{i}"));
    log.note(format!("Sentinel promoted {promoted}; partition over"));
    partition.close();
    cluster.start(&killed).await?;
    log.note(format!(
        "{killed} started again (Sentinel makes it a replica)"
    ));
    Ok(held)
}

/// The master's port, as the first Sentinel that answers names it.
async fn sentinel_master(cluster: &Cluster) -> anyhow::Result<u16> {
    for i in 1..=3u16 {
        let url = format!("redis://127.0.0.1:{}", cluster.base + 20_700 + i);
        let Ok(client) = redis::Client::open(url) else {
            continue;
        };
        let Ok(Ok(mut conn)) = tokio::time::timeout(
            Duration::from_secs(1),
            client.get_multiplexed_async_connection(),
        )
        .await
        else {
            continue;
        };
        let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg("saga")
            .query_async(&mut conn)
            .await
            .ok()
            .flatten();
        if let Some((_, port)) = addr {
            return Ok(port);
        }
    }
    anyhow::bail!("no Sentinel names a master")
}

async fn replica_command(port: u16, args: &[&str]) -> anyhow::Result<()> {
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}"))?
        .get_multiplexed_async_connection()
        .await?;
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    let () = cmd.query_async(&mut conn).await?;
    Ok(())
}

// --- the checks --------------------------------------------------------------------------------

/// Of the orders answered 201: which are gone, and which are not final.
async fn accepted_orders_state(
    redis_url: &str,
    accepted: &[String],
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let redis = saga_platform::redis::store::connect(redis_url)?;
    let keys = Keys::new(PREFIX);
    let mut statuses: HashMap<String, Option<String>> = HashMap::new();
    for batch in accepted.chunks(500) {
        let mut pipe = redis::pipe();
        for id in batch {
            pipe.hget(keys.order(id), "status");
        }
        let found: Vec<Option<String>> = pipe.query_async(&mut redis.clone()).await?;
        statuses.extend(batch.iter().cloned().zip(found));
    }
    let mut lost = Vec::new();
    let mut not_final = Vec::new();
    for (id, status) in statuses {
        match status.as_deref() {
            None => lost.push(id),
            Some(s)
                if !saga_domain::order::OrderStatus::parse(s).is_some_and(|s| s.is_decided()) =>
            {
                not_final.push(format!("{id} ({s})"))
            }
            Some(_) => {}
        }
    }
    Ok((lost, not_final))
}

/// Order ids with a reservation record but no order in order-svc's index, other than the lab
/// drills' hand-made `lab-*` ones.
async fn reservations_without_orders(redis_url: &str) -> anyhow::Result<Vec<String>> {
    let redis = saga_platform::redis::store::connect(redis_url)?;
    let keys = Keys::new(PREFIX);
    let mut conn = redis.clone();
    let orders: std::collections::HashSet<String> = redis::cmd("ZRANGE")
        .arg(keys.orders())
        .arg(0)
        .arg(-1)
        .query_async::<Vec<String>>(&mut conn)
        .await?
        .into_iter()
        .collect();
    let prefix = keys.reservation("");
    let mut ghosts = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(keys.reservation("*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        for key in found {
            let id = key.strip_prefix(&prefix).unwrap_or(&key).to_owned();
            if !orders.contains(&id) && !id.starts_with("lab-") {
                ghosts.push(id);
            }
        }
        if next == 0 {
            return Ok(ghosts);
        }
        cursor = next;
    }
}

/// The outbox depth once it has drained (0), or what is left after [`Cluster::SETTLE`].
async fn outbox_when_drained(redis_url: &str) -> anyhow::Result<u64> {
    let redis = saga_platform::redis::store::connect(redis_url)?;
    let outbox = Keys::new(PREFIX).outbox();
    let mut left = 0;
    let drained = eventually("the outbox drained", Duration::from_secs(30), || async {
        let depth: u64 = redis::cmd("XLEN")
            .arg(&outbox)
            .query_async(&mut redis.clone())
            .await
            .map_err(|e| e.to_string())?;
        if depth == 0 {
            Ok(())
        } else {
            Err(format!("{depth} left"))
        }
    })
    .await;
    if drained.is_err() {
        left = redis::cmd("XLEN")
            .arg(&outbox)
            .query_async(&mut redis.clone())
            .await?;
    }
    Ok(left)
}
