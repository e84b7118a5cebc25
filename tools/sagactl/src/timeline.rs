//! One order's whole story as the services recorded it in Redis, read in one place.
//!
//! Four services' notes make up an order's timeline (key layout: [`saga_platform::redis::store::Keys`]):
//! - order-svc's order hash and its **history**: every transition, and every event that arrived
//!   and changed nothing (a duplicate, a late event), with time, event id, the emitting service
//!   and whether the delivery was a redelivery;
//! - the **DLQ hops**: poison messages about the order that were moved to the DLQ;
//! - inventory-svc's **reservation record**: what it decided and when, with the event id it
//!   announced the decision with, and the release (the compensation) if the order was cancelled;
//! - notification-svc's **notifications** for the order;
//! - once order-svc compacted a finished order after its retention, its **tombstone**: the
//!   status it finished in and when, all that is left of the order.
//!
//! Everything is read directly from Redis, so the story can be told while order-svc is down.
//! Readers are lenient (unknown fields ignored, missing ones defaulted): this is a window on
//! records other programs write, and a window must not break when they grow a field.

use std::collections::HashMap;

use anyhow::Context;
use redis::AsyncCommands as _;
pub use saga_domain::order::{
    DlqHop, HistoryEntry, Notification as NotificationRecord, NotificationOutcome,
    Reservation as ReservationRecord,
};
pub use saga_domain::view::{OrderLines, Tombstone};
use saga_platform::redis::store::Keys;
use saga_platform::redis::store::Redis;
use serde::{Deserialize, Serialize};

/// How many of the most recent notifications are searched for an order's: enough for any
/// class, bounded for a Redis that a benchmark filled with millions.
const NOTIFICATIONS_SEARCHED: isize = 20_000;
/// The outcomes notification-svc records a notification for.
pub const OUTCOMES: [NotificationOutcome; 5] = NotificationOutcome::ALL;

/// Everything recorded about one order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Timeline {
    pub order_id: String,
    /// `None`: order-svc never saw this order (an OrderPlaced published by hand).
    pub order: Option<OrderRecord>,
    pub history: Vec<HistoryEntry>,
    pub dlq_hops: Vec<DlqHop>,
    /// `None`: inventory-svc has not decided anything about this order (yet).
    pub reservation: Option<ReservationRecord>,
    pub notifications: Vec<NotificationRecord>,
    /// `Some`: order-svc compacted the order after `ORDER_RETENTION` and this is what is left.
    pub tombstone: Option<Tombstone>,
}

impl Timeline {
    /// Nothing at all is recorded under this id.
    pub fn is_unknown(&self) -> bool {
        self.order.is_none()
            && self.history.is_empty()
            && self.dlq_hops.is_empty()
            && self.reservation.is_none()
            && self.notifications.is_empty()
            && self.tombstone.is_none()
    }
}

/// order-svc's hash for the order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OrderRecord {
    /// A lab order's one line (empty for an order of several: see `lines`).
    pub item: String,
    pub qty: i64,
    /// Every line, when the record holds readable ones.
    pub lines: Option<OrderLines>,
    pub student_id: Option<String>,
    pub status: String,
    pub reason: Option<String>,
    pub correlation_id: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    pub updated_at: u64,
}

impl OrderRecord {
    /// `None` for an empty hash (no such order).
    pub fn from_hash(hash: &HashMap<String, String>) -> Option<Self> {
        let text = |k: &str| hash.get(k).filter(|v| !v.is_empty()).cloned();
        let number = |k: &str| hash.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        Some(Self {
            item: text("item").unwrap_or_default(),
            qty: number("qty") as i64,
            lines: OrderLines::from_hash(hash),
            student_id: text("student_id"),
            status: text("status")?,
            reason: text("reason"),
            correlation_id: text("correlation_id"),
            created_at: number("created_at"),
            updated_at: number("updated_at"),
        })
    }
}

/// Read everything recorded about `order_id`.
///
/// # Errors
/// Redis unreachable. Unreadable entries are skipped, not errors.
pub async fn read(redis: &Redis, keys: &Keys, order_id: &str) -> anyhow::Result<Timeline> {
    let mut conn = redis.clone();
    let mut pipe = redis::pipe();
    pipe.hgetall(keys.order(order_id))
        .lrange(keys.order_history(order_id), 0, -1)
        .lrange(keys.order_dlq_hops(order_id), 0, -1)
        .hgetall(keys.reservation(order_id))
        .get(keys.order_tombstone(order_id));
    type Replies = (
        HashMap<String, String>,
        Vec<String>,
        Vec<String>,
        HashMap<String, String>,
        Option<String>,
    );
    let (order, history, hops, reservation, tombstone): Replies = pipe
        .query_async(&mut conn)
        .await
        .with_context(|| format!("reading the timeline of order {order_id}"))?;
    let mut states = redis::pipe();
    for outcome in OUTCOMES {
        states.get(keys.notified(order_id, outcome.as_str()));
    }
    let states: Vec<Option<String>> = states
        .query_async(&mut conn)
        .await
        .with_context(|| format!("reading the notifications of order {order_id}"))?;
    // The list of sent notifications is shared by every order: search it only when a
    // notification for this one was recorded as sent.
    let sent = states
        .iter()
        .filter(|state| state.as_deref() == Some("sent"))
        .count();
    let notifications = if sent > 0 {
        let recent: Vec<String> = conn
            .lrange(keys.notifications(), -NOTIFICATIONS_SEARCHED, -1)
            .await
            .context("reading the notifications")?;
        notifications_of(order_id, &recent)
    } else {
        Vec::new()
    };
    Ok(Timeline {
        order_id: order_id.to_owned(),
        order: OrderRecord::from_hash(&order),
        history: parse_lines(&history),
        dlq_hops: parse_lines(&hops),
        reservation: ReservationRecord::from_hash(&reservation).ok(),
        notifications,
        tombstone: tombstone.and_then(|t| serde_json::from_str(&t).ok()),
    })
}

/// JSON lines into records; a line that does not parse is skipped.
fn parse_lines<T: for<'de> Deserialize<'de>>(lines: &[String]) -> Vec<T> {
    lines
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The notifications about `order_id` among `lines`, oldest first.
fn notifications_of(order_id: &str, lines: &[String]) -> Vec<NotificationRecord> {
    parse_lines::<NotificationRecord>(lines)
        .into_iter()
        .filter(|n| n.order_id == order_id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn records_are_read_leniently() {
        assert_eq!(OrderRecord::from_hash(&HashMap::new()), None);
        let order = OrderRecord::from_hash(&hash(&[
            ("order_id", "o1"),
            ("item", "burger"),
            ("qty", "2"),
            ("student_id", ""),
            ("status", "CONFIRMED"),
            ("created_at", "1000"),
        ]))
        .unwrap();
        assert_eq!(order.qty, 2);
        assert_eq!(order.student_id, None);
        assert_eq!(order.created_at, 1000);

        let tombstone = ReservationRecord::from_hash(&hash(&[
            ("state", "released"),
            ("released_qty", "0"),
            ("release_event_id", "e3"),
            ("released_at", "5"),
        ]))
        .unwrap();
        assert!(tombstone.is_tombstone());
        let reserved = ReservationRecord::from_hash(&hash(&[
            ("state", "reserved"),
            ("item", "burger"),
            ("qty", "2"),
            ("remaining", "98"),
            ("decided_at", "7"),
            ("code", ""),
        ]))
        .unwrap();
        assert!(!reserved.is_tombstone());
        assert_eq!(reserved.remaining, Some(98));
        assert_eq!(reserved.code, None);
    }

    #[test]
    fn history_lines_with_missing_or_extra_fields_still_parse() {
        let lines = [
            r#"{"at":1,"status":"PLACED","event":"OrderPlaced","event_id":"e1","service":"order-svc","applied":true,"new_field":3}"#.to_owned(),
            r#"{"at":2,"status":"CONFIRMED"}"#.to_owned(),
            "not json".to_owned(),
        ];
        let history: Vec<HistoryEntry> = parse_lines(&lines);
        assert_eq!(history.len(), 2);
        assert!(history[0].applied);
        assert!(!history[1].redelivered);
    }

    #[test]
    fn only_this_orders_notifications_are_kept() {
        let lines = [
            r#"{"order_id":"a","outcome":"reserved","event_id":"e1","at_ms":5}"#.to_owned(),
            r#"{"order_id":"b","outcome":"reserved","event_id":"e2","at_ms":6}"#.to_owned(),
        ];
        let mine = notifications_of("a", &lines);
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].event_id, "e1");
    }
}
