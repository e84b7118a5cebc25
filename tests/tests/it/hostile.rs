//! The hostile-input suite: seeded random HTTP requests and AMQP messages against the real
//! services, in batches, with the saga's promises checked after each batch (docs/DESIGN.md §6,
//! invariant 3: no input reaches a panic, every delivery is settled, poison never blocks).
//!
//! The seed is printed at the start; `HOSTILE_SEED=<n>` replays a run, `HOSTILE_ONLY=<case>`
//! sends one case of it alone, `HOSTILE_SOAK=1` runs 20 times as many cases (up to 15 minutes),
//! `HOSTILE_CASES` / `HOSTILE_SECS` set the count and wall time. The generators and checks are
//! in `tests/src/hostile/`. Each suite collects every finding of its run (a finding does not
//! stop the cases of its batch) and fails at the end listing them all; once a batch check
//! fails, the world is broken and later batches could not be judged, so the run stops there.
//!
//! Run: `cargo build --workspace --bins && cargo test -p saga-tests --test it hostile::`

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use harness::hostile::after::{self, SETTLE};
use harness::hostile::amqp::{self, Expect, Published, RawPublisher};
use harness::hostile::board::Board;
use harness::hostile::http::{self, Answer, Request, Target};
use harness::hostile::run::{Budget, Findings, Seed, draw};
use harness::{ServiceProcess, TestEnv};
use proptest::prelude::*;

/// How long a service may take to answer `/health` again after one request or message.
const ALIVE: Duration = Duration::from_secs(5);

/// How long order-svc's relay may take to publish what one request wrote.
const OUTBOX: Duration = Duration::from_secs(3);

/// The three services, with how far into each one's log the panic check has read.
struct Services {
    all: [ServiceProcess; 3],
    seen: [usize; 3],
    known_panics: BTreeSet<String>,
}

impl Services {
    async fn start(env: &TestEnv) -> anyhow::Result<Self> {
        let (order, inventory, notification) = env.start_all().await?;
        Ok(Self {
            all: [order, inventory, notification],
            seen: [0; 3],
            known_panics: BTreeSet::new(),
        })
    }

    fn order(&self) -> &ServiceProcess {
        &self.all[0]
    }

    /// Every panic logged since the last look.
    fn panics(&mut self) -> Vec<String> {
        let mut found = Vec::new();
        for (service, seen) in self.all.iter().zip(self.seen.iter_mut()) {
            found.extend(after::panics_since(service, seen, &mut self.known_panics));
        }
        found
    }

    /// Each service still answers `/health`; one that does not is a finding, and is started
    /// again so the run can go on.
    async fn alive(&mut self, client: &reqwest::Client, findings: &mut Findings, case: usize) {
        for service in &mut self.all {
            if let Err(why) = after::alive(client, &service.url(""), ALIVE).await {
                findings.add(
                    Some(case),
                    format!("{} stopped answering /health: {why}", service.label()),
                    format!("log tail: {:?}", service.log_tail(5)),
                );
                if let Err(e) = service.restart().await {
                    findings.add(
                        None,
                        format!("{} did not come back: {e:#}", service.label()),
                        "",
                    );
                }
            }
        }
    }

    /// Each service answers `/ready` 200 within [`SETTLE`].
    async fn ready(&self, client: &reqwest::Client) -> Vec<String> {
        let mut problems = Vec::new();
        for service in &self.all {
            if let Err(why) = after::ready(client, &service.url(""), SETTLE).await {
                problems.push(format!("{} not ready: {why}", service.label()));
            }
        }
        problems
    }
}

/// `HOSTILE_TRACE=1`: print each case as it is sent, and what became of it.
fn trace() -> bool {
    std::env::var_os("HOSTILE_TRACE").is_some()
}

/// Report a failed batch check with the cases of the batch (printed in full above).
fn batch_failed(findings: &mut Findings, cases: &std::ops::Range<usize>, problems: Vec<String>) {
    for problem in problems {
        findings.add(
            None,
            problem,
            format!(
                "after cases {}..{} (their list is printed above the verdict)",
                cases.start, cases.end
            ),
        );
    }
}

/// The failed batch's cases, and what each service logged last, for whoever reads the failure.
fn print_batch<T: std::fmt::Debug>(suite: &str, cases: &[(usize, T)], services: &Services) {
    eprintln!("hostile {suite}: the cases of the failed batch:");
    for (i, case) in cases {
        eprintln!("  case {i}: {case:?}");
    }
    for service in &services.all {
        eprintln!(
            "hostile {suite}: the last lines {} logged:",
            service.label()
        );
        for line in service.log_tail(12) {
            eprintln!("  {}", line.chars().take(600).collect::<String>());
        }
    }
}

fn any_request() -> impl Strategy<Value = Request> {
    prop_oneof![
        4 => http::request(Target::Order),
        2 => http::request(Target::Inventory),
        1 => http::request(Target::Notification),
        3 => http::request(Target::Board),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn http_requests_at_every_route_get_a_json_answer_and_break_nothing() -> anyhow::Result<()> {
    let suite = "http_requests";
    let seed = Seed::from_env(suite)?;
    let budget = Budget::from_env(1500, 250, Duration::from_secs(60));
    let env = TestEnv::new("hostile-http").await?;
    let mut services = Services::start(&env).await?;
    env.seeded_stock("burger").await?;
    let mut board = Board::start(&env, &services.all[0], &services.all[1]).await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()?;
    // Real orders for the routes that take an id, so those reach their handlers.
    let mut orders = vec![
        env.place(services.order(), "burger", 1).await?,
        env.place(services.order(), "pizza", 1).await?,
    ];

    let mut findings = Findings::new(suite, seed);
    let mut runner = seed.runner(suite);
    let strategy = any_request();
    let mut relay_works = true;
    let started = Instant::now();
    let (mut drawn, mut broken) = (0, false);
    while drawn < budget.draws() && started.elapsed() < budget.wall {
        let batch = drawn..(drawn + budget.batch).min(budget.draws());
        let mut cases = Vec::new();
        for case in batch.clone() {
            let request = draw(&mut runner, &strategy)?;
            drawn += 1;
            if !budget.sends(case) {
                continue;
            }
            // A fresh order now and then, so the routes that take an id find one that can
            // still change (a cancel of a cancelled order only ever answers 409).
            if case % 10 == 0 {
                orders.push(env.place(services.order(), "salad", 1).await?);
            }
            let base = match request.target {
                Target::Order => services.all[0].url(""),
                Target::Inventory => services.all[1].url(""),
                Target::Notification => services.all[2].url(""),
                Target::Board => board.url.clone(),
            };
            if trace() {
                eprintln!("hostile {suite}: case {case}: {request:?}");
            }
            let sent = Instant::now();
            let answer = http::send(&client, &base, &request, &orders).await;
            findings.count(&request.kind(), sent.elapsed());
            if let Answer::Unsendable(_) = answer {
                findings.unsendable(&request.kind());
            }
            if let Err(why) = http::judge(&request, &answer) {
                findings.add(
                    Some(case),
                    format!("{} {}: {why}", request.target.name(), request.route),
                    format!("{request:?}"),
                );
            }
            if let Answer::Answered {
                status: 201, body, ..
            } = &answer
                && let Some(id) = serde_json::from_slice::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| v["order_id"].as_str().map(str::to_owned))
            {
                orders.push(id);
            }
            // The relay publishes what a request wrote within milliseconds; waiting for it
            // here names the request that breaks it (until it is broken: then the batch check
            // reports it, once).
            if request.target == Target::Order
                && relay_works
                && let Err(why) = after::outbox_drained(&env, OUTBOX).await
            {
                findings.add(
                    Some(case),
                    format!("order-svc's relay stopped: {why}"),
                    format!("{request:?}"),
                );
                relay_works = false;
            }
            for panic in services.panics() {
                findings.add(
                    Some(case),
                    format!("first seen after this case: {panic}"),
                    format!("{request:?}"),
                );
            }
            services.alive(&client, &mut findings, case).await;
            if !board.running() || after::alive(&client, &board.url, ALIVE).await.is_err() {
                findings.add(
                    Some(case),
                    "the board stopped answering /health",
                    format!("{request:?}"),
                );
                board = Board::start(&env, &services.all[0], &services.all[1]).await?;
            }
            cases.push((case, request));
        }
        let mut problems = services.ready(&client).await;
        if let Err(why) = after::new_orders_complete(&env, services.order()).await {
            problems.push(why);
        }
        problems.extend(services.panics());
        if !problems.is_empty() {
            print_batch(suite, &cases, &services);
            batch_failed(&mut findings, &batch, problems);
            eprintln!("hostile {suite}: stopping after this batch: later ones could not be judged");
            broken = true;
            break;
        }
    }
    eprintln!(
        "hostile {suite}: {drawn} cases drawn in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if !broken {
        for violation in after::invariants(&env).await? {
            findings.add(
                None,
                format!("invariant checker: {violation}"),
                "after the whole run",
            );
        }
    }
    findings.verdict()
}

#[tokio::test(flavor = "multi_thread")]
async fn amqp_messages_to_every_queue_are_settled_and_poison_is_dead_lettered() -> anyhow::Result<()>
{
    let suite = "amqp_messages";
    let seed = Seed::from_env(suite)?;
    let budget = Budget::from_env(240, 40, Duration::from_secs(60));
    let mut env = TestEnv::new("hostile-amqp").await?;
    // Handler failures retried once, quickly, so a batch settles in seconds; stock that valid
    // orders never run out of.
    for (key, value) in [
        ("RABBITMQ_RETRY_COUNT", "1"),
        ("RABBITMQ_RETRY_DELAY", "200ms"),
        (
            "INITIAL_STOCK",
            "burger=100000,pizza=100000,sushi=100000,salad=100000",
        ),
    ] {
        env.service_env.insert(key.into(), value.into());
    }
    let mut services = Services::start(&env).await?;
    env.seeded_stock("burger").await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()?;
    let mut publisher = RawPublisher::new(&env.amqp_url);

    let mut findings = Findings::new(suite, seed);
    let mut runner = seed.runner(suite);
    let started = Instant::now();
    let (mut drawn, mut broken) = (0, false);
    while drawn < budget.draws() && started.elapsed() < budget.wall {
        let batch = drawn..(drawn + budget.batch).min(budget.draws());
        let (mut cases, mut poison, mut decided) = (Vec::new(), Vec::new(), Vec::new());
        for case in batch.clone() {
            let message = draw(&mut runner, &amqp::message(format!("{}-{case}", seed.0)))?;
            drawn += 1;
            if !budget.sends(case) {
                continue;
            }
            let kind = match message.address() {
                ("", queue) => format!("amqp queue {queue}"),
                (_, key) => format!("amqp exchange {key}"),
            };
            if trace() {
                eprintln!("hostile {suite}: case {case}: {message:?}");
            }
            let sent = Instant::now();
            let published = publisher.publish(&message).await?;
            if trace() {
                eprintln!("hostile {suite}: case {case}: {published:?}");
            }
            findings.count(&kind, sent.elapsed());
            match &published {
                Published::Routed => match &message.expect {
                    Expect::Poison(body) => poison.push((case, body.clone())),
                    Expect::Decided(order_id) => decided.push((case, order_id.clone())),
                    Expect::Settled => {}
                },
                Published::Unsendable(_) => findings.unsendable(&kind),
                Published::Unroutable | Published::Refused(_) => findings.refused(&kind),
            }
            for panic in services.panics() {
                findings.add(
                    Some(case),
                    format!("first seen after this case: {panic}"),
                    format!("{message:?}"),
                );
            }
            cases.push((case, message));
        }
        let last_publish = Instant::now();
        let mut problems = Vec::new();
        let step = |what: &str| {
            if trace() {
                eprintln!("hostile {suite}: checking {what}");
            }
        };
        step("alive");
        if let Some(&(last, _)) = cases.last() {
            services.alive(&client, &mut findings, last).await;
        }
        step("nothing held");
        problems.extend(after::nothing_held(&env, last_publish).await);
        step("the DLQ");
        match after::dead_letters(&env).await {
            Ok(dead) => problems.extend(after::poison_dead_lettered(&dead, &poison)),
            Err(e) => problems.push(format!("cannot peek at the DLQ: {e:#}")),
        }
        step("orders decided");
        problems.extend(after::orders_decided(&env, &decided).await);
        step("a new order");
        if let Err(why) = after::new_orders_complete(&env, services.order()).await {
            problems.push(why);
        }
        step("ready");
        problems.extend(services.ready(&client).await);
        problems.extend(services.panics());
        if !problems.is_empty() {
            print_batch(suite, &cases, &services);
            batch_failed(&mut findings, &batch, problems);
            eprintln!("hostile {suite}: stopping after this batch: later ones could not be judged");
            broken = true;
            break;
        }
    }
    publisher.close().await;
    eprintln!(
        "hostile {suite}: {drawn} cases drawn in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if !broken {
        for violation in after::invariants(&env).await? {
            findings.add(
                None,
                format!("invariant checker: {violation}"),
                "after the whole run",
            );
        }
    }
    findings.verdict()
}
