//! `sagactl`: the saga's command-line companion, for the lab and for the people running it.
//!
//! It does what the classic lab scripts did with pika and requests, and a little more. Each
//! subcommand group lives in its own module; this file only parses the command line and
//! dispatches.
//!
//! - [`order`]: place, get, list, cancel, ship and deliver orders over order-svc's HTTP API.
//! - [`stock`]: show and set stock over inventory-svc's HTTP API.
//! - [`queues`]: depth and consumers of every queue (exact, from the broker), plus rates from
//!   the management API when it is reachable.
//! - [`publish`]: publish raw events with confirms: bare or with our properties, duplicated on
//!   purpose, or one of the ready-made [`samples`] (valid, poison, business failure).
//! - [`outbox`]: list the outbox entries order-svc's relay parked (never publishable as they
//!   are) and put them back.
//! - [`dlq`]: list, show, replay and purge the dead-letter queue without losing anything; what
//!   each message says about why it is there ([`provenance`]: our `x-dlq-*` or the broker's
//!   `x-death`).
//! - [`watch`]: follow a queue's depth until a backlog has drained.
//! - [`check`]: the invariant checker (nothing lost, nothing doubled), also a library function
//!   for the integration tests.
//! - [`load`]: place many orders concurrently and report throughput and latency.
//! - [`explain`]: one order's journey, step by step with why each step was safe, as text or
//!   Mermaid, told from its [`timeline`] (everything the services recorded about it).
//! - [`token`]: mint an HS256 Bearer token for order-svc's per-user API (`AUTH_JWT_SECRET`).
//! - [`board`]: `sagactl board`, a shortcut to the classroom board (the `saga-board` crate and
//!   binary, in tools/board).
//!
//! Shared plumbing: [`broker`] (connect, passive depth, peek without losing), [`http`] (JSON
//! over HTTP with the services' `{"error": ...}` answers turned into errors),
//! [`management`] (the broker's management API: rates, connections) and [`output`] (`--json`:
//! every read command can print one JSON document instead of its table, for scripts).

/// `println!` that returns an `io::Result` instead of panicking when stdout is gone
/// (`sagactl dlq list | head -3` closes the pipe early); callers pass the error on with `?`.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

pub mod board;
pub mod broker;
pub mod check;
pub mod dlq;
pub mod explain;
pub mod http;
pub mod load;
pub mod management;
pub mod order;
pub mod outbox;
pub mod output;
pub mod provenance;
pub mod publish;
pub mod queues;
pub mod samples;
pub mod stock;
pub mod timeline;
pub mod token;
pub mod watch;

use clap::{Parser, Subcommand};
use saga_platform::service::config::Common;

/// Drive and inspect the order saga: orders, stock, queues, raw events, the DLQ, invariants, load,
/// an order's journey, and the classroom board.
#[derive(Parser, Debug)]
#[command(
    name = "sagactl",
    version,
    about,
    after_help = "Example:\n  sagactl order place --item burger --qty 2\n  sagactl queues\n  sagactl queues --json\n  sagactl check"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,

    /// Base URL of order-svc's HTTP API.
    #[arg(long, env = "ORDER_URL", default_value = "http://127.0.0.1:5001")]
    pub order_url: String,

    /// Base URL of inventory-svc's HTTP API.
    #[arg(long, env = "INVENTORY_URL", default_value = "http://127.0.0.1:5002")]
    pub inventory_url: String,

    /// RabbitMQ management API (only for message rates; everything else works without it).
    #[arg(
        long,
        env = "RABBITMQ_MANAGEMENT_URL",
        hide_env_values = true,
        default_value = "http://guest:guest@127.0.0.1:15672"
    )]
    pub management_url: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Place, show, list, cancel, ship and deliver orders (order-svc over HTTP).
    #[command(
        subcommand,
        after_help = "Example:\n  sagactl order place --item burger --qty 2\n  sagactl order list --status confirmed"
    )]
    Order(order::OrderCommand),
    /// Show or set stock (inventory-svc over HTTP).
    #[command(
        subcommand,
        after_help = "Example:\n  sagactl stock show\n  sagactl stock set burger 5"
    )]
    Stock(stock::StockCommand),
    /// Depth, consumers and rates of every queue of the topology.
    #[command(after_help = "Example:\n  sagactl queues\n  sagactl queues --json")]
    Queues(output::Output),
    /// Publish a raw event with confirms: your JSON, a file, or a ready-made sample.
    Publish(publish::PublishArgs),
    /// Inspect, replay and purge the dead-letter queue.
    #[command(
        subcommand,
        after_help = "Example:\n  sagactl dlq list\n  sagactl dlq show 1\n  sagactl dlq replay 1"
    )]
    Dlq(dlq::DlqCommand),
    /// List and replay the outbox entries order-svc parked because they cannot be published.
    #[command(
        subcommand,
        after_help = "Example:\n  sagactl outbox list\n  sagactl outbox replay 1733338000000-0"
    )]
    Outbox(outbox::OutboxCommand),
    /// Follow a queue's depth, e.g. until a backlog has drained.
    Watch(watch::WatchArgs),
    /// Wait for every order to be decided, then verify the saga's invariants (the lifecycle's
    /// included: deadlines kept, one status event per transition).
    Check(check::CheckArgs),
    /// Place many orders concurrently and report throughput and latency.
    Load(load::LoadArgs),
    /// Tell one order's journey step by step, with why each step was safe (or as Mermaid).
    Explain(explain::ExplainArgs),
    /// Print a Bearer token for order-svc's per-user API (/api/v1/orders), signed with
    /// AUTH_JWT_SECRET.
    Token(token::TokenArgs),
    /// Serve the classroom board: the saga live in a browser (runs saga-board; see
    /// `sagactl board --help`).
    #[command(disable_help_flag = true)]
    Board(board::Shortcut),
}

/// Run one parsed command line.
///
/// # Errors
/// Whatever the subcommand reports: an unreachable service, a refusal, a failed check.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli {
        common,
        order_url,
        inventory_url,
        management_url,
        command,
    } = cli;
    match command {
        Command::Order(cmd) => order::run(&order_url, cmd).await,
        Command::Stock(cmd) => stock::run(&inventory_url, cmd).await,
        Command::Queues(output) => queues::run(&common, &management_url, output).await,
        Command::Publish(args) => publish::run(&common, args).await,
        Command::Dlq(cmd) => dlq::run(&common, cmd).await,
        Command::Outbox(cmd) => outbox::run(&common, cmd).await,
        Command::Watch(args) => watch::run(&common, args).await,
        Command::Check(args) => check::run(&common, args).await,
        Command::Load(args) => load::run(&order_url, args).await,
        Command::Explain(args) => explain::run(&common, args).await,
        Command::Token(args) => token::run(&args),
        Command::Board(shortcut) => Err(board::exec(&shortcut)),
    }
}
