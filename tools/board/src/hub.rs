//! Fan-out of live updates to every open page.
//!
//! Each update belongs to a topic (`orders`, `stock`, `dlq`, ...). The hub keeps the latest
//! value of each topic, so a page that opens now is drawn at once, and broadcasts every change
//! to the pages already open. A value equal to the last one sent is not sent again: pages only
//! hear about changes. A page too slow to keep up misses some changes and is sent every
//! latest value again, which is all it needs to be right.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

use super::lock;

/// Changes a page may fall behind by before it is resynchronised.
const BACKLOG: usize = 256;

/// One server-sent event: a topic and its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub topic: &'static str,
    pub data: Arc<str>,
}

pub struct Hub {
    tx: broadcast::Sender<Update>,
    latest: Mutex<BTreeMap<&'static str, Update>>,
}

impl Hub {
    pub fn new() -> Self {
        Self {
            tx: broadcast::channel(BACKLOG).0,
            latest: Mutex::new(BTreeMap::new()),
        }
    }

    /// A topic's new value: kept as its latest and sent, unless it has not changed.
    pub fn set(&self, topic: &'static str, value: &impl Serialize) {
        let Some(update) = encode(topic, value) else {
            return;
        };
        {
            let mut latest = lock(&self.latest);
            if latest.get(topic) == Some(&update) {
                return;
            }
            latest.insert(topic, update.clone());
        }
        // No page open is not an error.
        let _ = self.tx.send(update);
    }

    /// Send without keeping: one step of a stream (a queue sample, a line of a drill's output)
    /// that a page opening later gets in another form.
    pub fn send(&self, topic: &'static str, value: &impl Serialize) {
        if let Some(update) = encode(topic, value) {
            let _ = self.tx.send(update);
        }
    }

    /// Keep as the latest value without sending it (the pages already open built it from
    /// [`Hub::send`]s).
    pub fn keep(&self, topic: &'static str, value: &impl Serialize) {
        if let Some(update) = encode(topic, value) {
            lock(&self.latest).insert(topic, update);
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

fn encode(topic: &'static str, value: &impl Serialize) -> Option<Update> {
    // Our own types always serialize; were one not to, that topic would just not update.
    let data = serde_json::to_string(value).ok()?;
    Some(Update {
        topic,
        data: data.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unchanged_values_are_not_sent_again() {
        let hub = Hub::new();
        let mut rx = hub.subscribe();
        hub.set("stock", &json!({"burger": 1}));
        hub.set("stock", &json!({"burger": 1}));
        hub.set("stock", &json!({"burger": 2}));
        assert_eq!(rx.try_recv().unwrap().data.as_ref(), r#"{"burger":1}"#);
        assert_eq!(rx.try_recv().unwrap().data.as_ref(), r#"{"burger":2}"#);
        assert!(rx.try_recv().is_err());
        assert_eq!(hub.latest().len(), 1);
    }

    #[test]
    fn sent_steps_are_not_kept_and_kept_values_are_not_sent() {
        let hub = Hub::new();
        let mut rx = hub.subscribe();
        hub.send("queue-sample", &json!([1]));
        hub.keep("drill", &json!({"lines": ["a"]}));
        assert_eq!(rx.try_recv().unwrap().topic, "queue-sample");
        assert!(rx.try_recv().is_err());
        let latest: Vec<&str> = hub.latest().iter().map(|u| u.topic).collect();
        assert_eq!(latest, ["drill"]);
    }
}
