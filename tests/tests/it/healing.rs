//! Invariant 7 against a real broker: the topology heals itself. An operator deletes the
//! exchange, then a binding, then a queue, while the services run; the next orders complete
//! without restarting anything. And the front door answers a too-large body with a 413 JSON
//! error even to a client that writes its whole body before reading.

use std::io::{Read, Write};
use std::time::Duration;

use harness::{ServiceProcess, TestEnv, eventually};
use reqwest::Method;
use saga_domain::order::OrderStatus;
use saga_platform::amqp::topology::Topology;

const T: Duration = Duration::from_secs(30);

/// `DELETE` a resource of this env's vhost through the management API, as an operator would.
async fn delete(env: &TestEnv, what: &str) -> anyhow::Result<()> {
    let r = env.management(Method::DELETE, what).send().await?;
    anyhow::ensure!(r.status().is_success(), "DELETE {what}: {}", r.status());
    Ok(())
}

/// Whether `queue` is bound to the saga's exchange with `key` right now.
async fn bound(env: &TestEnv, queue: &str, key: &str) -> anyhow::Result<bool> {
    let path = format!(
        "bindings/{}/e/{}/q/{queue}",
        env.vhost, env.topology.exchange
    );
    let r = env.management(Method::GET, &path).send().await?;
    if r.status() == 404 {
        return Ok(false);
    }
    let bindings: Vec<serde_json::Value> = r.json().await?;
    Ok(bindings.iter().any(|b| b["routing_key"] == key))
}

/// Place an order and see it confirmed, with every service still the process it was.
async fn an_order_completes(
    env: &TestEnv,
    order: &ServiceProcess,
    services: &[&ServiceProcess],
) -> anyhow::Result<()> {
    let pids: Vec<Option<u32>> = services.iter().map(|s| s.pid()).collect();
    let id = env.place(order, "burger", 1).await?;
    let o = env.wait_final(order, &id, T).await?;
    assert_eq!(o.order.status, OrderStatus::Confirmed, "{o:?}");
    let after: Vec<Option<u32>> = services.iter().map(|s| s.pid()).collect();
    assert_eq!(pids, after, "no service was restarted");
    assert!(after.iter().all(Option::is_some));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_exchange_binding_or_queue_heals_without_a_restart() -> anyhow::Result<()> {
    let env = TestEnv::new("healing").await?;
    let (order, inv, notif) = env.start_all().await?;
    let all = [&order, &inv, &notif];
    an_order_completes(&env, &order, &all).await?;
    let (vhost, exchange) = (&env.vhost, &env.topology.exchange);

    // 1. The exchange: the relay's next publish is answered NOT_FOUND and re-declares.
    delete(&env, &format!("exchanges/{vhost}/{exchange}")).await?;
    an_order_completes(&env, &order, &all).await?;

    // 2. The binding that takes new orders to inventory: the relay's publish comes back
    //    unroutable (mandatory) and re-declares.
    let inventory = &env.topology.inventory_queue;
    delete(
        &env,
        &format!("bindings/{vhost}/e/{exchange}/q/{inventory}/order.placed"),
    )
    .await?;
    an_order_completes(&env, &order, &all).await?;

    // 3. A binding no publish can miss (notification_queue still takes the outcome): the
    //    consumers' periodic check puts it back within seconds.
    let status_queue = env.topology.order_status_queue.clone();
    delete(
        &env,
        &format!("bindings/{vhost}/e/{exchange}/q/{status_queue}/inventory.reserved"),
    )
    .await?;
    eventually("the binding declared again", T, || async {
        match bound(&env, &status_queue, "inventory.reserved").await {
            Ok(true) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    an_order_completes(&env, &order, &all).await?;

    // 4. A queue: its consumer is cancelled by the broker, reconnects and declares it again.
    delete(&env, &format!("queues/{vhost}/{inventory}")).await?;
    eventually("inventory_queue back with its consumer", T, || async {
        match env.consumers(inventory).await {
            Ok(1) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    an_order_completes(&env, &order, &all).await?;
    assert!(
        inv.log_contains("was the queue deleted?"),
        "the log says what happened"
    );
    assert_eq!(env.depth(&Topology::retry_queue(inventory)).await?, 0);
    Ok(())
}

/// What Python's `http.client` (hence `requests`) does: write the whole request, body and all,
/// and only then read the answer.
fn post_whole_body_then_read(addr: &str, body_len: usize) -> anyhow::Result<String> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let head = format!(
        "POST /order HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {body_len}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes())?;
    let chunk = vec![b' '; 64 * 1024];
    let mut left = body_len;
    while left > 0 {
        let n = left.min(chunk.len());
        stream.write_all(&chunk[..n])?;
        left -= n;
    }
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_1_mib_body_written_before_reading_gets_a_413_json_answer() -> anyhow::Result<()> {
    let env = TestEnv::new("big-body").await?;
    let order = env.start(harness::ServiceKind::Order).await?;
    let addr = order.url("").trim_start_matches("http://").to_owned();
    for attempt in 1..=3 {
        let addr = addr.clone();
        let answer =
            tokio::task::spawn_blocking(move || post_whole_body_then_read(&addr, 1024 * 1024))
                .await??;
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "try {attempt}: {}",
            answer.lines().next().unwrap_or("")
        );
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
        let json: serde_json::Value = serde_json::from_str(body.trim())?;
        assert!(
            json["error"].as_str().unwrap_or("").contains("too large"),
            "{json}"
        );
    }
    // And the service still takes orders.
    let (status, _) = env.post_order(&order, "burger", 1).await?;
    assert_eq!(status, 201);
    Ok(())
}
