//! The board as a small OTLP collector: the services' spans (`POST /v1/traces`, OTLP/HTTP's JSON
//! encoding, as `saga_platform::service::spans` sends it) kept in memory, and each order's
//! **waterfall** drawn from them.
//!
//! Point the services at the board (`OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:8080`;
//! scripts/up.sh does when it starts the board) and every order's events show, one row each,
//! with the three times the swimlane cannot show: how long the event waited in the outbox (the
//! relay's producer span starts when the entry was written), how long it waited in its queue
//! (from the end of the producer span to the start of the consumer's), and how long its handler
//! took (the consumer span).
//!
//! Memory is bounded: the last [`TRACES_KEPT`] traces, each with at most [`SPANS_PER_TRACE`]
//! spans; a new trace beyond that pushes out the oldest. A span that is not well-formed is
//! counted as rejected and dropped, never an error for the batch.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;
use serde_json::Value;

use crate::lock;

/// Traces kept: a class's worth of orders.
pub const TRACES_KEPT: usize = 200;
/// Spans kept per trace (one order's saga makes about ten).
pub const SPANS_PER_TRACE: usize = 500;
/// Rows drawn per order at most.
const ROWS_SHOWN: usize = 80;

/// OTLP's span kinds the waterfall tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Server,
    Producer,
    Consumer,
    Other,
}

impl Kind {
    /// The kind as a number (`4`) or as the enum's name (`"SPAN_KIND_PRODUCER"`): OTLP's JSON
    /// encoding allows both.
    fn of(value: Option<&Value>) -> Self {
        match value {
            Some(Value::Number(n)) => match n.as_i64() {
                Some(2) => Self::Server,
                Some(4) => Self::Producer,
                Some(5) => Self::Consumer,
                _ => Self::Other,
            },
            Some(Value::String(s)) => match s.as_str() {
                "SPAN_KIND_SERVER" => Self::Server,
                "SPAN_KIND_PRODUCER" => Self::Producer,
                "SPAN_KIND_CONSUMER" => Self::Consumer,
                _ => Self::Other,
            },
            _ => Self::Other,
        }
    }
}

/// One span as the board keeps it.
#[derive(Debug, Clone)]
struct SpanRecord {
    trace_id: String,
    span_id: String,
    parent: Option<String>,
    name: String,
    kind: Kind,
    service: String,
    start_ns: u64,
    end_ns: u64,
    order_id: Option<String>,
    routing_key: Option<String>,
    outbox_wait_ms: Option<u64>,
    error: Option<String>,
}

/// What one `POST /v1/traces` brought.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ingested {
    pub accepted: usize,
    pub rejected: usize,
}

/// The spans the board holds.
#[derive(Default)]
pub struct Traces {
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    spans: HashMap<String, Vec<SpanRecord>>,
    /// Trace ids, oldest first: the first to go.
    arrival: VecDeque<String>,
    /// Order id -> the traces that have a span about it (a PATCH starts a trace of its own).
    by_order: HashMap<String, Vec<String>>,
}

impl Traces {
    /// Keep the spans of one OTLP/HTTP JSON `ExportTraceServiceRequest`.
    pub fn ingest(&self, request: &Value) -> Ingested {
        let mut got = Ingested::default();
        let mut spans = Vec::new();
        for resource in array(request.get("resourceSpans")) {
            let service = attributes(resource.get("resource").and_then(|r| r.get("attributes")))
                .remove("service.name")
                .unwrap_or_else(|| "?".to_owned());
            for scope in array(resource.get("scopeSpans")) {
                for span in array(scope.get("spans")) {
                    match parse_span(span, &service) {
                        Some(span) => spans.push(span),
                        None => got.rejected += 1,
                    }
                }
            }
        }
        let mut held = lock(&self.held);
        for span in spans {
            if held.keep(span) {
                got.accepted += 1;
            } else {
                got.rejected += 1;
            }
        }
        got
    }

    /// How many traces and spans are held.
    pub fn counts(&self) -> (usize, usize) {
        let held = lock(&self.held);
        (held.spans.len(), held.spans.values().map(Vec::len).sum())
    }

    /// Order `order_id`'s waterfall, or `None` when no span about it is held.
    pub fn waterfall(&self, order_id: &str) -> Option<Waterfall> {
        let held = lock(&self.held);
        let traces = held.by_order.get(order_id)?;
        let spans: Vec<&SpanRecord> = traces
            .iter()
            .filter_map(|t| held.spans.get(t))
            .flatten()
            .collect();
        Some(waterfall(&spans, traces.clone()))
    }
}

impl Held {
    /// Keep one span; `false` when its trace is full.
    fn keep(&mut self, span: SpanRecord) -> bool {
        let trace = span.trace_id.clone();
        if !self.spans.contains_key(&trace) {
            while self.arrival.len() >= TRACES_KEPT {
                if let Some(oldest) = self.arrival.pop_front() {
                    self.forget(&oldest);
                }
            }
            self.arrival.push_back(trace.clone());
        }
        let spans = self.spans.entry(trace.clone()).or_default();
        if spans.len() >= SPANS_PER_TRACE {
            return false;
        }
        if let Some(order) = &span.order_id {
            let traces = self.by_order.entry(order.clone()).or_default();
            if !traces.contains(&trace) {
                traces.push(trace);
            }
        }
        spans.push(span);
        true
    }

    fn forget(&mut self, trace: &str) {
        let Some(spans) = self.spans.remove(trace) else {
            return;
        };
        for order in spans.iter().filter_map(|s| s.order_id.as_ref()) {
            if let Some(traces) = self.by_order.get_mut(order) {
                traces.retain(|t| t != trace);
                if traces.is_empty() {
                    self.by_order.remove(order);
                }
            }
        }
    }
}

fn array(value: Option<&Value>) -> &[Value] {
    value.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// OTLP attributes (`[{key, value: {stringValue | intValue | ...}}]`) as text.
fn attributes(value: Option<&Value>) -> HashMap<String, String> {
    array(value)
        .iter()
        .filter_map(|kv| {
            let key = kv.get("key")?.as_str()?;
            let value = kv.get("value")?;
            let text = ["stringValue", "intValue", "doubleValue", "boolValue"]
                .iter()
                .find_map(|k| value.get(*k))
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })?;
            Some((key.to_owned(), text))
        })
        .collect()
}

/// Nanoseconds as OTLP's JSON writes them: a decimal string (or a number).
fn nanos(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// A hex id of the length OTLP gives it, not all zeros.
fn hex_id(value: Option<&Value>, len: usize) -> Option<String> {
    let id = value?.as_str()?;
    (id.len() == len && id.bytes().all(|b| b.is_ascii_hexdigit()) && id.bytes().any(|b| b != b'0'))
        .then(|| id.to_ascii_lowercase())
}

fn parse_span(span: &Value, service: &str) -> Option<SpanRecord> {
    let start_ns = nanos(span.get("startTimeUnixNano"))?;
    let end_ns = nanos(span.get("endTimeUnixNano"))?.max(start_ns);
    let mut attributes = attributes(span.get("attributes"));
    let status = span.get("status");
    let failed = status
        .and_then(|s| s.get("code"))
        .is_some_and(|c| c == 2 || c == "STATUS_CODE_ERROR");
    Some(SpanRecord {
        trace_id: hex_id(span.get("traceId"), 32)?,
        span_id: hex_id(span.get("spanId"), 16)?,
        parent: hex_id(span.get("parentSpanId"), 16),
        name: span.get("name")?.as_str()?.chars().take(200).collect(),
        kind: Kind::of(span.get("kind")),
        service: service.chars().take(100).collect(),
        start_ns,
        end_ns,
        order_id: attributes
            .remove("saga.order_id")
            .filter(|id| !id.is_empty() && id.len() <= 200),
        routing_key: attributes.remove("messaging.rabbitmq.destination.routing_key"),
        outbox_wait_ms: attributes
            .remove("saga.outbox_wait_ms")
            .and_then(|ms| ms.parse().ok()),
        error: failed.then(|| {
            status
                .and_then(|s| s.get("message"))
                .and_then(Value::as_str)
                .unwrap_or("failed")
                .chars()
                .take(300)
                .collect()
        }),
    })
}

// --- the waterfall ---------------------------------------------------------------------------

/// One order's waterfall: a row per HTTP request served and per event delivered to a queue,
/// each made of its phases, in milliseconds from the first span's start.
#[derive(Debug, Clone, Serialize)]
pub struct Waterfall {
    /// When the first span started, ms since the Unix epoch.
    pub t0: u64,
    /// From the first span's start to the last one's end.
    pub total_ms: f64,
    pub rows: Vec<WaterRow>,
    /// The traces the rows come from.
    pub traces: Vec<String>,
}

/// One row: a request, or an event on its way to one queue.
#[derive(Debug, Clone, Serialize)]
pub struct WaterRow {
    /// `POST /order`, or `order.placed → inventory_queue`.
    pub label: String,
    /// The service that served the request or handled the event (else the publisher).
    pub service: String,
    pub routing_key: Option<String>,
    pub queue: Option<String>,
    pub phases: Vec<Phase>,
    pub error: Option<String>,
}

/// Where a piece of a row's time went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PhaseKind {
    /// An HTTP request being served.
    Request,
    /// Written to the outbox, waiting for the relay to publish it (and the broker to confirm).
    Outbox,
    /// Published straight from a handler (no outbox), until the broker confirmed it.
    Publish,
    /// In the queue: published, not yet taken by a consumer.
    Queue,
    /// The consumer's handler at work.
    Handler,
}

#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub phase: PhaseKind,
    pub start_ms: f64,
    pub ms: f64,
}

fn waterfall(spans: &[&SpanRecord], traces: Vec<String>) -> Waterfall {
    let t0 = spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
    let t1 = spans.iter().map(|s| s.end_ns).max().unwrap_or(t0);
    let ms = |ns: u64| (ns.saturating_sub(t0) as f64 / 1e6 * 1000.0).round() / 1000.0;
    let phase = |phase, from: u64, to: u64| Phase {
        phase,
        start_ms: ms(from),
        ms: ms(to.max(from)) - ms(from),
    };
    let by_id: HashMap<&str, &SpanRecord> =
        spans.iter().map(|s| (s.span_id.as_str(), *s)).collect();
    let mut consumed: HashMap<&str, usize> = HashMap::new();
    let mut rows: Vec<(u64, WaterRow)> = Vec::new();
    for span in spans {
        match span.kind {
            Kind::Server => rows.push((
                span.start_ns,
                WaterRow {
                    label: span.name.clone(),
                    service: span.service.clone(),
                    routing_key: None,
                    queue: None,
                    phases: vec![phase(PhaseKind::Request, span.start_ns, span.end_ns)],
                    error: span.error.clone(),
                },
            )),
            Kind::Consumer => {
                let queue = span
                    .name
                    .strip_suffix(" process")
                    .unwrap_or(&span.name)
                    .to_owned();
                let producer = span
                    .parent
                    .as_deref()
                    .and_then(|p| by_id.get(p))
                    .filter(|p| p.kind == Kind::Producer);
                let mut phases = Vec::new();
                let mut start = span.start_ns;
                if let Some(producer) = producer {
                    *consumed.entry(producer.span_id.as_str()).or_default() += 1;
                    phases.push(send_phase(producer, &phase));
                    phases.push(phase(PhaseKind::Queue, producer.end_ns, span.start_ns));
                    start = producer.start_ns;
                }
                phases.push(phase(PhaseKind::Handler, span.start_ns, span.end_ns));
                let routing_key = span
                    .routing_key
                    .clone()
                    .or_else(|| producer.and_then(|p| p.routing_key.clone()));
                rows.push((
                    start,
                    WaterRow {
                        label: format!(
                            "{} → {queue}",
                            routing_key.as_deref().unwrap_or("(an event)")
                        ),
                        service: span.service.clone(),
                        routing_key,
                        queue: Some(queue),
                        phases,
                        error: span
                            .error
                            .clone()
                            .or_else(|| producer.and_then(|p| p.error.clone())),
                    },
                ));
            }
            Kind::Producer | Kind::Other => {}
        }
    }
    // Events published that no consumer has reported (yet): their send alone.
    for span in spans
        .iter()
        .filter(|s| s.kind == Kind::Producer && !consumed.contains_key(s.span_id.as_str()))
    {
        rows.push((
            span.start_ns,
            WaterRow {
                label: format!(
                    "{} → (no consumer reported yet)",
                    span.routing_key.as_deref().unwrap_or(&span.name)
                ),
                service: span.service.clone(),
                routing_key: span.routing_key.clone(),
                queue: None,
                phases: vec![send_phase(span, &phase)],
                error: span.error.clone(),
            },
        ));
    }
    rows.sort_by_key(|(start, row)| (*start, row.label.clone()));
    Waterfall {
        t0: t0 / 1_000_000,
        total_ms: ms(t1),
        rows: rows
            .into_iter()
            .take(ROWS_SHOWN)
            .map(|(_, row)| row)
            .collect(),
        traces,
    }
}

/// A producer span's phase: the outbox wait when the relay sent it, else a plain publish.
fn send_phase(producer: &SpanRecord, phase: &impl Fn(PhaseKind, u64, u64) -> Phase) -> Phase {
    let kind = if producer.outbox_wait_ms.is_some() {
        PhaseKind::Outbox
    } else {
        PhaseKind::Publish
    };
    phase(kind, producer.start_ns, producer.end_ns)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn span(
        id: &str,
        parent: Option<&str>,
        kind: i64,
        name: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> Value {
        let mut attributes = vec![json!({"key": "saga.order_id", "value": {"stringValue": "o-1"}})];
        if kind == 4 {
            attributes.push(json!({"key": "messaging.rabbitmq.destination.routing_key", "value": {"stringValue": "order.placed"}}));
            attributes.push(json!({"key": "saga.outbox_wait_ms", "value": {"stringValue": "3"}}));
        }
        let mut span = json!({
            "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
            "spanId": id,
            "name": name,
            "kind": kind,
            "startTimeUnixNano": (from_ms * 1_000_000).to_string(),
            "endTimeUnixNano": (to_ms * 1_000_000).to_string(),
            "attributes": attributes,
        });
        if let Some(parent) = parent {
            span["parentSpanId"] = parent.into();
        }
        span
    }

    fn batch(service: &str, spans: Vec<Value>) -> Value {
        json!({"resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
            "scopeSpans": [{"spans": spans}],
        }]})
    }

    #[test]
    fn an_event_shows_its_outbox_wait_its_time_in_the_queue_and_its_handler() {
        let traces = Traces::default();
        let got = traces.ingest(&batch(
            "order-svc",
            vec![
                span("00000000000000a1", None, 2, "POST /order", 1000, 1004),
                span(
                    "00000000000000a2",
                    Some("00000000000000a1"),
                    4,
                    "order.placed publish",
                    1002,
                    1005,
                ),
            ],
        ));
        assert_eq!(
            got,
            Ingested {
                accepted: 2,
                rejected: 0
            }
        );
        traces.ingest(&batch(
            "inventory-svc",
            vec![
                span(
                    "00000000000000b1",
                    Some("00000000000000a2"),
                    5,
                    "inventory_queue process",
                    1010,
                    1012,
                ),
                json!({"spanId": "bad"}),
            ],
        ));
        let fall = traces.waterfall("o-1").unwrap();
        assert_eq!(fall.t0, 1000);
        assert_eq!(fall.rows.len(), 2, "{fall:?}");
        assert_eq!(fall.rows[0].label, "POST /order");
        let event = &fall.rows[1];
        assert_eq!(event.label, "order.placed → inventory_queue");
        assert_eq!(event.service, "inventory-svc");
        let phases: Vec<(PhaseKind, f64, f64)> = event
            .phases
            .iter()
            .map(|p| (p.phase, p.start_ms, p.ms))
            .collect();
        assert_eq!(
            phases,
            [
                (PhaseKind::Outbox, 2.0, 3.0),
                (PhaseKind::Queue, 5.0, 5.0),
                (PhaseKind::Handler, 10.0, 2.0)
            ]
        );
        assert!(traces.waterfall("o-2").is_none());
    }

    #[test]
    fn the_oldest_trace_goes_first_and_its_orders_with_it() {
        let traces = Traces::default();
        for n in 0..=TRACES_KEPT {
            let mut one = span("00000000000000a1", None, 2, "POST /order", 1, 2);
            one["traceId"] = format!("{:032x}", n + 1).into();
            one["attributes"] =
                json!([{"key": "saga.order_id", "value": {"stringValue": format!("o-{n}")}}]);
            traces.ingest(&batch("order-svc", vec![one]));
        }
        assert_eq!(traces.counts(), (TRACES_KEPT, TRACES_KEPT));
        assert!(traces.waterfall("o-0").is_none(), "the oldest went");
        assert!(traces.waterfall(&format!("o-{TRACES_KEPT}")).is_some());
    }
}
