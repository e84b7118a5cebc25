//! The order's whole life (issue 19), order-svc's side: shipped and delivered over
//! `PATCH .../status` (one compare-and-set, so one winner), an `order.status.updated` for every
//! transition even while order-svc is `kill -9`ed, the decision deadline that fails an order
//! nobody answered and gives back a late reservation, and the retention that compacts finished
//! orders to a tombstone without letting a late duplicate take stock again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use harness::http::metric;
use harness::load::fault_rng;
use harness::orders::{StatusPath, timeline};
use harness::status_events::{StatusEvent, Transition, dedupe, transitions};
use harness::{Endpoint, ServiceKind, TestEnv, eventually};
use redis::AsyncCommands as _;
use saga_domain::events::EventType;
use saga_domain::order::{
    Notification, NotificationOutcome, OrderStatus, Reservation, ReservationState, TIMEOUT_REASON,
};
use saga_domain::view::OrderView;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(20);
/// Who the tests' PATCHes say they are: the status events must name them.
const SHIPPER: &str = "lifetests-shipper";
const COURIER: &str = "lifetests-courier";

/// Every `PATCH .../status` that `current` does not allow, on `path`: a 409 naming the status
/// and exactly [`OrderStatus::requestable_from`], and the order unchanged (its view, timeline
/// included, is the same before and after).
async fn every_illegal_patch_is_refused(
    env: &TestEnv,
    order: &impl Endpoint,
    path: StatusPath,
    id: &str,
) -> anyhow::Result<()> {
    let before = env.order(order, id).await?;
    let current = before.order.status;
    let allowed = current.requestable_from();
    for target in OrderStatus::ALL
        .into_iter()
        .filter(|t| !allowed.contains(t))
    {
        let (code, body) = env
            .patch_status(order, path, id, target, Some(SHIPPER))
            .await?;
        assert_eq!(code, 409, "{path:?} PATCH {target} from {current}: {body}");
        assert_eq!(body["order_id"], id, "{body}");
        assert_eq!(body["status"], current.as_str(), "{body}");
        let listed: Vec<OrderStatus> = serde_json::from_value(body["allowed"].clone())?;
        assert_eq!(listed, allowed, "PATCH {target} from {current}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains(id)),
            "{body}"
        );
    }
    let after = env.order(order, id).await?;
    assert_eq!(before, after, "a refused PATCH changes nothing");
    Ok(())
}

/// A 200 to a PATCH: the order's view, as `GET /order/{id}` has it.
fn patched(code: u16, body: Value) -> anyhow::Result<OrderView> {
    anyhow::ensure!(code == 200, "PATCH answered {code}: {body}");
    Ok(serde_json::from_value(body)?)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_full_life_over_patch_and_every_illegal_patch_changes_nothing() -> anyhow::Result<()> {
    let env = TestEnv::with_stock("life-patch", "widget=10").await?;
    let (order, _inv, _notif) = env.start_all_in_process().await?;
    for path in StatusPath::BOTH {
        let id = env.place(&order, "widget", 1).await?;
        env.wait_status(&order, &id, OrderStatus::Confirmed, T)
            .await?;
        every_illegal_patch_is_refused(&env, &order, path, &id).await?;

        let (code, body) = env
            .patch_status(&order, path, &id, OrderStatus::Shipped, Some(SHIPPER))
            .await?;
        let view = patched(code, body)?;
        assert_eq!(view.order.status, OrderStatus::Shipped);
        assert_eq!(view, env.order(&order, &id).await?, "200 is the order view");
        every_illegal_patch_is_refused(&env, &order, path, &id).await?;

        let (code, body) = env
            .patch_status(&order, path, &id, OrderStatus::Delivered, None)
            .await?;
        assert_eq!(patched(code, body)?.order.status, OrderStatus::Delivered);
        every_illegal_patch_is_refused(&env, &order, path, &id).await?;
        assert_eq!(
            timeline(&env.order(&order, &id).await?),
            [
                OrderStatus::Placed,
                OrderStatus::Confirmed,
                OrderStatus::Shipped,
                OrderStatus::Delivered
            ],
            "{path:?}"
        );

        // A PATCH to CANCELLED is a cancel: CANCELLING now, CANCELLED once the stock is back.
        let id = env.place(&order, "widget", 2).await?;
        env.wait_status(&order, &id, OrderStatus::Confirmed, T)
            .await?;
        let (code, body) = env
            .patch_status(&order, path, &id, OrderStatus::Cancelled, None)
            .await?;
        let view = patched(code, body)?;
        assert!(
            matches!(
                view.order.status,
                OrderStatus::Cancelling | OrderStatus::Cancelled
            ),
            "{view:?}"
        );
        env.wait_status(&order, &id, OrderStatus::Cancelled, T)
            .await?;
        every_illegal_patch_is_refused(&env, &order, path, &id).await?;

        // A FAILED order (no such item) can become nothing.
        let id = env.place(&order, "gizmo", 1).await?;
        env.wait_status(&order, &id, OrderStatus::Failed, T).await?;
        every_illegal_patch_is_refused(&env, &order, path, &id).await?;
    }
    // Two delivered units; the cancelled ones are back.
    assert_eq!(env.stock("widget").await?, Some(8));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_patches_answer_4xx_json_and_change_nothing() -> anyhow::Result<()> {
    let env = TestEnv::with_stock("life-bad-patch", "widget=10").await?;
    let (order, _inv, _notif) = env.start_all_in_process().await?;
    let id = env.place(&order, "widget", 1).await?;
    env.wait_status(&order, &id, OrderStatus::Confirmed, T)
        .await?;
    let before = env.order(&order, &id).await?;
    let long_note = json!({"status": "SHIPPED", "note": "n".repeat(501)}).to_string();
    let long_name = json!({"status": "SHIPPED", "updated_by": "u".repeat(65)}).to_string();
    let bad: [(&str, String); 7] = [
        ("unknown status", r#"{"status":"LOST"}"#.into()),
        ("status not a string", r#"{"status":3}"#.into()),
        ("bad JSON", r#"{"status":"SHIPPED""#.into()),
        (
            "missing status",
            r#"{"note":"where is the status?"}"#.into(),
        ),
        ("empty body", String::new()),
        ("note over 500 characters", long_note),
        ("updated_by over 64 characters", long_name),
    ];
    for path in StatusPath::BOTH {
        for (what, body) in &bad {
            let (code, answer) = env
                .patch_status_raw(&order, path, &id, body.clone())
                .await?;
            assert_eq!(code, 400, "{path:?} {what}: {answer}");
            assert!(answer["error"].is_string(), "{path:?} {what}: {answer}");
        }
        let (code, answer) = env
            .patch_status(&order, path, "no-such-order", OrderStatus::Shipped, None)
            .await?;
        assert_eq!(code, 404, "{path:?}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    assert_eq!(before, env.order(&order, &id).await?, "nothing moved");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn of_a_hundred_concurrent_patches_exactly_one_wins() -> anyhow::Result<()> {
    let env = TestEnv::with_stock("life-race", "widget=5").await?;
    let tap = format!("{}-status-tap", env.name);
    env.tap_status_events(&tap).await?;
    let (order, _inv, _notif) = env.start_all_in_process().await?;
    let id = env.place(&order, "widget", 1).await?;
    env.wait_status(&order, &id, OrderStatus::Confirmed, T)
        .await?;

    let racers: Vec<String> = (0..100).map(|i| format!("racer-{i}")).collect();
    let answers = futures_util::future::join_all(racers.iter().enumerate().map(|(i, who)| {
        let path = StatusPath::BOTH[i % 2];
        env.patch_status(&order, path, &id, OrderStatus::Shipped, Some(who))
    }))
    .await;
    let mut winners = Vec::new();
    for (who, answer) in racers.iter().zip(answers) {
        let (code, body) = answer?;
        match code {
            200 => winners.push(who.clone()),
            409 => {
                // Every loser lost to the winner: the order was SHIPPED when its CAS ran.
                assert_eq!(body["status"], OrderStatus::Shipped.as_str(), "{body}");
                let allowed: Vec<OrderStatus> = serde_json::from_value(body["allowed"].clone())?;
                assert_eq!(allowed, OrderStatus::Shipped.requestable_from());
            }
            other => anyhow::bail!("{who}: {other} {body}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one PATCH wins: {winners:?}");

    let view = env.order(&order, &id).await?;
    let shipped: Vec<_> = view
        .history
        .iter()
        .filter(|l| l.status == OrderStatus::Shipped)
        .collect();
    assert_eq!(shipped.len(), 1, "one SHIPPED line: {view:#?}");
    assert_eq!(
        timeline(&view),
        [
            OrderStatus::Placed,
            OrderStatus::Confirmed,
            OrderStatus::Shipped
        ]
    );

    // Every event written is relayed; then the tap holds all there will ever be.
    env.until_outbox_empty(T).await?;
    let (events, _) = dedupe(env.take_status_events(&tap, 2, T).await?);
    let shipping: Vec<&StatusEvent> = events
        .iter()
        .filter(|e| e.event.new_status == OrderStatus::Shipped)
        .collect();
    assert_eq!(
        shipping.len(),
        1,
        "one status event for SHIPPED: {events:#?}"
    );
    let event = &shipping[0].event;
    assert_eq!(event.order_id.to_string(), id);
    assert_eq!(event.old_status, OrderStatus::Confirmed);
    assert_eq!(event.updated_by, winners[0], "the winner's name");
    assert_eq!(
        shipped[0].status_event_id.as_deref(),
        Some(shipping[0].event_id.as_str()),
        "the timeline names its status event"
    );
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Status events under kill -9
// ------------------------------------------------------------------------------------------

const LIVES: usize = 240;
const LIFE_STOCK: usize = 150;
/// How long one call may keep failing while order-svc is down and restarting.
const THROUGH_RESTARTS: Duration = Duration::from_secs(60);

/// order-svc at a fixed address: the killed process comes back on the same one, so the lives
/// driven against it need not borrow the process the killer restarts.
struct At(String);

impl Endpoint for At {
    fn kind(&self) -> ServiceKind {
        ServiceKind::Order
    }
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}

/// Retry `call` while order-svc is away: a connection error or a 5xx is tried again, any other
/// answer is the answer.
async fn through_restarts<F, Fut>(what: &str, call: F) -> anyhow::Result<(u16, Value)>
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<(u16, Value)>>,
{
    eventually(what, THROUGH_RESTARTS, || {
        let answer = call();
        async move {
            match answer.await {
                Ok((code, body)) if code < 500 => Ok((code, body)),
                Ok((code, body)) => Err(format!("{code} {body}")),
                Err(e) => Err(format!("{e:#}")),
            }
        }
    })
    .await
}

/// Ask for `target` until it is so: a 409 that says the order already is `target` is a PATCH
/// whose answer was lost with the process that applied it.
async fn patch_through_restarts(
    env: &TestEnv,
    order: &At,
    path: StatusPath,
    id: &str,
    target: OrderStatus,
    who: &str,
) -> anyhow::Result<()> {
    let (code, body) = through_restarts(&format!("PATCH {id} {target}"), || {
        env.patch_status(order, path, id, target, Some(who))
    })
    .await?;
    anyhow::ensure!(
        code == 200 || (code == 409 && body["status"] == target.as_str()),
        "PATCH {id} {target}: {code} {body}"
    );
    Ok(())
}

/// One order's life, chosen by its number: cancelled at once (while PLACED or just
/// CONFIRMED), shipped and delivered, shipped only, or left CONFIRMED. Orders that found no
/// stock FAIL and stay so.
async fn one_life(env: &TestEnv, order: &At, n: usize) -> anyhow::Result<()> {
    let (code, body) =
        through_restarts("POST /order", || env.post_order(order, "widget", 1)).await?;
    anyhow::ensure!(code == 201, "POST /order: {code} {body}");
    let id = body["order_id"].as_str().unwrap_or_default().to_owned();
    let path = StatusPath::BOTH[n % 2];
    match n % 4 {
        0 => {
            let client = env.orders(order);
            let (code, body) = through_restarts(&format!("cancel {id}"), || {
                client.cancel(&id, "changed my mind")
            })
            .await?;
            let late = [
                OrderStatus::Cancelling,
                OrderStatus::Cancelled,
                OrderStatus::Failed,
            ];
            anyhow::ensure!(
                code == 202 || (code == 409 && late.iter().any(|s| body["status"] == s.as_str())),
                "cancel {id}: {code} {body}"
            );
        }
        1 | 2 => {
            let view = env.wait_final(order, &id, THROUGH_RESTARTS).await?;
            if view.order.status == OrderStatus::Confirmed {
                patch_through_restarts(env, order, path, &id, OrderStatus::Shipped, SHIPPER)
                    .await?;
                if n % 4 == 1 {
                    patch_through_restarts(env, order, path, &id, OrderStatus::Delivered, COURIER)
                        .await?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Who a status event must name for a move into `to`, in these tests' lives.
fn caused_by(to: OrderStatus) -> &'static str {
    match to {
        // Inventory's outcomes: reserved, failed, released.
        OrderStatus::Confirmed | OrderStatus::Failed | OrderStatus::Cancelled => "inventory-svc",
        // POST /order/{id}/cancel.
        OrderStatus::Cancelling => "customer",
        OrderStatus::Shipped => SHIPPER,
        OrderStatus::Delivered => COURIER,
        OrderStatus::Placed => "nobody: creation has no status event",
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_status_event_per_transition_through_kill9_of_order_svc() -> anyhow::Result<()> {
    let test = "life-kill-order";
    let env = TestEnv::with_stock(test, &format!("widget={LIFE_STOCK}")).await?;
    let tap = format!("{}-status-tap", env.name);
    env.tap_status_events(&tap).await?;
    let (mut order, _inv, _notif) = env.start_all().await?;
    let at = At(order.url(""));
    let mut rng = fault_rng(test);

    let done = AtomicBool::new(false);
    let lives = async {
        let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(0..LIVES)
            .map(|n| one_life(&env, &at, n))
            .buffer_unordered(4)
            .collect()
            .await;
        done.store(true, Ordering::SeqCst);
        results.into_iter().collect::<anyhow::Result<Vec<()>>>()
    };
    let killer = async {
        let mut kills = 0;
        // At least five kills, and keep going while lives are still being lived.
        while kills < 5 || !done.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(rng.u64(100..700))).await;
            order.kill9().await;
            kills += 1;
            tokio::time::sleep(Duration::from_millis(rng.u64(0..300))).await;
            order.restart().await?;
        }
        anyhow::Ok(kills)
    };
    let (lived, kills) = tokio::join!(lives, killer);
    lived?;
    eprintln!("{test}: {} kills of order-svc", kills?);

    let report =
        sagactl::check::check(&env.redis_url, &env.prefix, &env.amqp_url, &env.topology, T).await?;
    eprintln!("{test}: {report:?}");
    assert!(report.violations.is_empty(), "{:#?}", report.violations);

    // What every order's timeline says happened to it (orders whose 201 was lost included).
    let mut expected: BTreeMap<String, Vec<Transition>> = BTreeMap::new();
    for id in env.order_ids().await? {
        let view = env.order(&order, &id).await?;
        expected.insert(id, transitions(&view));
    }
    let moves: usize = expected.values().map(Vec::len).sum();
    env.until_outbox_empty(T).await?;
    let taken = env.take_status_events(&tap, moves, T).await?;
    let (events, resent) = dedupe(taken);
    eprintln!(
        "{test}: {} orders, {moves} transitions, {} status events ({resent} re-sends dropped)",
        expected.len(),
        events.len()
    );
    for e in &events {
        let m = &e.message;
        assert_eq!(m.routing_key, EventType::OrderStatusUpdated.routing_key());
        let app_id = m.properties.app_id().as_ref().map(|a| a.to_string());
        assert_eq!(app_id.as_deref(), Some("order-svc"), "{m:?}");
    }

    let mut seen: HashMap<String, Vec<&StatusEvent>> = HashMap::new();
    for e in &events {
        seen.entry(e.event.order_id.to_string())
            .or_default()
            .push(e);
    }
    assert_eq!(
        events.len(),
        moves,
        "exactly one event per transition, none lost, none doubled"
    );
    for (id, moves) in &expected {
        let got = seen.remove(id).unwrap_or_default();
        let got_moves: Vec<(OrderStatus, OrderStatus, &str)> = got
            .iter()
            .map(|e| {
                (
                    e.event.old_status,
                    e.event.new_status,
                    e.event.updated_by.as_str(),
                )
            })
            .collect();
        let want: Vec<(OrderStatus, OrderStatus, &str)> = moves
            .iter()
            .map(|t| (t.from, t.to, caused_by(t.to)))
            .collect();
        assert_eq!(got_moves, want, "order {id}: its events, in order");
        let ids: Vec<Option<&str>> = got.iter().map(|e| Some(e.event_id.as_str())).collect();
        let named: Vec<Option<&str>> = moves.iter().map(|t| t.status_event_id.as_deref()).collect();
        assert_eq!(ids, named, "order {id}: each timeline line names its event");
    }
    assert!(seen.is_empty(), "events of unknown orders: {seen:?}");

    notified_once_per_new_status(&env, &expected).await
}

/// notification-svc tells the customer once per (order, outcome): every new status that has a
/// notification ([`NotificationOutcome::of_status`]) is told, and nothing is told twice.
async fn notified_once_per_new_status(
    env: &TestEnv,
    expected: &BTreeMap<String, Vec<Transition>>,
) -> anyhow::Result<()> {
    let want: BTreeSet<(String, NotificationOutcome)> = expected
        .iter()
        .flat_map(|(id, moves)| {
            moves
                .iter()
                .filter_map(|t| NotificationOutcome::of_status(t.to))
                .map(|outcome| (id.clone(), outcome))
        })
        .collect();
    // An order cancelled while PLACED whose reservation then fails (no stock left) goes
    // PLACED -> CANCELLING -> CANCELLED and is never FAILED: its CANCELLED must be told, even
    // though inventory's "failed" was told first (only inventory's own late word is superseded
    // by a failure, never the order's status). This test holds notification-svc to issue 19's
    // rule.
    //
    // Wait for every new status to be told, not for a count: inventory's outcomes that the
    // order did not follow are told too, so a count is reached before the last one arrives.
    let got = eventually("every new status told", T, || async {
        let got = notifications_by_outcome(env)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let missing: Vec<_> = want.iter().filter(|k| !got.contains_key(*k)).collect();
        if missing.is_empty() {
            Ok(got)
        } else {
            let detail: Vec<String> = missing
                .iter()
                .map(|(id, outcome)| {
                    let moves: Vec<String> = expected[id]
                        .iter()
                        .map(|t| format!("{}->{}", t.from, t.to))
                        .collect();
                    let told: Vec<&str> = got
                        .keys()
                        .filter(|(i, _)| i == id)
                        .map(|(_, o)| o.as_str())
                        .collect();
                    format!("{id}: {outcome} never told (moves {moves:?}, told {told:?})")
                })
                .collect();
            Err(detail.join("; "))
        }
    })
    .await?;
    let doubled: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "notified more than once: {doubled:?}");
    // Inventory's own outcomes are told too, including one the order did not follow (a
    // reservation that reached an order already CANCELLING): once each, like the rest.
    let extra = got.keys().filter(|k| !want.contains(*k)).count();
    eprintln!(
        "{} notifications: one per (order, new status), and {extra} for inventory outcomes the order did not follow",
        got.len()
    );
    Ok(())
}

/// How many notifications notification-svc recorded for each (order, outcome).
async fn notifications_by_outcome(
    env: &TestEnv,
) -> anyhow::Result<BTreeMap<(String, NotificationOutcome), usize>> {
    let all: Vec<String> = env
        .redis()
        .await?
        .lrange(env.keys.notifications(), 0, -1)
        .await?;
    let mut got = BTreeMap::new();
    for line in all {
        let n: Notification = serde_json::from_str(&line)?;
        *got.entry((n.order_id, n.outcome)).or_default() += 1;
    }
    Ok(got)
}

// ------------------------------------------------------------------------------------------
// The decision deadline
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_order_nobody_answers_times_out_and_its_late_reservation_is_given_back()
-> anyhow::Result<()> {
    let env = TestEnv::with_stock("life-deadline", "widget=5").await?;
    let tap = format!("{}-status-tap", env.name);
    env.tap_status_events(&tap).await?;
    let order = env
        .start_with(ServiceKind::Order, &[("ORDER_DECISION_TIMEOUT", "2s")])
        .await?;
    let _notif = env.start(ServiceKind::Notification).await?;

    // inventory-svc is not running: nobody will answer in time.
    let late = env.place(&order, "widget", 2).await?;
    // And one cancelled while nobody listens: its cancel is sent again past the deadline.
    let gone = env.place(&order, "widget", 1).await?;
    let (code, body) = env.orders(&order).cancel(&gone, "changed my mind").await?;
    assert_eq!(code, 202, "{body}");

    let failed = env
        .wait_status(&order, &late, OrderStatus::Failed, T)
        .await?;
    assert_eq!(failed.order.reason.as_deref(), Some(TIMEOUT_REASON));
    let last = failed.history.last().cloned();
    assert!(
        last.as_ref().is_some_and(|l| l.applied
            && l.status == OrderStatus::Failed
            && l.reason.as_deref() == Some(TIMEOUT_REASON)),
        "the timeline says it timed out: {last:?}"
    );
    let metrics = eventually("both kinds of timeout counted", T, || async {
        let page = env
            .get_text(&order.url("/metrics"))
            .await
            .map_err(|e| e.to_string())?;
        let decision = metric(&page, "saga_order_timeouts_total", &["kind=\"decision\""]);
        let resent = metric(
            &page,
            "saga_order_timeouts_total",
            &["kind=\"cancel_resent\""],
        );
        if decision >= 1.0 && resent >= 1.0 {
            Ok((decision, resent))
        } else {
            Err(format!("decision {decision}, cancel_resent {resent}"))
        }
    })
    .await?;
    eprintln!("timeouts (decision, cancel re-sent): {metrics:?}");
    assert_eq!(
        env.get_order(&order, &gone).await?.map(|o| o.order.status),
        Some(OrderStatus::Cancelling)
    );

    // Inventory comes back: it reserves for the late order, then takes the timeout's cancel.
    // One message at a time, so that it handles them in the order they were sent: with several
    // in flight the cancel may overtake its order, and then nothing is ever reserved (a
    // tombstone), which conserves stock too but is not the late reservation this is about.
    let _inv = env
        .start_with(ServiceKind::Inventory, &[("RABBITMQ_PREFETCH", "1")])
        .await?;
    env.wait_status(&order, &gone, OrderStatus::Cancelled, T)
        .await?;
    // Both end released: each gave its reservation back.
    for id in [&late, &gone] {
        eventually(&format!("inventory released {id}"), T, || async {
            let state: Option<String> = env
                .redis()
                .await
                .map_err(|e| e.to_string())?
                .hget(env.keys.reservation(id), "state")
                .await
                .map_err(|e| e.to_string())?;
            match state.as_deref().and_then(ReservationState::parse) {
                Some(ReservationState::Released) => Ok(()),
                other => Err(format!("reservation {other:?}")),
            }
        })
        .await?;
    }
    assert_eq!(env.stock("widget").await?, Some(5), "stock conserved");

    let fields: Vec<(String, String)> = env
        .redis()
        .await?
        .hgetall(env.keys.reservation(&late))
        .await?;
    let record = Reservation::from_hash(fields).map_err(anyhow::Error::msg)?;
    assert!(
        record.item.is_some() && record.released_qty == 2,
        "reserved late, then given back: {record:?}"
    );
    let line = eventually("the late reservation in the timeline", T, || async {
        let view = env.order(&order, &late).await.map_err(|e| e.to_string())?;
        let line = view
            .history
            .iter()
            .find(|l| l.event == Some(EventType::InventoryReserved))
            .cloned();
        line.ok_or_else(|| format!("{:#?}", view.history))
    })
    .await?;
    assert!(
        !line.applied,
        "the late reservation moves nothing: {line:?}"
    );
    let view = env.order(&order, &late).await?;
    assert_eq!(view.order.status, OrderStatus::Failed, "it stays FAILED");

    let deadlines: usize = env.redis().await?.zcard(env.keys.deadlines()).await?;
    assert_eq!(deadlines, 0, "no deadline left for decided orders");
    env.until_outbox_empty(T).await?;
    let (events, _) = dedupe(env.take_status_events(&tap, 3, T).await?);
    let of = |id: &str| -> Vec<(OrderStatus, OrderStatus, String)> {
        events
            .iter()
            .filter(|e| e.event.order_id.to_string() == id)
            .map(|e| {
                (
                    e.event.old_status,
                    e.event.new_status,
                    e.event.updated_by.clone(),
                )
            })
            .collect()
    };
    assert_eq!(
        of(&late),
        [(
            OrderStatus::Placed,
            OrderStatus::Failed,
            "system".to_owned()
        )]
    );
    let timed_out = events.iter().find(|e| e.event.order_id.to_string() == late);
    assert_eq!(
        timed_out.and_then(|e| e.event.reason.as_deref()),
        Some(TIMEOUT_REASON)
    );
    assert_eq!(
        of(&gone),
        [
            (
                OrderStatus::Placed,
                OrderStatus::Cancelling,
                "customer".to_owned()
            ),
            (
                OrderStatus::Cancelling,
                OrderStatus::Cancelled,
                "inventory-svc".to_owned()
            ),
        ]
    );
    // The checker's rules hold: a FAILED by timeout whose late reservation was given back
    // agrees with inventory's record.
    let report =
        sagactl::check::check(&env.redis_url, &env.prefix, &env.amqp_url, &env.topology, T).await?;
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Retention
// ------------------------------------------------------------------------------------------

/// Finished orders of each kind, and one that is not finished.
struct Finished {
    failed: Vec<String>,
    cancelled: Vec<String>,
    delivered: Vec<String>,
    confirmed: String,
}

impl Finished {
    fn all(&self) -> impl Iterator<Item = (&String, OrderStatus)> {
        self.failed
            .iter()
            .map(|id| (id, OrderStatus::Failed))
            .chain(self.cancelled.iter().map(|id| (id, OrderStatus::Cancelled)))
            .chain(self.delivered.iter().map(|id| (id, OrderStatus::Delivered)))
    }
}

/// `each` orders FAILED (no such item), CANCELLED and DELIVERED, after one left CONFIRMED (so
/// it was decided before any of them finished).
async fn finish_orders(
    env: &TestEnv,
    order: &impl Endpoint,
    each: usize,
) -> anyhow::Result<Finished> {
    let confirmed = env.place(order, "widget", 1).await?;
    env.wait_status(order, &confirmed, OrderStatus::Confirmed, T)
        .await?;
    let mut finished = Finished {
        failed: Vec::new(),
        cancelled: Vec::new(),
        delivered: Vec::new(),
        confirmed,
    };
    for _ in 0..each {
        let id = env.place(order, "gizmo", 1).await?;
        env.wait_status(order, &id, OrderStatus::Failed, T).await?;
        finished.failed.push(id);

        let id = env.place(order, "widget", 1).await?;
        env.wait_status(order, &id, OrderStatus::Confirmed, T)
            .await?;
        let (code, body) = env.orders(order).cancel(&id, "changed my mind").await?;
        anyhow::ensure!(code == 202, "cancel {id}: {code} {body}");
        env.wait_status(order, &id, OrderStatus::Cancelled, T)
            .await?;
        finished.cancelled.push(id);

        let id = env.place(order, "widget", 1).await?;
        env.wait_status(order, &id, OrderStatus::Confirmed, T)
            .await?;
        for target in [OrderStatus::Shipped, OrderStatus::Delivered] {
            let (code, body) = env
                .patch_status(order, StatusPath::Order, &id, target, None)
                .await?;
            anyhow::ensure!(code == 200, "PATCH {id} {target}: {code} {body}");
        }
        finished.delivered.push(id);
    }
    Ok(finished)
}

/// Redis bytes per order in `env` now, printed under `label`.
async fn bytes_per_order(env: &TestEnv, orders: usize, label: &str) -> anyhow::Result<u64> {
    let (keys, bytes) = env.redis_footprint().await?;
    let per_order = bytes / u64::try_from(orders.max(1))?;
    eprintln!("{label}: {keys} keys, {bytes} bytes, {per_order} bytes per order ({orders})");
    Ok(per_order)
}

const EACH: usize = 10;

#[tokio::test(flavor = "multi_thread")]
async fn finished_orders_are_compacted_to_tombstones_that_still_stop_a_duplicate()
-> anyhow::Result<()> {
    let stock = "widget=100";
    let orders = 1 + 3 * EACH;

    // The same lives kept whole (the default retention, days): the "before".
    let twin = TestEnv::with_stock("life-keep", stock).await?;
    let (twin_order, _twin_inv, _twin_notif) = twin.start_all_in_process().await?;
    finish_orders(&twin, &twin_order, EACH).await?;
    twin.until_outbox_empty(T).await?;
    for queue in twin.topology.consumed_queues() {
        twin.until_depth("everything sent was handled", queue, 0, T)
            .await?;
    }
    let before = bytes_per_order(&twin, orders, "kept whole").await?;

    let mut env = TestEnv::with_stock("life-retention", stock).await?;
    env.service_env
        .insert("ORDER_RETENTION".into(), "2s".into());
    env.service_env
        .insert("DEDUPE_WINDOW".into(), "30days".into());
    let (order, inv, _notif) = env.start_all().await?;
    let done = finish_orders(&env, &order, EACH).await?;

    let mut conn = env.redis().await?;
    for (id, status) in done.all() {
        let tombstone = env.keys.order_tombstone(id);
        let body: String = eventually(&format!("order {id} compacted"), T, || {
            let mut conn = conn.clone();
            let tombstone = tombstone.clone();
            async move {
                let body: Option<String> = conn.get(&tombstone).await.map_err(|e| e.to_string())?;
                body.ok_or_else(|| "no tombstone yet".to_owned())
            }
        })
        .await?;
        let stone: Value = serde_json::from_str(&body)?;
        assert_eq!(stone["status"], status.as_str(), "{body}");
        let ttl: i64 = conn.ttl(&tombstone).await?;
        assert!(
            ttl > 24 * 3600,
            "the tombstone lasts DEDUPE_WINDOW: ttl {ttl}"
        );
        for key in [env.keys.order(id), env.keys.order_history(id)] {
            let there: bool = conn.exists(&key).await?;
            assert!(!there, "{key} is gone");
        }
        let r = env
            .http()
            .get(order.url(&format!("/order/{id}")))
            .send()
            .await?;
        assert_eq!(r.status().as_u16(), 404);
        let answer: Value = r.json().await?;
        assert_eq!(answer["expired"], true, "{answer}");
        assert_eq!(answer["order_id"], id.as_str(), "{answer}");
        assert_eq!(answer["status"], status.as_str(), "{answer}");
        assert!(
            answer["finished_at"].is_u64() && answer["expired_at"].is_u64(),
            "{answer}"
        );
        assert!(answer["error"].is_string(), "{answer}");
    }
    // Every finished order was kept at least the retention after it finished, and the
    // confirmed one was decided before any of them: it is older than the window, yet whole.
    let kept_whole = env.order(&order, &done.confirmed).await?;
    assert_eq!(kept_whole.order.status, OrderStatus::Confirmed);
    let stone: bool = conn
        .exists(env.keys.order_tombstone(&done.confirmed))
        .await?;
    assert!(
        !stone,
        "a CONFIRMED order is not finished, so not compacted"
    );

    let r = env.http().get(order.url("/order/never-was")).send().await?;
    assert_eq!(r.status().as_u16(), 404);
    let answer: Value = r.json().await?;
    assert_eq!(answer["expired"], false, "{answer}");
    assert_eq!(answer["order_id"], "never-was", "{answer}");

    let after = bytes_per_order(&env, orders, "after retention").await?;
    assert!(
        after < before,
        "compaction saves bytes: {after} >= {before}"
    );

    // A duplicate OrderPlaced of a delivered, compacted order must take no stock.
    let stock_now = env.stock("widget").await?;
    let consumed = || async {
        let page = env
            .get_text(&inv.url("/metrics"))
            .await
            .map_err(|e| e.to_string())?;
        Ok::<f64, String>(metric(
            &page,
            "saga_consumed_total",
            &[env.topology.inventory_queue.as_str()],
        ))
    };
    let so_far = consumed().await.map_err(anyhow::Error::msg)?;
    let ghost = &done.delivered[0];
    env.publish_bare(
        EventType::OrderPlaced.routing_key(),
        json!({"order_id": ghost, "item": "widget", "qty": 1})
            .to_string()
            .as_bytes(),
    )
    .await?;
    eventually("inventory-svc took the duplicate", T, || async {
        let now = consumed().await?;
        if now > so_far {
            Ok(())
        } else {
            Err(format!("{now} consumed"))
        }
    })
    .await?;
    env.until_depth(
        "whatever inventory said reached order-svc",
        &env.topology.order_status_queue,
        0,
        T,
    )
    .await?;
    assert_eq!(
        env.stock("widget").await?,
        stock_now,
        "the duplicate took no stock"
    );
    let r = env
        .http()
        .get(order.url(&format!("/order/{ghost}")))
        .send()
        .await?;
    assert_eq!(
        r.status().as_u16(),
        404,
        "a compacted order is not brought back"
    );
    Ok(())
}

/// A cancel that reaches an order before inventory's "no" leaves it CANCELLED, never FAILED; the
/// customer must hear "released" once, whatever inventory said on the way (found by the kill -9
/// run, reproduced alone).
#[tokio::test(flavor = "multi_thread")]
async fn an_order_cancelled_before_inventory_said_no_is_told_cancelled() -> anyhow::Result<()> {
    let env = TestEnv::new("life-cancel-before-no").await?;
    let order = env.start(ServiceKind::Order).await?;
    let _notif = env.start(ServiceKind::Notification).await?;
    // No such item: inventory will say no, but only once it runs, after the cancel.
    let id = env.place(&order, "gizmo", 1).await?;
    let (code, body) = env.orders(&order).cancel(&id, "changed my mind").await?;
    assert_eq!(code, 202, "{body}");
    // One message at a time, in the order sent: the OrderPlaced (a "no"), then the cancel.
    let _inv = env
        .start_with(ServiceKind::Inventory, &[("RABBITMQ_PREFETCH", "1")])
        .await?;
    let view = env
        .wait_status(&order, &id, OrderStatus::Cancelled, T)
        .await?;
    assert_eq!(
        transitions(&view).iter().map(|t| t.to).collect::<Vec<_>>(),
        [OrderStatus::Cancelling, OrderStatus::Cancelled]
    );
    eventually("the cancel told", T, || async {
        let got = notifications_by_outcome(&env)
            .await
            .map_err(|e| format!("{e:#}"))?;
        if got.get(&(id.clone(), NotificationOutcome::Released)) == Some(&1) {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await?;
    Ok(())
}
