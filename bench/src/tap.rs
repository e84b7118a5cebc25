//! When did each order become final? The outcome events say so; no order is polled.
//!
//! A queue of the bench's own, bound to `inventory.reserved` and `inventory.failed`, gets a copy
//! of every outcome the moment inventory-svc publishes it: the moment order-svc's status
//! consumer and notification-svc get theirs. The queue is exclusive and not durable (nothing
//! of it touches the disk) and is consumed without acks, so this third copy costs the broker
//! as little as a copy can.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, Consumer};
use serde::Deserialize;
use shared::events::EventType;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::poll::STALL;
use crate::world::World;

const QUEUE: &str = "saga-bench-tap";

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

/// Records, per order id, when its first outcome event arrived.
pub struct Tap {
    conn: Connection,
    arrivals: Arrivals,
    seen: watch::Receiver<u64>,
    task: JoinHandle<anyhow::Result<()>>,
}

/// The only field the tap reads from an outcome body.
#[derive(Deserialize)]
struct OrderRef<'a> {
    #[serde(borrow)]
    order_id: Cow<'a, str>,
}

impl Tap {
    /// Bind the tap in `world` and start recording. Open it before the first order is placed.
    ///
    /// # Errors
    /// The broker refused the queue, a binding or the consumer.
    pub async fn open(world: &World<'_>) -> anyhow::Result<Self> {
        let conn = world.connect("saga-bench outcome tap").await?;
        let channel = conn.create_channel().await?;
        channel
            .queue_declare(
                QUEUE.into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .context("cannot declare the tap queue")?;
        for outcome in [EventType::InventoryReserved, EventType::InventoryFailed] {
            channel
                .queue_bind(
                    QUEUE.into(),
                    world.topology.exchange.as_str().into(),
                    outcome.routing_key().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .context("cannot bind the tap queue")?;
        }
        let consumer = channel
            .basic_consume(
                QUEUE.into(),
                QUEUE.into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .context("cannot consume the tap queue")?;
        let (count, seen) = watch::channel(0);
        let arrivals: Arrivals = Arc::default();
        let task = tokio::spawn(record(consumer, arrivals.clone(), count));
        Ok(Self {
            conn,
            arrivals,
            seen,
            task,
        })
    }

    /// Wait until `n` distinct orders have an outcome.
    ///
    /// # Errors
    /// No new outcome for [`STALL`], or the tap's consumer failed.
    pub async fn wait_for(&mut self, n: u64) -> anyhow::Result<()> {
        loop {
            let seen = *self.seen.borrow_and_update();
            if seen >= n {
                return Ok(());
            }
            match tokio::time::timeout(STALL, self.seen.changed()).await {
                Ok(Ok(())) => {}
                // The recording task ended: its result says why.
                Ok(Err(_)) => {
                    return match (&mut self.task).await {
                        Ok(Err(e)) => Err(e),
                        _ => Err(anyhow::anyhow!("the tap stopped recording")),
                    };
                }
                Err(_) => {
                    anyhow::bail!("no outcome event for {STALL:?}: {seen} of {n} orders have one")
                }
            }
        }
    }

    /// Arrival instant per order id, so far.
    pub fn arrivals(&self) -> HashMap<String, Instant> {
        self.arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The latest arrival so far.
    pub fn last_arrival(&self) -> Option<Instant> {
        self.arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .max()
            .copied()
    }

    /// Stop recording and close the connection (the queue goes with it).
    pub async fn close(self) {
        self.task.abort();
        let _ = self.conn.close(200, "tap done".into()).await;
    }
}

async fn record(
    mut consumer: Consumer,
    arrivals: Arrivals,
    count: watch::Sender<u64>,
) -> anyhow::Result<()> {
    while let Some(delivery) = consumer.next().await {
        // The instant comes first: parsing is the bench's cost, not the saga's.
        let now = Instant::now();
        let delivery = delivery.context("the tap consumer failed")?;
        let Ok(outcome) = serde_json::from_slice::<OrderRef>(&delivery.data) else {
            continue;
        };
        let seen = {
            let mut arrivals = arrivals.lock().unwrap_or_else(|e| e.into_inner());
            // The first copy wins: a redelivered duplicate does not make an order final later.
            arrivals.entry(outcome.order_id.into_owned()).or_insert(now);
            arrivals.len()
        };
        count.send_replace(seen as u64);
    }
    anyhow::bail!("the broker cancelled the tap consumer")
}
