//! The consume loop: the one place that decides what happens to a delivery.
//!
//! For each delivery the loop
//! 1. opens its span, with `order_id` and `correlation_id`;
//! 2. parses it into the handler's typed event ([`Handler::parse`]); poison goes to the DLQ
//!    unchanged, with `x-dlq-*` headers saying why, is noted on the order's timeline, then acked;
//! 3. calls [`Handler::handle`], a function from the event and its metadata to an [`Outcome`]:
//!    the handler changes its own state (through a small trait of its own, so it is unit-tested
//!    against an in-memory fake) and says which events to announce;
//! 4. publishes those events with confirms, then acks ([`Outcome::Processed`],
//!    [`Outcome::Duplicate`]); or, for [`Outcome::Failed`], applies the retry policy
//!    ([`crate::retry`]): an outage is waited out in place with capped backoff, without limit;
//!    any other failure parks the message in the queue's retry queue (confirmed, then acked)
//!    and, once its attempts are spent, sends it to the DLQ with the last error as the reason.
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
use crate::domain::DlqHop;
use crate::events::{EventMeta, EventType, unix_now_millis, unix_now_secs};
use crate::retry::{self, NextStep, RetryPolicy};
use crate::store::Timeline;
use crate::topology::Topology;
use crate::watch::{Watchdog, supervise};
use crate::wire::Malformed;

/// How often a consuming session declares the topology again, so that a binding someone deleted
/// (which no publish of ours would notice while another queue still takes the message) is back
/// within seconds. Sixteen idempotent declarations: negligible for the broker.
pub const TOPOLOGY_CHECK: Duration = Duration::from_secs(5);

/// An event a handler wants announced. The loop publishes it to the saga's exchange, with its
/// routing key and confirms, before it acks the delivery that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub meta: EventMeta,
    pub body: Vec<u8>,
}

/// What a handler decided about one event; the consume loop acts on it.
#[derive(Debug)]
pub enum Outcome {
    /// Effects are durable (state written): announce these, then ack.
    Processed(Vec<Announcement>),
    /// Seen before: re-announce the recorded outcome where there is one, then ack.
    Duplicate(Vec<Announcement>),
    /// The work could not be done. The loop decides what follows: an outage is waited out, any
    /// other failure is retried later through the retry queue, then dead-lettered.
    Failed(anyhow::Error),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Self::Processed(_) => "processed",
            Self::Duplicate(_) => "duplicate",
            Self::Failed(_) => "retried",
        }
    }
}

/// What the loop read off a delivery besides its body: the AMQP metadata a handler may need.
/// Every property may be absent (a bare message, as a lab script publishes it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryMeta {
    /// As first published (a message back from the retry queue keeps its own).
    pub routing_key: String,
    /// The `type` property (the event's name), if any.
    pub kind: Option<String>,
    pub event_id: Option<String>,
    pub correlation_id: Option<String>,
    pub app_id: Option<String>,
    pub redelivered: bool,
    /// 1 for the first attempt; more after retries through the retry queue.
    pub attempt: u32,
    /// Unique per delivery on its channel (notification-svc names its claims with it).
    pub delivery_tag: u64,
}

impl DeliveryMeta {
    fn of(delivery: &Delivery, attempt: u32) -> Self {
        let text =
            |v: &Option<lapin::types::ShortString>| v.as_ref().map(|s| s.as_str().to_owned());
        let props = &delivery.properties;
        Self {
            routing_key: delivery.routing_key.as_str().to_owned(),
            kind: text(props.kind()),
            event_id: text(props.message_id()),
            correlation_id: text(props.correlation_id()),
            app_id: text(props.app_id()),
            redelivered: delivery.redelivered,
            attempt,
            delivery_tag: delivery.delivery_tag,
        }
    }

    /// Which event this is: the routing key says so; failing that (a message published straight
    /// to a queue), the `type` property.
    pub fn event_type(&self) -> Option<EventType> {
        EventType::from_routing_key(&self.routing_key)
            .or_else(|| EventType::from_name(self.kind.as_deref()?))
    }
}

/// One service's reaction to the events on its queue: parse, then decide. Implementations must be
/// idempotent: the same event may arrive twice, concurrently, or after a crash half-way through
/// a previous attempt.
pub trait Handler: Send + Sync + 'static {
    /// The typed event this handler's queue carries.
    type Event: Send + Sync;

    /// Read a delivery's body into the event.
    ///
    /// # Errors
    /// [`Malformed`], with a reason a person can act on: the loop dead-letters the message.
    fn parse(meta: &DeliveryMeta, body: &[u8]) -> Result<Self::Event, Malformed>;

    /// Decide what the event means, change the handler's state, say what to announce.
    fn handle(
        &self,
        event: &Self::Event,
        meta: &DeliveryMeta,
    ) -> impl Future<Output = Outcome> + Send;
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
    /// Where a message dead-lettered by this consumer is noted on its order's timeline.
    pub timeline: Option<Timeline>,
    /// The service's watchdog: the consumer task is supervised under it, and `/ready` reads it.
    pub watchdog: Arc<Watchdog>,
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
            timeline: None,
            watchdog: Watchdog::new(),
        }
    }

    /// Report to the service's own watchdog (the one its `/ready` reads).
    pub fn with_watchdog(mut self, watchdog: Arc<Watchdog>) -> Self {
        self.watchdog = watchdog;
        self
    }

    /// Note DLQ hops on the orders' timelines in this Redis.
    pub fn with_timeline(mut self, timeline: Timeline) -> Self {
        self.timeline = Some(timeline);
        self
    }
}

/// [`run_consumer`] as a watched task (invariant 8): should it ever end before `shutdown` or
/// panic, it is logged, counted, shown by `/ready` and started again ([`crate::watch`]).
pub async fn run_watched_consumer<H: Handler>(
    settings: ConsumerSettings,
    handler: Arc<H>,
    status: Arc<BrokerStatus>,
    shutdown: CancellationToken,
) {
    let task = format!("consumer {}", settings.queue);
    let watchdog = settings.watchdog.clone();
    supervise(&task, watchdog, shutdown.clone(), move || {
        run_consumer(
            settings.clone(),
            handler.clone(),
            status.clone(),
            shutdown.clone(),
        )
    })
    .await;
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

/// Handle one delivery until it is settled (acked after its effects and announcements, its
/// parking or its DLQ entry are confirmed) or its session ends.
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
    let meta = DeliveryMeta::of(&delivery, attempt);
    let order_id = order_id_of(&delivery.data);
    // Ids go into the span once, here: a handler run again for the same delivery must not add
    // another copy of them to every line.
    let span = info_span!(
        "delivery",
        queue = %settings.queue,
        routing_key = %meta.routing_key,
        redelivered = meta.redelivered,
        attempt,
        order_id = order_id.as_deref().unwrap_or(""),
        correlation_id = meta.correlation_id.as_deref().unwrap_or(""),
    );
    let work = Delivered {
        delivery: &delivery,
        meta: &meta,
        order_id: order_id.as_deref(),
        settings: &settings,
        publisher: &publisher,
    };
    async {
        let mut backoff = Backoff::for_outages();
        let parsing = Instant::now();
        let event = H::parse(&meta, &delivery.data);
        if event.is_err() {
            // Poison is decided by parsing alone; it counts as a delivery handled like any other.
            metrics::histogram!("saga_handler_seconds", "queue" => settings.queue.clone())
                .record(parsing.elapsed().as_secs_f64());
            metrics::counter!("saga_consumed_total", "queue" => settings.queue.clone(), "outcome" => "dead_lettered")
                .increment(1);
        }
        loop {
            let settled = match &event {
                Err(poison) => work.poison(&poison.0).await,
                Ok(event) => {
                    let started = Instant::now();
                    let outcome = handler.handle(event, &meta).await;
                    metrics::histogram!("saga_handler_seconds", "queue" => settings.queue.clone())
                        .record(started.elapsed().as_secs_f64());
                    metrics::counter!("saga_consumed_total", "queue" => settings.queue.clone(), "outcome" => outcome.label())
                        .increment(1);
                    match outcome {
                        Outcome::Processed(announce) | Outcome::Duplicate(announce) => {
                            work.announce(&announce).await.map_err(anyhow::Error::new)
                        }
                        Outcome::Failed(cause) => Err(cause),
                    }
                }
            };
            let failed = match settled {
                Ok(()) => {
                    if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
                        // The channel died after the work was done: the broker redelivers, we dedupe.
                        warn!(cause = %e, "ack failed; the message will be redelivered and deduplicated");
                    }
                    return;
                }
                Err(cause) => cause,
            };
            if !retry::is_outage(&failed) {
                // Parked or dead-lettered: either way confirmed, so the delivery is settled.
                match work.retry_later_or_give_up(&failed).await {
                    Ok(()) => {
                        if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
                            warn!(cause = %e, "ack failed; the message will be redelivered");
                        }
                        return;
                    }
                    Err(e) => {
                        if !wait_out(&anyhow::Error::new(e), &publisher, &session, &mut backoff).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            metrics::counter!("saga_retries_total", "queue" => settings.queue.clone(), "kind" => "outage")
                .increment(1);
            if !wait_out(&failed, &publisher, &session, &mut backoff).await {
                return;
            }
        }
    }
    .instrument(span)
    .await
}

/// One delivery on its way through the loop, with what settling it takes.
struct Delivered<'a> {
    delivery: &'a Delivery,
    meta: &'a DeliveryMeta,
    order_id: Option<&'a str>,
    settings: &'a ConsumerSettings,
    publisher: &'a Publisher,
}

impl Delivered<'_> {
    fn order(&self) -> &str {
        self.order_id.unwrap_or("?")
    }

    /// Publish the handler's announcements in order, each confirmed.
    async fn announce(&self, announce: &[Announcement]) -> Result<(), PublishError> {
        for a in announce {
            self.publisher
                .publish(
                    &self.settings.topology.exchange,
                    a.meta.event_type.routing_key(),
                    &a.body,
                    a.meta.properties(),
                )
                .await?;
        }
        Ok(())
    }

    /// Poison: to the DLQ as it is, noted on the order's timeline. Never retried.
    async fn poison(&self, reason: &str) -> anyhow::Result<()> {
        self.dead_letter(reason, None).await?;
        let order = self.order();
        warn!(reason = %reason, dlq = %self.settings.topology.dlq_queue,
              "Malformed message for order {order}: {reason}, routed to DLQ");
        Ok(())
    }

    /// A failure that is not an outage: park the message for another attempt, or, once its
    /// attempts are spent, send it to the DLQ with the error as its reason.
    async fn retry_later_or_give_up(&self, cause: &anyhow::Error) -> Result<(), PublishError> {
        let settings = self.settings;
        let (reason, attempt, order) = (format!("{cause:#}"), self.meta.attempt, self.order());
        let attempts = settings.retry.count + 1;
        let queue = settings.queue.clone();
        match settings.retry.after_failed_attempt(attempt) {
            NextStep::RetryLater => {
                let retry_queue = Topology::retry_queue(&settings.queue);
                let properties = retry::parked_properties(
                    &self.delivery.properties,
                    attempt,
                    self.delivery.exchange.as_str(),
                    self.delivery.routing_key.as_str(),
                    settings.retry.delay,
                );
                self.publisher
                    .publish("", &retry_queue, &self.delivery.data, properties)
                    .await?;
                metrics::counter!("saga_retries_total", "queue" => queue, "kind" => "delayed")
                    .increment(1);
                let delay = humantime::format_duration(settings.retry.delay);
                warn!(cause = %reason, retry_queue,
                      "Attempt {attempt} of {attempts} failed for order {order}: {reason}; retrying in {delay}");
            }
            NextStep::GiveUp => {
                self.dead_letter(&reason, Some(attempt)).await?;
                metrics::counter!("saga_retry_give_ups_total", "queue" => queue).increment(1);
                error!(reason = %reason, dlq = %settings.topology.dlq_queue,
                       "Gave up on order {order} after {attempt} attempts: {reason}; routed to DLQ");
            }
        }
        Ok(())
    }

    /// Publish the delivery to the DLQ byte-for-byte, with headers saying why, wait for the
    /// confirm, and note the hop on the order's timeline.
    async fn dead_letter(&self, reason: &str, attempts: Option<u32>) -> Result<(), PublishError> {
        let (delivery, settings) = (self.delivery, self.settings);
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
        self.publisher
            .publish("", &settings.topology.dlq_queue, &delivery.data, properties)
            .await?;
        metrics::counter!("saga_dlq_total", "queue" => settings.queue.clone()).increment(1);
        if let (Some(timeline), Some(order_id)) = (&settings.timeline, self.order_id) {
            let hop = DlqHop {
                at: unix_now_millis(),
                service: settings.service.clone(),
                routing_key: self.meta.routing_key.clone(),
                reason: reason.to_owned(),
                redelivered: self.meta.redelivered,
                attempts,
            };
            timeline.record_dlq_hop(order_id, &hop).await;
        }
        Ok(())
    }
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
