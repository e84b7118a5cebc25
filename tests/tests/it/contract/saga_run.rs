//! A real run of the saga, observed from the side: a queue of the test's own bound to the
//! exchange with `#` sees every event, and every one must match the schema its routing key and
//! `x-schema-version` name, with the properties and headers docs/asyncapi.yaml describes. Orders
//! of one line and of several go down every path, so every major of every event
//! ([`EventType::majors`]) is published and checked.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use harness::broker::Taken;
use harness::orders::StatusPath;
use harness::{TestEnv, eventually};
use saga_domain::events::EventType;
use saga_domain::order::OrderStatus;
use saga_domain::version::{SCHEMA_VERSION_HEADER, SchemaVersion};
use serde_json::Value;

use super::documents::{asyncapi, headers_of, refusal, resolve, validator};

const T: Duration = Duration::from_secs(30);
/// The observer: bound with `#`, it holds every event published on the exchange.
const OBSERVER: &str = "contract-observer";

/// The (event, major) of an observed message, by its routing key and `x-schema-version`.
fn version_of(message: &Taken) -> Option<(EventType, u16)> {
    let event = EventType::from_routing_key(&message.routing_key)?;
    let version =
        SchemaVersion::of_header(message.header(SCHEMA_VERSION_HEADER).as_deref()).ok()?;
    Some((event, version.major))
}

/// Every (event, major) the saga can publish.
fn every_version() -> BTreeSet<(EventType, u16)> {
    EventType::ALL
        .into_iter()
        .flat_map(|e| e.majors().iter().map(move |&major| (e, major)))
        .collect()
}

/// What is wrong with one observed message, if anything: the event its routing key names, the
/// schema file of the major its header states, its body against that schema, and its
/// properties and headers against the AsyncAPI document.
fn check(
    message: &Taken,
    headers_schema: &jsonschema::Validator,
    schemas: &mut HashMap<(EventType, u16), jsonschema::Validator>,
) -> anyhow::Result<EventType> {
    let key = &message.routing_key;
    let event = EventType::from_routing_key(key)
        .ok_or_else(|| anyhow::anyhow!("routing key {key:?} names no schema"))?;
    let stated = message.header(SCHEMA_VERSION_HEADER);
    anyhow::ensure!(stated.is_some(), "{key}: no {SCHEMA_VERSION_HEADER} header");
    let version = SchemaVersion::of_header(stated.as_deref())?;
    let schema = match schemas.entry((event, version.major)) {
        std::collections::hash_map::Entry::Occupied(known) => known.into_mut(),
        std::collections::hash_map::Entry::Vacant(new) => {
            new.insert(validator(event, version.major)?)
        }
    };
    let body: Value = serde_json::from_slice(&message.body)
        .map_err(|e| anyhow::anyhow!("{key}: the body is not JSON ({e})"))?;
    if let Some(why) = refusal(schema, &body) {
        anyhow::bail!("{key} v{version}: {why}: {body}");
    }

    let headers = headers_of(&message.properties);
    if let Some(why) = refusal(headers_schema, &headers) {
        anyhow::bail!("{key}: headers: {why}: {headers}");
    }
    anyhow::ensure!(
        headers["type"] == event.name(),
        "{key}: type {}",
        headers["type"]
    );
    // The CloudEvents attributes (binary mode) say the same as the rest, when they are sent.
    let said = |attribute: &str| headers.get(format!("cloudEvents_{attribute}")).cloned();
    for (attribute, want) in [
        ("id", headers.get("message_id").cloned()),
        ("type", Some(Value::from(key.as_str()))),
        (
            "dataschema",
            Some(Value::from(event.schema_path(version.major))),
        ),
        (
            "source",
            headers
                .get("app_id")
                .and_then(Value::as_str)
                .map(|app| Value::from(format!("/saga/{app}"))),
        ),
    ] {
        if let Some(got) = said(attribute) {
            anyhow::ensure!(
                Some(&got) == want.as_ref(),
                "{key}: cloudEvents_{attribute} {got}, want {want:?}"
            );
        }
    }
    if let Some(subject) = said("subject") {
        anyhow::ensure!(
            subject == body["order_id"],
            "{key}: cloudEvents_subject {subject}"
        );
    }
    Ok(event)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_message_of_a_saga_run_matches_its_schema() -> anyhow::Result<()> {
    let mut env =
        TestEnv::with_stock("contract-run", "widget=10,gadget=1,burger=5,pizza=5").await?;
    // Two products: their start-up snapshots, and gadget's one unit runs out (low and out).
    env.service_env
        .insert("CATALOG_PRICES".into(), "widget=250,gadget=999".into());
    // Bound before any service starts: nothing published can slip past it.
    env.tap(OBSERVER, &["#"]).await?;
    let (order, inventory, _notif) = env.start_all_in_process().await?;
    let orders = env.orders(&order);

    // A price set by hand: product.price.changed (once the catalog is seeded: until then
    // widget is no product, and the PUT is refused).
    eventually("a price set by hand", T, || async {
        let priced = env
            .http()
            .put(inventory.url("/products/widget"))
            .json(&serde_json::json!({"unit_price": 300}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        (priced.status() == 200)
            .then_some(())
            .ok_or_else(|| format!("PUT /products: {}", priced.status()))
    })
    .await?;
    let last_gadget = env.place(&order, "gadget", 1).await?;
    env.wait_status(&order, &last_gadget, OrderStatus::Confirmed, T)
        .await?;

    // Reserved and confirmed, then shipped and delivered over PATCH.
    let delivered = env.place(&order, "widget", 2).await?;
    env.wait_status(&order, &delivered, OrderStatus::Confirmed, T)
        .await?;
    for status in [OrderStatus::Shipped, OrderStatus::Delivered] {
        let (code, body) = env
            .patch_status(
                &order,
                StatusPath::Order,
                &delivered,
                status,
                Some("contract-tests"),
            )
            .await?;
        anyhow::ensure!(code == 200, "PATCH {status}: {code} {body}");
    }
    // Failed twice: no such item, and more than there is.
    let unknown = env.place(&order, "caviar", 1).await?;
    let too_many = env.place(&order, "widget", 50).await?;
    // Confirmed, then cancelled: its stock is released.
    let cancelled = env.place(&order, "widget", 1).await?;
    env.wait_status(&order, &cancelled, OrderStatus::Confirmed, T)
        .await?;
    let (code, body) = orders.cancel(&cancelled, "changed my mind").await?;
    anyhow::ensure!(code == 202, "cancel: {code} {body}");
    // Several lines (version 2): reserved, then cancelled and released; and failed, with a line
    // short and a line unknown.
    let lines_cancelled = env
        .place_lines(&order, &[("burger", 1), ("pizza", 1)])
        .await?;
    env.wait_status(&order, &lines_cancelled, OrderStatus::Confirmed, T)
        .await?;
    let (code, body) = orders.cancel(&lines_cancelled, "changed my mind").await?;
    anyhow::ensure!(code == 202, "cancel: {code} {body}");
    let lines_failed = env
        .place_lines(&order, &[("burger", 1), ("pizza", 50), ("caviar", 1)])
        .await?;

    for (id, status) in [
        (&delivered, OrderStatus::Delivered),
        (&unknown, OrderStatus::Failed),
        (&too_many, OrderStatus::Failed),
        (&cancelled, OrderStatus::Cancelled),
        (&lines_cancelled, OrderStatus::Cancelled),
        (&lines_failed, OrderStatus::Failed),
    ] {
        env.wait_status(&order, id, status, T).await?;
    }
    // order-svc's own events leave through its outbox; inventory's are out before the order moves.
    env.until_outbox_empty(T).await?;

    let taken = Mutex::new(Vec::new());
    eventually(
        "every event at every major and both failure codes observed",
        T,
        || async {
            let more = env.take_all(OBSERVER).await.map_err(|e| format!("{e:#}"))?;
            let mut taken = taken.lock().unwrap_or_else(|e| e.into_inner());
            taken.extend(more);
            let keys: BTreeSet<&str> = taken.iter().map(|m| m.routing_key.as_str()).collect();
            let codes: BTreeSet<String> = taken
                .iter()
                .filter(|m| m.routing_key == EventType::InventoryFailed.routing_key())
                .filter_map(|m| m.json()["code"].as_str().map(str::to_owned))
                .collect();
            let every_event = EventType::ALL
                .iter()
                .all(|e| keys.contains(e.routing_key()));
            let versions: BTreeSet<(EventType, u16)> =
                taken.iter().filter_map(version_of).collect();
            if every_event && codes.len() == 2 && versions == every_version() {
                Ok(())
            } else {
                Err(format!(
                    "routing keys {keys:?}, failure codes {codes:?}, versions {versions:?}"
                ))
            }
        },
    )
    .await?;
    let taken = taken.into_inner().unwrap_or_else(|e| e.into_inner());

    let doc = asyncapi();
    let headers_schema = resolve(
        &doc,
        &doc["components"]["messageTraits"]["SagaEvent"]["headers"],
    );
    let headers_schema = jsonschema::draft202012::new(headers_schema)
        .map_err(|e| anyhow::anyhow!("EventHeaders of docs/asyncapi.yaml: {e}"))?;
    let mut schemas = HashMap::new();
    let mut seen: BTreeMap<EventType, usize> = BTreeMap::new();
    let mut wrong = Vec::new();
    for message in &taken {
        match check(message, &headers_schema, &mut schemas) {
            Ok(event) => *seen.entry(event).or_default() += 1,
            Err(e) => wrong.push(format!("{e:#}")),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} messages break the contract:\n{}",
        wrong.len(),
        taken.len(),
        wrong.join("\n")
    );
    let missing: Vec<EventType> = EventType::ALL
        .into_iter()
        .filter(|e| !seen.contains_key(e))
        .collect();
    assert!(
        missing.is_empty(),
        "never published: {missing:?} (seen {seen:?})"
    );
    let versions: BTreeSet<(EventType, u16)> = taken.iter().filter_map(version_of).collect();
    assert_eq!(versions, every_version(), "the versions published");
    Ok(())
}
