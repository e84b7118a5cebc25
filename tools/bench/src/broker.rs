//! Talking to the broker directly: OrderPlaced messages built ahead of time, and publishing
//! with a bounded window of unconfirmed messages. (Queue depth is `saga_platform::amqp::depth`.)

use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel, Confirmation};
use saga_domain::envelope::Envelope;
use saga_domain::events::{EventMeta, EventType, OrderPlaced};
use saga_domain::ids::{Item, OrderId, Qty, StudentId};
use saga_domain::lines::Lines;
use saga_domain::trace::Trace;
use saga_platform::amqp::properties::properties_of;

/// The item every benchmark order asks for (inventory-svc is seeded with plenty of it).
pub const ITEM: &str = "burger";
/// order-svc's `app_id`: prefilled messages look exactly like the ones its relay publishes.
const ORDER_SVC: &str = "order-svc";

/// A message ready to send: body and properties built before any clock starts.
#[derive(Debug, Clone)]
pub struct Message {
    /// The order id (also the `correlation_id`), to match the outcome to its order.
    pub order_id: String,
    pub body: Vec<u8>,
    pub properties: BasicProperties,
}

/// `n` OrderPlaced events for distinct new orders, as order-svc's relay publishes them (same
/// body shape, same properties), so inventory-svc treats them as real orders.
///
/// # Errors
/// Never for these constant values; the domain types check at run time.
pub fn order_placed(n: usize) -> anyhow::Result<Vec<Message>> {
    let item = Item::parse(ITEM)?;
    let qty = Qty::parse(1)?;
    let student_id = StudentId::parse("bench")?;
    Ok((0..n)
        .map(|_| {
            let event = OrderPlaced {
                order_id: OrderId::generate(),
                lines: Lines::single(item.clone(), qty),
                student_id: Some(student_id.clone()),
            };
            let order_id = event.order_id.to_string();
            let properties = saga_properties(EventType::OrderPlaced, Some(&order_id), ORDER_SVC);
            Message {
                body: event.to_body(),
                properties,
                order_id,
            }
        })
        .collect())
}

/// The properties a service gives an event, headers included: every event of the saga is
/// traced (`traceparent`), and one about an order names it (the CloudEvents `subject`), so the
/// broker-only clients send the broker the same bytes the services do. `order_id` is also the
/// correlation id; a stock event has none.
pub fn saga_properties(event: EventType, order_id: Option<&str>, app_id: &str) -> BasicProperties {
    let meta =
        EventMeta::new(event, order_id.unwrap_or_default(), app_id).traced(Some(&Trace::root()));
    properties_of(&meta.stamp(order_id), Envelope::Binary)
}

/// Publish every message to `exchange` with `routing_key` on `channel` (in confirm mode), with
/// at most `window` unconfirmed at once; return when all are confirmed. Returns when each was
/// sent, in the order given. With `pace` (messages per second), message k is due at
/// `k / pace` and waits until then; the instant returned is then when it was *due*, so a
/// full window shows up as latency instead of quietly slowing the schedule.
///
/// The window is the point: without one, confirms queue up behind thousands of messages in
/// flight and every publish waits 100-200 ms for its verdict.
///
/// # Errors
/// A publish failed, was nacked, or came back unroutable.
pub async fn publish_all(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    messages: &[Message],
    window: usize,
    pace: Option<f64>,
) -> anyhow::Result<Vec<Instant>> {
    let mut sent = Vec::with_capacity(messages.len());
    let mut in_flight = FuturesUnordered::new();
    let start = Instant::now();
    for (k, message) in messages.iter().enumerate() {
        let due = pace.map(|rate| start + Duration::from_secs_f64(k as f64 / rate));
        if let Some(due) = due {
            // Confirms that come in while waiting are collected on the way.
            while !in_flight.is_empty() {
                match tokio::time::timeout_at(due.into(), in_flight.next()).await {
                    Ok(Some(confirmation)) => check(confirmation?)?,
                    Ok(None) | Err(_) => break,
                }
            }
            tokio::time::sleep_until(due.into()).await;
        }
        if in_flight.len() >= window.max(1)
            && let Some(confirmation) = in_flight.next().await
        {
            check(confirmation?)?;
        }
        sent.push(due.unwrap_or_else(Instant::now));
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &message.body,
                message.properties.clone(),
            )
            .await
            .context("publish failed")?;
        in_flight.push(confirm);
    }
    while let Some(confirmation) = in_flight.next().await {
        check(confirmation?)?;
    }
    Ok(sent)
}

/// A confirm that is neither a nack nor a returned (unroutable) message.
///
/// # Errors
/// The broker nacked the message or returned it.
pub fn check(confirmation: Confirmation) -> anyhow::Result<()> {
    anyhow::ensure!(!confirmation.is_nack(), "the broker nacked a publish");
    anyhow::ensure!(
        confirmation.take_message().is_none(),
        "a publish came back unroutable (no queue bound?)"
    );
    Ok(())
}
