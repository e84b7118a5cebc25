//! Only the right people change state (issue 17, finding 4 and what followed from it): ops
//! endpoints and the board refuse callers off the machine without a token, webhook URLs never
//! show, webhook retries carry one idempotency key, a forged `order.cancelled` cannot make
//! orders and stock disagree, and on the hardened broker it is refused by the broker itself.
//!
//! "Off the machine" is a network namespace each test makes ([`netns::NetNs`], root and
//! iproute2), never the machine's own address.

mod netns;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use harness::process::{bin_dir, free_port};
use harness::{ServiceKind, TestEnv, eventually};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use netns::NetNs;
use saga_domain::order::OrderStatus;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn put_stock_from_off_the_machine_needs_the_admin_token() -> anyhow::Result<()> {
    let ns = NetNs::create()?;
    let env = TestEnv::new("stock-token").await?;
    // Listening on every address, so the namespace reaches it on the host's end of the pair.
    let inventory = env
        .start_with(
            ServiceKind::Inventory,
            &[("HTTP_ADDR", "0.0.0.0:0"), ("ADMIN_TOKEN", "s3cret-admin")],
        )
        .await?;
    env.seeded_stock("burger").await?;
    let port = inventory.addr.port();
    let remote = |path: &str| format!("http://{}:{port}{path}", ns.host);

    // Reads stay open from anywhere.
    for path in ["/health", "/metrics", "/stock"] {
        let (status, _) = ns.http("GET", &remote(path), &[], None).await?;
        assert_eq!(status, 200, "GET {path} from the namespace");
    }
    let (status, _) = ns.http("GET", &remote("/ready"), &[], None).await?;
    assert!(
        status == 200 || status == 503,
        "GET /ready answers: {status}"
    );

    let set = |n: u32| json!({ "available": n }).to_string();
    let (status, body) = ns
        .http("PUT", &remote("/stock/burger"), &[], Some(&set(1)))
        .await?;
    assert_eq!(status, 403, "no token: {body}");
    let error: Value = serde_json::from_str(&body)?;
    assert!(
        error["error"]
            .as_str()
            .unwrap_or_default()
            .contains("ADMIN_TOKEN"),
        "{body}"
    );
    let (status, body) = ns
        .http(
            "PUT",
            &remote("/stock/burger"),
            &[("authorization", "Bearer wrong")],
            Some(&set(2)),
        )
        .await?;
    assert_eq!(status, 403, "a wrong token: {body}");
    assert_eq!(env.stock("burger").await?, Some(100), "nothing changed");

    let (status, body) = ns
        .http(
            "PUT",
            &remote("/stock/burger"),
            &[("authorization", "Bearer s3cret-admin")],
            Some(&set(42)),
        )
        .await?;
    assert_eq!(status, 200, "the token: {body}");
    assert_eq!(env.stock("burger").await?, Some(42));

    // From loopback no token is needed.
    let local = env
        .http()
        .put(format!("http://127.0.0.1:{port}/stock/burger"))
        .json(&json!({ "available": 7 }))
        .send()
        .await?;
    assert_eq!(local.status().as_u16(), 200);
    assert_eq!(env.stock("burger").await?, Some(7));
    assert!(
        inventory.log_contains("refused changing stock"),
        "the refusals are logged"
    );
    Ok(())
}

/// The catalog's changes (`PUT /products/{item}`, `POST /products/announce`) pass the same gate
/// as `PUT /stock`: refused off the machine without the token, nothing changed.
#[tokio::test(flavor = "multi_thread")]
async fn the_catalog_changes_need_the_admin_token_like_stock() -> anyhow::Result<()> {
    let ns = NetNs::create()?;
    let env = TestEnv::new("catalog-token").await?;
    let inventory = env
        .start_with(
            ServiceKind::Inventory,
            &[("HTTP_ADDR", "0.0.0.0:0"), ("ADMIN_TOKEN", "s3cret-admin")],
        )
        .await?;
    let port = inventory.addr.port();
    let remote = |path: &str| format!("http://{}:{port}{path}", ns.host);
    let local = format!("http://127.0.0.1:{port}/products");
    // Healthy is not yet seeded: wait for the seeded catalog and its start-up snapshot.
    let before = eventually("the catalog seeded and announced", T, || async {
        let listed = env.get_json(&local).await.map_err(|e| format!("{e:#}"))?;
        let products = listed["products"].as_array().cloned().unwrap_or_default();
        (!products.is_empty() && products.iter().all(|p| p["seq"].as_u64() >= Some(1)))
            .then(|| listed.clone())
            .ok_or_else(|| format!("{listed}"))
    })
    .await?;

    let (status, _) = ns.http("GET", &remote("/products"), &[], None).await?;
    assert_eq!(status, 200, "reading the catalog is open");
    let price = r#"{"unit_price": 1}"#;
    for (method, path, auth, body) in [
        ("PUT", "/products/burger", None, Some(price)),
        ("PUT", "/products/burger", Some("Bearer wrong"), Some(price)),
        ("POST", "/products/announce", None, None),
    ] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        let (status, answer) = ns.http(method, &remote(path), &headers, body).await?;
        assert_eq!(status, 403, "{method} {path} {auth:?}: {answer}");
        assert!(answer.contains("ADMIN_TOKEN"), "{answer}");
    }
    let after: Value = env.http().get(&local).send().await?.json().await?;
    assert_eq!(before, after, "nothing changed");

    let (status, answer) = ns
        .http(
            "PUT",
            &remote("/products/burger"),
            &[("authorization", "Bearer s3cret-admin")],
            Some(price),
        )
        .await?;
    assert_eq!(status, 200, "the token: {answer}");
    assert!(
        inventory.log_contains("refused changing the catalog"),
        "the refusals are logged"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_admin_token_nobody_off_the_machine_changes_stock() -> anyhow::Result<()> {
    let ns = NetNs::create()?;
    let env = TestEnv::new("stock-notoken").await?;
    let inventory = env
        .start_with(ServiceKind::Inventory, &[("HTTP_ADDR", "0.0.0.0:0")])
        .await?;
    env.seeded_stock("burger").await?;
    let url = format!("http://{}:{}/stock/burger", ns.host, inventory.addr.port());
    let (status, body) = ns
        .http(
            "PUT",
            &url,
            &[("authorization", "Bearer guess")],
            Some(r#"{"available": 1}"#),
        )
        .await?;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("ADMIN_TOKEN"), "{body}");
    assert_eq!(env.stock("burger").await?, Some(100));
    Ok(())
}

/// `sagactl board` on `addr`, against `env`, with `extra` arguments.
async fn start_board(
    env: &TestEnv,
    addr: &str,
    extra: &[&str],
) -> anyhow::Result<tokio::process::Child> {
    tokio::process::Command::new(bin_dir().join("sagactl"))
        .args(["board", "--addr", addr])
        .args(extra)
        .env("RABBITMQ_URL", &env.amqp_url)
        .env("REDIS_URL", &env.redis_url)
        .env("REDIS_PREFIX", &env.prefix)
        .env(
            "SAGA_RUN_DIR",
            std::env::temp_dir().join(format!("board-sec-{}", env.prefix)),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting sagactl board")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_board_off_loopback_changes_state_only_with_its_token() -> anyhow::Result<()> {
    let ns = NetNs::create()?;
    let env = TestEnv::new("board-remote").await?;
    env.declare_topology().await?;
    // Two boards on the host's end of the pair (a non-loopback address): one without a token,
    // one with.
    let open_addr = format!("{}:{}", ns.host, free_port());
    let _open = start_board(&env, &open_addr, &[]).await?;
    let token_addr = format!("{}:{}", ns.host, free_port());
    let _guarded = start_board(&env, &token_addr, &["--token", "board-s3cret"]).await?;
    for addr in [&open_addr, &token_addr] {
        eventually("the board answering the namespace", T, || async {
            match ns
                .http("GET", &format!("http://{addr}/api/state"), &[], None)
                .await
            {
                Ok((200, _)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await?;
    }
    let purge = r#"{"confirm": true}"#;
    let poison = r#"{"kind": "not-json"}"#;

    // No token configured: every action refused, views open.
    for (path, body) in [("/api/dlq/purge", purge), ("/api/poison", poison)] {
        let url = format!("http://{open_addr}{path}");
        let (status, answer) = ns.http("POST", &url, &[], Some(body)).await?;
        assert_eq!(status, 403, "POST {path}: {answer}");
        assert!(answer.contains("not a loopback address"), "{answer}");
    }
    let (status, _) = ns
        .http("GET", &format!("http://{open_addr}/"), &[], None)
        .await?;
    assert_eq!(status, 200, "the page itself stays open");

    // A token configured: refused without it or with another, done with it.
    let url = |path: &str| format!("http://{token_addr}{path}");
    let (status, answer) = ns
        .http("POST", &url("/api/poison"), &[], Some(poison))
        .await?;
    assert_eq!(status, 403, "{answer}");
    let (status, answer) = ns
        .http(
            "POST",
            &url("/api/poison"),
            &[("authorization", "Bearer board-s3cre")],
            Some(poison),
        )
        .await?;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(env.depth(&env.topology.dlq_queue).await?, 0);
    assert_eq!(env.depth(&env.topology.inventory_queue).await?, 0);

    let auth = [("authorization", "Bearer board-s3cret")];
    let (status, answer) = ns
        .http("POST", &url("/api/poison"), &auth, Some(poison))
        .await?;
    assert_eq!(status, 200, "{answer}");
    // No inventory-svc here: the poison waits in its queue, published by the board.
    env.until_depth("the poison published", &env.topology.inventory_queue, 1, T)
        .await?;
    let (status, answer) = ns
        .http("POST", &url("/api/dlq/purge"), &auth, Some(purge))
        .await?;
    assert_eq!(status, 200, "{answer}");

    // Reached by a name the board does not know: refused, token or not (DNS rebinding).
    let (status, answer) = ns
        .http(
            "POST",
            &url("/api/dlq/purge"),
            &[
                ("authorization", "Bearer board-s3cret"),
                ("host", "evil.example"),
            ],
            Some(purge),
        )
        .await?;
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("does not answer to the host"), "{answer}");
    Ok(())
}

/// A webhook receiver that always answers 500 and remembers each call's Idempotency-Key.
async fn failing_receiver() -> anyhow::Result<(u16, Arc<Mutex<Vec<Option<String>>>>)> {
    use warp::Filter;
    let keys = Arc::new(Mutex::new(Vec::new()));
    let seen = keys.clone();
    let hook = warp::post()
        .and(warp::header::optional::<String>("idempotency-key"))
        .map(move |key: Option<String>| {
            seen.lock().unwrap_or_else(|e| e.into_inner()).push(key);
            warp::reply::with_status("down", warp::http::StatusCode::INTERNAL_SERVER_ERROR)
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(warp::serve(hook).incoming(listener).run());
    Ok((port, keys))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_url_with_credentials_never_shows_and_retries_carry_one_key() -> anyhow::Result<()>
{
    let (port, keys) = failing_receiver().await?;
    let env = TestEnv::new("webhook-secret").await?;
    let order = env.start(ServiceKind::Order).await?;
    let _inventory = env.start(ServiceKind::Inventory).await?;
    let sink =
        format!("webhook:http://hookuser:hunter2pw@127.0.0.1:{port}/hook/path?token=t0ps3cr3t");
    let notification = env
        .start_with(
            ServiceKind::Notification,
            &[
                ("NOTIFY_SINK", &sink),
                ("RABBITMQ_RETRY_COUNT", "2"),
                ("RABBITMQ_RETRY_DELAY", "200ms"),
            ],
        )
        .await?;
    let id = env.place(&order, "burger", 1).await?;
    env.wait_status(&order, &id, OrderStatus::Confirmed, T)
        .await?;
    eventually("the notification's DLQ hop on the order", T, || async {
        match env.get_order(&order, &id).await {
            Ok(Some(o)) if o.dlq_hops.iter().any(|h| h.service == "notification-svc") => Ok(o),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    let dead = eventually("the notification in the DLQ", T, || async {
        match env.take_all(&env.topology.dlq_queue).await {
            Ok(taken) if !taken.is_empty() => Ok(taken),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    let reason = dead[0].header("x-dlq-reason").unwrap_or_default();
    assert!(reason.contains("webhook answered 500"), "{reason}");

    let secrets = ["hunter2pw", "t0ps3cr3t", "hook/path"];
    let log = notification.log().join("\n");
    // The order's answer as it went over the wire, every field of it (not only the ones
    // OrderView knows).
    let view = env.get_text(&order.url(&format!("/order/{id}"))).await?;
    for secret in secrets {
        assert!(
            !reason.contains(secret),
            "x-dlq-reason shows {secret}: {reason}"
        );
        assert!(
            !view.contains(secret),
            "the order view shows {secret}: {view}"
        );
        if secret != "hook/path" {
            assert!(!log.contains(secret), "the log shows {secret}:\n{log}");
        }
    }
    assert!(
        log.contains("hookuser:***@127.0.0.1"),
        "the start-up line names the webhook, redacted:\n{log}"
    );

    // One first attempt and two retries, each with the notification's one key. Two events tell
    // this outcome (inventory.reserved, and the order.status.updated to CONFIRMED: one
    // notification once sent), so while the webhook refuses, each may make its three attempts;
    // the first one's three are sure by now.
    let keys = keys.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!((3..=6).contains(&keys.len()), "{keys:?}");
    let expected = format!("{id}/reserved");
    assert!(
        keys.iter().all(|k| k.as_deref() == Some(expected.as_str())),
        "{keys:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_cancel_of_a_confirmed_order_cancels_the_order_with_its_stock()
-> anyhow::Result<()> {
    let env = TestEnv::with_stock("forged-cancel", "pizza=10").await?;
    let (order, inventory, notification) = env.start_all().await?;
    let id = env.place(&order, "pizza", 3).await?;
    env.wait_status(&order, &id, OrderStatus::Confirmed, T)
        .await?;
    assert_eq!(env.stock("pizza").await?, Some(7));

    // What `sagactl publish --sample cancel` or any guest script can do on the lab's broker.
    env.publish_bare(
        "order.cancelled",
        json!({ "order_id": id, "reason": "forged" })
            .to_string()
            .as_bytes(),
    )
    .await?;
    let o = env
        .wait_status(&order, &id, OrderStatus::Cancelled, T)
        .await?;
    assert_eq!(env.stock("pizza").await?, Some(10), "the stock came back");
    let reason = o.order.reason.as_deref().unwrap_or_default();
    assert!(reason.contains("not by order-svc"), "{o:?}");
    assert!(
        order.log_contains("cancelled without a cancel from order-svc"),
        "order-svc warns"
    );

    // Orders and stock agree: sagactl check passes.
    let out = env
        .sagactl(&[&order, &inventory], &["check", "--timeout", "20"])
        .await?;
    assert!(
        out.status.success(),
        "sagactl check: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    drop(notification);
    Ok(())
}

/// The hardened broker's users for one vhost, made by scripts/broker-users.sh with a prefix of
/// the test's own (users are global to the broker); removed on drop.
struct BrokerUsers {
    vhost: String,
    file: std::path::PathBuf,
    prefix: String,
    urls: std::collections::HashMap<String, String>,
}

impl BrokerUsers {
    async fn create(vhost: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("broker-users-{vhost}"));
        let mut users = Self {
            vhost: vhost.to_owned(),
            file: dir.join("broker-users.env"),
            prefix: format!("{vhost}-"),
            urls: Default::default(),
        };
        let out = users.script(&[vhost]).output().await?;
        anyhow::ensure!(
            out.status.success(),
            "scripts/broker-users.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta = std::fs::metadata(&users.file)?;
        use std::os::unix::fs::PermissionsExt;
        anyhow::ensure!(
            meta.permissions().mode() & 0o077 == 0,
            "the credentials file is for its owner only"
        );
        users.urls = std::fs::read_to_string(&users.file)?
            .lines()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| k.ends_with("_URL"))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Ok(users)
    }

    fn script(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/broker-users.sh"),
        );
        command
            .args(args)
            .env("SAGA_BROKER_USERS_FILE", &self.file)
            .env("SAGA_BROKER_USER_PREFIX", &self.prefix)
            .stdin(Stdio::null());
        command
    }

    fn url(&self, role: &str) -> anyhow::Result<&str> {
        self.urls
            .get(&format!("{}_RABBITMQ_URL", role.to_uppercase()))
            .map(String::as_str)
            .with_context(|| format!("no URL for {role} in {}", self.file.display()))
    }
}

impl Drop for BrokerUsers {
    fn drop(&mut self) {
        let mut command = std::process::Command::new(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/broker-users.sh"),
        );
        let _ = command
            .args(["--remove", &self.vhost])
            .env("SAGA_BROKER_USERS_FILE", &self.file)
            .env("SAGA_BROKER_USER_PREFIX", &self.prefix)
            .stdout(Stdio::null())
            .status();
        if let Some(dir) = self.file.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Publish `body` to the saga's exchange as the user of `url`, with confirms: what the broker
/// said (a refused publish closes the channel with 403 ACCESS_REFUSED).
async fn publish_as(
    url: &str,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
) -> anyhow::Result<()> {
    let conn = Connection::connect(
        url,
        ConnectionProperties::default().with_connection_name("forger".into()),
    )
    .await?;
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let confirmed = async {
        channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default().with_type("OrderCancelled".into()),
            )
            .await?
            .await?;
        // A refusal arrives as a channel close: ask something of the channel to see it.
        channel
            .exchange_declare(
                exchange.into(),
                lapin::ExchangeKind::Topic,
                lapin::options::ExchangeDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await?;
        anyhow::Ok(())
    }
    .await;
    let _ = conn.close(200, "done".into()).await;
    confirmed
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hardened_broker_refuses_a_forged_cancel_and_runs_the_saga() -> anyhow::Result<()> {
    let mut env = TestEnv::with_stock("hardened", "pizza=10").await?;
    let users = BrokerUsers::create(&env.name.clone()).await?;
    env.service_env
        .insert("RABBITMQ_RETRY_DELAY".into(), "200ms".into());
    let order = env
        .start_with(ServiceKind::Order, &[("RABBITMQ_URL", users.url("order")?)])
        .await?;
    let inventory = env
        .start_with(
            ServiceKind::Inventory,
            &[("RABBITMQ_URL", users.url("inventory")?)],
        )
        .await?;
    let _notification = env
        .start_with(
            ServiceKind::Notification,
            &[("RABBITMQ_URL", users.url("notification")?)],
        )
        .await?;
    for service in [&order, &inventory] {
        service.wait_ready(T).await?;
    }

    // The saga works end to end with one user per service.
    let id = env.place(&order, "pizza", 3).await?;
    env.wait_status(&order, &id, OrderStatus::Confirmed, T)
        .await?;
    env.until_notified("the notification", &id, 1, T).await?;

    // A forged order.cancelled, from the student's account and from inventory-svc's: refused.
    let forged = json!({ "order_id": id, "reason": "forged" }).to_string();
    let exchange = env.topology.exchange.clone();
    for role in ["student", "inventory", "notification"] {
        let refused = publish_as(
            users.url(role)?,
            &exchange,
            "order.cancelled",
            forged.as_bytes(),
        )
        .await
        .expect_err(&format!("{role} may not publish order.cancelled"));
        let text = format!("{refused:#}");
        assert!(
            text.contains("ACCESS_REFUSED") || text.contains("403"),
            "{role}: {text}"
        );
    }
    // What each may do, it still may: a student places an order by hand, as the lab does.
    let placed = json!({ "order_id": format!("{id}-lab"), "item": "pizza", "qty": 1 }).to_string();
    publish_as(
        users.url("student")?,
        &exchange,
        "order.placed",
        placed.as_bytes(),
    )
    .await?;

    let o = env
        .wait_status(&order, &id, OrderStatus::Confirmed, T)
        .await?;
    assert_eq!(o.order.status, OrderStatus::Confirmed);
    env.until_stock("the student's order reserved", "pizza", 6, T)
        .await?;
    assert_eq!(
        env.depth(&env.topology.dlq_queue).await?,
        0,
        "nothing dead-lettered"
    );
    Ok(())
}
