//! Traces across the saga (issue 21, saga_domain::trace): the W3C `traceparent` an HTTP request
//! comes with (or one started there) is stored with the outbox entry, sent in the AMQP headers,
//! continued by every consumer and carried into every event it publishes. So one order is one
//! trace: every event about it names the same trace id, each from a span of its own; and with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set, the services export that trace's spans, connected.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::broker::Taken;
use harness::{ServiceKind, TestEnv, eventually};
use saga_domain::trace::{SpanContext, TRACEPARENT};
use serde_json::{Value, json};
use warp::Filter;

const T: Duration = Duration::from_secs(30);

/// The client's span: the trace every event of its order must continue.
const CLIENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The span contexts the events on `tap` carry, once `n` have arrived.
async fn traced_events(
    env: &TestEnv,
    tap: &str,
    n: usize,
) -> anyhow::Result<Vec<(String, SpanContext)>> {
    let seen = std::cell::RefCell::new(Vec::<Taken>::new());
    let taken = eventually("the order's events", T, || async {
        let more = env.take_all(tap).await.map_err(|e| e.to_string())?;
        let mut seen = seen.borrow_mut();
        seen.extend(more);
        if seen.len() >= n {
            Ok(std::mem::take(&mut *seen))
        } else {
            Err(format!("{} of {n} events", seen.len()))
        }
    })
    .await?;
    taken
        .iter()
        .map(|m| {
            let header = m.header(TRACEPARENT).unwrap_or_default();
            let context = SpanContext::parse(&header)
                .ok_or_else(|| anyhow::anyhow!("{}: traceparent {header:?}", m.routing_key))?;
            Ok((m.routing_key.clone(), context))
        })
        .collect()
}

/// `POST /order` one burger with `traceparent` (if any); the order's id.
async fn post_traced(
    env: &TestEnv,
    order: &harness::ServiceProcess,
    traceparent: Option<&str>,
) -> anyhow::Result<String> {
    let mut request = env
        .http()
        .post(order.url("/order"))
        .json(&json!({"item": "burger", "qty": 1, "student_id": "s-1"}));
    if let Some(traceparent) = traceparent {
        request = request.header(TRACEPARENT, traceparent);
    }
    let answer = request.send().await?;
    anyhow::ensure!(answer.status() == 201, "POST /order: {}", answer.status());
    Ok(answer.json::<Value>().await?["order_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// Place one burger with `traceparent` (if any) and wait for its three events.
async fn place_traced(
    env: &TestEnv,
    tap: &str,
    order: &harness::ServiceProcess,
    traceparent: Option<&str>,
) -> anyhow::Result<Vec<(String, SpanContext)>> {
    post_traced(env, order, traceparent).await?;
    let events = traced_events(env, tap, 3).await?;
    let keys: BTreeSet<_> = events.iter().map(|(k, _)| k.as_str()).collect();
    anyhow::ensure!(
        keys == BTreeSet::from(["inventory.reserved", "order.placed", "order.status.updated"]),
        "{keys:?}"
    );
    Ok(events)
}

#[tokio::test(flavor = "multi_thread")]
async fn one_order_is_one_trace_from_the_request_to_its_last_event() -> anyhow::Result<()> {
    let env = TestEnv::with_stock("traces", "burger=10").await?;
    let (order, _inv, _notif) = env.start_all().await?;
    let tap = "traces-tap";
    // The order's events; the catalog's product events (stock moves) have tests of their own.
    env.tap(tap, &harness::broker::SAGA_KEYS).await?;
    let client = SpanContext::parse(CLIENT).expect("a valid traceparent");

    // Continued from the client's trace.
    let events = place_traced(&env, tap, &order, Some(CLIENT)).await?;
    let spans: BTreeSet<u64> = events.iter().map(|(_, c)| c.span_id).collect();
    for (key, context) in &events {
        assert_eq!(
            context.trace_id, client.trace_id,
            "{key}: the client's trace"
        );
        assert!(context.sampled, "{key}: the client's sampled flag kept");
    }
    assert_eq!(spans.len(), 3, "each publish is a span of its own");
    assert!(
        !spans.contains(&client.span_id),
        "children of the client's span, not it"
    );

    // Started at the request when the client sends none, or sends one that breaks the format.
    for sent in [None, Some("00-not-a-trace-01")] {
        let events = place_traced(&env, tap, &order, sent).await?;
        let traces: BTreeSet<u128> = events.iter().map(|(_, c)| c.trace_id).collect();
        assert_eq!(
            traces.len(),
            1,
            "{sent:?}: one trace for the order, {events:?}"
        );
        assert!(!traces.contains(&client.trace_id), "{sent:?}: a new trace");
    }
    Ok(())
}

/// The trace lives in the message, not in a process: inventory-svc killed with `kill -9` while
/// the order's OrderPlaced waits for it, the restarted one continues the client's trace. And a
/// PATCH continues the trace of its own request: the status event it writes names it.
#[tokio::test(flavor = "multi_thread")]
async fn a_trace_survives_a_kill_9_and_a_patch_continues_its_own_request() -> anyhow::Result<()> {
    let env = TestEnv::with_stock("traces-kill9", "burger=10").await?;
    let order = env.start(ServiceKind::Order).await?;
    let mut inventory = env.start(ServiceKind::Inventory).await?;
    let tap = "traces-kill9-tap";
    // The order's events; the catalog's product events (stock moves) have tests of their own.
    env.tap(tap, &harness::broker::SAGA_KEYS).await?;
    inventory.kill9().await;
    let id = post_traced(&env, &order, Some(CLIENT)).await?;
    env.until_depth("the OrderPlaced waits", &env.topology.inventory_queue, 1, T)
        .await?;
    inventory.restart().await?;
    let client = SpanContext::parse(CLIENT).expect("a valid traceparent");
    for (key, context) in traced_events(&env, tap, 3).await? {
        assert_eq!(
            context.trace_id, client.trace_id,
            "{key}: the client's trace"
        );
    }

    env.wait_status(&order, &id, saga_domain::order::OrderStatus::Confirmed, T)
        .await?;
    let shipper = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let answer = env
        .http()
        .patch(order.url(&format!("/order/{id}/status")))
        .header(TRACEPARENT, shipper)
        .json(&json!({"status": "SHIPPED"}))
        .send()
        .await?;
    anyhow::ensure!(answer.status() == 200, "PATCH: {}", answer.status());
    let shipped = traced_events(&env, tap, 1).await?;
    let shipper = SpanContext::parse(shipper).expect("a valid traceparent");
    assert_eq!(shipped[0].0, "order.status.updated");
    assert_eq!(shipped[0].1.trace_id, shipper.trace_id, "the PATCH's trace");
    assert_ne!(shipped[0].1.span_id, shipper.span_id, "a child of it");
    Ok(())
}

/// A stand-in OTLP/HTTP collector: every span posted to `/v1/traces`, with its service.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Collector {
    /// Listen on a free loopback port; its base URL is what `OTEL_EXPORTER_OTLP_ENDPOINT` takes.
    async fn start() -> anyhow::Result<(Self, String)> {
        let collector = Self::default();
        let kept = collector.clone();
        let routes = warp::path!("v1" / "traces")
            .and(warp::post())
            .and(warp::body::json())
            .map(move |request: Value| {
                kept.keep(&request);
                warp::reply()
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(warp::serve(routes).incoming(listener).run());
        Ok((collector, format!("http://{addr}")))
    }

    fn keep(&self, request: &Value) {
        let mut spans = self.spans.lock().expect("not poisoned");
        for resource in request["resourceSpans"].as_array().into_iter().flatten() {
            let service = resource["resource"]["attributes"][0]["value"]["stringValue"]
                .as_str()
                .unwrap_or("?")
                .to_owned();
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    spans.push((service.clone(), span.clone()));
                }
            }
        }
    }

    /// The spans of `trace_id` seen so far.
    fn of_trace(&self, trace_id: &str) -> Vec<Exported> {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        self.spans
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|(_, span)| span["traceId"] == trace_id)
            .map(|(service, span)| Exported {
                service: service.clone(),
                kind: span["kind"].as_i64().unwrap_or(0),
                name: text(&span["name"]),
                id: text(&span["spanId"]),
                parent: text(&span["parentSpanId"]),
                redelivered: span["attributes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|a| a["key"] == "saga.redelivered" && a["value"]["stringValue"] == "true"),
            })
            .collect()
    }

    /// Wait until every span one order must have is exported in the client's trace, then check
    /// that every parent link points at a span of the same trace (the request's at the client's).
    async fn until_connected_trace(&self, client: &SpanContext) -> anyhow::Result<Vec<Exported>> {
        // (service, kind, name) of every span the order must have; kinds as OTLP numbers them.
        let (server, producer, consumer) = (2, 4, 5);
        let want: BTreeSet<(&str, i64, &str)> = BTreeSet::from([
            ("order-svc", server, "POST /order"),
            ("order-svc", producer, "order.placed publish"),
            ("inventory-svc", consumer, "inventory_queue process"),
            ("inventory-svc", producer, "inventory.reserved publish"),
            ("order-svc", consumer, "order_status_queue process"),
            ("order-svc", producer, "order.status.updated publish"),
            ("notification-svc", consumer, "notification_queue process"),
        ]);
        let spans = eventually("the order's spans at the collector", T, || async {
            let spans = self.of_trace(&client.trace_id_hex());
            let seen: BTreeSet<(&str, i64, &str)> = spans
                .iter()
                .map(|s| (s.service.as_str(), s.kind, s.name.as_str()))
                .collect();
            if want.is_subset(&seen) {
                Ok(spans.clone())
            } else {
                Err(format!(
                    "missing {:?}",
                    want.difference(&seen).collect::<Vec<_>>()
                ))
            }
        })
        .await?;
        let ids: BTreeSet<&str> = spans.iter().map(|s| s.id.as_str()).collect();
        for s in &spans {
            if s.name == "POST /order" {
                assert_eq!(
                    s.parent,
                    client.span_id_hex(),
                    "the request continues the client"
                );
            } else {
                assert!(
                    ids.contains(s.parent.as_str()),
                    "{} {} ({}): parent {} is a span of the same trace",
                    s.service,
                    s.name,
                    s.id,
                    s.parent
                );
            }
        }
        Ok(spans)
    }
}

/// One span as the collector received it.
#[derive(Clone, Debug)]
struct Exported {
    service: String,
    kind: i64,
    name: String,
    id: String,
    parent: String,
    /// Marked `saga.redelivered`: the delivery it processed was a redelivery.
    redelivered: bool,
}

/// With OTLP export on, one order is one exported trace: order-svc's request, the relay's
/// publish, inventory-svc's processing and its outcome's publish, the status consumer, the
/// status event's publish and notification-svc, every parent link pointing at a span of the
/// same trace (the request's at the client's span).
#[tokio::test(flavor = "multi_thread")]
async fn with_otlp_on_one_order_exports_one_connected_trace() -> anyhow::Result<()> {
    let (collector, endpoint) = Collector::start().await?;
    let env = TestEnv::with_stock("otlp", "burger=10").await?;
    let otel = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())];
    let (order, inv, notif) = tokio::join!(
        env.start_with(ServiceKind::Order, &otel),
        env.start_with(ServiceKind::Inventory, &otel),
        env.start_with(ServiceKind::Notification, &otel),
    );
    let (order, _inv, _notif) = (order?, inv?, notif?);
    let tap = "otlp-tap";
    // The order's events; the catalog's product events (stock moves) have tests of their own.
    env.tap(tap, &harness::broker::SAGA_KEYS).await?;
    place_traced(&env, tap, &order, Some(CLIENT)).await?;
    let client = SpanContext::parse(CLIENT).expect("a valid traceparent");
    collector.until_connected_trace(&client).await?;
    Ok(())
}

/// The exported trace survives what the saga survives: order-svc killed with `kill -9` while
/// the order's outcome waits for it, and the OrderPlaced redelivered to inventory-svc (taken
/// and dropped unacked, as by a consumer that crashed holding it). The restarted order-svc and
/// the redelivery continue the same trace, every parent link intact, and the redelivered
/// processing says so.
#[tokio::test(flavor = "multi_thread")]
async fn with_otlp_on_a_trace_stays_connected_across_a_kill_9_and_a_redelivery()
-> anyhow::Result<()> {
    let (collector, endpoint) = Collector::start().await?;
    let env = TestEnv::with_stock("otlp-kill9", "burger=10").await?;
    let otel = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())];
    let (order, notif) = tokio::join!(
        env.start_with(ServiceKind::Order, &otel),
        env.start_with(ServiceKind::Notification, &otel),
    );
    let (mut order, _notif) = (order?, notif?);
    let client = SpanContext::parse(CLIENT).expect("a valid traceparent");
    post_traced(&env, &order, Some(CLIENT)).await?;
    let inventory_queue = env.topology.inventory_queue.clone();
    env.until_depth("the OrderPlaced waits", &inventory_queue, 1, T)
        .await?;
    // What order-svc did so far is exported before it dies (spans leave in batches).
    eventually("order-svc's publish exported", T, || async {
        let spans = collector.of_trace(&client.trace_id_hex());
        if spans.iter().any(|s| s.name == "order.placed publish") {
            Ok(())
        } else {
            Err(format!("{} spans so far", spans.len()))
        }
    })
    .await?;
    order.kill9().await;
    {
        let conn = env.connect().await?;
        let channel = conn.create_channel().await?;
        let got = channel
            .basic_get(inventory_queue.as_str().into(), Default::default())
            .await?;
        anyhow::ensure!(got.is_some(), "the OrderPlaced was taken");
        conn.close(200, "crash".into()).await?;
    }
    let _inventory = env.start_with(ServiceKind::Inventory, &otel).await?;
    env.until_depth(
        "the outcome waits for order-svc",
        &env.topology.order_status_queue,
        1,
        T,
    )
    .await?;
    order.restart().await?;

    let spans = collector.until_connected_trace(&client).await?;
    let processed: Vec<&Exported> = spans
        .iter()
        .filter(|s| s.name == "inventory_queue process")
        .collect();
    assert!(
        processed.iter().all(|s| s.redelivered),
        "inventory-svc processed the redelivery: {processed:?}"
    );
    Ok(())
}
