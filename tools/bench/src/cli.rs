//! The command line: flags, and the sizes a run actually uses once `--quick` has had its say.

use std::path::PathBuf;

use clap::Parser;

use crate::ceiling::Flow;

/// Measure the saga end to end and beside the broker's own ceiling; write docs/BENCHMARKS.md.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
pub struct Args {
    /// Orders placed over HTTP in the end-to-end run (and in the broker-only ceiling).
    #[arg(long, default_value_t = 20_000)]
    pub orders: usize,

    /// Concurrent HTTP clients in the end-to-end run.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,

    /// OrderPlaced messages queued before a drain starts.
    #[arg(long, default_value_t = 100_000)]
    pub drain_messages: usize,

    /// Seconds of open-loop load in the fixed-rate section.
    #[arg(long, default_value_t = 30)]
    pub fixed_rate_secs: u64,

    /// Orders per second for the fixed-rate section (default: half the end-to-end maximum).
    #[arg(long)]
    pub fixed_rate: Option<f64>,

    /// Also write every fixed-rate order's timings (due, due → 201, due → outcome) to this CSV.
    #[arg(long)]
    pub fixed_rate_trace: Option<PathBuf>,

    /// Where the report goes (overwritten).
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    pub out: PathBuf,

    /// A smoke run with small sizes: 2,000 orders, 10,000 drain messages, 5 s of fixed rate,
    /// 500 orders through retention (overrides those four flags).
    #[arg(long)]
    pub quick: bool,

    /// Prefetch for the services (passed as RABBITMQ_PREFETCH) and for the broker-only relay.
    #[arg(long, default_value_t = 64)]
    pub prefetch: u16,

    /// Most unconfirmed publishes a broker-only publisher keeps in flight. 256 is order-svc's
    /// outbox relay batch; bounded because 1,000 in flight queues confirms for 100-200 ms.
    #[arg(long, default_value_t = 256)]
    pub confirm_window: usize,

    /// Skip the broker-only ceiling (the ratios then stay empty).
    #[arg(long)]
    pub skip_ceiling: bool,
    /// Skip the end-to-end run (and its memory figures; the fixed rate then needs --fixed-rate).
    #[arg(long)]
    pub skip_e2e: bool,
    /// Skip the fixed-rate latency run.
    #[arg(long)]
    pub skip_fixed_rate: bool,
    /// Skip the end-to-end run with two inventory-svc.
    #[arg(long)]
    pub skip_scaling: bool,
    /// Skip both backlog drains (inventory-svc and broker-only).
    #[arg(long)]
    pub skip_drain: bool,
    /// Skip the retention section (Redis per finished order before and after compaction;
    /// needs services with retention, i.e. from issue 19 on).
    #[arg(long)]
    pub skip_retention: bool,
    /// Orders taken to DELIVERED in the retention section.
    #[arg(long, default_value_t = 5_000)]
    pub retention_orders: usize,
    /// Also run the end-to-end section with Redis's AOF switched off (CONFIG SET appendonly no,
    /// switched back on afterwards), to show what durability costs. It changes the Redis the
    /// benchmark uses for the length of one section: not with a demo running that matters.
    #[arg(long)]
    pub persistence_cost: bool,

    /// Also run the end-to-end section with orders of several lines (each order 3 lines: burger
    /// 1, pizza 1, salad 1, i.e. OrderPlaced version 2), right after the lab's single-item run,
    /// and report orders/s, lines/s and CPU per order for both, side by side.
    #[arg(long)]
    pub lines_mix: bool,

    /// Also run the end-to-end section with every service exporting its spans over OTLP to a
    /// collector inside the benchmark, to show what tracing costs beside the default (off).
    #[arg(long)]
    pub tracing_cost: bool,

    /// Also run the end-to-end and fixed-rate sections on the cluster profile (3 RabbitMQ
    /// nodes with quorum queues, Redis master + 2 replicas + 3 Sentinels, WAIT after writes),
    /// started with --cluster-script on private ports after the single-node sections, and
    /// stopped at the end.
    #[arg(long)]
    pub cluster: bool,

    /// The script that starts the cluster profile.
    #[arg(long, default_value = "scripts/cluster.sh")]
    pub cluster_script: PathBuf,

    /// RabbitMQ management API (vhosts are created and deleted through it).
    #[arg(
        long,
        env = "RABBITMQ_MANAGEMENT_URL",
        default_value = "http://127.0.0.1:15672"
    )]
    pub management_url: String,

    /// host:port of the broker's AMQP listener.
    #[arg(long, env = "RABBITMQ_AMQP_ADDR", default_value = "127.0.0.1:5672")]
    pub amqp_addr: String,

    /// Broker user (AMQP and management).
    #[arg(long, env = "RABBITMQ_USER", default_value = "guest")]
    pub broker_user: String,

    /// Broker password (AMQP and management).
    #[arg(
        long,
        env = "RABBITMQ_PASSWORD",
        default_value = "guest",
        hide_env_values = true
    )]
    pub broker_password: String,

    /// Redis URL.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,

    /// Where the service binaries are (default: beside this binary, i.e. target/release).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
}

/// The sizes a run actually uses, once `--quick` has had its say.
#[derive(Debug, Clone)]
pub struct Plan {
    pub quick: bool,
    pub orders: usize,
    pub concurrency: usize,
    pub drain_messages: usize,
    pub fixed_rate_secs: u64,
    pub fixed_rate: Option<f64>,
    pub retention_orders: usize,
    /// The services' prefetch, and the broker-only clients' prefetch and confirm window.
    pub flow: Flow,
}

impl Plan {
    pub fn of(args: &Args) -> Self {
        let (orders, drain_messages, fixed_rate_secs, retention_orders) = if args.quick {
            (2_000, 10_000, 5, 500)
        } else {
            (
                args.orders,
                args.drain_messages,
                args.fixed_rate_secs,
                args.retention_orders,
            )
        };
        Self {
            quick: args.quick,
            orders: orders.max(1),
            concurrency: args.concurrency.max(1),
            drain_messages: drain_messages.max(1),
            fixed_rate_secs: fixed_rate_secs.max(1),
            fixed_rate: args.fixed_rate,
            retention_orders: retention_orders.max(1),
            flow: Flow {
                prefetch: args.prefetch.max(1),
                confirm_window: args.confirm_window.max(1),
            },
        }
    }
}

/// The command as the person typed it: `scripts/bench.sh` passes its own, else our argv, quoted
/// for a shell so that it can be pasted back.
pub fn command_line() -> String {
    std::env::var("SAGA_BENCH_COMMAND").unwrap_or_else(|_| {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let argv = std::iter::once("saga-bench").chain(args.iter().map(String::as_str));
        // Only an argument with a NUL byte cannot be quoted, and no shell could have passed one.
        shlex::try_join(argv).unwrap_or_else(|_| "saga-bench".to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_overrides_the_sizes() {
        let args = Args::parse_from(["saga-bench", "--quick", "--orders", "99"]);
        let plan = Plan::of(&args);
        assert_eq!(
            (plan.orders, plan.drain_messages, plan.fixed_rate_secs),
            (2_000, 10_000, 5)
        );
        let args = Args::parse_from(["saga-bench", "--orders", "99"]);
        assert_eq!(Plan::of(&args).orders, 99);
        assert_eq!(Plan::of(&args).drain_messages, 100_000);
    }
}
