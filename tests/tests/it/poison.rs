//! Hostile messages and a hostile broker state, against real RabbitMQ and Redis (issue 17): a
//! message never panics the consume loop or stays unacked, its copies fit the broker's frame,
//! forged retry headers are not believed, a Redis that cannot persist is an outage, a queue
//! someone declared with other arguments stops only itself, and a message in a schema version
//! the consumer does not read is dead-lettered at once, with the version rule's reason.

use std::time::Duration;

use harness::broker::Taken;
use harness::private::PrivateRedis;
use harness::{ServiceKind, TestEnv, eventually};
use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use reqwest::Method;
use saga_domain::order::OrderStatus;
use saga_domain::version::SCHEMA_VERSION_HEADER;
use saga_platform::amqp::head_reader::HeadReader;
use saga_platform::amqp::nodes::BrokerNodes;
use saga_platform::amqp::topology::Topology;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

fn headers(entries: Vec<(String, AMQPValue)>) -> FieldTable {
    let mut table = FieldTable::default();
    for (k, v) in entries {
        table.insert(ShortString::try_new(k).expect("a short name"), v);
    }
    table
}

/// Publish `body` with `headers` to the saga's exchange (`routing_key`), confirmed, as anyone
/// with the management UI or pika can.
async fn publish(
    env: &TestEnv,
    routing_key: &str,
    body: &[u8],
    headers: FieldTable,
) -> anyhow::Result<()> {
    let (conn, channel) = env.channel().await?;
    let confirm = channel
        .basic_publish(
            env.topology.exchange.as_str().into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default().with_headers(headers),
        )
        .await?
        .await?;
    anyhow::ensure!(confirm.is_ack(), "publish not confirmed");
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

/// The management API's view of `queue`: ready and unacked counts (sampled every few seconds).
async fn queue_info(env: &TestEnv, queue: &str) -> anyhow::Result<Value> {
    let path = format!("queues/{}/{queue}", env.vhost);
    let r = env.management(Method::GET, &path).send().await?;
    anyhow::ensure!(r.status().is_success(), "GET {path}: {}", r.status());
    Ok(r.json().await?)
}

/// Wait until the broker says nobody holds a delivery of `queue` unacked (and some figure is
/// there: the first sample of a new queue has none).
async fn unacked_back_to_zero(env: &TestEnv, queue: &str) -> anyhow::Result<()> {
    eventually(&format!("{queue}: 0 unacked"), T, || async {
        let info = queue_info(env, queue).await.map_err(|e| e.to_string())?;
        match info["messages_unacknowledged"].as_u64() {
            Some(0) => Ok(()),
            other => Err(format!("unacked {other:?}")),
        }
    })
    .await
}

/// The one message the DLQ holds, once it is there (taking it).
async fn the_one_dead_letter(env: &TestEnv, what: &str) -> anyhow::Result<Taken> {
    eventually(what, T, || async {
        let taken = env
            .take_all(&env.topology.dlq_queue)
            .await
            .map_err(|e| e.to_string())?;
        match taken.as_slice() {
            [one] => Ok(one.clone()),
            other => Err(format!("{} messages", other.len())),
        }
    })
    .await
}

/// The lab's flat OrderPlaced body: a wire sample, its status spelt as the lab sends it.
fn order_placed(order_id: &str, item: &str) -> Vec<u8> {
    json!({"order_id": order_id, "item": item, "qty": 1, "status": "PLACED"})
        .to_string()
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_retry_headers_are_ignored_and_never_hold_a_delivery() -> anyhow::Result<()> {
    let env = TestEnv::with_stock("forged-retry", "burger=10").await?;
    let inv = env.start(ServiceKind::Inventory).await?;
    inv.wait_ready(T).await?;
    let long_name = "x".repeat(300);
    let forged = |with_death: bool| {
        let mut entries = vec![
            ("x-retry-attempts".to_owned(), AMQPValue::LongUInt(99)),
            ("x-original-exchange".to_owned(), text(&long_name)),
            ("x-original-routing-key".to_owned(), text(&long_name)),
        ];
        if with_death {
            // Even an x-death naming our retry queue does not make the work queue's message a
            // retry: only the retry queue's way back carries those.
            let mut death = FieldTable::default();
            death.insert("queue".into(), text("inventory_queue.retry"));
            death.insert("reason".into(), text("expired"));
            entries.push((
                "x-death".to_owned(),
                AMQPValue::FieldArray(vec![AMQPValue::FieldTable(death)].into()),
            ));
        }
        headers(entries)
    };

    // Three valid orders (finding 2 had three such messages held for good), and a poison one.
    for (i, with_death) in [false, true, false].into_iter().enumerate() {
        let id = format!("forged-{i}");
        publish(
            &env,
            "order.placed",
            &order_placed(&id, "burger"),
            forged(with_death),
        )
        .await?;
    }
    publish(&env, "order.placed", b"{not json", forged(true)).await?;

    env.until_stock("the three forged orders reserved", "burger", 7, T)
        .await?;
    let dead = the_one_dead_letter(&env, "the poison one in the DLQ").await?;
    assert_eq!(dead.body, b"{not json", "the body is unchanged");
    assert!(dead.header("x-dlq-reason").is_some_and(|r| !r.is_empty()));
    // Routed as it arrived, not as its forged headers claimed.
    assert_eq!(
        dead.header("x-original-routing-key").as_deref(),
        Some("order.placed")
    );
    assert_eq!(
        dead.header("x-original-exchange").as_deref(),
        Some(env.topology.exchange.as_str())
    );
    unacked_back_to_zero(&env, &env.topology.inventory_queue).await?;
    assert_eq!(
        env.depth(&Topology::retry_queue(&env.topology.inventory_queue))
            .await?,
        0
    );
    assert!(!inv.log_contains("panicked"), "no panic");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn poison_with_headers_near_the_frame_limit_is_dead_lettered_without_them()
-> anyhow::Result<()> {
    let env = TestEnv::new("poison-frame").await?;
    let inv = env.start(ServiceKind::Inventory).await?;
    inv.wait_ready(T).await?;
    // About 122 KB of headers: the message fits the default frame (131,072 bytes), but not
    // with x-dlq-* added to it.
    let mut entries: Vec<(String, AMQPValue)> = (0..8)
        .map(|i| (format!("bulk-{i}"), text(&"b".repeat(15_000))))
        .collect();
    entries.push(("trace".to_owned(), text("keep-me")));
    let body = b"poison: not json at all".to_vec();
    publish(&env, "order.placed", &body, headers(entries)).await?;

    let dead = the_one_dead_letter(&env, "the poison in the DLQ").await?;
    assert_eq!(dead.body, body, "the body is byte-for-byte unchanged");
    let reason = dead.header("x-dlq-reason").unwrap_or_default();
    assert!(reason.contains("left out: bulk-"), "{reason}");
    assert_eq!(dead.header("trace").as_deref(), Some("keep-me"));
    assert_eq!(
        dead.header("x-dlq-service").as_deref(),
        Some("inventory-svc")
    );
    unacked_back_to_zero(&env, &env.topology.inventory_queue).await?;
    assert!(
        !inv.log_contains("reconnecting"),
        "the broker never closed the connection"
    );
    Ok(())
}

/// RabbitMQ checks a publisher's frames against the limit, then adds `x-death` when it
/// dead-letters the message out of the retry queue, and delivers it over the limit: lapin closes
/// the connection on it (FRAME-ERROR) and, without the rescue, it came first again after every
/// reconnect. Found by the hostile suite (seed 16953245038674439883). The rescue's first reader
/// (amqprs) could not decode a header string that is not UTF-8, so such a message stayed stuck;
/// `x-raw` is one (hostile seed 8667182309024624274).
#[tokio::test(flavor = "multi_thread")]
async fn a_message_the_broker_grows_past_the_frame_is_rescued_into_the_dlq_and_the_next_order_flows()
-> anyhow::Result<()> {
    let env = TestEnv::new("poison-grown").await?;
    let inv = env.start(ServiceKind::Inventory).await?;
    inv.wait_ready(T).await?;
    let seeded = env.seeded_stock("burger").await?;
    // Just under the frame as published; over it once the broker has added x-death.
    let grown = headers(vec![
        ("x-bulk".to_owned(), text(&"b".repeat(130_800))),
        (
            "x-raw".to_owned(),
            AMQPValue::LongString(LongString::from(vec![0xff, 0xfe, 0x00, 0xc3])),
        ),
    ]);
    let body = order_placed("grown-1", "burger");
    let retry_queue = Topology::retry_queue(&env.topology.inventory_queue);
    let (conn, channel) = env.channel().await?;
    let confirm = channel
        .basic_publish(
            "".into(),
            retry_queue.as_str().into(),
            BasicPublishOptions::default(),
            &body,
            BasicProperties::default()
                .with_headers(grown)
                .with_expiration("50".into()),
        )
        .await?
        .await?;
    anyhow::ensure!(confirm.is_ack(), "publish not confirmed");
    let _ = conn.close(200, "done".into()).await;

    let dead = the_one_dead_letter(&env, "the grown message in the DLQ").await?;
    assert_eq!(dead.body, body, "the body is byte-for-byte unchanged");
    let reason = dead.header("x-dlq-reason").unwrap_or_default();
    assert!(reason.contains("too large to receive"), "{reason}");
    assert!(reason.contains("left out: x-bulk, x-death"), "{reason}");
    assert!(reason.contains(", x-raw"), "{reason}");
    assert_eq!(
        dead.header("x-original-queue"),
        Some(Topology::retry_due_queue(&env.topology.inventory_queue))
    );
    publish(
        &env,
        "order.placed",
        &order_placed("after-grown", "burger"),
        FieldTable::default(),
    )
    .await?;
    env.until_stock("the next order reserved", "burger", seeded - 1, T)
        .await?;
    unacked_back_to_zero(&env, &env.topology.inventory_queue).await?;
    assert!(!inv.log_contains("panicked"), "no panic");
    Ok(())
}

/// RabbitMQ does not check that a short string is UTF-8; lapin does, and a message whose
/// properties it cannot parse ends its connection like a frame too large, every session. Sent
/// here raw (a `message_id` of bytes 0xff 0xfe), as no client library would send it.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_whose_properties_no_client_parses_is_rescued_into_the_dlq_and_the_next_order_flows()
-> anyhow::Result<()> {
    let env = TestEnv::new("poison-unparsable").await?;
    let inv = env.start(ServiceKind::Inventory).await?;
    inv.wait_ready(T).await?;
    let seeded = env.seeded_stock("burger").await?;
    let body = order_placed("unparsable-1", "burger");
    // Property flags: delivery-mode (bit 12) and message-id (bit 7), then their values in order.
    let mut properties = 0x1080u16.to_be_bytes().to_vec();
    properties.push(2);
    properties.extend_from_slice(&[3, 0xff, 0xfe, b'A']);
    let node = BrokerNodes::parse(&env.amqp_url).map_err(anyhow::Error::msg)?;
    let uri = &node.in_turn().next().expect("one node").uri;
    let mut raw = HeadReader::open(uri, "poison-test-raw-publisher").await?;
    raw.publish_raw(&env.topology.exchange, "order.placed", &properties, &body)
        .await?;
    // The close waits for the broker's close-ok: by then it has routed the message.
    raw.close().await;

    let dead = the_one_dead_letter(&env, "the unparsable message in the DLQ").await?;
    assert_eq!(dead.body, body, "the body is byte-for-byte unchanged");
    let reason = dead.header("x-dlq-reason").unwrap_or_default();
    assert!(reason.starts_with("unreadable properties"), "{reason}");
    publish(
        &env,
        "order.placed",
        &order_placed("after-unparsable", "burger"),
        FieldTable::default(),
    )
    .await?;
    env.until_stock("the next order reserved", "burger", seeded - 1, T)
        .await?;
    unacked_back_to_zero(&env, &env.topology.inventory_queue).await?;
    assert!(!inv.log_contains("panicked"), "no panic");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_over_the_limit_is_dead_lettered_unread_and_the_next_order_flows()
-> anyhow::Result<()> {
    let env = TestEnv::new("poison-body").await?;
    let inv = env.start(ServiceKind::Inventory).await?;
    inv.wait_ready(T).await?;
    let seeded = env.seeded_stock("burger").await?;
    // Valid JSON, a valid order even, only far too large: the limit is on size, not on sense.
    let mut huge = json!({"order_id": "huge-1", "item": "burger", "qty": 1});
    huge["padding"] = json!("p".repeat(saga_platform::amqp::consumer::MAX_MESSAGE_BODY));
    let body = huge.to_string().into_bytes();
    publish(&env, "order.placed", &body, FieldTable::default()).await?;
    publish(
        &env,
        "order.placed",
        &order_placed("after-huge", "burger"),
        FieldTable::default(),
    )
    .await?;

    let dead = the_one_dead_letter(&env, "the huge message in the DLQ").await?;
    assert_eq!(dead.body, body, "the body is byte-for-byte unchanged");
    let reason = dead.header("x-dlq-reason").unwrap_or_default();
    assert!(reason.contains("over the limit of 65536 bytes"), "{reason}");
    // The order behind it was served: inventory reserved it (one burger taken).
    env.until_stock("the next order reserved", "burger", seeded - 1, T)
        .await?;
    unacked_back_to_zero(&env, &env.topology.inventory_queue).await?;
    Ok(())
}

/// A private Redis that cannot persist: where its snapshot goes, a directory stands in the way
/// (as root, permissions do not stop a write; a directory does), so every snapshot fails and,
/// with save points set (stop-writes-on-bgsave-error), it answers every write with MISCONF
/// until the way is clear again.
struct Misconf {
    conn: redis::aio::MultiplexedConnection,
    blocker: std::path::PathBuf,
}

impl Misconf {
    async fn break_disk(url: &str) -> anyhow::Result<Self> {
        let mut conn = redis::Client::open(url)?
            .get_multiplexed_async_connection()
            .await?;
        let get = |k: &str| redis::cmd("CONFIG").arg("GET").arg(k).clone();
        let (_, dir): (String, String) = get("dir").query_async(&mut conn).await?;
        let (_, file): (String, String) = get("dbfilename").query_async(&mut conn).await?;
        let blocker = std::path::Path::new(&dir).join(file);
        let _ = std::fs::remove_file(&blocker);
        std::fs::create_dir_all(blocker.join("in-the-way"))?;
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("save")
            .arg("3600 1")
            .query_async(&mut conn)
            .await?;
        let me = Self { conn, blocker };
        me.until_writes_answer(true).await?;
        Ok(me)
    }

    /// BGSAVE until writes answer MISCONF (`refused`) or succeed.
    async fn until_writes_answer(&self, refused: bool) -> anyhow::Result<()> {
        eventually("writes to answer as expected", T, || async {
            let mut conn = self.conn.clone();
            let _: Result<String, _> = redis::cmd("BGSAVE").query_async(&mut conn).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let write: Result<(), redis::RedisError> = redis::cmd("SET")
                .arg("misconf-probe")
                .arg(1)
                .query_async(&mut conn)
                .await;
            match (&write, refused) {
                (Err(e), true) if e.code() == Some("MISCONF") => Ok(()),
                (Ok(()), false) => Ok(()),
                _ => Err(format!("{write:?}")),
            }
        })
        .await
    }

    async fn fix_disk(self) -> anyhow::Result<()> {
        std::fs::remove_dir_all(&self.blocker)?;
        self.until_writes_answer(false).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_that_cannot_persist_is_an_outage_waited_out_never_dead_lettered()
-> anyhow::Result<()> {
    let redis = PrivateRedis::start().await?;
    let mut env = TestEnv::new("misconf").await?;
    env.redis_url = redis.url();
    env.service_env
        .insert("INITIAL_STOCK".into(), "burger=10".into());
    // Retries that would dead-letter within a second if MISCONF were taken for a fault.
    env.service_env
        .insert("RABBITMQ_RETRY_COUNT".into(), "1".into());
    env.service_env
        .insert("RABBITMQ_RETRY_DELAY".into(), "100ms".into());
    let (order, mut inv, _notif) = env.start_all().await?;
    env.seeded_stock("burger").await?;
    // The order is taken while inventory-svc is away; its OrderPlaced is held back and sent
    // again once inventory-svc runs and the disk is broken (a service that starts on a broken
    // disk waits before it consumes at all: that is waited out too, but not this test's point).
    inv.kill9().await;
    let id = env.place(&order, "burger", 1).await?;
    let queue = env.topology.inventory_queue.clone();
    env.until_depth("the OrderPlaced waiting", &queue, 1, T)
        .await?;
    let held = env.take_all(&queue).await?;
    inv.restart().await?;
    inv.wait_ready(T).await?;
    let disk = Misconf::break_disk(&redis.url()).await?;
    for message in held {
        let (conn, channel) = env.channel().await?;
        let confirm = channel
            .basic_publish(
                env.topology.exchange.as_str().into(),
                message.routing_key.as_str().into(),
                BasicPublishOptions::default(),
                &message.body,
                message.properties.clone(),
            )
            .await?
            .await?;
        anyhow::ensure!(confirm.is_ack(), "publish not confirmed");
        let _ = conn.close(200, "done".into()).await;
    }
    eventually("inventory-svc waiting the outage out", T, || async {
        if inv.log_contains("transient failure") {
            Ok(())
        } else {
            Err("not yet".to_owned())
        }
    })
    .await?;
    assert_eq!(env.depth(&env.topology.dlq_queue).await?, 0);
    assert_eq!(
        env.depth(&Topology::retry_queue(&env.topology.inventory_queue))
            .await?,
        0,
        "an outage is not parked for a retry"
    );

    disk.fix_disk().await?;
    let o = env.wait_final(&order, &id, T).await?;
    assert_eq!(o.order.status, OrderStatus::Confirmed, "{o:?}");
    assert_eq!(env.stock("burger").await?, Some(9));
    assert_eq!(
        env.depth(&env.topology.dlq_queue).await?,
        0,
        "nothing dead-lettered"
    );
    Ok(())
}

/// While Redis refuses writes (MISCONF), the relay can publish an outbox entry but not delete
/// it. It must then back off (100 ms doubling to 5 s), not publish the same entry again every
/// 100 ms: each try leaves one more copy of the OrderPlaced in inventory_queue (nobody consumes
/// it here), so the copies counted after a few seconds tell which it did.
#[tokio::test(flavor = "multi_thread")]
async fn a_relay_that_cannot_delete_backs_off_instead_of_republishing() -> anyhow::Result<()> {
    use saga_domain::events::{EventMeta, EventType, OrderPlaced};
    use saga_domain::ids::{Item, OrderId, Qty};
    use saga_domain::lines::Lines;

    let redis = PrivateRedis::start().await?;
    let mut env = TestEnv::new("misconf-relay").await?;
    env.redis_url = redis.url();
    // An OrderPlaced waiting in the outbox, as POST /order leaves it.
    let order_id = OrderId::generate();
    let event = OrderPlaced {
        order_id: order_id.clone(),
        lines: Lines::single(Item::parse("burger")?, Qty::parse(1)?),
        student_id: None,
    };
    let meta = EventMeta::new(EventType::OrderPlaced, order_id.as_str(), "order-svc");
    let entry = order_svc::outbox::entry_fields(&meta, order_id.as_str(), &event.to_body());
    let mut conn = env.redis().await?;
    let _: String = redis::cmd("XADD")
        .arg(env.keys.outbox())
        .arg("*")
        .arg(&entry)
        .query_async(&mut conn)
        .await?;
    let disk = Misconf::break_disk(&redis.url()).await?;

    let _order = env.start(ServiceKind::Order).await?;
    let queue = env.topology.inventory_queue.clone();
    eventually("the first copy published", T, || async {
        match env.depth(&queue).await {
            Ok(n) if n >= 1 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    // An observation window, not a wait for an effect: the count at its end is the result.
    // Backing off, the relay sends about 6 copies in 3 s; every 100 ms, about 30.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let copies = env.depth(&queue).await?;
    assert!(
        copies <= 10,
        "{copies} copies in 3 s: the relay did not back off"
    );

    disk.fix_disk().await?;
    eventually("the entry deleted once Redis takes writes", T, || async {
        let mut conn = env.redis().await.map_err(|e| e.to_string())?;
        let len: Result<u64, _> = redis::cmd("XLEN")
            .arg(env.keys.outbox())
            .query_async(&mut conn)
            .await;
        match len {
            Ok(0) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_queue_declared_with_other_arguments_stops_only_itself() -> anyhow::Result<()> {
    let env = TestEnv::new("queue-406").await?;
    let queue = env.topology.notification_queue.clone();
    // Someone declared notification_queue with a TTL before the services started.
    {
        let conn = env.connect().await?;
        let channel = conn.create_channel().await?;
        let mut args = FieldTable::default();
        args.insert("x-message-ttl".into(), AMQPValue::LongInt(60_000));
        channel
            .queue_declare(queue.as_str().into(), QueueDeclareOptions::durable(), args)
            .await?;
        let _ = conn.close(200, "done".into()).await;
    }
    let (order, _inv, notif) = env.start_all().await?;
    let id = env.place(&order, "burger", 1).await?;
    let o = env.wait_final(&order, &id, T).await?;
    assert_eq!(
        o.order.status,
        OrderStatus::Confirmed,
        "orders still complete: {o:?}"
    );

    let named = format!("queue {queue}");
    let ready = eventually("notification-svc's /ready names the queue", T, || async {
        let r = env
            .http()
            .get(notif.url("/ready"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        let body: Value = r.json().await.map_err(|e| e.to_string())?;
        if status == 503 && body.to_string().contains(&named) {
            Ok(body)
        } else {
            Err(format!("{status} {body}"))
        }
    })
    .await?;
    assert!(
        ready
            .to_string()
            .contains("delete it or declare it without arguments"),
        "/ready says what to do: {ready}"
    );
    let advice = "Queue notification_queue refused by the broker";
    assert_eq!(
        notif.log().iter().filter(|l| l.contains(advice)).count(),
        1,
        "logged once while the session lasts"
    );

    // The operator deletes it; the services declare it as they should, by themselves.
    let path = format!("queues/{}/{queue}", env.vhost);
    let r = env.management(Method::DELETE, &path).send().await?;
    anyhow::ensure!(r.status().is_success(), "DELETE {path}: {}", r.status());
    notif.wait_ready(T).await?;
    let info = queue_info(&env, &queue).await?;
    assert_eq!(
        info["arguments"],
        json!({}),
        "declared plainly again: {info}"
    );
    let id = env.place(&order, "burger", 1).await?;
    let o = env.wait_final(&order, &id, T).await?;
    assert_eq!(o.order.status, OrderStatus::Confirmed, "{o:?}");
    Ok(())
}

/// A handler with bugs on purpose: its parser panics on one body, its handler on another.
struct Buggy {
    processed: std::sync::atomic::AtomicUsize,
}

impl saga_platform::amqp::consumer::Handler for Buggy {
    type Event = String;

    fn parse(
        _meta: &saga_platform::amqp::consumer::DeliveryMeta,
        body: &[u8],
    ) -> Result<String, saga_domain::wire::Malformed> {
        let text = String::from_utf8_lossy(body).into_owned();
        if text == "panic in parse" {
            panic!("parser bug");
        }
        Ok(text)
    }

    async fn handle(
        &self,
        event: &String,
        _meta: &saga_platform::amqp::consumer::DeliveryMeta,
    ) -> saga_platform::amqp::consumer::Outcome {
        if event == "panic in handle" {
            panic!("handler bug on {event:?}");
        }
        self.processed
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        saga_platform::amqp::consumer::Outcome::Processed(Vec::new())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panic_is_a_failure_retried_then_dead_lettered_and_the_loop_goes_on() -> anyhow::Result<()>
{
    let env = TestEnv::new("panics").await?;
    let settings = saga_platform::amqp::consumer::ConsumerSettings {
        service: "buggy-svc".into(),
        url: env.amqp_url.clone(),
        queue: env.topology.inventory_queue.clone(),
        prefetch: 8,
        topology: env.topology.clone(),
        retry: saga_domain::retry::RetryPolicy {
            count: 2,
            delay: Duration::from_millis(100),
        },
        grace: Duration::from_secs(2),
        timeline: None,
        watchdog: saga_platform::service::watch::Watchdog::new(),
        envelope: saga_domain::envelope::Envelope::Binary,
        spans: saga_platform::service::spans::Spans::off(),
    };
    let handler = std::sync::Arc::new(Buggy {
        processed: 0.into(),
    });
    let shutdown = tokio_util::sync::CancellationToken::new();
    let consumer = tokio::spawn(saga_platform::amqp::consumer::run_consumer(
        settings,
        handler.clone(),
        std::sync::Arc::new(saga_platform::amqp::BrokerStatus::default()),
        shutdown.clone(),
    ));
    env.declare_topology().await?;
    for body in ["panic in parse", "panic in handle", "fine"] {
        env.publish_bare("order.placed", body.as_bytes()).await?;
    }

    let mut dead = eventually("both buggy messages in the DLQ", T, || async {
        let info = queue_info(&env, &env.topology.dlq_queue)
            .await
            .map_err(|e| e.to_string())?;
        match info["messages"].as_u64() {
            Some(2) => env
                .take_all(&env.topology.dlq_queue)
                .await
                .map_err(|e| e.to_string()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    dead.sort_by(|a, b| a.body.cmp(&b.body));
    let reasons: Vec<String> = dead
        .iter()
        .map(|d| d.header("x-dlq-reason").unwrap_or_default())
        .collect();
    assert_eq!(dead[0].body, b"panic in handle");
    assert_eq!(reasons[0], r#"panicked: handler bug on "panic in handle""#);
    assert_eq!(dead[1].body, b"panic in parse");
    assert_eq!(reasons[1], "panicked: in parsing: parser bug");
    for d in &dead {
        assert_eq!(
            d.header("x-dlq-attempts").as_deref(),
            Some("3"),
            "retried twice first"
        );
    }
    assert_eq!(
        handler.processed.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the message behind them was processed"
    );
    unacked_back_to_zero(&env, &env.topology.inventory_queue).await?;
    assert!(!consumer.is_finished(), "the consume loop goes on");
    shutdown.cancel();
    consumer.await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_older_retry_queue_is_replaced_once_empty_and_ready_stays_green() -> anyhow::Result<()> {
    let env = TestEnv::new("old-retry-queue").await?;
    let queue = env.topology.inventory_queue.clone();
    let retry_queue = Topology::retry_queue(&queue);
    // What an earlier version declared: the retry queue dead-letters straight into the work
    // queue (and so drops a message whose work queue is missing at that moment).
    {
        let conn = env.connect().await?;
        let channel = conn.create_channel().await?;
        let mut args = FieldTable::default();
        args.insert("x-dead-letter-exchange".into(), text(""));
        args.insert("x-dead-letter-routing-key".into(), text(&queue));
        channel
            .queue_declare(
                retry_queue.as_str().into(),
                QueueDeclareOptions::durable(),
                args,
            )
            .await?;
        let _ = conn.close(200, "done".into()).await;
    }
    let inv = env.start(ServiceKind::Inventory).await?;
    inv.wait_ready(T).await?;
    let info = queue_info(&env, &retry_queue).await?;
    assert_eq!(
        info["arguments"]["x-dead-letter-routing-key"],
        format!("{queue}.retry.due"),
        "{info}"
    );
    assert!(inv.log_contains("declared anew"), "the log says so");
    Ok(())
}

/// The version rule (docs/DESIGN.md §3): an unknown major is poison on its first delivery, with
/// the reason the rule spells; a new minor of a known major is read; a header that is no
/// version is poison too. inventory-svc reads versions 1 and 2 of OrderPlaced.
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_major_version_is_dead_lettered_at_once_and_a_new_minor_is_read()
-> anyhow::Result<()> {
    let env = TestEnv::with_stock("versions", "burger=10").await?;
    let inv = env.start(ServiceKind::Inventory).await?;
    inv.wait_ready(T).await?;
    let version = |v: &str| headers(vec![(SCHEMA_VERSION_HEADER.to_owned(), text(v))]);

    publish(
        &env,
        "order.placed",
        &order_placed("v3-order", "burger"),
        version("3.0"),
    )
    .await?;
    let dead = the_one_dead_letter(&env, "the version 3 OrderPlaced in the DLQ").await?;
    assert_eq!(
        dead.header("x-dlq-reason").as_deref(),
        Some("OrderPlaced version 3.0 is not read by inventory-svc; it reads 1, 2")
    );
    assert_eq!(
        dead.header("x-dlq-attempts"),
        None,
        "poison: dead-lettered on its first delivery, never retried"
    );
    assert_eq!(
        dead.header(SCHEMA_VERSION_HEADER).as_deref(),
        Some("3.0"),
        "the copy keeps its version, so a replay after the upgrade is read as version 3"
    );

    publish(
        &env,
        "order.placed",
        &order_placed("v17-order", "burger"),
        version("1.7"),
    )
    .await?;
    env.until_stock("version 1.7 read: one burger reserved", "burger", 9, T)
        .await?;

    publish(
        &env,
        "order.placed",
        &order_placed("bad-version", "burger"),
        version("two"),
    )
    .await?;
    let dead = the_one_dead_letter(&env, "the OrderPlaced with no version in the DLQ").await?;
    let reason = dead.header("x-dlq-reason").unwrap_or_default();
    assert!(reason.contains("is not a version"), "{reason}");
    assert_eq!(env.stock("burger").await?, Some(9), "nothing else reserved");
    unacked_back_to_zero(&env, "inventory_queue").await
}

/// Every event the saga publishes states its version (1.0 today), from every publisher: the
/// outbox relay (OrderPlaced, the status events) and inventory-svc (its outcome).
#[tokio::test(flavor = "multi_thread")]
async fn every_event_the_saga_publishes_states_its_schema_version() -> anyhow::Result<()> {
    let env = TestEnv::with_stock("versions-written", "burger=10").await?;
    let (order, _inv, _notif) = env.start_all().await?;
    let tap = "versions-tap";
    // The order's events; the catalog's product events (stock moves) have tests of their own.
    env.tap(tap, &harness::broker::SAGA_KEYS).await?;
    let id = env.place(&order, "burger", 1).await?;
    env.wait_final(&order, &id, T).await?;
    let taken = eventually("three events on the tap", T, || async {
        let taken = env.take_all(tap).await.map_err(|e| e.to_string())?;
        if taken.len() >= 3 {
            Ok(taken)
        } else {
            Err(format!("{} events", taken.len()))
        }
    })
    .await?;
    let mut kinds: Vec<String> = taken.iter().map(|m| m.routing_key.clone()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["inventory.reserved", "order.placed", "order.status.updated"]
    );
    for m in &taken {
        assert_eq!(
            m.header(SCHEMA_VERSION_HEADER).as_deref(),
            Some("1.0"),
            "{}",
            m.routing_key
        );
    }
    Ok(())
}
