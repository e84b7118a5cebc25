//! The RabbitMQ management HTTP API, used only for what the AMQP protocol cannot tell: message
//! rates and unacked counts (the broker computes them), and the connections of a vhost (the
//! board's "close all broker connections"). Everything else `sagactl` reads over AMQP, which is
//! exact and works on a broker without the plugin.

use std::time::Duration;

use anyhow::Context;
use saga_platform::service::config::redact_url;
use serde_json::Value;

use crate::http::encode_path_segment;

/// Messages per second in and out of a queue, and messages delivered but not acked yet, as the
/// management API reports them (sampled by the broker every few seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    pub publish: f64,
    pub deliver: f64,
    pub unacked: u64,
}

/// One client connection to the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConnection {
    /// The broker's name for it (`127.0.0.1:40312 -> 127.0.0.1:5672`), used to close it.
    pub name: String,
    /// The name the client gave itself (`connection_name`), e.g. `inventory-svc`.
    pub client_name: Option<String>,
}

pub struct Management {
    base: String,
    client: reqwest::Client,
}

impl Management {
    /// `url` carries the credentials (`http://guest:guest@127.0.0.1:15672`); reqwest sends them
    /// as basic auth.
    ///
    /// # Errors
    /// The HTTP client could not be built.
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            base: url.trim_end_matches('/').to_owned(),
            client,
        })
    }

    fn unreachable(&self) -> String {
        format!("management API at {}", redact_url(&self.base))
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let unreachable = || self.unreachable();
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .with_context(unreachable)?
            .error_for_status()
            .with_context(unreachable)?;
        response.json().await.with_context(unreachable)
    }

    /// `GET /api/queues/{vhost}/{queue}`. Both are path segments, so the vhost `/` must travel
    /// as `%2F`.
    ///
    /// # Errors
    /// The API is unreachable, refuses us, or does not know the queue.
    pub async fn rates(&self, vhost: &str, queue: &str) -> anyhow::Result<Rates> {
        let info = self
            .get(&format!(
                "/api/queues/{}/{}",
                encode_path_segment(vhost),
                encode_path_segment(queue)
            ))
            .await?;
        // No `message_stats` yet means no traffic yet.
        let rate = |stat: &str| {
            info.pointer(&format!("/message_stats/{stat}/rate"))
                .and_then(Value::as_f64)
                .unwrap_or(0.0)
        };
        Ok(Rates {
            publish: rate("publish_details"),
            deliver: rate("deliver_get_details"),
            unacked: info
                .get("messages_unacknowledged")
                .and_then(Value::as_u64)
                .unwrap_or(0),
        })
    }

    /// Every client connection to `vhost`.
    ///
    /// # Errors
    /// The API is unreachable or refuses us.
    pub async fn connections(&self, vhost: &str) -> anyhow::Result<Vec<ClientConnection>> {
        let list = self
            .get(&format!(
                "/api/vhosts/{}/connections",
                encode_path_segment(vhost)
            ))
            .await?;
        Ok(list
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|c| {
                Some(ClientConnection {
                    name: c.get("name")?.as_str()?.to_owned(),
                    client_name: c
                        .pointer("/client_properties/connection_name")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                })
            })
            .collect())
    }

    /// Close one connection, telling the client why (`X-Reason`); it sees a connection error
    /// with that text, exactly as after `rabbitmqctl close_connection`.
    ///
    /// # Errors
    /// The API is unreachable or refuses us (a connection already gone is not an error).
    pub async fn close_connection(&self, name: &str, reason: &str) -> anyhow::Result<()> {
        let unreachable = || self.unreachable();
        let response = self
            .client
            .delete(format!(
                "{}/api/connections/{}",
                self.base,
                encode_path_segment(name)
            ))
            .header("x-reason", reason)
            .send()
            .await
            .with_context(unreachable)?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        response.error_for_status().with_context(unreachable)?;
        Ok(())
    }
}
