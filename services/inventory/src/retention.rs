//! Retention of the reservation records (docs/OPERATIONS.md, "Retention: inventory-svc").
//!
//! A record is the dedupe of a late duplicate OrderPlaced / OrderCancelled and a line of the
//! ledger that `sagactl check` audits, so it cannot simply expire. It goes in two steps, each
//! one Lua script per batch, so that the ledger balances at every moment:
//!
//! 1. `ORDER_RETENTION` after the decision (or the release), `lua/compact.lua` keeps only
//!    `state`, `item`, `qty`, `released_qty` (+ `compacted_at`): enough to know a duplicate, to
//!    release a CONFIRMED order cancelled later, and to add up the ledger.
//! 2. `DEDUPE_WINDOW` after that, `lua/archive.lua` folds the record into the per-item archived
//!    totals (`Keys::stock_archived_reserved` / `_released`) and deletes it. From then on a
//!    duplicate OrderPlaced of the order is not recognised and would take stock again.
//!
//! The schedules are sorted sets (order id → due ms) written by the scripts that decide,
//! release and compact, so no record escapes them; [`Sweeper::run`] takes what is due.

use std::sync::Arc;
use std::time::Duration;

use redis::Script;
use saga_domain::events::unix_now_millis;
use saga_domain::order::ReservationState;
use saga_platform::redis::store::{Keys, Redis};
use saga_platform::service::config::RetentionArgs;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::stock::{RedisLedger, millis};

/// How often the sweeper looks for due records. A record is compacted at most this late, which
/// is nothing next to a retention of days (and keeps a test's 2 s retention quick).
const EVERY: Duration = Duration::from_secs(1);

/// Records per script call: one call holds Redis for well under a millisecond.
const BATCH: usize = 200;

/// Batches per step and pass, so that a huge backlog (a first start after a long outage)
/// never keeps one pass from looking at shutdown.
const BATCHES_PER_PASS: usize = 50;

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub compacted: u64,
    pub archived: u64,
}

/// The task that compacts and archives due reservation records.
pub struct Sweeper {
    redis: Redis,
    keys: Keys,
    windows: RetentionArgs,
    compact: Script,
    archive: Script,
}

impl Sweeper {
    /// A sweeper over the ledger's records, with its retention windows.
    pub fn new(ledger: &RedisLedger) -> Self {
        Self {
            redis: ledger.redis().clone(),
            keys: ledger.keys().clone(),
            windows: ledger.retention(),
            compact: Script::new(include_str!("lua/compact.lua")),
            archive: Script::new(include_str!("lua/archive.lua")),
        }
    }

    /// Sweep every [`EVERY`] until `shutdown`. A Redis error is logged and the next pass tries
    /// again: an outage is `/ready`'s to report, and ending would only restart this task.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            match self.sweep(unix_now_millis()).await {
                Ok(swept) if swept != Swept::default() => {
                    info!(
                        compacted = swept.compacted,
                        archived = swept.archived,
                        "reservation records compacted / archived"
                    );
                }
                Ok(_) => {}
                Err(e) => warn!(cause = %e, "reservation retention pass failed; trying again"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(EVERY) => {}
            }
        }
    }

    /// One pass at time `now` (ms): compact what is due, then archive what is due.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn sweep(&self, now: u64) -> Result<Swept, redis::RedisError> {
        let compacted = self
            .step(&self.keys.reservations_compacting(), now, |ids| {
                let mut call = self.compact.prepare_invoke();
                call.key(self.keys.reservations_compacting())
                    .key(self.keys.reservations_archiving())
                    .arg(now)
                    .arg(millis(self.windows.dedupe_window));
                for id in ids {
                    call.key(self.keys.reservation(id)).arg(id);
                }
                call
            })
            .await?;
        let archived = self
            .step(&self.keys.reservations_archiving(), now, |ids| {
                let mut call = self.archive.prepare_invoke();
                call.key(self.keys.reservations_archiving())
                    .key(self.keys.stock_archived_reserved())
                    .key(self.keys.stock_archived_released())
                    .arg(now)
                    .arg(ReservationState::Reserved.as_str())
                    .arg(ReservationState::Released.as_str());
                for id in ids {
                    call.key(self.keys.reservation(id)).arg(id);
                }
                call
            })
            .await?;
        metrics::counter!("saga_reservations_compacted_total").increment(compacted);
        metrics::counter!("saga_reservations_archived_total").increment(archived);
        Ok(Swept {
            compacted,
            archived,
        })
    }

    /// Take the ids due in `schedule`, batch by batch, and run the step's script on each batch.
    async fn step<'a>(
        &'a self,
        schedule: &str,
        now: u64,
        call: impl Fn(&[String]) -> redis::ScriptInvocation<'a>,
    ) -> Result<u64, redis::RedisError> {
        let mut conn = self.redis.clone();
        let mut done = 0;
        for _ in 0..BATCHES_PER_PASS {
            let due: Vec<String> = redis::cmd("ZRANGEBYSCORE")
                .arg(schedule)
                .arg("-inf")
                .arg(now)
                .arg("LIMIT")
                .arg(0)
                .arg(BATCH)
                .query_async(&mut conn)
                .await?;
            if due.is_empty() {
                break;
            }
            let n: u64 = call(&due).invoke_async(&mut conn).await?;
            debug!(schedule, due = due.len(), done = n, "retention batch");
            done += n;
            // Every id read was due, and the script removes each due id from the schedule
            // (done or not): a short batch means nothing more is due.
            if due.len() < BATCH {
                break;
            }
        }
        Ok(done)
    }
}
