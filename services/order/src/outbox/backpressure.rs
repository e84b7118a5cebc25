//! Backpressure at the front door: how full the outbox is, and whether to take one more order.
//!
//! HTTP accepts orders faster than the broker can carry them, and every order accepted beyond
//! what the relay keeps up with only waits in the outbox, adding latency for everyone. So while
//! the relay is connected, `POST /order` waits (briefly) for the outbox to drain below its high
//! water mark, and answers 503 if it does not. While the broker is away the outbox is exactly
//! where orders should wait, so then every order is taken.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use saga_platform::amqp::BrokerStatus;
use tokio::sync::Notify;

/// How long a request may wait for room before it is told to come back.
const ADMIT_WAIT: Duration = Duration::from_secs(1);

pub struct Outbox {
    /// Wakes the relay as soon as something is written.
    pub written: Notify,
    drained: Notify,
    depth: AtomicU64,
    high_water: u64,
    relay: Arc<BrokerStatus>,
}

/// The outbox stayed full: the broker is not keeping up right now.
#[derive(Debug, thiserror::Error)]
#[error("busy: {depth} events are waiting to be published; retry shortly")]
pub struct Busy {
    pub depth: u64,
}

impl Outbox {
    pub fn new(high_water: u64, relay: Arc<BrokerStatus>) -> Self {
        Self {
            written: Notify::new(),
            drained: Notify::new(),
            depth: AtomicU64::new(0),
            high_water,
            relay,
        }
    }

    /// Wait until there is room for one more order.
    ///
    /// # Errors
    /// [`Busy`] if the outbox stayed at its high water mark for [`ADMIT_WAIT`].
    pub async fn admit(&self) -> Result<(), Busy> {
        let deadline = Instant::now() + ADMIT_WAIT;
        loop {
            // Register for the wake-up before looking, so a drain in between is not missed.
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            let depth = self.depth.load(Ordering::Relaxed);
            if depth < self.high_water || !self.relay.is_up() {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, drained).await.is_err() {
                return Err(Busy { depth });
            }
        }
    }

    /// An event was written to the outbox.
    pub fn wrote(&self) {
        self.depth.fetch_add(1, Ordering::Relaxed);
        self.written.notify_one();
    }

    /// The relay measured the outbox (it does on every read).
    pub fn measured(&self, depth: u64) {
        self.depth.store(depth, Ordering::Relaxed);
        metrics::gauge!("saga_outbox_depth").set(depth as f64);
        self.drained.notify_waiters();
    }
}
