//! Talking to the broker the way a lab script (pika) would: raw publishes, passive declares.

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
    ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use saga_platform::amqp::properties::header_str;

use crate::TestEnv;

/// The routing keys of an order's events: a tap bound to them sees the saga's events, not the
/// catalog's product events (which have tests of their own, tests/it/catalog.rs).
pub const SAGA_KEYS: [&str; 2] = ["order.#", "inventory.#"];

/// A message taken off a queue.
#[derive(Debug, Clone)]
pub struct Taken {
    pub body: Vec<u8>,
    pub routing_key: String,
    pub properties: BasicProperties,
}

impl Taken {
    pub fn header(&self, key: &str) -> Option<String> {
        header_str(self.properties.headers(), key)
    }
    pub fn message_id(&self) -> Option<String> {
        self.properties.message_id().as_ref().map(|m| m.to_string())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

impl TestEnv {
    /// A request to the broker's management API (`path` after `/api/`), as guest: what an
    /// operator does in the management UI.
    pub fn management(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.management_request(method, path)
    }

    /// A connection to this test's vhost.
    ///
    /// # Errors
    /// Broker unreachable.
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        Ok(Connection::connect(
            &self.amqp_url,
            ConnectionProperties::default().with_connection_name("test".into()),
        )
        .await?)
    }

    /// A channel in confirm mode with the saga's topology declared.
    ///
    /// # Errors
    /// Broker unreachable.
    pub async fn channel(&self) -> anyhow::Result<(Connection, Channel)> {
        let conn = self.connect().await?;
        let channel = conn.create_channel().await?;
        self.topology.declare(&channel).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok((conn, channel))
    }

    /// Publish a body with **no properties at all**, as a bare pika `basic_publish` does.
    ///
    /// # Errors
    /// Broker unreachable or the publish was not confirmed.
    pub async fn publish_bare(&self, routing_key: &str, body: &[u8]) -> anyhow::Result<()> {
        self.publish_with(routing_key, body, BasicProperties::default())
            .await
    }

    /// Publish a body with exactly `properties` to the saga's exchange, confirmed, as anyone
    /// with pika or the management UI can.
    ///
    /// # Errors
    /// Broker unreachable or the publish was not confirmed.
    pub async fn publish_with(
        &self,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> anyhow::Result<()> {
        let (conn, channel) = self.channel().await?;
        let confirm = channel
            .basic_publish(
                self.topology.exchange.as_str().into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await?
            .await?;
        anyhow::ensure!(confirm.is_ack(), "publish not confirmed");
        let _ = conn.close(200, "done".into()).await;
        Ok(())
    }

    /// Ready messages in `queue` right now (passive declare: exact, unlike the management API).
    ///
    /// # Errors
    /// Broker unreachable or no such queue.
    pub async fn depth(&self, queue: &str) -> anyhow::Result<u32> {
        Ok(self.queue_depth(queue).await?.messages)
    }

    /// Wait until `queue` holds exactly `n` ready messages (drained, or an event arrived);
    /// `what` says what that means, for the error.
    ///
    /// # Errors
    /// It did not within `timeout`; the error has the last depth seen.
    pub async fn until_depth(
        &self,
        what: &str,
        queue: &str,
        n: u32,
        timeout: std::time::Duration,
    ) -> anyhow::Result<()> {
        crate::eventually(what, timeout, || async {
            match self.depth(queue).await {
                Ok(depth) if depth == n => Ok(()),
                other => Err(format!("{queue}: {other:?}, want {n}")),
            }
        })
        .await
    }

    /// Consumers attached to `queue` right now.
    ///
    /// # Errors
    /// Broker unreachable or no such queue.
    pub async fn consumers(&self, queue: &str) -> anyhow::Result<u32> {
        Ok(self.queue_depth(queue).await?.consumers)
    }

    async fn queue_depth(&self, queue: &str) -> anyhow::Result<saga_platform::amqp::Depth> {
        let conn = self.connect().await?;
        let depth = saga_platform::amqp::depth(&conn.create_channel().await?, queue).await;
        let _ = conn.close(200, "done".into()).await;
        depth
    }

    /// Take (and ack) every message now in `queue`.
    ///
    /// # Errors
    /// Broker unreachable.
    pub async fn take_all(&self, queue: &str) -> anyhow::Result<Vec<Taken>> {
        let conn = self.connect().await?;
        let channel = conn.create_channel().await?;
        let mut taken = Vec::new();
        while let Some(m) = channel
            .basic_get(queue.into(), BasicGetOptions::default())
            .await?
        {
            let d = m.delivery;
            d.acker.ack(BasicAckOptions::default()).await?;
            taken.push(Taken {
                body: d.data,
                routing_key: d.routing_key.to_string(),
                properties: d.properties,
            });
        }
        let _ = conn.close(200, "done".into()).await;
        Ok(taken)
    }

    /// A durable queue of the test's own, bound to `keys` on the exchange: a tap that sees
    /// every event with those routing keys from now on.
    ///
    /// # Errors
    /// Broker unreachable.
    pub async fn tap(&self, name: &str, keys: &[&str]) -> anyhow::Result<()> {
        let (conn, channel) = self.channel().await?;
        channel
            .queue_declare(
                name.into(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            )
            .await?;
        for key in keys {
            channel
                .queue_bind(
                    name.into(),
                    self.topology.exchange.as_str().into(),
                    (*key).into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        let _ = conn.close(200, "done".into()).await;
        Ok(())
    }
}

/// Drain a consumer for at most `n` messages (test helper for taps).
///
/// # Errors
/// Broker error.
pub async fn consume_n(channel: &Channel, queue: &str, n: usize) -> anyhow::Result<Vec<Taken>> {
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut out = Vec::new();
    while out.len() < n {
        let Some(d) = consumer.next().await else {
            break;
        };
        let d = d?;
        d.acker.ack(BasicAckOptions::default()).await?;
        out.push(Taken {
            body: d.data,
            routing_key: d.routing_key.to_string(),
            properties: d.properties,
        });
    }
    Ok(out)
}
