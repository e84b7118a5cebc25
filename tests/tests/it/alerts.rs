//! The alert rules (deploy/prometheus/alerts.yml), held two ways.
//!
//! - On paper: `promtool test rules` runs the unit cases of alerts.test.yml (each alert firing and
//!   not firing), every alert has both kinds of case, docs/OPERATIONS.md's table names every
//!   alert, and `promtool check config` accepts the demo's scrape configuration.
//! - For real: a Prometheus of the test's own (free loopback port, temporary data directory)
//!   scrapes the three services of the test's world and the broker's per-queue metrics of the
//!   test's vhost only, with the repository's rules. Stopping inventory-svc fires
//!   `QueueNoConsumers` for this vhost's `inventory_queue` within its `for:`, and starting it
//!   again clears it; and a publish the broker returns is counted where `SagaPublishesFailing`
//!   reads it.
//!
//! The live test evaluates every second, so it loads the rules with every `for:` shortened to
//! [`TEST_FOR`] and nothing else changed: the expressions, labels and annotations are the file's
//! own, read from it at run time (one definition). `promtool` and `prometheus` come from the OS's
//! `prometheus` package, which scripts/test.sh installs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::hostile::board::Board;
use harness::http::metric;
use harness::{ServiceKind, ServiceProcess, TestEnv, eventually};
use reqwest::Method;
use serde_json::Value;
use yaml_rust2::{Yaml, YamlEmitter, YamlLoader};

/// The `for:` of every rule in the live test, instead of the file's minutes.
const TEST_FOR: Duration = Duration::from_secs(5);
/// How often the live test's Prometheus scrapes and evaluates.
const TICK: &str = "1s";
/// rabbitmq_prometheus's port.
const BROKER_METRICS: &str = "127.0.0.1:15692";

fn prometheus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus")
}

fn load_yaml(path: &Path) -> Yaml {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{} is empty", path.display()))
}

/// Every rule of a rules file (all groups), as YAML maps.
fn rules_of(file: &Yaml) -> Vec<&Yaml> {
    file["groups"]
        .as_vec()
        .expect("a rules file has groups")
        .iter()
        .flat_map(|g| g["rules"].as_vec().expect("a group has rules"))
        .collect()
}

fn alert_names(file: &Yaml) -> BTreeSet<String> {
    rules_of(file)
        .into_iter()
        .map(|r| {
            r["alert"]
                .as_str()
                .expect("every rule is an alert")
                .to_owned()
        })
        .collect()
}

/// Run one of the package's tools in deploy/prometheus and say what it printed if it failed.
fn run(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .current_dir(prometheus_dir())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {tool} ({e}): scripts/test.sh installs it (apt-get install prometheus)"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{tool} {} failed:\n{text}",
        args.join(" ")
    );
    text
}

#[test]
fn the_rules_pass_their_unit_tests_and_the_scrape_config_is_valid() {
    let tested = run("promtool", &["test", "rules", "alerts.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
    let checked = run("promtool", &["check", "config", "prometheus.yml"]);
    assert!(checked.contains("SUCCESS"), "{checked}");
}

/// Each alert has a unit case where it fires and one where it does not (an `exp_alerts` that is
/// empty at some time), so a rule added without its cases fails here.
#[test]
fn every_alert_has_cases_firing_and_not_firing() {
    let dir = prometheus_dir();
    let alerts = alert_names(&load_yaml(&dir.join("alerts.yml")));
    let tests = load_yaml(&dir.join("alerts.test.yml"));
    let (mut firing, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for case in tests["tests"].as_vec().expect("alerts.test.yml has tests") {
        for eval in case["alert_rule_test"].as_vec().into_iter().flatten() {
            let name = eval["alertname"].as_str().expect("alertname").to_owned();
            match eval["exp_alerts"].as_vec() {
                Some(expected) if !expected.is_empty() => firing.insert(name),
                _ => quiet.insert(name),
            };
        }
    }
    let without = |seen: &BTreeSet<String>| alerts.difference(seen).cloned().collect::<Vec<_>>();
    assert!(
        without(&firing).is_empty(),
        "alerts without a firing case: {:?}",
        without(&firing)
    );
    assert!(
        without(&quiet).is_empty(),
        "alerts without a not-firing case: {:?}",
        without(&quiet)
    );
}

/// The table in docs/OPERATIONS.md, "Alerts", has a row for every alert of the file, and no other.
#[test]
fn the_operations_table_names_every_alert() {
    let alerts = alert_names(&load_yaml(&prometheus_dir().join("alerts.yml")));
    let ops_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/OPERATIONS.md");
    let ops = std::fs::read_to_string(&ops_path).expect("docs/OPERATIONS.md");
    let section = ops
        .split("\n## Alerts\n")
        .nth(1)
        .expect("OPERATIONS.md has an Alerts section")
        .split("\n## ")
        .next()
        .unwrap_or_default();
    let rows: BTreeSet<String> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect();
    assert_eq!(rows, alerts, "OPERATIONS.md's alert table and alerts.yml");
}

/// alerts.yml with every `for:` set to `for_`, and nothing else changed.
fn rules_with_for(for_: Duration) -> String {
    let mut file = load_yaml(&prometheus_dir().join("alerts.yml"));
    let key = Yaml::String("for".into());
    let Yaml::Hash(top) = &mut file else {
        panic!("alerts.yml is a map")
    };
    let groups = top
        .get_mut(&Yaml::String("groups".into()))
        .and_then(|g| match g {
            Yaml::Array(groups) => Some(groups),
            _ => None,
        })
        .expect("alerts.yml has groups");
    for group in groups {
        let Yaml::Hash(group) = group else { continue };
        let Some(Yaml::Array(rules)) = group.get_mut(&Yaml::String("rules".into())) else {
            continue;
        };
        for rule in rules {
            if let Yaml::Hash(rule) = rule
                && let Some(value) = rule.get_mut(&key)
            {
                *value = Yaml::String(format!("{}s", for_.as_secs()));
            }
        }
    }
    let mut out = String::new();
    YamlEmitter::new(&mut out)
        .dump(&file)
        .expect("the rules are emitted as YAML");
    out
}

/// A Prometheus of this test's own: its port, its directory (config, rules, data, log), killed
/// and removed on drop.
struct Prometheus {
    child: std::process::Child,
    dir: PathBuf,
    url: String,
    http: reqwest::Client,
}

impl Prometheus {
    /// Start it with the repository's rules (every `for:` at [`TEST_FOR`]) scraping `services`
    /// and the broker's per-queue metrics of `vhost`, and wait until it is ready.
    async fn start(name: &str, vhost: &str, services: &[&ServiceProcess]) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("saga-prometheus-{name}"));
        std::fs::create_dir_all(dir.join("data"))?;
        std::fs::write(dir.join("alerts.yml"), rules_with_for(TEST_FOR))?;
        let mut config = format!(
            "global:\n  scrape_interval: {TICK}\n  evaluation_interval: {TICK}\n\
             rule_files:\n  - alerts.yml\nscrape_configs:\n"
        );
        for s in services {
            config.push_str(&format!(
                "  - job_name: {}\n    static_configs:\n      - targets: [\"{}\"]\n",
                s.kind.binary(),
                s.addr
            ));
        }
        config.push_str(&format!(
            "  - job_name: rabbitmq\n    metrics_path: /metrics/detailed\n    params:\n      \
             family: [queue_coarse_metrics, queue_consumer_count]\n      vhost: [{vhost:?}]\n    \
             static_configs:\n      - targets: [\"{BROKER_METRICS}\"]\n"
        ));
        std::fs::write(dir.join("prometheus.yml"), &config)?;

        // A free loopback port: bound, read and let go for Prometheus to take.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot run prometheus ({e}): scripts/test.sh installs it (apt-get install prometheus)"
                )
            })?;
        let prometheus = Self {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
        };
        let ready = format!("{}/-/ready", prometheus.url);
        eventually("our Prometheus ready", Duration::from_secs(30), || async {
            match prometheus.http.get(&ready).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                other => Err(format!("{other:?}; log: {}", prometheus.log())),
            }
        })
        .await?;
        Ok(prometheus)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/<path>`'s `data`, or why not.
    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
        let body: Value = self
            .http
            .get(format!("{}/api/v1/{path}", self.url))
            .query(query)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        match body["status"].as_str() {
            Some("success") => Ok(body["data"].clone()),
            _ => Err(format!("{path}: {body}")),
        }
    }

    /// The states of the alerts pending or firing now whose labels include all of `labels`.
    async fn alert_states(&self, labels: &[(&str, &str)]) -> Result<Vec<String>, String> {
        let data = self.api("alerts", &[]).await?;
        Ok(data["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| labels.iter().all(|(k, v)| a["labels"][*k] == *v))
            .filter_map(|a| a["state"].as_str().map(str::to_owned))
            .collect())
    }

    /// Wait until the alerts with `labels` are in `state` ("firing"), or gone (`None`).
    async fn until_alert(
        &self,
        labels: &[(&str, &str)],
        state: Option<&str>,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let what = format!("alert {labels:?} {}", state.unwrap_or("gone"));
        eventually(&what, timeout, || async {
            let states = self.alert_states(labels).await?;
            let done = match state {
                Some(want) => states.iter().any(|s| s == want),
                None => states.is_empty(),
            };
            if done {
                Ok(())
            } else {
                Err(format!("states {states:?}"))
            }
        })
        .await
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The broker's per-queue metrics must be on (scripts/deps.sh enables rabbitmq_prometheus).
async fn broker_metrics_of(vhost: &str) -> anyhow::Result<String> {
    let url = format!("http://{BROKER_METRICS}/metrics/detailed");
    let r = reqwest::Client::new()
        .get(&url)
        .query(&[("family", "queue_consumer_count"), ("vhost", vhost)])
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!("{url}: {e}; enable rabbitmq_prometheus (run scripts/deps.sh)")
        })?;
    anyhow::ensure!(r.status().is_success(), "{url}: {}", r.status());
    Ok(r.text().await?)
}

/// Wait until the board's light for `alert` (judged by Prometheus) is `state`, with a detail
/// line that mentions `mentions`.
async fn until_board_light(
    env: &TestEnv,
    board: &Board,
    alert: &str,
    state: &str,
    mentions: &str,
) -> anyhow::Result<()> {
    let url = format!("{}/api/state", board.url);
    eventually(
        &format!("the board's {alert} light {state}"),
        Duration::from_secs(30),
        || async {
            let now = env.get_json(&url).await.map_err(|e| e.to_string())?;
            let light = now["alerts"]["lights"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|l| l["alert"] == alert)
                .cloned()
                .ok_or_else(|| format!("no {alert} light: {}", now["alerts"]))?;
            let detail = light["detail"].to_string();
            if light["judged_by"] == "prometheus"
                && light["state"] == state
                && detail.contains(mentions)
            {
                Ok(())
            } else {
                Err(format!("{light}"))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn stopping_inventory_fires_queue_no_consumers_and_starting_it_clears_it()
-> anyhow::Result<()> {
    let env = TestEnv::new("alerts").await?;
    let (order, mut inventory, notification) = env.start_all().await?;
    inventory.wait_ready(Duration::from_secs(30)).await?;
    let vhost = env.vhost.clone();
    let inventory_queue = env.topology.inventory_queue.clone();
    let page = broker_metrics_of(&vhost).await?;
    anyhow::ensure!(
        page.contains(&format!("queue=\"{inventory_queue}\"")),
        "the broker's per-queue metrics of {vhost} lack {inventory_queue}:\n{page}"
    );

    let prometheus =
        Prometheus::start(&env.name, &vhost, &[&order, &inventory, &notification]).await?;
    // It loaded the repository's rules, all of them.
    let loaded: BTreeSet<String> = prometheus
        .api("rules", &[])
        .await
        .map_err(anyhow::Error::msg)?["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        loaded,
        alert_names(&load_yaml(&prometheus_dir().join("alerts.yml"))),
        "the rules Prometheus loaded"
    );

    // Scraped: every target answers, and Prometheus sees inventory-svc consuming this vhost's
    // inventory_queue; no alert about it.
    eventually(
        "Prometheus scraping the three services and the broker",
        Duration::from_secs(30),
        || async {
            let data = prometheus.api("query", &[("query", "up == 1")]).await?;
            let up: BTreeSet<&str> = data["result"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["metric"]["job"].as_str())
                .collect();
            let all = ["inventory-svc", "notification-svc", "order-svc", "rabbitmq"];
            if up == BTreeSet::from(all) {
                Ok(())
            } else {
                Err(format!("up: {up:?}"))
            }
        },
    )
    .await?;
    // The board, given this Prometheus, lights the rules only Prometheus judges from its answer.
    let board = Board::start_with(
        &env,
        &order,
        &inventory,
        &[("PROMETHEUS_URL", prometheus.url.as_str())],
    )
    .await?;
    until_board_light(&env, &board, "SagaTargetDown", "green", "").await?;
    let consumers =
        format!("rabbitmq_detailed_queue_consumers{{vhost={vhost:?},queue={inventory_queue:?}}}");
    eventually(
        "Prometheus sees inventory_queue's consumer",
        Duration::from_secs(30),
        || async {
            let data = prometheus.api("query", &[("query", &consumers)]).await?;
            match data["result"][0]["value"][1].as_str() {
                Some("1") => Ok(()),
                _ => Err(format!("{consumers}: {data}")),
            }
        },
    )
    .await?;
    let inventory_alert = [
        ("alertname", "QueueNoConsumers"),
        ("vhost", vhost.as_str()),
        ("queue", inventory_queue.as_str()),
    ];
    let before = prometheus
        .alert_states(&inventory_alert)
        .await
        .map_err(anyhow::Error::msg)?;
    assert!(before.is_empty(), "no alert while it consumes: {before:?}");

    // Stop inventory-svc: the queue has no consumer; the alert is pending, then fires once the
    // condition has held for its `for:`, counted from before the SIGTERM.
    let stopped = Instant::now();
    let status = inventory.terminate(Duration::from_secs(15)).await?;
    assert!(status.success(), "inventory-svc exits cleanly: {status}");
    let pending_seen = std::cell::Cell::new(false);
    eventually(
        "QueueNoConsumers firing for this vhost's inventory_queue",
        TEST_FOR + Duration::from_secs(30),
        || async {
            let states = prometheus.alert_states(&inventory_alert).await?;
            if states.iter().any(|s| s == "pending") {
                pending_seen.set(true);
            }
            if states.iter().any(|s| s == "firing") {
                Ok(())
            } else {
                Err(format!("states {states:?}"))
            }
        },
    )
    .await?;
    let fired_after = stopped.elapsed();
    assert!(
        fired_after >= TEST_FOR,
        "fired {fired_after:?} after the stop, before its for: {TEST_FOR:?}"
    );
    assert!(pending_seen.get(), "the alert was pending before it fired");
    // Only the queues inventory-svc reads lost their consumer: the others still have theirs.
    for queue in [
        &env.topology.order_status_queue,
        &env.topology.notification_queue,
    ] {
        let labels = [
            ("alertname", "QueueNoConsumers"),
            ("vhost", vhost.as_str()),
            ("queue", queue.as_str()),
        ];
        let states = prometheus
            .alert_states(&labels)
            .await
            .map_err(anyhow::Error::msg)?;
        assert!(
            states.is_empty(),
            "{queue} still has a consumer: {states:?}"
        );
    }
    // Its /metrics does not answer either: that is SagaTargetDown, from the same rules file.
    let target_down = [("alertname", "SagaTargetDown"), ("job", "inventory-svc")];
    prometheus
        .until_alert(
            &target_down,
            Some("firing"),
            TEST_FOR + Duration::from_secs(30),
        )
        .await?;
    until_board_light(&env, &board, "SagaTargetDown", "red", "inventory-svc").await?;

    // Start it again: the consumer is back, and both alerts go away.
    inventory.restart().await?;
    inventory.wait_ready(Duration::from_secs(30)).await?;
    prometheus
        .until_alert(&inventory_alert, None, Duration::from_secs(30))
        .await?;
    prometheus
        .until_alert(&target_down, None, Duration::from_secs(30))
        .await?;
    until_board_light(&env, &board, "SagaTargetDown", "green", "").await?;

    drop(board);
    drop(prometheus);
    for service in [order, inventory, notification] {
        service.stop().await;
    }
    Ok(())
}

/// The counter `SagaPublishesFailing` reads, from a real failure: with the binding that takes new
/// orders to inventory deleted, and no consumer running to declare it again, order-svc's relay
/// publishes an OrderPlaced the broker returns as unroutable. It counts it
/// (`saga_publish_failures_total`), declares the topology again and resends: the order still
/// reaches inventory_queue.
#[tokio::test(flavor = "multi_thread")]
async fn a_returned_publish_is_counted_for_the_publish_alert() -> anyhow::Result<()> {
    let env = TestEnv::new("alerts-publish").await?;
    let order = env.start(ServiceKind::Order).await?;
    // Ready: every one of its connections (relay, status consumer, catalog replica) has declared
    // the topology, so none puts the binding back after it is deleted (seen once in a full run).
    order.wait_ready(Duration::from_secs(30)).await?;
    let (vhost, exchange) = (&env.vhost, &env.topology.exchange);
    let inventory_queue = env.topology.inventory_queue.clone();
    let binding = format!("bindings/{vhost}/e/{exchange}/q/{inventory_queue}/order.placed");
    // Deleted once the relay has declared it.
    eventually(
        "the order.placed binding deleted",
        Duration::from_secs(30),
        || async {
            match env.management(Method::DELETE, &binding).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("DELETE {binding}: {}", r.status())),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await?;

    env.place(&order, "burger", 1).await?;
    eventually(
        "the OrderPlaced in inventory_queue after all",
        Duration::from_secs(30),
        || async {
            match env.depth(&inventory_queue).await {
                Ok(1) => Ok(()),
                other => Err(format!("depth {other:?}")),
            }
        },
    )
    .await?;
    let page = env.get_text(&order.url("/metrics")).await?;
    let returned = metric(
        &page,
        "saga_publish_failures_total",
        &[r#"routing_key="order.placed""#, r#"reason="unroutable""#],
    );
    assert!(
        returned >= 1.0,
        "the returned publish is counted; /metrics:\n{page}"
    );
    order.stop().await;
    Ok(())
}
