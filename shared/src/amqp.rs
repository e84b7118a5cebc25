//! RabbitMQ plumbing: connect with backoff, publish with confirms, declare the topology.
//!
//! The consume loop that decides what happens to each delivery lives in [`crate::consumer`].
//! Connection loss is handled by explicit reconnect loops rather than lapin's auto-recovery:
//! every unacked delivery is redelivered by the broker on the new connection, and every consumer
//! is idempotent, so "start over" is always safe and easy to reason about. Every (re)connect
//! declares the topology again ([`declare_topology`]), so a broker that lost it heals.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::backoff::Backoff;
use crate::config::redact_url;
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

/// Declare the whole topology on a channel of its own, then close it. A refusal closes only
/// that channel, never the caller's.
///
/// # Errors
/// The broker refused a declaration (e.g. 406 for a queue someone declared differently) or the
/// connection is gone.
pub async fn declare_topology(conn: &Connection, topology: &Topology) -> lapin::Result<()> {
    let channel = conn.create_channel().await?;
    let declared = topology.declare(&channel).await;
    let _ = tokio::time::timeout(GOODBYE_WAIT, channel.close(200, "declared".into())).await;
    declared
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

impl PublishError {
    /// Whether the broker lacks part of the topology this publish needed: the message came back
    /// unroutable (a binding or queue is gone), or the exchange was not found (which also
    /// closes the channel). Either way, declaring the topology again is the cure.
    pub fn topology_missing(&self) -> bool {
        match self {
            Self::Unroutable(_) => true,
            Self::Broker(e) => e.to_string().contains("NOT_FOUND"),
            Self::Nacked => false,
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
