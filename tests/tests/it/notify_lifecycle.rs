//! notification-svc tells an order's whole life once per (order, outcome), against real RabbitMQ
//! and Redis: status events (`order.status.updated`) published by hand, as order-svc's relay
//! publishes them, duplicates included, beside inventory's outcomes; and what it records is
//! bounded in time (the sent marks expire after ORDER_RETENTION + DEDUPE_WINDOW).

use std::time::Duration;

use harness::http::metric;
use harness::{ServiceKind, TestEnv, eventually};
use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use redis::AsyncCommands;
use saga_domain::events::EventType;
use serde_json::Value;

const T: Duration = Duration::from_secs(20);

/// A status event's body, exactly as the contract spells it (`reason` only when present).
fn status_body(order: &str, old: &str, new: &str, reason: Option<&str>) -> Vec<u8> {
    let reason = reason.map_or(String::new(), |r| format!(r#","reason":"{r}""#));
    format!(
        r#"{{"order_id":"{order}","old_status":"{old}","new_status":"{new}","updated_by":"api"{reason},"at":1700000000000}}"#
    )
    .into_bytes()
}

/// Publish one event with the properties every event of ours carries (message id = event id,
/// type, app id), confirmed. Publishing the same `event_id` twice is what a relay that crashed
/// before its confirm does.
async fn publish(
    env: &TestEnv,
    channel: &lapin::Channel,
    kind: EventType,
    event_id: &str,
    body: &[u8],
) -> anyhow::Result<()> {
    let confirm = channel
        .basic_publish(
            env.topology.exchange.as_str().into(),
            kind.routing_key().into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default()
                .with_message_id(event_id.into())
                .with_type(kind.name().into())
                .with_app_id("order-svc".into())
                .with_correlation_id(event_id.into())
                .with_delivery_mode(2),
        )
        .await?
        .await?;
    anyhow::ensure!(confirm.is_ack(), "{event_id} not confirmed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_whole_life_is_told_once_per_order_and_outcome() -> anyhow::Result<()> {
    let env = TestEnv::new("notify-life").await?;
    let sink = std::env::temp_dir().join(format!("{}-notifications.jsonl", env.prefix));
    let sink_spec = format!("file:{}", sink.display());
    // A window of its own (10 min + 20 min), to see that the service reads it.
    let notif = env
        .start_with(
            ServiceKind::Notification,
            &[
                ("NOTIFY_SINK", sink_spec.as_str()),
                ("ORDER_RETENTION", "10m"),
                ("DEDUPE_WINDOW", "20m"),
            ],
        )
        .await?;
    let (conn, channel) = env.channel().await?;

    // life-a: shipped, then delivered, each published twice.
    let shipped = status_body("life-a", "CONFIRMED", "SHIPPED", None);
    let delivered = status_body("life-a", "SHIPPED", "DELIVERED", None);
    for _ in 0..2 {
        publish(
            &env,
            &channel,
            EventType::OrderStatusUpdated,
            "ev-a-1",
            &shipped,
        )
        .await?;
    }
    for _ in 0..2 {
        publish(
            &env,
            &channel,
            EventType::OrderStatusUpdated,
            "ev-a-2",
            &delivered,
        )
        .await?;
    }
    // life-b: inventory says failed, and the order's status event says so too: one piece of news.
    let no_stock = br#"{"order_id":"life-b","item":"burger","qty":2,"student_id":"s-7","reason":"insufficient stock: 2 wanted, 0 left","code":"insufficient_stock","status":"FAILED"}"#;
    publish(
        &env,
        &channel,
        EventType::InventoryFailed,
        "ev-b-1",
        no_stock,
    )
    .await?;
    let failed = status_body("life-b", "PLACED", "FAILED", Some("insufficient stock"));
    publish(
        &env,
        &channel,
        EventType::OrderStatusUpdated,
        "ev-b-2",
        &failed,
    )
    .await?;
    // life-c: a cancel under way tells nobody anything yet.
    let cancelling = status_body("life-c", "CONFIRMED", "CANCELLING", None);
    publish(
        &env,
        &channel,
        EventType::OrderStatusUpdated,
        "ev-c-1",
        &cancelling,
    )
    .await?;
    let _ = conn.close(200, "published".into()).await;

    // Every one of the seven deliveries settled (the metrics are this process's alone). A
    // duplicate that came while its twin was at the sink found the claim busy and waited its
    // turn (a `retried` in place), so only processed and duplicate count as settled.
    let count = |page: &str, outcome: &str| {
        metric(
            page,
            "saga_consumed_total",
            &["notification_queue", &format!("outcome=\"{outcome}\"")],
        )
    };
    let page = eventually("all seven deliveries settled", T, || async {
        let page = env
            .get_text(&notif.url("/metrics"))
            .await
            .map_err(|e| e.to_string())?;
        let settled = count(&page, "processed") + count(&page, "duplicate");
        if settled >= 7.0 {
            Ok(page)
        } else {
            Err(format!("{settled} settled"))
        }
    })
    .await?;
    assert_eq!(
        (count(&page, "processed"), count(&page, "duplicate")),
        (4.0, 3.0),
        "shipped, delivered, failed and CANCELLING processed; three duplicates: {page}"
    );
    assert_eq!(count(&page, "dead_lettered"), 0.0, "{page}");

    let outcomes = |notes: Vec<Value>| -> Vec<String> {
        let mut seen: Vec<String> = notes
            .iter()
            .map(|n| n["outcome"].as_str().unwrap_or("?").to_owned())
            .collect();
        seen.sort();
        seen
    };
    assert_eq!(
        outcomes(env.notifications_for("life-a").await?),
        ["delivered", "shipped"]
    );
    let b = env.notifications_for("life-b").await?;
    assert_eq!(outcomes(b.clone()), ["failed"], "{b:?}");
    assert!(
        b[0]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Order life-b failed: insufficient stock")),
        "{b:?}"
    );
    assert!(env.notifications_for("life-c").await?.is_empty());
    assert_eq!(env.notification_count().await?, 3);

    // The sink got the same three, once each.
    let lines = std::fs::read_to_string(&sink)?;
    let _ = std::fs::remove_file(&sink);
    let mut told: Vec<(String, String)> = lines
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|n| {
            (
                n["order_id"].as_str().unwrap_or("?").to_owned(),
                n["outcome"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect();
    told.sort();
    let want = [
        ("life-a", "delivered"),
        ("life-a", "shipped"),
        ("life-b", "failed"),
    ]
    .map(|(o, n)| (o.to_owned(), n.to_owned()));
    assert_eq!(told, want, "{lines}");

    // Every sent mark expires: after ORDER_RETENTION + DEDUPE_WINDOW = 30 min, no sooner.
    let mut redis = env.redis().await?;
    for (order, outcome) in &want {
        let key = env.keys.notified(order, outcome);
        let value: Option<String> = redis.get(&key).await?;
        assert_eq!(value.as_deref(), Some("sent"), "{key}");
        let ttl_ms: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut redis).await?;
        assert!(
            (29 * 60_000..=30 * 60_000).contains(&ttl_ms),
            "{key} expires in {ttl_ms} ms, want about 30 min"
        );
    }
    for outcome in ["reserved", "failed", "released", "shipped", "delivered"] {
        let key = env.keys.notified("life-c", outcome);
        assert!(!redis.exists::<_, bool>(&key).await?, "{key} claimed");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_answer_to_an_order_told_failed_is_no_news() -> anyhow::Result<()> {
    let env = TestEnv::new("notify-late").await?;
    let notif = env.start(ServiceKind::Notification).await?;
    let (conn, channel) = env.channel().await?;
    // The order's deadline passed: order-svc failed it (reason timeout) and sent a cancel.
    let failed = status_body("late-a", "PLACED", "FAILED", Some("timeout"));
    publish(
        &env,
        &channel,
        EventType::OrderStatusUpdated,
        "ev-late-1",
        &failed,
    )
    .await?;
    eventually("the failure told", T, || async {
        match env.notifications_for("late-a").await {
            Ok(notes) if !notes.is_empty() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    // Then inventory, back from an outage, reserves late, and the timeout's cancel releases it.
    let reserved = br#"{"order_id":"late-a","item":"burger","qty":1,"student_id":null,"remaining":9,"status":"RESERVED"}"#;
    publish(
        &env,
        &channel,
        EventType::InventoryReserved,
        "ev-late-2",
        reserved,
    )
    .await?;
    let released = br#"{"order_id":"late-a","item":"burger","qty":1,"status":"RELEASED"}"#;
    publish(
        &env,
        &channel,
        EventType::InventoryReleased,
        "ev-late-3",
        released,
    )
    .await?;
    let _ = conn.close(200, "published".into()).await;
    // All three deliveries processed (this process's own metrics): the failure told, the two
    // late answers looked at and found to be no news.
    eventually("all three deliveries processed", T, || async {
        let page = env
            .get_text(&notif.url("/metrics"))
            .await
            .map_err(|e| e.to_string())?;
        let processed = metric(
            &page,
            "saga_consumed_total",
            &["notification_queue", "outcome=\"processed\""],
        );
        if processed >= 3.0 {
            Ok(())
        } else {
            Err(format!("{processed} processed"))
        }
    })
    .await?;
    let mut redis = env.redis().await?;
    for outcome in ["reserved", "released"] {
        let key = env.keys.notified("late-a", outcome);
        assert!(!redis.exists::<_, bool>(&key).await?, "{key} claimed");
    }
    let notes = env.notifications_for("late-a").await?;
    assert_eq!(notes.len(), 1, "only the failure is told: {notes:?}");
    assert_eq!(notes[0]["outcome"], "failed");
    Ok(())
}
