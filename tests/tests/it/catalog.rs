//! The catalog (issue 20): inventory-svc owns the products and announces them; order-svc keeps a
//! replica fed only by those events, in its own Redis keys.
//!
//! - A raw consumer bound to the product events sees the start-up snapshot (one per product),
//!   then `product.stock.updated` for every change, `product.stock.low` exactly once when the
//!   threshold is crossed and `product.stock.out` exactly once when the stock runs out.
//! - A price set over `PUT /products/{item}` is announced (`product.price.changed`), reaches
//!   order-svc's `GET /products` and `Replica::lookup`, and survives a restart of order-svc.
//! - Bad bodies answer 4xx JSON and change nothing. (Callers off the machine:
//!   security.rs, `the_catalog_changes_need_the_admin_token_like_stock`.)

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use harness::broker::Taken;
use harness::{ServiceKind, TestEnv, eventually};
use order_svc::replica::Replica;
use saga_domain::events::EventType;
use saga_domain::ids::Item;
use saga_domain::order::OrderStatus;
use saga_domain::product::{ProductChange, ProductEvent};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);
const OBSERVER: &str = "catalog-observer";

/// Two products: widget (10 units, threshold 30 % = 3) and gadget (3 units, threshold 1).
async fn env(test: &str) -> anyhow::Result<TestEnv> {
    let mut env = TestEnv::with_stock(test, "widget=10,gadget=3").await?;
    env.service_env
        .insert("CATALOG_PRICES".into(), "widget=250,gadget=999".into());
    env.service_env
        .insert("CATALOG_LOW_PERCENT".into(), "30".into());
    // Bound before any service starts: the start-up snapshot cannot slip past it.
    env.tap(OBSERVER, &["product.#"]).await?;
    Ok(env)
}

/// Every product event the observer has seen so far (kept across calls).
struct Observed(Mutex<Vec<Taken>>);

impl Observed {
    fn new() -> Self {
        Self(Mutex::new(Vec::new()))
    }

    async fn take(&self, env: &TestEnv) -> Result<Vec<(EventType, ProductEvent)>, String> {
        let more = env.take_all(OBSERVER).await.map_err(|e| format!("{e:#}"))?;
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.extend(more);
        all.iter()
            .map(|m| {
                let kind = EventType::from_routing_key(&m.routing_key)
                    .ok_or_else(|| format!("routing key {} is no event", m.routing_key))?;
                ProductEvent::from_body(kind, &m.body)
                    .map(|e| (kind, e))
                    .map_err(|e| format!("{}: {e}", m.routing_key))
            })
            .collect()
    }

    fn message_ids(&self) -> Vec<Option<String>> {
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        all.iter().map(Taken::message_id).collect()
    }
}

fn count(events: &[(EventType, ProductEvent)], kind: EventType, item: &str) -> usize {
    events
        .iter()
        .filter(|(k, e)| *k == kind && e.item.as_str() == item)
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn product_events_announce_the_snapshot_and_each_crossing_once() -> anyhow::Result<()> {
    let env = env("catalog-events").await?;
    let observed = Observed::new();
    let (order, _inventory, _notification) = env.start_all_in_process().await?;

    // The start-up snapshot: one per product, as seeded.
    let snapshots = eventually("the start-up snapshot", T, || async {
        let events = observed.take(&env).await?;
        let snapshots: BTreeMap<String, ProductChange> = events
            .into_iter()
            .filter(|(k, _)| *k == EventType::ProductSnapshot)
            .map(|(_, e)| (e.item.to_string(), e.change))
            .collect();
        (snapshots.len() == 2)
            .then_some(snapshots.clone())
            .ok_or_else(|| format!("{snapshots:?}"))
    })
    .await?;
    let ProductChange::Snapshot {
        name,
        price,
        stock,
        low_threshold,
    } = &snapshots["widget"]
    else {
        anyhow::bail!("not a snapshot: {:?}", snapshots["widget"]);
    };
    assert_eq!(
        (
            name.as_str(),
            price.to_string().as_str(),
            *stock,
            *low_threshold
        ),
        ("Widget", "2.50 EUR", 10, 3)
    );

    // Ten orders of one widget, concurrently: 10 → 0, crossing 3 once and reaching 0 once.
    let placed = futures_util::future::join_all((0..10).map(|_| env.place(&order, "widget", 1)))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    for id in &placed {
        env.wait_status(&order, id, OrderStatus::Confirmed, T)
            .await?;
    }
    // One more finds nothing left: a failure moves no stock and announces no stock event.
    let late = env.place(&order, "widget", 1).await?;
    env.wait_status(&order, &late, OrderStatus::Failed, T)
        .await?;
    env.until_depth("every order handled", &env.topology.inventory_queue, 0, T)
        .await?;

    let events = eventually("a stock event for each of the ten changes", T, || async {
        let events = observed.take(&env).await?;
        let got = (
            count(&events, EventType::ProductStockUpdated, "widget"),
            count(&events, EventType::ProductStockLow, "widget"),
            count(&events, EventType::ProductStockOut, "widget"),
        );
        (got == (10, 1, 1))
            .then(|| events.clone())
            .ok_or_else(|| format!("(updated, low, out) = {got:?}"))
    })
    .await?;
    let low = events
        .iter()
        .find(|(k, _)| *k == EventType::ProductStockLow)
        .map(|(_, e)| e.change.clone());
    assert_eq!(
        low,
        Some(ProductChange::StockLow {
            stock: 2,
            threshold: 3
        }),
        "announced by the order that took the stock from 3 to 2"
    );
    // The highest seq of widget's stock events carries the final stock, whichever order's it
    // is (its `previous` is that order's own before): what a replica keeps.
    let (last_seq, last) = events
        .iter()
        .filter(|(k, e)| *k == EventType::ProductStockUpdated && e.item.as_str() == "widget")
        .max_by_key(|(_, e)| e.seq)
        .map(|(_, e)| (e.seq, e.change.clone()))
        .unzip();
    assert!(
        matches!(last, Some(ProductChange::StockUpdated { stock: 0, .. })),
        "{last:?}"
    );
    assert_eq!(count(&events, EventType::ProductStockUpdated, "gadget"), 0);
    let ids = observed.message_ids();
    let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(
        distinct.len(),
        ids.len(),
        "every event has an id of its own"
    );
    assert!(ids.iter().all(Option::is_some));

    // The replica followed: widget out, and low, from the newest stock event (ten updates
    // arriving together are written as fewer: replica::coalesce).
    eventually("order-svc's replica shows widget out", T, || async {
        let listed = env
            .get_json(&order.url("/products"))
            .await
            .map_err(|e| format!("{e:#}"))?;
        let widget = product(&listed, "widget");
        (widget["stock"] == 0
            && widget["out"] == true
            && widget["low"] == true
            && widget["stock_seq"].as_u64() == last_seq)
            .then_some(())
            .ok_or_else(|| format!("{listed}"))
    })
    .await?;

    // Setting the stock by hand announces it too, through the catalog's outbox.
    let inventory = &_inventory;
    let answer = env
        .http()
        .put(inventory.url("/stock/widget"))
        .json(&json!({"available": 5}))
        .send()
        .await?;
    assert_eq!(answer.status().as_u16(), 200);
    eventually("the restock announced", T, || async {
        let events = observed.take(&env).await?;
        events
            .iter()
            .any(|(_, e)| {
                e.change
                    == ProductChange::StockUpdated {
                        stock: 5,
                        previous: 0,
                    }
            })
            .then_some(())
            .ok_or_else(|| "not yet".to_owned())
    })
    .await?;
    Ok(())
}

/// One product of a `GET /products` answer.
fn product<'a>(listed: &'a Value, item: &str) -> &'a Value {
    listed["products"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["item"] == item))
        .unwrap_or(&Value::Null)
}

/// inventory-svc's `GET /products` once the catalog is seeded and its start-up snapshot
/// written (each product's seq is 1 then): healthy is not yet seeded (the catalog is seeded
/// once Redis answers).
async fn until_seeded(env: &TestEnv, inventory: &impl harness::Endpoint) -> anyhow::Result<Value> {
    let url = inventory.url("/products");
    eventually("the catalog seeded", T, || async {
        let listed = env.get_json(&url).await.map_err(|e| format!("{e:#}"))?;
        let announced = ["widget", "gadget"]
            .iter()
            .all(|item| product(&listed, item)["seq"].as_u64() >= Some(1));
        (product(&listed, "widget")["unit_price"] == 250 && announced)
            .then(|| listed.clone())
            .ok_or_else(|| format!("{listed}"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_price_change_reaches_the_replica_which_survives_a_restart() -> anyhow::Result<()> {
    let env = env("catalog-price").await?;
    let observed = Observed::new();
    let inventory = env.start(ServiceKind::Inventory).await?;
    let mut order = env.start(ServiceKind::Order).await?;
    until_seeded(&env, &inventory).await?;

    let answer = env
        .http()
        .put(inventory.url("/products/widget"))
        .json(&json!({"unit_price": 300}))
        .send()
        .await?;
    assert_eq!(answer.status().as_u16(), 200);
    let body: Value = answer.json().await?;
    assert_eq!(body["product"]["unit_price"], 300, "{body}");
    assert_eq!(body["changed"], true, "{body}");

    let changed = eventually("product.price.changed", T, || async {
        let events = observed.take(&env).await?;
        events
            .into_iter()
            .find(|(k, _)| *k == EventType::ProductPriceChanged)
            .map(|(_, e)| e)
            .ok_or_else(|| "not yet".to_owned())
    })
    .await?;
    let ProductChange::PriceChanged { old, new, .. } = &changed.change else {
        anyhow::bail!("{changed:?}");
    };
    assert_eq!((old.amount_minor(), new.amount_minor()), (250, 300));

    let shown = |what: &'static str| {
        let env = &env;
        let url = order.url("/products");
        eventually(what, T, move || {
            let url = url.clone();
            async move {
                let listed = env.get_json(&url).await.map_err(|e| format!("{e:#}"))?;
                let widget = product(&listed, "widget");
                (widget["unit_price"] == 300 && widget["age_ms"].is_u64())
                    .then(|| listed.clone())
                    .ok_or_else(|| format!("{listed}"))
            }
        })
    };
    let before = shown("the new price in order-svc's replica").await?;
    assert_eq!(product(&before, "gadget")["unit_price"], 999, "{before}");
    assert_eq!(product(&before, "widget")["stock"], 10, "{before}");

    // The lookup an order's lines will copy their name and price from.
    let redis = saga_platform::redis::store::connect(&env.redis_url)?;
    let replica = Replica::new(redis, env.keys.clone());
    let items = ["widget", "caviar"].map(|i| Item::parse(i).unwrap());
    let found = replica.lookup(&items).await?;
    let widget = found[0].1.as_ref().expect("widget is known");
    assert_eq!(
        (widget.name.as_str(), widget.price.to_string()),
        ("Widget", "3.00 EUR".to_owned())
    );
    assert_eq!(found[1], (items[1].clone(), None), "unknown to the replica");

    // Restarted, order-svc answers from its own keys before any new event reaches it.
    order.restart().await?;
    let listed = env.get_json(&order.url("/products")).await?;
    assert_eq!(product(&listed, "widget")["unit_price"], 300, "{listed}");
    assert_eq!(product(&listed, "gadget")["name"], "Gadget", "{listed}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_product_bodies_answer_4xx_json_and_change_nothing() -> anyhow::Result<()> {
    let env = env("catalog-bad").await?;
    let inventory = env.start(ServiceKind::Inventory).await?;
    let before = until_seeded(&env, &inventory).await?;

    let put = |path: &str, body: &str| {
        env.http()
            .put(inventory.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
    };
    for (path, body, why) in [
        ("/products/widget", "not json", "not valid JSON"),
        ("/products/widget", "[1]", "not an object"),
        ("/products/widget", "{}", "nothing to change"),
        ("/products/widget", r#"{"unit_price": -1}"#, "unit_price"),
        ("/products/widget", r#"{"unit_price": 2.5}"#, "unit_price"),
        ("/products/widget", r#"{"unit_price": "300"}"#, "unit_price"),
        (
            "/products/widget",
            r#"{"unit_price": 100000001}"#,
            "unit_price",
        ),
        ("/products/widget", r#"{"currency": "eur"}"#, "currency"),
        ("/products/widget", r#"{"name": ""}"#, "name"),
        ("/products/widget", r#"{"name": "a\nb"}"#, "name"),
        (
            "/products/widget",
            r#"{"low_threshold": -3}"#,
            "low_threshold",
        ),
        ("/products/a:b", r#"{"unit_price": 1}"#, "item"),
        ("/products/caviar", r#"{"unit_price": 1}"#, "no product yet"),
    ] {
        let answer = put(path, body).await?;
        let status = answer.status().as_u16();
        let text = answer.text().await?;
        assert!(
            (400..500).contains(&status),
            "{path} {body}: {status} {text}"
        );
        let error: Value = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{path} {body}: not JSON ({e}): {text}"))?;
        let said = error["error"].as_str().unwrap_or_default();
        assert!(said.contains(why), "{path} {body}: {said}");
    }
    let after = env.get_json(&inventory.url("/products")).await?;
    assert_eq!(before, after, "nothing changed");

    // Adding a product needs a name and a price; then it is one.
    let added = put(
        "/products/caviar",
        r#"{"name": "Caviar", "unit_price": 12000}"#,
    )
    .await?;
    assert_eq!(added.status().as_u16(), 201);
    let listed = env.get_json(&inventory.url("/products")).await?;
    assert_eq!(product(&listed, "caviar")["currency"], "EUR", "{listed}");
    // The same again changes nothing and announces nothing.
    let again = put("/products/caviar", r#"{"unit_price": 12000}"#).await?;
    let again: Value = again.json().await?;
    assert_eq!(again["changed"], false, "{again}");
    Ok(())
}

/// The product snapshot (issue 20): an order's lines keep the name and unit price they had when
/// it was placed. A price change after it never changes it; the next order gets the new price,
/// even from an order-svc restarted in between (its replica is its own keys); an item the
/// replica does not know is still taken (201) and decided by inventory, its price unknown.
#[tokio::test(flavor = "multi_thread")]
async fn an_order_keeps_the_prices_it_was_placed_with() -> anyhow::Result<()> {
    let env = env("catalog-snapshot").await?;
    let inventory = env.start(ServiceKind::Inventory).await?;
    let mut order = env.start(ServiceKind::Order).await?;
    let _notification = env.start(ServiceKind::Notification).await?;
    until_seeded(&env, &inventory).await?;
    let replica_says = |price: i64| {
        let env = &env;
        let url = order.url("/products");
        eventually("the replica's widget price", T, move || {
            let url = url.clone();
            async move {
                let listed = env.get_json(&url).await.map_err(|e| format!("{e:#}"))?;
                (product(&listed, "widget")["unit_price"] == price)
                    .then_some(())
                    .ok_or_else(|| format!("{listed}"))
            }
        })
    };
    replica_says(250).await?;
    let place = |order: &harness::ServiceProcess, body: Value| {
        let request = env.http().post(order.url("/order")).json(&body);
        async move {
            let answer = request.send().await?;
            anyhow::ensure!(answer.status() == 201, "POST /order: {}", answer.status());
            Ok::<String, anyhow::Error>(
                answer.json::<Value>().await?["order_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        }
    };

    // Two widgets and a gadget: 2 × 2.50 + 9.99.
    let first = place(
        &order,
        json!({"items": [{"item": "widget", "qty": 2}, {"item": "gadget", "qty": 1}]}),
    )
    .await?;
    let shown = env.wait_final(&order, &first, T).await?;
    assert_eq!(shown.order.status, OrderStatus::Confirmed, "{shown:?}");
    let first_view = env.get_json(&order.url(&format!("/order/{first}"))).await?;
    assert_eq!(first_view["lines"][0]["unit_price"], 250, "{first_view}");
    assert_eq!(first_view["lines"][0]["name"], "Widget", "{first_view}");
    assert_eq!(first_view["lines"][1]["unit_price"], 999, "{first_view}");
    assert_eq!(
        (
            first_view["total"].as_i64(),
            first_view["currency"].as_str()
        ),
        (Some(1499), Some("EUR"))
    );

    // The price changes; order-svc restarts; the first order keeps its price, the next one
    // (a lab order of one line) gets the new one.
    let answer = env
        .http()
        .put(inventory.url("/products/widget"))
        .json(&json!({"unit_price": 300}))
        .send()
        .await?;
    assert_eq!(answer.status().as_u16(), 200);
    replica_says(300).await?;
    order.restart().await?;
    let again = env.get_json(&order.url(&format!("/order/{first}"))).await?;
    assert_eq!(again["lines"][0]["unit_price"], 250, "kept: {again}");
    assert_eq!(again["total"], 1499, "{again}");
    let second = place(&order, json!({"item": "widget", "qty": 1})).await?;
    let second_view = env
        .get_json(&order.url(&format!("/order/{second}")))
        .await?;
    assert_eq!(
        (
            second_view["item"].as_str(),
            second_view["lines"][0]["unit_price"].as_i64()
        ),
        (Some("widget"), Some(300)),
        "{second_view}"
    );
    assert_eq!(second_view["total"], 300, "{second_view}");

    // Unknown to the replica: accepted, its price unknown, failed by inventory as ever.
    let unknown = place(
        &order,
        json!({"items": [{"item": "widget", "qty": 1}, {"item": "caviar", "qty": 1}]}),
    )
    .await?;
    let decided = env.wait_final(&order, &unknown, T).await?;
    assert_eq!(decided.order.status, OrderStatus::Failed, "{decided:?}");
    let unknown_view = env
        .get_json(&order.url(&format!("/order/{unknown}")))
        .await?;
    assert_eq!(
        unknown_view["lines"][1]["unit_price"],
        Value::Null,
        "{unknown_view}"
    );
    assert_eq!(
        unknown_view.get("total"),
        None,
        "no total without every price"
    );
    assert!(
        decided
            .order
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("unknown item \"caviar\"")),
        "{decided:?}"
    );
    Ok(())
}
