//! The saga's domain, in one place: an order's status and the rules that move it, the records
//! the services keep about an order (its timeline, its DLQ hops, its reservation, its
//! notifications) and an item's stock books. The services write them, and `sagactl`, the
//! benchmark and the tests read them, through these types.
//!
//! The order state machine lives here, in Rust, where it is unit-tested. The Lua scripts that
//! move an order in Redis do not know the rules: they apply the compare-and-set they are given
//! ([`OrderStatus::transitions_on`]), atomically.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::events::EventType;

/// Where an order is in the saga. (On a command line, `sagactl order list --status confirmed`,
/// it is read by `saga_platform::service::config::order_status_parser`: no clap here.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// Handed to the carrier (`PATCH .../status`), after CONFIRMED.
    Shipped,
    /// Received by the customer: the end of a good order's life.
    Delivered,
}

/// The reason an order records when inventory-svc released its stock without order-svc asking
/// (order-svc asks by moving the order to CANCELLING first).
pub const UNASKED_RELEASE: &str = "cancelled by inventory-svc, not by order-svc: it released the \
     stock on an order.cancelled that order-svc never sent; the order follows the stock";

/// The reason an order records when its decision deadline passed while it was still PLACED
/// (`ORDER_DECISION_TIMEOUT`): it fails, and order-svc sends a cancel so that a reservation that
/// arrives late is given back.
pub const TIMEOUT_REASON: &str = "timeout";

/// What can happen to an order: inventory's three outcomes, a customer's cancel, the shop's
/// shipping and delivery (`PATCH .../status`), and its decision deadline passing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderEvent {
    Reserved,
    ReservationFailed,
    Released,
    CancelRequested,
    /// Someone with the right said it shipped (`PATCH .../status` SHIPPED).
    MarkedShipped,
    /// Someone with the right said it was delivered (`PATCH .../status` DELIVERED).
    MarkedDelivered,
    /// The decision deadline passed (order-svc's sweeper).
    TimedOut,
}

impl OrderEvent {
    pub const ALL: [OrderEvent; 7] = [
        Self::Reserved,
        Self::ReservationFailed,
        Self::Released,
        Self::CancelRequested,
        Self::MarkedShipped,
        Self::MarkedDelivered,
        Self::TimedOut,
    ];
}

impl OrderStatus {
    /// Every status, in the order an order's life reads.
    pub const ALL: [OrderStatus; 7] = [
        Self::Placed,
        Self::Confirmed,
        Self::Shipped,
        Self::Delivered,
        Self::Failed,
        Self::Cancelling,
        Self::Cancelled,
    ];

    /// The statuses of a *decided* order: inventory answered (or a cancel or the deadline did),
    /// the lab's meaning of "final", which the lab drills, `sagactl check` and the benchmark
    /// wait for. A shipped or delivered order was decided (confirmed) first.
    pub const DECIDED: [OrderStatus; 5] = [
        Self::Confirmed,
        Self::Shipped,
        Self::Delivered,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The statuses of a *finished* order: nothing can move it any more. Only finished orders
    /// are compacted after `ORDER_RETENTION`.
    pub const FINISHED: [OrderStatus; 3] = [Self::Delivered, Self::Failed, Self::Cancelled];

    /// The statuses a person may ask for with `PATCH /order/{id}/status`, each standing for an
    /// event: SHIPPED, DELIVERED, and CANCELLED (a cancel: the order goes CANCELLING, then
    /// CANCELLED when inventory gave the stock back). CONFIRMED and FAILED are inventory's to say.
    pub const REQUESTABLE: [OrderStatus; 3] = [Self::Shipped, Self::Delivered, Self::Cancelled];

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
            (Confirmed, MarkedShipped) => Some(Shipped),
            (Shipped, MarkedDelivered) => Some(Delivered),
            // Nobody answered in time: fail it. The sweeper also sends a cancel, so that stock
            // reserved by a late answer is given back.
            (Placed, TimedOut) => Some(Failed),
            _ => None,
        }
    }

    /// The reason recorded on a move that says more than its event: `None` for most.
    pub fn reason_of_move(self, event: OrderEvent) -> Option<&'static str> {
        match (self, event) {
            (Self::Placed | Self::Confirmed, OrderEvent::Released) => Some(UNASKED_RELEASE),
            (Self::Placed, OrderEvent::TimedOut) => Some(TIMEOUT_REASON),
            _ => None,
        }
    }

    /// The event a `PATCH .../status` asking for `target` stands for; `None` for a status no
    /// one may ask for (CONFIRMED and FAILED are inventory's to say; PLACED and CANCELLING are
    /// steps on the way).
    pub fn requested(target: OrderStatus) -> Option<OrderEvent> {
        match target {
            Self::Shipped => Some(OrderEvent::MarkedShipped),
            Self::Delivered => Some(OrderEvent::MarkedDelivered),
            Self::Cancelled => Some(OrderEvent::CancelRequested),
            _ => None,
        }
    }

    /// The statuses a `PATCH .../status` may ask for from this one: what a 409 lists.
    pub fn requestable_from(self) -> Vec<OrderStatus> {
        Self::REQUESTABLE
            .into_iter()
            .filter(|target| Self::requested(*target).is_some_and(|e| self.next(e).is_some()))
            .collect()
    }

    /// Every `(from, to)` pair `event` allows: the compare-and-set a Lua script applies.
    pub fn transitions_on(event: OrderEvent) -> Vec<(OrderStatus, OrderStatus)> {
        Self::ALL
            .into_iter()
            .filter_map(|from| Some((from, from.next(event)?)))
            .collect()
    }

    /// Decided (see [`Self::DECIDED`]): what the lab calls final.
    pub fn is_decided(self) -> bool {
        Self::DECIDED.contains(&self)
    }

    /// Finished (see [`Self::FINISHED`]): nothing can move it any more.
    pub fn is_finished(self) -> bool {
        Self::FINISHED.contains(&self)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "PLACED",
            Self::Confirmed => "CONFIRMED",
            Self::Failed => "FAILED",
            Self::Cancelling => "CANCELLING",
            Self::Cancelled => "CANCELLED",
            Self::Shipped => "SHIPPED",
            Self::Delivered => "DELIVERED",
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// The id of the `order.status.updated` this line's move announced (an applied move only:
    /// one status event per transition, which `sagactl check` counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_event_id: Option<String>,
    /// What a structured envelope said about the event's sender (its `shape`, and `tenant_id`,
    /// `partitionKey`, `source` where it had them): kept, not acted on (crate::envelope).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub envelope: BTreeMap<String, String>,
}

/// A message about an order that went to the DLQ, noted in the order's timeline (read
/// leniently, as [`HistoryEntry`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// What a notification tells the customer, once per order and outcome: inventory's three
/// decisions (`reserved`, `failed`, `released`, the lab's words) and the two steps after
/// (`shipped`, `delivered`). An `order.status.updated` tells the one its new status stands for
/// ([`NotificationOutcome::of_status`]), so FAILED and `inventory.failed` are one notification.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum NotificationOutcome {
    /// Stock reserved: the order is CONFIRMED.
    #[default]
    Reserved,
    /// The order FAILED (no stock, unknown item, or its deadline passed).
    Failed,
    /// Stock given back: the order is CANCELLED.
    Released,
    Shipped,
    Delivered,
}

impl NotificationOutcome {
    pub const ALL: [NotificationOutcome; 5] = [
        Self::Reserved,
        Self::Failed,
        Self::Released,
        Self::Shipped,
        Self::Delivered,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Failed => "failed",
            Self::Released => "released",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// The event that usually brings it: inventory's decision, or (shipped, delivered) the
    /// status event. (A FAILED by the deadline is told by its status event.)
    pub const fn event_type(self) -> EventType {
        match self {
            Self::Reserved => EventType::InventoryReserved,
            Self::Failed => EventType::InventoryFailed,
            Self::Released => EventType::InventoryReleased,
            Self::Shipped | Self::Delivered => EventType::OrderStatusUpdated,
        }
    }

    /// The notification that makes this one no news: an order the customer was told FAILED
    /// (its deadline passed) may still see inventory's late reservation and then its release
    /// (the timeout's cancel giving it back); telling "confirmed" and "cancelled" after "failed"
    /// would only confuse. `None`: always told.
    pub const fn superseded_by(self) -> Option<Self> {
        match self {
            Self::Reserved | Self::Released => Some(Self::Failed),
            Self::Failed | Self::Shipped | Self::Delivered => None,
        }
    }

    /// The notification inventory's decision stands for.
    pub const fn of_reservation(state: ReservationState) -> Self {
        match state {
            ReservationState::Reserved => Self::Reserved,
            ReservationState::Failed => Self::Failed,
            ReservationState::Released => Self::Released,
        }
    }

    /// The notification an order's new status stands for; `None` for a step nobody is told
    /// about (PLACED, CANCELLING).
    pub const fn of_status(status: OrderStatus) -> Option<Self> {
        match status {
            OrderStatus::Confirmed => Some(Self::Reserved),
            OrderStatus::Failed => Some(Self::Failed),
            OrderStatus::Cancelled => Some(Self::Released),
            OrderStatus::Shipped => Some(Self::Shipped),
            OrderStatus::Delivered => Some(Self::Delivered),
            OrderStatus::Placed | OrderStatus::Cancelling => None,
        }
    }
}

impl fmt::Display for NotificationOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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

    /// The decision a decided order status stands for (CONFIRMED, SHIPPED, DELIVERED ↔
    /// reserved, FAILED ↔ failed, CANCELLED ↔ released): what inventory's record must say.
    /// `None` for a status in flight. (An order FAILED by its deadline may also be released:
    /// its cancel gave back a late reservation; the checker knows it by the reason.)
    pub const fn of_decided(status: OrderStatus) -> Option<Self> {
        match status {
            OrderStatus::Confirmed | OrderStatus::Shipped | OrderStatus::Delivered => {
                Some(Self::Reserved)
            }
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
    /// An order of several lines: its lines (`lines`, JSON in the hash), with what was left of
    /// each item once reserved. Empty for an order of one line, which is `item` and `qty` as in
    /// the lab (so a lab order's record is unchanged).
    pub lines: Vec<RecordLine>,
    /// An order of several lines that failed: the lines that could not be served, with why.
    pub unserved: Vec<RecordLine>,
}

/// One line of a reservation record of several (inventory's Lua writes them as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordLine {
    pub item: String,
    pub qty: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl Reservation {
    /// The units per item this record holds (or held, once released): every line of an order
    /// of several, the one `item` and `qty` of a lab order, nothing for a tombstone.
    pub fn held(&self) -> Vec<(&str, i64)> {
        if self.lines.is_empty() {
            self.item
                .as_deref()
                .map(|item| (item, self.qty))
                .into_iter()
                .collect()
        } else {
            self.lines
                .iter()
                .map(|l| (l.item.as_str(), l.qty))
                .collect()
        }
    }

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
            lines: record_lines(&hash, "lines")?,
            unserved: record_lines(&hash, "unserved")?,
        })
    }

    /// A cancel reached inventory before any OrderPlaced: the record was made by the release,
    /// with nothing to give back, so that the late OrderPlaced is a duplicate.
    pub fn is_tombstone(&self) -> bool {
        self.state == ReservationState::Released
            && self.held().is_empty()
            && self.decided_at.is_none()
    }
}

/// A record's JSON list of lines (`lines`, `unserved`); absent is none.
fn record_lines(
    hash: &std::collections::HashMap<String, String>,
    name: &str,
) -> Result<Vec<RecordLine>, String> {
    hash.get(name).map_or(Ok(Vec::new()), |raw| {
        serde_json::from_str(raw).map_err(|e| format!("{name} is not a list of lines: {e}"))
    })
}

/// One item's stock books, as inventory-svc keeps them and `GET /stock` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    #[rustfmt::skip]
    fn the_transition_table() {
        // Every cell: a status (row) and what happens to it (column), so that a change to the
        // table is a visible change here. `n`: nothing moves (a duplicate, stale or late event,
        // or a request the status does not allow).
        let columns = OrderEvent::ALL;
        assert_eq!(columns, [Reserved, ReservationFailed, Released, CancelRequested, MarkedShipped, MarkedDelivered, TimedOut]);
        let n = None;
        let rows: [(OrderStatus, [Option<OrderStatus>; 7]); 7] = [
            //            Reserved         ResFailed     Released         CancelReq         Shipped        Delivered        TimedOut
            (Placed,     [Some(Confirmed), Some(Failed), Some(Cancelled), Some(Cancelling), n,             n,               Some(Failed)]),
            (Confirmed,  [n,               n,            Some(Cancelled), Some(Cancelling), Some(Shipped), n,               n]),
            (Shipped,    [n,               n,            n,               n,                n,             Some(Delivered), n]),
            (Delivered,  [n,               n,            n,               n,                n,             n,               n]),
            (Failed,     [n,               n,            n,               n,                n,             n,               n]),
            (Cancelling, [n,               n,            Some(Cancelled), n,                n,             n,               n]),
            (Cancelled,  [n,               n,            n,               n,                n,             n,               n]),
        ];
        assert_eq!(rows.map(|(s, _)| s), OrderStatus::ALL);
        for (from, row) in rows {
            for (event, to) in columns.into_iter().zip(row) {
                assert_eq!(from.next(event), to, "{from} on {event:?}");
            }
        }
    }

    #[test]
    fn decided_and_finished() {
        for status in OrderStatus::ALL {
            let moves: Vec<_> = OrderEvent::ALL
                .iter()
                .filter_map(|e| status.next(*e))
                .collect();
            assert_eq!(
                status.is_finished(),
                moves.is_empty(),
                "{status}: finished means nothing moves it ({moves:?})"
            );
            assert_eq!(
                status.is_decided(),
                !matches!(status, Placed | Cancelling),
                "{status}"
            );
        }
        assert!(OrderStatus::FINISHED.iter().all(|s| s.is_decided()));
    }

    #[test]
    fn what_a_patch_may_ask_for() {
        assert_eq!(Placed.requestable_from(), [Cancelled]);
        assert_eq!(Confirmed.requestable_from(), [Shipped, Cancelled]);
        assert_eq!(Shipped.requestable_from(), [Delivered]);
        for done in [Delivered, Failed, Cancelling, Cancelled] {
            assert_eq!(done.requestable_from(), [], "{done}");
        }
        assert_eq!(
            OrderStatus::requested(Confirmed),
            None,
            "inventory's to say"
        );
        assert_eq!(OrderStatus::requested(Cancelled), Some(CancelRequested));
        assert_eq!(Placed.reason_of_move(TimedOut), Some(TIMEOUT_REASON));
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
            ReservationState::of_decided(Cancelled),
            Some(ReservationState::Released)
        );
        assert_eq!(ReservationState::of_decided(Cancelling), None);
        let note = r#"{"order_id":"o1","outcome":"failed","student_id":null,"item":"burger","qty":1,"message":"m","event_id":"e","at_ms":5}"#;
        let read: Notification = serde_json::from_str(note).unwrap();
        assert_eq!(read.outcome, NotificationOutcome::Failed);
        for outcome in NotificationOutcome::ALL {
            assert_eq!(NotificationOutcome::parse(outcome.as_str()), Some(outcome));
        }
        assert_eq!(
            NotificationOutcome::of_status(Failed),
            Some(NotificationOutcome::of_reservation(
                ReservationState::Failed
            )),
            "FAILED and inventory.failed are one notification"
        );
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
