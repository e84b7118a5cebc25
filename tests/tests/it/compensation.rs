//! Cancellation with compensation, the order timeline, metrics, correlation and sinks.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use harness::broker::consume_n;
use harness::http::metric;
use harness::orders::timeline;
use harness::{Endpoint, ServiceKind, TestEnv, eventually};
use saga_domain::events::EventType;
use saga_domain::order::OrderStatus;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(20);

async fn cancel(env: &TestEnv, order: &impl Endpoint, id: &str) -> anyhow::Result<(u16, Value)> {
    env.orders(order).cancel(id, "changed my mind").await
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_confirmed_order_releases_its_stock_once() -> anyhow::Result<()> {
    let env = TestEnv::with_stock("cancel-confirmed", "pizza=10").await?;
    let (order, _inv, _notif) = env.start_all_in_process().await?;
    let id = env.place(&order, "pizza", 4).await?;
    env.wait_status(&order, &id, OrderStatus::Confirmed, T)
        .await?;
    assert_eq!(env.stock("pizza").await?, Some(6));

    let (status, body) = cancel(&env, &order, &id).await?;
    assert_eq!(status, 202, "{body}");
    let o = env
        .wait_status(&order, &id, OrderStatus::Cancelled, T)
        .await?;
    assert_eq!(
        env.stock("pizza").await?,
        Some(10),
        "the compensation gave back exactly 4"
    );
    let statuses = timeline(&o);
    assert_eq!(
        statuses,
        [
            OrderStatus::Placed,
            OrderStatus::Confirmed,
            OrderStatus::Cancelling,
            OrderStatus::Cancelled
        ]
    );

    // Cancelling again is a conflict, and nothing moves.
    let (status, body) = cancel(&env, &order, &id).await?;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].is_string());
    // A duplicate OrderCancelled straight on the wire releases nothing more.
    env.publish_bare(
        "order.cancelled",
        json!({ "order_id": id }).to_string().as_bytes(),
    )
    .await?;
    env.until_depth(
        "the duplicate release was handled",
        &env.topology.inventory_queue,
        0,
        T,
    )
    .await?;
    let released = eventually("released notification", T, || async {
        let n = env
            .notifications_for(&id)
            .await
            .map_err(|e| e.to_string())?;
        let r: Vec<Value> = n
            .into_iter()
            .filter(|n| n["outcome"] == "released")
            .collect();
        if r.is_empty() {
            Err("none yet".into())
        } else {
            Ok(r)
        }
    })
    .await?;
    assert_eq!(released.len(), 1, "one notification for the release");
    assert_eq!(env.stock("pizza").await?, Some(10));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_that_overtakes_its_order_never_leaves_stock_reserved() -> anyhow::Result<()> {
    let env = TestEnv::with_stock("cancel-race", "sushi=10").await?;
    let order = env.start(ServiceKind::Order).await?;
    let id = env.place(&order, "sushi", 3).await?;
    let (status, _) = cancel(&env, &order, &id).await?;
    assert_eq!(status, 202, "a placed order can be cancelled");

    // The harder race: the cancel reaches inventory *before* its OrderPlaced. order-svc never
    // sends them in that order (one outbox, one channel), so stage it by hand in a second world.
    let env2 = TestEnv::with_stock("cancel-race-2", "sushi=10").await?;
    env2.publish_bare("order.cancelled", br#"{"order_id":"race-1"}"#)
        .await?;
    env2.publish_bare(
        "order.placed",
        br#"{"order_id":"race-1","item":"sushi","qty":3}"#,
    )
    .await?;
    let _inv2 = env2.start(ServiceKind::Inventory).await?;

    let _inv = env.start(ServiceKind::Inventory).await?;
    let o = env
        .wait_status(&order, &id, OrderStatus::Cancelled, T)
        .await?;
    assert_eq!(o.order.status, OrderStatus::Cancelled);
    assert_eq!(
        env.stock("sushi").await?,
        Some(10),
        "nothing stays reserved for a cancelled order"
    );

    env2.until_depth(
        "the late order is absorbed",
        &env2.topology.inventory_queue,
        0,
        T,
    )
    .await?;
    assert_eq!(
        env2.stock("sushi").await?,
        Some(10),
        "a cancel ahead of its order leaves a tombstone"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_orders_cannot_be_cancelled_and_unknown_ones_are_404() -> anyhow::Result<()> {
    let env = TestEnv::new("cancel-409").await?;
    let (order, _inv, _notif) = env.start_all_in_process().await?;
    let id = env.place(&order, "kebab", 1).await?;
    env.wait_status(&order, &id, OrderStatus::Failed, T).await?;
    let (status, body) = cancel(&env, &order, &id).await?;
    assert_eq!(status, 409);
    assert_eq!(body["status"], OrderStatus::Failed.as_str());
    let (status, _) = cancel(&env, &order, "no-such-order").await?;
    assert_eq!(status, 404);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_timeline_shows_a_redelivery() -> anyhow::Result<()> {
    let env = TestEnv::new("timeline").await?;
    let mut order = env.start(ServiceKind::Order).await?;
    let id = env.place(&order, "burger", 1).await?;
    env.until_depth("OrderPlaced published", &env.topology.inventory_queue, 1, T)
        .await?;
    order.terminate(T).await?;
    let _inv = env.start(ServiceKind::Inventory).await?;
    let status_q = env.topology.order_status_queue.clone();
    env.until_depth("outcome waiting for order-svc", &status_q, 1, T)
        .await?;
    // Take the outcome without acking and drop the connection: the broker requeues it, marked
    // redelivered, exactly as after a consumer crash.
    {
        let conn = env.connect().await?;
        let channel = conn.create_channel().await?;
        let got = channel
            .basic_get(status_q.as_str().into(), Default::default())
            .await?;
        assert!(got.is_some());
        conn.close(200, "crash".into()).await?;
    }
    order.restart().await?;
    let o = env
        .wait_status(&order, &id, OrderStatus::Confirmed, T)
        .await?;
    let last = &o.history[1];
    assert_eq!(last.event, Some(EventType::InventoryReserved));
    assert!(last.redelivered, "{o:?}");
    assert_eq!(last.service, "inventory-svc");
    assert!(!last.event_id.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_move_as_events_flow() -> anyhow::Result<()> {
    let env = TestEnv::new("metrics").await?;
    let (order, inv, _notif) = env.start_all().await?;
    let ids = [
        env.place(&order, "burger", 1).await?,
        env.place(&order, "burger", 1).await?,
    ];
    for id in &ids {
        env.wait_final(&order, id, T).await?;
    }
    env.publish_bare("order.placed", b"not json").await?;
    let text = eventually("inventory metrics", T, || async {
        let text = env
            .get_text(&inv.url("/metrics"))
            .await
            .map_err(|e| e.to_string())?;
        if metric(&text, "saga_dlq_total", &[]) >= 1.0 {
            Ok(text)
        } else {
            Err("no DLQ count yet".into())
        }
    })
    .await?;
    assert_eq!(
        metric(&text, "saga_consumed_total", &["outcome=\"processed\""]),
        2.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "saga_consumed_total", &["outcome=\"dead_lettered\""]),
        1.0
    );
    assert!(metric(&text, "saga_published_total", &["inventory.reserved"]) >= 2.0);
    assert!(metric(&text, "saga_handler_seconds_count", &[]) >= 3.0);
    assert!(text.contains("saga_stock_available{item=\"burger\"}"));

    let text = env.get_text(&order.url("/metrics")).await?;
    assert_eq!(
        metric(
            &text,
            "saga_http_requests_total",
            &["POST /order", "status=\"201\""]
        ),
        2.0,
        "{text}"
    );
    assert!(metric(&text, "saga_published_total", &["order.placed"]) >= 2.0);
    assert!(text.contains("saga_outbox_depth"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_correlation_id_travels_from_the_http_header_to_the_outcome() -> anyhow::Result<()> {
    let env = TestEnv::new("correlation").await?;
    env.tap("tap_outcomes", &["inventory.*"]).await?;
    let (order, _inv, _notif) = env.start_all_in_process().await?;
    let r = env
        .http()
        .post(order.url("/order"))
        .header("x-correlation-id", "class-demo-42")
        .json(&json!({ "item": "salad", "qty": 1, "student_id": "s9" }))
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 201);
    let (_conn, channel) = env.channel().await?;
    let events = tokio::time::timeout(T, consume_n(&channel, "tap_outcomes", 1)).await??;
    assert_eq!(events[0].routing_key, "inventory.reserved");
    assert_eq!(
        events[0]
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.to_string())
            .as_deref(),
        Some("class-demo-42")
    );
    assert_eq!(
        events[0]
            .properties
            .app_id()
            .as_ref()
            .map(|c| c.to_string())
            .as_deref(),
        Some("inventory-svc")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_sink_delivers_exactly_once_despite_two_failures() -> anyhow::Result<()> {
    use warp::Filter;
    let calls = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let (c, b) = (calls.clone(), bodies.clone());
    let hook = warp::post()
        .and(warp::body::json())
        .map(move |body: Value| {
            // Fail the first two calls, as a flaky receiver would.
            if c.fetch_add(1, Ordering::SeqCst) < 2 {
                return warp::reply::with_status(
                    "try later",
                    warp::http::StatusCode::SERVICE_UNAVAILABLE,
                );
            }
            b.lock().unwrap().push(body);
            warp::reply::with_status("ok", warp::http::StatusCode::OK)
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(warp::serve(hook).incoming(listener).run());

    let env = TestEnv::new("webhook").await?;
    let order = env.start(ServiceKind::Order).await?;
    let _inv = env.start(ServiceKind::Inventory).await?;
    let sink = format!("webhook:http://127.0.0.1:{port}/notify");
    let _notif = env
        .start_with(ServiceKind::Notification, &[("NOTIFY_SINK", &sink)])
        .await?;
    let id = env.place(&order, "burger", 2).await?;
    eventually("webhook received the notification", T, || async {
        if bodies.lock().unwrap().is_empty() {
            Err(format!("{} calls", calls.load(Ordering::SeqCst)))
        } else {
            Ok(())
        }
    })
    .await?;
    env.until_notified("notification recorded", &id, 1, T)
        .await?;
    let got = bodies.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "delivered exactly once: {got:?}");
    assert_eq!(got[0]["order_id"], id);
    assert_eq!(got[0]["outcome"], "reserved");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "two failures, then one success"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_timeline_shows_a_dlq_hop_for_the_order() -> anyhow::Result<()> {
    let env = TestEnv::new("timeline-dlq").await?;
    let (order, _inv, _notif) = env.start_all_in_process().await?;
    let id = env.place(&order, "burger", 1).await?;
    env.wait_final(&order, &id, T).await?;
    // A malformed copy of the order (qty as text) is poison: DLQ, noted on the order.
    let poison = json!({ "order_id": id, "item": "burger", "qty": "one" }).to_string();
    env.publish_bare("order.placed", poison.as_bytes()).await?;
    let o = eventually("a DLQ hop on the order", T, || async {
        match env.get_order(&order, &id).await {
            Ok(Some(o)) if !o.dlq_hops.is_empty() => Ok(o),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    let hop = &o.dlq_hops[0];
    assert_eq!(hop.service, "inventory-svc");
    assert!(hop.reason.contains("qty must be an integer"), "{hop:?}");
    assert_eq!(
        o.order.status,
        OrderStatus::Confirmed,
        "a poison copy changes nothing else"
    );
    Ok(())
}
