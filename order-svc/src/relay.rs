//! The outbox relay: publishes what `POST /order` and cancel wrote to the outbox stream.
//!
//! An entry is deleted only after the broker confirmed it. Entries of one batch are sent in
//! order on one channel and their confirms awaited together. If we crash between the confirm
//! and the delete, the entry is published again on restart: consumers dedupe by order id.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use lapin::BasicProperties;
use shared::amqp::{BrokerStatus, Publisher, connect};
use shared::backoff::Backoff;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::orders::{OrderStore, SERVICE};

/// Entries published per batch (and so the most unconfirmed messages in flight).
const BATCH: usize = 256;
/// How often an idle relay looks for entries nobody told it about (another instance's, or
/// left by a crash before the notification).
const IDLE_POLL: Duration = Duration::from_millis(500);

pub struct Relay {
    pub store: OrderStore,
    pub url: String,
    pub exchange: String,
    pub status: Arc<BrokerStatus>,
}

type Entry = (String, HashMap<String, String>);

impl Relay {
    /// Relay until `shutdown`, reconnecting to the broker whenever needed.
    pub async fn run(self, shutdown: CancellationToken) {
        let name = format!("{SERVICE} outbox relay");
        let mut backoff = Backoff::for_outages();
        while let Some(conn) = connect(&self.url, &name, &shutdown).await {
            let publisher = match Publisher::open(&conn).await {
                Ok(p) => p,
                Err(e) => {
                    warn!(cause = %e, "cannot open a confirm channel; reconnecting");
                    backoff.wait().await;
                    continue;
                }
            };
            self.status.set(true);
            let ended_by_shutdown = self.relay_session(&publisher, &shutdown).await;
            self.status.set(false);
            let _ = conn.close(200, "relay stopping".into()).await;
            if ended_by_shutdown {
                break;
            }
            warn!(
                "outbox relay lost the broker; reconnecting (unconfirmed entries stay in the outbox)"
            );
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = backoff.wait() => {}
            }
        }
        info!("outbox relay stopped");
    }

    /// Publish batches until shutdown (`true`) or until the channel dies (`false`).
    async fn relay_session(&self, publisher: &Publisher, shutdown: &CancellationToken) -> bool {
        let mut backoff = Backoff::for_outages();
        loop {
            if shutdown.is_cancelled() {
                return true;
            }
            let entries = match self.read_batch().await {
                Ok(entries) => entries,
                Err(e) => {
                    let delay = backoff.next_delay();
                    if backoff.worth_logging() {
                        warn!(cause = %e, attempt = backoff.attempts(), "cannot read the outbox (Redis); retrying");
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return true,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    continue;
                }
            };
            if entries.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => return true,
                    _ = self.store.outbox.written.notified() => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                }
                continue;
            }
            let (confirmed, all_ok) = self.publish_batch(publisher, &entries).await;
            if let Err(e) = self.delete(&confirmed).await {
                // They stay in the outbox and go out again: a duplicate, which consumers absorb.
                warn!(cause = %e, count = confirmed.len(), "published but could not delete from the outbox yet");
            }
            if all_ok {
                backoff.reset();
            } else {
                if !publisher.is_open() {
                    return false;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return true,
                    _ = backoff.wait() => {}
                }
            }
        }
    }

    async fn read_batch(&self) -> Result<Vec<Entry>, redis::RedisError> {
        let mut conn = self.store.redis().clone();
        let entries: Vec<Entry> = redis::cmd("XRANGE")
            .arg(self.store.keys().outbox())
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(BATCH)
            .query_async(&mut conn)
            .await?;
        Ok(entries)
    }

    /// Send every entry in order, then await all confirms. Returns the stream ids confirmed.
    async fn publish_batch(&self, publisher: &Publisher, entries: &[Entry]) -> (Vec<String>, bool) {
        let mut pending = Vec::with_capacity(entries.len());
        let mut all_ok = true;
        let mut malformed = Vec::new();
        for (stream_id, fields) in entries {
            let Some((routing_key, body, properties)) = message_of(fields) else {
                error!(stream_id, ?fields, "malformed outbox entry; removing it");
                malformed.push(stream_id.clone());
                continue;
            };
            match publisher
                .send(&self.exchange, routing_key, body.as_bytes(), properties)
                .await
            {
                Ok(confirm) => pending.push((stream_id.clone(), fields, confirm)),
                Err(e) => {
                    warn!(cause = %e, "publish failed; the rest of the batch waits");
                    all_ok = false;
                    break;
                }
            }
        }
        let results = join_all(
            pending
                .into_iter()
                .map(|(stream_id, fields, confirm)| async move {
                    (stream_id, fields, confirm.confirmed().await)
                }),
        )
        .await;
        let mut confirmed = malformed;
        for (stream_id, fields, result) in results {
            match result {
                Ok(()) => {
                    let order_id = fields.get("order_id").map(String::as_str).unwrap_or("");
                    let event = fields.get("type").map(String::as_str).unwrap_or("");
                    debug!(order_id, event, "event published from the outbox");
                    confirmed.push(stream_id);
                }
                Err(e) => {
                    warn!(cause = %e, "broker did not confirm; the entry stays in the outbox");
                    all_ok = false;
                }
            }
        }
        (confirmed, all_ok)
    }

    async fn delete(&self, ids: &[String]) -> Result<(), redis::RedisError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.store.redis().clone();
        let (_, depth): (i64, i64) = redis::pipe()
            .cmd("XDEL")
            .arg(self.store.keys().outbox())
            .arg(ids)
            .cmd("XLEN")
            .arg(self.store.keys().outbox())
            .query_async(&mut conn)
            .await?;
        self.store.outbox.measured(depth.max(0) as u64);
        Ok(())
    }
}

/// Routing key, body and properties of an outbox entry, if it is well formed.
fn message_of(fields: &HashMap<String, String>) -> Option<(&str, &str, BasicProperties)> {
    let get = |k: &str| fields.get(k).map(String::as_str);
    let properties = BasicProperties::default()
        .with_message_id(get("event_id")?.into())
        .with_type(get("type")?.into())
        .with_correlation_id(get("correlation_id")?.into())
        .with_app_id(SERVICE.into())
        .with_timestamp(get("timestamp")?.parse().ok()?)
        .with_content_type("application/json".into())
        .with_delivery_mode(2);
    Some((get("routing_key")?, get("body")?, properties))
}
