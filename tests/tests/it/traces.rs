//! Traces across the saga (issue 21, saga_domain::trace): the W3C `traceparent` an HTTP request
//! comes with (or one started there) is stored with the outbox entry, sent in the AMQP headers,
//! continued by every consumer and carried into every event it publishes. So one order is one
//! trace: every event about it names the same trace id, each from a span of its own.

use std::collections::BTreeSet;
use std::time::Duration;

use harness::broker::Taken;
use harness::{TestEnv, eventually};
use saga_domain::trace::{SpanContext, TRACEPARENT};
use serde_json::json;

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

/// Place one burger with `traceparent` (if any) and wait for its three events.
async fn place_traced(
    env: &TestEnv,
    tap: &str,
    order: &harness::ServiceProcess,
    traceparent: Option<&str>,
) -> anyhow::Result<Vec<(String, SpanContext)>> {
    let mut request = env
        .http()
        .post(order.url("/order"))
        .json(&json!({"item": "burger", "qty": 1, "student_id": "s-1"}));
    if let Some(traceparent) = traceparent {
        request = request.header(TRACEPARENT, traceparent);
    }
    let answer = request.send().await?;
    anyhow::ensure!(answer.status() == 201, "POST /order: {}", answer.status());
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
    env.tap(tap, &["#"]).await?;
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
