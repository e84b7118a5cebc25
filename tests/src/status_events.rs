//! `order.status.updated` as a consumer of our own sees it: a tap bound to the routing key,
//! its messages parsed as the domain's [`OrderStatusUpdated`], re-sends told apart by event id
//! (the AMQP `message_id`), and what an order's own timeline says the events must have been.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context as _;
use saga_domain::events::{EventType, OrderStatusUpdated};
use saga_domain::order::OrderStatus;
use saga_domain::view::OrderView;

use crate::TestEnv;
use crate::broker::Taken;

/// One status event off the tap: the event, and the message that carried it.
#[derive(Debug, Clone)]
pub struct StatusEvent {
    /// The AMQP `message_id`: the event's id, the same on every re-send.
    pub event_id: String,
    pub event: OrderStatusUpdated,
    pub message: Taken,
}

/// One move in an order's timeline: an applied line that changed the status, and the id of the
/// status event the line says announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: OrderStatus,
    pub to: OrderStatus,
    pub status_event_id: Option<String>,
}

/// The transitions `view`'s timeline records, oldest first. Its first line is the order's
/// creation (no status event); a line that was not applied (a duplicate, a late outcome) moved
/// nothing.
pub fn transitions(view: &OrderView) -> Vec<Transition> {
    let mut lines = view.history.iter();
    let Some(mut now) = lines.next().map(|first| first.status) else {
        return Vec::new();
    };
    let mut moves = Vec::new();
    for line in lines {
        if !line.applied || line.status == now {
            continue;
        }
        moves.push(Transition {
            from: now,
            to: line.status,
            status_event_id: line.status_event_id.clone(),
        });
        now = line.status;
    }
    moves
}

/// Each event once, in the order it first arrived: a re-send by the relay (same id) is dropped.
/// Also how many were dropped.
pub fn dedupe(events: Vec<StatusEvent>) -> (Vec<StatusEvent>, usize) {
    let mut seen = HashSet::new();
    let total = events.len();
    let unique: Vec<StatusEvent> = events
        .into_iter()
        .filter(|e| seen.insert(e.event_id.clone()))
        .collect();
    let dropped = total - unique.len();
    (unique, dropped)
}

/// A message off the tap as a status event.
///
/// # Errors
/// It is not one: no `message_id`, another `type`, or a body the domain cannot read.
pub fn status_event(message: Taken) -> anyhow::Result<StatusEvent> {
    let event_id = message
        .message_id()
        .with_context(|| format!("a status event without a message_id: {message:?}"))?;
    let kind = message.properties.kind().as_ref().map(|t| t.to_string());
    anyhow::ensure!(
        kind.as_deref() == Some(EventType::OrderStatusUpdated.name()),
        "type {kind:?} on {message:?}"
    );
    let event = OrderStatusUpdated::from_body(&message.body).map_err(|e| {
        anyhow::anyhow!(
            "unreadable status event ({e}): {}",
            String::from_utf8_lossy(&message.body)
        )
    })?;
    Ok(StatusEvent {
        event_id,
        event,
        message,
    })
}

impl TestEnv {
    /// A tap (a queue of the test's own) bound to `order.status.updated`: from now on it holds
    /// every status event, re-sends included.
    ///
    /// # Errors
    /// Broker unreachable.
    pub async fn tap_status_events(&self, name: &str) -> anyhow::Result<()> {
        self.tap(name, &[EventType::OrderStatusUpdated.routing_key()])
            .await
    }

    /// Take status events off tap `queue` until `want` distinct ones have arrived; every message
    /// taken, re-sends included, in arrival order.
    ///
    /// # Errors
    /// A message is not a status event, or fewer arrived within `timeout`.
    pub async fn take_status_events(
        &self,
        queue: &str,
        want: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<StatusEvent>> {
        // Shared by every poll: what earlier polls took off the queue is not there any more.
        let taken = std::sync::Mutex::new(Vec::new());
        crate::eventually(
            &format!("{want} distinct status events on {queue}"),
            timeout,
            || async {
                let more = self.take_all(queue).await.map_err(|e| format!("{e:#}"))?;
                let mut taken = taken.lock().unwrap_or_else(|e| e.into_inner());
                taken.extend(more);
                let distinct = taken
                    .iter()
                    .filter_map(Taken::message_id)
                    .collect::<HashSet<_>>()
                    .len();
                if distinct >= want {
                    Ok(())
                } else {
                    Err(format!("{distinct} so far"))
                }
            },
        )
        .await?;
        let taken = taken.into_inner().unwrap_or_else(|e| e.into_inner());
        taken.into_iter().map(status_event).collect()
    }

    /// Wait until order-svc's outbox is empty: every event written has been relayed (and
    /// confirmed by the broker).
    ///
    /// # Errors
    /// It was not within `timeout`.
    pub async fn until_outbox_empty(&self, timeout: Duration) -> anyhow::Result<()> {
        crate::eventually("the outbox relayed", timeout, || async {
            let mut conn = self.redis().await.map_err(|e| format!("{e:#}"))?;
            let depth: u64 = redis::cmd("XLEN")
                .arg(self.keys.outbox())
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            if depth == 0 {
                Ok(())
            } else {
                Err(format!("{depth} entries"))
            }
        })
        .await
    }

    /// What this env keeps in Redis: how many keys under its prefix, and their bytes (the sum of
    /// `MEMORY USAGE`, which counts each key's own overhead too).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn redis_footprint(&self) -> anyhow::Result<(usize, u64)> {
        let mut conn = self.redis().await?;
        let pattern = format!("{}:*", self.prefix);
        let (mut keys, mut bytes) = (0, 0);
        let mut cursor: u64 = 0;
        loop {
            let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            for key in page {
                let used: Option<u64> = redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await?;
                // A key that expired between SCAN and MEMORY USAGE is nil: it takes nothing.
                if let Some(used) = used {
                    keys += 1;
                    bytes += used;
                }
            }
            if next == 0 {
                return Ok((keys, bytes));
            }
            cursor = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use saga_domain::order::HistoryEntry;
    use saga_domain::view::Order;

    use super::*;

    fn line(status: OrderStatus, applied: bool, id: Option<&str>) -> HistoryEntry {
        HistoryEntry {
            at: 0,
            status,
            event: None,
            event_id: String::new(),
            service: String::new(),
            redelivered: false,
            applied,
            reason: None,
            status_event_id: id.map(str::to_owned),
            envelope: Default::default(),
        }
    }

    #[test]
    fn a_timeline_moves_only_on_applied_lines_that_change_the_status() {
        use OrderStatus::*;
        let hash = [
            ("order_id", "o-1"),
            ("item", "widget"),
            ("qty", "1"),
            ("status", "FAILED"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let view = OrderView {
            order: Order::from_hash(&hash).unwrap(),
            history: vec![
                line(Placed, true, None),
                line(Failed, true, Some("s1")),
                // A late reservation: listed, not applied.
                line(Failed, false, None),
            ],
            dlq_hops: Vec::new(),
        };
        assert_eq!(
            transitions(&view),
            [Transition {
                from: Placed,
                to: Failed,
                status_event_id: Some("s1".into())
            }]
        );
    }
}
