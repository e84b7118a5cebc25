//! `sagactl --json` against the real services, broker and Redis: what a script reads is the
//! saga's real state, under the field names the lab drills rely on.
//!
//! The `sagactl` binary is run as a script runs it (from the target directory, configured by
//! environment only), and its stdout is parsed as one JSON document. It stays raw JSON here,
//! since that is the contract a script reads; the statuses in it are the domain's spelling
//! (`OrderStatus::as_str`), not literals of our own.

use std::process::Output;
use std::time::Duration;

use harness::{Endpoint, TestEnv, eventually};
use saga_domain::order::OrderStatus;
use serde_json::Value;

const T: Duration = Duration::from_secs(20);

/// Where sagactl finds everything of this test's world.
struct Ctl<'a> {
    env: &'a TestEnv,
    order: &'a dyn Endpoint,
    inventory: &'a dyn Endpoint,
}

impl Ctl<'_> {
    async fn run(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.env.sagactl(&[self.order, self.inventory], args).await
    }

    /// `sagactl ARGS --json`, which must succeed and print exactly one JSON document on one line.
    async fn json(&self, args: &[&str]) -> anyhow::Result<Value> {
        let args: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
        let output = self.run(&args).await?;
        let stdout = String::from_utf8(output.stdout)?;
        anyhow::ensure!(
            output.status.success(),
            "sagactl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        anyhow::ensure!(
            stdout.lines().count() == 1,
            "sagactl {args:?} printed more than one line:\n{stdout}"
        );
        Ok(serde_json::from_str(&stdout)?)
    }

    async fn queue_depth(&self, queue: &str) -> anyhow::Result<Value> {
        let queues = self.json(&["queues"]).await?;
        queues["queues"]
            .as_array()
            .and_then(|rows| rows.iter().find(|q| q["queue"] == queue))
            .map(|q| q["messages"].clone())
            .ok_or_else(|| anyhow::anyhow!("no {queue} in {queues}"))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_documents_tell_the_real_state_of_orders_stock_queues_and_the_dlq()
-> anyhow::Result<()> {
    let env = TestEnv::with_stock("ctl-json", "burger=10,sushi=2").await?;
    let (order, inventory, _notification) = env.start_all_in_process().await?;
    let ctl = Ctl {
        env: &env,
        order: &order,
        inventory: &inventory,
    };
    env.seeded_stock("burger").await?;

    // Two orders, one of each final status.
    let confirmed = env.place(&order, "burger", 3).await?;
    let failed = env.place(&order, "sushi", 5).await?;
    env.wait_final(&order, &confirmed, T).await?;
    env.wait_final(&order, &failed, T).await?;

    let o = ctl.json(&["order", "get", &confirmed]).await?;
    assert_eq!(o["order_id"], confirmed.as_str(), "{o}");
    assert_eq!(o["status"], OrderStatus::Confirmed.as_str(), "{o}");
    assert_eq!(
        (o["item"].as_str(), o["qty"].as_i64()),
        (Some("burger"), Some(3))
    );
    assert_eq!(o["reason"], Value::Null, "{o}");
    let history: Vec<&Value> = o["history"]
        .as_array()
        .map(|h| h.iter().map(|e| &e["status"]).collect())
        .unwrap_or_default();
    assert_eq!(
        history,
        [
            OrderStatus::Placed.as_str(),
            OrderStatus::Confirmed.as_str()
        ],
        "{o}"
    );

    let page = ctl.json(&["order", "list", "--limit", "10"]).await?;
    assert_eq!(
        (page["total"].as_u64(), page["count"].as_u64()),
        (Some(2), Some(2))
    );
    let listed: Vec<(&str, &str)> = page["orders"]
        .as_array()
        .map(|orders| {
            orders
                .iter()
                .filter_map(|o| Some((o["order_id"].as_str()?, o["status"].as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        listed.contains(&(confirmed.as_str(), OrderStatus::Confirmed.as_str())),
        "{page}"
    );
    assert!(
        listed.contains(&(failed.as_str(), OrderStatus::Failed.as_str())),
        "{page}"
    );
    let failed_order = ctl.json(&["order", "get", &failed]).await?;
    assert!(
        failed_order["reason"]
            .as_str()
            .is_some_and(|r| r.contains("insufficient stock")),
        "{failed_order}"
    );

    let stock = ctl.json(&["stock", "show"]).await?;
    let burger = &stock["stock"]["burger"];
    assert_eq!(burger["available"], 7, "{stock}");
    assert_eq!(burger["initial"], 10, "{stock}");
    assert_eq!(burger["reserved"], 3, "{stock}");
    assert_eq!(burger["released"], 0, "{stock}");
    assert_eq!(burger["balanced"], true, "{stock}");
    assert_eq!(
        stock["stock"]["sushi"]["available"], 2,
        "a failed order takes nothing"
    );

    let queues = ctl.json(&["queues"]).await?;
    assert_eq!(queues["vhost"], env.vhost.as_str(), "{queues}");
    let names: Vec<&str> = queues["queues"]
        .as_array()
        .map(|rows| rows.iter().filter_map(|q| q["queue"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        names,
        [
            "inventory_queue",
            "inventory_queue.retry",
            "order_status_queue",
            "order_status_queue.retry",
            "notification_queue",
            "notification_queue.retry",
            "order_catalog_queue",
            "order_catalog_queue.retry",
            "dlq_queue",
        ]
    );
    let inventory_queue = &queues["queues"][0];
    assert_eq!(inventory_queue["exists"], true, "{queues}");
    assert_eq!(inventory_queue["consumers"], 1, "{queues}");
    assert_eq!(ctl.queue_depth("dlq_queue").await?, 0);

    // A poison OrderPlaced (no qty), a wire sample: the DLQ depth, the entry and its reason, as
    // JSON.
    let poison = br#"{"order_id":"poison-ctl-json","item":"burger","status":"PLACED"}"#;
    env.publish_bare("order.placed", poison).await?;
    eventually("the poison message in the DLQ", T, || async {
        match ctl.queue_depth("dlq_queue").await {
            Ok(depth) if depth == 1 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;

    let listing = ctl.json(&["dlq", "list"]).await?;
    assert_eq!(listing["queue"], "dlq_queue", "{listing}");
    assert_eq!(listing["total"], 1, "{listing}");
    let entry = &listing["entries"][0];
    assert_eq!(entry["position"], 1, "{listing}");
    assert_eq!(entry["reason"], "missing required field qty", "{listing}");
    assert_eq!(entry["service"], "inventory-svc", "{listing}");
    assert_eq!(entry["routing_key"], "order.placed", "{listing}");
    assert_eq!(entry["order_id"], "poison-ctl-json", "{listing}");

    let message = ctl.json(&["dlq", "show", "1"]).await?;
    assert_eq!(
        message["headers"]["x-dlq-reason"], "missing required field qty",
        "{message}"
    );
    assert_eq!(message["headers"]["x-original-exchange"], "order_events");
    assert_eq!(
        message["body"].as_str().map(str::as_bytes),
        Some(&poison[..]),
        "the body, byte for byte"
    );
    assert_eq!(
        message["properties"]["message_id"],
        Value::Null,
        "published bare"
    );
    assert_eq!(
        env.depth("dlq_queue").await?,
        1,
        "looking at the DLQ loses nothing"
    );

    let check = ctl.json(&["check", "--timeout", "10"]).await?;
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(check["prefix"], env.prefix.as_str());
    assert_eq!(check["orders"], 2, "{check}");
    assert_eq!(
        check["by_status"][OrderStatus::Confirmed.as_str()],
        1,
        "{check}"
    );
    assert_eq!(
        check["by_status"][OrderStatus::Failed.as_str()],
        1,
        "{check}"
    );
    assert_eq!(check["dlq_messages"], 1, "{check}");
    assert_eq!(check["violations"], serde_json::json!([]), "{check}");

    let explained = ctl.json(&["explain", &confirmed]).await?;
    assert_eq!(
        explained["journey"]["status"],
        OrderStatus::Confirmed.as_str(),
        "{explained}"
    );
    assert_eq!(
        explained["timeline"]["reservation"]["state"], "reserved",
        "{explained}"
    );

    let watched = ctl
        .json(&[
            "watch",
            "--queue",
            "inventory_queue",
            "--until-empty",
            "--timeout",
            "10",
        ])
        .await?;
    assert_eq!(watched["ended"], "empty", "{watched}");
    assert_eq!(watched["messages"], 0, "{watched}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_are_one_line_on_stderr_with_nothing_on_stdout() -> anyhow::Result<()> {
    let env = TestEnv::new("ctl-json-err").await?;
    let (order, inventory, _notification) = env.start_all_in_process().await?;
    let ctl = Ctl {
        env: &env,
        order: &order,
        inventory: &inventory,
    };
    let unknown = uuid::Uuid::new_v4().to_string();
    let output = ctl.run(&["order", "get", &unknown, "--json"]).await?;
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "stdout: {:?}", output.stdout);
    let stderr = String::from_utf8(output.stderr)?;
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("sagactl: order-svc answered 404"),
        "{stderr}"
    );

    let output = ctl.run(&["dlq", "show", "3", "--json"]).await?;
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    assert_eq!(
        String::from_utf8(output.stderr)?.trim(),
        "sagactl: no message #3: dlq_queue holds 0"
    );
    Ok(())
}
