//! The page contract: every topic the page receives, and the shape of each one's payload.
//!
//! The page opens one server-sent-events stream (`GET /api/events`); each event is named after a
//! [`Topic`] and carries that topic's payload as JSON. A payload type says which topic it is
//! ([`Payload::TOPIC`]), so the [`Hub`](crate::hub::Hub) cannot send a payload under another
//! topic's name. `GET /api/state` answers the same payloads as one object keyed by topic.
//!
//! The page's JSDoc `@typedef`s (assets/js/types.js) mirror these types field for field; the
//! words the page shows that belong to the domain (the order statuses, the drills, the poison
//! kinds) come from [`Vocabulary`], the first payload of every stream, never from the script.

use std::collections::BTreeMap;
use std::path::PathBuf;

use saga_domain::order::OrderStatus;
use saga_domain::view::OrderLines;
use serde::{Deserialize, Serialize};

pub use crate::alerts::Alerts;
use crate::guard::ActionPolicy;
use crate::lab::drills::DrillRun;
use crate::lab::processes::Instance;
use crate::lab::redis_outage::Outage;

/// Every topic the page receives, in the order a page that opens is sent their latest values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Topic {
    /// [`Vocabulary`]: the words the page needs before it draws anything.
    Vocabulary,
    /// [`QueueHistory`]: the queue chart so far (sent to each page as it opens).
    QueueHistory,
    /// [`Sample`]: one more point of the queue chart.
    QueueSample,
    /// [`QueueTable`]: depth, consumers, rates and unacked counts of every queue.
    Queues,
    /// [`Orders`]: counts per status and the newest orders.
    Orders,
    /// [`Stock`]: the stock books, item by item.
    Stock,
    /// [`Catalog`]: the products with their prices, stock and low/out markers.
    Catalog,
    /// [`Alerts`]: the alert lights (deploy/prometheus/alerts.yml's thresholds).
    Alerts,
    /// [`Dlq`]: the dead-letter queue's depth and first messages.
    Dlq,
    /// [`Invariants`]: the lights.
    Invariants,
    /// [`Services`]: the demo's processes and what the fault buttons may do.
    Services,
    /// [`Status`]: which dependencies answer, and who may act.
    Status,
    /// [`DrillRun`]: the drill running or last run, with its output so far.
    Drill,
    /// [`DrillLine`]: one more line of the running drill's output.
    DrillLine,
    /// [`ActivityLog`]: what was done from the board.
    Activity,
}

impl Topic {
    /// The event's name on the stream and the key in `/api/state`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Vocabulary => "vocabulary",
            Self::QueueHistory => "queue-history",
            Self::QueueSample => "queue-sample",
            Self::Queues => "queues",
            Self::Orders => "orders",
            Self::Stock => "stock",
            Self::Catalog => "catalog",
            Self::Alerts => "alerts",
            Self::Dlq => "dlq",
            Self::Invariants => "invariants",
            Self::Services => "services",
            Self::Status => "status",
            Self::Drill => "drill",
            Self::DrillLine => "drill-line",
            Self::Activity => "activity",
        }
    }
}

/// A topic's payload: it knows which topic it is.
pub trait Payload: Serialize {
    const TOPIC: Topic;
}

macro_rules! payload {
    ($($ty:ty => $topic:ident),* $(,)?) => {
        $(impl Payload for $ty {
            const TOPIC: Topic = Topic::$topic;
        })*
    };
}

payload! {
    Vocabulary => Vocabulary,
    Sample => QueueSample,
    QueueTable => Queues,
    Orders => Orders,
    Stock => Stock,
    Catalog => Catalog,
    Alerts => Alerts,
    Dlq => Dlq,
    Invariants => Invariants,
    Services => Services,
    Status => Status,
    DrillRun => Drill,
    DrillLine => DrillLine,
    ActivityLog => Activity,
}

// --- vocabulary ------------------------------------------------------------------------------

/// The domain's words the page shows, from the server: the page has no list of its own.
#[derive(Debug, Clone, Serialize)]
pub struct Vocabulary {
    /// Every order status, in the order the page lists them.
    pub statuses: Vec<OrderStatus>,
    /// The statuses an order ends in.
    pub final_statuses: Vec<OrderStatus>,
    /// How each status is coloured: by what it means for the order, so the stylesheet has no
    /// list of statuses either.
    pub tones: BTreeMap<OrderStatus, Tone>,
    /// The lab drills, in the order the lab teaches them.
    pub drills: Vec<&'static str>,
    /// The poison messages a person may publish.
    pub poison_kinds: Vec<PoisonKind>,
}

/// What a status means for its order, which is what the page colours it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tone {
    /// Accepted, waiting for a decision.
    Waiting,
    /// Done as asked.
    Done,
    /// Done, and on its way (shipped, not delivered yet).
    Sent,
    /// Refused.
    Refused,
    /// Being undone (a compensation under way).
    Undoing,
    /// Undone.
    Undone,
}

impl Tone {
    pub const fn of(status: OrderStatus) -> Self {
        match status {
            OrderStatus::Placed => Self::Waiting,
            OrderStatus::Confirmed | OrderStatus::Delivered => Self::Done,
            OrderStatus::Shipped => Self::Sent,
            OrderStatus::Failed => Self::Refused,
            OrderStatus::Cancelling => Self::Undoing,
            OrderStatus::Cancelled => Self::Undone,
        }
    }
}

/// One kind of poison message: its name (what `POST /api/poison` takes) and what it is.
#[derive(Debug, Clone, Serialize)]
pub struct PoisonKind {
    pub kind: String,
    pub label: String,
}

// --- queues ----------------------------------------------------------------------------------

/// Every saga queue's depth and consumers at one moment (`None`: the queue is missing).
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t: u64,
    pub depth: Vec<Option<u32>>,
    pub consumers: Vec<Option<u32>>,
}

/// The queue chart so far: the queues (in the order of each sample's columns) and the points.
#[derive(Debug, Clone, Serialize)]
pub struct QueueHistory<'a> {
    pub queues: &'a [String],
    pub points: Vec<&'a Sample>,
}

impl Payload for QueueHistory<'_> {
    const TOPIC: Topic = Topic::QueueHistory;
}

/// One row of the queue table.
#[derive(Debug, Clone, Serialize)]
pub struct QueueRow {
    pub name: String,
    /// A retry queue (drawn dashed, listed dimmer).
    pub retry: bool,
    pub messages: Option<u32>,
    pub consumers: Option<u32>,
    pub unacked: Option<u64>,
    pub publish: Option<f64>,
    pub deliver: Option<f64>,
}

/// Every saga queue's row.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct QueueTable(pub Vec<QueueRow>);

// --- orders and stock ------------------------------------------------------------------------

/// One order as the list shows it.
#[derive(Debug, Clone, Serialize)]
pub struct OrderRow {
    pub order_id: String,
    /// An order of one line: its item and quantity, as the lab shows them (empty, 0 for an
    /// order of several: see `lines`).
    pub item: String,
    pub qty: i64,
    /// Every line, with its name and unit price when the order holds them.
    pub lines: Vec<LineShown>,
    /// The order's total in minor units (899 EUR is 8.99 €), when every line is priced in one
    /// currency; `None`: price unknown.
    pub total: Option<i64>,
    pub currency: Option<String>,
    pub student_id: Option<String>,
    pub status: String,
    pub reason: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
}

/// One line of an order as the page shows it: what order-svc keeps of it, the product's name and
/// unit price (minor units) as they were when the order was placed, when it keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineShown {
    pub item: String,
    pub qty: i64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub unit_price: Option<i64>,
    #[serde(default)]
    pub currency: Option<String>,
}

impl LineShown {
    /// The lines as order-svc's record holds them, read leniently: a field the domain's
    /// line adds (name, unit price, currency) shows as soon as order-svc writes it.
    pub fn of(lines: &OrderLines) -> Vec<Self> {
        serde_json::to_value(&lines.0)
            .ok()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default()
    }

    /// The total of `lines` in minor units and its currency, when every line is priced in
    /// one currency.
    pub fn total(lines: &[Self]) -> Option<(i64, String)> {
        let currency = lines.first()?.currency.clone()?;
        lines
            .iter()
            .try_fold((0i64, currency), |(sum, currency), line| {
                (line.currency.as_ref() == Some(&currency))
                    .then_some(())
                    .and(line.unit_price)
                    .and_then(|price| price.checked_mul(line.qty))
                    .and_then(|amount| sum.checked_add(amount))
                    .map(|sum| (sum, currency))
            })
    }
}

impl OrderRow {
    /// The row of an order as order-svc's record (read through `sagactl::timeline`) holds
    /// it; `stored_total` is the total order-svc wrote with it, if it did.
    pub fn of(
        order_id: &str,
        order: sagactl::timeline::OrderRecord,
        stored_total: Option<(i64, String)>,
    ) -> Self {
        let mut lines = order.lines.as_ref().map(LineShown::of).unwrap_or_default();
        if lines.is_empty() && !order.item.is_empty() {
            lines.push(LineShown {
                item: order.item.clone(),
                qty: order.qty,
                name: None,
                unit_price: None,
                currency: None,
            });
        }
        let (total, currency) = stored_total
            .or_else(|| LineShown::total(&lines))
            .map_or((None, None), |(t, c)| (Some(t), Some(c)));
        Self {
            order_id: order_id.to_owned(),
            item: order.item,
            qty: order.qty,
            lines,
            total,
            currency,
            student_id: order.student_id,
            status: order.status,
            reason: order.reason,
            created_at: order.created_at,
            updated_at: order.updated_at,
        }
    }
}

/// Counts per status, and the newest order ids overall (`ALL`) and of each status, with
/// each listed order's row.
#[derive(Debug, Clone, Serialize)]
pub struct Orders {
    pub counts: BTreeMap<String, u64>,
    pub lists: BTreeMap<String, Vec<String>>,
    pub orders: BTreeMap<String, OrderRow>,
}

/// One item's stock books.
#[derive(Debug, Clone, Serialize)]
pub struct StockRow {
    pub item: String,
    pub available: i64,
    pub initial: i64,
    pub reserved: i64,
    pub released: i64,
    /// `initial = available + reserved − released` holds.
    pub balanced: bool,
}

/// Every item's books, and the conservation rule's violations in the checker's words.
#[derive(Debug, Clone, Serialize)]
pub struct Stock {
    pub items: Vec<StockRow>,
    pub violations: Vec<String>,
}

// --- the catalog -----------------------------------------------------------------------------

/// One product: inventory-svc's truth (price, stock, markers) and how old order-svc's replica of
/// it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductRow {
    pub item: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Minor units (899 EUR is 8.99 €).
    #[serde(default)]
    pub unit_price: Option<i64>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub stock: Option<i64>,
    #[serde(default)]
    pub low_threshold: Option<i64>,
    /// Below its threshold.
    #[serde(default)]
    pub low: bool,
    /// No stock left.
    #[serde(default)]
    pub out: bool,
    /// How old order-svc's replica of it is (`None`: the replica does not have it).
    #[serde(default, rename = "age_ms")]
    pub replica_age_ms: Option<u64>,
    /// The unit price the replica holds, when it differs from inventory-svc's (an event on
    /// its way).
    #[serde(default, skip_deserializing)]
    pub replica_price: Option<i64>,
}

/// The catalog panel: every product, from inventory-svc (the owner) and order-svc's replica.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Catalog {
    pub products: Vec<ProductRow>,
    /// Where the rows come from: inventory-svc's `GET /products` answered.
    pub inventory: bool,
    /// order-svc's `GET /products` (the replica) answered.
    pub replica: bool,
    /// Why a side is missing.
    pub notes: Vec<String>,
}

// --- the DLQ ---------------------------------------------------------------------------------

/// What the page shows of the DLQ.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Dlq {
    /// Messages ready in the DLQ (exact, from the last sample).
    pub depth: Option<u32>,
    /// The first messages, as last peeked.
    pub entries: Vec<sagactl::dlq::Entry>,
    /// The depth when they were peeked: a different depth now means they are stale.
    pub peeked_depth: Option<u32>,
    pub peeked_at: Option<u64>,
    /// Why the list may be out of date (a drill runs, the broker is away).
    pub note: Option<String>,
}

// --- invariants ------------------------------------------------------------------------------

/// A light's colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LightState {
    /// Holds.
    Green,
    /// Nothing wrong yet, but not settled (orders in flight, an outage waited out).
    Amber,
    /// Broken: see the light's detail.
    Red,
}

/// One light on the page: one rule of the checker.
#[derive(Debug, Clone, Serialize)]
pub struct Light {
    pub id: &'static str,
    pub title: &'static str,
    pub state: LightState,
    pub detail: Vec<String>,
}

/// One round of the checks: the lights, or why there are none this round.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Invariants {
    Checked {
        lights: Vec<Light>,
        at: u64,
        took_ms: u64,
    },
    Unknown {
        error: String,
        at: u64,
    },
}

// --- processes and status --------------------------------------------------------------------

/// The demo's processes, and what the fault buttons may do with them.
#[derive(Debug, Clone, Serialize)]
pub struct Services {
    pub run_dir: PathBuf,
    pub instances: Vec<Instance>,
    /// Why the fault buttons are off, if they are.
    pub faults_refused: Option<String>,
    /// The Redis outage button is offered.
    pub redis_stop: bool,
    pub redis_outage: Option<Outage>,
    pub scripts_dir: Option<PathBuf>,
}

/// Which dependencies answer, where the board looks, and who may act.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub broker: bool,
    pub redis: bool,
    pub management: bool,
    pub vhost: String,
    pub prefix: String,
    pub listen: String,
    pub actions: ActionPolicy,
    /// The drill running now.
    pub drill: Option<String>,
    /// Traces and spans received at `POST /v1/traces` and held.
    pub traces: usize,
    pub spans: usize,
}

// --- drills and activity ---------------------------------------------------------------------

/// One line of a running drill's output.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct DrillLine(pub String);

/// One thing someone did from the board, with the command a person would type for it.
#[derive(Debug, Clone, Serialize)]
pub struct Activity {
    pub at: u64,
    pub ok: bool,
    pub text: String,
}

/// What was done from the board, newest first.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct ActivityLog(pub Vec<Activity>);

// --- answers to the page's requests ---------------------------------------------------------

/// `GET /api/orders/{id}/journey`: the lanes of the swimlane, left to right, and the journey.
#[derive(Debug, Clone, Serialize)]
pub struct JourneyAnswer<'a> {
    pub lanes: Vec<&'static str>,
    pub journey: &'a sagactl::explain::Journey,
    /// The statuses a `PATCH .../status` may ask for from the order's status
    /// ([`OrderStatus::requestable_from`]): what enables the Ship and Deliver buttons, so the
    /// page keeps no copy of the transition table.
    pub requestable: Vec<OrderStatus>,
    /// The order's lines, prices and total (`None`: order-svc has no record of it).
    pub order: Option<OrderRow>,
    /// The order's events as a waterfall, from the spans the services exported to the board
    /// (`None`: no span about it is held).
    pub waterfall: Option<crate::traces::Waterfall>,
}

/// `POST /api/orders/{id}/status`: the order moved, and where it is now.
#[derive(Debug, Clone, Serialize)]
pub struct Moved {
    pub order_id: String,
    pub status: OrderStatus,
}

/// `POST /v1/traces`: OTLP's `ExportTraceServiceResponse` (empty when every span was kept).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TracesAccepted {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial_success: Option<PartialSuccess>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartialSuccess {
    pub rejected_spans: usize,
    pub error_message: String,
}

/// `POST /api/orders`: the orders placed (also, in an error's details, those placed before it).
#[derive(Debug, Clone, Serialize)]
pub struct Placed {
    pub order_ids: Vec<String>,
}

/// `POST /api/orders/{id}/duplicate` and `POST /api/poison`: what was published, and what the
/// saga should do with it.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    pub order_id: String,
    pub message_id: String,
    pub expect: &'static str,
}

/// `POST /api/dlq/replay`.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Replayed {
    /// `{"all": true}`: how many went back, how many are left, and what happened to each.
    All {
        replayed: usize,
        left: usize,
        lines: Vec<String>,
    },
    /// One message, and what was done with it.
    One { replayed: usize, what: String },
}

/// `POST /api/dlq/purge`: how many messages were deleted.
#[derive(Debug, Clone, Serialize)]
pub struct Purged {
    pub purged: u32,
}

/// `POST /api/dlq/look`: the board looks at the DLQ now.
#[derive(Debug, Clone, Serialize)]
pub struct Looking {
    pub looking: bool,
}

/// A fault action: what was done, as a person would type it.
#[derive(Debug, Clone, Serialize)]
pub struct Done {
    pub done: String,
}

/// `GET /health`, as scripts/svc.sh checks every process.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub status: &'static str,
    pub service: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_are_distinct() {
        let all = [
            Topic::Vocabulary,
            Topic::QueueHistory,
            Topic::QueueSample,
            Topic::Queues,
            Topic::Orders,
            Topic::Stock,
            Topic::Catalog,
            Topic::Alerts,
            Topic::Dlq,
            Topic::Invariants,
            Topic::Services,
            Topic::Status,
            Topic::Drill,
            Topic::DrillLine,
            Topic::Activity,
        ];
        let names: std::collections::BTreeSet<&str> = all.iter().map(|t| t.name()).collect();
        assert_eq!(names.len(), all.len());
    }

    #[test]
    fn the_statuses_go_to_the_page_as_the_wire_spells_them() {
        let words = serde_json::to_value(Vocabulary {
            statuses: OrderStatus::ALL.to_vec(),
            final_statuses: OrderStatus::DECIDED.to_vec(),
            tones: OrderStatus::ALL.map(|s| (s, Tone::of(s))).into(),
            drills: Vec::new(),
            poison_kinds: Vec::new(),
        })
        .unwrap();
        let statuses: Vec<String> = OrderStatus::ALL.iter().map(|s| s.to_string()).collect();
        assert_eq!(words["statuses"], serde_json::json!(statuses));
        assert_eq!(words["tones"]["CONFIRMED"], "done");
    }

    #[test]
    fn lines_show_their_prices_when_the_record_has_them_and_a_total_in_one_currency() {
        let json = serde_json::json!({"lines": [
            {"item": "burger", "qty": 2, "name": "Burger", "unit_price": 899, "currency": "EUR"},
            {"item": "pizza", "qty": 1, "name": "Pizza", "unit_price": 1250, "currency": "EUR"},
        ]});
        let lines: Vec<LineShown> = serde_json::from_value(json["lines"].clone()).unwrap();
        assert_eq!(LineShown::total(&lines), Some((3048, "EUR".into())));
        let mut mixed = lines.clone();
        mixed[1].currency = Some("USD".into());
        assert_eq!(LineShown::total(&mixed), None);
        let mut unknown = lines;
        unknown[0].unit_price = None;
        assert_eq!(LineShown::total(&unknown), None);
        // Today's record (no prices): the lines, price unknown.
        let plain: OrderLines =
            serde_json::from_value(serde_json::json!({"item": "burger", "qty": 2})).unwrap();
        let shown = LineShown::of(&plain);
        assert_eq!((shown[0].item.as_str(), shown[0].qty), ("burger", 2));
        assert_eq!(LineShown::total(&shown), None);
    }

    #[test]
    fn a_failed_check_round_says_why_without_lights() {
        let unknown = serde_json::to_value(Invariants::Unknown {
            error: "cannot check: Redis".into(),
            at: 1,
        })
        .unwrap();
        assert!(unknown.get("lights").is_none());
        assert_eq!(unknown["error"], "cannot check: Redis");
        let light = serde_json::to_value(LightState::Amber).unwrap();
        assert_eq!(light, "amber");
    }
}
