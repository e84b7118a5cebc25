//! The broker as `sagactl` uses it: one short-lived connection, exact queue depths, and taking
//! messages off a queue without losing them.
//!
//! Unlike the services, `sagactl` does not retry a missing broker: a person is waiting, so it
//! says at once what it could not reach. With a list of nodes (a cluster), it tries each once,
//! from a random one on, like the services do.

use std::time::Duration;

use anyhow::{Context, anyhow};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions};
use lapin::{Channel, Connection};
use saga_platform::amqp::nodes::BrokerNodes;

/// How long `sagactl` waits for a broker that accepts the connection but does not answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Connect once (each node of a list in turn), named `sagactl` so it is easy to spot in the
/// management UI.
///
/// # Errors
/// No node accepted us; the message says why for each.
pub async fn connect(url: &str) -> anyhow::Result<Connection> {
    connect_named(url, "sagactl").await
}

/// Connect once under a name of the caller's (the board names its own, so that closing "every
/// connection" from the board can spare the board's).
///
/// # Errors
/// The broker refused us or did not answer within a few seconds.
pub async fn connect_named(url: &str, name: &str) -> anyhow::Result<Connection> {
    tokio::time::timeout(
        CONNECT_TIMEOUT,
        saga_platform::amqp::connect_once(url, name),
    )
    .await
    .map_err(|_| {
        anyhow!(
            "cannot reach RabbitMQ: no answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        )
    })?
}

/// The vhost an AMQP URL (or every node of a list) names: its path, percent-decoded (`%2f` is `/`).
///
/// # Errors
/// Not an AMQP URL (config validation normally refuses those first).
pub fn vhost_of(url: &str) -> anyhow::Result<String> {
    BrokerNodes::parse(url)
        .map(|nodes| nodes.vhost().to_owned())
        .map_err(|e| anyhow!("{e}"))
}

pub use saga_platform::amqp::{Depth, depth};

/// Messages taken from a queue with `basic_get` and not acked yet.
///
/// While we hold them nobody else gets them; whatever we do not ack goes back to the queue, in
/// its place, when we [`Held::requeue_rest`] or when the channel closes for any reason (even if
/// `sagactl` dies). That is what makes "look at the DLQ" safe: looking never loses a message.
pub struct Held {
    channel: Channel,
    pub messages: Vec<Delivery>,
    acked: Vec<bool>,
}

impl Held {
    /// Take up to `limit` messages from `queue` without acking them.
    ///
    /// # Errors
    /// The queue does not exist or the broker went away.
    pub async fn take(conn: &Connection, queue: &str, limit: usize) -> anyhow::Result<Self> {
        let channel = conn.create_channel().await?;
        let mut messages = Vec::new();
        while messages.len() < limit {
            let got = channel
                .basic_get(queue.into(), BasicGetOptions { no_ack: false })
                .await
                .with_context(|| format!("cannot read from queue {queue:?}"))?;
            match got {
                Some(message) => messages.push(message.delivery),
                None => break,
            }
        }
        let acked = vec![false; messages.len()];
        Ok(Self {
            channel,
            messages,
            acked,
        })
    }

    /// Remove message `index` from the queue for good.
    ///
    /// # Errors
    /// The channel died: the message stays in the queue.
    pub async fn ack(&mut self, index: usize) -> anyhow::Result<()> {
        let Some(message) = self.messages.get(index) else {
            return Err(anyhow!("no held message #{index}"));
        };
        self.channel
            .basic_ack(message.delivery_tag, BasicAckOptions::default())
            .await?;
        self.acked[index] = true;
        Ok(())
    }

    /// Put every message not acked back in the queue, then close the channel.
    ///
    /// # Errors
    /// The channel had already died, which requeues them just the same.
    pub async fn requeue_rest(self) -> anyhow::Result<()> {
        let requeue = BasicNackOptions {
            multiple: false,
            requeue: true,
        };
        for (message, acked) in self.messages.iter().zip(&self.acked) {
            if !acked {
                self.channel
                    .basic_nack(message.delivery_tag, requeue)
                    .await?;
            }
        }
        self.channel.close(200, "done".into()).await?;
        Ok(())
    }
}
