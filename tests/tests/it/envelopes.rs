//! Envelopes (issue 21, saga_domain::envelope): every event we publish carries its CloudEvents
//! attributes as `cloudEvents_*` headers beside a body that stays the lab's; each consumer reads
//! the six shapes a class meets (flat, CloudEvents binary and structured, StandardMessage, the Go
//! bus Event, the course starter's BaseEvent) with the same outcome; a body that fits none or
//! two, or names another event than its routing key, is dead-lettered with what was looked for;
//! and services set to publish different envelopes still complete the saga together.

use std::collections::BTreeMap;
use std::time::Duration;

use harness::broker::Taken;
use harness::{ServiceKind, TestEnv, eventually};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use saga_domain::envelope::CLOUD_EVENTS_JSON;
use saga_domain::events::EventType;
use saga_domain::order::OrderStatus;
use saga_domain::version::SCHEMA_VERSION_HEADER;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

/// AMQP headers from `(name, text)` pairs, as long strings (what pika sends for a `str`).
fn headers(entries: &[(&str, &str)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (k, v) in entries {
        table.insert(
            ShortString::from(*k),
            AMQPValue::LongString(LongString::from(v.as_bytes().to_vec())),
        );
    }
    table
}

/// One OrderPlaced for one burger, `order_id`, in each of the six shapes: its body and the
/// properties a pika script would send with it.
fn order_placed_in_every_shape(prefix: &str) -> Vec<(String, Vec<u8>, BasicProperties)> {
    let id = |shape: &str| format!("{prefix}-{shape}");
    let flat = |order_id: &str| json!({"order_id": order_id, "item": "burger", "qty": 1, "student_id": "s-1"});
    let body = |v: Value| v.to_string().into_bytes();
    vec![
        (
            id("flat"),
            body(flat(&id("flat"))),
            BasicProperties::default(),
        ),
        (
            id("ce-binary"),
            body(flat(&id("ce-binary"))),
            BasicProperties::default()
                .with_content_type(ShortString::from("application/json"))
                .with_headers(headers(&[
                    ("cloudEvents_specversion", "1.0"),
                    ("cloudEvents_id", "ce-binary-1"),
                    ("cloudEvents_source", "/pika"),
                    ("cloudEvents_type", "order.placed"),
                ])),
        ),
        (
            id("ce-structured"),
            body(json!({
                "specversion": "1.0", "id": "ce-structured-1", "source": "/pika",
                "type": "order.placed", "time": "2026-12-05T07:00:00Z",
                "datacontenttype": "application/json", "data": flat(&id("ce-structured")),
            })),
            BasicProperties::default().with_content_type(ShortString::from(CLOUD_EVENTS_JSON)),
        ),
        (
            id("standard"),
            body(json!({
                "messageId": "sm-1", "messageType": "OrderPlaced", "messageVersion": "1.0",
                "timestamp": "2026-12-05T07:00:00Z", "source": "nestjs-orders",
                "correlationId": "c-sm", "partitionKey": id("standard"),
                "payload": flat(&id("standard")),
            })),
            BasicProperties::default(),
        ),
        (
            id("go-event"),
            body(json!({
                "id": "go-1", "type": "order.placed", "source": "go-bus",
                "timestamp": "2026-12-05T07:00:00Z", "tenant_id": "t-42", "correlation_id": "c-go",
                "data": flat(&id("go-event")), "metadata": {"version": "1"},
            })),
            BasicProperties::default(),
        ),
        (
            id("base-event"),
            body(json!({
                "event_id": "be-1", "event_type": "OrderPlaced", "created_at": "2026-12-05T07:00:00Z",
                "correlation_id": null,
                "order": {"order_id": id("base-event"), "user_id": "s-1",
                          "items": [{"sku": "burger", "qty": 1}], "created_at": "2026-12-05T07:00:00Z"},
            })),
            BasicProperties::default(),
        ),
    ]
}

/// Everything on `tap` once it holds `n` messages.
async fn take(env: &TestEnv, tap: &str, n: usize, what: &str) -> anyhow::Result<Vec<Taken>> {
    let seen = std::cell::RefCell::new(Vec::new());
    eventually(what, T, || async {
        let taken = env.take_all(tap).await.map_err(|e| e.to_string())?;
        let mut seen = seen.borrow_mut();
        seen.extend(taken);
        if seen.len() >= n {
            Ok(std::mem::take(&mut *seen))
        } else {
            Err(format!("{} of {n} messages", seen.len()))
        }
    })
    .await
}

/// The only message in the DLQ, once there is one.
async fn the_one_dead_letter(env: &TestEnv, what: &str) -> anyhow::Result<Taken> {
    let mut dead = take(env, &env.topology.dlq_queue, 1, what).await?;
    anyhow::ensure!(dead.len() == 1, "{} dead letters", dead.len());
    Ok(dead.remove(0))
}

#[tokio::test(flavor = "multi_thread")]
async fn each_of_the_six_shapes_is_read_with_the_same_outcome() -> anyhow::Result<()> {
    let env = TestEnv::with_stock("shapes", "burger=10").await?;
    let tap = "shapes-tap";
    env.tap(tap, &["inventory.#"]).await?;
    let inv = env.start(ServiceKind::Inventory).await?;
    inv.wait_ready(T).await?;

    let shapes = order_placed_in_every_shape("six");
    for (_, body, properties) in &shapes {
        env.publish_with("order.placed", body, properties.clone())
            .await?;
    }
    let outcomes = take(&env, tap, shapes.len(), "one outcome per shape").await?;
    let mut reserved: BTreeMap<String, Value> = BTreeMap::new();
    for m in &outcomes {
        assert_eq!(m.routing_key, "inventory.reserved", "{:?}", m.json());
        let body = m.json();
        reserved.insert(body["order_id"].as_str().unwrap_or("?").to_owned(), body);
    }
    let ids: Vec<_> = shapes.iter().map(|(id, ..)| id.clone()).collect();
    assert_eq!(
        reserved.keys().cloned().collect::<Vec<_>>(),
        {
            let mut sorted = ids.clone();
            sorted.sort();
            sorted
        },
        "every shape reserved its order, once"
    );
    for (id, body) in &reserved {
        assert_eq!(
            (
                body["item"].as_str(),
                body["qty"].as_i64(),
                body["student_id"].as_str()
            ),
            (Some("burger"), Some(1), Some("s-1")),
            "{id}: the same order whatever its envelope"
        );
    }
    env.until_stock("six burgers reserved", "burger", 4, T)
        .await?;
    assert!(env.take_all(&env.topology.dlq_queue).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn ambiguous_unknown_and_unread_shapes_are_dead_lettered_with_their_reasons()
-> anyhow::Result<()> {
    let env = TestEnv::with_stock("shapes-refused", "burger=10").await?;
    let inv = env.start(ServiceKind::Inventory).await?;
    inv.wait_ready(T).await?;
    let cases: [(&str, Value, &str); 4] = [
        (
            "no shape",
            json!({"item": "burger", "qty": 1}),
            "missing required field order_id: the body fits no shape this saga reads (looked for flat lab body: order_id; CloudEvents binary: header cloudEvents_specversion;",
        ),
        (
            "two shapes",
            json!({"messageType": "OrderPlaced", "payload": {"order_id": "two-1"},
                   "event_id": "e", "event_type": "OrderPlaced"}),
            "the body fits two shapes, StandardMessage (messageType and payload) and BaseEvent (event_id and event_type); send one",
        ),
        (
            "another event than its routing key",
            json!({"id": "e", "type": "inventory.reserved", "data": {"order_id": "other-1"}}),
            "Go bus Event names the event InventoryReserved but it came with routing key order.placed",
        ),
        (
            "a major version nobody here reads",
            json!({"messageId": "m", "messageType": "OrderPlaced", "messageVersion": "3",
                   "payload": {"order_id": "v3-1", "item": "burger", "qty": 1}}),
            "OrderPlaced version 3.0 is not read by inventory-svc; it reads 1, 2",
        ),
    ];
    for (what, body, reason) in cases {
        env.publish_bare("order.placed", body.to_string().as_bytes())
            .await?;
        let dead = the_one_dead_letter(&env, what).await?;
        let said = dead.header("x-dlq-reason").unwrap_or_default();
        assert!(said.starts_with(reason), "{what}: {said}");
        assert_eq!(dead.header("x-dlq-attempts"), None, "{what}: never retried");
        assert_eq!(dead.json(), body, "{what}: the message as it was sent");
    }
    // The version rule: one message, one version.
    let body = json!({"messageId": "m", "messageType": "OrderPlaced", "messageVersion": "1.0",
                      "payload": {"order_id": "twice-1", "item": "burger", "qty": 1}});
    env.publish_with(
        "order.placed",
        body.to_string().as_bytes(),
        BasicProperties::default().with_headers(headers(&[(SCHEMA_VERSION_HEADER, "2.0")])),
    )
    .await?;
    let dead = the_one_dead_letter(&env, "two versions").await?;
    assert_eq!(
        dead.header("x-dlq-reason").as_deref(),
        Some(
            "the message states two versions: x-schema-version \"2.0\" and StandardMessage \"1.0\""
        )
    );
    assert_eq!(env.stock("burger").await?, Some(10), "nothing reserved");
    Ok(())
}

/// By default every event keeps the lab's flat body and says what it is in CloudEvents headers.
#[tokio::test(flavor = "multi_thread")]
async fn every_event_carries_its_cloud_events_attributes_beside_the_lab_body() -> anyhow::Result<()>
{
    let env = TestEnv::with_stock("ce-headers", "burger=10").await?;
    let (order, _inv, _notif) = env.start_all().await?;
    let tap = "ce-headers-tap";
    // The order's events; the catalog's product events (stock moves) have tests of their own.
    env.tap(tap, &harness::broker::SAGA_KEYS).await?;
    let id = env.place(&order, "burger", 1).await?;
    env.wait_final(&order, &id, T).await?;
    for m in take(&env, tap, 3, "placed, reserved, confirmed").await? {
        let what = &m.routing_key;
        assert_eq!(m.json()["order_id"], json!(id), "{what}: a flat body");
        assert_eq!(m.header("cloudEvents_specversion").as_deref(), Some("1.0"));
        assert_eq!(m.header("cloudEvents_id"), m.message_id(), "{what}");
        assert_eq!(m.header("cloudEvents_type").as_deref(), Some(what.as_str()));
        assert_eq!(
            m.header("cloudEvents_subject").as_deref(),
            Some(id.as_str())
        );
        assert_eq!(
            m.header("cloudEvents_dataschema"),
            Some(format!("schemas/{what}.v1.json"))
        );
        let source = m.header("cloudEvents_source").unwrap_or_default();
        assert!(source.starts_with("/saga/"), "{what}: {source}");
        assert!(
            m.header("cloudEvents_time")
                .is_some_and(|t| t.ends_with('Z'))
        );
        assert_eq!(m.header(SCHEMA_VERSION_HEADER).as_deref(), Some("1.0"));
    }
    Ok(())
}

/// order-svc publishes StandardMessages, inventory-svc Go bus Events: each reads the other's,
/// and notification-svc (CloudEvents structured, though it publishes nothing) reads both.
#[tokio::test(flavor = "multi_thread")]
async fn services_set_to_different_envelopes_still_complete_the_saga() -> anyhow::Result<()> {
    let env = TestEnv::with_stock("mixed-envelopes", "burger=10").await?;
    let tap = "mixed-tap";
    // The order's events; the catalog's product events (stock moves) have tests of their own.
    env.tap(tap, &harness::broker::SAGA_KEYS).await?;
    let (standard, go, cloud) = (
        [("EVENT_ENVELOPE", "standard-message")],
        [("EVENT_ENVELOPE", "go-event")],
        [("EVENT_ENVELOPE", "cloudevents")],
    );
    let (order, inv, notif) = tokio::join!(
        env.start_with(ServiceKind::Order, &standard),
        env.start_with(ServiceKind::Inventory, &go),
        env.start_with(ServiceKind::Notification, &cloud),
    );
    let (order, _inv, _notif) = (order?, inv?, notif?);
    let id = env.place(&order, "burger", 1).await?;
    let confirmed = env.wait_final(&order, &id, T).await?;
    assert_eq!(confirmed.order.status, OrderStatus::Confirmed);
    // The timeline keeps what the Go bus Event said about its sender, and its shape.
    let line = confirmed
        .history
        .iter()
        .find(|l| l.event == Some(EventType::InventoryReserved))
        .expect("the reservation's line");
    assert_eq!(
        line.envelope,
        BTreeMap::from([
            ("shape".to_owned(), "Go bus Event".to_owned()),
            ("source".to_owned(), "inventory-svc".to_owned()),
        ])
    );
    env.until_notified("reserved, told once", &id, 1, T).await?;
    for m in take(&env, tap, 3, "placed, reserved, confirmed").await? {
        let body = m.json();
        let what = &m.routing_key;
        assert_eq!(
            m.header("cloudEvents_specversion"),
            None,
            "{what}: structured"
        );
        match what.as_str() {
            "inventory.reserved" => {
                assert_eq!(body["type"], json!("inventory.reserved"), "{body}");
                assert_eq!(body["data"]["order_id"], json!(id), "{body}");
                assert_eq!(body["metadata"]["version"], json!("1.0"), "{body}");
            }
            _ => {
                assert_eq!(body["payload"]["order_id"], json!(id), "{what}: {body}");
                assert_eq!(body["messageVersion"], json!("1.0"), "{body}");
                assert_eq!(body["partitionKey"], json!(id), "{body}");
            }
        }
    }
    Ok(())
}

/// `sagactl publish --envelope` wraps a sample as a service would; inventory-svc reads each.
#[tokio::test(flavor = "multi_thread")]
async fn sagactl_publishes_in_every_envelope_and_each_is_read() -> anyhow::Result<()> {
    let env = TestEnv::with_stock("sagactl-envelopes", "burger=10").await?;
    let inv = env.start(ServiceKind::Inventory).await?;
    inv.wait_ready(T).await?;
    let tap = "sagactl-envelopes-tap";
    env.tap(tap, &["order.placed"]).await?;
    let envelopes = ["binary", "standard-message", "go-event", "cloudevents"];
    for envelope in envelopes {
        let out = env
            .sagactl(
                &[],
                &["publish", "--sample", "order", "--envelope", envelope],
            )
            .await?;
        anyhow::ensure!(
            out.status.success(),
            "{envelope}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    env.until_stock("one burger per envelope", "burger", 6, T)
        .await?;
    let sent = take(&env, tap, envelopes.len(), "the four messages").await?;
    let shapes: Vec<bool> = sent
        .iter()
        .map(|m| m.header("cloudEvents_specversion").is_some())
        .collect();
    assert_eq!(
        shapes.iter().filter(|binary| **binary).count(),
        1,
        "only the binary one has CloudEvents headers: {shapes:?}"
    );
    assert!(env.take_all(&env.topology.dlq_queue).await?.is_empty());
    Ok(())
}
