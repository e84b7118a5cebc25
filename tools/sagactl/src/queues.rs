//! `sagactl queues`: how full every queue of the topology is, and how fast it moves.
//!
//! Depth and consumer count come from a passive declare: exact, right now. Rates can only come
//! from the management API (the broker computes them); that part is optional, and a `-` shows
//! where it is not reachable, so the command still works on a broker without the plugin.
//! Each consumed queue is followed by its retry queue (`<queue>.retry`), where a failed
//! delivery waits for its next attempt.

use futures_util::future::join_all;
use saga_platform::amqp::topology::Topology;
use saga_platform::service::config::Common;
use serde::Serialize;

use crate::broker::{self, Depth};
use crate::management::Management;
use crate::output::{Output, print_json};

/// What `queues` reports: the table's rows, and `--json`'s document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueuesReport {
    pub vhost: String,
    pub queues: Vec<QueueRow>,
    /// Why there are no rates (the management API is unreachable or refused us); `null` when
    /// there are.
    pub rates_unavailable: Option<String>,
}

/// One queue: exact depth and consumers from the broker, rates from the management API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueRow {
    pub queue: String,
    /// `false`: the passive declare found no such queue (then `messages` and `consumers` are
    /// `null`).
    pub exists: bool,
    /// Messages ready for delivery.
    pub messages: Option<u32>,
    pub consumers: Option<u32>,
    /// Messages per second, as the management API samples them; `null` without it.
    pub publish_per_sec: Option<f64>,
    pub deliver_per_sec: Option<f64>,
}

/// # Errors
/// The broker is unreachable (the management API being away is not an error).
pub async fn run(common: &Common, management_url: &str, output: Output) -> anyhow::Result<()> {
    let report = read(common, management_url).await?;
    if output.json {
        return print_json(&report);
    }
    outln!("vhost {:?}", report.vhost)?;
    outln!(
        "{:<28} {:>9} {:>10} {:>10} {:>10}",
        "queue",
        "messages",
        "consumers",
        "publish/s",
        "deliver/s"
    )?;
    let or_dash = |n: Option<String>| n.unwrap_or_else(|| "-".to_owned());
    let rate = |r: Option<f64>| or_dash(r.map(|r| format!("{r:.1}")));
    for row in &report.queues {
        let messages = match row.messages {
            Some(n) if row.exists => n.to_string(),
            _ => "missing".to_owned(),
        };
        let consumers = or_dash(row.consumers.map(|n| n.to_string()));
        let (publish, deliver) = (rate(row.publish_per_sec), rate(row.deliver_per_sec));
        outln!(
            "{:<28} {messages:>9} {consumers:>10} {publish:>10} {deliver:>10}",
            row.queue
        )?;
    }
    if let Some(e) = &report.rates_unavailable {
        outln!("(no rates: {e})")?;
    }
    Ok(())
}

/// Every queue of the saga with its depth, consumers and (when the management API answers)
/// rates.
///
/// # Errors
/// The broker is unreachable.
pub async fn read(common: &Common, management_url: &str) -> anyhow::Result<QueuesReport> {
    let vhost = broker::vhost_of(&common.rabbitmq_url)?;
    let conn = broker::connect(&common.rabbitmq_url).await?;
    let queues = saga_queues(&common.topology);

    let mut depths = Vec::new();
    for queue in &queues {
        // A fresh channel per queue: a missing queue closes the channel it was asked on.
        let channel = conn.create_channel().await?;
        depths.push(broker::depth(&channel, queue).await);
        let _ = channel.close(200, "done".into()).await;
    }
    let _ = conn.close(200, "done".into()).await;

    let management = Management::new(management_url)?;
    let rates = join_all(queues.iter().map(|q| management.rates(&vhost, q))).await;

    let mut rates_unavailable = None;
    let rows = queues
        .into_iter()
        .zip(depths)
        .zip(rates)
        .map(|((queue, depth), rates)| {
            let depth = depth.ok();
            let rates = match rates {
                Ok(rates) => Some(rates),
                Err(e) => {
                    rates_unavailable.get_or_insert_with(|| format!("{e:#}"));
                    None
                }
            };
            QueueRow {
                queue,
                exists: depth.is_some(),
                messages: depth.map(|Depth { messages, .. }| messages),
                consumers: depth.map(|Depth { consumers, .. }| consumers),
                publish_per_sec: rates.map(|r| r.publish),
                deliver_per_sec: rates.map(|r| r.deliver),
            }
        })
        .collect();
    Ok(QueuesReport {
        vhost,
        queues: rows,
        rates_unavailable,
    })
}

/// Every queue of the saga in reading order: each consumed queue followed by its retry queue,
/// then the DLQ.
pub fn saga_queues(topology: &Topology) -> Vec<String> {
    let mut queues = Vec::new();
    for queue in topology.consumed_queues() {
        queues.push(queue.to_owned());
        queues.push(Topology::retry_queue(queue));
    }
    queues.push(topology.dlq_queue.clone());
    queues
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_consumed_queue_is_followed_by_its_retry_queue() {
        let queues = saga_queues(&Topology::default());
        assert_eq!(
            queues,
            [
                "inventory_queue",
                "inventory_queue.retry",
                "order_status_queue",
                "order_status_queue.retry",
                "notification_queue",
                "notification_queue.retry",
                "order_catalog_queue",
                "order_catalog_queue.retry",
                "dlq_queue",
            ]
        );
    }
}
