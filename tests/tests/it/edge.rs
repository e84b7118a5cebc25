//! order-svc's front door and outbox under hostile input (issue 17): no request, and no entry
//! in the outbox, stops the relay; ids cannot name other orders' keys; retrying a request with
//! its `Idempotency-Key` never makes a second order, even after a `WAIT` timed out.
//!
//! Real RabbitMQ and Redis, each test in its own vhost and prefix; the `WAIT` test on a private
//! redis-server of its own, whose replica it attaches itself.

use std::time::Duration;

use harness::http::metric;
use harness::orders::timeline;
use harness::private::{PrivateRedis, replication_info};
use harness::{Endpoint, ServiceKind, TestEnv, eventually};
use redis::AsyncCommands;
use saga_domain::events::{EventMeta, EventType, OrderPlaced, unix_now_millis};
use saga_domain::ids::{Item, OrderId, Qty};
use saga_domain::lines::Lines;
use saga_domain::order::OrderStatus;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(20);

/// POST `path` with a JSON `body` and extra `headers`; the status, the JSON body and whether
/// the answer says it is a replay.
async fn post(
    env: &TestEnv,
    svc: &impl Endpoint,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> anyhow::Result<(u16, Value, bool)> {
    let mut request = env.http().post(svc.url(path)).json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let answer = request.send().await?;
    let status = answer.status().as_u16();
    let replayed = answer.headers().get("idempotent-replayed").is_some();
    Ok((status, answer.json().await.unwrap_or(Value::Null), replayed))
}

/// How many orders the store holds (`GET /orders?limit=0` counts them).
async fn order_count(env: &TestEnv, svc: &impl Endpoint) -> anyhow::Result<u64> {
    let listed = env.get_json(&svc.url("/orders?limit=0")).await?;
    listed["total"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no total in {listed}"))
}

async fn ready_status(env: &TestEnv, svc: &impl Endpoint) -> anyhow::Result<u16> {
    Ok(env
        .http()
        .get(svc.url("/ready"))
        .send()
        .await?
        .status()
        .as_u16())
}

/// Place `n` orders and wait until each is CONFIRMED: the relay is flowing.
async fn orders_flow(env: &TestEnv, svc: &impl Endpoint, n: usize) -> anyhow::Result<()> {
    for _ in 0..n {
        let id = env.place(svc, "burger", 1).await?;
        let order = env.wait_final(svc, &id, T).await?;
        assert_eq!(order.order.status, OrderStatus::Confirmed, "{order:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_300_byte_correlation_id_on_cancel_is_refused_and_the_relay_keeps_flowing()
-> anyhow::Result<()> {
    let env = TestEnv::new("edge-corr").await?;
    let (order, _inv, _notif) = env.start_all_in_process().await?;
    let id = env.place(&order, "burger", 1).await?;
    env.wait_final(&order, &id, T).await?;

    let long = "c".repeat(300);
    let (status, body, _) = post(
        &env,
        &order,
        &format!("/order/{id}/cancel"),
        &json!({}),
        &[("x-correlation-id", &long)],
    )
    .await?;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"], "X-Correlation-Id: correlation id longer than 64 bytes",
        "{body}"
    );
    assert_eq!(body["field"], "X-Correlation-Id");
    let after = env.order(&order, &id).await?;
    assert_eq!(
        after.order.status,
        OrderStatus::Confirmed,
        "a refused cancel changes nothing"
    );

    // POST /order refuses it the same way.
    let (status, body, _) = post(
        &env,
        &order,
        "/order",
        &json!({"item": "burger", "qty": 1}),
        &[("x-correlation-id", &long)],
    )
    .await?;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap_or("").contains("64 bytes"));

    // The relay was never fed it: orders after it confirm, a valid cancel goes through.
    orders_flow(&env, &order, 3).await?;
    let (status, body, _) = post(
        &env,
        &order,
        &format!("/order/{id}/cancel"),
        &json!({"reason": "changed my mind"}),
        &[("x-correlation-id", "class-demo:42")],
    )
    .await?;
    assert_eq!(status, 202, "{body}");
    let cancelled = env
        .wait_status(&order, &id, OrderStatus::Cancelled, T)
        .await?;
    assert_eq!(
        cancelled.order.correlation_id, id,
        "the order keeps its own"
    );
    assert_eq!(ready_status(&env, &order).await?, 200);
    Ok(())
}

/// What an older order-svc (or a corrupted write) could have left: an order and, in the same
/// transaction, an OrderPlaced outbox entry whose correlation id no AMQP short string holds.
async fn write_unpublishable_order(env: &TestEnv) -> anyhow::Result<String> {
    let order_id = OrderId::generate();
    let id = order_id.as_str().to_owned();
    let event = OrderPlaced {
        order_id,
        lines: Lines::single(Item::parse("burger")?, Qty::parse(2)?),
        student_id: None,
    };
    let long = "c".repeat(300);
    let meta = EventMeta::new(EventType::OrderPlaced, &long, "order-svc");
    let now = unix_now_millis();
    let history = json!({"at": now, "status": OrderStatus::Placed.as_str(), "event": EventType::OrderPlaced.name(),
                         "event_id": meta.event_id, "service": "order-svc", "applied": true});
    let entry = order_svc::outbox::entry_fields(&meta, &id, &event.to_body());
    let mut redis = env.redis().await?;
    let keys = &env.keys;
    let () = redis::pipe()
        .atomic()
        .hset_multiple(
            keys.order(&id),
            &[
                ("order_id", id.as_str()),
                ("item", "burger"),
                ("qty", "2"),
                ("student_id", ""),
                ("status", OrderStatus::Placed.as_str()),
                ("correlation_id", long.as_str()),
                ("created_at", &now.to_string()),
                ("updated_at", &now.to_string()),
            ],
        )
        .ignore()
        .zadd(keys.orders(), &id, now)
        .ignore()
        .zadd(
            format!(
                "{}{}",
                keys.orders_by_status_prefix(),
                OrderStatus::Placed.as_str()
            ),
            &id,
            now,
        )
        .ignore()
        .rpush(keys.order_history(&id), history.to_string())
        .ignore()
        .xadd(keys.outbox(), "*", &entry)
        .ignore()
        .query_async(&mut redis)
        .await?;
    Ok(id)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outbox_entry_that_cannot_be_published_is_parked_and_the_orders_behind_it_confirm()
-> anyhow::Result<()> {
    let env = TestEnv::new("edge-park").await?;
    let (order, inv, _notif) = env.start_all().await?;
    env.seeded_stock("burger").await?;

    let stuck = write_unpublishable_order(&env).await?;
    // And an entry that is not even text (its body has a Latin-1 byte): a batch holding it
    // must still be readable.
    let meta = EventMeta::new(EventType::OrderPlaced, "ghost-1", "order-svc");
    let mut latin1: Vec<(&str, Vec<u8>)> = order_svc::outbox::entry_fields(&meta, "ghost-1", b"")
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    latin1.retain(|(k, _)| *k != "body");
    latin1.push(("body", b"{\"item\":\"caf\xe9\"}".to_vec()));
    let () = env
        .redis()
        .await?
        .xadd(env.keys.outbox(), "*", &latin1)
        .await?;
    // Behind them in the outbox: these must not wait for them.
    orders_flow(&env, &order, 3).await?;

    let parked = env
        .sagactl(&[&order, &inv], &["outbox", "list", "--json"])
        .await?;
    assert!(
        parked.status.success(),
        "{}",
        String::from_utf8_lossy(&parked.stderr)
    );
    let listing: Value = serde_json::from_slice(&parked.stdout)?;
    assert_eq!(listing["total"], 2, "{listing}");
    let entry = &listing["entries"][0];
    assert_eq!(entry["order_id"], stuck.as_str());
    let ghost = &listing["entries"][1];
    assert_eq!(ghost["order_id"], "ghost-1");
    assert_eq!(
        ghost["reason"], "body is not UTF-8 (invalid byte at 12)",
        "{ghost}"
    );
    assert_eq!(
        entry["reason"], "correlation_id is 300 bytes; an AMQP short string holds at most 255",
        "{entry}"
    );
    let text = env.sagactl(&[&order, &inv], &["outbox", "list"]).await?;
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&stuck) && text.contains("300 bytes"),
        "{text}"
    );

    // The order's timeline says where its event is; the service is ready and counted it.
    let view = env.order(&order, &stuck).await?;
    assert_eq!(view.order.status, OrderStatus::Placed);
    let hop = view.dlq_hops.first().map_or("", |hop| hop.reason.as_str());
    assert!(
        hop.contains("parked in the outbox") && hop.contains("300 bytes"),
        "{view:?}"
    );
    assert_eq!(ready_status(&env, &order).await?, 200);
    let page = env.get_text(&order.url("/metrics")).await?;
    assert_eq!(metric(&page, "saga_outbox_parked_total", &[]), 2.0);
    assert_eq!(metric(&page, "saga_task_restarts_total", &[]), 0.0);
    let outbox_len: u64 = env.redis().await?.xlen(env.keys.outbox()).await?;
    assert_eq!(outbox_len, 0, "nothing left behind it");

    // The operator fixes the value and replays it: the order goes through like any other.
    let id = entry["id"].as_str().unwrap_or_default();
    let replayed = env
        .sagactl(
            &[&order, &inv],
            &[
                "outbox",
                "replay",
                id,
                "--set",
                &format!("correlation_id={stuck}"),
            ],
        )
        .await?;
    assert!(
        replayed.status.success(),
        "{}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    let done = env.wait_final(&order, &stuck, T).await?;
    assert_eq!(done.order.status, OrderStatus::Confirmed, "{done:?}");
    let again = env
        .sagactl(&[&order, &inv], &["outbox", "replay", id])
        .await?;
    assert!(!again.status.success(), "a replayed entry is gone");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn order_ids_with_a_colon_are_refused_over_http() -> anyhow::Result<()> {
    let env = TestEnv::new("edge-colon").await?;
    let order = env.start_in_process(ServiceKind::Order).await?;
    let id = env.place(&order, "burger", 1).await?;
    // `{id}:history` would be the key of the order's history list, `{id}:dlq` its DLQ hops.
    for path in [
        format!("/order/{id}:history"),
        format!("/order/{id}%3Ahistory"),
        format!("/order/{id}:dlq"),
    ] {
        let answer = env.http().get(order.url(&path)).send().await?;
        assert_eq!(answer.status().as_u16(), 400, "{path}");
        let body: Value = answer.json().await?;
        assert_eq!(body["field"], "order_id", "{path}: {body}");
        // warp does not decode the path: `%3A` is refused for its `%`, `:` for itself.
        let error = body["error"].as_str().unwrap_or("");
        assert!(
            error.contains("contains ':'") || error.contains("contains '%'"),
            "{path}: {body}"
        );
    }
    let (status, body, _) = post(
        &env,
        &order,
        &format!("/order/{id}:history/cancel"),
        &json!({}),
        &[],
    )
    .await?;
    assert_eq!(status, 400, "{body}");
    let view = env.order(&order, &id).await?;
    assert_eq!(view.order.status, OrderStatus::Placed, "nothing touched");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn one_idempotency_key_makes_one_order_however_often_and_concurrently_it_is_sent()
-> anyhow::Result<()> {
    let env = TestEnv::new("edge-idem").await?;
    let (order, _inv, _notif) = env.start_all_in_process().await?;
    let burger = json!({"item": "burger", "qty": 2, "student_id": "s1"});

    let key = [("idempotency-key", "retry-me-1")];
    let (status, first, replayed) = post(&env, &order, "/order", &burger, &key).await?;
    assert_eq!((status, replayed), (201, false), "{first}");
    let id = first["order_id"].as_str().unwrap_or_default().to_owned();
    let (status, again, replayed) = post(&env, &order, "/order", &burger, &key).await?;
    assert_eq!((status, replayed), (201, true), "{again}");
    assert_eq!(again, first, "the same answer");

    // Another request under the same key is refused: a key names one request.
    let pizza = json!({"item": "pizza", "qty": 2, "student_id": "s1"});
    let (status, body, _) = post(&env, &order, "/order", &pizza, &key).await?;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["order_id"], id.as_str(), "{body}");

    // Twenty at once with one fresh key: one order, every answer names it.
    let key = [("idempotency-key", "retry-me-2")];
    let answers = futures_util::future::join_all(
        (0..20).map(|_| post(&env, &order, "/order", &burger, &key)),
    )
    .await;
    let mut ids = std::collections::BTreeSet::new();
    for answer in answers {
        let (status, body, _) = answer?;
        assert_eq!(status, 201, "{body}");
        ids.insert(body["order_id"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(order_count(&env, &order).await?, 2, "two keys, two orders");
    let concurrent = ids.into_iter().next().unwrap_or_default();
    for placed in [&id, &concurrent] {
        let done = env.wait_final(&order, placed, T).await?;
        assert_eq!(done.order.status, OrderStatus::Confirmed, "{done:?}");
    }
    let initial: i64 = env
        .redis()
        .await?
        .hget(env.keys.stock_initial(), "burger")
        .await?;
    assert_eq!(
        env.stock("burger").await?,
        Some(initial - 4),
        "two orders of 2 reserved"
    );

    // Cancel takes a key too: the retry gets the first 202, the order is cancelled once.
    let cancel = format!("/order/{id}/cancel");
    let key = [("idempotency-key", "cancel-once")];
    let reason = json!({"reason": "changed my mind"});
    let (status, first, _) = post(&env, &order, &cancel, &reason, &key).await?;
    assert_eq!(status, 202, "{first}");
    let (status, again, replayed) = post(&env, &order, &cancel, &reason, &key).await?;
    assert_eq!((status, replayed), (202, true), "{again}");
    assert_eq!(again, first);
    let (status, body, _) = post(&env, &order, &cancel, &json!({"reason": "other"}), &key).await?;
    assert_eq!(status, 422, "{body}");
    let (status, body, _) = post(&env, &order, &cancel, &reason, &[]).await?;
    assert_eq!(
        status, 409,
        "without a key, a second cancel is too late: {body}"
    );
    let cancelled = env
        .wait_status(&order, &id, OrderStatus::Cancelled, T)
        .await?;
    let cancels = timeline(&cancelled)
        .into_iter()
        .filter(|&status| status == OrderStatus::Cancelling)
        .count();
    assert_eq!(cancels, 1, "{cancelled:?}");

    // A bad key is refused, naming the header and its limit.
    let long = "k".repeat(256);
    for bad in [long.as_str(), "has space", "a:b"] {
        let (status, body, _) =
            post(&env, &order, "/order", &burger, &[("idempotency-key", bad)]).await?;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["field"], "Idempotency-Key", "{body}");
        assert!(body["limit"].as_str().unwrap_or("").contains("255 bytes"));
    }
    assert_eq!(order_count(&env, &order).await?, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_post_retried_with_its_key_after_a_wait_timeout_gives_one_order() -> anyhow::Result<()> {
    // A Redis of our own with no replica, and writes that need one: every write times out in
    // WAIT after it was done.
    let master = PrivateRedis::start().await?;
    let mut env = TestEnv::on_private("edge-wait", None, Some(&master.url()))?;
    env.service_env
        .insert("REDIS_MIN_REPLICAS".into(), "1".into());
    env.service_env
        .insert("REDIS_WAIT_TIMEOUT".into(), "100ms".into());
    let order = env.start_in_process(ServiceKind::Order).await?;
    let burger = json!({"item": "burger", "qty": 1});
    let key = [("idempotency-key", "after-a-timeout")];

    let (status, body, _) = post(&env, &order, "/order", &burger, &key).await?;
    assert_eq!(status, 503, "{body}");
    let id = body["order_id"].as_str().unwrap_or_default().to_owned();
    assert!(
        OrderId::parse(&id).is_ok(),
        "the 503 names the order: {body}"
    );
    assert_eq!(body["may_exist"], true);
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("may exist") && error.contains("same Idempotency-Key"),
        "{error}"
    );
    // Still unacknowledged: the retry finds the same order, and says so again.
    let (status, body, _) = post(&env, &order, "/order", &burger, &key).await?;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["order_id"], id.as_str());

    // A replica arrives: the retry is acknowledged, and it is the same order.
    let replica = PrivateRedis::start().await?;
    let mut conn = redis::Client::open(replica.url())?
        .get_multiplexed_async_connection()
        .await?;
    let () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(master.port)
        .query_async(&mut conn)
        .await?;
    eventually("the replica in sync", T, || async {
        let info = replication_info(replica.port)
            .await
            .map_err(|e| e.to_string())?;
        if info.contains("master_link_status:up") {
            Ok(())
        } else {
            Err("link not up yet".into())
        }
    })
    .await?;
    // Retried until acknowledged, as a client would: a replica "up" acknowledges a WAIT within
    // the 100 ms it is given on a quiet machine, not always on a loaded one (a 503 then is the
    // same answer as before the replica, and the next retry is acknowledged).
    let body = eventually("a retry acknowledged by the replica", T, || async {
        match post(&env, &order, "/order", &burger, &key).await {
            Ok((201, body, true)) => Ok(body),
            Ok((503, body, _)) if body["order_id"] == id.as_str() => {
                Err(format!("still unacknowledged: {body}"))
            }
            other => Err(format!("unexpected: {other:?}")),
        }
    })
    .await?;
    assert_eq!(body["order_id"], id.as_str());
    assert_eq!(order_count(&env, &order).await?, 1, "one order");
    let outbox: u64 = redis::Client::open(master.url())?
        .get_multiplexed_async_connection()
        .await?
        .xlen(env.keys.outbox())
        .await?;
    assert_eq!(outbox, 1, "one OrderPlaced waiting to go out");
    Ok(())
}

/// A request and what its answer must be: route, body, headers, status, words of the error.
type Case<'a> = (&'a str, Value, Vec<(&'a str, String)>, u16, &'a str);

#[tokio::test(flavor = "multi_thread")]
async fn every_value_over_its_limit_is_refused_naming_the_field_and_the_limit() -> anyhow::Result<()>
{
    let env = TestEnv::new("edge-limits").await?;
    let order = env.start_in_process(ServiceKind::Order).await?;
    let id = env.place(&order, "burger", 1).await?;
    let long = |n: usize| "x".repeat(n);
    let cancel = format!("/order/{id}/cancel");
    // (route, body, headers, status, words the error must say)
    let cases: Vec<Case> = vec![
        (
            "/order",
            json!({"item": long(65), "qty": 1}),
            vec![],
            400,
            "item longer than 64 bytes",
        ),
        (
            "/order",
            json!({"item": "burger", "qty": 1, "student_id": long(65)}),
            vec![],
            400,
            "student_id longer than 64 bytes",
        ),
        (
            "/order",
            json!({"item": "burger", "qty": 10_001}),
            vec![],
            400,
            "limit 10000",
        ),
        (
            "/order",
            json!({"item": "burger", "qty": 1, "pad": long(20_000)}),
            vec![],
            413,
            "at most 16384 bytes",
        ),
        (
            &cancel,
            json!({"reason": long(501)}),
            vec![],
            400,
            "reason longer than 500 characters",
        ),
        (
            &cancel,
            json!({}),
            vec![("x-correlation-id", long(65))],
            400,
            "X-Correlation-Id: correlation id longer than 64 bytes",
        ),
    ];
    for (path, body, headers, status, says) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (got, answer, _) = post(&env, &order, path, &body, &headers).await?;
        assert_eq!(got, status, "{path} {says}: {answer}");
        let error = answer["error"].as_str().unwrap_or("");
        assert!(
            error.contains(says),
            "{path}: {error:?} should say {says:?}"
        );
    }
    for (query, says) in [
        (
            "offset=18446744073709551615",
            "offset must be an integer from 0 to 1000000000",
        ),
        ("offset=-1", "offset must be"),
        ("limit=lots", "limit must be"),
        ("status=NOPE", "unknown status"),
    ] {
        let answer = env
            .http()
            .get(order.url(&format!("/orders?{query}")))
            .send()
            .await?;
        assert_eq!(answer.status().as_u16(), 400, "{query}");
        let body: Value = answer.json().await?;
        assert!(
            body["error"].as_str().unwrap_or("").contains(says),
            "{query}: {body}"
        );
    }
    // Nothing of it was stored, and the service still serves.
    assert_eq!(order_count(&env, &order).await?, 1);
    let view = env.order(&order, &id).await?;
    assert_eq!(view.order.status, OrderStatus::Placed);
    Ok(())
}
