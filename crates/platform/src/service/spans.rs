//! Spans exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; nothing at all when
//! it is not (the default): [`Spans::record`] takes a closure, so an untraced service does not
//! even build the span.
//!
//! The trace context itself travels whether or not anything is exported (saga_domain::trace);
//! this module only reports the spans a service made, named and attributed as OpenTelemetry's
//! conventions for HTTP servers and messaging say (`messaging.system`, `messaging.operation.type`,
//! `messaging.destination.name`, `messaging.rabbitmq.destination.routing_key`,
//! `messaging.message.id`), plus `saga.order_id`. Spans go out in batches, as OTLP's JSON
//! encoding (`POST <endpoint>/v1/traces`, ids in hex): any collector, or otelite on a student's
//! machine, reads them. A collector that is down loses spans, never work: the queue in front
//! of the exporter is bounded and a full queue drops the newest span (counted).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use saga_domain::trace::Trace;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::warn;

/// Spans waiting for the exporter; beyond this a span is dropped rather than wait or grow.
const QUEUE: usize = 8192;
/// Spans per request to the collector.
const BATCH: usize = 512;
/// How long a span waits for its batch to fill.
const LINGER: Duration = Duration::from_millis(500);

/// What a span stands for, as OTLP numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// An HTTP request served.
    Server = 2,
    /// A message published.
    Producer = 4,
    /// A delivery processed.
    Consumer = 5,
}

/// One finished span.
#[derive(Debug, Clone)]
pub struct Span {
    pub name: String,
    pub kind: SpanKind,
    /// Its own context (trace id and span id).
    pub trace: Trace,
    /// The span it continues, when there is one (none for the root of a trace).
    pub parent: Option<u64>,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<(&'static str, String)>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// Where a service's spans go: nowhere (the default), or an OTLP/HTTP collector. Cheap to
/// clone; each service makes one ([`Spans::start`]) and hands it to the parts that make spans.
#[derive(Debug, Clone, Default)]
pub struct Spans {
    queue: Option<mpsc::Sender<Span>>,
}

impl Spans {
    /// Export nothing.
    pub fn off() -> Self {
        Self::default()
    }

    /// Export `service`'s spans to `endpoint` (OTLP's base URL, `http://127.0.0.1:4318`), or
    /// nothing when there is none. Call inside the tokio runtime: it spawns the exporter, which
    /// ends, after a last batch, when every clone of the handle is gone.
    pub fn start(service: &str, endpoint: Option<&str>) -> Self {
        let Some(endpoint) = endpoint.map(str::trim).filter(|e| !e.is_empty()) else {
            return Self::off();
        };
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        let (queue, spans) = mpsc::channel(QUEUE);
        tokio::spawn(export(service.to_owned(), url, spans));
        Self { queue: Some(queue) }
    }

    /// Whether spans go anywhere.
    pub fn is_on(&self) -> bool {
        self.queue.is_some()
    }

    /// Report a finished span; `span` is called only when spans are exported.
    pub fn record(&self, span: impl FnOnce() -> Span) {
        if let Some(queue) = &self.queue
            && queue.try_send(span()).is_err()
        {
            metrics::counter!("saga_spans_dropped_total").increment(1);
        }
    }
}

/// Send batches until the queue closes.
async fn export(service: String, url: String, mut spans: mpsc::Receiver<Span>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    let mut warned = false;
    loop {
        let Some(first) = spans.recv().await else {
            return;
        };
        let mut batch = vec![first];
        let linger = tokio::time::sleep(LINGER);
        tokio::pin!(linger);
        while batch.len() < BATCH {
            tokio::select! {
                more = spans.recv() => match more {
                    Some(span) => batch.push(span),
                    None => break,
                },
                () = &mut linger => break,
            }
        }
        let sent = client
            .post(&url)
            .json(&otlp_json(&service, &batch))
            .send()
            .await;
        match sent.map(|r| r.error_for_status()) {
            Ok(Ok(_)) => warned = false,
            Ok(Err(e)) | Err(e) => {
                metrics::counter!("saga_spans_dropped_total").increment(batch.len() as u64);
                // One line per outage of the collector, not one per batch.
                if !warned {
                    warn!(cause = %e, url = %url, "could not export spans; dropping them until the collector answers");
                    warned = true;
                }
            }
        }
    }
}

/// A batch as OTLP's JSON encoding of `ExportTraceServiceRequest`.
pub fn otlp_json(service: &str, spans: &[Span]) -> Value {
    let nanos = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            .to_string()
    };
    let attribute = |key: &str, value: &str| json!({"key": key, "value": {"stringValue": value}});
    let spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            let mut span = json!({
                "traceId": s.trace.context.trace_id_hex(),
                "spanId": s.trace.context.span_id_hex(),
                "name": s.name,
                "kind": s.kind as i32,
                "startTimeUnixNano": nanos(s.start),
                "endTimeUnixNano": nanos(s.end),
                "attributes": s.attributes.iter().map(|(k, v)| attribute(k, v)).collect::<Vec<_>>(),
                "status": match &s.error {
                    None => json!({"code": 1}),
                    Some(message) => json!({"code": 2, "message": message}),
                },
            });
            if let Some(parent) = s.parent {
                span["parentSpanId"] = format!("{parent:016x}").into();
            }
            if let Some(state) = &s.trace.state {
                span["traceState"] = state.clone().into();
            }
            span
        })
        .collect();
    json!({"resourceSpans": [{
        "resource": {"attributes": [attribute("service.name", service)]},
        "scopeSpans": [{"scope": {"name": "saga"}, "spans": spans}],
    }]})
}

/// The span of one HTTP request served, from `start` until now (OpenTelemetry's HTTP server
/// conventions: the route template names it; a 5xx is an error).
pub fn server(
    route: &'static str,
    trace: Trace,
    parent: Option<u64>,
    start: SystemTime,
    status: u16,
) -> Span {
    let method = route.split(' ').next().unwrap_or_default();
    Span {
        name: route.to_owned(),
        kind: SpanKind::Server,
        trace,
        parent,
        start,
        end: SystemTime::now(),
        attributes: vec![
            ("http.request.method", method.to_owned()),
            ("http.route", route.to_owned()),
            ("http.response.status_code", status.to_string()),
        ],
        error: (status >= 500).then(|| format!("answered {status}")),
    }
}

/// The messaging attributes of a span about one message.
pub fn messaging(
    operation: &'static str,
    exchange: &str,
    routing_key: &str,
    message_id: Option<&str>,
    order_id: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut attributes = vec![
        ("messaging.system", "rabbitmq".to_owned()),
        ("messaging.operation.type", operation.to_owned()),
        ("messaging.destination.name", exchange.to_owned()),
        (
            "messaging.rabbitmq.destination.routing_key",
            routing_key.to_owned(),
        ),
    ];
    if let Some(id) = message_id {
        attributes.push(("messaging.message.id", id.to_owned()));
    }
    if let Some(id) = order_id {
        attributes.push(("saga.order_id", id.to_owned()));
    }
    attributes
}

#[cfg(test)]
mod tests {
    use saga_domain::trace::SpanContext;

    use super::*;

    #[test]
    fn a_span_in_otlp_json() {
        let trace = Trace::of_headers(
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            None,
        )
        .unwrap();
        let at = UNIX_EPOCH + Duration::from_millis(1500);
        let span = Span {
            name: "order.placed publish".into(),
            kind: SpanKind::Producer,
            trace: trace.clone(),
            parent: Some(0xab),
            start: at,
            end: at + Duration::from_millis(2),
            attributes: messaging(
                "send",
                "order_events",
                "order.placed",
                Some("e-1"),
                Some("o-1"),
            ),
            error: None,
        };
        let body = otlp_json("order-svc", &[span]);
        let span = &body["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span["spanId"], "00f067aa0ba902b7");
        assert_eq!(span["parentSpanId"], "00000000000000ab");
        assert_eq!(span["kind"], 4);
        assert_eq!(span["startTimeUnixNano"], "1500000000");
        assert_eq!(span["endTimeUnixNano"], "1502000000");
        assert_eq!(
            body["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            "order-svc"
        );
        assert!(
            span["attributes"]
                .as_array()
                .unwrap()
                .contains(&json!({"key": "saga.order_id", "value": {"stringValue": "o-1"}}))
        );
        assert_eq!(
            SpanContext::parse(&trace.traceparent()),
            Some(trace.context)
        );
    }

    #[test]
    fn off_builds_nothing() {
        let spans = Spans::off();
        assert!(!spans.is_on());
        spans.record(|| unreachable!("an untraced service builds no span"));
    }
}
