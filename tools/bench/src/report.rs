//! The report: one Markdown document, printed to stdout and written to `docs/BENCHMARKS.md`.
//!
//! It says where the numbers come from (date, exact command, machine, broker and Redis
//! versions, sizes and settings), gives every figure beside its broker-only ceiling and the
//! classic Python lab's, and explains how each one is measured, so that a reader can judge it
//! without reading this code.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use comfy_table::{Row, Table};
use procfs::Current as _;
use thousands::Separable as _;

use crate::cpu::CpuUse;
use crate::drain::DrainResult;
use crate::e2e::E2eResult;
use crate::retention::RetentionResult;
use crate::stats::Latency;
use crate::world::{Lab, RedisFootprint};
use crate::{Plan, Results, Section};

/// What the numbers ran on.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub cores: String,
    pub cpu: String,
    pub memory: String,
    pub kernel: String,
    /// `/proc/loadavg` at the start (1, 5, 15 min): other work on a shared machine shows here.
    pub load: String,
    pub rabbitmq: String,
    pub erlang: String,
    pub redis: String,
}

impl Machine {
    /// Read `/proc`, ask the management API and Redis. Never fails: what cannot be read says
    /// "unknown".
    pub async fn probe(lab: &Lab) -> Self {
        let unknown = || "unknown".to_owned();
        let overview = lab.overview().await.unwrap_or_default();
        let text = |key: &str| overview[key].as_str().map(str::to_owned);
        // The version, and whether the figures were measured with durability on (AOF).
        let redis = match lab.redis().await {
            Ok(mut conn) => {
                // INFO's default sections include "server" and "persistence".
                let dict: Option<redis::InfoDict> =
                    redis::cmd("INFO").query_async(&mut conn).await.ok();
                let info = |key: &str| dict.as_ref()?.get::<String>(key);
                let fsync = redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("appendfsync")
                    .query_async::<Vec<String>>(&mut conn)
                    .await
                    .ok()
                    .and_then(|pair| pair.into_iter().nth(1));
                let aof = info("aof_enabled");
                info("redis_version")
                    .map(|v| format!("{v} ({})", persistence(aof.as_deref(), fsync.as_deref())))
            }
            Err(_) => None,
        };
        Self {
            cores: std::thread::available_parallelism()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| unknown()),
            cpu: procfs::CpuInfo::current()
                .ok()
                .and_then(|info| info.model_name(0).map(str::to_owned))
                .unwrap_or_else(unknown),
            memory: procfs::Meminfo::current()
                .map(|m| format!("{:.1} GiB", m.mem_total as f64 / (1024.0 * 1024.0 * 1024.0)))
                .unwrap_or_else(|_| unknown()),
            // The release string as the kernel gives it (distribution suffix and all).
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| unknown()),
            load: procfs::LoadAverage::current()
                .map(|l| format!("{:.2} {:.2} {:.2}", l.one, l.five, l.fifteen))
                .unwrap_or_else(|_| unknown()),
            rabbitmq: text("rabbitmq_version").unwrap_or_else(unknown),
            erlang: text("erlang_version").unwrap_or_else(unknown),
            redis: redis.unwrap_or_else(unknown),
        }
    }

    /// One line for the progress output.
    pub fn summary(&self) -> String {
        format!(
            "{} cores, RabbitMQ {}, Redis {}",
            self.cores, self.rabbitmq, self.redis
        )
    }
}

/// How Redis keeps its data, from INFO persistence's `aof_enabled` and `CONFIG GET appendfsync`.
fn persistence(aof_enabled: Option<&str>, appendfsync: Option<&str>) -> String {
    match (aof_enabled, appendfsync) {
        (Some("1"), Some(fsync)) => format!("AOF {fsync}"),
        (Some("1"), None) => "AOF".to_owned(),
        (Some("0"), _) => "no AOF: not durable".to_owned(),
        _ => "persistence unknown".to_owned(),
    }
}

pub struct Report {
    pub machine: Machine,
    pub plan: Plan,
    pub command: String,
    pub date: String,
    pub results: Results,
    /// The SVG charts written beside the report, which it shows.
    pub charts: Vec<crate::charts::Chart>,
}

/// The classic Python lab's figures, from the issue that asked for this benchmark.
mod lab {
    pub const ORDERS_PER_SEC: &str = "~40";
    pub const LATENCY: &str = "p50 0.7-0.9 s";
    pub const DRAIN: &str = "~1,100";
    pub const RSS: &str = "~34 MB";
}

impl Report {
    pub fn render(&self) -> String {
        let mut doc = String::new();
        self.header(&mut doc);
        self.table(&mut doc);
        self.cpu_table(&mut doc);
        self.lines_table(&mut doc);
        self.retention_table(&mut doc);
        self.cluster_table(&mut doc);
        doc.push_str(&crate::charts::markdown(&self.charts));
        self.notes(&mut doc);
        method(&mut doc);
        doc
    }

    fn header(&self, doc: &mut String) {
        let p = &self.plan;
        let m = &self.machine;
        let _ = writeln!(
            doc,
            "# Benchmarks\n\n\
             What the saga does on one machine, beside what the broker alone does on the same \
             message path in the same run. Written by `saga-bench` (`tools/bench/`): rerun with \
             `scripts/bench.sh` (full run) or `scripts/bench.sh --quick` (smoke run). \
             The benchmark is not a test: no number fails anything. What moved these figures, \
             with profiles, and the targets they are held to: \
             [PERFORMANCE.md](PERFORMANCE.md).\n"
        );
        let mut sizes = format!(
            "{} orders from {} concurrent HTTP clients; drain of {} queued orders; fixed rate for {} s",
            thousands(p.orders as f64),
            p.concurrency,
            thousands(p.drain_messages as f64),
            p.fixed_rate_secs
        );
        if p.quick {
            sizes.push_str(" (**--quick smoke run: small sizes, indicative only**)");
        }
        let machine = format!(
            "{} cores ({}), {} RAM, Linux {}; load average {} at the start (other work on the \
             machine shows here)",
            m.cores, m.cpu, m.memory, m.kernel, m.load
        );
        let settings = format!(
            "release build; services at RUST_LOG=warn; prefetch {}; broker-only confirm window \
             {}; broker, Redis, services and load generator all on this machine (they share its \
             cores)",
            p.flow.prefetch, p.flow.confirm_window
        );
        let rows = [
            ["date", &self.date],
            ["command", &format!("`{}`", self.command)],
            ["sizes", &sizes],
            ["machine", &machine],
            [
                "broker",
                &format!("RabbitMQ {} (Erlang {})", m.rabbitmq, m.erlang),
            ],
            ["Redis", &m.redis],
            ["settings", &settings],
        ];
        let _ = writeln!(doc, "## Run\n\n{}\n", markdown_table(" | ", rows, false));
    }

    fn table(&self, doc: &mut String) {
        let r = &self.results;
        let ceiling = r.ceiling.done();
        let ceiling_rate = cell(&r.ceiling, |c| thousands(c.orders_per_sec));
        // A row may stop at its last figure: comfy-table leaves the rest of it empty.
        let mut rows: Vec<Vec<String>> = Vec::new();

        // End to end.
        let figure = match r.e2e.done() {
            Some(e) => format!(
                "orders/s until final ({} orders, {} clients)",
                thousands(e.accepted as f64),
                e.concurrency
            ),
            None => "orders/s until final".to_owned(),
        };
        rows.push(vec![
            figure,
            cell(&r.e2e, |e| thousands(e.orders_per_sec)),
            ceiling_rate.clone(),
            ratio(
                r.e2e.done().map(|e| e.orders_per_sec),
                ceiling.map(|c| c.orders_per_sec),
            ),
            lab::ORDERS_PER_SEC.into(),
        ]);
        if let (Some(with), Some(without)) = (r.e2e.done(), r.without_aof.done()) {
            rows.push(vec![
                "… the same with Redis's AOF off: orders/s, p99, CPU per order".into(),
                format!(
                    "{} ({:.0} % of with AOF), p99 {}, {} µs",
                    thousands(without.orders_per_sec),
                    100.0 * without.orders_per_sec / with.orders_per_sec.max(1e-9),
                    duration(without.latency.p99),
                    thousands(cpu_micros_per_order(without))
                ),
            ]);
            rows.push(vec![
                "… and with AOF (this run's end to end): p99, CPU per order".into(),
                format!(
                    "p99 {}, {} µs",
                    duration(with.latency.p99),
                    thousands(cpu_micros_per_order(with))
                ),
            ]);
        }
        if let (Some(off), Some(on)) = (r.e2e.done(), r.traced.done()) {
            rows.push(vec![
                "… the same with spans exported over OTLP: orders/s, p99, CPU per order".into(),
                format!(
                    "{} ({:.0} % of tracing off), p99 {}, {} µs (off: p99 {}, {} µs)",
                    thousands(on.orders_per_sec),
                    100.0 * on.orders_per_sec / off.orders_per_sec.max(1e-9),
                    duration(on.latency.p99),
                    thousands(cpu_micros_per_order(on)),
                    duration(off.latency.p99),
                    thousands(cpu_micros_per_order(off))
                ),
            ]);
        }
        let redis_per_order = cell(&r.e2e, |e| match e.redis {
            Some(f) if e.accepted > 0 => format!(
                "{} bytes ({:.1} keys)",
                thousands(f.bytes as f64 / e.accepted as f64),
                f.keys as f64 / e.accepted as f64
            ),
            _ => "?".into(),
        });
        let per_finished = |kinds: &BTreeMap<String, RedisFootprint>, orders: usize| {
            let total = RetentionResult::total(kinds);
            let orders = orders.max(1) as f64;
            format!(
                "{} bytes ({:.1} keys)",
                thousands(total.bytes as f64 / orders),
                total.keys as f64 / orders
            )
        };
        rows.extend([
            vec![
                "Redis kept per order (every key, `MEMORY USAGE`), CONFIRMED".into(),
                redis_per_order,
                String::new(),
                String::new(),
                "in memory, lost on restart".into(),
            ],
            vec![
                format!(
                    "… per {} order, whole / after `ORDER_RETENTION` compacted it",
                    crate::retention::FINISHED_AS
                ),
                cell(&r.retention, |t| {
                    format!(
                        "{} / {}",
                        per_finished(&t.before, t.orders),
                        per_finished(&t.after, t.orders)
                    )
                }),
            ],
            vec![
                "HTTP accept rate (201/s)".into(),
                cell(&r.e2e, |e| thousands(e.accept_per_sec)),
            ],
            vec![
                "POST→final p50 / p90 / p99 / max".into(),
                cell(&r.e2e, |e| percentiles(&e.latency)),
                cell(&r.ceiling, |c| percentiles(&c.latency)),
                String::new(),
                lab::LATENCY.into(),
            ],
        ]);

        // Fixed rate.
        let figure = match r.fixed_rate.done() {
            Some(f) => format!(
                "at a fixed {} orders/s for {} s: p50 / p90 / p99 / max",
                thousands(f.rate),
                f.secs
            ),
            None => "at half the maximum rate: p50 / p90 / p99 / max".to_owned(),
        };
        rows.extend([
            vec![
                figure,
                cell(&r.fixed_rate, |f| percentiles(&f.latency)),
                cell(&r.fixed_rate_ceiling, |c| percentiles(&c.latency)),
            ],
            vec![
                "… of which due → 201 Created".to_owned(),
                cell(&r.fixed_rate, |f| percentiles(&f.accept)),
            ],
            vec![
                "… of which due → decided by inventory-svc".to_owned(),
                cell(&r.fixed_rate, |f| percentiles(&f.decided)),
            ],
        ]);

        // Scaling.
        rows.push(vec![
            "orders/s until final, 2 inventory-svc".into(),
            cell(&r.scaling, |s| match r.e2e.done() {
                Some(one) if one.orders_per_sec > 0.0 => format!(
                    "{} (×{:.2} of 1)",
                    thousands(s.orders_per_sec),
                    s.orders_per_sec / one.orders_per_sec
                ),
                _ => thousands(s.orders_per_sec),
            }),
            ceiling_rate,
            ratio(
                r.scaling.done().map(|s| s.orders_per_sec),
                ceiling.map(|c| c.orders_per_sec),
            ),
        ]);

        // Drain.
        let figure = match r.inventory_drain.done().or(r.broker_drain.done()) {
            Some(d) => format!(
                "backlog drain, msg/s ({} queued)",
                thousands(d.messages as f64)
            ),
            None => "backlog drain, msg/s".to_owned(),
        };
        rows.extend([
            vec![
                figure,
                cell(&r.inventory_drain, |d| thousands(d.per_sec)),
                cell(&r.broker_drain, |d| thousands(d.per_sec)),
                ratio(
                    r.inventory_drain.done().map(|d| d.per_sec),
                    r.broker_drain.done().map(|d| d.per_sec),
                ),
                lab::DRAIN.into(),
            ],
            vec![
                "drain: start-up until the first outcome".into(),
                cell(&r.inventory_drain, |d| duration(d.startup)),
                cell(&r.broker_drain, |d| duration(d.startup)),
            ],
            vec![
                "inventory-svc RSS while draining: start → peak → end".into(),
                cell(&r.inventory_drain, drain_rss),
                String::new(),
                String::new(),
                lab::RSS.into(),
            ],
        ]);

        // Memory.
        let memory = match r.e2e.done() {
            Some(e) => e
                .memory
                .iter()
                .map(|m| {
                    let figure = format!("{} RSS: idle → peak under load", m.service);
                    (
                        figure,
                        format!("{} → {}", mib(m.idle), mib(m.under_load.max)),
                    )
                })
                .collect(),
            None => vec![(
                "RSS per service: idle → peak under load".into(),
                cell(&r.e2e, |_| String::new()),
            )],
        };
        for (figure, saga) in memory {
            rows.push(vec![
                figure,
                saga,
                String::new(),
                String::new(),
                lab::RSS.into(),
            ]);
        }
        let header = "figure | saga | broker-only ceiling | saga / ceiling | classic Python lab";
        let _ = writeln!(
            doc,
            "## Results\n\n{}\n",
            markdown_table(header, rows, true)
        );
    }

    /// Where the CPU went in the end-to-end run and in the ceiling, per order.
    fn cpu_table(&self, doc: &mut String) {
        let (e2e, ceiling) = (self.results.e2e.done(), self.results.ceiling.done());
        if e2e.is_none() && ceiling.is_none() {
            return;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let _ = writeln!(
            doc,
            "### Where the CPU went\n\n\
             CPU time (user + system) of each process from the first order until the last was \
             final and every status event had reached notification-svc (end to end), or until \
             the last status event was acked (ceiling), per order. The machine has {cores} cores; every microsecond a service spends is \
             one the broker does not get.\n"
        );
        let runs = [
            (
                "end to end",
                e2e.map(|e| (&e.cpu[..], e.accepted, e.settled_after)),
            ),
            (
                "broker-only ceiling",
                ceiling.map(|c| (&c.cpu[..], c.orders, c.elapsed)),
            ),
        ];
        let _ = writeln!(doc, "{}\n", cpu_table(&runs));
    }

    /// `--lines-mix`: the lab's orders of one line beside orders of several, from the same run.
    fn lines_table(&self, doc: &mut String) {
        let r = &self.results;
        if matches!(r.lines, Section::Skipped(_)) {
            return;
        }
        let (one, many) = (r.e2e.done(), r.lines.done());
        let lines = many.map_or(crate::load::LINES_MIX.len(), |m| m.lines_per_order);
        let figure = |name: &str, value: fn(&E2eResult) -> f64, unit: &str| {
            let show = |e: &E2eResult| format!("{}{unit}", thousands(value(e)));
            vec![
                name.to_owned(),
                cell(&r.e2e, show),
                cell(&r.lines, show),
                times(many.map(value), one.map(value)),
            ]
        };
        let rows = vec![
            figure("orders/s until final", |e| e.orders_per_sec, ""),
            figure(
                "lines/s until final",
                |e| e.orders_per_sec * e.lines_per_order as f64,
                "",
            ),
            figure("HTTP accept rate (201/s)", |e| e.accept_per_sec, ""),
            vec![
                "POST→final p50 / p90 / p99 / max".into(),
                cell(&r.e2e, |e| percentiles(&e.latency)),
                cell(&r.lines, |e| percentiles(&e.latency)),
            ],
            figure("CPU per order, all processes", cpu_micros_per_order, " µs"),
            figure(
                "CPU per line, all processes",
                |e| cpu_micros_per_order(e) / e.lines_per_order.max(1) as f64,
                " µs",
            ),
        ];
        let orders = one.or(many).map_or(self.plan.orders, |e| e.accepted);
        let _ = writeln!(
            doc,
            "## Orders of several lines (`--lines-mix`)\n\n\
             The end-to-end run twice, one right after the other, each in a fresh world: the \
             lab's orders (one line, burger 1: OrderPlaced version 1, the flat body) and orders of \
             {} (OrderPlaced version 2: inventory-svc decides every line in one Lua step, all or \
             none). {} orders from {} clients each; stock far larger than either run orders, so \
             every order is CONFIRMED. Set the two columns side by side, not against other runs: \
             they were taken minutes apart on the same machine.\n\n{}\n",
            crate::load::Mix::describe(),
            thousands(orders as f64),
            self.plan.concurrency,
            markdown_table(
                &format!("figure | one line (the lab's) | {lines} lines | {lines} lines / one"),
                rows,
                true
            )
        );
        let runs = [
            (
                "one line",
                one.map(|e| (&e.cpu[..], e.accepted, e.settled_after)),
            ),
            (
                &format!("{lines} lines")[..],
                many.map(|e| (&e.cpu[..], e.accepted, e.settled_after)),
            ),
        ];
        let _ = writeln!(
            doc,
            "### Where the CPU went, one line and {lines} lines\n\n\
             CPU time of each process in each run, counted as in the end-to-end run, per order.\n\n{}\n",
            cpu_table(&runs)
        );
    }

    /// What a finished order keeps in Redis, by kind of key, before and after compaction.
    fn retention_table(&self, doc: &mut String) {
        let Some(t) = self.results.retention.done() else {
            return;
        };
        let orders = t.orders.max(1) as f64;
        let kinds: std::collections::BTreeSet<&String> =
            t.before.keys().chain(t.after.keys()).collect();
        let per_order = |kinds: &BTreeMap<String, RedisFootprint>, kind: &str| match kinds.get(kind)
        {
            Some(f) => (
                format!("{:.2}", f.keys as f64 / orders),
                thousands(f.bytes as f64 / orders),
            ),
            None => (String::new(), String::new()),
        };
        let mut rows: Vec<Vec<String>> = Vec::new();
        for kind in kinds {
            let (keys_before, bytes_before) = per_order(&t.before, kind);
            let (keys_after, bytes_after) = per_order(&t.after, kind);
            rows.push(vec![
                format!("`{kind}`"),
                keys_before,
                bytes_before,
                keys_after,
                bytes_after,
            ]);
        }
        let (before, after) = (
            RetentionResult::total(&t.before),
            RetentionResult::total(&t.after),
        );
        rows.push(vec![
            "**all keys**".into(),
            format!("{:.2}", before.keys as f64 / orders),
            thousands(before.bytes as f64 / orders),
            format!("{:.2}", after.keys as f64 / orders),
            thousands(after.bytes as f64 / orders),
        ]);
        let _ = writeln!(
            doc,
            "### Redis per finished order, before and after retention\n\n\
             {} orders placed, confirmed, then `PATCH`ed to SHIPPED and to {} (the services at \
             `ORDER_RETENTION={}s`, `DEDUPE_WINDOW=30days`). *Whole*: once every order was {} and \
             its status events delivered. *Compacted*: once order-svc had replaced every order by \
             its tombstone and inventory-svc had compacted every reservation record, {} after the \
             last order finished. Keys shared by all orders (stock, the schedules, the \
             notification log) are divided among them too. {}\n\n{}\n",
            thousands(t.orders as f64),
            crate::retention::FINISHED_AS,
            crate::retention::RETENTION.as_secs(),
            crate::retention::FINISHED_AS,
            duration(t.compacted_after),
            if t.patch_failures > 0 {
                format!("**{} PATCHes did not answer 200.**", t.patch_failures)
            } else {
                "Every PATCH answered 200.".to_owned()
            },
            markdown_table(
                "key (per order) | whole: keys | bytes | compacted: keys | bytes",
                rows,
                true
            )
        );
    }

    /// `--cluster`: the cluster profile beside the single node, and where its CPU went.
    fn cluster_table(&self, doc: &mut String) {
        let (r, c) = (&self.results, &self.results.cluster);
        if matches!(c.e2e, Section::Skipped(_)) && matches!(c.fixed_rate, Section::Skipped(_)) {
            return;
        }
        let _ = writeln!(
            doc,
            "## Cluster profile (`--cluster`)\n\n\
             The same runs on `scripts/cluster.sh`'s profile, after the single-node sections: 3 \
             RabbitMQ nodes with quorum queues (a message is confirmed once a majority of the 3 \
             nodes has it in its Raft log), Redis master + 2 replicas + 3 Sentinels, and every \
             write followed by `WAIT` for one replica before a 201 or an ack. All of it on the \
             same machine as before: three brokers, three Redis servers and three Sentinels \
             share its cores with the services and the load.\n"
        );
        let rate = |figure: &str, rate: fn(&E2eResult) -> f64| {
            vec![
                figure.to_owned(),
                cell(&r.e2e, |e| thousands(rate(e))),
                cell(&c.e2e, |e| thousands(rate(e))),
                ratio(c.e2e.done().map(rate), r.e2e.done().map(rate)),
                cell(&c.e2e_no_wait, |e| thousands(rate(e))),
            ]
        };
        let mut rows = vec![
            rate("orders/s until final", |e| e.orders_per_sec),
            rate("HTTP accept rate (201/s)", |e| e.accept_per_sec),
            vec![
                "POST→final p50 / p90 / p99 / max".into(),
                cell(&r.e2e, |e| percentiles(&e.latency)),
                cell(&c.e2e, |e| percentiles(&e.latency)),
                String::new(),
                cell(&c.e2e_no_wait, |e| percentiles(&e.latency)),
            ],
        ];
        let figure = match c.fixed_rate.done() {
            Some(f) => format!(
                "at a fixed {} orders/s: p50 / p90 / p99 / max",
                thousands(f.rate)
            ),
            None => "at the fixed rate: p50 / p90 / p99 / max".to_owned(),
        };
        rows.extend([
            vec![
                figure,
                cell(&r.fixed_rate, |f| percentiles(&f.latency)),
                cell(&c.fixed_rate, |f| percentiles(&f.latency)),
            ],
            vec![
                "… of which due → 201 Created".into(),
                cell(&r.fixed_rate, |f| percentiles(&f.accept)),
                cell(&c.fixed_rate, |f| percentiles(&f.accept)),
            ],
        ]);
        if let (Some(single), Some(cluster)) = (r.e2e.done(), c.e2e.done()) {
            for m in &cluster.memory {
                let before = single.memory.iter().find(|s| s.service == m.service);
                rows.push(vec![
                    format!("{} RSS: idle → peak", m.service),
                    before.map_or_else(String::new, |b| {
                        format!("{} → {}", mib(b.idle), mib(b.under_load.max))
                    }),
                    format!("{} → {}", mib(m.idle), mib(m.under_load.max)),
                ]);
            }
        }
        let header =
            "figure | single node | cluster profile | cluster / single | cluster, `WAIT` off";
        let _ = writeln!(doc, "{}\n", markdown_table(header, rows, true));
        if let Some(note) = cluster_note(r) {
            let _ = writeln!(doc, "{note}\n");
        }
        let Some(e) = c.e2e.done() else { return };
        let _ = writeln!(
            doc,
            "### Where the CPU went on the cluster profile\n\n\
             CPU time of each process during the cluster's end-to-end run ({} orders), per order.\n",
            thousands(e.accepted as f64)
        );
        let run = ("cluster profile", Some((&e.cpu[..], e.accepted, e.elapsed)));
        let _ = writeln!(doc, "{}\n", cpu_table(&[run]));
    }

    fn notes(&self, doc: &mut String) {
        let r = &self.results;
        let mut notes: Vec<String> = Vec::new();
        let mut e2e_note = |name: &str, e: &E2eResult| {
            notes.push(format!(
                "{name}: {} accepted, {} refused, {} without an outcome; final after {}.{}",
                thousands(e.accepted as f64),
                e.refused,
                e.missing,
                duration(e.elapsed),
                e.first_error
                    .as_ref()
                    .map(|err| format!(" First refusal: {err}"))
                    .unwrap_or_default()
            ));
        };
        if let Some(e) = r.e2e.done() {
            e2e_note("End to end", e);
        }
        if let Some(l) = r.lines.done() {
            e2e_note("Orders of several lines", l);
        }
        if let Some(s) = r.scaling.done() {
            e2e_note("With 2 inventory-svc", s);
        }
        if let Some(f) = r.fixed_rate.done() {
            notes.push(format!(
                "Fixed rate: {} sent, {} accepted, {} refused, {} without an outcome; the \
                 latest send went out {} after it was due.{}",
                thousands(f.sent as f64),
                thousands(f.accepted as f64),
                f.refused,
                f.missing,
                duration(f.max_send_lag),
                f.first_error
                    .as_ref()
                    .map(|err| format!(" First refusal: {err}"))
                    .unwrap_or_default()
            ));
        }
        for (name, d) in [
            ("inventory-svc drain", r.inventory_drain.done()),
            ("Broker-only drain", r.broker_drain.done()),
        ] {
            if let Some(d) = d {
                notes.push(format!(
                    "{name}: the backlog was published at {} msg/s (broker only, confirms).",
                    thousands(d.prefill_per_sec)
                ));
            }
        }
        if let Some(e) = r.e2e.done() {
            notes.push(format!(
                "End to end: every status event had reached notification-svc {} after the \
                 first POST ({} after the last order was final).",
                duration(e.settled_after),
                duration(e.settled_after.saturating_sub(e.elapsed))
            ));
        }
        if let Some(c) = r.ceiling.done() {
            notes.push(format!(
                "Ceiling: {} orders in {}; an earlier broker-only relay of this path on a \
                 comparable machine did ~2,500-2,800 orders/s.",
                thousands(c.orders as f64),
                duration(c.elapsed)
            ));
        }
        for (name, why) in r.failures() {
            let why = why.replace('\n', " ");
            notes.push(format!("**{name} could not run**: {why}"));
        }
        if notes.is_empty() {
            return;
        }
        let _ = writeln!(doc, "Notes:\n");
        for note in notes {
            let _ = writeln!(doc, "- {note}");
        }
        let _ = writeln!(doc);
    }
}

/// What the cluster's figures mean on this machine, in numbers from this run.
fn cluster_note(r: &Results) -> Option<String> {
    let (single, cluster) = (r.e2e.done()?, r.cluster.e2e.done()?);
    let per_order = |e: &E2eResult| {
        e.cpu.iter().map(|u| u.seconds).sum::<f64>() * 1e6 / e.accepted.max(1) as f64
    };
    let mut note = format!(
        "**Three brokers on two cores.** A quorum queue's leader and both followers each write \
         every message to their Raft log, the Redis master's writes are replayed by two replicas, \
         and here all of them share the two cores with the services and the load generator: all \
         the processes together spent {:.0} µs of CPU per order on the cluster profile against \
         {:.0} µs on one node. The cluster's throughput here is therefore mostly the price of \
         running three machines' worth of replication on one; on three machines that work \
         runs in parallel, and what remains is latency: a network round trip for each quorum \
         confirm and each `WAIT`.",
        per_order(cluster),
        per_order(single)
    );
    if let Some(no_wait) = r.cluster.e2e_no_wait.done()
        && no_wait.orders_per_sec > 0.0
    {
        note.push_str(&format!(
            " `WAIT` on its own (the same profile with `REDIS_MIN_REPLICAS=0`) accounts for {:.0} % \
             of the cluster's orders/s ({} with it, {} without); the rest is the quorum queues \
             and the extra processes.",
            100.0 * (1.0 - cluster.orders_per_sec / no_wait.orders_per_sec),
            thousands(cluster.orders_per_sec),
            thousands(no_wait.orders_per_sec)
        ));
    }
    if cluster.accept_per_sec > cluster.orders_per_sec * 1.1 {
        note.push_str(&format!(
            " In the closed-loop run 64 clients got 201s faster ({}/s) than orders became final \
             ({}/s), so a backlog built up in the queues and POST→final latency grew with it; the \
             fixed-rate row is the one to read for latency at a sustainable rate.",
            thousands(cluster.accept_per_sec),
            thousands(cluster.orders_per_sec)
        ));
    }
    Some(note)
}

fn method(doc: &mut String) {
    let _ = writeln!(
        doc,
        "## How each figure is measured\n\n\
         Every section runs in a fresh vhost and Redis prefix of its own, removed afterwards; the \
         services are the release binaries, started by the benchmark on free ports.\n\n\
         - **orders/s until final**: N orders (`POST /order`, one burger each, stock far larger \
         than N) from C clients that each send the next order when the last is answered. Counted \
         from the first POST until order-svc has applied every outcome (its `PLACED` index is \
         empty: one ZCARD every 20 ms, no order is polled).\n\
         - **HTTP accept rate**: 201 answers per second, first POST to last 201.\n\
         - **POST→final**: per order, from sending its POST to order-svc's status consumer \
         applying its outcome (CONFIRMED or FAILED), as stamped in milliseconds in the order's own \
         timeline; the timelines are read once, after the run. Every order goes into an HDR \
         histogram; these are percentiles over all of them. (An earlier version took the moment \
         an extra copy of the outcome reached a queue of the benchmark's own; under load that copy \
         lagged the saga by up to 300 ms, so the saga's own record is the honest clock.)\n\
         - **broker-only ceiling**: the same path with only the broker: OrderPlaced published with \
         confirms (at most the confirm window unconfirmed, pre-serialized bodies) → consumed from \
         `inventory_queue` (same prefetch), the outcome and the `product.stock.updated` it \
         announces published with confirms to the topic exchange, then acked → the stock event \
         consumed and acked from `order_catalog_queue` (order-svc's catalog replica), the outcome's \
         copy in `order_status_queue` consumed by a status relay that publishes the order's \
         `order.status.updated` (PLACED → CONFIRMED) with a confirm, then acks, as order-svc's \
         status consumer and outbox relay do → `notification_queue`'s two deliveries per order \
         (the outcome copy and the status event) consumed and acked. So four persistent, \
         confirmed publishes and five deliveries per order, as in the saga, each message with the \
         saga's properties and headers (CloudEvents attributes, `traceparent`). Same durable queues \
         and persistent messages; no HTTP, Redis or JSON. Counted until the last delivery is acked. Its latency is publish → outcome at the status relay, with the \
         pipeline saturated.\n\
         - **fixed rate**: open loop at half the measured orders/s: order k is due at k / rate and \
         is sent then, whatever earlier orders are doing; its latency counts from when it was due, \
         so a stall cannot hide (no coordinated omission). Two legs are shown on their own: due → \
         `201 Created`, and due → inventory-svc's decision (the `decided_at` millisecond stamp in \
         its reservation record), which adds the outbox relay, the broker and inventory-svc's \
         Redis script; the rest is the outcome's publish and order-svc's status consumer. The ceiling \
         column is the broker-only path at the same rate, open loop too: OrderPlaced k due at k / rate, latency from then to its outcome at the status \
         sink. `--fixed-rate-trace FILE` writes every order's timings as CSV.\n\
         - **2 inventory-svc**: the end-to-end run again, in a fresh world, with two inventory-svc \
         consuming `inventory_queue`.\n\
         - **orders of several lines** (`--lines-mix`): the end-to-end run again, in a fresh \
         world, right after the lab's, every order the same few lines (`POST /order` with \
         `items`; the mix is named in its section); lines/s is orders/s times the lines of an \
         order, CPU per line is CPU per order divided by them.\n\
         - **backlog drain**: N persistent OrderPlaced queued with no consumer, then inventory-svc \
         (or, for the ceiling, the broker-only relay) started alone. Progress is the depth of \
         `order_status_queue` (one outcome per order, nobody consuming it), read by passive \
         declare every 100 ms; the rate counts from the first outcome seen to the last, start-up \
         is reported on its own. inventory-svc's RSS is read from `/proc` on the same tick.\n\
         - **CPU per order**: `/proc/<pid>/stat` of every process before the first order and \
         once every order was final and order-svc's outbox and `notification_queue` were empty \
         (every status event published and taken by notification-svc).\n\
         - **Redis per finished order**: a section of its own with the services at a short \
         `ORDER_RETENTION`: orders placed, confirmed and `PATCH`ed to SHIPPED then DELIVERED \
         (only a finished order is compacted; a benchmark order is CONFIRMED), every key of the \
         world weighed with `MEMORY USAGE` (SCAN, pipelined) once they are all DELIVERED and \
         again once `orders:expiring` and `reservations:compacting` are empty (polled, with a \
         deadline).\n\
         - **RSS**: VmRSS from `/proc/<pid>/status`; idle is read once every service is ready, \
         peak is the highest of samples every 100 ms until every order is final.\n\
         - The classic Python lab's figures come from the issue that asked for this benchmark; \
         they were measured elsewhere, not in this run."
    );
}

/// One run's CPU readings, its orders and how long it took; `None` if the run did not happen.
type CpuRun<'a> = (&'a str, Option<(&'a [CpuUse], usize, Duration)>);

/// Where the CPU went: for each process, each run's CPU seconds and µs per order; then the sum
/// of them all and what the cores could have given in that time.
fn cpu_table(runs: &[CpuRun<'_>]) -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let labels = crate::cpu::labels(runs.iter().filter_map(|(_, run)| Some(run.as_ref()?.0)));
    let row = |name: &str, seconds: &dyn Fn(&[CpuUse]) -> Option<f64>| {
        let mut row = vec![name.to_owned()];
        for (_, run) in runs {
            let (used, orders) = match run {
                Some((cpu, orders, _)) => (seconds(cpu), *orders),
                None => (None, 0),
            };
            row.push(used.map(|s| format!("{s:.2} s")).unwrap_or_default());
            row.push(match used {
                Some(s) if orders > 0 => format!("{:.0} µs", s * 1e6 / orders as f64),
                _ => String::new(),
            });
        }
        row
    };
    let mut rows: Vec<Vec<String>> = labels
        .iter()
        .map(|label| row(label, &|cpu| cpu_of(cpu, label)))
        .collect();
    rows.push(row("**all of them**", &|cpu| {
        Some(cpu.iter().map(|u| u.seconds).sum())
    }));
    let mut available = vec!["cores × elapsed (what there was)".to_owned()];
    for (_, run) in runs {
        let elapsed = run.map(|(_, _, elapsed)| elapsed.as_secs_f64() * cores as f64);
        available.push(elapsed.map(|s| format!("{s:.2} s")).unwrap_or_default());
        available.push(String::new());
    }
    rows.push(available);
    let header: String = runs
        .iter()
        .map(|(name, _)| format!(" | {name}: CPU | per order"))
        .collect();
    markdown_table(&format!("process{header}"), rows, true)
}

fn cpu_of(cpu: &[CpuUse], label: &str) -> Option<f64> {
    cpu.iter().find(|u| u.label == label).map(|u| u.seconds)
}

/// A GitHub-flavoured Markdown table, its columns padded by comfy-table so that the text reads
/// as a table on stdout too. `header` names the columns as the Markdown header row does
/// (`a | b | c`), without the outer bars. With `figures`, every column after the first holds
/// figures: they are right-aligned, and their header rule ends in `:` so that rendered Markdown
/// aligns them too (comfy-table's Markdown preset pads but has no alignment markers).
fn markdown_table<R: Into<Row>>(
    header: &str,
    rows: impl IntoIterator<Item = R>,
    figures: bool,
) -> String {
    let mut table = Table::new();
    table
        .load_preset(comfy_table::presets::ASCII_MARKDOWN)
        .set_header(header.split(" | "))
        .add_rows(rows);
    if figures {
        for column in table.column_iter_mut().skip(1) {
            column.set_cell_alignment(comfy_table::CellAlignment::Right);
        }
    }
    let mut lines: Vec<String> = table.lines().collect();
    if let Some(rule) = lines.get_mut(1).filter(|_| figures) {
        // "|---|---|---|" → "|---|--:|--:|": the pieces between bars, less the first column's.
        let pieces: Vec<&str> = rule.split('|').collect();
        *rule = pieces
            .iter()
            .enumerate()
            .map(|(i, dashes)| match dashes.get(1..) {
                Some(rest) if i > 1 && i + 1 < pieces.len() => format!("{rest}:"),
                _ => (*dashes).to_owned(),
            })
            .collect::<Vec<_>>()
            .join("|");
    }
    lines.join("\n")
}

/// A section's value, or why there is none.
fn cell<T>(section: &Section<T>, value: impl FnOnce(&T) -> String) -> String {
    match section {
        Section::Done(t) => value(t),
        Section::Skipped(flag) => format!("skipped ({flag})"),
        Section::Failed(_) => "failed (see notes)".to_owned(),
    }
}

/// `a` as a multiple of `b`: `×0.62`.
fn times(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("×{:.2}", a / b),
        _ => String::new(),
    }
}

fn ratio(saga: Option<f64>, ceiling: Option<f64>) -> String {
    match (saga, ceiling) {
        (Some(s), Some(c)) if c > 0.0 => format!("{:.0} %", 100.0 * s / c),
        _ => String::new(),
    }
}

fn drain_rss(d: &DrainResult) -> String {
    match d.rss {
        Some(rss) if rss.samples > 0 => format!(
            "{} → {} → {} (+{}, {} samples)",
            mib(rss.first),
            mib(rss.max),
            mib(rss.last),
            mib(rss.growth()),
            rss.samples
        ),
        _ => "no samples".to_owned(),
    }
}

fn percentiles(l: &Latency) -> String {
    if l.count == 0 {
        return "no samples".to_owned();
    }
    format!(
        "{} / {} / {} / {}",
        duration(l.p50),
        duration(l.p90),
        duration(l.p99),
        duration(l.max)
    )
}

/// CPU of every process, in microseconds per accepted order.
fn cpu_micros_per_order(e: &crate::e2e::E2eResult) -> f64 {
    let total: f64 = e.cpu.iter().map(|c| c.seconds).sum();
    1e6 * total / (e.accepted.max(1) as f64)
}

/// A count or rate for people: whole, with commas between thousands. Rounded as `{:.0}` does
/// (to the nearest, a tie to even): `1234.5` → `1,234`, `1234.6` → `1,235`.
pub fn thousands(value: f64) -> String {
    format!("{:.0}", value.max(0.0)).separate_with_commas()
}

/// Milliseconds below 10 s, seconds above.
pub fn duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 10_000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Now as `YYYY-MM-DD HH:MM UTC`.
pub fn utc_now() -> String {
    utc(time::OffsetDateTime::now_utc())
}

fn utc(at: time::OffsetDateTime) -> String {
    at.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute] UTC"
    ))
    // Formatting fails only for a component the value lacks; a UTC date-time has them all.
    .unwrap_or_else(|_| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_never_shows_a_sign_or_loses_digits() {
        assert_eq!(thousands(-5.0), "0");
        assert_eq!(thousands(f64::NAN), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(999.5), "1,000");
        assert_eq!(thousands(1e21), "1,000,000,000,000,000,000,000");
    }

    #[test]
    fn formats_numbers_for_people() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(812.6), "813");
        assert_eq!(thousands(1234.5), "1,234");
        assert_eq!(thousands(100_000.0), "100,000");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
        assert_eq!(duration(Duration::from_micros(1500)), "1.50 ms");
        assert_eq!(duration(Duration::from_millis(250)), "250 ms");
        assert_eq!(duration(Duration::from_secs(42)), "42.0 s");
        assert_eq!(mib(34 * 1024 * 1024), "34.0 MiB");
        assert_eq!(ratio(Some(50.0), Some(200.0)), "25 %");
        assert_eq!(ratio(Some(50.0), None), "");
        assert_eq!(times(Some(50.0), Some(200.0)), "×0.25");
        assert_eq!(times(Some(50.0), Some(0.0)), "");
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        let utc = |secs| utc(time::OffsetDateTime::from_unix_timestamp(secs).unwrap());
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_763_926_200), "2025-11-23 19:30 UTC");
        assert!(utc_now().ends_with(" UTC"));
    }

    #[test]
    fn markdown_tables_have_a_header_row_and_right_aligned_figures() {
        let rows = [
            vec!["orders/s".to_owned(), "1,234".to_owned()],
            vec!["p99".to_owned(), "12 ms".to_owned()],
        ];
        let table = markdown_table("figure | saga", rows, true);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines,
            [
                "| figure   |  saga |",
                "|----------|------:|",
                "| orders/s | 1,234 |",
                "| p99      | 12 ms |",
            ]
        );
    }

    #[test]
    fn a_report_of_skipped_sections_still_has_its_tables() {
        use clap::Parser as _;
        fn skipped<T>() -> Section<T> {
            Section::Skipped("--skip-all".to_owned())
        }
        let report = Report {
            machine: Machine::default(),
            plan: Plan::of(&crate::Args::parse_from(["saga-bench", "--quick"])),
            command: "saga-bench --quick".into(),
            date: "2026-01-02 03:04 UTC".into(),
            results: Results {
                ceiling: skipped(),
                e2e: skipped(),
                lines: skipped(),
                fixed_rate: skipped(),
                fixed_rate_ceiling: skipped(),
                scaling: skipped(),
                without_aof: skipped(),
                traced: skipped(),
                broker_drain: skipped(),
                inventory_drain: skipped(),
                retention: skipped(),
                cluster: crate::ClusterResults::skipped("no --cluster"),
            },
            charts: Vec::new(),
        };
        let text = report.render();
        let lines: Vec<&str> = text.lines().collect();
        let after = |heading: &str| {
            let at = lines.iter().position(|l| *l == heading).unwrap();
            (lines[at + 2], lines[at + 3], lines[at + 4])
        };
        let (header, rule, first) = after("## Run");
        assert!(header.starts_with("|  "), "{header}");
        assert!(rule.starts_with("|---") && !rule.contains(':'), "{rule}");
        assert!(first.starts_with("| date ") && first.contains("2026-01-02 03:04 UTC"));
        let (header, rule, first) = after("## Results");
        assert!(header.starts_with("| figure ") && header.ends_with(" classic Python lab |"));
        assert_eq!(rule.matches(":|").count(), 4, "{rule}");
        assert!(first.contains("skipped (--skip-all)"), "{first}");
        // Each table's columns line up: all its lines are padded to the same width.
        for table in text.split("\n\n").filter(|block| block.starts_with('|')) {
            let widths: Vec<usize> = table.lines().map(|l| l.chars().count()).collect();
            assert!(widths.iter().all(|w| *w == widths[0]), "{table}");
        }
        assert!(
            !text.contains("### Where the CPU went"),
            "no CPU table without its runs"
        );
    }

    #[test]
    fn the_cpu_table_gives_each_process_its_share_per_order() {
        let used = |label: &str, seconds| CpuUse {
            label: label.into(),
            seconds,
        };
        let cpu = [used("RabbitMQ", 2.0), used("order-svc", 0.5)];
        let runs = [
            ("end to end", Some((&cpu[..], 1000, Duration::from_secs(2)))),
            ("broker-only ceiling", None),
        ];
        let table = cpu_table(&runs);
        // Compared without comfy-table's padding, and without the rule under the header.
        let mut lines: Vec<String> = table
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(lines.remove(1).matches("-:|").count(), 4);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(
            lines,
            [
                "| process | end to end: CPU | per order | broker-only ceiling: CPU | per order |",
                "| RabbitMQ | 2.00 s | 2000 µs | | |",
                "| order-svc | 0.50 s | 500 µs | | |",
                "| **all of them** | 2.50 s | 2500 µs | | |",
                &format!(
                    "| cores × elapsed (what there was) | {}.00 s | | | |",
                    2 * cores
                ),
            ]
        );
    }

    #[test]
    fn says_how_redis_persists() {
        assert_eq!(persistence(Some("1"), Some("everysec")), "AOF everysec");
        assert_eq!(
            persistence(Some("0"), Some("everysec")),
            "no AOF: not durable"
        );
        assert_eq!(persistence(None, None), "persistence unknown");
    }
}
