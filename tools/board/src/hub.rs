//! Fan-out of live updates to every open page.
//!
//! Each update belongs to a [`Topic`] (`orders`, `stock`, `dlq`, ...), and its payload's type
//! says which ([`Payload`]). The hub keeps the latest
//! value of each topic, so a page that opens now is drawn at once, and broadcasts every change
//! to the pages already open. A value equal to the last one sent is not sent again: pages only
//! hear about changes. A page too slow to keep up misses some changes and is sent every
//! latest value again, which is all it needs to be right.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::lock;
use crate::page::{Payload, Topic};

/// Changes a page may fall behind by before it is resynchronised.
const BACKLOG: usize = 256;

/// One server-sent event: a topic and its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub topic: Topic,
    pub data: Arc<str>,
}

pub struct Hub {
    tx: broadcast::Sender<Update>,
    latest: Mutex<BTreeMap<Topic, Update>>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    pub fn new() -> Self {
        Self {
            tx: broadcast::channel(BACKLOG).0,
            latest: Mutex::new(BTreeMap::new()),
        }
    }

    /// A topic's new value: kept as its latest and sent, unless it has not changed.
    pub fn set<P: Payload>(&self, value: &P) {
        let Some(update) = encode(value) else {
            return;
        };
        {
            let mut latest = lock(&self.latest);
            if latest.get(&P::TOPIC) == Some(&update) {
                return;
            }
            latest.insert(P::TOPIC, update.clone());
        }
        // No page open is not an error.
        let _ = self.tx.send(update);
    }

    /// Send without keeping: one step of a stream (a queue sample, a line of a drill's output)
    /// that a page opening later gets in another form.
    pub fn send<P: Payload>(&self, value: &P) {
        if let Some(update) = encode(value) {
            let _ = self.tx.send(update);
        }
    }

    /// Keep as the latest value without sending it (the pages already open built it from
    /// [`Hub::send`]s).
    pub fn keep<P: Payload>(&self, value: &P) {
        if let Some(update) = encode(value) {
            lock(&self.latest).insert(P::TOPIC, update);
        }
    }

    /// Every topic's latest value.
    pub fn latest(&self) -> Vec<Update> {
        lock(&self.latest).values().cloned().collect()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Update> {
        self.tx.subscribe()
    }
}

fn encode<P: Payload>(value: &P) -> Option<Update> {
    // Our own types always serialize; were one not to, that topic would just not update.
    let data = serde_json::to_string(value).ok()?;
    Some(Update {
        topic: P::TOPIC,
        data: data.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::{DrillLine, Stock, StockRow};

    fn stock(available: i64) -> Stock {
        Stock {
            items: vec![StockRow {
                item: "burger".into(),
                available,
                initial: available,
                reserved: 0,
                released: 0,
                balanced: true,
            }],
            violations: Vec::new(),
        }
    }

    #[test]
    fn unchanged_values_are_not_sent_again() {
        let hub = Hub::new();
        let mut rx = hub.subscribe();
        hub.set(&stock(1));
        hub.set(&stock(1));
        hub.set(&stock(2));
        let first = rx.try_recv().unwrap();
        assert_eq!(first.topic, Topic::Stock);
        assert!(first.data.contains(r#""available":1"#));
        assert!(rx.try_recv().unwrap().data.contains(r#""available":2"#));
        assert!(rx.try_recv().is_err());
        assert_eq!(hub.latest().len(), 1);
    }

    #[test]
    fn sent_steps_are_not_kept_and_kept_values_are_not_sent() {
        let hub = Hub::new();
        let mut rx = hub.subscribe();
        hub.send(&DrillLine("a".into()));
        hub.keep(&stock(1));
        assert_eq!(rx.try_recv().unwrap().topic, Topic::DrillLine);
        assert!(rx.try_recv().is_err());
        let latest: Vec<Topic> = hub.latest().iter().map(|u| u.topic).collect();
        assert_eq!(latest, [Topic::Stock]);
    }
}
