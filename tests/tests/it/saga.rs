//! The saga end to end, against real RabbitMQ and Redis, each test in its own vhost and prefix.

use std::time::Duration;

use harness::broker::consume_n;
use harness::orders::timeline;
use harness::{ServiceKind, TestEnv, eventually};
use saga_domain::order::OrderStatus;
use serde_json::json;

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread")]
async fn happy_path_confirms_reserves_and_notifies_once() -> anyhow::Result<()> {
    let env = TestEnv::new("happy").await?;
    let (order, _inv, _notif) = env.start_all_in_process().await?;
    let before = env.seeded_stock("burger").await?;

    let id = env.place(&order, "burger", 3).await?;
    let o = env.wait_final(&order, &id, T).await?;
    assert_eq!(o.order.status, OrderStatus::Confirmed, "{o:?}");
    assert_eq!(env.stock("burger").await?, Some(before - 3));
    let history = timeline(&o);
    assert_eq!(history, [OrderStatus::Placed, OrderStatus::Confirmed]);

    let notes = eventually("one notification", T, || async {
        let n = env
            .notifications_for(&id)
            .await
            .map_err(|e| e.to_string())?;
        if n.is_empty() {
            Err("none yet".into())
        } else {
            Ok(n)
        }
    })
    .await?;
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["outcome"], "reserved");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_item_and_insufficient_stock_fail_with_a_reason() -> anyhow::Result<()> {
    let env = TestEnv::with_stock("biz-fail", "sushi=2").await?;
    let (order, _inv, _notif) = env.start_all_in_process().await?;

    let unknown = env.place(&order, "kebab", 1).await?;
    let too_many = env.place(&order, "sushi", 3).await?;
    let o = env.wait_final(&order, &unknown, T).await?;
    assert_eq!(o.order.status, OrderStatus::Failed);
    assert!(
        o.order.reason.as_deref().unwrap().contains("unknown item"),
        "{o:?}"
    );
    let o = env.wait_final(&order, &too_many, T).await?;
    assert_eq!(o.order.status, OrderStatus::Failed);
    assert!(
        o.order
            .reason
            .as_deref()
            .unwrap()
            .contains("insufficient stock"),
        "{o:?}"
    );
    assert_eq!(
        env.stock("sushi").await?,
        Some(2),
        "a failed order takes nothing"
    );
    assert_eq!(
        env.depth(&env.topology.dlq_queue).await?,
        0,
        "business failures are not poison"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_order_placed_twice_reserves_once_and_re_emits_the_same_event()
-> anyhow::Result<()> {
    let env = TestEnv::new("idempotency").await?;
    env.tap("tap_reserved", &["inventory.reserved"]).await?;
    let mut inv = env.start(ServiceKind::Inventory).await?;
    let before = env.seeded_stock("burger").await?;

    // Exactly the lab's bare message, published twice with no AMQP properties.
    let body = br#"{"order_id":"dup-1","item":"burger","qty":5,"student_id":"s1"}"#;
    env.publish_bare("order.placed", body).await?;
    env.publish_bare("order.placed", body).await?;

    let (_conn, channel) = env.channel().await?;
    let events = tokio::time::timeout(T, consume_n(&channel, "tap_reserved", 2)).await??;
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[0].message_id(),
        events[1].message_id(),
        "the duplicate re-emits the recorded event id"
    );
    assert!(events[0].message_id().is_some());
    assert_eq!(events[0].json()["order_id"], "dup-1");
    assert_eq!(
        env.stock("burger").await?,
        Some(before - 5),
        "stock moved once"
    );
    assert!(
        inv.log_contains("duplicate"),
        "the duplicate is visible in the log"
    );

    // Both deliveries were acked: after a clean stop nothing returns to the queue.
    let status = inv.terminate(Duration::from_secs(15)).await?;
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    assert_eq!(env.depth(&env.topology.inventory_queue).await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn poison_goes_to_the_dlq_with_its_reason_and_does_not_block() -> anyhow::Result<()> {
    let env = TestEnv::new("dlq").await?;
    let (order, _inv, _notif) = env.start_all_in_process().await?;
    let poison: [(&[u8], &str); 4] = [
        (
            br#"{"order_id":"p1","item":"burger"}"#,
            "missing required field qty",
        ),
        (
            br#"{"order_id":"p2","item":"burger","qty":0}"#,
            "qty must be at least 1",
        ),
        (
            br#"{"order_id":"p3","item":"burger","qty":"two"}"#,
            "qty must be an integer",
        ),
        (b"this is not json at all", "not valid JSON"),
    ];
    for (body, _) in &poison {
        env.publish_bare("order.placed", body).await?;
    }
    let good = env.place(&order, "pizza", 1).await?;
    assert_eq!(
        env.wait_final(&order, &good, T).await?.order.status,
        OrderStatus::Confirmed,
        "the valid order behind them is served"
    );

    let dlq = &env.topology.dlq_queue;
    env.until_depth("4 messages in the DLQ", dlq, 4, T).await?;
    let taken = env.take_all(dlq).await?;
    for (body, reason) in poison {
        let m = taken
            .iter()
            .find(|m| m.body == body)
            .unwrap_or_else(|| panic!("{:?} not in DLQ", String::from_utf8_lossy(body)));
        let why = m.header("x-dlq-reason").unwrap_or_default();
        assert!(
            why.contains(reason),
            "reason {why:?} should mention {reason:?}"
        );
        assert_eq!(m.header("x-dlq-service").as_deref(), Some("inventory-svc"));
        assert_eq!(
            m.header("x-original-exchange").as_deref(),
            Some("order_events")
        );
        assert_eq!(
            m.header("x-original-routing-key").as_deref(),
            Some("order.placed")
        );
        assert!(m.header("x-dlq-at").is_some());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_waits_in_the_queue_and_drains_when_inventory_returns() -> anyhow::Result<()> {
    let env = TestEnv::new("backlog").await?;
    let order = env.start(ServiceKind::Order).await?;
    let _notif = env.start(ServiceKind::Notification).await?;

    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(env.place(&order, "salad", 1).await?);
    }
    let queue = env.topology.inventory_queue.clone();
    env.until_depth("20 orders waiting in inventory_queue", &queue, 20, T)
        .await?;

    let _inv = env.start(ServiceKind::Inventory).await?;
    env.until_depth("inventory_queue drained", &queue, 0, T)
        .await?;
    for id in &ids {
        assert_eq!(
            env.wait_final(&order, id, T).await?.order.status,
            OrderStatus::Confirmed
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_http_input_gets_a_json_4xx_and_the_service_keeps_serving() -> anyhow::Result<()> {
    let env = TestEnv::new("http-bad").await?;
    let order = env.start(ServiceKind::Order).await?;
    let http = env.http();
    let url = order.url("/order");
    let big = format!(
        r#"{{"item":"burger","qty":1,"pad":"{}"}}"#,
        "x".repeat(1 << 20)
    );
    let cases: Vec<(&str, String, u16)> = vec![
        ("invalid JSON", "{not json".into(), 400),
        ("missing item", r#"{"qty":1}"#.into(), 400),
        ("missing qty", r#"{"item":"burger"}"#.into(), 400),
        (
            "qty as text",
            r#"{"item":"burger","qty":"two"}"#.into(),
            400,
        ),
        ("item as number", r#"{"item":5,"qty":1}"#.into(), 400),
        ("qty zero", r#"{"item":"burger","qty":0}"#.into(), 400),
        ("qty negative", r#"{"item":"burger","qty":-4}"#.into(), 400),
        (
            "qty absurd",
            r#"{"item":"burger","qty":1000000}"#.into(),
            400,
        ),
        (
            "qty fractional",
            r#"{"item":"burger","qty":1.5}"#.into(),
            400,
        ),
        ("not an object", "[1,2,3]".into(), 400),
        ("1 MiB body", big, 413),
    ];
    for (what, body, expected) in cases {
        let r = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        assert_eq!(r.status().as_u16(), expected, "{what}");
        let json: serde_json::Value = r.json().await?;
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: {json}"
        );
    }
    let r = http
        .post(&url)
        .header("content-type", "text/plain")
        .body(r#"{"item":"burger","qty":1}"#)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 415);
    let r = http.get(order.url("/order/no-such-order")).send().await?;
    assert_eq!(r.status().as_u16(), 404);
    assert!(r.json::<serde_json::Value>().await?["error"].is_string());
    let r = http.get(order.url("/order/bad%20id")).send().await?;
    assert_eq!(r.status().as_u16(), 400);
    let r = http.get(order.url("/orders?limit=lots")).send().await?;
    assert_eq!(r.status().as_u16(), 400);
    let r = http.get(order.url("/nowhere")).send().await?;
    assert_eq!(r.status().as_u16(), 404);
    assert!(r.json::<serde_json::Value>().await?["error"].is_string());

    // Still serving.
    let (status, body) = env.post_order(&order, "burger", 1).await?;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], OrderStatus::Placed.as_str());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn with_stock_s_and_n_greater_unit_orders_exactly_s_confirm() -> anyhow::Result<()> {
    const S: usize = 7;
    const N: usize = 25;
    let env = TestEnv::with_stock("conservation", &format!("widget={S}")).await?;
    let (order, _inv, _notif) = env.start_all_in_process().await?;
    let placed =
        futures_util::future::join_all((0..N).map(|_| env.place(&order, "widget", 1))).await;
    let ids: Vec<String> = placed.into_iter().collect::<Result<_, _>>()?;
    let mut confirmed = 0;
    for id in &ids {
        let o = env.wait_final(&order, id, T).await?;
        if o.order.status == OrderStatus::Confirmed {
            confirmed += 1;
        } else {
            assert_eq!(o.order.status, OrderStatus::Failed);
        }
    }
    assert_eq!(confirmed, S);
    assert_eq!(env.stock("widget").await?, Some(0));
    let listed = env
        .get_json(&order.url(&format!(
            "/orders?status={}&limit=1000",
            OrderStatus::Confirmed.as_str()
        )))
        .await?;
    assert_eq!(listed["total"], json!(S));
    // A plain GET /orders is the classic lab's list: a bare array (its drills read it so).
    let plain = env.get_json(&order.url("/orders")).await?;
    assert_eq!(plain.as_array().map(Vec::len), Some(ids.len()), "{plain}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn lab_scripts_can_declare_the_queues_plainly() -> anyhow::Result<()> {
    let env = TestEnv::new("lab-compat").await?;
    let _inv = env.start(ServiceKind::Inventory).await?;
    let (_conn, channel) = env.channel().await?;
    // What pika's `queue_declare(queue=..., durable=True)` sends: no arguments. A 406 would fail here.
    for queue in env.topology.queues() {
        channel
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions::durable(),
                Default::default(),
            )
            .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_setting_exits_non_zero_with_one_readable_line() -> anyhow::Result<()> {
    for (bin, var, value) in [
        ("order-svc", "RABBITMQ_PREFETCH", "lots"),
        ("inventory-svc", "RABBITMQ_URL", "http://nope"),
        ("notification-svc", "NOTIFY_SINK", "pigeon"),
        ("inventory-svc", "INITIAL_STOCK", "burger=-1"),
    ] {
        let out = std::process::Command::new(harness::process::bin_dir().join(bin))
            .env(var, value)
            .output()?;
        assert!(
            !out.status.success(),
            "{bin} with {var}={value} should fail"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{bin}: {stderr}");
        assert!(stderr.contains("error"), "{stderr}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_each_service_cleanly() -> anyhow::Result<()> {
    let env = TestEnv::new("sigterm").await?;
    let (mut o, mut i, mut n) = env.start_all().await?;
    for svc in [&mut o, &mut i, &mut n] {
        let status = svc.terminate(Duration::from_secs(15)).await?;
        assert!(status.success(), "{:?} exited with {status}", svc.kind);
        assert!(
            svc.log_contains("stopped"),
            "{:?}: {:?}",
            svc.kind,
            svc.log_tail(5)
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_burst_past_the_high_water_mark_the_outbox_drains_and_orders_are_taken_again()
-> anyhow::Result<()> {
    const N: usize = 400;
    let env = TestEnv::with_stock("burst", &format!("widget={N}")).await?;
    // A low mark, so the burst keeps the front door pushing back and the relay's batches
    // (confirmed and deleted concurrently) overlap.
    let order = env
        .start_with(ServiceKind::Order, &[("OUTBOX_HIGH_WATER", "20")])
        .await?;
    let _inv = env.start(ServiceKind::Inventory).await?;
    let _notif = env.start(ServiceKind::Notification).await?;

    let load = harness::load::place_orders(order.url(""), "widget", N, 32, T).await;
    assert_eq!(load.accepted.len(), N, "every order is taken in the end");

    eventually("no order still placed", T, || async {
        let listed = env
            .get_json(&order.url(&format!(
                "/orders?status={}&limit=1",
                OrderStatus::Placed.as_str()
            )))
            .await
            .map_err(|e| e.to_string())?;
        match listed["total"].as_u64() {
            Some(0) => Ok(()),
            other => Err(format!("{other:?} still placed")),
        }
    })
    .await?;
    // The depth the front door goes by must come back to zero, not stay where the burst left it.
    eventually("saga_outbox_depth back to 0", T, || async {
        let page = env
            .get_text(&order.url("/metrics"))
            .await
            .map_err(|e| e.to_string())?;
        let depth = page
            .lines()
            .find_map(|line| line.strip_prefix("saga_outbox_depth "))
            .map(str::trim);
        match depth {
            Some("0") => Ok(()),
            other => Err(format!("saga_outbox_depth is {other:?}")),
        }
    })
    .await?;
    let (status, body) = env.post_order(&order, "widget", 1).await?;
    assert_eq!(
        status, 201,
        "a quiet outbox takes the next order at once: {body}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sagactl_load_places_every_order_and_waits_until_each_is_final() -> anyhow::Result<()> {
    // Stock for 30 of the 40: sagactl load reports the end-to-end rate with a breakdown, and
    // the stock says exactly how many were reserved.
    let env = TestEnv::with_stock("ctl-load", "widget=30").await?;
    let (order, _inv, _notif) = env.start_all_in_process().await?;
    env.seeded_stock("widget").await?;

    let out = env
        .sagactl(
            &[&order],
            &[
                "load",
                "--orders",
                "40",
                "--concurrency",
                "8",
                "--item",
                "widget",
                "--wait-final",
                "--wait-timeout",
                "30",
            ],
        )
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("accepted  40 (201)"), "{stdout}");
    assert!(
        stdout.contains(&format!("{} 30", OrderStatus::Confirmed.as_str())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{} 10", OrderStatus::Failed.as_str())),
        "{stdout}"
    );
    assert_eq!(env.stock("widget").await?, Some(0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_a_world_deletes_its_vhost_and_every_key_under_its_prefix() -> anyhow::Result<()> {
    use testkit::world::{Broker, LOCAL_REDIS, VhostKind, World};

    let name = format!(
        "t-world-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let world = World::create(&Broker::default(), LOCAL_REDIS, &name, VhostKind::Classic).await?;
    world.declare_topology().await?;
    // More keys than one SCAN page (1,000), and one key of someone else's that must stay.
    let mut redis = saga_platform::redis::store::connect(LOCAL_REDIS)?;
    let mut pipe = redis::pipe();
    for i in 0..2_500 {
        pipe.set(format!("{name}:k{i}"), i).ignore();
    }
    pipe.set(format!("{name}-other:k"), 1).ignore();
    let () = pipe.query_async(&mut redis).await?;

    world.remove().await?;

    let vhost = world
        .management_request(reqwest::Method::GET, &format!("vhosts/{name}"))
        .send()
        .await?;
    assert_eq!(vhost.status().as_u16(), 404, "the vhost is gone");
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{name}:*"))
        .query_async(&mut redis)
        .await?;
    assert!(left.is_empty(), "{} keys left", left.len());
    let other: Option<i64> = redis::cmd("GET")
        .arg(format!("{name}-other:k"))
        .query_async(&mut redis)
        .await?;
    assert_eq!(other, Some(1), "a key outside the prefix is not touched");
    let () = redis::cmd("DEL")
        .arg(format!("{name}-other:k"))
        .query_async(&mut redis)
        .await?;
    Ok(())
}
