//! Group commit for the replica's stock: stock updates of one item that arrive together are
//! written to Redis once, by the newest of them.
//!
//! Every reservation makes inventory announce `product.stock.updated` for its item, so under
//! load `order_catalog_queue` delivers a stream of them for the same few items, each with a
//! higher `seq`. The replica keeps only the newest stock (`lua/replica_apply.lua` ignores an
//! older `seq`), so writing each one is work that the next write undoes. [`Coalesced`] lets
//! one write per item be in flight at a time; the updates that arrive meanwhile wait for their
//! turn, and the first of them to get it writes the newest one that arrived. The others find
//! their `seq` already covered by a write that succeeded and are done without a round trip.
//!
//! Nothing is acked early: a delivery's handler returns only once a write that covers its `seq`
//! succeeded in Redis. If that write fails, each waiting update tries again with its own event.
//! Snapshots and price changes are rare and go straight through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use saga_domain::ids::Item;
use saga_domain::product::{ProductChange, ProductEvent};

use super::consumer::ReplicaStore;

/// A [`ReplicaStore`] whose stock updates of one item are written one at a time, the newest
/// that arrived meanwhile standing for the rest.
pub struct Coalesced<R> {
    inner: R,
    /// Only the items with updates in flight; an item's lane goes when its last update leaves.
    lanes: Mutex<HashMap<Item, Arc<Lane>>>,
}

/// One item's updates in flight.
#[derive(Default)]
struct Lane {
    /// Held for the whole of a write to Redis: one write per item at a time.
    turn: tokio::sync::Mutex<()>,
    state: Mutex<LaneState>,
}

#[derive(Default)]
struct LaneState {
    /// Updates of the item in this lane (counted under the map's lock).
    users: usize,
    /// The newest update that arrived and was not written yet.
    newest: Option<ProductEvent>,
    /// The highest `seq` a successful write carried, and whether that write changed the replica.
    written: Option<(u64, bool)>,
}

impl<R: ReplicaStore> Coalesced<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            lanes: Mutex::new(HashMap::new()),
        }
    }

    fn join(&self, event: &ProductEvent) -> Arc<Lane> {
        let mut lanes = lock(&self.lanes);
        let lane = lanes.entry(event.item.clone()).or_default().clone();
        let mut state = lock(&lane.state);
        state.users += 1;
        if state.newest.as_ref().is_none_or(|n| n.seq < event.seq) {
            state.newest = Some(event.clone());
        }
        drop(state);
        lane
    }

    fn leave(&self, item: &Item, lane: &Arc<Lane>) {
        let mut lanes = lock(&self.lanes);
        let mut state = lock(&lane.state);
        state.users -= 1;
        if state.users == 0 {
            drop(state);
            lanes.remove(item);
        }
    }

    /// Wait for the item's turn; then either a write that succeeded already carried this
    /// update's `seq`, or this update writes the newest one that arrived.
    async fn write_through(
        &self,
        lane: &Lane,
        event: &ProductEvent,
    ) -> Result<bool, redis::RedisError> {
        let _turn = lane.turn.lock().await;
        let newest = {
            let mut state = lock(&lane.state);
            if let Some((seq, changed)) = state.written
                && seq >= event.seq
            {
                return Ok(changed);
            }
            // The newest one that arrived, unless a write that failed took it: then our own.
            match state.newest.take() {
                Some(newest) if newest.seq >= event.seq => newest,
                other => {
                    state.newest = other;
                    event.clone()
                }
            }
        };
        let changed = self.inner.apply(&newest).await?;
        lock(&lane.state).written = Some((newest.seq, changed));
        Ok(changed)
    }
}

impl<R: ReplicaStore> ReplicaStore for Coalesced<R> {
    async fn apply(&self, event: &ProductEvent) -> Result<bool, redis::RedisError> {
        if !matches!(event.change, ProductChange::StockUpdated { .. }) {
            return self.inner.apply(event).await;
        }
        let lane = self.join(event);
        let written = self.write_through(&lane, event).await;
        self.leave(&event.item, &lane);
        written
    }
}

/// The lock, even if a thread panicked holding it: the state is counters and an event, each
/// written in one step, so it is never half-changed.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    /// Keeps the highest stock seq per item, counts writes, and can be told to fail them.
    struct Counting {
        held: Mutex<HashMap<String, u64>>,
        writes: AtomicUsize,
        failing: AtomicBool,
        /// Each write waits for this, so a test can have updates arrive during a write.
        gate: tokio::sync::Semaphore,
    }

    impl Default for Counting {
        fn default() -> Self {
            Self {
                held: Mutex::default(),
                writes: AtomicUsize::new(0),
                failing: AtomicBool::new(false),
                gate: tokio::sync::Semaphore::new(0),
            }
        }
    }

    impl ReplicaStore for Arc<Counting> {
        async fn apply(&self, event: &ProductEvent) -> Result<bool, redis::RedisError> {
            self.gate.acquire().await.unwrap().forget();
            self.writes.fetch_add(1, Ordering::SeqCst);
            if self.failing.load(Ordering::SeqCst) {
                return Err(redis::RedisError::from(std::io::Error::other("down")));
            }
            let mut held = self.held.lock().unwrap();
            let seq = held.entry(event.item.to_string()).or_default();
            let newer = event.seq > *seq;
            *seq = (*seq).max(event.seq);
            Ok(newer)
        }
    }

    fn stock(seq: u64) -> ProductEvent {
        ProductEvent {
            item: Item::parse("burger").unwrap(),
            seq,
            at: 1,
            change: ProductChange::StockUpdated {
                stock: 100 - seq as i64,
                previous: 101 - seq as i64,
            },
        }
    }

    /// Updates 2..=5 arrive while update 1 is being written: one more write carries 5, and
    /// every update returns only after a write that covers it.
    #[tokio::test]
    async fn updates_that_arrive_during_a_write_are_carried_by_one_write() {
        let store = Arc::new(Counting::default());
        let coalesced = Arc::new(Coalesced::new(store.clone()));
        let mut tasks = tokio::task::JoinSet::new();
        for seq in 1..=5 {
            let coalesced = coalesced.clone();
            tasks.spawn(async move { coalesced.apply(&stock(seq)).await.unwrap() });
            tokio::task::yield_now().await;
        }
        store.gate.add_permits(10);
        let mut changed = Vec::new();
        while let Some(done) = tasks.join_next().await {
            changed.push(done.unwrap());
        }
        assert_eq!(
            store.writes.load(Ordering::SeqCst),
            2,
            "1, then 5 for 2..=5"
        );
        assert_eq!(store.held.lock().unwrap()["burger"], 5);
        assert!(changed.iter().all(|c| *c), "{changed:?}");
        assert!(
            coalesced.lanes.lock().unwrap().is_empty(),
            "lanes are let go"
        );
    }

    /// A write that fails leaves each waiting update to try its own.
    #[tokio::test]
    async fn a_failed_write_covers_nothing() {
        let store = Arc::new(Counting::default());
        store.failing.store(true, Ordering::SeqCst);
        let coalesced = Arc::new(Coalesced::new(store.clone()));
        let first = tokio::spawn({
            let coalesced = coalesced.clone();
            async move { coalesced.apply(&stock(1)).await }
        });
        tokio::task::yield_now().await;
        let second = tokio::spawn({
            let coalesced = coalesced.clone();
            async move { coalesced.apply(&stock(2)).await }
        });
        tokio::task::yield_now().await;
        store.gate.add_permits(10);
        assert!(first.await.unwrap().is_err());
        assert!(second.await.unwrap().is_err(), "not covered by a failure");
        assert_eq!(store.writes.load(Ordering::SeqCst), 2);
        store.failing.store(false, Ordering::SeqCst);
        assert!(coalesced.apply(&stock(2)).await.unwrap(), "its redelivery");
        assert!(
            !coalesced.apply(&stock(1)).await.unwrap(),
            "older: unchanged"
        );
    }
}
