//! The retry policy against real RabbitMQ and Redis: a handler failure that is not an outage is
//! retried a bounded number of times through the broker-side retry queue, then dead-lettered with
//! its reason and attempt count; fixing the data and replaying completes the order. A message
//! waiting in the retry queue survives `kill -9` of its service.

use std::time::Duration;

use harness::http::metric;
use harness::process::bin_dir;
use harness::{TestEnv, eventually};
use redis::AsyncCommands;
use saga_domain::order::OrderStatus;
use saga_platform::amqp::topology::Topology;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

/// An env whose services retry twice, 300 ms apart, and whose pizza stock is corrupt.
async fn env_with_corrupt_pizza(test: &str, delay: &str) -> anyhow::Result<TestEnv> {
    let mut env = TestEnv::with_stock(test, "pizza=5,burger=5").await?;
    env.service_env
        .insert("RABBITMQ_RETRY_COUNT".into(), "2".into());
    env.service_env
        .insert("RABBITMQ_RETRY_DELAY".into(), delay.into());
    Ok(env)
}

/// What an operator's slip does: a stock value that is not a number. The reservation script
/// then fails on every attempt (`attempt to compare nil with number`), which no waiting cures.
async fn corrupt_pizza(env: &TestEnv) -> anyhow::Result<()> {
    let mut redis = env.redis().await?;
    let () = redis.hset(env.keys.stock(), "pizza", "abc").await?;
    Ok(())
}

async fn fix_pizza(env: &TestEnv) -> anyhow::Result<()> {
    let mut redis = env.redis().await?;
    let () = redis.hset(env.keys.stock(), "pizza", 5).await?;
    Ok(())
}

/// The DLQ's messages, peeked through the management API (they stay in the queue).
async fn peek_dlq(env: &TestEnv) -> anyhow::Result<Vec<Value>> {
    let path = format!("queues/{}/{}/get", env.vhost, env.topology.dlq_queue);
    let r = env
        .management(reqwest::Method::POST, &path)
        .json(&json!({"count": 10, "ackmode": "ack_requeue_true", "encoding": "auto"}))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "peek: {}", r.status());
    Ok(r.json().await?)
}

/// The one message the DLQ holds, once it is there (peeked: it stays).
async fn the_one_in_the_dlq(env: &TestEnv, what: &str) -> anyhow::Result<Value> {
    eventually(what, T, || async {
        let peeked = peek_dlq(env).await.map_err(|e| e.to_string())?;
        match peeked.as_slice() {
            [one] => Ok(one.clone()),
            other => Err(format!("{} messages", other.len())),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_failure_is_retried_then_dead_lettered_and_replay_completes_it()
-> anyhow::Result<()> {
    let env = env_with_corrupt_pizza("retry-dlq", "300ms").await?;
    let (order, inv, _notif) = env.start_all().await?;
    corrupt_pizza(&env).await?;

    let stuck = env.place(&order, "pizza", 1).await?;
    // Orders for other items flow while the pizza order is being retried.
    let fine = env.place(&order, "burger", 2).await?;
    let o = env.wait_final(&order, &fine, T).await?;
    assert_eq!(o.order.status, OrderStatus::Confirmed, "{o:?}");

    let dead = the_one_in_the_dlq(&env, "the failing order in the DLQ").await?;
    let headers = &dead["properties"]["headers"];
    let reason = headers["x-dlq-reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("compare"),
        "the reason is the script's own error: {headers}"
    );
    assert_eq!(headers["x-dlq-attempts"], "3", "1 attempt + 2 retries");
    assert_eq!(headers["x-dlq-service"], "inventory-svc");
    assert_eq!(headers["x-original-routing-key"], "order.placed");
    let body: Value = serde_json::from_str(dead["payload"].as_str().unwrap_or("{}"))?;
    assert_eq!(body["order_id"], stuck.as_str(), "the body is unchanged");

    // The order waits, and its timeline shows the hop.
    let o = env
        .get_order(&order, &stuck)
        .await?
        .expect("the order exists");
    assert_eq!(o.order.status, OrderStatus::Placed);
    let hops = &o.dlq_hops;
    assert_eq!(hops.len(), 1, "{o:?}");
    assert!(hops[0].reason.contains("compare"));
    assert_eq!(
        env.depth(&Topology::retry_queue(&env.topology.inventory_queue))
            .await?,
        0
    );

    // Retried in the broker, counted, and said once in the log.
    let page = env
        .http()
        .get(inv.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let queue = "queue=\"inventory_queue\"";
    assert_eq!(
        metric(&page, "saga_retries_total", &[queue, "kind=\"delayed\""]),
        2.0
    );
    assert_eq!(metric(&page, "saga_retry_give_ups_total", &[queue]), 1.0);
    let gave_up = format!("Gave up on order {stuck} after 3 attempts");
    assert_eq!(inv.log().iter().filter(|l| l.contains(&gave_up)).count(), 1);

    // The operator fixes the data and replays: the order completes normally.
    fix_pizza(&env).await?;
    let out = env.sagactl(&[], &["dlq", "replay", "1"]).await?;
    assert!(
        out.status.success(),
        "sagactl dlq replay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o = env.wait_final(&order, &stuck, T).await?;
    assert_eq!(o.order.status, OrderStatus::Confirmed, "{o:?}");
    assert_eq!(env.depth(&env.topology.dlq_queue).await?, 0);
    assert_eq!(env.stock("pizza").await?, Some(4));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_waiting_in_the_retry_queue_survives_kill9_of_its_service() -> anyhow::Result<()>
{
    // Long enough a wait that the kill certainly lands while the message is parked.
    let env = env_with_corrupt_pizza("retry-kill9", "4s").await?;
    let (order, mut inv, _notif) = env.start_all().await?;
    corrupt_pizza(&env).await?;

    let id = env.place(&order, "pizza", 2).await?;
    let retry_queue = Topology::retry_queue(&env.topology.inventory_queue);
    env.until_depth("the order parked in the retry queue", &retry_queue, 1, T)
        .await?;
    inv.kill9().await;
    // While nobody consumes, the data is fixed; the parked message comes back by itself.
    fix_pizza(&env).await?;
    inv.restart().await?;

    let o = env.wait_final(&order, &id, T).await?;
    assert_eq!(o.order.status, OrderStatus::Confirmed, "{o:?}");
    assert_eq!(env.stock("pizza").await?, Some(3));
    assert_eq!(
        env.depth(&env.topology.dlq_queue).await?,
        0,
        "nothing dead-lettered"
    );
    assert_eq!(env.depth(&retry_queue).await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_retry_settings_exit_with_one_readable_line() -> anyhow::Result<()> {
    for (name, value) in [
        ("RABBITMQ_RETRY_DELAY", "5"),
        ("RABBITMQ_RETRY_DELAY", "2h"),
        ("RABBITMQ_RETRY_COUNT", "-1"),
        ("RABBITMQ_RETRY_COUNT", "many"),
    ] {
        let out = std::process::Command::new(bin_dir().join("inventory-svc"))
            .env(name, value)
            .env("HTTP_ADDR", "127.0.0.1:0")
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}={value}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{name}={value}: {stderr}");
        assert!(stderr.contains("retry"), "{name}={value}: {stderr}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parked_message_whose_work_queue_is_gone_when_its_delay_ends_is_not_lost()
-> anyhow::Result<()> {
    let env = env_with_corrupt_pizza("retry-no-work-queue", "1s").await?;
    let (mut order, mut inv, mut notif) = env.start_all().await?;
    corrupt_pizza(&env).await?;
    let id = env.place(&order, "pizza", 1).await?;
    let inventory = env.topology.inventory_queue.clone();
    let (retry_queue, way_back) = (
        Topology::retry_queue(&inventory),
        Topology::retry_due_queue(&inventory),
    );
    env.until_depth("the order parked in the retry queue", &retry_queue, 1, T)
        .await?;
    // Nobody runs (every service declares the topology, so any of them would put the work
    // queue back), and the operator deletes the work queue while the message waits.
    for service in [&mut order, &mut inv, &mut notif] {
        service.kill9().await;
    }
    let r = env
        .management(
            reqwest::Method::DELETE,
            &format!("queues/{}/{inventory}", env.vhost),
        )
        .send()
        .await?;
    assert!(
        r.status().is_success(),
        "DELETE {inventory}: {}",
        r.status()
    );
    // The delay ends with the work queue still gone: the message waits on the way back.
    env.until_depth("the message on the retry queue's way back", &way_back, 1, T)
        .await?;
    assert!(
        env.depth(&inventory).await.is_err(),
        "the work queue is still gone"
    );

    fix_pizza(&env).await?;
    for service in [&mut order, &mut inv, &mut notif] {
        service.restart().await?;
    }
    let o = env.wait_final(&order, &id, T).await?;
    assert_eq!(o.order.status, OrderStatus::Confirmed, "{o:?}");
    assert_eq!(env.stock("pizza").await?, Some(4));
    assert_eq!(env.depth(&env.topology.dlq_queue).await?, 0);
    assert_eq!(env.depth(&way_back).await?, 0);
    Ok(())
}

/// A forged, malformed `x-death` on a message that then fails: RabbitMQ 3.10 crashes the queue
/// that dead-letters a message with such an `x-death`, so a parked copy carrying it would
/// crash-loop the retry queue. The parked copy leaves the sender's `x-death` out (the broker
/// writes its own): the message goes round its retries and reaches the DLQ like any other.
#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_x_death_does_not_stop_the_retries() -> anyhow::Result<()> {
    use lapin::BasicProperties;
    use lapin::options::BasicPublishOptions;
    use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString};

    let env = env_with_corrupt_pizza("retry-bad-death", "300ms").await?;
    let inv = env.start(harness::ServiceKind::Inventory).await?;
    inv.wait_ready(T).await?;
    env.seeded_stock("pizza").await?;
    corrupt_pizza(&env).await?;

    let mut headers = FieldTable::default();
    headers.insert(
        "x-death".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![
            AMQPValue::Boolean(true),
            AMQPValue::LongString(LongString::from(b"not a table".to_vec())),
        ])),
    );
    let body = json!({"order_id": "bad-death-1", "item": "pizza", "qty": 1}).to_string();
    let (conn, channel) = env.channel().await?;
    let confirm = channel
        .basic_publish(
            env.topology.exchange.as_str().into(),
            "order.placed".into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default()
                .with_headers(headers)
                .with_delivery_mode(2),
        )
        .await?
        .await?;
    anyhow::ensure!(confirm.is_ack(), "publish not confirmed");
    let _ = conn.close(200, "done".into()).await;

    let dead = the_one_in_the_dlq(&env, "the failing order in the DLQ after its retries").await?;
    let headers = &dead["properties"]["headers"];
    assert_eq!(
        headers["x-dlq-attempts"], "3",
        "1 attempt + 2 retries: {headers}"
    );
    assert_eq!(dead["payload"], body, "the body is unchanged");
    assert_eq!(
        env.depth(&Topology::retry_queue(&env.topology.inventory_queue))
            .await?,
        0
    );
    Ok(())
}
