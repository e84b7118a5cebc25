//! `sagactl` and the order's whole life, against the real services, broker and Redis: ship and
//! deliver from the command line (a refusal is one line naming the status and what it may
//! become), `explain` tells the moves and their status events, a timeout and the late
//! reservation it gave back, and an order compacted after its retention; `check` knows the
//! lifecycle's rules (no order past its deadline, one status event per transition).

use std::process::Output;
use std::time::Duration;

use harness::{Endpoint, ServiceKind, TestEnv};
use redis::AsyncCommands;
use saga_domain::events::{EventType, unix_now_millis};
use saga_domain::order::{HistoryEntry, OrderStatus, TIMEOUT_REASON};
use serde_json::Value;

const T: Duration = Duration::from_secs(20);

async fn sagactl(
    env: &TestEnv,
    services: &[&dyn Endpoint],
    args: &[&str],
) -> anyhow::Result<(bool, String, String)> {
    let Output {
        status,
        stdout,
        stderr,
    } = env.sagactl(services, args).await?;
    Ok((
        status.success(),
        String::from_utf8(stdout)?,
        String::from_utf8(stderr)?,
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn sagactl_ships_and_delivers_and_a_refusal_names_what_the_order_may_become()
-> anyhow::Result<()> {
    let env = TestEnv::with_stock("ctl-life", "burger=10").await?;
    let (order, inventory, _notification) = env.start_all_in_process().await?;
    let services: [&dyn Endpoint; 2] = [&order, &inventory];
    let id = env.place(&order, "burger", 2).await?;
    env.wait_final(&order, &id, T).await?;

    // Not shipped yet: DELIVERED is refused, and nothing changes.
    let before = env.order(&order, &id).await?;
    let (ok, stdout, stderr) = sagactl(&env, &services, &["order", "deliver", &id]).await?;
    assert!(!ok, "a refused deliver exits non-zero: {stdout}");
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(
        stderr.trim(),
        format!(
            "sagactl: order {id} is CONFIRMED, so it cannot become DELIVERED; from CONFIRMED it \
             may become SHIPPED or CANCELLED"
        )
    );
    assert_eq!(
        env.order(&order, &id).await?,
        before,
        "a 409 changes nothing"
    );

    let (ok, stdout, stderr) = sagactl(
        &env,
        &services,
        &["order", "ship", &id, "--note", "parcel 42"],
    )
    .await?;
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout.trim(),
        format!("order {id} is now {}", OrderStatus::Shipped)
    );
    let (ok, stdout, stderr) =
        sagactl(&env, &services, &["order", "deliver", &id, "--json"]).await?;
    assert!(ok, "{stderr}");
    let delivered: Value = serde_json::from_str(&stdout)?;
    assert_eq!(delivered["status"], OrderStatus::Delivered.as_str());

    // Finished: nothing moves it any more, and the refusal says so.
    let (ok, _, stderr) = sagactl(&env, &services, &["order", "status", &id, "shipped"]).await?;
    assert!(!ok);
    assert!(
        stderr
            .trim()
            .ends_with("nothing moves a DELIVERED order any more"),
        "{stderr}"
    );

    let (ok, story, stderr) = sagactl(&env, &services, &["explain", &id]).await?;
    assert!(ok, "{stderr}");
    for line in [
        "PATCH /order/{id}/status: CONFIRMED → SHIPPED (parcel 42)",
        "PATCH /order/{id}/status: SHIPPED → DELIVERED",
        "announced order.status.updated PLACED → CONFIRMED",
        "announced order.status.updated CONFIRMED → SHIPPED",
        "announced order.status.updated SHIPPED → DELIVERED",
    ] {
        assert!(story.contains(line), "explain lacks {line:?}:\n{story}");
    }

    let (ok, stdout, stderr) = sagactl(&env, &services, &["check", "--json"]).await?;
    assert!(ok, "check: {stdout}{stderr}");
    Ok(())
}

/// A timeline line as order-svc writes one, for an order forged in Redis.
fn line(status: OrderStatus, event: EventType, status_event: Option<&str>) -> String {
    let entry = HistoryEntry {
        at: unix_now_millis(),
        status,
        event: Some(event),
        event_id: uuid::Uuid::new_v4().to_string(),
        service: "order-svc".into(),
        redelivered: false,
        applied: true,
        reason: None,
        status_event_id: status_event.map(str::to_owned),
        envelope: Default::default(),
    };
    serde_json::to_string(&entry).unwrap_or_default()
}

/// No order-svc runs here, so no sweeper acts on the deadline forged below: the checker, not
/// the sweeper, is what is under test.
#[tokio::test(flavor = "multi_thread")]
async fn check_reports_an_order_past_its_deadline_and_a_move_never_announced() -> anyhow::Result<()>
{
    let env = TestEnv::with_stock("ctl-life-check", "burger=10").await?;
    // The checker peeks at the DLQ: the topology must be there, though no service runs.
    env.declare_topology().await?;
    let mut redis = env.redis().await?;
    let now = unix_now_millis();
    let forge = |id: &str, status: OrderStatus| {
        let mut pipe = redis::pipe();
        pipe.zadd(env.keys.orders(), id, now)
            .hset_multiple(
                env.keys.order(id),
                &[
                    ("order_id", id),
                    ("item", "burger"),
                    ("qty", "1"),
                    ("status", status.as_str()),
                    ("created_at", &now.to_string()),
                ],
            )
            .rpush(
                env.keys.order_history(id),
                line(OrderStatus::Placed, EventType::OrderPlaced, None),
            );
        pipe
    };
    // Still PLACED a minute after its deadline: the sweeper is not working.
    let late = "o-late";
    let mut pipe = forge(late, OrderStatus::Placed);
    pipe.zadd(env.keys.deadlines(), late, now - 60_000);
    let _: () = pipe.query_async(&mut redis).await?;
    // FAILED without announcing it, and SHIPPED naming the status event of another move.
    let mute = "o-mute";
    let mut pipe = forge(mute, OrderStatus::Failed);
    pipe.rpush(
        env.keys.order_history(mute),
        line(OrderStatus::Failed, EventType::InventoryFailed, None),
    );
    let _: () = pipe.query_async(&mut redis).await?;
    let twice = "o-twice";
    let mut pipe = forge(twice, OrderStatus::Shipped);
    pipe.rpush(
        env.keys.order_history(twice),
        line(
            OrderStatus::Confirmed,
            EventType::InventoryReserved,
            Some("s-1"),
        ),
    )
    .rpush(
        env.keys.order_history(twice),
        line(
            OrderStatus::Shipped,
            EventType::OrderStatusUpdated,
            Some("s-1"),
        ),
    );
    let _: () = pipe.query_async(&mut redis).await?;

    let (ok, stdout, stderr) = sagactl(&env, &[], &["check", "--timeout", "0", "--json"]).await?;
    assert!(!ok, "broken rules fail the check: {stdout}");
    let found = violations(&stdout).map_err(|e| anyhow::anyhow!("{e}: {stderr}"))?;
    assert_eq!(
        stderr.trim(),
        format!("sagactl: {} invariant violation(s)", found.len())
    );
    let has = |needle: &str| found.iter().any(|v| v.contains(needle));
    assert!(
        has("1 order(s) past their deadline by more than 10 s")
            && has(&format!("{late} (PLACED, ")),
        "{found:#?}"
    );
    assert!(
        has(&format!(
            "1 order(s) have transitions without a status event: {mute} (1)"
        )),
        "{found:#?}"
    );
    assert!(
        has(&format!(
            "1 order(s) name a status event another transition already named: {twice} (1)"
        )),
        "{found:#?}"
    );
    // The deadline is the sweeper's to clear, not the checker's: it is still there.
    let due: Option<f64> = redis.zscore(env.keys.deadlines(), late).await?;
    assert!(due.is_some());
    Ok(())
}

fn violations(stdout: &str) -> anyhow::Result<Vec<String>> {
    let doc: Value = serde_json::from_str(stdout)?;
    Ok(doc["violations"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_tells_a_timeout_and_the_late_reservation_it_gave_back() -> anyhow::Result<()> {
    let mut env = TestEnv::with_stock("ctl-life-timeout", "burger=10").await?;
    env.service_env
        .insert("ORDER_DECISION_TIMEOUT".into(), "1s".into());
    // The OrderPlaced waits in inventory's queue while inventory-svc is not there.
    env.declare_topology().await?;
    let order = env.start_in_process(ServiceKind::Order).await?;
    let id = env.place(&order, "burger", 2).await?;
    let failed = env.wait_final(&order, &id, T).await?;
    assert_eq!(failed.order.status, OrderStatus::Failed);
    assert_eq!(failed.order.reason.as_deref(), Some(TIMEOUT_REASON));

    // inventory-svc arrives: it reserves, then the timeout's cancel gives it back. One delivery
    // at a time, so that it takes its queue in order: with more in flight the cancel may overtake
    // its order (a tombstone, nothing taken: as safe, but another story to tell).
    env.service_env
        .insert("RABBITMQ_PREFETCH".into(), "1".into());
    let inventory = env.start_in_process(ServiceKind::Inventory).await?;
    let mut redis = env.redis().await?;
    harness::eventually("the late reservation given back", T, || {
        let mut redis = redis.clone();
        let key = env.keys.reservation(&id);
        async move {
            let state: Option<String> =
                redis.hget(&key, "state").await.map_err(|e| e.to_string())?;
            match state.as_deref() {
                Some("released") => Ok(()),
                other => Err(format!("reservation state {other:?}")),
            }
        }
    })
    .await?;
    env.until_stock("burger conserved", "burger", 10, T).await?;
    let services: [&dyn Endpoint; 2] = [&order, &inventory];
    harness::eventually("the late outcome in the timeline", T, || async {
        let (_, story, _) = sagactl(&env, &services, &["explain", &id])
            .await
            .map_err(|e| e.to_string())?;
        let wanted = [
            "decision deadline passed: PLACED → FAILED (timeout), order.cancelled sent",
            "the decision deadline passed; order-svc failed it and sent a cancel so that a late \
             reservation is given back",
            "announced order.status.updated PLACED → FAILED",
            "OrderCancelled: gave back 2 burger",
            "late InventoryReserved: no change (FAILED)",
        ];
        match wanted.iter().find(|w| !story.contains(**w)) {
            None => Ok(()),
            Some(missing) => Err(format!("explain lacks {missing:?}:\n{story}")),
        }
    })
    .await?;
    let still: Option<String> = redis.hget(env.keys.order(&id), "status").await?;
    assert_eq!(still.as_deref(), Some(OrderStatus::Failed.as_str()));
    let (ok, stdout, stderr) = sagactl(&env, &services, &["check", "--json"]).await?;
    assert!(ok, "check: {stdout}{stderr}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_and_order_get_say_a_compacted_order_expired() -> anyhow::Result<()> {
    let mut env = TestEnv::with_stock("ctl-life-expired", "burger=10").await?;
    env.service_env
        .insert("ORDER_RETENTION".into(), "1s".into());
    let (order, inventory, _notification) = env.start_all_in_process().await?;
    let services: [&dyn Endpoint; 2] = [&order, &inventory];
    // An unknown item: FAILED at once, which is finished, so it is compacted after 1 s.
    let id = env.place(&order, "unicorn", 1).await?;
    env.wait_final(&order, &id, T).await?;
    harness::eventually("the order compacted", T, || async {
        match env.get_order(&order, &id).await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    let (ok, story, stderr) = sagactl(&env, &services, &["explain", &id]).await?;
    assert!(ok, "{stderr}");
    assert!(
        story.starts_with(&format!(
            "order {id}: FAILED, compacted after its retention (only a tombstone is left)"
        )),
        "{story}"
    );
    assert!(
        story.contains("order-svc compacted this order after its retention (ORDER_RETENTION)"),
        "{story}"
    );
    let (ok, _, stderr) = sagactl(&env, &services, &["order", "ship", &id]).await?;
    assert!(!ok);
    assert!(
        stderr.starts_with(&format!("sagactl: order {id} expired")),
        "{stderr}"
    );
    Ok(())
}
