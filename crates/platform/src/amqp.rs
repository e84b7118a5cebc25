//! RabbitMQ: everything the services do with the broker.
//!
//! - this module: connect with backoff, publish with confirms, declare the topology, queue depth.
//! - [`nodes`]: `RABBITMQ_URL` as a list of cluster nodes: validated, redacted, tried in turn.
//! - [`topology`]: the exchange, queues and bindings, declared idempotently by every service.
//! - [`properties`]: the domain's event metadata as AMQP properties, and which event a delivery
//!   carries.
//! - [`consumer`]: the consume loop that turns a handler's [`consumer::Outcome`] into ack,
//!   dead-letter or retry.
//! - [`retry`]: the retry policy and its mechanics: an outage is waited out, any other failure is
//!   retried a few times through a retry queue, then dead-lettered.
//! - [`headers`]: copies of a message's headers made to fit one AMQP frame, and the DLQ copy's own.
//! - [`oversized`]: taking off a queue a message lapin cannot receive (grown past the frame by
//!   the broker, or with properties it cannot parse), read by [`head_reader`], a reader of queue
//!   heads that takes any frame.
//!
//! The consume loop that decides what happens to each delivery lives in [`consumer`].
//! Connection loss is handled by explicit reconnect loops rather than lapin's auto-recovery:
//! every unacked delivery is redelivered by the broker on the new connection, and every consumer
//! is idempotent, so "start over" is always safe and easy to reason about. Every (re)connect
//! declares the topology again ([`declare_topology`]), so a broker that lost it heals.
//!
//! `RABBITMQ_URL` may list several nodes of one cluster ([`nodes`]): [`connect`] starts at
//! a random one and moves on to the next when one does not answer, so losing a node costs a
//! reconnect, not an outage.

pub mod consumer;
pub mod head_reader;
pub mod headers;
pub mod nodes;
pub mod oversized;
pub mod properties;
pub mod retry;
pub mod topology;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::amqp::nodes::{BrokerNodes, Node};
use crate::amqp::topology::Topology;
use crate::service::backoff::Backoff;
use crate::service::config::redact_url;

/// How full a queue is right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Depth {
    /// Messages ready for delivery (not those a consumer holds unacked).
    pub messages: u32,
    pub consumers: u32,
}

/// A queue's depth from a *passive* declare: exact and immediate, unlike the management API,
/// whose numbers are sampled every few seconds. Passive means "tell me, never create".
///
/// A missing queue makes the broker close `channel` (404); use a fresh one afterwards.
///
/// # Errors
/// The queue does not exist, or the channel is unusable.
pub async fn depth(channel: &Channel, queue: &str) -> anyhow::Result<Depth> {
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("cannot read the depth of queue {queue:?} (does it exist?)"))?;
    Ok(Depth {
        messages: declared.message_count(),
        consumers: declared.consumer_count(),
    })
}

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

/// Why the last round of connecting found no node (cleared by the next success): what `/ready`
/// shows while the broker is down. One per process: all its connections go to the same nodes.
static LAST_CONNECT_FAILURE: Mutex<Option<String>> = Mutex::new(None);

/// Why the broker could not be reached, the last time no node answered (`None` since a success).
pub fn last_connect_failure() -> Option<String> {
    LAST_CONNECT_FAILURE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

fn note_connect_failure(failure: Option<String>) {
    *LAST_CONNECT_FAILURE
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = failure;
}

/// How long one node may take to accept a connection before the next is tried. A dead node
/// refuses at once; this bounds a hung one.
const NODE_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest a goodbye to the broker may take. A broker that blocks publishers (a memory or
/// disk alarm) stops reading from their connections, so a close, or a cancel, could otherwise
/// wait for ever and keep a SIGTERM'd service from exiting.
pub const GOODBYE_WAIT: Duration = Duration::from_secs(2);

/// Close `conn`, but give up after [`GOODBYE_WAIT`]: the broker notices the socket going away.
pub async fn close_connection(conn: &Connection, code: u16, reason: &str) {
    let _ = tokio::time::timeout(GOODBYE_WAIT, conn.close(code, reason.into())).await;
}

/// The frame size a consuming connection asks for: RabbitMQ's default (and usual) `frame_max`.
///
/// A message's properties travel in one content-header frame, which the broker cannot split:
/// it delivers a message whose headers took 120 KB in a 120 KB frame, whatever smaller size the
/// consumer negotiated, and lapin then closes the connection (FRAME-ERROR). The message comes
/// back first after every reconnect, and the consumer is stopped for good. So a consumer must
/// accept any frame the broker accepts from a publisher. It costs lapin's buffers (32 frames
/// each way) about 8 MiB per consuming connection; publish-only connections keep the small
/// frames of [`crate::amqp::nodes::FRAME_MAX`].
pub const CONSUMER_FRAME_MAX: u32 = 131_072;

/// Connect, retrying with capped backoff until a node answers or shutdown is asked. Every node
/// of the list is tried once per round, from a random one on; the wait between rounds grows.
/// Logs the first failed round and then only every power-of-two round.
pub async fn connect(url: &str, name: &str, shutdown: &CancellationToken) -> Option<Connection> {
    connect_with(url, name, None, shutdown).await
}

/// [`connect`] for a connection that consumes: frames of at least [`CONSUMER_FRAME_MAX`].
pub async fn connect_consumer(
    url: &str,
    name: &str,
    shutdown: &CancellationToken,
) -> Option<Connection> {
    connect_with(url, name, Some(CONSUMER_FRAME_MAX), shutdown).await
}

async fn connect_with(
    url: &str,
    name: &str,
    frame_max: Option<u32>,
    shutdown: &CancellationToken,
) -> Option<Connection> {
    let mut backoff = Backoff::for_outages();
    loop {
        let round = tokio::select! {
            _ = shutdown.cancelled() => return None,
            round = connect_round(url, name, frame_max) => round,
        };
        let err = match round {
            Ok((conn, node)) => {
                info!(broker = %node, connection = name, "connected to the broker");
                metrics::counter!("saga_broker_connects_total").increment(1);
                note_connect_failure(None);
                return Some(conn);
            }
            Err(err) => err,
        };
        note_connect_failure(Some(err.clone()));
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

/// Connect once, trying each node in turn (for `sagactl` and tests: a person is waiting, so no
/// retry rounds).
///
/// # Errors
/// No node accepted the connection; the message names each node's failure.
pub async fn connect_once(url: &str, name: &str) -> anyhow::Result<Connection> {
    // sagactl reads messages (the DLQ, a peek at a queue) whose headers may be as large as the
    // broker allows: the same frames as a consumer, or lapin drops the connection on them.
    connect_round(url, name, Some(CONSUMER_FRAME_MAX))
        .await
        .map(|(conn, _)| conn)
        .map_err(|e| anyhow::anyhow!("cannot reach RabbitMQ: {e}"))
}

/// One round: every node once, from a random one on. The connection and the node it went to,
/// or why each node failed.
/// `frame_max`, if given, is the least frame size to ask for (a URL may ask for more).
async fn connect_round(
    url: &str,
    name: &str,
    frame_max: Option<u32>,
) -> Result<(Connection, String), String> {
    let props = || ConnectionProperties::default().with_connection_name(name.into());
    let nodes = match BrokerNodes::parse(url) {
        Ok(nodes) => nodes,
        // Not a URL we can read (config validation refuses those first): lapin says why.
        Err(_) => {
            return match Connection::connect(url, props()).await {
                Ok(conn) => Ok((conn, redact_url(url))),
                Err(e) => Err(e.to_string()),
            };
        }
    };
    let mut failures = Vec::with_capacity(nodes.len());
    for Node { uri, shown } in nodes.in_turn() {
        let mut uri = uri.clone();
        if let Some(least) = frame_max {
            uri.query.frame_max = Some(uri.query.frame_max.map_or(least, |f| f.max(least)));
        }
        let attempt =
            tokio::time::timeout(NODE_CONNECT_TIMEOUT, Connection::connect_uri(uri, props())).await;
        let why = match attempt {
            Ok(Ok(conn)) => return Ok((conn, shown.clone())),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} s", NODE_CONNECT_TIMEOUT.as_secs()),
        };
        failures.push(if nodes.len() > 1 {
            format!("{shown}: {why}")
        } else {
            why
        });
    }
    Err(if nodes.len() > 1 {
        format!(
            "none of the {} nodes answered ({})",
            nodes.len(),
            failures.join("; ")
        )
    } else {
        failures.join("; ")
    })
}

/// How long a declaration of the whole topology may take. A quorum queue that lost its
/// majority does not answer; without a bound the caller would wait for ever.
pub const DECLARE_TIMEOUT: Duration = Duration::from_secs(10);

/// What declaring the topology came to: the queues the broker refused, each with why. The
/// exchange and every other queue were declared and bound.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declared {
    pub refused: Vec<Refusal>,
}

/// A queue the broker would not declare as the saga declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub queue: String,
    /// The broker's words, e.g. `PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' ...`.
    pub cause: String,
}

impl Refusal {
    /// What an operator can do about it.
    pub fn advice(&self) -> &'static str {
        if self.cause.contains("PRECONDITION_FAILED") || self.cause.contains("406") {
            if self.queue.ends_with(".retry") {
                "it exists with other arguments than the saga declares (an older version's \
                 retry queue?); it is replaced by itself once empty, or delete it"
            } else {
                "it exists with other arguments than the saga declares; delete it or declare \
                 it without arguments (the services declare it again by themselves)"
            }
        } else {
            "the broker refused to declare it; see its reason"
        }
    }
}

/// Declare the whole topology, queue by queue, on channels of its own, then close them. A queue
/// the broker refuses (406: someone declared it with other arguments; the broker then closes
/// the channel) is reported in [`Declared::refused`] and the next queue is declared on a fresh
/// channel: one bad queue stops only itself. A refusal never closes the caller's channels.
///
/// # Errors
/// The exchange was refused, or the connection is gone, or the broker did not answer within
/// [`DECLARE_TIMEOUT`].
pub async fn declare_topology(conn: &Connection, topology: &Topology) -> lapin::Result<Declared> {
    match tokio::time::timeout(DECLARE_TIMEOUT, declare_each(conn, topology)).await {
        Ok(declared) => declared,
        Err(_) => Err(lapin::Error::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "the broker did not answer the topology's declarations within {} s \
                 (a quorum queue without a majority of its nodes?)",
                DECLARE_TIMEOUT.as_secs()
            ),
        ))),
    }
}

async fn declare_each(conn: &Connection, topology: &Topology) -> lapin::Result<Declared> {
    let mut channel = conn.create_channel().await?;
    let mut declared = Declared::default();
    let exchange = topology.declare_exchange(&channel).await;
    if let Err(e) = exchange {
        let _ = tokio::time::timeout(GOODBYE_WAIT, channel.close(200, "declared".into())).await;
        return Err(e);
    }
    for queue in topology.declarations() {
        let Err(e) = queue.declare(&channel, &topology.exchange).await else {
            continue;
        };
        // A refusal closes this channel, a lost connection every channel: a fresh channel
        // tells the two apart.
        channel = conn.create_channel().await.map_err(|_| e.clone())?;
        if queue.replaceable && replace_if_empty(&channel, &queue, &topology.exchange).await {
            continue;
        }
        channel = fresh(conn, channel).await?;
        declared.refused.push(Refusal {
            queue: queue.name,
            cause: e.to_string(),
        });
    }
    let _ = tokio::time::timeout(GOODBYE_WAIT, channel.close(200, "declared".into())).await;
    Ok(declared)
}

/// A helper queue of ours that exists with other arguments (an older version declared it so):
/// delete it if it is empty (the broker checks, atomically) and declare it as it should be.
/// Whether that worked. A queue with messages stays: they leave by themselves (a retry queue's
/// expire), and a later declaration replaces it.
async fn replace_if_empty(
    channel: &Channel,
    queue: &crate::amqp::topology::QueueDeclaration,
    exchange: &str,
) -> bool {
    let Ok(name) = ShortString::try_new(queue.name.as_str()) else {
        return false;
    };
    let options = QueueDeleteOptions {
        if_empty: true,
        ..Default::default()
    };
    if channel.queue_delete(name, options).await.is_err() {
        return false;
    }
    let replaced = queue.declare(channel, exchange).await.is_ok();
    if replaced {
        info!(queue = %queue.name, "Queue {} had other arguments (an older version's) and was empty: declared anew", queue.name);
    }
    replaced
}

/// `channel` if it is still open, else a new one on `conn`.
async fn fresh(conn: &Connection, channel: Channel) -> lapin::Result<Channel> {
    if channel.status().connected() {
        Ok(channel)
    } else {
        conn.create_channel().await
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
    /// A name (exchange or routing key) no AMQP short string can hold: nothing to retry.
    #[error("{0}")]
    Name(String),
}

impl PublishError {
    /// The `reason` label of `saga_publish_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Broker(_) => "broker",
            Self::Nacked => "nacked",
            Self::Unroutable(_) => "unroutable",
            Self::Name(_) => "name",
        }
    }

    /// Count a publish that did not take (`saga_publish_failures_total{routing_key,reason}`),
    /// the mirror of `saga_published_total`, so that an alert can see publishes failing.
    fn counted(self, routing_key: &str) -> Self {
        metrics::counter!("saga_publish_failures_total",
            "routing_key" => routing_key.to_owned(), "reason" => self.reason())
        .increment(1);
        self
    }
}

/// The broker adapter's verdict on its errors ([`crate::amqp::retry::Classify`]).
impl crate::amqp::retry::Classify for PublishError {
    fn failure_kind(&self) -> saga_domain::retry::FailureKind {
        use saga_domain::retry::FailureKind::{Fault, Outage};
        match self {
            // A dead channel or connection, a refusal under load (nack), a missing binding or
            // queue (declared again): each passes, and the publish is tried again.
            Self::Broker(_) | Self::Nacked | Self::Unroutable(_) => Outage,
            Self::Name(_) => Fault,
        }
    }
}

/// Any other error of the AMQP client (a channel or connection closed under us) is the broker
/// being away: an outage.
impl crate::amqp::retry::Classify for lapin::Error {
    fn failure_kind(&self) -> saga_domain::retry::FailureKind {
        saga_domain::retry::FailureKind::Outage
    }
}

/// A channel in confirm mode. Every publish waits for the broker's confirm (invariant 5); many
/// tasks may publish on it at once, so confirms are awaited concurrently.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
    /// How many bytes the headers of a message may take on this connection
    /// ([`crate::amqp::headers::budget_for`] its negotiated frame size).
    header_budget: usize,
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
        let header_budget = crate::amqp::headers::budget_for(conn.configuration().frame_max());
        Ok(Self {
            channel,
            header_budget,
        })
    }

    /// How many bytes a message's headers may take on this connection: copies of deliveries
    /// are made to fit it ([`crate::amqp::headers::fit`]).
    pub fn header_budget(&self) -> usize {
        self.header_budget
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
        let name = |name: &str| {
            ShortString::try_new(name)
                .map_err(|e| PublishError::Name(format!("{name:?} cannot be an AMQP name: {e}")))
        };
        let sent = async {
            Ok(self
                .channel
                .basic_publish(
                    name(exchange)?,
                    name(routing_key)?,
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    body,
                    properties,
                )
                .await?)
        };
        let confirm = sent
            .await
            .map_err(|e: PublishError| e.counted(routing_key))?;
        Ok(PendingConfirm {
            confirm,
            routing_key: routing_key.to_owned(),
        })
    }

    pub fn is_open(&self) -> bool {
        self.channel.status().connected()
    }
}

impl PublishError {
    /// Whether the broker lacks part of the topology this publish needed: the message came back
    /// unroutable (a binding or queue is gone), or the exchange was not found (which also
    /// closes the channel). Either way, declaring the topology again is the cure.
    pub fn topology_missing(&self) -> bool {
        match self {
            Self::Unroutable(_) => true,
            Self::Broker(e) => e.to_string().contains("NOT_FOUND"),
            Self::Nacked | Self::Name(_) => false,
        }
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
        let verdict = match self.confirm.await {
            Err(e) => Err(PublishError::from(e)),
            Ok(c) if c.is_nack() => Err(PublishError::Nacked),
            Ok(c) => match c.take_message() {
                Some(_) => Err(PublishError::Unroutable(self.routing_key.clone())),
                None => Ok(()),
            },
        };
        verdict.map_err(|e| e.counted(&self.routing_key))?;
        metrics::counter!("saga_published_total", "routing_key" => self.routing_key).increment(1);
        Ok(())
    }
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
    fn a_failed_publish_is_counted_by_routing_key_and_reason() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let metrics = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let e = PublishError::Nacked.counted("order.placed");
            assert!(matches!(e, PublishError::Nacked), "the error is passed on");
            PublishError::Unroutable("order.placed".into()).counted("order.placed");
            PublishError::Unroutable("order.placed".into()).counted("order.placed");
        });
        let text = metrics.render();
        for line in [
            r#"saga_publish_failures_total{routing_key="order.placed",reason="nacked"} 1"#,
            r#"saga_publish_failures_total{routing_key="order.placed",reason="unroutable"} 2"#,
        ] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
    }
}
