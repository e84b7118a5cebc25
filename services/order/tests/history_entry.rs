//! `lua/transition.lua` edits an order's history entry with Redis's cjson (decode, set the
//! status, `applied` and the status event's id, encode). The line it stores must keep the shape every reader expects:
//! the very fields and values order-svc writes itself, read back by serde as a `HistoryEntry`.
//! Against the real Redis (REDIS_URL, or the local one), under a prefix of its own.

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use saga_domain::events::{EventMeta, EventType, InventoryOutcome};
use saga_domain::ids::{Item, Qty};
use saga_domain::lines::{Lines, ReservedLine};
use saga_domain::order::{HistoryEntry, OrderStatus};
use saga_platform::amqp::BrokerStatus;
use saga_platform::redis::store::{self, Keys};
use serde_json::Value;

use order_svc::lifecycle::Windows;
use order_svc::orders::{Applied, NewOrder, OrderStore, Placed};
use order_svc::outbox::Outbox;

#[tokio::test]
async fn an_applied_outcome_is_recorded_with_the_fields_order_svc_writes() -> anyhow::Result<()> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let redis = store::connect(&url)?;
    let prefix = format!("test-history-{}", uuid_like());
    let keys = Keys::new(&prefix);
    let outbox = Arc::new(Outbox::new(1_000, Arc::new(BrokerStatus::default())));
    let orders = OrderStore::new(
        redis.clone(),
        keys.clone(),
        outbox,
        Duration::from_secs(60),
        Windows::default(),
    );

    let new = NewOrder {
        lines: Lines::single(Item::parse("burger")?, Qty::parse(2)?),
        student_id: None,
        owner: None,
    };
    let Placed::New(order) = orders
        .place(new, None, None, &saga_domain::trace::Trace::root())
        .await?
    else {
        anyhow::bail!("a first order cannot be a replay");
    };
    let reserved = InventoryOutcome::Reserved {
        order_id: order.order_id.clone(),
        lines: vec![ReservedLine {
            item: Item::parse("burger")?,
            qty: Qty::parse(2)?,
            remaining: 8,
        }],
        student_id: None,
    };
    let meta = EventMeta::new(EventType::InventoryReserved, "corr-1", "inventory-svc");
    // The first came in a Go bus Event: its word on the sender goes into the timeline line.
    let envelope = [
        ("tenant_id".to_owned(), "t-42".to_owned()),
        ("shape".to_owned(), "Go bus Event".to_owned()),
    ];
    let first = orders.apply(&reserved, &meta, false, &envelope).await?;
    let again = orders.apply(&reserved, &meta, true, &[]).await?;

    let lines: Vec<String> = redis
        .clone()
        .lrange(keys.order_history(order.order_id.as_str()), 0, -1)
        .await?;
    // The outbox: OrderPlaced, then the move's status event (one: the duplicate moved nothing).
    let outbox: redis::streams::StreamRangeReply = redis.clone().xrange_all(keys.outbox()).await?;
    let events: Vec<(String, String, String)> = outbox
        .ids
        .iter()
        .map(|e| {
            let field = |k: &str| e.get::<String>(k).unwrap_or_default();
            (field("type"), field("event_id"), field("body"))
        })
        .collect();
    let _: () = redis::cmd("DEL")
        .arg(keys.deadlines())
        .arg(keys.order(order.order_id.as_str()))
        .arg(keys.order_history(order.order_id.as_str()))
        .arg(keys.outbox())
        .arg(keys.orders())
        .arg(format!(
            "{}{}",
            keys.orders_by_status_prefix(),
            OrderStatus::Placed
        ))
        .arg(format!(
            "{}{}",
            keys.orders_by_status_prefix(),
            OrderStatus::Confirmed
        ))
        .query_async(&mut redis.clone())
        .await?;

    assert_eq!(
        (first, again),
        (
            Applied::Moved {
                from: OrderStatus::Placed,
                to: OrderStatus::Confirmed
            },
            Applied::Unchanged(OrderStatus::Confirmed)
        )
    );
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(events.len(), 2, "{events:?}");
    let (kind, status_event_id, body) = &events[1];
    assert_eq!(kind, "OrderStatusUpdated");
    let body: Value = serde_json::from_str(body)?;
    assert_eq!(
        (
            &body["old_status"],
            &body["new_status"],
            &body["updated_by"]
        ),
        (
            &Value::from("PLACED"),
            &Value::from("CONFIRMED"),
            &Value::from("inventory-svc")
        )
    );
    // What order-svc itself would have written for each line, field for field.
    let expected = |redelivered: bool, applied: bool, envelope: &[(String, String)]| HistoryEntry {
        at: 0,
        status: OrderStatus::Confirmed,
        event: Some(EventType::InventoryReserved),
        event_id: meta.event_id.clone(),
        service: "inventory-svc".into(),
        redelivered,
        applied,
        reason: None,
        status_event_id: applied.then(|| status_event_id.clone()),
        envelope: envelope.iter().cloned().collect(),
    };
    for (line, want) in lines[1..]
        .iter()
        .zip([expected(false, true, &envelope), expected(true, false, &[])])
    {
        let mut stored: Value = serde_json::from_str(line)?;
        let at = stored["at"].take();
        assert!(at.as_u64().is_some_and(|ms| ms > 0), "{line}");
        stored["at"] = 0.into();
        assert_eq!(stored, serde_json::to_value(&want)?, "{line}");
        assert!(serde_json::from_str::<HistoryEntry>(line).is_ok(), "{line}");
    }
    Ok(())
}

/// A prefix no other run shares (time and process id are enough on one machine).
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}", std::process::id())
}
