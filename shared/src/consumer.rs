//! The consume loop: the one place that decides what happens to a delivery.
//!
//! A handler is a plain async function from a delivery to an [`Outcome`]; the loop then
//! - acks it ([`Outcome::Processed`], [`Outcome::Duplicate`]): the handler's effects are durable;
//! - dead-letters it ([`Outcome::DeadLetter`]): publishes the body unchanged to the DLQ with
//!   `x-dlq-*` headers, waits for the broker's confirm, *then* acks;
//! - for [`Outcome::Failed`], applies the retry policy ([`crate::retry`]): an outage is waited out
//!   in place with capped backoff, without limit; any other failure parks the message in the
//!   queue's retry queue (confirmed, then acked) and, once its attempts are spent, sends it to
//!   the DLQ with the last error as the reason.
//!
//! Each session (one connection) declares the topology when it starts, again every
//! [`TOPOLOGY_CHECK`], and at once when a publish comes back unroutable: a deleted exchange,
//! binding or queue is back within seconds, without a restart (invariant 7).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::Connection;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::amqp::{
    BrokerStatus, GOODBYE_WAIT, PublishError, Publisher, close_connection, connect,
    declare_topology,
};
use crate::backoff::Backoff;
use crate::events::unix_now_secs;
use crate::retry::{self, NextStep, RetryPolicy};
use crate::topology::Topology;

/// How often a consuming session declares the topology again, so that a binding someone deleted
/// (which no publish of ours would notice while another queue still takes the message) is back
/// within seconds. Sixteen idempotent declarations: negligible for the broker.
pub const TOPOLOGY_CHECK: Duration = Duration::from_secs(5);

/// What a handler decided about one delivery; the consume loop acts on it.
#[derive(Debug)]
pub enum Outcome {
    /// Effects are durable (state written, outgoing events confirmed): ack.
    Processed,
    /// Seen before; the recorded outcome was re-sent where needed: ack.
    Duplicate,
    /// Poison: to the DLQ with this reason, then ack.
    DeadLetter(String),
    /// The work could not be done. The loop decides what follows: an outage is waited out, any
    /// other failure is retried later through the retry queue, then dead-lettered.
    Failed(anyhow::Error),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Self::Processed => "processed",
            Self::Duplicate => "duplicate",
            Self::DeadLetter(_) => "dead_lettered",
            Self::Failed(_) => "retried",
        }
    }
}

/// Turns one delivery into an [`Outcome`]. Implementations must be idempotent: the same message
/// may arrive twice, concurrently, or after a crash half-way through a previous attempt.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        delivery: &Delivery,
        publisher: &Publisher,
    ) -> impl Future<Output = Outcome> + Send;

    /// Called once the DLQ has confirmed a message, before it is acked: a chance to note the hop
    /// somewhere a person will look (the order's timeline). Best effort.
    fn dead_lettered(
        &self,
        _delivery: &Delivery,
        _reason: &str,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// What a consumer needs to know besides its handler.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// The service's name: connection name, `app_id`, `x-dlq-service`.
    pub service: String,
    pub url: String,
    pub queue: String,
    pub prefetch: u16,
    pub topology: Topology,
    pub retry: RetryPolicy,
    /// How long a shutdown waits for in-flight deliveries.
    pub grace: Duration,
}

impl ConsumerSettings {
    /// Settings for `service` consuming `queue`, everything else from the common config.
    pub fn new(service: &str, common: &crate::config::Common, queue: &str) -> Self {
        Self {
            service: service.to_owned(),
            url: common.rabbitmq_url.clone(),
            queue: queue.to_owned(),
            prefetch: common.prefetch,
            topology: common.topology.clone(),
            retry: common.retry,
            grace: Duration::from_secs(common.shutdown_grace_secs),
        }
    }
}

/// Consume `settings.queue` until `shutdown`, reconnecting whenever the connection is lost.
///
/// In-flight work is bounded by the prefetch: the broker never hands us more unacked
/// deliveries than that, so a backlog of any size costs no memory here (invariant 5).
pub async fn run_consumer<H: Handler>(
    settings: ConsumerSettings,
    handler: Arc<H>,
    status: Arc<BrokerStatus>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::for_outages();
    while let Some(conn) = connect(&settings.url, &settings.service, &shutdown).await {
        let started = Instant::now();
        match consume_session(&settings, &conn, &handler, &status, &shutdown).await {
            Ok(()) => {
                close_connection(&conn, 200, "shutdown").await;
                status.set(false);
                info!(queue = %settings.queue, "consumer stopped cleanly");
                return;
            }
            Err(cause) => {
                status.set(false);
                metrics::counter!("saga_reconnects_total").increment(1);
                close_connection(&conn, 320, "reconnecting").await;
                // A session that lived a while earns a fresh backoff; a flapping one does not.
                if started.elapsed() > Duration::from_secs(30) {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                warn!(queue = %settings.queue, cause = %format!("{cause:#}"), retry_in_ms = delay.as_millis() as u64,
                      "lost the broker; unacked deliveries will be redelivered after reconnecting");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// What every delivery's task shares with its session.
#[derive(Clone)]
struct Session {
    /// Cancelled when the session ends for any reason, so waiting deliveries let go (the broker
    /// redelivers them) instead of retrying on a dead channel.
    ended: CancellationToken,
    /// Rung when a publish found part of the topology missing: declare it again now.
    topology_missing: Arc<Notify>,
}

/// One connection's worth of consuming. `Ok` on shutdown, `Err` when the connection broke.
async fn consume_session<H: Handler>(
    settings: &ConsumerSettings,
    conn: &Connection,
    handler: &Arc<H>,
    status: &BrokerStatus,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    declare_topology(conn, &settings.topology).await?;
    let publisher = Publisher::open(conn).await?;
    let channel = conn.create_channel().await?;
    channel
        .basic_qos(settings.prefetch, BasicQosOptions::default())
        .await?;
    let tag = format!("{}-{}", settings.service, std::process::id());
    let mut consumer = channel
        .basic_consume(
            settings.queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    status.set(true);
    info!(queue = %settings.queue, prefetch = settings.prefetch, "consuming");

    let session = Session {
        ended: shutdown.child_token(),
        topology_missing: Arc::new(Notify::new()),
    };
    let mut topology_check = tokio::time::interval(TOPOLOGY_CHECK);
    topology_check.reset();
    let tracker = TaskTracker::new();
    let result = loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break Ok(()),
            // A handler found the publishing channel dead (the broker closes a channel on some
            // errors while the connection lives on): start over on a fresh connection.
            _ = session.ended.cancelled() => break Err(anyhow::anyhow!("the publishing channel closed")),
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    let work = process(delivery, settings.clone(), handler.clone(), publisher.clone(), session.clone());
                    tracker.spawn(work);
                }
                Some(Err(e)) => break Err(anyhow::Error::new(e).context("consumer failed")),
                None => {
                    warn!(queue = %settings.queue, "the broker cancelled our consumer: was the queue deleted? \
                           Any messages it held are gone (the operator's loss); declaring it again");
                    break Err(anyhow::anyhow!("the broker cancelled our consumer"));
                }
            },
            _ = session.topology_missing.notified() => redeclare(conn, settings, "a publish found it missing").await,
            _ = topology_check.tick() => redeclare(conn, settings, "periodic check").await,
        }
    };

    if result.is_ok() {
        // Tell, then wait: no new deliveries, let in-flight ones finish and ack.
        let cancel = channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default());
        let _ = tokio::time::timeout(GOODBYE_WAIT, cancel).await;
        tracker.close();
        if tokio::time::timeout(settings.grace, tracker.wait())
            .await
            .is_err()
        {
            warn!(queue = %settings.queue, "in-flight work did not finish within the grace period; the broker will redeliver it");
        }
        let _ = tokio::time::timeout(GOODBYE_WAIT, channel.close(200, "shutdown".into())).await;
    } else {
        session.ended.cancel();
        tracker.close();
        tracker.wait().await;
    }
    result
}

/// Declare the topology again; a failure is logged and left to the next check (a broken
/// connection shows up on the consumer stream anyway).
async fn redeclare(conn: &Connection, settings: &ConsumerSettings, why: &str) {
    if let Err(e) = declare_topology(conn, &settings.topology).await {
        warn!(queue = %settings.queue, cause = %e, why, "could not declare the topology; will try again");
    } else {
        debug!(queue = %settings.queue, why, "topology declared");
    }
}

/// Handle one delivery until it is settled (acked after its effects, its parking or its DLQ
/// entry are confirmed) or its session ends.
async fn process<H: Handler>(
    mut delivery: Delivery,
    settings: ConsumerSettings,
    handler: Arc<H>,
    publisher: Publisher,
    session: Session,
) {
    let attempt = retry::attempts_so_far(&delivery.properties) + 1;
    if attempt > 1 {
        come_back_as_published(&mut delivery);
    }
    let order_id = order_id_of(&delivery.data);
    let correlation_id = delivery
        .properties
        .correlation_id()
        .as_ref()
        .map(|c| c.to_string());
    // Ids go into the span once, here: a handler run again for the same delivery must not add
    // another copy of them to every line.
    let span = info_span!(
        "delivery",
        queue = %settings.queue,
        routing_key = %delivery.routing_key,
        redelivered = delivery.redelivered,
        attempt,
        order_id = order_id.as_deref().unwrap_or(""),
        correlation_id = correlation_id.as_deref().unwrap_or(""),
    );
    let order = order_id.as_deref().unwrap_or("?");
    async move {
        let mut backoff = Backoff::for_outages();
        loop {
            let started = Instant::now();
            let outcome = handler.handle(&delivery, &publisher).await;
            metrics::histogram!("saga_handler_seconds", "queue" => settings.queue.clone())
                .record(started.elapsed().as_secs_f64());
            metrics::counter!("saga_consumed_total", "queue" => settings.queue.clone(), "outcome" => outcome.label())
                .increment(1);
            let settled = match outcome {
                Outcome::Processed | Outcome::Duplicate => Ok(()),
                Outcome::DeadLetter(reason) => {
                    let sent = dead_letter(&delivery, &reason, None, &settings, &publisher).await;
                    if sent.is_ok() {
                        warn!(reason = %reason, dlq = %settings.topology.dlq_queue,
                              "Malformed message for order {order}: {reason}, routed to DLQ");
                        handler.dead_lettered(&delivery, &reason).await;
                        metrics::counter!("saga_dlq_total", "queue" => settings.queue.clone()).increment(1);
                    }
                    sent
                }
                Outcome::Failed(cause) if retry::is_outage(&cause) => {
                    metrics::counter!("saga_retries_total", "queue" => settings.queue.clone(), "kind" => "outage")
                        .increment(1);
                    if !wait_out(&cause, &publisher, &session, &mut backoff).await {
                        return;
                    }
                    continue;
                }
                Outcome::Failed(cause) => {
                    retry_later_or_give_up(&delivery, &cause, attempt, order, &settings, handler.as_ref(), &publisher).await
                }
            };
            match settled {
                Ok(()) => {
                    if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
                        // The channel died after the work was done: the broker redelivers, we dedupe.
                        warn!(cause = %e, "ack failed; the message will be redelivered and deduplicated");
                    }
                    return;
                }
                // The DLQ or the retry queue did not confirm: that is the broker being away.
                Err(e) => {
                    warn!(cause = %e, "could not settle the message yet; will retry");
                    if !wait_out(&anyhow::Error::new(e), &publisher, &session, &mut backoff).await {
                        return;
                    }
                }
            }
        }
    }
    .instrument(span)
    .await
}

/// Wait before handling a delivery again after an outage. `false` when the session is over
/// (the delivery is left to the broker to redeliver).
async fn wait_out(
    cause: &anyhow::Error,
    publisher: &Publisher,
    session: &Session,
    backoff: &mut Backoff,
) -> bool {
    let topology_missing = cause
        .chain()
        .filter_map(|c| c.downcast_ref::<PublishError>())
        .any(PublishError::topology_missing);
    if topology_missing {
        session.topology_missing.notify_one();
    }
    if !publisher.is_open() {
        session.ended.cancel();
        return false;
    }
    let delay = backoff.next_delay();
    if backoff.worth_logging() {
        warn!(cause = %format!("{cause:#}"), attempt = backoff.attempts(),
              retry_in_ms = delay.as_millis() as u64, "transient failure (an outage): will retry this message when it passes");
    }
    tokio::select! {
        _ = session.ended.cancelled() => {
            debug!("session ended; leaving the delivery to be redelivered");
            false
        }
        _ = tokio::time::sleep(delay) => true,
    }
}

/// A failure that is not an outage: park the message for another attempt, or, once its
/// attempts are spent, send it to the DLQ with the error as its reason.
async fn retry_later_or_give_up<H: Handler>(
    delivery: &Delivery,
    cause: &anyhow::Error,
    attempt: u32,
    order: &str,
    settings: &ConsumerSettings,
    handler: &H,
    publisher: &Publisher,
) -> Result<(), PublishError> {
    let reason = format!("{cause:#}");
    let attempts = settings.retry.count + 1;
    let queue = settings.queue.clone();
    match settings.retry.after_failed_attempt(attempt) {
        NextStep::RetryLater => {
            let retry_queue = Topology::retry_queue(&settings.queue);
            let properties = retry::parked_properties(
                &delivery.properties,
                attempt,
                delivery.exchange.as_str(),
                delivery.routing_key.as_str(),
                settings.retry.delay,
            );
            publisher
                .publish("", &retry_queue, &delivery.data, properties)
                .await?;
            metrics::counter!("saga_retries_total", "queue" => queue, "kind" => "delayed")
                .increment(1);
            let delay = humantime::format_duration(settings.retry.delay);
            warn!(cause = %reason, retry_queue,
                  "Attempt {attempt} of {attempts} failed for order {order}: {reason}; retrying in {delay}");
        }
        NextStep::GiveUp => {
            dead_letter(delivery, &reason, Some(attempt), settings, publisher).await?;
            metrics::counter!("saga_retry_give_ups_total", "queue" => queue.clone()).increment(1);
            metrics::counter!("saga_dlq_total", "queue" => queue).increment(1);
            error!(reason = %reason, dlq = %settings.topology.dlq_queue,
                   "Gave up on order {order} after {attempt} attempts: {reason}; routed to DLQ");
            handler.dead_lettered(delivery, &reason).await;
        }
    }
    Ok(())
}

/// A message back from the retry queue arrives through the default exchange with the work
/// queue's name as its routing key; handle it as the message it was first published as.
fn come_back_as_published(delivery: &mut Delivery) {
    let original = |name| retry::header_str(&delivery.properties, name);
    if let (Some(exchange), Some(routing_key)) = (
        original(retry::ORIGINAL_EXCHANGE_HEADER),
        original(retry::ORIGINAL_ROUTING_KEY_HEADER),
    ) {
        delivery.exchange = exchange.into();
        delivery.routing_key = routing_key.into();
    }
}

/// The `order_id` of a JSON body, if it has a string one (for logs; handlers parse for real).
fn order_id_of(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Peek {
        order_id: Option<serde_json::Value>,
    }
    let peek: Peek = serde_json::from_slice(body).ok()?;
    match peek.order_id? {
        serde_json::Value::String(id) if id.len() <= 128 => Some(id),
        _ => None,
    }
}

/// Publish `delivery` to the DLQ byte-for-byte, with headers saying why, and wait for the confirm.
async fn dead_letter(
    delivery: &Delivery,
    reason: &str,
    attempts: Option<u32>,
    settings: &ConsumerSettings,
    publisher: &Publisher,
) -> Result<(), PublishError> {
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    let mut put = |key: &str, value: &str| {
        headers.insert(
            key.into(),
            AMQPValue::LongString(LongString::from(value.as_bytes().to_vec())),
        );
    };
    put("x-dlq-reason", reason);
    put("x-dlq-service", &settings.service);
    put("x-original-exchange", delivery.exchange.as_str());
    put("x-original-routing-key", delivery.routing_key.as_str());
    put("x-original-queue", &settings.queue);
    put("x-dlq-at", &unix_now_secs().to_string());
    if let Some(attempts) = attempts {
        put("x-dlq-attempts", &attempts.to_string());
    }
    let properties = delivery
        .properties
        .clone()
        .with_headers(headers)
        .with_delivery_mode(2);
    publisher
        .publish("", &settings.topology.dlq_queue, &delivery.data, properties)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_ids_are_peeked_only_when_they_are_strings() {
        assert_eq!(
            order_id_of(br#"{"order_id":"o-1","qty":2}"#).as_deref(),
            Some("o-1")
        );
        assert_eq!(order_id_of(br#"{"order_id":42}"#), None);
        assert_eq!(order_id_of(b"not json"), None);
        assert_eq!(order_id_of(br#"{"item":"burger"}"#), None);
    }
}
