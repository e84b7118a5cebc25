//! inventory-svc's retention: reservation records are compacted after `ORDER_RETENTION`, and
//! archived into per-item totals after `DEDUPE_WINDOW` more; a duplicate never takes stock
//! again before that, a compacted CONFIRMED order can still be cancelled, and the ledger
//! balances at every step (docs/OPERATIONS.md, "Retention: inventory-svc").

use std::collections::HashMap;
use std::time::Duration;

use harness::http::metric;
use harness::{ServiceKind, ServiceProcess, TestEnv, eventually};
use redis::AsyncCommands;
use saga_domain::invariants::{totals_disagree_with_records, unbalanced_stock};
use saga_domain::order::ReservationState;
use serde_json::json;

const T: Duration = Duration::from_secs(20);

/// What a compacted record keeps, besides `compacted_at`.
const KEPT: [&str; 4] = ["state", "item", "qty", "released_qty"];

async fn inventory(env: &TestEnv, dedupe_window: &str) -> anyhow::Result<ServiceProcess> {
    env.start_with(
        ServiceKind::Inventory,
        &[("ORDER_RETENTION", "2s"), ("DEDUPE_WINDOW", dedupe_window)],
    )
    .await
}

async fn place(env: &TestEnv, id: &str, item: &str, qty: u32) -> anyhow::Result<()> {
    let body = json!({ "order_id": id, "item": item, "qty": qty, "status": "PLACED" });
    env.publish_bare("order.placed", body.to_string().as_bytes())
        .await
}

async fn cancel(env: &TestEnv, id: &str) -> anyhow::Result<()> {
    let body = json!({ "order_id": id, "reason": "changed my mind" });
    env.publish_bare("order.cancelled", body.to_string().as_bytes())
        .await
}

async fn record(env: &TestEnv, id: &str) -> anyhow::Result<HashMap<String, String>> {
    Ok(env.redis().await?.hgetall(env.keys.reservation(id)).await?)
}

/// Wait until the record of `id` is in `state` (and compacted, if `compacted`).
async fn until_record(
    env: &TestEnv,
    id: &str,
    state: ReservationState,
    compacted: bool,
) -> anyhow::Result<HashMap<String, String>> {
    eventually(
        &format!("record of {id} {state}, compacted: {compacted}"),
        T,
        || async {
            let r = record(env, id).await.map_err(|e| e.to_string())?;
            let right_state = r.get("state").map(String::as_str) == Some(state.as_str());
            if right_state && r.contains_key("compacted_at") == compacted {
                Ok(r)
            } else {
                Err(format!("{r:?}"))
            }
        },
    )
    .await
}

/// `MEMORY USAGE` of a key, in bytes (every field counted: `SAMPLES 0`).
async fn bytes_of(env: &TestEnv, key: &str) -> anyhow::Result<u64> {
    let bytes: Option<u64> = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .arg("SAMPLES")
        .arg(0)
        .query_async(&mut env.redis().await?)
        .await?;
    bytes.ok_or_else(|| anyhow::anyhow!("{key} does not exist"))
}

/// Wait until inventory-svc has counted `n` duplicates: a duplicate changes nothing in Redis,
/// so its metric is what tells it was handled.
async fn until_duplicates(env: &TestEnv, inv: &ServiceProcess, n: f64) -> anyhow::Result<()> {
    eventually(&format!("{n} duplicates handled"), T, || async {
        let page = env
            .get_text(&inv.url("/metrics"))
            .await
            .map_err(|e| e.to_string())?;
        let seen = metric(&page, "saga_consumed_total", &["outcome=\"duplicate\""]);
        if seen >= n {
            Ok(())
        } else {
            Err(format!("{seen} duplicates so far"))
        }
    })
    .await
}

/// The ledger rules (stock conserved, reserved once) hold on what is in Redis now.
async fn assert_ledger_clean(env: &TestEnv) -> anyhow::Result<()> {
    let redis = saga_platform::redis::store::connect(&env.redis_url)?;
    let ledger = sagactl::check::read_ledger(&redis, &env.keys).await?;
    let mut violations = unbalanced_stock(&ledger.books);
    violations.extend(totals_disagree_with_records(&ledger));
    assert!(violations.is_empty(), "{violations:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn compacted_records_still_dedupe_and_a_compacted_confirmed_order_can_be_cancelled()
-> anyhow::Result<()> {
    let env = TestEnv::with_stock("retention-inventory", "burger=20").await?;
    let inv = inventory(&env, "30days").await?;
    assert_eq!(env.seeded_stock("burger").await?, 20);

    // Four kinds of record: reserved (CONFIRMED), failed, released (CANCELLED), and the
    // tombstone of a cancel that overtook its order.
    place(&env, "keep-1", "burger", 3).await?;
    place(&env, "fail-1", "burger", 500).await?;
    place(&env, "gone-1", "burger", 2).await?;
    cancel(&env, "ghost-1").await?;
    let full = until_record(&env, "keep-1", ReservationState::Reserved, false).await?;
    let before = bytes_of(&env, &env.keys.reservation("keep-1")).await?;
    until_record(&env, "gone-1", ReservationState::Reserved, false).await?;
    cancel(&env, "gone-1").await?;
    until_record(&env, "gone-1", ReservationState::Released, false).await?;
    env.until_stock("3 reserved, 2 given back", "burger", 17, T)
        .await?;
    assert_ledger_clean(&env).await?;

    // ORDER_RETENTION (2 s) later, the sweeper compacts each to what dedupe and the ledger need.
    let compacted = until_record(&env, "keep-1", ReservationState::Reserved, true).await?;
    let after = bytes_of(&env, &env.keys.reservation("keep-1")).await?;
    println!(
        "reservation record of a CONFIRMED order: {before} bytes ({} fields), compacted {after} bytes ({} fields)",
        full.len(),
        compacted.len()
    );
    assert!(after < before, "compaction shrinks the record");
    let mut fields: Vec<&str> = compacted.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["compacted_at", "item", "qty", "state"]);
    assert_eq!(compacted["qty"], "3");
    for (id, state) in [
        ("fail-1", ReservationState::Failed),
        ("gone-1", ReservationState::Released),
        ("ghost-1", ReservationState::Released),
    ] {
        let r = until_record(&env, id, state, true).await?;
        assert!(
            r.keys()
                .all(|f| f == "compacted_at" || KEPT.contains(&f.as_str())),
            "{id}: {r:?}"
        );
    }
    let due: u64 = env
        .redis()
        .await?
        .zcard(env.keys.reservations_compacting())
        .await?;
    assert_eq!(due, 0, "nothing left to compact");
    assert_ledger_clean(&env).await?;

    // Every duplicate now meets a compacted record: no stock taken, none given back twice.
    place(&env, "keep-1", "burger", 3).await?;
    place(&env, "fail-1", "burger", 500).await?;
    place(&env, "gone-1", "burger", 2).await?;
    place(&env, "ghost-1", "burger", 4).await?;
    cancel(&env, "gone-1").await?;
    until_duplicates(&env, &inv, 5.0).await?;
    assert_eq!(
        env.stock("burger").await?,
        Some(17),
        "duplicates took nothing"
    );
    assert_ledger_clean(&env).await?;

    // The compacted CONFIRMED order is cancelled: its 3 units come back, once.
    cancel(&env, "keep-1").await?;
    let released = until_record(&env, "keep-1", ReservationState::Released, true).await?;
    assert_eq!(released["released_qty"], "3");
    env.until_stock("the compacted order's stock given back", "burger", 20, T)
        .await?;
    cancel(&env, "keep-1").await?;
    until_duplicates(&env, &inv, 6.0).await?;
    assert_eq!(env.stock("burger").await?, Some(20), "given back once");
    assert_ledger_clean(&env).await?;

    // The release started the record's retention again; it is compacted once more.
    eventually("the released record compacted again", T, || async {
        let r = record(&env, "keep-1").await.map_err(|e| e.to_string())?;
        if r.contains_key("release_event_id") {
            Err(format!("{r:?}"))
        } else {
            Ok(())
        }
    })
    .await?;
    assert_ledger_clean(&env).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn archived_records_are_folded_into_the_totals_and_the_ledger_still_balances()
-> anyhow::Result<()> {
    let env = TestEnv::with_stock("retention-archive", "pizza=10").await?;
    let _inv = inventory(&env, "1s").await?;
    assert_eq!(env.seeded_stock("pizza").await?, 10);

    place(&env, "arch-1", "pizza", 4).await?;
    place(&env, "arch-2", "pizza", 1).await?;
    until_record(&env, "arch-2", ReservationState::Reserved, false).await?;
    cancel(&env, "arch-2").await?;
    until_record(&env, "arch-1", ReservationState::Reserved, false).await?;
    until_record(&env, "arch-2", ReservationState::Released, false).await?;

    // ORDER_RETENTION + DEDUPE_WINDOW (3 s) later both records are gone, their units archived.
    eventually("both records archived", T, || async {
        let (a, b) = (
            record(&env, "arch-1").await.map_err(|e| e.to_string())?,
            record(&env, "arch-2").await.map_err(|e| e.to_string())?,
        );
        if a.is_empty() && b.is_empty() {
            Ok(())
        } else {
            Err(format!("{a:?} {b:?}"))
        }
    })
    .await?;
    let mut redis = env.redis().await?;
    let archived_reserved: HashMap<String, i64> =
        redis.hgetall(env.keys.stock_archived_reserved()).await?;
    let archived_released: HashMap<String, i64> =
        redis.hgetall(env.keys.stock_archived_released()).await?;
    assert_eq!(archived_reserved.get("pizza"), Some(&5));
    assert_eq!(archived_released.get("pizza"), Some(&1));
    assert_eq!(env.stock("pizza").await?, Some(6));
    assert_ledger_clean(&env).await?;

    // Past the documented window a duplicate is no longer recognised: it takes stock again,
    // and the books still add up (the archive and the new record).
    place(&env, "arch-1", "pizza", 4).await?;
    until_record(&env, "arch-1", ReservationState::Reserved, false).await?;
    env.until_stock("the too-late duplicate reserved again", "pizza", 2, T)
        .await?;
    assert_ledger_clean(&env).await?;
    Ok(())
}
