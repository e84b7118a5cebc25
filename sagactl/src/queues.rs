//! `sagactl queues`: how full every queue of the topology is, and how fast it moves.
//!
//! Depth and consumer count come from a passive declare: exact, right now. Rates can only come
//! from the management API (the broker computes them); that part is optional, and a `-` shows
//! where it is not reachable, so the command still works on a broker without the plugin.

use std::time::Duration;

use anyhow::Context;
use futures_util::future::join_all;
use serde_json::Value;
use shared::config::{Common, redact_url};

use crate::broker::{self, Depth};
use crate::http::encode_path_segment;

/// Messages per second in and out of a queue, as the management API reports them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    pub publish: f64,
    pub deliver: f64,
}

/// # Errors
/// The broker is unreachable (the management API being away is not an error).
pub async fn run(common: &Common, management_url: &str) -> anyhow::Result<()> {
    let vhost = broker::vhost_of(&common.rabbitmq_url)?;
    let conn = broker::connect(&common.rabbitmq_url).await?;
    let queues = common.topology.queues();

    let mut depths = Vec::new();
    for queue in queues {
        // A fresh channel per queue: a missing queue closes the channel it was asked on.
        let channel = conn.create_channel().await?;
        depths.push(broker::depth(&channel, queue).await);
        let _ = channel.close(200, "done".into()).await;
    }
    let _ = conn.close(200, "done".into()).await;

    let management = Management::new(management_url)?;
    let rates = join_all(queues.iter().map(|q| management.rates(&vhost, q))).await;

    outln!("vhost {vhost:?}")?;
    outln!(
        "{:<22} {:>9} {:>10} {:>10} {:>10}",
        "queue",
        "messages",
        "consumers",
        "publish/s",
        "deliver/s"
    )?;
    let mut management_error = None;
    for ((queue, depth), rates) in queues.iter().zip(depths).zip(rates) {
        let (messages, consumers) = match depth {
            Ok(Depth {
                messages,
                consumers,
            }) => (messages.to_string(), consumers.to_string()),
            Err(_) => ("missing".to_owned(), "-".to_owned()),
        };
        let (publish, deliver) = match rates {
            Ok(r) => (format!("{:.1}", r.publish), format!("{:.1}", r.deliver)),
            Err(e) => {
                management_error.get_or_insert(e);
                ("-".to_owned(), "-".to_owned())
            }
        };
        outln!("{queue:<22} {messages:>9} {consumers:>10} {publish:>10} {deliver:>10}")?;
    }
    if let Some(e) = management_error {
        outln!("(no rates: {e:#})")?;
    }
    Ok(())
}

/// The RabbitMQ management HTTP API, used only for what the AMQP protocol cannot tell.
struct Management {
    base: String,
    client: reqwest::Client,
}

impl Management {
    fn new(url: &str) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            base: url.trim_end_matches('/').to_owned(),
            client,
        })
    }

    /// `GET /api/queues/{vhost}/{queue}`. Both are path segments, so the vhost `/` must travel
    /// as `%2F` (the URL's credentials become basic auth).
    async fn rates(&self, vhost: &str, queue: &str) -> anyhow::Result<Rates> {
        let url = format!(
            "{}/api/queues/{}/{}",
            self.base,
            encode_path_segment(vhost),
            encode_path_segment(queue)
        );
        let unreachable = || format!("management API at {}", redact_url(&self.base));
        let response = self
            .client
            .get(&url)
            .send()
            .await
            .with_context(unreachable)?
            .error_for_status()
            .with_context(unreachable)?;
        let info: Value = response.json().await.with_context(unreachable)?;
        // No `message_stats` yet means no traffic yet.
        let rate = |stat: &str| {
            info.pointer(&format!("/message_stats/{stat}/rate"))
                .and_then(Value::as_f64)
                .unwrap_or(0.0)
        };
        Ok(Rates {
            publish: rate("publish_details"),
            deliver: rate("deliver_get_details"),
        })
    }
}
