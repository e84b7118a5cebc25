//! Invariants under real faults: kill -9, broker-side disconnects, a broker restart, a Redis
//! outage, competing consumers. Each test breaks only what it started, runs a few hundred
//! orders, and ends with the invariant checker (`sagactl check`'s library function):
//! every order final, stock conserved, at most one reservation per order and one notification
//! per (order, outcome), no valid message in the DLQ.
//!
//! Fault timing is random but seeded; the seed is printed (rerun with `FAULT_SEED=...`).

use std::time::Duration;

use harness::load::{LoadReport, fault_rng, place_orders, place_orders_paced};
use harness::private::{PrivateBroker, PrivateRedis, close_all_connections};
use harness::{ServiceKind, TestEnv, eventually};
use saga_domain::events::EventType;
use saga_domain::order::OrderStatus;

const ORDERS: usize = 300;
const STOCK: usize = 150;
const SETTLE: Duration = Duration::from_secs(60);

/// Run the checker and fail the test with every violation it found.
async fn assert_invariants(env: &TestEnv, expected_confirmed: Option<usize>) -> anyhow::Result<()> {
    let report = sagactl::check::check(
        &env.redis_url,
        &env.prefix,
        &env.amqp_url,
        &env.topology,
        SETTLE,
    )
    .await?;
    eprintln!("{}: {report:?}", env.name);
    anyhow::ensure!(
        report.violations.is_empty(),
        "invariants violated: {:#?}",
        report.violations
    );
    // Nothing lost at the last hop either: every order's outcome is notified (exactly once,
    // which the checker verified), once any claim left by a killed sender has expired.
    eventually("a notification for every order", SETTLE, || async {
        let sent = env.notification_count().await.map_err(|e| e.to_string())?;
        if sent == report.orders {
            Ok(())
        } else {
            Err(format!("{sent} of {}", report.orders))
        }
    })
    .await?;
    if let Some(expected) = expected_confirmed {
        let confirmed = report
            .by_status
            .get(OrderStatus::Confirmed.as_str())
            .copied()
            .unwrap_or(0);
        anyhow::ensure!(
            confirmed == expected,
            "expected exactly {expected} confirmed, got {confirmed}"
        );
    }
    Ok(())
}

/// A run of `ORDERS` unit orders, paced to last a few seconds so faults land mid-run.
fn load(base: String) -> tokio::task::JoinHandle<LoadReport> {
    let pace = Duration::from_millis(30);
    tokio::spawn(place_orders_paced(
        base,
        "widget",
        ORDERS,
        4,
        Duration::from_secs(60),
        pace,
    ))
}

/// kill -9 one service five times at random moments during a run, restarting it each time.
async fn survive_kill9(victim: ServiceKind, test: &str) -> anyhow::Result<()> {
    let env = TestEnv::with_stock(test, &format!("widget={STOCK}")).await?;
    let (mut order, mut inv, mut notif) = env.start_all().await?;
    let load = load(order.url(""));
    let mut rng = fault_rng(test);
    let mut kills = 0;
    // At least five kills, and keep going while orders are still arriving.
    while kills < 5 || !load.is_finished() {
        tokio::time::sleep(Duration::from_millis(rng.u64(100..700))).await;
        let svc = match victim {
            ServiceKind::Order => &mut order,
            ServiceKind::Inventory => &mut inv,
            ServiceKind::Notification => &mut notif,
        };
        svc.kill9().await;
        kills += 1;
        tokio::time::sleep(Duration::from_millis(rng.u64(0..300))).await;
        svc.restart().await?;
    }
    let report = load.await?;
    eprintln!(
        "{test}: {kills} kills; {} orders accepted, {} attempts refused while down",
        report.accepted.len(),
        report.refused
    );
    assert_eq!(
        report.accepted.len(),
        ORDERS,
        "every order is eventually accepted"
    );
    assert_invariants(&env, Some(STOCK)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_inventory_loses_and_doubles_nothing() -> anyhow::Result<()> {
    survive_kill9(ServiceKind::Inventory, "kill-inventory").await
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_order_svc_loses_and_doubles_nothing() -> anyhow::Result<()> {
    survive_kill9(ServiceKind::Order, "kill-order").await
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_notification_loses_and_doubles_nothing() -> anyhow::Result<()> {
    survive_kill9(ServiceKind::Notification, "kill-notification").await
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_closing_every_connection_is_survived_without_restart() -> anyhow::Result<()> {
    let env = TestEnv::with_stock("close-conns", &format!("widget={STOCK}")).await?;
    let (order, inv, notif) = env.start_all().await?;
    let pids = [order.pid(), inv.pid(), notif.pid()];
    let load = load(order.url(""));
    let mut rng = fault_rng("close-conns");
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(rng.u64(200..800))).await;
        close_all_connections(&env.vhost)?;
    }
    let report = load.await?;
    assert_eq!(report.accepted.len(), ORDERS);
    assert_invariants(&env, Some(STOCK)).await?;
    assert_eq!(
        pids,
        [order.pid(), inv.pid(), notif.pid()],
        "recovered without a restart"
    );
    for svc in [&order, &inv, &notif] {
        assert!(
            svc.log_contains("lost the broker"),
            "{:?} noticed the closed connection",
            svc.kind
        );
    }
    for svc in [&order, &inv, &notif] {
        let ready = eventually("ready again", Duration::from_secs(20), || async {
            match svc.ready_status().await {
                Some(200) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
        ready.await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_restart_is_survived_and_orders_taken_meanwhile_complete() -> anyhow::Result<()> {
    let broker = PrivateBroker::start().await?;
    let env = TestEnv::on_private("broker-restart", Some(&broker.url()), None)?;
    let mut env = env;
    env.service_env
        .insert("INITIAL_STOCK".into(), format!("widget={STOCK}"));
    let (order, inv, _notif) = env.start_all().await?;
    let first = place_orders(order.url(""), "widget", 100, 4, Duration::from_secs(30)).await;
    assert_eq!(first.accepted.len(), 100);

    broker.stop_app()?;
    eventually(
        "inventory-svc not ready while the broker is down",
        Duration::from_secs(20),
        || async {
            match inv.ready_status().await {
                Some(503) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await?;
    // The outbox takes orders while the broker is away.
    let during = place_orders(order.url(""), "widget", 100, 4, Duration::from_secs(10)).await;
    assert_eq!(
        during.accepted.len(),
        100,
        "POST /order answers 201 with the broker down"
    );

    broker.start_app().await?;
    let after = place_orders(order.url(""), "widget", 100, 4, Duration::from_secs(30)).await;
    assert_eq!(after.accepted.len(), 100);
    assert_invariants(&env, Some(STOCK)).await?;
    for id in &during.accepted {
        let o = env.wait_final(&order, id, Duration::from_secs(5)).await?;
        assert!(o.order.status == OrderStatus::Confirmed || o.order.status == OrderStatus::Failed);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_outage_is_retried_not_dead_lettered() -> anyhow::Result<()> {
    let redis = PrivateRedis::start().await?;
    let mut env = TestEnv::new("redis-outage").await?;
    env.redis_url = redis.url();
    env.service_env
        .insert("INITIAL_STOCK".into(), format!("widget={STOCK}"));
    let (order, inv, _notif) = env.start_all().await?;
    let load = load(order.url(""));
    tokio::time::sleep(Duration::from_millis(400)).await;

    redis.down().await?;
    eventually(
        "/ready 503 while Redis is down",
        Duration::from_secs(10),
        || async {
            match inv.ready_status().await {
                Some(503) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await?;
    let r = env.post_order(&order, "widget", 1).await?;
    assert_eq!(r.0, 503, "POST /order with Redis down: {:?}", r.1);
    assert!(r.1["error"].is_string());
    // Stay down for a few seconds: consumers must back off, not spin or dead-letter.
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.up().await?;
    eventually(
        "/ready 200 after Redis returns",
        Duration::from_secs(20),
        || async {
            match inv.ready_status().await {
                Some(200) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await?;

    let report = load.await?;
    assert_eq!(report.accepted.len(), ORDERS);
    assert_invariants(&env, Some(STOCK)).await?;
    assert_eq!(
        env.depth(&env.topology.dlq_queue).await?,
        0,
        "nothing dead-lettered"
    );
    let retry_lines = inv
        .log()
        .iter()
        .filter(|l| l.contains("transient failure"))
        .count();
    assert!(
        retry_lines < 200,
        "log volume stays bounded during an outage ({retry_lines} retry lines)"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn competing_consumers_share_the_work_without_doubles() -> anyhow::Result<()> {
    let env = TestEnv::with_stock("competing", &format!("widget={STOCK}")).await?;
    let order = env.start(ServiceKind::Order).await?;
    let prefetch = [("RABBITMQ_PREFETCH", "4")];
    let inv_a = env.start_with(ServiceKind::Inventory, &prefetch).await?;
    let inv_b = env.start_with(ServiceKind::Inventory, &prefetch).await?;
    let notif_a = env.start_with(ServiceKind::Notification, &prefetch).await?;
    let notif_b = env.start_with(ServiceKind::Notification, &prefetch).await?;
    let report = place_orders(order.url(""), "widget", ORDERS, 8, Duration::from_secs(30)).await;
    assert_eq!(report.accepted.len(), ORDERS);
    assert_invariants(&env, Some(STOCK)).await?;
    let worked = |svc: &harness::ServiceProcess, needle: &str| {
        svc.log().iter().filter(|l| l.contains(needle)).count()
    };
    let (a, b) = (worked(&inv_a, "order_id="), worked(&inv_b, "order_id="));
    assert!(
        a > 0 && b > 0,
        "both inventory instances got work ({a} / {b})"
    );
    let (a, b) = (worked(&notif_a, "notified:"), worked(&notif_b, "notified:"));
    assert!(
        a > 0 && b > 0,
        "both notification instances got work ({a} / {b})"
    );
    Ok(())
}

/// A private RabbitMQ node (so its alarms touch no other test), the three services on it with
/// 1,000 widgets in stock, order-svc with `order_env` too, and one order through, so the saga
/// is known to flow before the test breaks anything.
async fn on_a_broker_of_our_own(
    test: &str,
    order_env: &[(&str, &str)],
) -> anyhow::Result<(PrivateBroker, TestEnv, [harness::ServiceProcess; 3])> {
    let broker = PrivateBroker::start().await?;
    let mut env = TestEnv::on_private(test, Some(&broker.url()), None)?;
    env.service_env
        .insert("INITIAL_STOCK".into(), "widget=1000".into());
    let order = env.start_with(ServiceKind::Order, order_env).await?;
    let inv = env.start(ServiceKind::Inventory).await?;
    let notif = env.start(ServiceKind::Notification).await?;
    let first = env.place(&order, "widget", 1).await?;
    env.wait_final(&order, &first, Duration::from_secs(20))
        .await?;
    Ok((broker, env, [order, inv, notif]))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blocked_broker_pushes_back_on_post_order_instead_of_queueing_forever()
-> anyhow::Result<()> {
    let (broker, env, [order, _inv, _notif]) =
        on_a_broker_of_our_own("backpressure", &[("OUTBOX_HIGH_WATER", "20")]).await?;

    // A memory alarm makes the broker block every publisher: the relay cannot get rid of the
    // outbox, so the front door must start saying "busy" rather than queue without end.
    broker.set_memory_alarm(true)?;
    let busy = eventually(
        "POST /order answers 503 busy",
        Duration::from_secs(30),
        || async {
            match env.post_order(&order, "widget", 1).await {
                Ok((503, body)) => Ok(body),
                Ok((status, _)) => Err(format!("still {status}")),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await?;
    assert!(
        busy["error"].as_str().unwrap_or("").contains("busy"),
        "{busy}"
    );
    assert!(busy["outbox_depth"].as_u64().unwrap_or(0) >= 20, "{busy}");

    broker.set_memory_alarm(false)?;
    let after = env.place(&order, "widget", 1).await?;
    env.wait_final(&order, &after, Duration::from_secs(30))
        .await?;
    assert_invariants(&env, None).await
}

/// The relay queues a whole batch's publishes before awaiting any (one socket write for many,
/// instead of two thread hand-offs per message): they must still leave in the outbox's order,
/// or an order's cancel could overtake its OrderPlaced. 300 orders wait in the outbox behind a
/// memory alarm, so that they go out in full batches; a tap sees them in the order they were
/// placed (the stream's order: they were placed one after another).
#[tokio::test(flavor = "multi_thread")]
async fn the_relay_publishes_full_batches_in_the_outboxs_order() -> anyhow::Result<()> {
    const ORDERS: usize = 300;
    let (broker, env, [order, _inv, _notif]) =
        on_a_broker_of_our_own("relay-order", &[("OUTBOX_HIGH_WATER", "1000")]).await?;
    let tap = "relay-order-tap";
    env.tap(tap, &[EventType::OrderPlaced.routing_key()])
        .await?;

    broker.set_memory_alarm(true)?;
    let mut placed = Vec::with_capacity(ORDERS);
    for _ in 0..ORDERS {
        placed.push(env.place(&order, "widget", 1).await?);
    }
    broker.set_memory_alarm(false)?;
    env.until_outbox_empty(Duration::from_secs(60)).await?;

    // A rewind may send an entry twice; what counts is where each order first appears.
    let mut seen = std::collections::HashSet::new();
    let published: Vec<String> = env
        .take_all(tap)
        .await?
        .iter()
        .filter_map(|m| saga_domain::wire::peek_order_id(&m.body))
        .filter(|id| seen.insert(id.clone()))
        .collect();
    assert_eq!(published.len(), ORDERS, "every order published");
    let moved = published
        .iter()
        .zip(&placed)
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(
        moved, 0,
        "{moved} orders published out of the outbox's order"
    );
    assert_invariants(&env, None).await
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_order_svc_even_while_the_broker_blocks_publishers() -> anyhow::Result<()> {
    let (broker, env, [mut order, _inv, _notif]) =
        on_a_broker_of_our_own("blocked-stop", &[]).await?;

    // Blocked: the relay's publishes are never confirmed, so these stay in the outbox.
    broker.set_memory_alarm(true)?;
    let mut waiting = Vec::new();
    for _ in 0..5 {
        waiting.push(env.place(&order, "widget", 1).await?);
    }
    let status = order.terminate(Duration::from_secs(20)).await?;
    assert!(status.success(), "order-svc exited with {status}");

    // Nothing was lost by stopping: the events are still in the outbox and go out once the
    // broker takes publishes again.
    broker.set_memory_alarm(false)?;
    order.restart().await?;
    for id in &waiting {
        let o = env.wait_final(&order, id, Duration::from_secs(30)).await?;
        assert_eq!(o.order.status, OrderStatus::Confirmed, "{o:?}");
    }
    assert_invariants(&env, None).await
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_of_redis_started_with_the_shipped_settings_loses_no_accepted_order()
-> anyhow::Result<()> {
    // Started through scripts/redis-server.sh, the path the demo's Redis takes: AOF, everysec.
    let redis = PrivateRedis::start().await?;
    let mut env = TestEnv::new("redis-kill9").await?;
    env.redis_url = redis.url();
    env.service_env
        .insert("INITIAL_STOCK".into(), format!("widget={STOCK}"));
    let (order, _inv, _notif) = env.start_all().await?;
    let load = load(order.url(""));
    let mut rng = fault_rng("redis-kill9");
    tokio::time::sleep(Duration::from_millis(rng.u64(800..2500))).await;

    // No shutdown, no last flush: what a crash or the OOM killer does.
    redis.kill9().await?;
    tokio::time::sleep(Duration::from_millis(rng.u64(500..2000))).await;
    redis.up().await?;

    let report = load.await?;
    assert_eq!(
        report.accepted.len(),
        ORDERS,
        "every order is eventually accepted"
    );
    // Every 201 is still there (the checker below only sees orders Redis still has) and final.
    for id in &report.accepted {
        let o = env.wait_final(&order, id, SETTLE).await?;
        assert!(
            o.order.status == OrderStatus::Confirmed || o.order.status == OrderStatus::Failed,
            "{o:?}"
        );
    }
    assert_invariants(&env, Some(STOCK)).await?;
    env.until_outbox_empty(SETTLE).await?;
    assert_eq!(
        env.depth(&env.topology.dlq_queue).await?,
        0,
        "nothing dead-lettered"
    );
    Ok(())
}
