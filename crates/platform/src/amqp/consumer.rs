//! The consume loop: the one place that decides what happens to a delivery.
//!
//! For each delivery the loop
//! 1. opens its span, with `order_id` and `correlation_id`;
//! 2. parses it into the handler's typed event ([`Handler::parse`]);
//! 3. calls [`Handler::handle`], a function from the event and its metadata to an [`Outcome`]:
//!    the handler changes its own state (through a small trait of its own, so it is unit-tested
//!    against an in-memory fake) and says which events to announce, which the loop publishes
//!    with confirms;
//! 4. settles the delivery as [`decide`] says, from what happened ([`Attempted`]), the attempts
//!    so far and the retry policy ([`crate::amqp::retry`]): ack; wait an outage out in place with
//!    capped backoff, without limit; park the message in the queue's retry queue (confirmed,
//!    then acked); or, for poison and once its attempts are spent, send it to the DLQ
//!    unchanged, with `x-dlq-*` headers saying why, note it on the order's timeline, then ack.
//!
//! **Every delivery is settled** (invariant 3): a panic in a parser or a handler is caught and
//! counts as a failure of that message (`panicked: ...`), retried by the policy, then
//! dead-lettered; nothing taken from a delivery (names, headers) is turned into an AMQP short
//! string or a header table without a check, and the copies we publish are made to fit a frame
//! ([`crate::amqp::headers`]). A delivery is left to the broker only when its session ends.
//!
//! **The way back from the retry queue loses nothing.** A parked message's TTL ends in
//! `<queue>.retry`, which dead-letters it into `<queue>.retry.due`, a queue of ours that this
//! loop consumes beside the work queue and handles alike. Only a message from there, whose
//! `x-death` says it expired in our retry queue, has its retry headers believed
//! ([`crate::amqp::retry::Parked`]); anything on the work queue is a first attempt. So the work queue
//! may be missing (deleted, not yet declared) while a message is parked: it still comes back.
//!
//! Each session (one connection) declares the topology queue by queue when it starts, again
//! every [`TOPOLOGY_CHECK`], and at once when a publish comes back unroutable: a deleted
//! exchange, binding or queue is back within seconds, without a restart (invariant 7). A queue
//! the broker refuses (406: someone declared it with other arguments) is logged once per
//! session with what to do, and, if it is one of this consumer's, marked down in the watchdog
//! (`/ready` names it) until a declaration succeeds; the other queues go on working.

use std::collections::BTreeSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Connection};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::amqp::headers;
use crate::amqp::oversized;
use crate::amqp::properties::{header_str, outgoing, trace_of};
use crate::amqp::retry::{self, Panicked, Parked};
use crate::amqp::topology::Topology;
use crate::amqp::{
    BrokerStatus, Declared, GOODBYE_WAIT, PublishError, Publisher, close_connection,
    connect_consumer, declare_topology,
};
use crate::redis::store::Timeline;
use crate::service::backoff::Backoff;
use crate::service::spans::{self, SpanKind, Spans};
use crate::service::watch::{Watchdog, panic_message, queue_name, supervise};
use saga_domain::dlq::{self, DlqHeaders};
use saga_domain::envelope::{
    self, CLOUD_EVENTS_SPECVERSION_HEADER, Envelope, Opened, Shape, Stamp, Transport,
};
use saga_domain::events::{EventMeta, EventType, unix_now_millis, unix_now_secs};
use saga_domain::order::DlqHop;
use saga_domain::retry::{FailureKind, NextStep, RetryPolicy};
use saga_domain::trace::Trace;
use saga_domain::version::{SCHEMA_VERSION_HEADER, SchemaVersion, check_readable};
use saga_domain::wire::Malformed;

/// How often a consuming session declares the topology again, so that a binding someone deleted
/// (which no publish of ours would notice while another queue still takes the message) is back
/// within seconds. Sixteen idempotent declarations: negligible for the broker.
pub const TOPOLOGY_CHECK: Duration = Duration::from_secs(5);

/// How long a lost session waits for its deliveries in flight before it lets go of them and
/// reconnects. Their channel is gone, so none of them can be acked any more: the broker
/// redelivers each, and handlers are idempotent. Without a bound, one await that never returns
/// on the dead connection (an ack, a confirm) would keep the consumer from reconnecting for
/// ever while `/ready` still said it consumed.
pub const LOST_SESSION_WAIT: Duration = Duration::from_secs(5);

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

/// What came of one attempt at a delivery, as far as settling it is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempted {
    /// Handled, and its announcements confirmed.
    Processed,
    /// Seen before; the recorded outcome re-announced and confirmed.
    Duplicate,
    /// Not a message this queue can ever handle (bad JSON, a missing field, ...).
    Poison,
    /// Handling (or announcing) failed; the adapter that failed says which kind of failure.
    Failed(FailureKind),
}

/// How a delivery is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Its effects are durable: ack.
    Ack,
    /// A dependency is away: hold the delivery, wait with backoff, try it again.
    WaitOut,
    /// Park a copy in the retry queue (confirmed), then ack: it comes back after the delay.
    Park,
    /// Publish a copy to the DLQ with the reason (confirmed), then ack.
    DeadLetter,
}

/// The consume loop's one decision: how to settle a delivery after its attempt number
/// `attempt` (1 for the first) came to `what`, under `policy`. Pure, so that every row is
/// tested; the loop does what it says.
pub fn decide(what: Attempted, attempt: u32, policy: &RetryPolicy) -> Settle {
    match what {
        Attempted::Processed | Attempted::Duplicate => Settle::Ack,
        // Never retried: parsing the same bytes again gives the same answer.
        Attempted::Poison => Settle::DeadLetter,
        // Nobody's fault, and it will pass: never dead-lettered, however long it takes.
        Attempted::Failed(FailureKind::Outage) => Settle::WaitOut,
        Attempted::Failed(FailureKind::Fault) => match policy.after_failed_attempt(attempt) {
            NextStep::RetryLater => Settle::Park,
            NextStep::GiveUp => Settle::DeadLetter,
        },
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
    /// The version as the envelope or the `x-schema-version` header states it, if either does
    /// (none is version 1.0).
    pub schema_version: Option<String>,
    /// The shape the message came in (saga_domain::envelope).
    pub shape: Shape,
    /// What a structured envelope's sender said about itself (`tenant_id`, `partitionKey`, ...).
    pub kept: Vec<(String, String)>,
    /// This delivery's span: a child of the `traceparent` it came with, or a new trace when it
    /// came with none (a lab script's message). Always set by the consume loop; what the handler
    /// announces is published as a child of it.
    pub trace: Option<Trace>,
}

impl DeliveryMeta {
    /// What the envelope says comes first; the AMQP properties fill in what it does not.
    fn of(delivery: &Delivery, origin: &Origin, opened: Option<&Opened<'_>>) -> Self {
        let text = |v: &Option<ShortString>| v.as_ref().map(|s| s.as_str().to_owned());
        let props = &delivery.properties;
        let said =
            |f: for<'o> fn(&'o Opened<'_>) -> &'o Option<String>| opened.and_then(|o| f(o).clone());
        // An envelope may name the event by its routing key or its name: one spelling here.
        let named = said(|o| &o.event).map(|named: String| {
            EventType::from_routing_key(&named)
                .or_else(|| EventType::from_name(&named))
                .map_or(named, |event| event.name().to_owned())
        });
        Self {
            routing_key: origin.routing_key.clone(),
            kind: named.or_else(|| text(props.kind())),
            event_id: said(|o| &o.event_id).or_else(|| text(props.message_id())),
            correlation_id: said(|o| &o.correlation_id).or_else(|| text(props.correlation_id())),
            app_id: text(props.app_id()),
            redelivered: delivery.redelivered,
            attempt: origin.attempt,
            delivery_tag: delivery.delivery_tag,
            schema_version: said(|o| &o.version)
                .or_else(|| header_str(props.headers(), SCHEMA_VERSION_HEADER)),
            shape: opened.map(|o| o.shape).unwrap_or_default(),
            kept: opened.map(|o| o.kept.clone()).unwrap_or_default(),
            trace: Some(trace_of(props).map_or_else(Trace::root, |sent| sent.child())),
        }
    }

    /// The schema version the message states (none is 1.0). The loop has checked it before the
    /// handler's parser runs, so one that is not a version reads as 1.0 here.
    pub fn version(&self) -> SchemaVersion {
        SchemaVersion::of_header(self.schema_version.as_deref()).unwrap_or(SchemaVersion::V1)
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

    /// The schema majors of `event` this handler reads (docs/DESIGN.md §3, the version rule).
    /// The loop checks a delivery's `x-schema-version` against them before [`Handler::parse`]
    /// sees its body: any minor of these is read, another major is poison on its first
    /// delivery. By default every major that exists ([`EventType::majors`]); inventory-svc can
    /// be told to read only version 1 of OrderPlaced, for the schema-evolution drill.
    fn reads(&self, event: EventType) -> &'static [u16] {
        event.majors()
    }

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
    /// How the handler's announcements are published (`EVENT_ENVELOPE`).
    pub envelope: Envelope,
    /// Where the spans of deliveries and announcements go (nowhere by default).
    pub spans: Spans,
}

impl ConsumerSettings {
    /// Settings for `service` consuming `queue`, everything else from the common config.
    pub fn new(service: &str, common: &crate::service::config::Common, queue: &str) -> Self {
        Self {
            service: service.to_owned(),
            url: common.rabbitmq_url.clone(),
            queue: queue.to_owned(),
            prefetch: common.prefetch,
            topology: common.topology.clone(),
            retry: common.retry.into(),
            grace: Duration::from_secs(common.shutdown_grace_secs),
            timeline: None,
            watchdog: Watchdog::new(),
            envelope: common.event_envelope,
            spans: Spans::off(),
        }
    }

    /// Report to the service's own watchdog (the one its `/ready` reads).
    pub fn with_watchdog(mut self, watchdog: Arc<Watchdog>) -> Self {
        self.watchdog = watchdog;
        self
    }

    /// Export the spans of this consumer's deliveries and announcements.
    pub fn with_spans(mut self, spans: Spans) -> Self {
        self.spans = spans;
        self
    }

    /// Note DLQ hops on the orders' timelines in this Redis.
    pub fn with_timeline(mut self, timeline: Timeline) -> Self {
        self.timeline = Some(timeline);
        self
    }
}

/// [`run_consumer`] as a watched task (invariant 8): should it ever end before `shutdown` or
/// panic, it is logged, counted, shown by `/ready` and started again ([`crate::service::watch`]).
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
    while let Some(conn) = connect_consumer(&settings.url, &settings.service, &shutdown).await {
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
                // A message lapin cannot receive (grown past the frame by the broker, or with
                // properties it cannot parse) would end every session the same way: take it off
                // the queue before consuming again.
                if oversized::is_unreceivable(&cause) {
                    let frame_max = conn.configuration().frame_max();
                    let rescue = oversized::Rescue {
                        url: &settings.url,
                        service: &settings.service,
                        queue: &settings.queue,
                        prefetch: settings.prefetch,
                        dlq_queue: &settings.topology.dlq_queue,
                    };
                    let outcome = oversized::rescue(&rescue, frame_max).await;
                    oversized::report(&settings.queue, &outcome);
                }
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

/// Which of a consumer's two queues a delivery came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The work queue: always a first attempt.
    Work,
    /// The retry queue's way back (`<queue>.retry.due`): a later attempt, if `x-death` says so.
    RetryDue,
}

/// The queues one consumer owns: its work queue, its retry queue and the retry queue's way
/// back. These are the ones its watchdog reports when the broker refuses to declare them.
fn own_queues(queue: &str) -> [String; 3] {
    [
        queue.to_owned(),
        Topology::retry_queue(queue),
        Topology::retry_due_queue(queue),
    ]
}

/// One connection's worth of consuming. `Ok` on shutdown, `Err` when the connection broke.
async fn consume_session<H: Handler>(
    settings: &ConsumerSettings,
    conn: &Connection,
    handler: &Arc<H>,
    status: &BrokerStatus,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    // Refusals are logged once per session (a reconnect logs them again), not at every check.
    let mut told = BTreeSet::new();
    let declared = declare_topology(conn, &settings.topology).await?;
    note_refusals(settings, &declared, &mut told);
    let publisher = Publisher::open(conn).await?;
    let channel = conn.create_channel().await?;
    channel
        .basic_qos(settings.prefetch, BasicQosOptions::default())
        .await?;
    let tag = short(&format!("{}-{}", settings.service, std::process::id()))?;
    let due_tag = short(&format!("{tag}-retry-due"))?;
    let consume = |queue: String, tag: ShortString| {
        let channel = channel.clone();
        async move {
            channel
                .basic_consume(
                    short(&queue)?,
                    tag,
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(anyhow::Error::new)
        }
    };
    let mut work = consume(settings.queue.clone(), tag.clone()).await?;
    let mut due = consume(Topology::retry_due_queue(&settings.queue), due_tag.clone()).await?;
    status.set(true);
    info!(queue = %settings.queue, prefetch = settings.prefetch, "consuming");

    let session = Session {
        ended: shutdown.child_token(),
        topology_missing: Arc::new(Notify::new()),
    };
    // Cancelled only when a lost session gives up on its deliveries (LOST_SESSION_WAIT).
    let abandon = CancellationToken::new();
    let mut topology_check = tokio::time::interval(TOPOLOGY_CHECK);
    topology_check.reset();
    let tracker = TaskTracker::new();
    // One copy for the session's deliveries to share: cloning the settings (a dozen strings)
    // for every delivery showed in every service's profile.
    let shared = Arc::new(settings.clone());
    let spawn = |source: Source, delivery: Delivery| {
        // Boxed where it is made: a delivery's work is a future of several kilobytes (the
        // handler's Redis calls, the publishes, the spans), and unboxed every move on its way
        // into the task copied all of it. memcpy was a quarter of order-svc's instructions.
        let work = Box::pin(process(
            source,
            delivery,
            shared.clone(),
            handler.clone(),
            publisher.clone(),
            session.clone(),
        ));
        let abandon = abandon.clone();
        tracker.spawn(async move {
            tokio::select! {
                _ = abandon.cancelled() => {}
                () = work => {}
            }
        });
    };
    let result = loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break Ok(()),
            // A handler found the publishing channel dead (the broker closes a channel on some
            // errors while the connection lives on): start over on a fresh connection.
            _ = session.ended.cancelled() => break Err(anyhow::anyhow!("the publishing channel closed")),
            next = work.next() => match next {
                Some(Ok(delivery)) => spawn(Source::Work, delivery),
                Some(Err(e)) => break Err(anyhow::Error::new(e).context("consumer failed")),
                None => {
                    warn!(queue = %settings.queue, "the broker cancelled our consumer: was the queue deleted? \
                           Any messages it held are gone (the operator's loss); declaring it again");
                    break Err(anyhow::anyhow!("the broker cancelled our consumer"));
                }
            },
            next = due.next() => match next {
                Some(Ok(delivery)) => spawn(Source::RetryDue, delivery),
                Some(Err(e)) => break Err(anyhow::Error::new(e).context("consumer of the retry queue's way back failed")),
                None => break Err(anyhow::anyhow!("the broker cancelled our consumer of the retry queue's way back")),
            },
            _ = session.topology_missing.notified() => redeclare(conn, settings, &mut told, "a publish found it missing").await,
            _ = topology_check.tick() => {
                // The consumer streams normally end with the connection's error; should one
                // ever miss it, this notices the dead connection within one check.
                if !conn.status().connected() {
                    break Err(anyhow::anyhow!("the connection is no longer open"));
                }
                redeclare(conn, settings, &mut told, "periodic check").await;
            }
        }
    };

    if result.is_ok() {
        // Tell, then wait: no new deliveries, let in-flight ones finish and ack.
        for tag in [tag, due_tag] {
            let cancel = channel.basic_cancel(tag, BasicCancelOptions::default());
            let _ = tokio::time::timeout(GOODBYE_WAIT, cancel).await;
        }
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
        if tokio::time::timeout(LOST_SESSION_WAIT, tracker.wait())
            .await
            .is_err()
        {
            warn!(queue = %settings.queue, in_flight = tracker.len(),
                  "{} deliveries still in flight on the lost connection after {} s: letting go of them (the broker redelivers them)",
                  tracker.len(), LOST_SESSION_WAIT.as_secs());
            abandon.cancel();
            tracker.wait().await;
        }
    }
    result
}

/// A name for the broker, checked: AMQP short strings hold at most 255 bytes.
fn short(name: &str) -> anyhow::Result<ShortString> {
    ShortString::try_new(name).map_err(|e| anyhow::anyhow!("{name:?} cannot be an AMQP name: {e}"))
}

/// Declare the topology again; a failure is logged and left to the next check (a broken
/// connection shows up on the consumer stream anyway).
async fn redeclare(
    conn: &Connection,
    settings: &ConsumerSettings,
    told: &mut BTreeSet<String>,
    why: &str,
) {
    match declare_topology(conn, &settings.topology).await {
        Ok(declared) => {
            note_refusals(settings, &declared, told);
            debug!(queue = %settings.queue, why, "topology declared");
        }
        Err(e) => {
            warn!(queue = %settings.queue, cause = %e, why, "could not declare the topology; will try again");
        }
    }
}

/// Tell about the queues the broker refused to declare: each once per session in the log,
/// with what to do, and this consumer's own in its watchdog until they declare again.
fn note_refusals(settings: &ConsumerSettings, declared: &Declared, told: &mut BTreeSet<String>) {
    for refusal in &declared.refused {
        if told.insert(refusal.queue.clone()) {
            warn!(queue = %refusal.queue, cause = %refusal.cause,
                  "Queue {} refused by the broker ({}): {}; the other queues go on working",
                  refusal.queue, refusal.cause, refusal.advice());
        }
    }
    for queue in own_queues(&settings.queue) {
        let name = queue_name(&queue);
        match declared.refused.iter().find(|r| r.queue == queue) {
            Some(refusal) => {
                let why = format!("{}: {}", refusal.cause, refusal.advice());
                settings.watchdog.down(name, why);
            }
            None => {
                if settings.watchdog.up(&name) {
                    told.remove(&queue);
                    info!(queue = %queue, "Queue {queue} declared as the saga declares it again");
                }
            }
        }
    }
}

/// Where a delivery was first published and which attempt this is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    exchange: String,
    routing_key: String,
    attempt: u32,
}

impl Origin {
    /// A delivery from the work queue is a first attempt, as published, whatever its headers
    /// say; one from the retry queue's way back is the attempt after those its trusted retry
    /// headers count, as first published ([`Parked::of`]).
    fn of(source: Source, delivery: &Delivery, queue: &str) -> Self {
        let parked = match source {
            Source::Work => None,
            Source::RetryDue => Parked::of(&delivery.properties, &Topology::retry_queue(queue)),
        };
        match parked {
            Some(parked) => Self {
                exchange: parked.exchange,
                routing_key: parked.routing_key,
                attempt: parked.attempts.saturating_add(1),
            },
            None => Self {
                exchange: delivery.exchange.to_string(),
                routing_key: delivery.routing_key.to_string(),
                attempt: 1,
            },
        }
    }
}

/// Handle one delivery until it is settled (acked after its effects and announcements, its
/// parking or its DLQ entry are confirmed) or its session ends. A panic anywhere in here that
/// [`attempt`] did not already catch is a bug of the loop: as a last resort the message goes to
/// the DLQ with the panic as its reason, rather than be held or redelivered for ever.
async fn process<H: Handler>(
    source: Source,
    delivery: Delivery,
    settings: Arc<ConsumerSettings>,
    handler: Arc<H>,
    publisher: Publisher,
    session: Session,
) {
    let received = SystemTime::now();
    let origin = Origin::of(source, &delivery, &settings.queue);
    let opened = open_delivery(&delivery);
    let meta = DeliveryMeta::of(&delivery, &origin, opened.as_ref().ok());
    let order_id =
        saga_domain::wire::peek_order_id(opened.as_ref().map_or(&delivery.data[..], |o| &o.body));
    // Ids go into the span once, here: a handler run again for the same delivery must not add
    // another copy of them to every line.
    let span = info_span!(
        "delivery",
        queue = %settings.queue,
        routing_key = %meta.routing_key,
        redelivered = meta.redelivered,
        attempt = meta.attempt,
        order_id = order_id.as_deref().unwrap_or(""),
        correlation_id = meta.correlation_id.as_deref().unwrap_or(""),
    );
    let work = Delivered {
        delivery: &delivery,
        opened: &opened,
        origin: &origin,
        meta: &meta,
        order_id: order_id.as_deref(),
        settings: &settings,
        publisher: &publisher,
    };
    let settled = AssertUnwindSafe(settle(&work, handler.as_ref(), &session))
        .catch_unwind()
        .instrument(span.clone())
        .await;
    settings.spans.record(|| spans::Span {
        name: format!("{} process", settings.queue),
        kind: SpanKind::Consumer,
        trace: meta.trace.clone().unwrap_or_else(Trace::root),
        parent: trace_of(&delivery.properties).map(|sent| sent.context.span_id),
        start: received,
        end: SystemTime::now(),
        attributes: {
            let mut attributes = spans::messaging(
                "process",
                &origin.exchange,
                &meta.routing_key,
                meta.event_id.as_deref(),
                order_id.as_deref(),
            );
            // A redelivery is the story a trace should tell when a consumer died holding it.
            if meta.redelivered {
                attributes.push(("saga.redelivered", "true".to_owned()));
            }
            attributes
        },
        error: None,
    });
    if let Err(panic) = settled {
        let reason = format!(
            "panicked in the consume loop: {}",
            panic_message(panic.as_ref())
        );
        error!(parent: &span, cause = %reason, "Bug: {reason}; sending the message to the DLQ");
        let last_resort = AssertUnwindSafe(work.dead_letter(&reason, None))
            .catch_unwind()
            .await;
        if matches!(last_resort, Ok(Ok(_))) {
            work.ack().await;
        } else {
            // Nothing more to try here: a fresh session gets it again.
            session.ended.cancel();
        }
    }
}

/// Attempt the delivery and settle it as [`decide`] says, waiting outages out.
async fn settle<H: Handler>(work: &Delivered<'_>, handler: &H, session: &Session) {
    let mut backoff = Backoff::for_outages();
    loop {
        let (attempted, cause) = attempt(work, handler).await;
        // Made only when a delivery is not simply acked: an error captures a backtrace when
        // RUST_BACKTRACE is set, which had cost every delivery tens of microseconds.
        let cause = move || cause.unwrap_or_else(|| anyhow::anyhow!("(no error)"));
        let attempt_no = work.meta.attempt;
        let settled = match decide(attempted, attempt_no, &work.settings.retry) {
            Settle::Ack => {
                work.ack().await;
                return;
            }
            Settle::WaitOut => {
                let queue = work.settings.queue.clone();
                metrics::counter!("saga_retries_total", "queue" => queue, "kind" => "outage")
                    .increment(1);
                if !wait_out(&cause(), work.publisher, session, &mut backoff).await {
                    return;
                }
                continue;
            }
            Settle::Park => work.park(&cause()).await,
            Settle::DeadLetter if attempted == Attempted::Poison => work.poison(&cause()).await,
            Settle::DeadLetter => work.give_up(&cause()).await,
        };
        // Parked or dead-lettered: the copy is confirmed, so the delivery is settled. A copy
        // the broker did not take is an outage: wait, then attempt the delivery again (handlers
        // are idempotent, so whatever it did is not done twice).
        match settled {
            Ok(()) => {
                work.ack().await;
                return;
            }
            Err(e) => {
                if !wait_out(
                    &anyhow::Error::new(e),
                    work.publisher,
                    session,
                    &mut backoff,
                )
                .await
                {
                    return;
                }
            }
        }
    }
}

/// The largest message body a consumer reads; a larger one is poison, dead-lettered unread.
/// The saga's events are a few hundred bytes; 64 KiB leaves room for any tolerant-reader extra
/// field a lab script adds, and is the same order as order-svc's HTTP body limit (16 KiB).
pub const MAX_MESSAGE_BODY: usize = 64 * 1024;

/// One attempt: parse, handle, announce. What came of it, and the error (poison's reason, or
/// the failure) when there is one. A panic in the parser or the handler is a failure of this
/// message (`panicked: ...`), never a lost or held delivery.
async fn attempt<H: Handler>(
    work: &Delivered<'_>,
    handler: &H,
) -> (Attempted, Option<anyhow::Error>) {
    let queue = work.settings.queue.clone();
    let started = Instant::now();
    let parsed = match work.opened {
        Err(why) => Ok(Err(why.clone())),
        // A version this service does not read: never parsed, so that its parser cannot
        // report a misleading field error about a body of another shape.
        Ok(opened) => match readable(handler, work.meta, opened, &work.settings.service) {
            Err(why) => Ok(Err(why)),
            Ok(()) => std::panic::catch_unwind(|| H::parse(work.meta, &opened.body)),
        },
    };
    let event = match parsed {
        Ok(Ok(event)) => event,
        Ok(Err(Malformed(reason))) => {
            // Poison is decided by parsing alone; it counts as a delivery handled like any other.
            metrics::histogram!("saga_handler_seconds", "queue" => queue.clone())
                .record(started.elapsed().as_secs_f64());
            metrics::counter!("saga_consumed_total", "queue" => queue, "outcome" => "dead_lettered")
                .increment(1);
            return (Attempted::Poison, Some(anyhow::anyhow!(reason)));
        }
        Err(panic) => {
            let panicked = Panicked(format!("in parsing: {}", panic_message(panic.as_ref())));
            return failed(&queue, anyhow::Error::new(panicked));
        }
    };
    let started = Instant::now();
    let outcome = AssertUnwindSafe(handler.handle(&event, work.meta))
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            Outcome::Failed(anyhow::Error::new(Panicked(panic_message(panic.as_ref()))))
        });
    metrics::histogram!("saga_handler_seconds", "queue" => queue.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("saga_consumed_total", "queue" => queue.clone(), "outcome" => outcome.label())
        .increment(1);
    let (attempted, announce) = match outcome {
        Outcome::Processed(announce) => (Attempted::Processed, announce),
        Outcome::Duplicate(announce) => (Attempted::Duplicate, announce),
        Outcome::Failed(cause) => {
            let kind = retry::failure_kind(&cause);
            return (Attempted::Failed(kind), Some(cause));
        }
    };
    match work.announce(&announce).await {
        Ok(()) => (attempted, None),
        Err(e) => {
            let e = anyhow::Error::new(e);
            (Attempted::Failed(retry::failure_kind(&e)), Some(e))
        }
    }
}

/// The delivery out of its envelope (saga_domain::envelope::open), or why it cannot be read.
fn open_delivery(delivery: &Delivery) -> Result<Opened<'_>, Malformed> {
    let body = &delivery.data;
    if body.len() > MAX_MESSAGE_BODY {
        // Not even read: no event of the saga comes near this, and parsing a body of many
        // megabytes would hold a prefetch slot and memory for nothing.
        return Err(Malformed(format!(
            "body of {} bytes is over the limit of {MAX_MESSAGE_BODY} bytes",
            body.len()
        )));
    }
    let props = &delivery.properties;
    let specversion = header_str(props.headers(), CLOUD_EVENTS_SPECVERSION_HEADER);
    let transport = Transport {
        content_type: props.content_type().as_ref().map(ShortString::as_str),
        cloud_events_specversion: specversion.as_deref(),
    };
    let opened = envelope::open(transport, body)?;
    // One message, one version: an envelope and a header that disagree leave no way to know
    // which reader should see it (docs/DESIGN.md §3, the version rule).
    if let (Some(said), Some(header)) = (
        opened.version.as_deref(),
        header_str(props.headers(), SCHEMA_VERSION_HEADER),
    ) && SchemaVersion::parse(&header).ok() != SchemaVersion::parse(said).ok()
    {
        return Err(Malformed(format!(
            "the message states two versions: {SCHEMA_VERSION_HEADER} {header:?} and {} {said:?}",
            opened.shape
        )));
    }
    Ok(opened)
}

/// Whether `H` reads the event the delivery carries, at the schema version it states (none
/// stated is 1.0). An envelope that names another event than its routing key is poison; a
/// delivery that is no event we know is left to the parser, which says what it is not.
fn readable<H: Handler>(
    handler: &H,
    meta: &DeliveryMeta,
    opened: &Opened<'_>,
    service: &str,
) -> Result<(), Malformed> {
    let version = SchemaVersion::of_header(meta.schema_version.as_deref())?;
    match opened.event_type(&meta.routing_key, meta.kind.as_deref())? {
        Some(event) => check_readable(event, version, handler.reads(event), service),
        None => Ok(()),
    }
}

/// A failure before the handler ran (a panicking parser): counted like a handler's.
fn failed(queue: &str, cause: anyhow::Error) -> (Attempted, Option<anyhow::Error>) {
    metrics::counter!("saga_consumed_total", "queue" => queue.to_owned(), "outcome" => "retried")
        .increment(1);
    (Attempted::Failed(retry::failure_kind(&cause)), Some(cause))
}

/// One delivery on its way through the loop, with what settling it takes.
struct Delivered<'a> {
    delivery: &'a Delivery,
    /// The delivery out of its envelope, or why it cannot be read (poison).
    opened: &'a Result<Opened<'a>, Malformed>,
    origin: &'a Origin,
    meta: &'a DeliveryMeta,
    order_id: Option<&'a str>,
    settings: &'a ConsumerSettings,
    publisher: &'a Publisher,
}

impl Delivered<'_> {
    fn order(&self) -> &str {
        self.order_id.unwrap_or("?")
    }

    async fn ack(&self) {
        if let Err(e) = self.delivery.acker.ack(BasicAckOptions::default()).await {
            // The channel died after the work was done: the broker redelivers, we dedupe.
            warn!(cause = %e, "ack failed; the message will be redelivered and deduplicated");
        }
    }

    /// Publish the handler's announcements in order, each confirmed before the delivery is
    /// acked. Every publish is queued before any confirm is awaited (an outcome and its stock
    /// events leave in order and their confirms come back together: one wait, not one per
    /// event). Should one fail, the others may have gone out; the delivery is not acked, so
    /// all are sent again with the same ids and consumers dedupe.
    async fn announce(&self, announce: &[Announcement]) -> Result<(), PublishError> {
        let exchange = &self.settings.topology.exchange;
        let publishes = announce.iter().map(|a| async move {
            let order_id = saga_domain::wire::peek_order_id(&a.body);
            // The publish's own span: a child of what produced the event, this delivery's
            // span unless the handler said otherwise.
            let parent = a.meta.trace.as_ref().or(self.meta.trace.as_ref());
            let publish = parent.map(Trace::child);
            let stamp = Stamp {
                trace: publish.as_ref(),
                ..a.meta.stamp(order_id.as_deref())
            };
            let (body, properties) = outgoing(&stamp, self.settings.envelope, &a.body);
            let started = SystemTime::now();
            let routing_key = a.meta.event_type.routing_key();
            let published = match self
                .publisher
                .send(exchange, routing_key, &body, properties)
                .await
            {
                Ok(pending) => pending.confirmed().await,
                Err(e) => Err(e),
            };
            self.settings.spans.record(|| spans::Span {
                name: format!("{routing_key} publish"),
                kind: SpanKind::Producer,
                trace: publish.clone().unwrap_or_else(Trace::root),
                parent: parent.map(|t| t.context.span_id),
                start: started,
                end: SystemTime::now(),
                attributes: spans::messaging(
                    "send",
                    exchange,
                    routing_key,
                    Some(&a.meta.event_id),
                    order_id.as_deref(),
                ),
                error: published.as_ref().err().map(ToString::to_string),
            });
            published
        });
        futures_util::future::join_all(publishes)
            .await
            .into_iter()
            .collect()
    }

    /// Poison: to the DLQ as it is, noted on the order's timeline. Never retried.
    async fn poison(&self, cause: &anyhow::Error) -> Result<(), PublishError> {
        let reason = format!("{cause:#}");
        let reason = self.dead_letter(&reason, None).await?;
        let order = self.order();
        warn!(reason = %reason, dlq = %self.settings.topology.dlq_queue,
              "Malformed message for order {order}: {reason}, routed to DLQ");
        Ok(())
    }

    /// A failure that is not an outage, with attempts left: park the message in the retry
    /// queue; it comes back through the retry queue's way back after the delay.
    async fn park(&self, cause: &anyhow::Error) -> Result<(), PublishError> {
        let settings = self.settings;
        let (reason, attempt, order) = (format!("{cause:#}"), self.meta.attempt, self.order());
        let attempts = settings.retry.count + 1;
        let retry_queue = Topology::retry_queue(&settings.queue);
        let parked = Parked {
            attempts: attempt,
            exchange: self.origin.exchange.clone(),
            routing_key: self.origin.routing_key.clone(),
        };
        let (properties, dropped) = retry::parked_properties(
            &copy_properties(&self.delivery.properties),
            &parked,
            settings.retry.delay,
            self.publisher.header_budget(),
        );
        if !dropped.is_empty() {
            warn!(dropped = ?dropped, "Headers too large to park with order {order}'s message, left out of its copy: {}",
                  dropped.join(", "));
        }
        self.publisher
            .publish("", &retry_queue, &self.delivery.data, properties)
            .await?;
        metrics::counter!("saga_retries_total", "queue" => settings.queue.clone(), "kind" => "delayed")
            .increment(1);
        let delay = humantime::format_duration(settings.retry.delay);
        warn!(cause = %reason, retry_queue,
              "Attempt {attempt} of {attempts} failed for order {order}: {reason}; retrying in {delay}");
        Ok(())
    }

    /// Attempts spent: to the DLQ with the last error as the reason.
    async fn give_up(&self, cause: &anyhow::Error) -> Result<(), PublishError> {
        let settings = self.settings;
        let (attempt, order) = (self.meta.attempt, self.order());
        let reason = self
            .dead_letter(&format!("{cause:#}"), Some(attempt))
            .await?;
        metrics::counter!("saga_retry_give_ups_total", "queue" => settings.queue.clone())
            .increment(1);
        error!(reason = %reason, dlq = %settings.topology.dlq_queue,
               "Gave up on order {order} after {attempt} attempts: {reason}; routed to DLQ");
        Ok(())
    }

    /// Publish the delivery to the DLQ byte-for-byte, with headers saying why, wait for the
    /// confirm, and note the hop on the order's timeline. Headers of the sender's that would
    /// not fit the frame are left out of the copy, and the reason says which. Returns the
    /// reason as written.
    async fn dead_letter(
        &self,
        reason: &str,
        attempts: Option<u32>,
    ) -> Result<String, PublishError> {
        let (delivery, settings, origin) = (self.delivery, self.settings, self.origin);
        let mut reason = headers::truncate(reason, headers::MAX_REASON);
        let ours = headers::dlq_headers(&DlqHeaders {
            reason: reason.clone(),
            service: Some(settings.service.clone()),
            exchange: Some(origin.exchange.clone()),
            routing_key: Some(origin.routing_key.clone()),
            queue: Some(settings.queue.clone()),
            at: Some(unix_now_secs()),
            attempts,
        });
        let budget = self
            .publisher
            .header_budget()
            .saturating_sub(headers::DROPPED_NOTE);
        let mut fitted = headers::fit(delivery.properties.headers().as_ref(), &ours, budget);
        if !fitted.dropped.is_empty() {
            reason = headers::with_dropped_note(&reason, &fitted.dropped);
            let text = AMQPValue::LongString(LongString::from(reason.as_bytes().to_vec()));
            fitted.headers.insert(dlq::header::REASON.into(), text);
        }
        let properties = copy_properties(&delivery.properties)
            .with_headers(fitted.headers)
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
                reason: reason.clone(),
                redelivered: self.meta.redelivered,
                attempts,
            };
            timeline.record_dlq_hop(order_id, &hop).await;
        }
        Ok(reason)
    }
}

/// A delivery's properties for a copy we publish: all of them but two the broker would hold
/// against the copy. `expiration`: a copy in the DLQ must not vanish when the sender's TTL ends
/// (the retry queue sets its own). `user_id`: the broker refuses a publish whose `user_id` is not
/// the publishing user, which would close our channel on every attempt.
fn copy_properties(p: &BasicProperties) -> BasicProperties {
    let mut copy = BasicProperties::default();
    if let Some(v) = p.content_type() {
        copy = copy.with_content_type(v.clone());
    }
    if let Some(v) = p.content_encoding() {
        copy = copy.with_content_encoding(v.clone());
    }
    if let Some(v) = p.headers() {
        copy = copy.with_headers(v.clone());
    }
    if let Some(v) = p.delivery_mode() {
        copy = copy.with_delivery_mode(*v);
    }
    if let Some(v) = p.priority() {
        copy = copy.with_priority(*v);
    }
    if let Some(v) = p.correlation_id() {
        copy = copy.with_correlation_id(v.clone());
    }
    if let Some(v) = p.reply_to() {
        copy = copy.with_reply_to(v.clone());
    }
    if let Some(v) = p.message_id() {
        copy = copy.with_message_id(v.clone());
    }
    if let Some(v) = p.timestamp() {
        copy = copy.with_timestamp(*v);
    }
    if let Some(v) = p.kind() {
        copy = copy.with_type(v.clone());
    }
    if let Some(v) = p.app_id() {
        copy = copy.with_app_id(v.clone());
    }
    if let Some(v) = p.cluster_id() {
        copy = copy.with_cluster_id(v.clone());
    }
    copy
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_of_the_decision() {
        use Attempted::*;
        use FailureKind::*;
        use Settle::*;
        let policy = RetryPolicy {
            count: 2,
            delay: Duration::from_secs(1),
        };
        // (what happened, attempt number, how it is settled)
        let rows = [
            (Processed, 1, Ack),
            (Processed, 9, Ack),
            (Duplicate, 1, Ack),
            (Duplicate, 3, Ack),
            (Poison, 1, DeadLetter),
            (Poison, 3, DeadLetter),
            (Failed(Outage), 1, WaitOut),
            (Failed(Outage), 3, WaitOut),
            (Failed(Outage), 99, WaitOut),
            (Failed(Fault), 1, Park),
            (Failed(Fault), 2, Park),
            (Failed(Fault), 3, DeadLetter),
            (Failed(Fault), 99, DeadLetter),
        ];
        for (what, attempt, settle) in rows {
            assert_eq!(
                decide(what, attempt, &policy),
                settle,
                "{what:?} on attempt {attempt}"
            );
        }
        let never = RetryPolicy { count: 0, ..policy };
        assert_eq!(decide(Failed(Fault), 1, &never), DeadLetter);
        assert_eq!(decide(Failed(Outage), 1, &never), WaitOut);
    }

    #[test]
    fn copies_keep_every_property_but_expiration_and_user_id() {
        let original = BasicProperties::default()
            .with_message_id("m".into())
            .with_correlation_id("c".into())
            .with_type("OrderPlaced".into())
            .with_expiration("1".into())
            .with_user_id("someone".into())
            .with_priority(3)
            .with_timestamp(7);
        let copy = copy_properties(&original);
        assert_eq!(copy.expiration(), &None);
        assert_eq!(copy.user_id(), &None);
        let cleared = original.clone();
        let cleared = copy_properties(&cleared);
        assert_eq!(cleared.message_id(), original.message_id());
        assert_eq!(cleared.correlation_id(), original.correlation_id());
        assert_eq!(cleared.kind(), original.kind());
        assert_eq!(cleared.priority(), original.priority());
        assert_eq!(cleared.timestamp(), original.timestamp());
    }
}
