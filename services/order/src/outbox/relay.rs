//! The relay: publishes what `POST /order` and cancel wrote to the outbox stream.
//!
//! An entry is deleted only after the broker confirmed it. Entries are sent in order on one
//! channel, a batch at a time; each batch's confirms are awaited together by a task of its own
//! while the next batch goes out, with at most [`WINDOW`] entries unconfirmed. If we crash
//! between the confirm and the delete, the entry is published again on restart: consumers
//! dedupe by order id.
//!
//! The relay declares the topology after every (re)connect and again before resending after any
//! failure: a publish answered NOT_FOUND (the exchange was deleted) or returned unroutable (a
//! binding or queue was deleted) heals the broker and goes out again, without a restart.
//!
//! No entry can stop it. One that can never be published as it is, and one whose publish or
//! confirm panicked, is parked ([`super::parked`]) with its reason instead of being retried:
//! a panic is caught around each entry's publish and confirm, so it ends neither the relay nor
//! its session, and the same entry is never tried again after a restart (the relay as a whole
//! is also supervised, `saga_platform::service::watch::supervise`, for anything else).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands;
use saga_domain::envelope::Envelope;
use saga_domain::events::EventType;
use saga_domain::trace::Trace;

use futures_util::FutureExt;
use futures_util::future::join_all;
use lapin::Connection;
use saga_platform::amqp::topology::Topology;
use saga_platform::amqp::{
    BrokerStatus, PendingConfirm, Publisher, close_connection, connect, declare_topology,
};
use saga_platform::service::backoff::Backoff;
use saga_platform::service::spans::{self, SpanKind, Spans};
use saga_platform::service::watch::panic_message;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Message, RawFields, message_of, parked, shown};
use crate::SERVICE;
use crate::orders::OrderStore;

/// Entries read and sent per batch.
const BATCH: usize = 256;
/// Most entries sent and not yet confirmed. Bounded because confirms queue up at the broker:
/// a deeper window adds latency, not throughput.
const WINDOW: usize = 2 * BATCH;
/// How long, once shutdown is asked, the relay waits for the confirms of what it already sent.
const LAST_CONFIRMS: Duration = Duration::from_secs(3);
/// How often an idle relay looks for entries nobody told it about (another instance's, or
/// left by a crash before the notification).
const IDLE_POLL: Duration = Duration::from_millis(500);

pub struct Relay {
    pub store: OrderStore,
    pub url: String,
    pub topology: Topology,
    pub status: Arc<BrokerStatus>,
    /// How events are published (`EVENT_ENVELOPE`).
    pub envelope: Envelope,
    /// Where each publish's span goes (nowhere by default).
    pub spans: Spans,
}

/// An entry as read: its stream id and its fields.
type Entry = (String, RawFields);

impl Relay {
    /// Relay until `shutdown`, reconnecting to the broker whenever needed.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let name = format!("{SERVICE} outbox relay");
        let mut backoff = Backoff::for_outages();
        while let Some(conn) = connect(&self.url, &name, &shutdown).await {
            let opened = async {
                declare_topology(&conn, &self.topology).await?;
                Publisher::open(&conn).await
            };
            let publisher = match opened.await {
                Ok(p) => p,
                Err(e) => {
                    warn!(cause = %e, "cannot declare the topology or open a confirm channel; reconnecting");
                    close_connection(&conn, 320, "reconnecting").await;
                    if !backoff.wait(&shutdown).await {
                        break;
                    }
                    continue;
                }
            };
            self.status.set(true);
            let ended_by_shutdown = tokio::select! {
                ended = self.relay_session(&conn, &publisher, &shutdown) => ended,
                // A broker that blocks publishers never confirms: stop waiting. Whatever was
                // not confirmed is still in the outbox and goes out after the next start.
                () = grace_after(&shutdown) => true,
            };
            self.status.set(false);
            close_connection(&conn, 200, "relay stopping").await;
            if ended_by_shutdown {
                break;
            }
            warn!(
                "outbox relay lost the broker; reconnecting (unconfirmed entries stay in the outbox)"
            );
            if !backoff.wait(&shutdown).await {
                break;
            }
        }
        info!("outbox relay stopped");
    }

    /// Publish batches until shutdown (`true`) or until the channel dies (`false`).
    ///
    /// A batch is sent, handed to a task that awaits its confirms and deletes it, and the next
    /// batch goes out at once: a new order never waits for an earlier batch's confirms, only
    /// for room in the [`WINDOW`]. Any failure rewinds: wait for every batch in flight, then
    /// read the outbox from its start again (whatever was not deleted goes out again).
    async fn relay_session(
        &self,
        conn: &Connection,
        publisher: &Publisher,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut backoff = Backoff::for_outages();
        let window = Arc::new(Semaphore::new(WINDOW));
        let mut in_flight: JoinSet<bool> = JoinSet::new();
        let mut cursor = Cursor::Start;
        let mut rewind = false;
        loop {
            while let Some(done) = in_flight.try_join_next() {
                note_verdict(done, &mut rewind, &mut backoff);
            }
            if shutdown.is_cancelled() {
                in_flight.join_all().await;
                return true;
            }
            if rewind {
                // Their verdicts no longer matter: everything not deleted goes out again.
                std::mem::take(&mut in_flight).join_all().await;
                if !publisher.is_open() {
                    return false;
                }
                // A returned message means a binding or queue is gone: put the topology back
                // before sending again (cheap, and a rewind is rare).
                if let Err(e) = declare_topology(conn, &self.topology).await {
                    warn!(cause = %e, "cannot declare the topology; reconnecting");
                    return false;
                }
                cursor = Cursor::Start;
                rewind = false;
                if !backoff.wait(shutdown).await {
                    return true;
                }
                continue;
            }
            let entries = match self.read_batch(&cursor).await {
                Ok(entries) => entries,
                Err(e) => {
                    if backoff.worth_logging() {
                        warn!(cause = %e, attempt = backoff.attempts() + 1, "cannot read the outbox (Redis); retrying");
                    }
                    // At shutdown, the loop's top finishes what is in flight and returns.
                    backoff.wait(shutdown).await;
                    continue;
                }
            };
            let Some((last, _)) = entries.last() else {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = self.store.outbox.written.notified() => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                    Some(done) = in_flight.join_next() => note_verdict(done, &mut rewind, &mut backoff),
                }
                continue;
            };
            cursor = Cursor::After(last.clone());
            // Room for the whole batch in the window; the semaphore is never closed.
            let Ok(room) = window
                .clone()
                .acquire_many_owned(entries.len() as u32)
                .await
            else {
                return false;
            };
            let (sent, all_sent) = self.send_batch(publisher, entries).await;
            let store = self.store.clone();
            in_flight.spawn(async move {
                let ok = confirm_and_delete(&store, sent).await;
                drop(room);
                ok
            });
            rewind |= !all_sent;
        }
    }

    /// Up to [`BATCH`] entries after `cursor`, oldest first. Also measures the outbox for the
    /// front door's backpressure: here, in the one loop that reads, and not where the batches'
    /// tasks delete concurrently, whose measurements could arrive out of order and leave a
    /// stale depth behind.
    async fn read_batch(&self, cursor: &Cursor) -> Result<Vec<Entry>, redis::RedisError> {
        let mut conn = self.store.redis().clone();
        let from = match cursor {
            Cursor::Start => "-".to_owned(),
            // `(` makes XRANGE start just after this id.
            Cursor::After(id) => format!("({id}"),
        };
        let outbox = self.store.keys().outbox();
        let (entries, depth): (Vec<Entry>, u64) = redis::pipe()
            .xrange_count(&outbox, from, "+", BATCH)
            .xlen(&outbox)
            .query_async(&mut conn)
            .await?;
        self.store.outbox.measured(depth);
        Ok(entries)
    }

    /// Send every entry in order, without waiting for confirms. Stops at the first failed
    /// send (`false`): that entry and the rest stay in the outbox. An entry that cannot be
    /// published is passed on to be parked; one whose send panicked too, and then the batch
    /// stops (`false`), since the channel's state after a panic is anybody's guess.
    ///
    /// Every publish of the batch is queued before any is awaited: lapin queues a publish's
    /// frames (and numbers it for its confirm) when it is first polled, and `join_all` polls
    /// them first in order, so they go out in order, in as few socket writes as lapin can.
    /// Awaiting each send before queueing the next cost two thread hand-offs per message
    /// (the relay's task and lapin's I/O thread waking each other). Should a send fail, the
    /// ones after it may have gone out too; they stay in the outbox all the same and are sent
    /// again (consumers dedupe), as after any rewind.
    async fn send_batch(&self, publisher: &Publisher, entries: Vec<Entry>) -> (Vec<Sent>, bool) {
        let mut sent = Vec::with_capacity(entries.len());
        let mut ready = Vec::with_capacity(entries.len());
        let mut messages = Vec::with_capacity(entries.len());
        let envelope = self.envelope;
        for (stream_id, fields) in entries {
            match std::panic::catch_unwind(|| message_of(&fields, envelope)) {
                Ok(Ok(message)) => {
                    ready.push((stream_id, fields));
                    messages.push(message);
                }
                Ok(Err(why)) => sent.push(Sent::Unpublishable(stream_id, fields, why.0)),
                // message_of is written not to panic; should it ever, that entry is the cause.
                Err(panic) => {
                    let why = format!("reading it panicked: {}", panic_message(&*panic));
                    sent.push(Sent::Unpublishable(stream_id, fields, why));
                }
            }
        }
        let exchange = &self.topology.exchange;
        let spans = &self.spans;
        let sends =
            messages
                .into_iter()
                .zip(&ready)
                .map(|(message, (stream_id, fields))| async move {
                    let Message {
                        event,
                        body,
                        properties,
                        trace,
                    } = message;
                    let sending = publisher.send(exchange, event.routing_key(), &body, properties);
                    let sent = AssertUnwindSafe(sending).catch_unwind().await;
                    if let Some((trace, parent)) = trace {
                        spans.record(|| {
                            publish_span(event, exchange, stream_id, fields, trace, parent)
                        });
                    }
                    sent
                });
        let results = join_all(sends).await;
        for ((stream_id, fields), result) in ready.into_iter().zip(results) {
            match result {
                Ok(Ok(confirm)) => sent.push(Sent::Published(stream_id, fields, confirm)),
                Ok(Err(e)) => {
                    warn!(cause = %e, "publish failed; the rest of the batch waits");
                    return (sent, false);
                }
                Err(panic) => {
                    let why = format!("publishing it panicked: {}", panic_message(&*panic));
                    sent.push(Sent::Unpublishable(stream_id, fields, why));
                    return (sent, false);
                }
            }
        }
        (sent, true)
    }
}

/// The span of one entry's publish, from the moment it was written to the outbox (its stream
/// id's milliseconds) to the moment it went out: a waterfall shows the time it spent there.
fn publish_span(
    event: EventType,
    exchange: &str,
    stream_id: &str,
    fields: &RawFields,
    trace: Trace,
    parent: u64,
) -> spans::Span {
    let now = SystemTime::now();
    let written = stream_id
        .split_once('-')
        .and_then(|(ms, _)| ms.parse::<u64>().ok())
        .map_or(now, |ms| UNIX_EPOCH + Duration::from_millis(ms));
    let waited = now.duration_since(written).unwrap_or_default();
    let text = |field: &[u8]| {
        fields
            .get(field)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    // The entry's event id is the message id it was published with.
    let (message_id, order_id) = (text(b"event_id"), text(b"order_id"));
    let mut attributes = spans::messaging(
        "send",
        exchange,
        event.routing_key(),
        message_id.as_deref(),
        order_id.as_deref(),
    );
    attributes.push(("saga.outbox_wait_ms", waited.as_millis().to_string()));
    spans::Span {
        name: format!("{} publish", event.routing_key()),
        kind: SpanKind::Producer,
        trace,
        parent: Some(parent),
        start: written.min(now),
        end: now,
        attributes,
        error: None,
    }
}

/// Take one batch's verdict: a batch confirmed *and deleted* earns a fresh backoff; anything
/// else rewinds. Only a deleted batch counts as progress: were a successful send enough, a Redis
/// that refuses the deletes (MISCONF, say) would have the relay publish the same entries again
/// every 100 ms, a stream of duplicates, instead of backing off to 5 s.
fn note_verdict(
    done: Result<bool, tokio::task::JoinError>,
    rewind: &mut bool,
    backoff: &mut Backoff,
) {
    if done.unwrap_or(false) {
        backoff.reset();
    } else {
        *rewind = true;
    }
}

/// Resolves [`LAST_CONFIRMS`] after shutdown was asked.
async fn grace_after(shutdown: &CancellationToken) {
    shutdown.cancelled().await;
    tokio::time::sleep(LAST_CONFIRMS).await;
}

/// Where the next outbox read starts.
enum Cursor {
    Start,
    After(String),
}

/// An outbox entry that left the relay: sent and awaiting its confirm, or to be parked (why).
enum Sent {
    Published(String, RawFields, PendingConfirm),
    Unpublishable(String, RawFields, String),
}

/// What became of one published entry once its confirm was awaited.
enum Confirmed {
    /// Confirmed: delete it from the outbox.
    Delete(String),
    /// Its confirm panicked, and it was parked (so it is gone from the outbox already).
    Parked,
    /// Not confirmed (or not parked): it stays, and goes out again after a rewind.
    Failed,
}

/// Await a batch's confirms, then delete what the broker confirmed, and park what cannot be
/// published. `false` if anything was not confirmed or a delete or park failed: the relay then
/// rewinds.
async fn confirm_and_delete(store: &OrderStore, sent: Vec<Sent>) -> bool {
    let mut all_ok = true;
    let mut published = Vec::with_capacity(sent.len());
    for sent in sent {
        match sent {
            Sent::Published(stream_id, fields, confirm) => {
                published.push((stream_id, fields, confirm));
            }
            Sent::Unpublishable(stream_id, fields, why) => {
                all_ok &= park(store, &stream_id, &fields, &why).await;
            }
        }
    }
    let verdicts = join_all(
        published
            .into_iter()
            .map(|(stream_id, fields, confirm)| async move {
                // A panic while confirming is this entry's, not the batch's: park it.
                match AssertUnwindSafe(confirm.confirmed()).catch_unwind().await {
                    Ok(Ok(())) => {
                        let (order_id, event) =
                            (shown(&fields, "order_id"), shown(&fields, "type"));
                        debug!(order_id, event, "event published from the outbox");
                        Confirmed::Delete(stream_id)
                    }
                    Ok(Err(e)) => {
                        warn!(cause = %e, "broker did not confirm; the entry stays in the outbox");
                        Confirmed::Failed
                    }
                    Err(panic) => {
                        let why = format!("confirming it panicked: {}", panic_message(&*panic));
                        if park(store, &stream_id, &fields, &why).await {
                            Confirmed::Parked
                        } else {
                            Confirmed::Failed
                        }
                    }
                }
            }),
    )
    .await;
    let mut done = Vec::with_capacity(verdicts.len());
    for verdict in verdicts {
        match verdict {
            Confirmed::Delete(stream_id) => done.push(stream_id),
            Confirmed::Parked => {}
            Confirmed::Failed => all_ok = false,
        }
    }
    if let Err(e) = delete(store, &done).await {
        // They stay in the outbox and go out again: a duplicate, which consumers absorb.
        warn!(cause = %e, count = done.len(), "published but could not delete from the outbox yet");
        all_ok = false;
    }
    all_ok
}

/// Park one entry; `false` if Redis did not take it (it stays in the outbox, and is parked on
/// the next read).
async fn park(store: &OrderStore, stream_id: &str, fields: &RawFields, why: &str) -> bool {
    match parked::park(store, stream_id, fields, why).await {
        Ok(()) => true,
        Err(e) => {
            warn!(cause = %e, stream_id, "cannot park an unpublishable outbox entry yet (Redis); retrying");
            false
        }
    }
}

async fn delete(store: &OrderStore, ids: &[String]) -> Result<(), redis::RedisError> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut conn = store.redis().clone();
    conn.xdel(store.keys().outbox(), ids).await
}
