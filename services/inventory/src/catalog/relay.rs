//! The catalog's relay: publishes the catalog's outbox with confirms, oldest entry first, and
//! deletes an entry only once the broker confirmed all its events. A crash in between publishes
//! the entry again after the restart, with the same event ids (see [`super::outbox`]); a
//! consumer that keeps the highest `seq` it applied absorbs it either way.
//!
//! Not order-svc's relay: that one is built around orders (their outbox's backpressure, parking
//! noted on an order's timeline, batched confirms for thousands of orders a second). The
//! catalog's events come a few at a time (a price set by hand, a snapshot at start-up), so this
//! one publishes an entry at a time, and an entry it cannot read (only a hand-made one can be
//! so) is logged and dropped rather than parked.
//!
//! Like every publisher here it declares the topology after each (re)connect, and again when a
//! publish comes back unroutable or the exchange is gone (invariant 7).

use std::sync::Arc;
use std::time::Duration;

use saga_domain::envelope::Envelope;
use saga_domain::events::EventMeta;
use saga_platform::amqp::properties::outgoing;
use saga_platform::amqp::topology::Topology;
use saga_platform::amqp::{
    BrokerStatus, PublishError, Publisher, close_connection, connect, declare_topology,
};
use saga_platform::service::backoff::Backoff;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::Catalog;
use super::outbox::{Fields, Outgoing, events_of};
use crate::handler::SERVICE;

/// Entries read from the outbox at a time.
const BATCH: usize = 100;
/// How often an idle relay looks at the outbox anyway (a write is also rung in).
const IDLE_POLL: Duration = Duration::from_millis(500);

pub struct CatalogRelay {
    pub catalog: Catalog,
    pub url: String,
    pub topology: Topology,
    /// Whether the relay holds a working broker connection (for `/ready`).
    pub status: Arc<BrokerStatus>,
    pub envelope: Envelope,
}

/// Why a session ended.
enum Ended {
    Shutdown,
    /// The broker or Redis failed: reconnect after a pause.
    Trouble,
}

impl CatalogRelay {
    /// Publish the outbox until `shutdown`, reconnecting whenever the broker is lost.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = Backoff::for_outages();
        let name = format!("{SERVICE} catalog relay");
        while let Some(conn) = connect(&self.url, &name, &shutdown).await {
            let ended = match Publisher::open(&conn).await {
                Ok(publisher) => {
                    if let Err(e) = declare_topology(&conn, &self.topology).await {
                        warn!(cause = %e, "catalog relay: cannot declare the topology yet");
                    }
                    self.status.set(true);
                    self.session(&conn, &publisher, &shutdown, &mut backoff)
                        .await
                }
                Err(e) => {
                    warn!(cause = %e, "catalog relay: cannot open a channel");
                    Ended::Trouble
                }
            };
            self.status.set(false);
            close_connection(&conn, 200, "catalog relay stopping").await;
            if matches!(ended, Ended::Shutdown) || !backoff.wait(&shutdown).await {
                break;
            }
        }
        info!("catalog relay stopped");
    }

    async fn session(
        &self,
        conn: &lapin::Connection,
        publisher: &Publisher,
        shutdown: &CancellationToken,
        backoff: &mut Backoff,
    ) -> Ended {
        let written = self.catalog.written();
        loop {
            if shutdown.is_cancelled() {
                return Ended::Shutdown;
            }
            let entries = match self.read_batch().await {
                Ok(entries) => entries,
                Err(e) => {
                    warn!(cause = %e, "catalog relay: cannot read the outbox (Redis)");
                    return Ended::Trouble;
                }
            };
            if entries.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ended::Shutdown,
                    _ = written.notified() => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                }
                continue;
            }
            for (stream_id, fields) in entries {
                match self.publish_entry(publisher, &fields).await {
                    Ok(()) => {}
                    Err(e) => {
                        warn!(cause = %e, stream_id, "catalog relay: publish failed; the entry stays in the outbox");
                        if e.topology_missing() {
                            let _ = declare_topology(conn, &self.topology).await;
                        }
                        return Ended::Trouble;
                    }
                }
                if let Err(e) = self.delete(&stream_id).await {
                    // Published, not deleted: it goes out again, with the same ids.
                    warn!(cause = %e, stream_id, "catalog relay: published but cannot delete the entry yet");
                    return Ended::Trouble;
                }
                backoff.reset();
            }
        }
    }

    /// Publish every event of one entry, each confirmed. An entry that cannot be read is
    /// dropped with an error in the log (nothing of ours writes one).
    async fn publish_entry(
        &self,
        publisher: &Publisher,
        fields: &Fields,
    ) -> Result<(), PublishError> {
        let outgoing_events = match events_of(fields) {
            Ok(events) => events,
            Err(why) => {
                error!(reason = %why, ?fields, "catalog relay: an outbox entry that is no catalog entry; dropped");
                return Ok(());
            }
        };
        for Outgoing { event_id, event } in outgoing_events {
            let kind = event.event_type();
            let mut meta = EventMeta::new(kind, event.item.as_str(), SERVICE);
            meta.event_id = event_id;
            let (body, properties) = outgoing(&meta.stamp(None), self.envelope, &event.to_body());
            publisher
                .publish(
                    &self.topology.exchange,
                    kind.routing_key(),
                    &body,
                    properties,
                )
                .await?;
            debug!(item = %event.item, seq = event.seq, event = kind.routing_key(), "product event published");
        }
        Ok(())
    }

    async fn read_batch(&self) -> Result<Vec<(String, Fields)>, redis::RedisError> {
        let mut conn = self.catalog.redis().clone();
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.catalog.keys().catalog_outbox())
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(BATCH)
            .query_async(&mut conn)
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .map(|entry| {
                let fields = entry
                    .map
                    .iter()
                    .filter_map(|(k, v)| {
                        redis::from_redis_value::<String>(v.clone())
                            .ok()
                            .map(|v| (k.clone(), v))
                    })
                    .collect();
                (entry.id, fields)
            })
            .collect())
    }

    async fn delete(&self, stream_id: &str) -> Result<(), redis::RedisError> {
        let mut conn = self.catalog.redis().clone();
        redis::cmd("XDEL")
            .arg(self.catalog.keys().catalog_outbox())
            .arg(stream_id)
            .query_async(&mut conn)
            .await
    }
}
