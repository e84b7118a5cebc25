//! The saga's domain, in one place: an order's status and the rules that move it, the records
//! the services keep about an order (its timeline, its DLQ hops, its reservation, its
//! notifications) and an item's stock books. The services write them, and `sagactl`, the
//! benchmark and the tests read them, through these types.
//!
//! The order state machine lives here, in Rust, where it is unit-tested. The Lua scripts that
//! move an order in Redis do not know the rules: they apply the compare-and-set they are given
//! ([`OrderStatus::transitions_on`]), atomically.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::events::EventType;

/// Where an order is in the saga. (On a command line, `sagactl order list --status confirmed`,
/// it is read by `saga_platform::service::config::order_status_parser`: no clap here.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Accepted (201) and in the outbox; inventory has not decided yet.
    Placed,
    /// Stock reserved.
    Confirmed,
    /// Inventory said no (unknown item, not enough stock).
    Failed,
    /// A cancel was accepted; inventory has not given the stock back yet.
    Cancelling,
    /// Stock given back; the compensation is done.
    Cancelled,
}

/// The reason an order records when inventory-svc released its stock without order-svc asking
/// (order-svc asks by moving the order to CANCELLING first).
pub const UNASKED_RELEASE: &str = "cancelled by inventory-svc, not by order-svc: it released the \
     stock on an order.cancelled that order-svc never sent; the order follows the stock";

/// What can happen to an order: inventory's three outcomes, and a customer's cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderEvent {
    Reserved,
    ReservationFailed,
    Released,
    CancelRequested,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 5] = [
        Self::Placed,
        Self::Confirmed,
        Self::Failed,
        Self::Cancelling,
        Self::Cancelled,
    ];

    /// The statuses an order ends in: once there, nothing moves it again.
    pub const FINAL: [OrderStatus; 3] = [Self::Confirmed, Self::Failed, Self::Cancelled];

    /// The transition table. `None`: the event changes nothing (a duplicate, or a stale or late
    /// event), and is only noted in the timeline.
    pub fn next(self, event: OrderEvent) -> Option<OrderStatus> {
        use OrderEvent::*;
        use OrderStatus::*;
        match (self, event) {
            (Placed, Reserved) => Some(Confirmed),
            (Placed, ReservationFailed) => Some(Failed),
            (Placed | Confirmed, CancelRequested) => Some(Cancelling),
            (Cancelling, Released) => Some(Cancelled),
            // Stock given back that order-svc never asked for (a forged or stray
            // order.cancelled reached inventory-svc): the order follows the stock, so that
            // orders and stock never disagree. See UNASKED_RELEASE.
            (Placed | Confirmed, Released) => Some(Cancelled),
            _ => None,
        }
    }

    /// The reason recorded on a move that says more than its event: `None` for most.
    pub fn reason_of_move(self, event: OrderEvent) -> Option<&'static str> {
        match (self, event) {
            (Self::Placed | Self::Confirmed, OrderEvent::Released) => Some(UNASKED_RELEASE),
            _ => None,
        }
    }

    /// Every `(from, to)` pair `event` allows: the compare-and-set a Lua script applies.
    pub fn transitions_on(event: OrderEvent) -> Vec<(OrderStatus, OrderStatus)> {
        Self::ALL
            .into_iter()
            .filter_map(|from| Some((from, from.next(event)?)))
            .collect()
    }

    pub fn is_final(self) -> bool {
        Self::FINAL.contains(&self)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "PLACED",
            Self::Confirmed => "CONFIRMED",
            Self::Failed => "FAILED",
            Self::Cancelling => "CANCELLING",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of an order's timeline: what happened, caused by which event from which service,
/// and whether it changed anything (`applied`: a duplicate or late event is listed, not applied).
///
/// Read leniently (a missing field is its default, an unknown one is ignored): `sagactl` and the
/// board are windows on records other programs write, and a window must not break when a record
/// grows a field. The status is the one field a line cannot do without.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Milliseconds since the Unix epoch.
    #[serde(default)]
    pub at: u64,
    /// The order's status after this entry.
    pub status: OrderStatus,
    /// The event that caused it (its `type` name on the wire, e.g. `OrderPlaced`); the services
    /// always write it, `None` is only a line that does not say (read leniently).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<EventType>,
    #[serde(default)]
    pub event_id: String,
    /// The service that emitted the event.
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub redelivered: bool,
    #[serde(default)]
    pub applied: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A message about an order that went to the DLQ, noted in the order's timeline (read
/// leniently, as [`HistoryEntry`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DlqHop {
    /// Milliseconds since the Unix epoch.
    pub at: u64,
    pub service: String,
    pub routing_key: String,
    pub reason: String,
    #[serde(default)]
    pub redelivered: bool,
    /// Attempts made before giving up (absent for poison, which is never retried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
}

/// What inventory-svc decided about an order, as its reservation record keeps it (`state`) and
/// as a notification tells it (`outcome`): `reserved`, `failed` or `released` on the wire.
///
/// `Default` (reserved) serves only to build a record field by field, as tests do: no record is
/// ever *read* into a default state (a reservation without `state` is refused, a notification
/// without `outcome` too).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ReservationState {
    /// Stock taken for the order (InventoryReserved).
    #[default]
    Reserved,
    /// No stock taken: unknown item or not enough (InventoryFailed).
    Failed,
    /// Stock given back, or a cancel that overtook its order (InventoryReleased).
    Released,
}

/// A notification tells the outcome inventory recorded: the same three words.
pub type NotificationOutcome = ReservationState;

impl ReservationState {
    pub const ALL: [ReservationState; 3] = [Self::Reserved, Self::Failed, Self::Released];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Failed => "failed",
            Self::Released => "released",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The event inventory-svc announced this decision with.
    pub const fn event_type(self) -> EventType {
        match self {
            Self::Reserved => EventType::InventoryReserved,
            Self::Failed => EventType::InventoryFailed,
            Self::Released => EventType::InventoryReleased,
        }
    }

    /// The decision a final order status stands for (CONFIRMED ↔ reserved, FAILED ↔ failed,
    /// CANCELLED ↔ released): what inventory's record must say. `None` for a status in flight.
    pub const fn of_final(status: OrderStatus) -> Option<Self> {
        match status {
            OrderStatus::Confirmed => Some(Self::Reserved),
            OrderStatus::Failed => Some(Self::Failed),
            OrderStatus::Cancelled => Some(Self::Released),
            OrderStatus::Placed | OrderStatus::Cancelling => None,
        }
    }
}

impl fmt::Display for ReservationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A notification as every sink receives it, and as notification-svc records what it sent
/// (read leniently, as [`HistoryEntry`]: only the order and the outcome are needed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub order_id: String,
    pub outcome: NotificationOutcome,
    #[serde(default)]
    pub student_id: Option<String>,
    #[serde(default)]
    pub item: Option<String>,
    #[serde(default)]
    pub qty: u32,
    #[serde(default)]
    pub message: String,
    /// The id of the event that caused it, so a receiver can drop the rare re-send.
    #[serde(default)]
    pub event_id: String,
    #[serde(default)]
    pub at_ms: u64,
}

/// inventory-svc's record of its decision about one order (`{prefix}:reservation:{order_id}`,
/// a hash its Lua scripts write): what it decided and when, with the event id it announced the
/// decision with, and the release (the compensation) if the order was cancelled.
///
/// Read once, here ([`Reservation::from_hash`]), by inventory-svc (which turns it back into the
/// outcome it announced), `sagactl check` and `sagactl explain`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reservation {
    pub state: ReservationState,
    /// Absent on a tombstone: a cancel that arrived before its order.
    pub item: Option<String>,
    pub qty: i64,
    pub student_id: Option<String>,
    /// The event id the decision was announced with (InventoryReserved / InventoryFailed).
    pub event_id: Option<String>,
    /// When inventory decided, ms since the Unix epoch; absent on a tombstone.
    pub decided_at: Option<u64>,
    pub code: Option<String>,
    pub reason: Option<String>,
    /// Units of the item left after this reservation.
    pub remaining: Option<i64>,
    /// Units given back by the cancel (0 when nothing had been reserved).
    pub released_qty: i64,
    pub release_event_id: Option<String>,
    pub released_at: Option<u64>,
}

impl Reservation {
    /// The record from its hash's fields (a `HashMap`, or the flat pairs `HGETALL` gives).
    /// An empty field is absent (a number: 0).
    ///
    /// # Errors
    /// No `state` (no record), or a number that is not one: in words, for the checker's report
    /// and inventory-svc's "corrupt record" error. A window that only shows the record (`sagactl
    /// explain`) takes `.ok()`.
    pub fn from_hash<K: AsRef<str>, V: AsRef<str>>(
        fields: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, String> {
        let hash: std::collections::HashMap<String, String> = fields
            .into_iter()
            .filter(|(_, v)| !v.as_ref().is_empty())
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
            .collect();
        let text = |k: &str| hash.get(k).cloned();
        fn number<T: std::str::FromStr>(
            hash: &std::collections::HashMap<String, String>,
            name: &str,
        ) -> Result<Option<T>, String> {
            hash.get(name)
                .map(|raw| {
                    raw.parse()
                        .map_err(|_| format!("{name} is {raw:?}, not a number"))
                })
                .transpose()
        }
        Ok(Self {
            state: {
                let raw = text("state").ok_or("no state")?;
                ReservationState::parse(&raw)
                    .ok_or_else(|| format!("state is {raw:?}, not reserved, failed or released"))?
            },
            item: text("item"),
            qty: number(&hash, "qty")?.unwrap_or(0),
            student_id: text("student_id"),
            event_id: text("event_id"),
            decided_at: number(&hash, "decided_at")?,
            code: text("code"),
            reason: text("reason"),
            remaining: number(&hash, "remaining")?,
            released_qty: number(&hash, "released_qty")?.unwrap_or(0),
            release_event_id: text("release_event_id"),
            released_at: number(&hash, "released_at")?,
        })
    }

    /// A cancel reached inventory before any OrderPlaced: the record was made by the release,
    /// with nothing to give back, so that the late OrderPlaced is a duplicate.
    pub fn is_tombstone(&self) -> bool {
        self.state == ReservationState::Released && self.item.is_none() && self.decided_at.is_none()
    }
}

/// One item's stock books, as inventory-svc keeps them and `GET /stock` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    /// Units that can still be reserved.
    pub available: i64,
    /// Units the item was seeded (or last set by hand) with.
    pub initial: i64,
    /// Units ever reserved, released ones included.
    pub reserved: i64,
    /// Units given back by cancelled orders.
    pub released: i64,
}

impl StockLevel {
    /// Stock is conserved (docs/DESIGN.md §6, invariant 2): `initial = available + reserved -
    /// released`. Anything else means a unit was taken twice or lost.
    pub fn is_balanced(&self) -> bool {
        self.initial == self.available + self.reserved - self.released
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderEvent::*;
    use OrderStatus::*;

    #[test]
    fn a_reservation_reads_empty_fields_as_absent_and_knows_a_tombstone() {
        let reserved = Reservation::from_hash([
            ("state", "reserved"),
            ("item", "burger"),
            ("qty", "2"),
            ("student_id", ""),
            ("decided_at", "1700000000000"),
        ])
        .unwrap();
        assert_eq!(reserved.qty, 2);
        assert_eq!(reserved.student_id, None, "an empty field is absent");
        assert!(!reserved.is_tombstone());
        let tombstone =
            Reservation::from_hash([("state", "released"), ("released_qty", "0")]).unwrap();
        assert!(tombstone.is_tombstone());
        assert_eq!(
            Reservation::from_hash([("state", "reserved"), ("remaining", "x")]),
            Err("remaining is \"x\", not a number".to_owned())
        );
        assert_eq!(
            Reservation::from_hash([("item", "burger")]),
            Err("no state".to_owned())
        );
    }

    #[test]
    fn the_transition_table() {
        // (from, event, to): every cell of the table, so a change to it is a visible change here.
        let table = [
            (Placed, Reserved, Some(Confirmed)),
            (Placed, ReservationFailed, Some(Failed)),
            (Placed, Released, Some(Cancelled)),
            (Placed, CancelRequested, Some(Cancelling)),
            (Confirmed, Reserved, None),
            (Confirmed, ReservationFailed, None),
            (Confirmed, Released, Some(Cancelled)),
            (Confirmed, CancelRequested, Some(Cancelling)),
            (Failed, Reserved, None),
            (Failed, CancelRequested, None),
            (Cancelling, Released, Some(Cancelled)),
            (Cancelling, Reserved, None),
            (Cancelling, CancelRequested, None),
            (Cancelled, Released, None),
            (Cancelled, CancelRequested, None),
        ];
        for (from, event, to) in table {
            assert_eq!(from.next(event), to, "{from} on {event:?}");
        }
    }

    #[test]
    fn final_statuses_never_move_but_for_a_cancel_or_a_release_of_a_confirmed_order() {
        let events = [Reserved, ReservationFailed, Released, CancelRequested];
        for status in OrderStatus::FINAL {
            let moves: Vec<_> = events.iter().filter_map(|e| status.next(*e)).collect();
            let expected = if status == Confirmed {
                vec![Cancelled, Cancelling]
            } else {
                vec![]
            };
            assert_eq!(moves, expected, "{status}");
        }
    }

    #[test]
    fn the_compare_and_set_a_script_is_given() {
        assert_eq!(
            OrderStatus::transitions_on(CancelRequested),
            [(Placed, Cancelling), (Confirmed, Cancelling)]
        );
        assert_eq!(
            OrderStatus::transitions_on(Released),
            [
                (Placed, Cancelled),
                (Confirmed, Cancelled),
                (Cancelling, Cancelled)
            ]
        );
        assert_eq!(Confirmed.reason_of_move(Released), Some(UNASKED_RELEASE));
        assert_eq!(Cancelling.reason_of_move(Released), None);
    }

    #[test]
    fn statuses_read_and_write_as_the_wire_has_them() {
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert_eq!(OrderStatus::parse("placed"), None);
    }

    #[test]
    fn history_entries_read_what_the_services_wrote() {
        let line = r#"{"at":1,"status":"CONFIRMED","event":"InventoryReserved","event_id":"e","service":"inventory-svc","redelivered":true,"applied":true}"#;
        let entry: HistoryEntry = serde_json::from_str(line).unwrap();
        assert!(entry.redelivered && entry.applied);
        assert_eq!(entry.status, Confirmed);
        assert_eq!(entry.event, Some(EventType::InventoryReserved));
        assert_eq!(entry.reason, None);
        // Written back byte for byte as the services always wrote it.
        assert_eq!(serde_json::to_string(&entry).unwrap(), line);
    }

    #[test]
    fn reservation_states_and_outcomes_read_and_write_as_the_records_have_them() {
        for state in ReservationState::ALL {
            assert_eq!(ReservationState::parse(state.as_str()), Some(state));
            assert_eq!(
                serde_json::to_string(&state).unwrap(),
                format!("\"{state}\"")
            );
        }
        assert_eq!(
            ReservationState::of_final(Cancelled),
            Some(ReservationState::Released)
        );
        assert_eq!(ReservationState::of_final(Cancelling), None);
        let note = r#"{"order_id":"o1","outcome":"failed","student_id":null,"item":"burger","qty":1,"message":"m","event_id":"e","at_ms":5}"#;
        let read: Notification = serde_json::from_str(note).unwrap();
        assert_eq!(read.outcome, ReservationState::Failed);
        assert_eq!(serde_json::to_string(&read).unwrap(), note);
    }

    #[test]
    fn stock_books_balance_when_every_unit_is_accounted_for() {
        let books = StockLevel {
            available: 95,
            initial: 100,
            reserved: 7,
            released: 2,
        };
        assert!(books.is_balanced());
        let taken_twice = StockLevel {
            available: 92,
            ..books
        };
        assert!(!taken_twice.is_balanced());
    }
}
