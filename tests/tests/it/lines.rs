//! Orders of several lines (issue 20): all reserved or none, never oversold, every line given
//! back once on cancel even when inventory-svc is killed, and version 2 of OrderPlaced as the
//! first schema-evolution lesson (a version-1 reader dead-letters it; the upgraded one, after a
//! replay, serves it).

use std::time::Duration;

use harness::{ServiceKind, TestEnv, eventually};
use saga_domain::order::OrderStatus;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

async fn stocks(env: &TestEnv, items: &[&str]) -> anyhow::Result<Vec<Option<i64>>> {
    let mut levels = Vec::new();
    for item in items {
        levels.push(env.stock(item).await?);
    }
    Ok(levels)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_of_several_lines_takes_all_or_nothing() -> anyhow::Result<()> {
    let env = TestEnv::with_stock("lines-all-or-nothing", "burger=10,pizza=1,salad=5").await?;
    let (order, _inv, _notif) = env.start_all_in_process().await?;

    // Pizza is short and caviar unknown: nothing is taken, and both lines are named.
    let short = env
        .place_lines(&order, &[("burger", 2), ("pizza", 5), ("caviar", 1)])
        .await?;
    let o = env.wait_final(&order, &short, T).await?;
    assert_eq!(o.order.status, OrderStatus::Failed, "{o:?}");
    let reason = o.order.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("insufficient stock for pizza: asked for 5, 1 left")
            && reason.contains("1 more line(s) unserved"),
        "{reason}"
    );
    assert_eq!(
        stocks(&env, &["burger", "pizza", "salad"]).await?,
        [Some(10), Some(1), Some(5)],
        "a failed order takes nothing"
    );
    let mut redis = env.redis().await?;
    let unserved: String =
        redis::AsyncCommands::hget(&mut redis, env.keys.reservation(&short), "unserved").await?;
    let unserved: Vec<Value> = serde_json::from_str(&unserved)?;
    assert_eq!(
        unserved,
        [
            json!({"item": "pizza", "qty": 5, "code": "insufficient_stock"}),
            json!({"item": "caviar", "qty": 1, "code": "unknown_item"})
        ]
    );

    // Every line can be served: every line is taken, in one step.
    let fine = env
        .place_lines(&order, &[("burger", 2), ("pizza", 1), ("salad", 5)])
        .await?;
    let o = env.wait_final(&order, &fine, T).await?;
    assert_eq!(o.order.status, OrderStatus::Confirmed, "{o:?}");
    assert_eq!(o.order.lines.0.len(), 3);
    assert_eq!(
        stocks(&env, &["burger", "pizza", "salad"]).await?,
        [Some(8), Some(0), Some(0)]
    );
    // The customer is told once, with every line.
    env.until_notified("the confirmation", &fine, 1, T).await?;
    let told = env.notifications_for(&fine).await?;
    assert!(
        told[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("3 lines reserved")),
        "{told:?}"
    );
    // A single line in `items` is the lab's order: the same flat answer as ever.
    let one = env.place_lines(&order, &[("burger", 1)]).await?;
    let o = env.wait_final(&order, &one, T).await?;
    let shown = serde_json::to_value(&o.order)?;
    assert_eq!(
        (shown["item"].as_str(), shown["qty"].as_i64()),
        (Some("burger"), Some(1))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_orders_over_the_same_items_never_oversell() -> anyhow::Result<()> {
    let env = TestEnv::with_stock("lines-no-oversell", "burger=12,pizza=9,sushi=7").await?;
    let (order, inventory, _notif) = env.start_all_in_process().await?;
    let seed = fastrand::u64(..);
    println!("seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let items = ["burger", "pizza", "sushi"];
    let orders: Vec<Vec<(&str, i64)>> = (0..40)
        .map(|_| {
            let mut lines: Vec<(&str, i64)> = Vec::new();
            for item in items {
                if rng.bool() {
                    lines.push((item, rng.i64(1..=3)));
                }
            }
            if lines.is_empty() {
                lines.push((items[rng.usize(..3)], 1));
            }
            lines
        })
        .collect();
    let placed = futures_util::future::try_join_all(
        orders.iter().map(|lines| env.place_lines(&order, lines)),
    )
    .await?;
    let mut taken = [0_i64; 3];
    for (id, lines) in placed.iter().zip(&orders) {
        let o = env.wait_final(&order, id, T).await?;
        if o.order.status == OrderStatus::Confirmed {
            for (item, qty) in lines {
                taken[items.iter().position(|i| i == item).unwrap()] += qty;
            }
        }
    }
    let left = stocks(&env, &items).await?;
    for (i, initial) in [12, 9, 7].into_iter().enumerate() {
        assert_eq!(
            left[i],
            Some(initial - taken[i]),
            "{}: what confirmed orders took is what left stock (seed {seed})",
            items[i]
        );
        assert!(taken[i] <= initial, "{} oversold (seed {seed})", items[i]);
    }
    // The checker agrees: stock conserved per item, every order decided.
    let out = env
        .sagactl(
            &[&order, &inventory],
            &["check", "--timeout", "20", "--json"],
        )
        .await?;
    let check: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(check["ok"], true, "{check} (seed {seed})");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_gives_every_line_back_once_through_a_kill_9_of_inventory() -> anyhow::Result<()> {
    let env = TestEnv::with_stock("lines-cancel-kill9", "burger=10,pizza=10").await?;
    let order = env.start(ServiceKind::Order).await?;
    let mut inventory = env.start(ServiceKind::Inventory).await?;
    let id = env
        .place_lines(&order, &[("burger", 3), ("pizza", 4)])
        .await?;
    env.wait_status(&order, &id, OrderStatus::Confirmed, T)
        .await?;
    assert_eq!(
        stocks(&env, &["burger", "pizza"]).await?,
        [Some(7), Some(6)]
    );

    // The cancel reaches a queue whose consumer is killed; a duplicate follows it.
    inventory.kill9().await;
    let (status, body) = env.orders(&order).cancel(&id, "changed my mind").await?;
    assert_eq!(status, 202, "{body}");
    env.publish_bare(
        "order.cancelled",
        json!({ "order_id": id }).to_string().as_bytes(),
    )
    .await?;
    inventory.restart().await?;
    env.wait_status(&order, &id, OrderStatus::Cancelled, T)
        .await?;
    env.until_depth("both cancels handled", &env.topology.inventory_queue, 0, T)
        .await?;
    assert_eq!(
        stocks(&env, &["burger", "pizza"]).await?,
        [Some(10), Some(10)],
        "every line back, once"
    );
    let mut redis = env.redis().await?;
    let released: i64 =
        redis::AsyncCommands::hget(&mut redis, env.keys.reservation(&id), "released_qty").await?;
    assert_eq!(released, 7);
    Ok(())
}

/// The schema-evolution lesson: an inventory-svc that reads only version 1 dead-letters an
/// order of several lines at once, with the reason; upgraded, a replay serves it.
#[tokio::test(flavor = "multi_thread")]
async fn a_version_1_reader_dead_letters_version_2_and_a_replay_after_the_upgrade_serves_it()
-> anyhow::Result<()> {
    let env = TestEnv::with_stock("lines-v2-drill", "burger=10,pizza=10").await?;
    let order = env.start(ServiceKind::Order).await?;
    let old = env
        .start_with(ServiceKind::Inventory, &[("ORDER_PLACED_READS", "1")])
        .await?;
    let lab = env.place(&order, "burger", 1).await?;
    assert_eq!(
        env.wait_final(&order, &lab, T).await?.order.status,
        OrderStatus::Confirmed,
        "the old reader still serves the lab's orders"
    );
    let id = env
        .place_lines(&order, &[("burger", 2), ("pizza", 1)])
        .await?;
    let reason = eventually("the version-2 order in the DLQ", T, || async {
        let out = env
            .sagactl(&[], &["dlq", "list", "--json"])
            .await
            .map_err(|e| e.to_string())?;
        let listed = String::from_utf8_lossy(&out.stdout).into_owned();
        if listed.contains(&id) {
            Ok(listed)
        } else {
            Err(format!("not yet: {listed}"))
        }
    })
    .await?;
    assert!(
        reason.contains("OrderPlaced version 2.0 is not read by inventory-svc; it reads 1"),
        "{reason}"
    );
    assert!(
        old.log().iter().all(|l| !l.contains("retry")),
        "dead-lettered at once, never retried"
    );
    assert_eq!(env.stock("burger").await?, Some(9));

    // The upgrade: the same service, reading both versions; then the replay.
    old.stop().await;
    let _new = env.start(ServiceKind::Inventory).await?;
    let out = env.sagactl(&[], &["dlq", "replay", "1"]).await?;
    assert!(
        out.status.success(),
        "sagactl dlq replay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o = env.wait_final(&order, &id, T).await?;
    assert_eq!(o.order.status, OrderStatus::Confirmed, "{o:?}");
    assert_eq!(
        stocks(&env, &["burger", "pizza"]).await?,
        [Some(7), Some(9)]
    );
    Ok(())
}
