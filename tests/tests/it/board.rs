//! The classroom board (`sagactl board`): in a real headless Chromium against the real saga, and
//! over plain HTTP for what it must refuse.
//!
//! Each test runs the board binary against its own vhost and Redis prefix, with a run directory
//! of its own: the pid files in it name the services the test started, which is what lets the
//! page kill and start them.

#[path = "board/browser.rs"]
mod browser;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use browser::Browser;
use harness::private::PrivateRedis;
use harness::process::{bin_dir, free_port};
use harness::{ServiceKind, ServiceProcess, TestEnv, eventually};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use redis::AsyncCommands;
use saga_domain::invariants::{LIFECYCLE_RULES, RULES};
use saga_domain::order::OrderStatus;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const T: Duration = Duration::from_secs(30);
/// The invariant lights: one per rule of `sagactl check`, and the board's own
/// `deliveries-settled`.
const LIGHTS: usize = RULES.len() + LIFECYCLE_RULES.len() + 1;

/// A `sagactl board` process of the test's own.
struct Board {
    url: String,
    child: Child,
}

impl Board {
    /// Start the board on `addr` against `env`, with the services' URLs and `run_dir`.
    async fn start(
        env: &TestEnv,
        addr: &str,
        run_dir: &Path,
        urls: Option<(&ServiceProcess, &ServiceProcess)>,
        extra_args: &[&str],
        extra_env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts");
        let mut command = Command::new(bin_dir().join("sagactl"));
        command
            .arg("board")
            .args(["--addr", addr, "--check-every", "1"])
            .arg("--run-dir")
            .arg(run_dir)
            .arg("--scripts-dir")
            .arg(&scripts)
            .args(extra_args)
            .env("RABBITMQ_URL", &env.amqp_url)
            .env("REDIS_URL", &env.redis_url)
            .env("REDIS_PREFIX", &env.prefix)
            // What scripts/svc.sh needs to start a service from the page like the test did.
            .env("SAGA_BIN_DIR", bin_dir())
            .env("SHUTDOWN_GRACE_SECS", "5")
            .env("CLAIM_LEASE_MS", "2000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if let Some((order, inventory)) = urls {
            command
                .env("ORDER_URL", order.url(""))
                .env("INVENTORY_URL", inventory.url(""))
                .env("INVENTORY_HTTP_ADDR", inventory.addr.to_string());
        }
        for (key, value) in extra_env {
            command.env(key, value);
        }
        let child = command.spawn().context("starting sagactl board")?;
        let port = addr.rsplit(':').next().unwrap_or_default();
        let url = format!("http://127.0.0.1:{port}");
        let state = format!("{url}/api/state");
        eventually("the board answering", T, || async {
            match env.http().get(&state).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("status {}", r.status())),
                Err(e) => Err(e.to_string()),
            }
        })
        .await?;
        Ok(Self { url, child })
    }

    /// POST a JSON body to one of the board's routes; the status and the JSON answer.
    async fn post(&self, env: &TestEnv, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        let r = env
            .http()
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A run directory with pid files for the services a test started, like scripts/svc.sh writes.
/// On drop it stops whatever the board started there (a service the page started again).
struct RunDir(PathBuf);

impl RunDir {
    fn new(services: &[&ServiceProcess]) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("board-run-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        for service in services {
            let pid = service.pid().context("service has no pid")?;
            std::fs::write(
                dir.join(format!("{}.pid", service.kind.binary())),
                format!("{pid}\n"),
            )?;
        }
        Ok(Self(dir))
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        for entry in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(service) = name.strip_suffix(".pid") else {
                continue;
            };
            let Ok(pid) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            let pid = pid.trim();
            let Some(signalled) = pid.parse::<i32>().ok().filter(|pid| *pid > 0) else {
                continue;
            };
            // Only if that pid still runs that service: a pid may have been reused.
            let argv0 = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let argv0 =
                String::from_utf8_lossy(argv0.split(|b| *b == 0).next().unwrap_or_default())
                    .into_owned();
            if Path::new(&argv0).file_name().is_some_and(|n| n == service) {
                let _ = kill(Pid::from_raw(signalled), Signal::SIGKILL);
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn screenshots() -> PathBuf {
    bin_dir()
        .parent()
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
        .join("board-screenshots")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_board_in_a_browser_places_orders_shows_poison_and_watches_a_backlog_drain()
-> anyhow::Result<()> {
    let env = TestEnv::new("board").await?;
    let (order, inventory, notification) = env.start_all().await?;
    env.seeded_stock("burger").await?;
    let run_dir = RunDir::new(&[&order, &inventory, &notification])?;
    let addr = format!("127.0.0.1:{}", free_port());
    let board = Board::start(
        &env,
        &addr,
        &run_dir.0,
        Some((&order, &inventory)),
        &["--allow-faults"],
        &[],
    )
    .await?;
    let browser = Browser::start().await?;
    let result = drive(&browser, &board, &env).await;
    if result.is_err() {
        // Whatever the page showed when it failed, for the person reading the failure.
        let _ = browser.screenshot(&screenshots(), "failed").await;
    }
    browser.close().await;
    result
}

/// The browser part of the test; it fails with errors, not panics, so the browser is always
/// closed (a panic is still cleaned up by `Browser`'s drop).
async fn drive(browser: &Browser, board: &Board, env: &TestEnv) -> anyhow::Result<()> {
    let shots = screenshots();
    browser.open_board(&board.url).await?;

    // 1. Place an order with the button: its row reaches CONFIRMED, its journey is drawn.
    browser.fill("#place-item", "burger").await?;
    browser.fill("#place-qty", "2").await?;
    browser.fill("#place-count", "1").await?;
    browser.click("#place").await?;
    let id = browser
        .until(
            "the order's id",
            T,
            "document.querySelector('#action-result[data-action=\"place\"]')?.dataset.orderIds || null",
        )
        .await?;
    let id = id.as_str().context("order id")?.to_owned();
    let row = format!("tr[data-order-id=\"{id}\"]");
    browser
        .until(
            "the order CONFIRMED",
            T,
            &format!("document.querySelector('{row}')?.dataset.status === 'CONFIRMED'"),
        )
        .await?;
    browser
        .until(
            "its swimlane",
            T,
            "document.querySelectorAll('#swimlane g.step').length >= 6 || null",
        )
        .await?;
    // A duplicate of it, on purpose: the swimlane shows it absorbed, no stock moved.
    browser.click("#duplicate").await?;
    browser
        .until(
            "the duplicate in the swimlane",
            T,
            "document.querySelector('#swimlane g.step[data-kind=\"duplicate\"]') !== null",
        )
        .await?;
    let balanced = browser
        .eval("document.querySelector('#stock tr[data-item=\"burger\"]').dataset.balanced")
        .await?;
    anyhow::ensure!(
        balanced == "true",
        "burger's books do not balance: {balanced}"
    );
    let burgers = env.stock("burger").await?;
    anyhow::ensure!(
        burgers == Some(98),
        "the duplicate took stock: {burgers:?} left"
    );
    browser
        .screenshot(&shots, "1-order-confirmed-with-its-journey")
        .await?;

    // 2. Publish poison with the button: it shows in the DLQ panel with its reason.
    browser.click("#poison").await?;
    let poisoned = browser
        .until(
            "the poison's order id",
            T,
            "document.querySelector('#action-result[data-action=\"poison\"]')?.dataset.orderId || null",
        )
        .await?;
    let poisoned = poisoned.as_str().context("order id")?;
    let reason = browser
        .until(
            "the poison in the DLQ panel",
            T,
            &format!("document.querySelector('.dlq-entry[data-order-id=\"{poisoned}\"] .reason')?.textContent || null"),
        )
        .await?;
    anyhow::ensure!(reason == "missing required field qty", "reason {reason}");
    browser.screenshot(&shots, "2-poison-in-the-dlq").await?;
    // Replay it (it is still poison: back in the DLQ), then purge, which asks first.
    browser
        .click(&format!(".dlq-entry[data-order-id=\"{poisoned}\"] button"))
        .await?;
    browser
        .until(
            "the replay done",
            T,
            "[...document.querySelectorAll('#activity code')].some(c => c.textContent.startsWith('sagactl dlq replay 1'))",
        )
        .await?;
    // It comes straight back: inventory-svc refuses it again.
    eventually("the replayed poison back in the DLQ", T, || async {
        match env.depth(&env.topology.dlq_queue).await {
            Ok(1) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    browser.click("#dlq-purge").await?;
    let asked = browser
        .eval("document.querySelector('#dlq-purge').textContent")
        .await?;
    anyhow::ensure!(
        asked.as_str().unwrap_or_default().starts_with("really"),
        "purge did not ask first: {asked}"
    );
    browser.click("#dlq-purge").await?;
    browser
        .until(
            "the DLQ purged",
            T,
            "document.querySelector('#dlq-panel').dataset.depth === '0'",
        )
        .await?;
    let left = env.depth(&env.topology.dlq_queue).await?;
    anyhow::ensure!(
        left == 0,
        "{left} message(s) left in the DLQ after the purge"
    );

    // 3. A lab drill from the page, watched to its verdict.
    browser.click("button[data-drill=\"smoke\"]").await?;
    let verdict = browser
        .until(
            "the smoke drill's verdict",
            Duration::from_secs(60),
            "['passed', 'failed'].includes(document.querySelector('#drill-state').dataset.state) ? document.querySelector('#drill-state').dataset.state : null",
        )
        .await?;
    let output = browser
        .eval("document.querySelector('#drill-output').textContent")
        .await?;
    anyhow::ensure!(
        verdict == "passed",
        "the smoke drill failed; its output:\n{}",
        output.as_str().unwrap_or_default()
    );

    // 4. Kill inventory-svc from the page, place orders, start it again: the inventory_queue
    //    line rises and falls, and no invariant light turns red at any point.
    browser
        .click("button[data-instance=\"inventory-svc\"][data-action=\"kill\"]")
        .await?;
    browser
        .until_green("inventory-svc stopped", T, "document.querySelector('tr[data-instance=\"inventory-svc\"]')?.dataset.running === 'false'")
        .await?;
    browser.fill("#place-count", "8").await?;
    browser.fill("#place-qty", "1").await?;
    browser.click("#place").await?;
    let series = "document.querySelector('path[data-queue=\"inventory_queue\"]')";
    browser
        .until_green(
            "the backlog on the chart",
            T,
            &format!("Number({series}.dataset.last) >= 8"),
        )
        .await?;
    browser
        .screenshot(&shots, "3-backlog-while-inventory-is-down")
        .await?;
    browser
        .click("button[data-instance=\"inventory-svc\"][data-action=\"start\"]")
        .await?;
    browser
        .until_green("inventory-svc running again", T, "document.querySelector('tr[data-instance=\"inventory-svc\"]')?.dataset.running === 'true'")
        .await?;
    browser
        .until_green(
            "the backlog drained on the chart",
            T,
            &format!("{series}.dataset.last === '0' && Number({series}.dataset.max) >= 8"),
        )
        .await?;
    browser
        .until_green(
            "every light green",
            T,
            &format!("[...document.querySelectorAll('[data-rule]')].filter(l => l.dataset.state === 'green').length === {LIGHTS}"),
        )
        .await?;
    browser.screenshot(&shots, "4-drained-and-green").await?;

    // 5. Ship and deliver the first order from its journey: each button is enabled only when
    //    the order may become what it names, and each move shows its status event.
    browser.click(&row).await?;
    let enabled = |button: &str| format!("document.querySelector('{button}').disabled === false");
    browser
        .until("Ship enabled for a CONFIRMED order", T, &enabled("#ship"))
        .await?;
    anyhow::ensure!(
        browser
            .eval("document.querySelector('#deliver').disabled")
            .await?
            == json!(true),
        "Deliver is enabled before the order shipped"
    );
    for (button, status) in [
        ("#ship", OrderStatus::Shipped),
        ("#deliver", OrderStatus::Delivered),
    ] {
        if button == "#deliver" {
            browser
                .until(
                    "Deliver enabled for a SHIPPED order",
                    T,
                    &enabled("#deliver"),
                )
                .await?;
        }
        browser.click(button).await?;
        browser
            .until(
                &format!("the order {status} in the list"),
                T,
                &format!("document.querySelector('{row}')?.dataset.status === '{status}'"),
            )
            .await?;
        browser
            .until(
                &format!("the status event to {status} in the swimlane"),
                T,
                &format!(
                    "[...document.querySelectorAll('#swimlane g.step[data-kind=\"status-event\"] title')].some(t => t.textContent.includes('→ {status}'))"
                ),
            )
            .await?;
    }
    browser
        .until(
            "no move left for a DELIVERED order",
            T,
            "document.querySelector('#ship').disabled && document.querySelector('#deliver').disabled",
        )
        .await?;
    let delivered: Option<String> = env
        .redis()
        .await?
        .hget(env.keys.order(&id), "status")
        .await?;
    anyhow::ensure!(
        delivered.as_deref() == Some(OrderStatus::Delivered.as_str()),
        "order-svc says {delivered:?}"
    );
    browser
        .screenshot(&shots, "5-shipped-and-delivered")
        .await?;
    let errors = browser.eval("window.boardErrors").await?;
    anyhow::ensure!(errors == json!([]), "the page met script errors: {errors}");
    Ok(())
}

/// Issues 20 and 21 on the board: an order of several lines placed from the form shows its lines
/// (and prices when order-svc keeps them) in the list and in the order view; the catalog panel
/// marks a product out once its stock is drained; the DLQ's alert light turns red with a poison
/// message; and with the services exporting their spans to the board (OTLP/HTTP JSON at
/// `/v1/traces`), the order view draws the order's waterfall: outbox, queue, handler.
#[tokio::test(flavor = "multi_thread")]
async fn the_board_shows_lines_prices_the_catalog_alert_lights_and_a_waterfall()
-> anyhow::Result<()> {
    let env = TestEnv::with_stock("board-lines", "burger=10,pizza=5").await?;
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let otel = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())];
    let (order, inventory, notification) = tokio::join!(
        env.start_with(ServiceKind::Order, &otel),
        env.start_with(ServiceKind::Inventory, &otel),
        env.start_with(ServiceKind::Notification, &otel),
    );
    let (order, inventory, notification) = (order?, inventory?, notification?);
    env.seeded_stock("pizza").await?;
    let run_dir = RunDir::new(&[&order, &inventory, &notification])?;
    let board = Board::start(
        &env,
        &format!("127.0.0.1:{port}"),
        &run_dir.0,
        Some((&order, &inventory)),
        &[],
        &[],
    )
    .await?;
    // The board reads OTLP's JSON encoding only, and says so.
    let protobuf = env
        .http()
        .post(format!("{}/v1/traces", board.url))
        .header("content-type", "application/x-protobuf")
        .body(vec![0u8; 4])
        .send()
        .await?;
    assert_eq!(protobuf.status().as_u16(), 415);
    let browser = Browser::start().await?;
    let result = drive_lines(&browser, &board, &env, &order).await;
    if result.is_err() {
        let _ = browser.screenshot(&screenshots(), "lines-failed").await;
    }
    browser.close().await;
    result
}

async fn drive_lines(
    browser: &Browser,
    board: &Board,
    env: &TestEnv,
    order: &ServiceProcess,
) -> anyhow::Result<()> {
    let shots = screenshots();
    browser.open_board(&board.url).await?;
    browser
        .until(
            "the DLQ's alert light green",
            T,
            "document.querySelector('[data-alert=\"SagaDeadLetters\"]')?.dataset.state === 'green'",
        )
        .await?;

    // 1. An order of two lines from the form: "+ line" adds the second.
    browser.fill("#place-item", "burger").await?;
    browser.fill("#place-qty", "2").await?;
    browser.click("#add-line").await?;
    browser
        .fill("#place-lines .place-line .line-item", "pizza")
        .await?;
    browser
        .fill("#place-lines .place-line .line-qty", "1")
        .await?;
    browser.click("#place").await?;
    let id = browser
        .until(
            "the order's id",
            T,
            "document.querySelector('#action-result[data-action=\"place\"]')?.dataset.orderIds || null",
        )
        .await?;
    let id = id.as_str().context("order id")?.to_owned();
    let row = format!("tr[data-order-id=\"{id}\"]");
    browser
        .until(
            "the order CONFIRMED",
            T,
            &format!("document.querySelector('{row}')?.dataset.status === 'CONFIRMED'"),
        )
        .await?;
    let what = browser
        .eval(&format!(
            "document.querySelector('{row} td.what').textContent"
        ))
        .await?;
    let what = what.as_str().unwrap_or_default();
    anyhow::ensure!(
        what.starts_with("2 × burger, 1 × pizza"),
        "the list shows {what:?}"
    );
    // Prices, when order-svc keeps them with the order (else "price unknown").
    let kept: Value = env
        .http()
        .get(order.url(&format!("/order/{id}")))
        .send()
        .await?
        .json()
        .await?;
    let total = kept["total"].as_i64();
    match total {
        Some(total) => anyhow::ensure!(
            browser
                .eval(&format!(
                    "document.querySelector('{row} .price').dataset.total"
                ))
                .await?
                == json!(total.to_string()),
            "the list shows the order's total {total}"
        ),
        None => anyhow::ensure!(
            what.ends_with("price unknown"),
            "no price kept, and the list shows {what:?}"
        ),
    }
    // The order view: one row per line, and the total.
    browser
        .until(
            "the order's lines in its view",
            T,
            "document.querySelectorAll('#journey-order tr[data-item]').length === 2 || null",
        )
        .await?;
    let shown = browser
        .eval("[...document.querySelectorAll('#journey-order tr[data-item]')].map(r => `${r.dataset.qty} ${r.dataset.item} ${r.dataset.unitPrice}`)")
        .await?;
    let price = |line: usize| {
        kept["lines"][line]["unit_price"]
            .as_i64()
            .map(|p| p.to_string())
            .unwrap_or_default()
    };
    anyhow::ensure!(
        shown
            == json!([
                format!("2 burger {}", price(0)),
                format!("1 pizza {}", price(1))
            ]),
        "the order view shows {shown}"
    );

    // 2. The waterfall, from the spans the services exported to the board.
    let phases = browser
        .until(
            "the order's waterfall",
            T,
            "(() => { const kinds = new Set([...document.querySelectorAll('#waterfall rect[data-phase]')].map(r => r.dataset.phase)); \
               return ['request', 'outbox', 'queue', 'handler'].every(k => kinds.has(k)) && Number(document.querySelector('#waterfall').dataset.rows) >= 4 ? [...kinds] : null; })()",
        )
        .await?;
    let rows = browser
        .eval("[...document.querySelectorAll('#waterfall g.row')].map(g => g.dataset.label)")
        .await?;
    anyhow::ensure!(
        rows.as_array().is_some_and(|r| r
            .iter()
            .any(|l| l.as_str().is_some_and(|l| l.starts_with("order.placed → ")))),
        "the waterfall rows {rows} (phases {phases})"
    );
    browser.screenshot(&shots, "6-lines-and-waterfall").await?;

    // 3. The catalog: prices and stock; drain the pizzas and it shows OUT.
    browser
        .until(
            "burger in the catalog with its price",
            T,
            "document.querySelector('#catalog tr[data-item=\"burger\"]')?.textContent.includes('8.99') || null",
        )
        .await?;
    let placed = env
        .http()
        .post(order.url("/order"))
        .json(&json!({"item": "pizza", "qty": 4, "student_id": "s-1"}))
        .send()
        .await?;
    anyhow::ensure!(placed.status() == 201, "POST /order: {}", placed.status());
    browser
        .until(
            "pizza marked out in the catalog",
            T,
            "document.querySelector('#catalog tr[data-item=\"pizza\"]')?.dataset.out === 'true' && document.querySelector('#catalog tr[data-item=\"pizza\"] .marker.out') !== null",
        )
        .await?;

    // 4. Poison: the DLQ's alert light turns red, named after its rule.
    browser.click("#poison").await?;
    browser
        .until(
            "the DLQ's alert light red",
            T,
            "document.querySelector('[data-alert=\"SagaDeadLetters\"]')?.dataset.state === 'red'",
        )
        .await?;
    browser.screenshot(&shots, "7-catalog-and-alerts").await?;
    let errors = browser.eval("window.boardErrors").await?;
    anyhow::ensure!(errors == json!([]), "the page met script errors: {errors}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_change_nothing_and_faults_need_permission_and_loopback() -> anyhow::Result<()>
{
    let env = TestEnv::new("board-refuse").await?;
    let order = env.start(ServiceKind::Order).await?;
    let inventory = env.start(ServiceKind::Inventory).await?;
    env.seeded_stock("burger").await?;
    let run_dir = RunDir::new(&[&order, &inventory])?;
    let board = Board::start(
        &env,
        &format!("127.0.0.1:{}", free_port()),
        &run_dir.0,
        Some((&order, &inventory)),
        &[],
        &[],
    )
    .await?;

    let refused: &[(&str, Value, u16)] = &[
        ("/api/orders", json!({"item": "burger", "qty": 0}), 400),
        ("/api/orders", json!({"item": "burger", "qty": "two"}), 400),
        (
            "/api/orders",
            json!({"item": "burger", "qty": 1, "count": 0}),
            400,
        ),
        ("/api/orders", json!({"item": "", "qty": 1}), 400),
        (
            "/api/orders",
            json!({"item": "burger", "qty": 1, "price": 3}),
            400,
        ),
        (
            "/api/orders",
            json!({"items": [{"item": "burger", "qty": 1}, {"item": "burger", "qty": 2}]}),
            400,
        ),
        ("/api/orders", json!({"items": []}), 400),
        (
            "/api/orders",
            json!({"item": "burger", "qty": 1, "items": [{"item": "pizza", "qty": 1}]}),
            400,
        ),
        ("/api/orders/has%20space/duplicate", json!({}), 400),
        ("/api/orders/no-such-order/duplicate", json!({}), 404),
        ("/api/poison", json!({"kind": "order"}), 400),
        ("/api/poison", json!({}), 400),
        ("/api/dlq/purge", json!({}), 400),
        ("/api/dlq/replay", json!({}), 400),
        ("/api/dlq/replay", json!({"position": 3, "key": "k"}), 404),
        ("/api/drills/rm-rf", json!({}), 404),
        ("/api/faults/services/inventory-svc/kill", json!({}), 403),
        ("/api/faults/connections", json!({}), 403),
        ("/api/faults/redis", json!({"seconds": 2}), 403),
    ];
    for (path, body, expected) in refused {
        let (status, answer) = board.post(&env, path, body.clone()).await?;
        assert_eq!(status, *expected, "POST {path} {body}: {answer}");
        assert!(
            answer["error"].is_string(),
            "POST {path}: every error is JSON with a reason: {answer}"
        );
    }
    // Not JSON, or from another site: refused before anything is read.
    let form = env
        .http()
        .post(format!("{}/api/orders", board.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("item=burger&qty=1")
        .send()
        .await?;
    assert_eq!(form.status().as_u16(), 415);
    let cross_site = env
        .http()
        .post(format!("{}/api/orders", board.url))
        .header("origin", "http://evil.example")
        .json(&json!({"item": "burger", "qty": 1}))
        .send()
        .await?;
    assert_eq!(cross_site.status().as_u16(), 403);
    let journey = env
        .http()
        .get(format!("{}/api/orders/nobody/journey", board.url))
        .send()
        .await?;
    assert_eq!(journey.status().as_u16(), 404);

    // Nothing changed: no order, no message anywhere, stock untouched, inventory-svc alive.
    let orders: usize = env.redis().await?.zcard(env.keys.orders()).await?;
    assert_eq!(orders, 0, "no order was placed");
    for queue in [&env.topology.inventory_queue, &env.topology.dlq_queue] {
        assert_eq!(env.depth(queue).await?, 0, "{queue} is empty");
    }
    assert_eq!(env.stock("burger").await?, Some(100));
    assert_eq!(
        inventory.ready_status().await,
        Some(200),
        "inventory-svc still runs"
    );

    // With faults allowed on loopback, a bad action or instance is still a 4xx, and Redis may
    // not be stopped without its own permission.
    let allowed = Board::start(
        &env,
        &format!("127.0.0.1:{}", free_port()),
        &run_dir.0,
        Some((&order, &inventory)),
        &["--allow-faults"],
        &[],
    )
    .await?;
    for (path, expected) in [
        ("/api/faults/services/inventory-svc/explode", 400),
        ("/api/faults/services/kafka/kill", 404),
        ("/api/faults/services/inventory-svc/start", 409),
        ("/api/faults/redis", 403),
    ] {
        let (status, answer) = allowed.post(&env, path, json!({"seconds": 2})).await?;
        assert_eq!(status, expected, "POST {path}: {answer}");
    }
    assert_eq!(
        inventory.ready_status().await,
        Some(200),
        "inventory-svc still runs"
    );

    // On a non-loopback address the fault buttons are refused even with --allow-faults.
    let wide = Board::start(
        &env,
        &format!("0.0.0.0:{}", free_port()),
        &run_dir.0,
        Some((&order, &inventory)),
        &["--allow-faults"],
        &[],
    )
    .await?;
    let (status, answer) = wide
        .post(&env, "/api/faults/services/inventory-svc/kill", json!({}))
        .await?;
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not a loopback address"),
        "{answer}"
    );
    assert_eq!(
        inventory.ready_status().await,
        Some(200),
        "inventory-svc still runs"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_instance_of_a_service_is_listed_and_broken_on_its_own() -> anyhow::Result<()> {
    let env = TestEnv::new("board-instances").await?;
    let order = env.start(ServiceKind::Order).await?;
    let first = env.start(ServiceKind::Inventory).await?;
    let second = env.start(ServiceKind::Inventory).await?;
    // As a profile with several instances would write them: one pid file per instance.
    let run_dir = RunDir::new(&[&order, &first])?;
    std::fs::write(
        run_dir.0.join("inventory-svc-2.pid"),
        format!("{}\n", second.pid().context("no pid")?),
    )?;
    let board = Board::start(
        &env,
        &format!("127.0.0.1:{}", free_port()),
        &run_dir.0,
        Some((&order, &first)),
        &["--allow-faults"],
        &[],
    )
    .await?;
    let state = format!("{}/api/state", board.url);
    let instances = |state: &Value| -> Vec<(String, bool)> {
        state["services"]["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| i["service"] == "inventory-svc")
            .map(|i| {
                (
                    i["name"].as_str().unwrap_or_default().to_owned(),
                    i["running"] == true,
                )
            })
            .collect()
    };
    let consumers = |state: &Value| {
        state["queues"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|q| q["name"] == env.topology.inventory_queue.as_str())
            .and_then(|q| q["consumers"].as_u64())
    };
    eventually("both instances listed, both consuming", T, || async {
        let now = env.get_json(&state).await.map_err(|e| e.to_string())?;
        let listed = instances(&now);
        let expected = vec![
            ("inventory-svc".to_owned(), true),
            ("inventory-svc-2".to_owned(), true),
        ];
        if listed == expected && consumers(&now) == Some(2) {
            Ok(())
        } else {
            Err(format!("{listed:?}, {:?} consumers", consumers(&now)))
        }
    })
    .await?;

    let (status, answer) = board
        .post(&env, "/api/faults/services/inventory-svc-2/kill", json!({}))
        .await?;
    assert_eq!(status, 200, "{answer}");
    eventually("only the second instance gone", T, || async {
        let now = env.get_json(&state).await.map_err(|e| e.to_string())?;
        let listed = instances(&now);
        let expected = vec![
            ("inventory-svc".to_owned(), true),
            ("inventory-svc-2".to_owned(), false),
        ];
        if listed == expected && consumers(&now) == Some(1) {
            Ok(())
        } else {
            Err(format!("{listed:?}, {:?} consumers", consumers(&now)))
        }
    })
    .await?;
    assert_eq!(
        first.ready_status().await,
        Some(200),
        "the first instance still runs"
    );
    // scripts/svc.sh knows the base names only: the board says so instead of guessing.
    let (status, answer) = board
        .post(
            &env,
            "/api/faults/services/inventory-svc-2/start",
            json!({}),
        )
        .await?;
    assert_eq!(status, 409, "{answer}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_board_stops_only_the_redis_it_may_and_brings_it_back_with_its_data()
-> anyhow::Result<()> {
    let redis = PrivateRedis::start().await?;
    let mut env = TestEnv::new("board-redis").await?;
    env.redis_url = redis.url();
    env.redis()
        .await?
        .set::<_, _, ()>(format!("{}:marker", env.prefix), "kept")
        .await?;
    let run_dir = RunDir::new(&[])?;
    let board = Board::start(
        &env,
        &format!("127.0.0.1:{}", free_port()),
        &run_dir.0,
        None,
        &["--allow-faults", "--allow-redis-stop"],
        &[],
    )
    .await?;

    let (status, answer) = board
        .post(&env, "/api/faults/redis", json!({"seconds": 0}))
        .await?;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = board
        .post(&env, "/api/faults/redis", json!({"seconds": 3}))
        .await?;
    assert_eq!(status, 202, "{answer}");
    assert!(
        answer["restart"]
            .as_str()
            .unwrap_or_default()
            .contains("--appendonly yes"),
        "{answer}"
    );
    let ping = || async {
        let client = redis::Client::open(env.redis_url.as_str()).map_err(|e| e.to_string())?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(|e| e.to_string())
    };
    assert!(
        ping().await.is_err(),
        "Redis is down right after the answer"
    );
    let (status, answer) = board
        .post(&env, "/api/faults/redis", json!({"seconds": 3}))
        .await?;
    assert_eq!(status, 409, "one outage at a time: {answer}");

    eventually("Redis back", T, ping).await?;
    let kept: Option<String> = env
        .redis()
        .await?
        .get(format!("{}:marker", env.prefix))
        .await?;
    assert_eq!(
        kept.as_deref(),
        Some("kept"),
        "the data survived the outage"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_board_answers_only_its_own_hosts_and_no_page_may_frame_it() -> anyhow::Result<()> {
    let env = TestEnv::new("board-hosts").await?;
    let run_dir = RunDir::new(&[])?;
    let board = Board::start(
        &env,
        &format!("127.0.0.1:{}", free_port()),
        &run_dir.0,
        None,
        &["--allow-host", "board.lab"],
        &[],
    )
    .await?;
    let port = board.url.rsplit(':').next().unwrap_or_default().to_owned();
    let get = |host: String| {
        env.http()
            .get(format!("{}/api/state", board.url))
            .header("host", host)
            .send()
    };
    // (Host header, answered?)
    let hosts = [
        (format!("127.0.0.1:{port}"), true),
        (format!("localhost:{port}"), true),
        (format!("board.lab:{port}"), true),
        // A DNS-rebinding page: its own name, resolving to 127.0.0.1.
        (format!("evil.example:{port}"), false),
        ("evil.example".to_owned(), false),
    ];
    for (host, answered) in hosts {
        let r = get(host.clone()).await?;
        let status = r.status().as_u16();
        let csp = r
            .headers()
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let frame = r
            .headers()
            .get("x-frame-options")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        assert_eq!(
            csp.as_deref(),
            Some("frame-ancestors 'none'"),
            "{host}: every answer forbids framing"
        );
        assert_eq!(frame.as_deref(), Some("DENY"), "{host}");
        if answered {
            assert_eq!(status, 200, "{host}");
        } else {
            assert_eq!(status, 403, "{host}");
            let body: Value = r.json().await?;
            assert!(
                body["error"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("--allow-host"),
                "{body}"
            );
        }
    }
    // The page, and a POST from the rebinding page (its Origin matches its Host): refused.
    let page = env.http().get(&board.url).send().await?;
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.headers().contains_key("content-security-policy"));
    let rebinding = env
        .http()
        .post(format!("{}/api/dlq/purge", board.url))
        .header("host", format!("evil.example:{port}"))
        .header("origin", format!("http://evil.example:{port}"))
        .json(&json!({"confirm": true}))
        .send()
        .await?;
    assert_eq!(rebinding.status().as_u16(), 403);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_held_unacked_turns_its_light_red_until_it_is_settled() -> anyhow::Result<()> {
    use futures_util::StreamExt;
    use lapin::options::{BasicConsumeOptions, BasicQosOptions};

    let env = TestEnv::new("board-held").await?;
    env.declare_topology().await?;
    let run_dir = RunDir::new(&[])?;
    let board = Board::start(
        &env,
        &format!("127.0.0.1:{}", free_port()),
        &run_dir.0,
        None,
        &[],
        &[],
    )
    .await?;
    let state = format!("{}/api/state", board.url);
    let light = |state: &Value| -> Option<(String, Value)> {
        state["invariants"]["lights"]
            .as_array()?
            .iter()
            .find(|l| l["id"] == "deliveries-settled")
            .map(|l| {
                (
                    l["state"].as_str().unwrap_or_default().to_owned(),
                    l["detail"].clone(),
                )
            })
    };
    eventually("the light green", T, || async {
        let now = env.get_json(&state).await.map_err(|e| e.to_string())?;
        match light(&now) {
            Some((s, _)) if s == "green" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;

    // A consumer that takes one message and never settles it: what a panicking handler did.
    env.publish_bare(
        "order.placed",
        br#"{"order_id":"held-1","item":"burger","qty":1}"#,
    )
    .await?;
    let conn = env.connect().await?;
    let channel = conn.create_channel().await?;
    channel.basic_qos(1, BasicQosOptions::default()).await?;
    let mut consumer = channel
        .basic_consume(
            env.topology.inventory_queue.as_str().into(),
            "stuck".into(),
            BasicConsumeOptions::default(),
            Default::default(),
        )
        .await?;
    let _held = consumer.next().await.context("no delivery")??;
    let red = eventually(
        "the light red, naming the queue",
        Duration::from_secs(60),
        || async {
            let now = env.get_json(&state).await.map_err(|e| e.to_string())?;
            match light(&now) {
                Some((s, detail)) if s == "red" => Ok(detail),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await?;
    assert!(
        red.to_string()
            .contains(env.topology.inventory_queue.as_str()),
        "{red}"
    );

    // Settled (the channel closes, the broker takes it back): green again.
    channel.close(200, "settled".into()).await?;
    eventually("the light green again", Duration::from_secs(60), || async {
        let now = env.get_json(&state).await.map_err(|e| e.to_string())?;
        match light(&now) {
            Some((s, _)) if s == "green" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_sends_the_token_it_was_opened_with() -> anyhow::Result<()> {
    let env = TestEnv::new("board-token").await?;
    env.declare_topology().await?;
    let run_dir = RunDir::new(&[])?;
    let board = Board::start(
        &env,
        &format!("127.0.0.1:{}", free_port()),
        &run_dir.0,
        None,
        &["--token", "page-s3cret"],
        &[],
    )
    .await?;
    // Without the token, the same action is refused.
    let (status, answer) = board
        .post(&env, "/api/dlq/purge", json!({"confirm": true}))
        .await?;
    assert_eq!(status, 403, "{answer}");

    let browser = Browser::start().await?;
    let result = async {
        browser
            .open_board(&format!("{}/#token=page-s3cret", board.url))
            .await?;
        let hash = browser.eval("location.hash").await?;
        anyhow::ensure!(hash == "", "the token stays in the address bar: {hash}");
        browser
            .until(
                "the page says actions need the token",
                T,
                "document.querySelector('[data-actions=\"token\"]') !== null",
            )
            .await?;
        // Purge asks first, then goes: with the token from the address, the board obeys.
        browser.click("#dlq-purge").await?;
        browser.click("#dlq-purge").await?;
        browser
            .until(
                "the purge done",
                T,
                "[...document.querySelectorAll('#activity code')].some(c => c.textContent.startsWith('sagactl dlq purge'))",
            )
            .await?;
        let errors = browser.eval("window.boardErrors").await?;
        anyhow::ensure!(errors == json!([]), "the page met script errors: {errors}");
        Ok(())
    }
    .await;
    browser.close().await;
    result
}
