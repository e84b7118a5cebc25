//! RabbitMQ plumbing: connect with backoff, publish with confirms, and the consume loop.
//!
//! The consume loop is the one place that decides what happens to a delivery. A handler is a
//! plain async function from a delivery to an [`Outcome`]; the loop then
//! - acks it ([`Outcome::Processed`], [`Outcome::Duplicate`]): the handler's effects are durable;
//! - dead-letters it ([`Outcome::DeadLetter`]): publishes the body unchanged to the DLQ with
//!   `x-dlq-*` headers, waits for the broker's confirm, *then* acks;
//! - retries it ([`Outcome::Retry`]): a dependency is away; the delivery is kept (not acked, not
//!   requeued) and handled again after a capped backoff.
//!
//! Connection loss is handled by an explicit reconnect loop rather than lapin's auto-recovery:
//! every unacked delivery is redelivered by the broker on the new connection, and every consumer
//! is idempotent, so "start over" is always safe and easy to reason about.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::backoff::Backoff;
use crate::config::redact_url;
use crate::events::unix_now_secs;
use crate::topology::Topology;

/// Whether this process currently holds a working broker connection (for `/ready`).
#[derive(Debug, Default)]
pub struct BrokerStatus(AtomicBool);

impl BrokerStatus {
    pub fn set(&self, up: bool) {
        self.0.store(up, Ordering::Relaxed);
    }
    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The largest AMQP frame we ask the broker for, unless the URL says `?frame_max=`. lapin
/// keeps two buffers of 32 frames per connection, so the broker's default of 128 KiB costs
/// 8 MiB of memory per connection. Our messages are well under 1 KiB (a larger one is simply
/// split across frames), so we ask for the protocol's minimum, 4 KiB: 256 KiB per connection.
const FRAME_MAX: u32 = 4 * 1024;

/// `url`, parsed, asking for [`FRAME_MAX`]-byte frames unless it names its own.
fn with_small_frames(url: &str) -> Result<AMQPUri, String> {
    let mut uri: AMQPUri = url.parse()?;
    uri.query.frame_max.get_or_insert(FRAME_MAX);
    Ok(uri)
}

/// The longest a goodbye to the broker may take. A broker that blocks publishers (a memory or
/// disk alarm) stops reading from their connections, so a close, or a cancel, could otherwise
/// wait for ever and keep a SIGTERM'd service from exiting.
pub const GOODBYE_WAIT: Duration = Duration::from_secs(2);

/// Close `conn`, but give up after [`GOODBYE_WAIT`]: the broker notices the socket going away.
pub async fn close_connection(conn: &Connection, code: u16, reason: &str) {
    let _ = tokio::time::timeout(GOODBYE_WAIT, conn.close(code, reason.into())).await;
}

/// Connect, retrying with capped backoff until the broker answers or shutdown is asked.
/// Logs the first failure and then only every power-of-two attempt.
pub async fn connect(url: &str, name: &str, shutdown: &CancellationToken) -> Option<Connection> {
    let mut backoff = Backoff::for_outages();
    loop {
        let props = ConnectionProperties::default().with_connection_name(name.into());
        let connecting = async {
            match with_small_frames(url) {
                Ok(uri) => Connection::connect_uri(uri, props).await,
                // Not a URL we can read: lapin says why, in its own words.
                Err(_) => Connection::connect(url, props).await,
            }
        };
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return None,
            r = tokio::time::timeout(Duration::from_secs(10), connecting) => r,
        };
        let err = match attempt {
            Ok(Ok(conn)) => {
                info!(broker = %redact_url(url), connection = name, "connected to the broker");
                metrics::counter!("saga_broker_connects_total").increment(1);
                return Some(conn);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out after 10 s".to_owned(),
        };
        let delay = backoff.next_delay();
        if backoff.worth_logging() {
            warn!(broker = %redact_url(url), attempt = backoff.attempts(), retry_in_ms = delay.as_millis() as u64,
                  cause = %err, "broker unreachable; retrying");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Why a publish did not take.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    #[error("broker refused the message (nack)")]
    Nacked,
    #[error("no queue is bound for routing key {0:?} (message returned)")]
    Unroutable(String),
}

/// A channel in confirm mode. Every publish waits for the broker's confirm (invariant 5); many
/// tasks may publish on it at once, so confirms are awaited concurrently.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
}

impl Publisher {
    /// Open a confirm-mode channel on `conn`.
    ///
    /// # Errors
    /// The broker refused the channel or confirm mode.
    pub async fn open(conn: &Connection) -> lapin::Result<Self> {
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self { channel })
    }

    /// Publish and wait for the broker's confirm. `mandatory` is set: a message no queue would
    /// take comes back as [`PublishError::Unroutable`] instead of vanishing.
    ///
    /// # Errors
    /// See [`PublishError`]; all are worth a retry on a fresh connection.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), PublishError> {
        self.send(exchange, routing_key, body, properties)
            .await?
            .confirmed()
            .await
    }

    /// Send without waiting for the confirm yet. Messages sent one after another on this
    /// channel keep their order; their confirms can then be awaited together, which is what
    /// makes a batch fast without giving up confirms.
    ///
    /// # Errors
    /// The channel is closed or the frame could not be sent.
    pub async fn send(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<PendingConfirm, PublishError> {
        let confirm = self
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                properties,
            )
            .await?;
        Ok(PendingConfirm {
            confirm,
            routing_key: routing_key.to_owned(),
        })
    }

    pub fn is_open(&self) -> bool {
        self.channel.status().connected()
    }
}

/// A message sent but not yet confirmed by the broker.
pub struct PendingConfirm {
    confirm: lapin::PublisherConfirm,
    routing_key: String,
}

impl PendingConfirm {
    /// Wait for the broker's verdict.
    ///
    /// # Errors
    /// Nack, returned as unroutable, or the channel died before the confirm came.
    pub async fn confirmed(self) -> Result<(), PublishError> {
        let confirmation = self.confirm.await?;
        if confirmation.is_nack() {
            return Err(PublishError::Nacked);
        }
        if confirmation.take_message().is_some() {
            return Err(PublishError::Unroutable(self.routing_key));
        }
        metrics::counter!("saga_published_total", "routing_key" => self.routing_key).increment(1);
        Ok(())
    }
}

/// What a handler decided about one delivery; the consume loop acts on it.
#[derive(Debug)]
pub enum Outcome {
    /// Effects are durable (state written, outgoing events confirmed): ack.
    Processed,
    /// Seen before; the recorded outcome was re-sent where needed: ack.
    Duplicate,
    /// Poison: to the DLQ with this reason, then ack.
    DeadLetter(String),
    /// A dependency is away: keep the delivery, back off, handle it again.
    Retry(anyhow::Error),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Self::Processed => "processed",
            Self::Duplicate => "duplicate",
            Self::DeadLetter(_) => "dead_lettered",
            Self::Retry(_) => "retried",
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

    /// Called once the DLQ has confirmed a poison message, before it is acked: a chance to
    /// note the hop somewhere a person will look (the order's timeline). Best effort.
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
                warn!(queue = %settings.queue, cause = %cause, retry_in_ms = delay.as_millis() as u64,
                      "lost the broker; unacked deliveries will be redelivered after reconnecting");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// One connection's worth of consuming. `Ok` on shutdown, `Err` when the connection broke.
async fn consume_session<H: Handler>(
    settings: &ConsumerSettings,
    conn: &Connection,
    handler: &Arc<H>,
    status: &BrokerStatus,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let setup = conn.create_channel().await?;
    settings.topology.declare(&setup).await?;
    let _ = setup.close(200, "declared".into()).await;

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

    // Cancelled when this session ends for any reason, so retrying handlers let go of their
    // deliveries (the broker redelivers them) instead of retrying on a dead channel.
    let session = shutdown.child_token();
    let tracker = TaskTracker::new();
    let result = loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break Ok(()),
            // A handler found the publishing channel dead (the broker closes a channel on some
            // errors while the connection lives on): start over on a fresh connection.
            _ = session.cancelled() => break Err(anyhow::anyhow!("the publishing channel closed")),
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    let work = process(delivery, settings.clone(), handler.clone(), publisher.clone(), session.clone());
                    tracker.spawn(work);
                }
                Some(Err(e)) => break Err(anyhow::Error::new(e).context("consumer failed")),
                None => break Err(anyhow::anyhow!("the broker cancelled our consumer")),
            }
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
        session.cancel();
        tracker.close();
        tracker.wait().await;
    }
    result
}

/// Handle one delivery until it is acked or its session ends.
async fn process<H: Handler>(
    delivery: Delivery,
    settings: ConsumerSettings,
    handler: Arc<H>,
    publisher: Publisher,
    session: CancellationToken,
) {
    let correlation_id = delivery
        .properties
        .correlation_id()
        .as_ref()
        .map(|c| c.to_string());
    let span = info_span!(
        "delivery",
        queue = %settings.queue,
        routing_key = %delivery.routing_key,
        redelivered = delivery.redelivered,
        order_id = tracing::field::Empty,
        correlation_id = correlation_id.as_deref().unwrap_or(""),
    );
    async move {
        let mut backoff = Backoff::for_outages();
        loop {
            let started = Instant::now();
            let outcome = handler.handle(&delivery, &publisher).await;
            metrics::histogram!("saga_handler_seconds", "queue" => settings.queue.clone())
                .record(started.elapsed().as_secs_f64());
            metrics::counter!("saga_consumed_total", "queue" => settings.queue.clone(), "outcome" => outcome.label())
                .increment(1);
            let done = match outcome {
                Outcome::Processed | Outcome::Duplicate => true,
                Outcome::DeadLetter(reason) => match dead_letter(&delivery, &reason, &settings, &publisher).await {
                    Ok(()) => {
                        warn!(reason = %reason, dlq = %settings.topology.dlq_queue, "poison message routed to the DLQ");
                        handler.dead_lettered(&delivery, &reason).await;
                        metrics::counter!("saga_dlq_total", "queue" => settings.queue.clone()).increment(1);
                        true
                    }
                    Err(e) => {
                        warn!(cause = %e, "could not dead-letter yet; will retry");
                        false
                    }
                },
                Outcome::Retry(cause) => {
                    if !publisher.is_open() {
                        session.cancel();
                        return;
                    }
                    let delay = backoff.next_delay();
                    if backoff.worth_logging() {
                        warn!(cause = %format!("{cause:#}"), attempt = backoff.attempts(),
                              retry_in_ms = delay.as_millis() as u64, "transient failure; will retry this message");
                    }
                    tokio::select! {
                        _ = session.cancelled() => {
                            debug!("session ended; leaving the delivery to be redelivered");
                            return;
                        }
                        _ = tokio::time::sleep(delay) => {}
                    }
                    continue;
                }
            };
            if !done {
                if !publisher.is_open() {
                    session.cancel();
                }
                if session.is_cancelled() {
                    return;
                }
                tokio::select! {
                    _ = session.cancelled() => return,
                    _ = backoff.wait() => {}
                }
                continue;
            }
            if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
                // The channel died after the work was done: the broker redelivers, we dedupe.
                warn!(cause = %e, "ack failed; the message will be redelivered and deduplicated");
            }
            return;
        }
    }
    .instrument(span)
    .await
}

/// Publish `delivery` to the DLQ byte-for-byte, with headers saying why, and wait for the confirm.
async fn dead_letter(
    delivery: &Delivery,
    reason: &str,
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
    let properties = delivery
        .properties
        .clone()
        .with_headers(headers)
        .with_delivery_mode(2);
    publisher
        .publish("", &settings.topology.dlq_queue, &delivery.data, properties)
        .await
}

/// Log a fatal consumer set-up error once; used by binaries for unexpected task exits.
pub fn log_task_end(name: &str, result: Result<(), tokio::task::JoinError>) {
    if let Err(e) = result {
        error!(task = name, cause = %e, "task ended unexpectedly");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_frames_are_asked_for_unless_the_url_names_its_own() {
        let plain = with_small_frames("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        assert_eq!(plain.query.frame_max, Some(FRAME_MAX));
        let own = with_small_frames("amqp://127.0.0.1:5672/%2f?frame_max=131072").unwrap();
        assert_eq!(own.query.frame_max, Some(131_072));
        assert!(with_small_frames("not a url").is_err());
    }
}
