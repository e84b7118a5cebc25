//! What must hold after every batch of hostile input, each check returning what it found wrong
//! as readable lines (empty: it holds).
//!
//! - every service alive (`/health` 200) and ready again (`/ready` 200) within a few seconds;
//! - no service logged a panic;
//! - nothing held: every work queue empty and without unacked deliveries, every retry queue
//!   empty (its messages come back by themselves);
//! - every message in the DLQ has its `x-dlq-reason`; each poison message sent is there with its
//!   body unchanged; each valid OrderPlaced sent was decided by inventory-svc;
//! - an order placed afterwards reaches a final status.

use std::time::{Duration, Instant};

use lapin::options::{BasicGetOptions, BasicRejectOptions};
use lapin::types::AMQPValue;
use redis::AsyncCommands;
use serde_json::Value;

use super::amqp::WORK_QUEUES;
use super::run::brief;
use crate::process::ServiceProcess;
use crate::{TestEnv, eventually};

/// How long a check waits for things to settle before it reports them as they are.
pub const SETTLE: Duration = Duration::from_secs(30);

/// How long a service may take to be ready again after a batch.
const READY: Duration = Duration::from_secs(15);

/// The management API's figures are refreshed every 5 s: a reading counts only once it was
/// taken this long after the last publish, so a stale zero cannot pass for a fresh one.
const STATS_LAG: Duration = Duration::from_secs(6);

/// Log lines that say a thread panicked, since line `seen` (which moves past them), each
/// reported once: `known` holds the lines already reported, told apart without their digits
/// (times, thread ids), so a task that panics again on every restart is one finding.
pub fn panics_since(
    service: &ServiceProcess,
    seen: &mut usize,
    known: &mut std::collections::BTreeSet<String>,
) -> Vec<String> {
    let log = service.log();
    let start = (*seen).min(log.len());
    *seen = log.len();
    log[start..]
        .iter()
        .filter(|line| line.contains("panicked"))
        .filter(|line| known.insert(line.replace(|c: char| c.is_ascii_digit(), "")))
        .map(|line| {
            let shown: String = line.chars().take(400).collect();
            format!("{} panicked: {shown}", service.label())
        })
        .collect()
}

/// order-svc's outbox is empty within `within`: the relay published what the last request
/// wrote (so a request that breaks the relay is named by the case that sent it).
pub async fn outbox_drained(env: &TestEnv, within: Duration) -> Result<(), String> {
    let redis = env.redis().await.map_err(|e| format!("{e:#}"))?;
    let key = env.keys.outbox();
    eventually("order-svc's outbox drained", within, || {
        let mut redis = redis.clone();
        let key = key.clone();
        async move {
            let len: redis::RedisResult<u64> =
                redis::cmd("XLEN").arg(&key).query_async(&mut redis).await;
            match len {
                Ok(0) => Ok(()),
                Ok(n) => Err(format!("{n} entries left in {key}")),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await
    .map_err(|e| format!("{e:#}"))
}

/// `/health` answers 200 within `within`, else what it answered.
pub async fn alive(client: &reqwest::Client, base: &str, within: Duration) -> Result<(), String> {
    page_ok(client, &format!("{base}/health"), within).await
}

/// `/ready` answers 200 within `within`, else what it answered last (which names the problem).
pub async fn ready(client: &reqwest::Client, base: &str, within: Duration) -> Result<(), String> {
    let within = within.min(READY);
    page_ok(client, &format!("{base}/ready"), within).await
}

async fn page_ok(client: &reqwest::Client, url: &str, within: Duration) -> Result<(), String> {
    eventually(url, within, || async {
        match client.get(url).timeout(Duration::from_secs(3)).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => {
                let status = r.status();
                Err(format!("{status} {}", r.text().await.unwrap_or_default()))
            }
            Err(e) => Err(format!("{e:#}")),
        }
    })
    .await
    .map_err(|e| format!("{e:#}"))
}

/// One queue as the management API and a passive declare see it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct QueueState {
    ready: u32,
    unacked: u64,
}

async fn unacked(env: &TestEnv, queue: &str) -> anyhow::Result<u64> {
    let path = format!("queues/{}/{queue}", env.vhost);
    let answer: Value = env
        .management(reqwest::Method::GET, &path)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(answer["messages_unacknowledged"].as_u64().unwrap_or(0))
}

/// Every work queue empty with nothing unacked, every retry queue empty, within [`SETTLE`] of
/// `last_publish`; else which queues are not, and how.
pub async fn nothing_held(env: &TestEnv, last_publish: Instant) -> Vec<String> {
    let deadline = last_publish + STATS_LAG + SETTLE;
    let mut last = Vec::new();
    loop {
        let fresh = last_publish.elapsed() >= STATS_LAG;
        let mut problems = Vec::new();
        for queue in WORK_QUEUES {
            let retry = format!("{queue}.retry");
            let state = tokio::time::timeout(READ, async {
                Ok::<_, anyhow::Error>((
                    QueueState {
                        ready: env.depth(queue).await?,
                        unacked: unacked(env, queue).await?,
                    },
                    env.depth(&retry).await?,
                ))
            })
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {READ:?}")));
            match state {
                Ok((work, parked)) => {
                    if work != QueueState::default() {
                        problems.push(format!(
                            "{queue}: {} ready, {} unacked",
                            work.ready, work.unacked
                        ));
                    }
                    if parked > 0 {
                        problems.push(format!(
                            "{retry}: {parked} messages parked (one without an expiration never \
                             leaves: the retry queue has no queue TTL)"
                        ));
                    }
                }
                Err(e) => problems.push(format!("{queue}: cannot read: {e:#}")),
            }
        }
        if problems.is_empty() && fresh {
            return Vec::new();
        }
        if !problems.is_empty() {
            last = problems;
        }
        if Instant::now() >= deadline {
            return vec![format!(
                "deliveries held or never settled {:.0} s after the last publish: {}",
                last_publish.elapsed().as_secs_f64(),
                last.join("; ")
            )];
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A message in the DLQ, as the checks need it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub body: Vec<u8>,
    pub reason: Option<String>,
}

/// How long one reading of the broker may take before the check counts it as failed.
const READ: Duration = Duration::from_secs(10);

/// The most DLQ messages looked at (a service that dead-letters the same message in a loop
/// would otherwise keep the peek going for ever).
const DLQ_PEEK: usize = 5000;

/// Every message in the DLQ now (at most [`DLQ_PEEK`]), left there (each is rejected back).
///
/// # Errors
/// The broker is unreachable or too slow.
pub async fn dead_letters(env: &TestEnv) -> anyhow::Result<Vec<DeadLetter>> {
    tokio::time::timeout(SETTLE, peek_dlq(env))
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {SETTLE:?}"))?
}

async fn peek_dlq(env: &TestEnv) -> anyhow::Result<Vec<DeadLetter>> {
    let conn = env.connect().await?;
    let channel = conn.create_channel().await?;
    let mut taken = Vec::new();
    let mut tags = Vec::new();
    while taken.len() < DLQ_PEEK
        && let Some(message) = channel
            .basic_get(
                env.topology.dlq_queue.as_str().into(),
                BasicGetOptions::default(),
            )
            .await?
    {
        let delivery = message.delivery;
        let reason = delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("x-dlq-reason"))
            .and_then(|v| match v {
                AMQPValue::LongString(s) => {
                    Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
                }
                _ => None,
            });
        tags.push(delivery.delivery_tag);
        taken.push(DeadLetter {
            body: delivery.data,
            reason,
        });
    }
    for tag in tags {
        channel
            .basic_reject(tag, BasicRejectOptions { requeue: true })
            .await?;
    }
    let _ = conn.close(200, "peeked".into()).await;
    Ok(taken)
}

/// Every DLQ message has a reason; each of `poison` (bodies sent) is there, unchanged.
pub fn poison_dead_lettered(dead: &[DeadLetter], poison: &[(usize, Vec<u8>)]) -> Vec<String> {
    let mut problems: Vec<String> = dead
        .iter()
        .filter(|d| d.reason.as_deref().is_none_or(str::is_empty))
        .map(|d| format!("a DLQ message has no x-dlq-reason: {}", brief(&d.body)))
        .collect();
    for (case, body) in poison {
        if !dead.iter().any(|d| d.body == *body) {
            problems.push(format!(
                "case {case}: poison not in the DLQ with its body unchanged: {}",
                brief(body)
            ));
        }
    }
    problems
}

/// Each of `orders` (valid OrderPlaced sent) has a reservation record: inventory-svc decided it.
pub async fn orders_decided(env: &TestEnv, orders: &[(usize, String)]) -> Vec<String> {
    let Ok(mut redis) = env.redis().await else {
        return vec!["cannot reach Redis to check reservation records".into()];
    };
    let mut problems = Vec::new();
    for (case, order_id) in orders {
        let state: redis::RedisResult<Option<String>> =
            redis.hget(env.keys.reservation(order_id), "state").await;
        match state {
            Ok(Some(_)) => {}
            Ok(None) => problems.push(format!(
                "case {case}: a valid OrderPlaced for {order_id} was never decided (no reservation record)"
            )),
            Err(e) => problems.push(format!("case {case}: reading {order_id}'s record: {e}")),
        }
    }
    problems
}

/// An order placed now reaches a final status within [`SETTLE`].
pub async fn new_orders_complete(env: &TestEnv, order: &ServiceProcess) -> Result<(), String> {
    let id = env
        .place(order, "burger", 1)
        .await
        .map_err(|e| format!("a new order was refused: {e:#}"))?;
    env.wait_final(order, &id, SETTLE)
        .await
        .map(|_| ())
        .map_err(|e| format!("order {id} placed after the batch never became final: {e:#}"))
}

/// The invariant checker (`sagactl check`): its violations, except the "valid event in the DLQ"
/// rule for the suite's own forged events (order ids `h-...`). The checker tells an event by
/// its routing key or `type`, which a forged message may not have: a valid OrderPlaced body sent
/// straight to notification_queue is poison there, yet reads as a valid OrderPlaced. Whether a
/// forged event that *should* be processed was processed is checked per case instead
/// ([`orders_decided`]).
///
/// # Errors
/// Redis or the broker unreachable.
pub async fn invariants(env: &TestEnv) -> anyhow::Result<Vec<String>> {
    let report = sagactl::check::check(
        &env.redis_url,
        &env.prefix,
        &env.amqp_url,
        &env.topology,
        SETTLE,
    )
    .await?;
    eprintln!("hostile {}: checker: {report:?}", env.name);
    Ok(report
        .violations
        .into_iter()
        .filter(|v| !(v.starts_with("the DLQ holds a valid") && v.contains(" for order h-")))
        .collect())
}
