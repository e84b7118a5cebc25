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
use serde::Serialize;

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
    pub item: String,
    pub qty: i64,
    pub student_id: Option<String>,
    pub status: String,
    pub reason: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
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
}

/// `POST /api/orders/{id}/status`: the order moved, and where it is now.
#[derive(Debug, Clone, Serialize)]
pub struct Moved {
    pub order_id: String,
    pub status: OrderStatus,
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
