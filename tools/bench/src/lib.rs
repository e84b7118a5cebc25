//! saga-bench: how fast is the saga on this machine, and how close to the broker's own limit?
//!
//! Every figure the saga gets is set beside a *ceiling* measured in the same run: the same
//! message path with nothing but the broker (same durable queues, persistent messages,
//! prefetch and confirm window; no HTTP, no Redis, no JSON work). The ratio says how much of
//! what the broker could do the services actually use.
//!
//! Sections, in the order a run takes them:
//!
//! - [`ceiling`]: broker-only relay of the order path (publish OrderPlaced with confirms →
//!   consume → publish the outcome with confirms → ack → the status relay publishes the
//!   order's `order.status.updated` with confirms → the notification sink acks the outcome
//!   copy and the status event).
//! - [`e2e`]: N orders over HTTP at a fixed concurrency, until every order is final; POST→final
//!   latency in an HDR histogram; each service's RSS idle and at peak. With `--lines-mix`, the
//!   same right after with orders of several lines ([`load::LINES_MIX`]). Also the scaling run
//!   (the same with two inventory-svc).
//! - [`fixed_rate`]: open-loop orders at half the measured maximum; latency from each order's
//!   scheduled send time, so a stall cannot hide itself (no coordinated omission).
//! - [`drain`]: a backlog of OrderPlaced, drained by inventory-svc (RSS sampled all along) and
//!   by the broker-only relay.
//! - [`retention`]: orders taken to DELIVERED under a short `ORDER_RETENTION`; Redis weighed
//!   per order before and after the services compact them.
//! - with `--cluster`, [`cluster`]: end to end (with `WAIT` and without) and the fixed rate
//!   again, on the cluster profile, after every single-node section.
//!
//! Supporting modules:
//!
//! - [`world`]: a fresh vhost and Redis prefix per section (the test kit's [`testkit::World`]),
//!   removed afterwards, and the release binaries spawned into it ([`testkit::ServiceProcess`]);
//!   [`saga`] starts the three of them and waits for every order to be final.
//! - [`broker`]: OrderPlaced built ahead of time, queue depth by passive declare, publishing
//!   with a bounded window of unconfirmed messages.
//! - [`load`]: the HTTP client side (the test kit's load generator); [`saga::stamps`] learns when each order became final
//!   from order-svc's own timeline, read once after the run, not by polling orders.
//! - [`rss`]: resident memory from `/proc`; [`cpu`]: CPU seconds per process from `/proc`; [`stats`]: latency summaries; waiting
//!   until progress stalls is [`testkit::Stall`].
//! - [`cli`]: the flags; [`report`]: the table on stdout and `docs/BENCHMARKS.md`, with the
//!   machine and the command; [`charts`]: SVG charts beside it (latency distribution at the
//!   fixed rate, the backlog drains over time, CPU per process), which it shows.
//!
//! The benchmark is not a test: no number makes it fail. It exits non-zero only when a section
//! could not run at all (e.g. a service never became ready).

pub mod broker;
pub mod ceiling;
pub mod charts;
pub mod cli;
pub mod cluster;
pub mod cpu;
pub mod drain;
pub mod e2e;
pub mod fixed_rate;
pub mod load;
pub mod report;
pub mod retention;
pub mod rss;
pub mod saga;
pub mod stats;
pub mod world;

use std::future::Future;
use std::path::PathBuf;

use anyhow::Context;

pub use crate::cli::{Args, Plan};
use crate::report::{Machine, Report};
use crate::world::{Lab, LabConfig};

/// What happened to one section.
#[derive(Debug, Clone)]
pub enum Section<T> {
    Skipped(String),
    Failed(String),
    Done(T),
}

impl<T> Section<T> {
    pub fn done(&self) -> Option<&T> {
        match self {
            Self::Done(t) => Some(t),
            _ => None,
        }
    }

    pub fn failure(&self) -> Option<&str> {
        match self {
            Self::Failed(why) => Some(why),
            _ => None,
        }
    }
}

/// Every section's outcome.
#[derive(Debug, Clone)]
pub struct Results {
    pub ceiling: Section<ceiling::CeilingResult>,
    pub e2e: Section<e2e::E2eResult>,
    /// End to end with orders of several lines (`--lines-mix`), beside `e2e`.
    pub lines: Section<e2e::E2eResult>,
    pub fixed_rate: Section<fixed_rate::FixedRateResult>,
    pub fixed_rate_ceiling: Section<ceiling::CeilingResult>,
    pub scaling: Section<e2e::E2eResult>,
    /// End to end with Redis's AOF off (`--persistence-cost`), beside `e2e`.
    pub without_aof: Section<e2e::E2eResult>,
    /// End to end with spans exported over OTLP (`--tracing-cost`), beside `e2e`.
    pub traced: Section<e2e::E2eResult>,
    pub broker_drain: Section<drain::DrainResult>,
    pub inventory_drain: Section<drain::DrainResult>,
    /// Redis per finished order before and after compaction.
    pub retention: Section<retention::RetentionResult>,
    pub cluster: ClusterResults,
}

/// The `--cluster` sections.
#[derive(Debug, Clone)]
pub struct ClusterResults {
    pub e2e: Section<e2e::E2eResult>,
    /// The same, with `REDIS_MIN_REPLICAS=0`: what `WAIT` costs on its own.
    pub e2e_no_wait: Section<e2e::E2eResult>,
    pub fixed_rate: Section<fixed_rate::FixedRateResult>,
}

impl ClusterResults {
    fn skipped(why: &str) -> Self {
        Self {
            e2e: Section::Skipped(why.into()),
            e2e_no_wait: Section::Skipped(why.into()),
            fixed_rate: Section::Skipped(why.into()),
        }
    }
}

impl Results {
    /// Each section that could not run: its name in the report's notes, and why.
    pub fn failures(&self) -> Vec<(&'static str, &str)> {
        let c = &self.cluster;
        [
            ("ceiling", self.ceiling.failure()),
            ("end to end", self.e2e.failure()),
            ("end to end, orders of several lines", self.lines.failure()),
            ("fixed rate", self.fixed_rate.failure()),
            ("broker-only fixed rate", self.fixed_rate_ceiling.failure()),
            ("scaling", self.scaling.failure()),
            ("end to end without AOF", self.without_aof.failure()),
            ("end to end with OTLP export", self.traced.failure()),
            ("broker-only drain", self.broker_drain.failure()),
            ("inventory-svc drain", self.inventory_drain.failure()),
            ("retention", self.retention.failure()),
            ("cluster end to end", c.e2e.failure()),
            ("cluster end to end, WAIT off", c.e2e_no_wait.failure()),
            ("cluster fixed rate", c.fixed_rate.failure()),
        ]
        .into_iter()
        .filter_map(|(name, why)| Some((name, why?)))
        .collect()
    }
}

/// How a run ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    AllRan,
    SectionsFailed,
}

/// Run every section that is not skipped, then print the table and write the report.
///
/// # Errors
/// The broker's management API or Redis is unreachable, a binary is missing, the run was
/// interrupted, or the report cannot be written.
pub async fn run(args: Args) -> anyhow::Result<Verdict> {
    let plan = Plan::of(&args);
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()
            .context("cannot find this binary's directory")?
            .parent()
            .map(PathBuf::from)
            .context("this binary has no parent directory")?,
    };
    let lab = Lab::new(LabConfig {
        management_url: args.management_url.trim_end_matches('/').to_owned(),
        amqp_addr: args.amqp_addr.clone(),
        user: args.broker_user.clone(),
        password: args.broker_password.clone(),
        redis_url: args.redis_url.clone(),
        bin_dir,
        prefetch: plan.flow.prefetch,
        quorum: false,
        service_env: Vec::new(),
        helpers: None,
    })?;
    let machine = Machine::probe(&lab).await;
    progress(&format!(
        "run {} on {}; service logs in {}",
        lab.run_id(),
        machine.summary(),
        lab.log_dir().display()
    ));

    // Ctrl-C or SIGTERM drops the sections' futures, which kills the services they spawned
    // (kill_on_drop); the worlds they left are removed below either way.
    let outcome = tokio::select! {
        results = run_sections(&lab, &plan, &args) => Ok(results),
        signal = interrupted() => Err(signal),
    };
    lab.clean_up_all().await;
    let results = match outcome {
        Ok(results) => results,
        Err(signal) => anyhow::bail!("interrupted by {signal}; its vhosts and Redis keys removed"),
    };

    // The charts go beside the report, which links them by file name.
    let dir = args
        .out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let charts = charts::draw(&results)?;
    for path in charts::write(&charts, dir)? {
        progress(&format!("chart written to {}", path.display()));
    }
    let report = Report {
        machine,
        plan,
        command: cli::command_line(),
        date: report::utc_now(),
        results,
        charts,
    };
    let text = report.render();
    println!("{text}");
    std::fs::write(&args.out, &text)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    progress(&format!("report written to {}", args.out.display()));
    Ok(if !report.results.failures().is_empty() {
        Verdict::SectionsFailed
    } else {
        Verdict::AllRan
    })
}

async fn run_sections(lab: &Lab, plan: &Plan, args: &Args) -> Results {
    let ceiling = section(
        "broker-only ceiling",
        args.skip_ceiling,
        "--skip-ceiling",
        || ceiling::run(lab, plan.orders, plan.flow),
    )
    .await;
    let e2e = section(
        "end to end, 1 inventory-svc",
        args.skip_e2e,
        "--skip-e2e",
        || e2e::run(lab, "e2e", plan.orders, plan.concurrency, 1),
    )
    .await;
    // Right after the lab's run, so that the two are measured as close together as they can be.
    let lines = section(
        "end to end, orders of several lines",
        !args.lines_mix,
        "no --lines-mix",
        || e2e::run_lines(lab, plan.orders, plan.concurrency),
    )
    .await;

    let rate = plan
        .fixed_rate
        .or_else(|| e2e.done().map(|e| e.orders_per_sec / 2.0));
    let (fixed_rate, fixed_rate_ceiling) = match rate {
        Some(rate) => (
            section(
                "fixed rate",
                args.skip_fixed_rate,
                "--skip-fixed-rate",
                || {
                    let trace = args.fixed_rate_trace.as_deref();
                    fixed_rate::run(lab, rate, plan.fixed_rate_secs, trace)
                },
            )
            .await,
            section(
                "broker-only ceiling at the fixed rate",
                args.skip_fixed_rate || args.skip_ceiling,
                "--skip-fixed-rate or --skip-ceiling",
                || ceiling::run_paced(lab, rate, plan.fixed_rate_secs, plan.flow),
            )
            .await,
        ),
        None => {
            let why = if args.skip_fixed_rate {
                "--skip-fixed-rate"
            } else {
                "no end-to-end maximum to halve (give --fixed-rate)"
            };
            (Section::Skipped(why.into()), Section::Skipped(why.into()))
        }
    };

    let scaling = section(
        "end to end, 2 inventory-svc",
        args.skip_scaling,
        "--skip-scaling",
        || e2e::run(lab, "scaling", plan.orders, plan.concurrency, 2),
    )
    .await;
    let without_aof = section(
        "end to end, Redis without AOF",
        !args.persistence_cost,
        "no --persistence-cost",
        || e2e::run_without_aof(lab, plan.orders, plan.concurrency),
    )
    .await;
    let traced = section(
        "end to end, spans exported over OTLP",
        !args.tracing_cost,
        "no --tracing-cost",
        || e2e::run_traced(lab, plan.orders, plan.concurrency),
    )
    .await;
    let broker_drain = section("broker-only drain", args.skip_drain, "--skip-drain", || {
        drain::broker_only(lab, plan.drain_messages, plan.flow)
    })
    .await;
    let inventory_drain = section(
        "inventory-svc drain",
        args.skip_drain,
        "--skip-drain",
        || drain::inventory_svc(lab, plan.drain_messages, plan.flow.confirm_window),
    )
    .await;
    let retention = section(
        "retention: Redis per finished order before and after compaction",
        args.skip_retention,
        "--skip-retention",
        || retention::run(lab, plan.retention_orders, plan.concurrency),
    )
    .await;
    let cluster = if args.cluster {
        cluster_sections(lab, plan, args, rate).await
    } else {
        ClusterResults::skipped("no --cluster")
    };
    Results {
        ceiling,
        e2e,
        lines,
        fixed_rate,
        fixed_rate_ceiling,
        scaling,
        without_aof,
        traced,
        broker_drain,
        inventory_drain,
        retention,
        cluster,
    }
}

/// The cluster profile's sections, after every single-node one (three more Erlang VMs would
/// skew those): start the profile, run end to end with and without `WAIT` and the fixed rate
/// at the single-node section's rate, stop it.
async fn cluster_sections(
    lab: &Lab,
    plan: &Plan,
    args: &Args,
    rate: Option<f64>,
) -> ClusterResults {
    progress("cluster profile: starting scripts/cluster.sh (about a minute)");
    let profile = match cluster::ClusterProfile::start(&args.cluster_script).await {
        Ok(profile) => profile,
        Err(e) => {
            let why = format!("the cluster profile did not start: {e:#}");
            progress(&why);
            return ClusterResults {
                e2e: Section::Failed(why.clone()),
                e2e_no_wait: Section::Failed(why.clone()),
                fixed_rate: Section::Failed(why),
            };
        }
    };
    let labs = [
        Lab::new(profile.lab_config(lab.config(), &[])),
        Lab::new(profile.lab_config(lab.config(), &[("REDIS_MIN_REPLICAS", "0")])),
    ];
    let [Ok(with_wait), Ok(no_wait)] = labs else {
        profile.stop().await;
        let why = "cannot set up the cluster profile's lab".to_owned();
        return ClusterResults {
            e2e: Section::Failed(why.clone()),
            e2e_no_wait: Section::Failed(why.clone()),
            fixed_rate: Section::Failed(why),
        };
    };
    let e2e = section("cluster profile: end to end", false, "", || {
        e2e::run(&with_wait, "cluster-e2e", plan.orders, plan.concurrency, 1)
    })
    .await;
    let e2e_no_wait = section("cluster profile: end to end, WAIT off", false, "", || {
        e2e::run(&no_wait, "cluster-nowait", plan.orders, plan.concurrency, 1)
    })
    .await;
    let fixed_rate = match rate {
        Some(rate) => {
            section(
                "cluster profile: fixed rate",
                args.skip_fixed_rate,
                "--skip-fixed-rate",
                || fixed_rate::run(&with_wait, rate, plan.fixed_rate_secs, None),
            )
            .await
        }
        None => Section::Skipped("no rate (give --fixed-rate)".into()),
    };
    with_wait.clean_up_all().await;
    no_wait.clean_up_all().await;
    profile.stop().await;
    ClusterResults {
        e2e,
        e2e_no_wait,
        fixed_rate,
    }
}

/// Run one section unless skipped; an error is recorded in the report, and the run goes on.
async fn section<T, F, Fut>(name: &str, skip: bool, flag: &str, start: F) -> Section<T>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    if skip {
        progress(&format!("{name}: skipped ({flag})"));
        return Section::Skipped(flag.to_owned());
    }
    progress(&format!("{name}: running"));
    let started = std::time::Instant::now();
    match start().await {
        Ok(result) => {
            progress(&format!(
                "{name}: done in {:.1} s",
                started.elapsed().as_secs_f64()
            ));
            Section::Done(result)
        }
        Err(e) => {
            progress(&format!("{name}: FAILED: {e:#}"));
            Section::Failed(format!("{e:#}"))
        }
    }
}

/// A progress line on stderr, so stdout carries only the table.
pub fn progress(line: &str) {
    eprintln!("saga-bench: {line}");
}

/// Resolves with the signal's name on SIGINT or SIGTERM.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        // No SIGTERM handler to be had: Ctrl-C alone still cleans up.
        let _ = tokio::signal::ctrl_c().await;
        return "SIGINT";
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
