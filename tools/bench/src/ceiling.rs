//! The ceiling: the saga's message path with nothing but the broker.
//!
//! The same hops the services make, on the same topology (durable queues, persistent
//! messages), with the same prefetch and a bounded confirm window, and nothing else: no HTTP,
//! no Redis, no JSON work (bodies are built before the clock starts).
//!
//! ```text
//! publisher --order.placed (confirms, window)--> inventory_queue --> relay (prefetch)
//!   relay: publish inventory.reserved and product.stock.updated (confirms) then ack
//!          inventory.reserved     --> order_status_queue --> status relay
//!                                 --> notification_queue --> sink, ack
//!          product.stock.updated  --> order_catalog_queue --> catalog sink, ack
//!   status relay: publish order.status.updated (confirm) then ack --> notification_queue --> sink
//! ```
//!
//! The relay stands in for inventory-svc (one task per delivery, outcome and stock announcement
//! confirmed before the ack), the status relay for order-svc's status consumer and the outbox
//! relay that publishes the order's `order.status.updated` (PLACED → CONFIRMED), the sink for
//! notification-svc (two deliveries per order: the outcome copy and the status event), the
//! catalog sink for order-svc's catalog replica, the publisher for order-svc's outbox relay. So
//! the path has four persistent, confirmed publishes and five deliveries per order, as the saga
//! has since issue 20's catalog. [`Relay`] is also the broker-only drain.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, Consumer};
use saga_domain::events::{EventType, InventoryOutcome, OrderStatusUpdated, unix_now_millis};
use saga_domain::ids::{Item, OrderId, Qty, StudentId};
use saga_domain::lines::ReservedLine;
use saga_domain::order::OrderStatus;
use saga_domain::product::{ProductChange, ProductEvent};
use saga_platform::amqp::topology::Topology;
use tokio::task::JoinSet;

use crate::broker::{self, ITEM};
use crate::cpu::{CpuMeter, CpuUse};
use crate::stats::{Latency, Recorder, per_sec};
use crate::world::{Lab, World};

#[derive(Debug, Clone)]
pub struct CeilingResult {
    pub orders: usize,
    pub elapsed: Duration,
    /// Orders per second, first publish until both outcome copies and the status event of
    /// every order are acked.
    pub orders_per_sec: f64,
    /// Publish of OrderPlaced (paced: when it was due) → its outcome at the status relay
    /// (order-svc's status consumer). Unpaced, the pipeline is saturated and this is queueing behind the window.
    pub latency: Latency,
    /// CPU seconds per process, first publish until the last outcome was acked.
    pub cpu: Vec<CpuUse>,
}

/// How the broker-only clients drive the broker, as the services do: the consumers' prefetch,
/// and how many publishes may wait for their confirm at once.
#[derive(Debug, Clone, Copy)]
pub struct Flow {
    pub prefetch: u16,
    pub confirm_window: usize,
}

/// Run `orders` through the broker-only path in a fresh world.
///
/// # Errors
/// The broker refused something or the path stalled.
pub async fn run(lab: &Lab, orders: usize, flow: Flow) -> anyhow::Result<CeilingResult> {
    lab.in_world("ceiling", async |world: &World<'_>| {
        measure(world, orders, flow, None).await
    })
    .await
}

/// The same path at a fixed `rate` for `secs` seconds (open loop, as the saga's fixed-rate
/// run): what the broker alone adds to latency at that rate.
///
/// # Errors
/// The broker refused something or the path stalled.
pub async fn run_paced(
    lab: &Lab,
    rate: f64,
    secs: u64,
    flow: Flow,
) -> anyhow::Result<CeilingResult> {
    let orders = (rate * secs as f64).round().max(1.0) as usize;
    lab.in_world("ceiling-fixed-rate", async |world: &World<'_>| {
        measure(world, orders, flow, Some(rate)).await
    })
    .await
}

async fn measure(
    world: &World<'_>,
    n: usize,
    flow: Flow,
    pace: Option<f64>,
) -> anyhow::Result<CeilingResult> {
    let prefetch = flow.prefetch;
    let messages = broker::order_placed(n)?;
    let topology = &world.topology;

    // One connection per role, as each service has its own.
    let publisher_conn = world.connect("saga-bench ceiling publisher").await?;
    let publisher = confirm_channel(&publisher_conn).await?;
    let relay_conn = world.connect("saga-bench ceiling relay").await?;
    let relay = Relay::inventory(&relay_conn, topology, prefetch).await?;
    let status_conn = world.connect("saga-bench ceiling status relay").await?;
    let status_relay = Relay::order_status(&status_conn, topology, prefetch).await?;
    let notify_conn = world
        .connect("saga-bench ceiling notification sink")
        .await?;
    let notify_sink = Sink::start(&notify_conn, &topology.notification_queue, prefetch).await?;
    let catalog_conn = world.connect("saga-bench ceiling catalog sink").await?;
    let catalog_sink = Sink::start(&catalog_conn, &topology.order_catalog_queue, prefetch).await?;

    // Everything is consuming before the first publish, as the services are before the
    // first order.
    let cpu = CpuMeter::start(Vec::new());
    let started = Instant::now();
    let path = async {
        tokio::try_join!(
            broker::publish_all(
                &publisher,
                &topology.exchange,
                EventType::OrderPlaced.routing_key(),
                &messages,
                flow.confirm_window,
                pace,
            ),
            relay.run(n),
            status_relay.run(n),
            // The outcome copy and the status event of each order.
            notify_sink.run(2 * n),
            // The stock each order took.
            catalog_sink.run(n),
        )
    };
    let (sent, _, arrivals, _, _) = tokio::time::timeout(deadline(n), path)
        .await
        .with_context(|| format!("{n} orders did not get through within {:?}", deadline(n)))??;
    let elapsed = started.elapsed();
    let cpu = cpu.finish();

    let sent_at: HashMap<&str, Instant> = messages
        .iter()
        .map(|m| m.order_id.as_str())
        .zip(sent)
        .collect();
    let mut recorder = Recorder::new()?;
    for (order_id, arrived) in &arrivals {
        if let Some(sent) = sent_at.get(order_id.as_str()) {
            recorder.record(arrived.saturating_duration_since(*sent));
        }
    }
    for conn in [
        publisher_conn,
        relay_conn,
        status_conn,
        notify_conn,
        catalog_conn,
    ] {
        let _ = conn.close(200, "ceiling done".into()).await;
    }
    Ok(CeilingResult {
        orders: n,
        elapsed,
        orders_per_sec: per_sec(n, elapsed),
        latency: recorder.summary(),
        cpu,
    })
}

/// How long `n` messages may take on a broker-only path before we call it stuck: a minute,
/// plus far more per message (5 ms) than the broker needs.
pub fn deadline(n: usize) -> Duration {
    Duration::from_secs(60)
        + Duration::from_millis(5).saturating_mul(u32::try_from(n).unwrap_or(u32::MAX))
}

/// A channel in confirm mode.
///
/// # Errors
/// The broker refused the channel or confirm mode.
pub async fn confirm_channel(conn: &Connection) -> anyhow::Result<Channel> {
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .context("cannot enable publisher confirms")?;
    Ok(channel)
}

/// A service's broker work without its Redis work: consume a queue, publish the event the
/// service would publish for it with a confirm, then ack. [`Relay::inventory`] is inventory-svc
/// (OrderPlaced → InventoryReserved), [`Relay::order_status`] is order-svc's status consumer
/// with its outbox relay (InventoryReserved → OrderStatusUpdated).
pub struct Relay {
    consumer: Consumer,
    publisher: Channel,
    exchange: Arc<str>,
    routing_key: &'static str,
    /// A real event body, serialized once.
    body: Arc<[u8]>,
    properties: BasicProperties,
    /// A second event published for each delivery and confirmed before the same ack:
    /// inventory-svc's `product.stock.updated` (the stock the order took). None for the status
    /// relay.
    also: Option<Announcement>,
}

/// One more event a [`Relay`] publishes per delivery.
#[derive(Clone)]
struct Announcement {
    routing_key: &'static str,
    body: Arc<[u8]>,
    properties: BasicProperties,
}

impl Relay {
    /// inventory-svc: consume `inventory_queue` (prefetch `prefetch`) and answer each order
    /// with an InventoryReserved.
    ///
    /// # Errors
    /// The broker refused the channels or the consumer.
    pub async fn inventory(
        conn: &Connection,
        topology: &Topology,
        prefetch: u16,
    ) -> anyhow::Result<Self> {
        let order_id = OrderId::generate();
        let outcome = InventoryOutcome::Reserved {
            order_id: order_id.clone(),
            lines: vec![ReservedLine {
                item: Item::parse(ITEM)?,
                qty: Qty::parse(1)?,
                remaining: 99_999_999,
            }],
            student_id: Some(StudentId::parse("bench")?),
        };
        let stock = ProductEvent {
            item: Item::parse(ITEM)?,
            seq: 1,
            at: unix_now_millis(),
            change: ProductChange::StockUpdated {
                stock: 99_999_999,
                previous: 100_000_000,
            },
        };
        let mut relay = Self::start(
            conn,
            &topology.inventory_queue,
            &topology.exchange,
            EventType::InventoryReserved,
            (&order_id, outcome.to_body()),
            "inventory-svc",
            prefetch,
        )
        .await?;
        relay.also = Some(Announcement {
            routing_key: stock.event_type().routing_key(),
            body: stock.to_body().into(),
            properties: broker::saga_properties(stock.event_type(), None, "inventory-svc"),
        });
        Ok(relay)
    }

    /// order-svc's side of an outcome: consume `order_status_queue` and publish the order's
    /// `order.status.updated` (PLACED → CONFIRMED), which reaches `notification_queue`.
    ///
    /// # Errors
    /// The broker refused the channels or the consumer.
    pub async fn order_status(
        conn: &Connection,
        topology: &Topology,
        prefetch: u16,
    ) -> anyhow::Result<Self> {
        let order_id = OrderId::generate();
        let event = OrderStatusUpdated {
            order_id: order_id.clone(),
            old_status: OrderStatus::Placed,
            new_status: OrderStatus::Confirmed,
            updated_by: "inventory-svc".to_owned(),
            reason: None,
            at: unix_now_millis(),
        };
        Self::start(
            conn,
            &topology.order_status_queue,
            &topology.exchange,
            EventType::OrderStatusUpdated,
            (&order_id, event.to_body()),
            "order-svc",
            prefetch,
        )
        .await
    }

    async fn start(
        conn: &Connection,
        queue: &str,
        exchange: &str,
        event_type: EventType,
        (order_id, body): (&OrderId, Vec<u8>),
        app_id: &str,
        prefetch: u16,
    ) -> anyhow::Result<Self> {
        let publisher = confirm_channel(conn).await?;
        let consumer = consume(conn, queue, "relay", prefetch).await?;
        Ok(Self {
            consumer,
            publisher,
            exchange: exchange.into(),
            routing_key: event_type.routing_key(),
            body: body.into(),
            // A fixed order id: the relay's body names one order too, whatever it consumed.
            properties: broker::saga_properties(event_type, Some(order_id.as_str()), app_id),
            also: None,
        })
    }

    /// Relay `n` deliveries, each in its own task as the services do (the prefetch bounds
    /// how many at once), and return once all are acked: each delivery's correlation id (the
    /// order id) and when it arrived.
    ///
    /// # Errors
    /// A publish was not confirmed, an ack failed, or the consumer ended.
    pub async fn run(mut self, n: usize) -> anyhow::Result<Vec<(String, Instant)>> {
        let mut in_flight = JoinSet::new();
        let mut arrivals = Vec::with_capacity(n);
        for _ in 0..n {
            let delivery = next_delivery(&mut self.consumer, "the relay").await?;
            let arrived = Instant::now();
            // The order travels in the correlation id, as the services carry it.
            let properties = match delivery.properties.correlation_id() {
                Some(order_id) => {
                    arrivals.push((order_id.to_string(), arrived));
                    self.properties
                        .clone()
                        .with_correlation_id(order_id.clone())
                }
                None => self.properties.clone(),
            };
            let (publisher, exchange, routing_key, body, also) = (
                self.publisher.clone(),
                self.exchange.clone(),
                self.routing_key,
                self.body.clone(),
                self.also.clone(),
            );
            in_flight.spawn(async move {
                let publish = |routing_key: &'static str, body: Arc<[u8]>, properties| {
                    let (publisher, exchange) = (publisher.clone(), exchange.clone());
                    async move {
                        let confirm = publisher
                            .basic_publish(
                                (&*exchange).into(),
                                routing_key.into(),
                                BasicPublishOptions {
                                    mandatory: true,
                                    ..Default::default()
                                },
                                &body,
                                properties,
                            )
                            .await?;
                        broker::check(confirm.await?)
                    }
                };
                match also {
                    Some(a) => {
                        let stock_properties = a.properties.with_correlation_id(
                            properties.correlation_id().clone().unwrap_or_default(),
                        );
                        tokio::try_join!(
                            publish(routing_key, body, properties),
                            publish(a.routing_key, a.body, stock_properties),
                        )?;
                    }
                    None => publish(routing_key, body, properties).await?,
                }
                delivery.acker.ack(BasicAckOptions::default()).await?;
                anyhow::Ok(())
            });
            while let Some(done) = in_flight.try_join_next() {
                done.context("a relay task panicked")??;
            }
        }
        while let Some(done) = in_flight.join_next().await {
            done.context("a relay task panicked")??;
        }
        Ok(arrivals)
    }
}

/// A consumer that only acks: notification-svc minus its work.
pub struct Sink {
    consumer: Consumer,
}

impl Sink {
    /// Start consuming `queue` with `prefetch`.
    ///
    /// # Errors
    /// The broker refused the channel or the consumer.
    pub async fn start(conn: &Connection, queue: &str, prefetch: u16) -> anyhow::Result<Self> {
        let consumer = consume(conn, queue, "sink", prefetch).await?;
        Ok(Self { consumer })
    }

    /// Ack `n` deliveries; return each one's correlation id (the order id) and arrival.
    ///
    /// # Errors
    /// An ack failed or the consumer ended.
    pub async fn run(mut self, n: usize) -> anyhow::Result<Vec<(String, Instant)>> {
        let mut arrivals = Vec::with_capacity(n);
        for _ in 0..n {
            let delivery = next_delivery(&mut self.consumer, "a sink").await?;
            let arrived = Instant::now();
            delivery.acker.ack(BasicAckOptions::default()).await?;
            if let Some(order_id) = delivery.properties.correlation_id() {
                arrivals.push((order_id.to_string(), arrived));
            }
        }
        Ok(arrivals)
    }
}

/// Consume `queue` on a channel of its own with `prefetch`, as each service's consumer does;
/// `role` names the consumer in the management UI.
async fn consume(
    conn: &Connection,
    queue: &str,
    role: &str,
    prefetch: u16,
) -> anyhow::Result<Consumer> {
    let channel = conn.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    channel
        .basic_consume(
            queue.into(),
            format!("saga-bench-{role}").as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("cannot consume {queue}"))
}

/// The next delivery; a consumer that ends before the count is reached is an error, since the
/// path then stalled.
async fn next_delivery(consumer: &mut Consumer, who: &str) -> anyhow::Result<Delivery> {
    consumer
        .next()
        .await
        .with_context(|| format!("{who}'s consumer ended"))?
        .with_context(|| format!("{who}'s consumer failed"))
}
