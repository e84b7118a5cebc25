//! `sagactl queues`: how full every queue of the topology is, and how fast it moves.
//!
//! Depth and consumer count come from a passive declare: exact, right now. Rates can only come
//! from the management API (the broker computes them); that part is optional, and a `-` shows
//! where it is not reachable, so the command still works on a broker without the plugin.
//! Each consumed queue is followed by its retry queue (`<queue>.retry`), where a failed
//! delivery waits for its next attempt.

use futures_util::future::join_all;
use shared::config::Common;
use shared::topology::Topology;

use crate::broker::{self, Depth};
use crate::management::Management;

/// # Errors
/// The broker is unreachable (the management API being away is not an error).
pub async fn run(common: &Common, management_url: &str) -> anyhow::Result<()> {
    let vhost = broker::vhost_of(&common.rabbitmq_url)?;
    let conn = broker::connect(&common.rabbitmq_url).await?;
    let queues = saga_queues(&common.topology);
    let queues: Vec<&str> = queues.iter().map(String::as_str).collect();

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

    outln!("vhost {vhost:?}")?;
    outln!(
        "{:<28} {:>9} {:>10} {:>10} {:>10}",
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
        outln!("{queue:<28} {messages:>9} {consumers:>10} {publish:>10} {deliver:>10}")?;
    }
    if let Some(e) = management_error {
        outln!("(no rates: {e:#})")?;
    }
    Ok(())
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
                "dlq_queue",
            ]
        );
    }
}
