//! `saga-board`: the classroom board, the saga live in one web page (`sagactl board` starts
//! the same board).
//!
//! One page, served from this binary with its HTML, JS and CSS embedded ([`assets`]): no build
//! step, no CDN, it works offline. The page opens one server-sent-events stream and redraws
//! itself from what arrives; its buttons are small JSON POSTs.
//!
//! - [`page`]: the page contract: one enum of the topics the page receives, and a serde type
//!   for each topic's payload (the page's JSDoc `@typedef`s mirror them).
//! - [`hub`]: fan-out of live updates: the latest value of each topic for a page that opens
//!   now, and every change for the pages already open.
//! - [`live`]: the samplers: queue depths every second (the chart), rates from the management
//!   API, recent orders with their lines and prices, stock with its conservation equation, the
//!   catalog (both services' `GET /products`), the DLQ (peeked without losing
//!   anything), the service processes, and the invariant lights (the rules of `sagactl check`).
//! - [`actions`]: what any visitor may do: place orders (of one line or several), publish a
//!   duplicate or a poison message, replay or purge the DLQ.
//! - [`alerts`]: the alert lights, deploy/prometheus/alerts.yml's queue thresholds judged on
//!   what the samplers read.
//! - [`traces`]: the board as an OTLP/HTTP JSON collector (`POST /v1/traces`): the services'
//!   spans, bounded in memory, and each order's waterfall (outbox, queue, handler).
//! - [`lab`]: the lab controls: drills, faults (stop, start, `kill -9` a service, close the
//!   broker's connections), a Redis outage, and the demo's processes they act on.
//! - [`routes`]: the HTTP API the page talks to; every error is JSON.
//! - [`guard`]: who may use it: the `Host` allowlist, same-origin POSTs, the token that
//!   state-changing actions need off loopback, and no framing.
//!
//! Everything is read from where it lives (Redis through [`saga_platform::redis::store::Keys`], the broker
//! over AMQP and its management API), with the functions `sagactl`'s own subcommands use, so
//! the page and the terminal always tell the same story.

pub mod actions;
pub mod alerts;
pub mod assets;
pub mod guard;
pub mod hub;
pub mod lab;
pub mod live;
pub mod page;
pub mod routes;
pub mod traces;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser};
use saga_domain::events::unix_now_millis;
use saga_domain::order::OrderStatus;
use saga_platform::redis::store::Keys;
use saga_platform::redis::store::Redis;
use saga_platform::service::config::Common;
use sagactl::http::ServiceApi;
use sagactl::management::Management;
use tokio_util::sync::CancellationToken;

use crate::lab::{drills, redis_outage};
use crate::page::{Activity, ActivityLog, PoisonKind, Tone, Vocabulary};

/// The name of the board's own broker connection: closing "all connections" spares it, so
/// the board keeps watching while the services reconnect.
pub const CONNECTION_NAME: &str = "saga-board";

/// The command line of `saga-board`: the same settings as `sagactl` (broker, Redis, the
/// services' URLs) and the board's own. `sagactl [settings] board [board flags]` runs this
/// with the same words.
#[derive(Parser, Debug)]
#[command(
    name = "saga-board",
    version,
    about = "Serve the classroom board: the saga live in a browser.",
    after_help = "Example:\n  saga-board\n  \
                  saga-board --addr 127.0.0.1:8080 --allow-faults\n  \
                  BOARD_ADDR=0.0.0.0:8080 saga-board   # a class may watch; every action is refused\n  \
                  saga-board --addr 0.0.0.0:8080 --allow-host board.lab --token \"$(openssl rand -hex 16)\""
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub urls: Urls,
    #[command(flatten)]
    pub board: BoardArgs,
}

/// The board's own flags.
#[derive(Args, Debug, Clone)]
pub struct BoardArgs {
    /// Where the board listens. Fault actions need a loopback address (127.0.0.1, ::1).
    #[arg(long, env = "BOARD_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Offer the fault buttons: stop, start or kill -9 a service, close every broker
    /// connection. Refused anyway while the board listens on a non-loopback address.
    #[arg(long, env = "BOARD_ALLOW_FAULTS")]
    pub allow_faults: bool,
    /// Also allow stopping the Redis at --redis-url for a few seconds. Only a local Redis that
    /// persists (appendonly yes) and has no password; the board starts it again with the
    /// settings it ran with.
    #[arg(long, env = "BOARD_ALLOW_REDIS_STOP", requires = "allow_faults")]
    pub allow_redis_stop: bool,
    /// Where the demo's pid and log files are (scripts/up.sh and scripts/svc.sh write them).
    #[arg(long, env = "SAGA_RUN_DIR", default_value = "/tmp/saga-run")]
    pub run_dir: PathBuf,
    /// The repository's scripts/ directory (lab drills, svc.sh). Default: ./scripts, else the
    /// one beside the binary's target/ directory.
    #[arg(long, env = "SAGA_SCRIPTS_DIR")]
    pub scripts_dir: Option<PathBuf>,
    /// Another name the board may be reached by (`name` for any port, `name:port`), besides
    /// localhost, 127.0.0.1, [::1] and --addr. Repeatable. Requests naming any other Host are
    /// refused (DNS rebinding).
    #[arg(long = "allow-host", env = "BOARD_ALLOW_HOSTS", value_delimiter = ',')]
    pub allow_hosts: Vec<String>,
    /// A secret every state-changing action must carry (`Authorization: Bearer ...`; the page
    /// sends the one in its URL's `#token=`). Without it, a board on a non-loopback address
    /// refuses every action.
    #[arg(long, env = "BOARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A Prometheus that loads deploy/prometheus/alerts.yml (e.g. http://127.0.0.1:9090): the
    /// board lights the rules only it can judge (they read the services' /metrics) from its
    /// rules API. Without it the alert panel names them.
    #[arg(long, env = "PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
    /// Seconds between two rounds of the invariant checks.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub check_every: u64,
}

/// The services' HTTP APIs and the broker's management API (the same flags as `sagactl`'s).
#[derive(Args, Debug, Clone)]
pub struct Urls {
    /// Base URL of order-svc's HTTP API.
    #[arg(
        long = "order-url",
        env = "ORDER_URL",
        default_value = "http://127.0.0.1:5001"
    )]
    pub order: String,

    /// Base URL of inventory-svc's HTTP API.
    #[arg(
        long = "inventory-url",
        env = "INVENTORY_URL",
        default_value = "http://127.0.0.1:5002"
    )]
    pub inventory: String,

    /// RabbitMQ management API (rates, unacked counts, closing connections).
    #[arg(
        long = "management-url",
        env = "RABBITMQ_MANAGEMENT_URL",
        hide_env_values = true,
        default_value = "http://guest:guest@127.0.0.1:15672"
    )]
    pub management: String,
}

/// Serve the board until SIGINT or SIGTERM.
///
/// # Errors
/// The address cannot be bound, or a URL is unusable. An unreachable broker, Redis or service
/// is not an error: the page shows it and recovers when it comes back.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli {
        common,
        urls,
        board: args,
    } = cli;
    let (listener, addr) = saga_platform::service::http::bind(args.addr).await?;
    let shutdown = saga_platform::service::shutdown::on_signal();
    let board = Board::new(common, urls, args, addr)?;
    board.hub.set(&vocabulary());
    let mut tasks = live::spawn(board.clone(), shutdown.clone());
    match (&board.access.token(), board.access.policy()) {
        // The whole address for the person at the terminal; a log file (scripts/svc.sh) gets
        // it without the secret: credentials never appear in logs.
        (Some(token), _) => say(&format!(
            "board: http://{}/#token={}  (actions need this token)",
            page_authority(addr, &board.args.allow_hosts),
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                token
            } else {
                "<the --token / BOARD_TOKEN it was started with>"
            }
        )),
        (None, guard::ActionPolicy::Refused) => {
            say(&format!("board: http://{addr}"));
            say("board: every action is refused: a non-loopback address needs --token");
        }
        (None, _) => say(&format!("board: http://{addr}")),
    }
    if let Some(why) = board.faults_refused() {
        say(&format!("board: fault buttons off: {why}"));
    }
    saga_platform::service::http::serve(
        listener,
        routes::routes(board.clone(), shutdown.clone()),
        shutdown,
    )
    .await;
    // A Redis the board stopped must not stay down because the board went away.
    board.redis_outage.end_now(&board).await;
    board.drills.stop().await;
    tasks.abort_all();
    Ok(())
}

/// The domain's words for the page: statuses, drills and poison kinds come from here, so the
/// page has no list of its own to fall out of date.
pub fn vocabulary() -> Vocabulary {
    use clap::ValueEnum as _;
    Vocabulary {
        statuses: OrderStatus::ALL.to_vec(),
        final_statuses: OrderStatus::DECIDED.to_vec(),
        tones: OrderStatus::ALL.map(|s| (s, Tone::of(s))).into(),
        drills: drills::DRILLS.to_vec(),
        poison_kinds: actions::POISON_KINDS
            .iter()
            .filter_map(|sample| {
                let value = sample.to_possible_value()?;
                let help = value
                    .get_help()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                // "OrderPlaced without qty: poison, goes to the DLQ." -> "OrderPlaced without qty"
                let label = help.split(':').next().unwrap_or_default().trim().to_owned();
                Some(PoisonKind {
                    kind: value.get_name().to_owned(),
                    label,
                })
            })
            .collect(),
    }
}

/// How a person reaches a board listening on `addr`: a wildcard address is no place to go, so
/// the first `--allow-host` (the name a class uses), else localhost.
fn page_authority(addr: SocketAddr, allow_hosts: &[String]) -> String {
    if !addr.ip().is_unspecified() {
        return addr.to_string();
    }
    match allow_hosts.first() {
        Some(host) if host.contains(':') && !host.ends_with(']') => host.clone(),
        Some(host) => format!("{host}:{}", addr.port()),
        None => format!("localhost:{}", addr.port()),
    }
}

/// One line on stdout, for the board's log file (scripts/up.sh keeps it beside the services').
fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Everything the board knows and holds, shared by its tasks and its request handlers.
pub struct Board {
    pub common: Common,
    pub urls: Urls,
    pub args: BoardArgs,
    /// Where the board really listens (port 0 resolved).
    pub listen: SocketAddr,
    /// Which hosts it answers to, and who may change state.
    pub access: guard::Access,
    pub keys: Keys,
    pub vhost: String,
    /// The saga's queues in chart order: each consumed queue, its retry queue, the DLQ.
    pub queues: Vec<String>,
    pub scripts_dir: Option<PathBuf>,
    pub redis: Redis,
    pub order_svc: ServiceApi,
    pub inventory_svc: ServiceApi,
    pub management: Management,
    pub hub: hub::Hub,
    pub broker: BrokerLink,
    pub drills: drills::Drills,
    pub redis_outage: redis_outage::RedisOutage,
    /// Ask the samplers to look at the DLQ again now (after a replay, a purge, a poison).
    pub dlq_dirty: tokio::sync::Notify,
    /// What the samplers saw last.
    pub live: live::LiveState,
    /// The spans the services export to the board, for the waterfalls.
    pub traces: traces::Traces,
    /// Since when each alert's condition has held.
    pub alerts: alerts::Pending,
    /// The Prometheus to ask for the rules only it judges (`--prometheus-url`).
    pub prometheus: Option<ServiceApi>,
    activity: Mutex<VecDeque<Activity>>,
}

const ACTIVITY_KEPT: usize = 40;

impl Board {
    fn new(
        common: Common,
        urls: Urls,
        args: BoardArgs,
        listen: SocketAddr,
    ) -> anyhow::Result<Arc<Self>> {
        let vhost = sagactl::broker::vhost_of(&common.rabbitmq_url)?;
        let redis = saga_platform::redis::store::connect(&common.redis_url)?;
        let scripts_dir = args.scripts_dir.clone().or_else(find_scripts_dir);
        Ok(Arc::new(Self {
            keys: Keys::new(&common.redis_prefix),
            queues: sagactl::queues::saga_queues(&common.topology),
            order_svc: ServiceApi::new("order-svc", &urls.order)?,
            inventory_svc: ServiceApi::new("inventory-svc", &urls.inventory)?,
            management: Management::new(&urls.management)?,
            hub: hub::Hub::new(),
            broker: BrokerLink::new(common.rabbitmq_url.clone()),
            drills: drills::Drills::default(),
            redis_outage: redis_outage::RedisOutage::default(),
            dlq_dirty: tokio::sync::Notify::new(),
            live: live::LiveState::default(),
            traces: traces::Traces::default(),
            alerts: alerts::Pending::default(),
            prometheus: args
                .prometheus_url
                .as_deref()
                .map(|url| ServiceApi::new("prometheus", url))
                .transpose()?,
            activity: Mutex::new(VecDeque::new()),
            access: guard::Access::new(listen, &args.allow_hosts, args.token.clone()),
            vhost,
            redis,
            scripts_dir,
            common,
            urls,
            args,
            listen,
        }))
    }

    /// Why fault actions are refused right now, or `None` when they are allowed.
    pub fn faults_refused(&self) -> Option<String> {
        if !self.args.allow_faults {
            return Some("fault actions are off: start the board with --allow-faults".into());
        }
        if !self.listen.ip().is_loopback() {
            return Some(format!(
                "fault actions are refused while the board listens on {}, which is not a \
                 loopback address: anyone who can reach the page could break the demo",
                self.listen
            ));
        }
        None
    }

    /// Note what was done, for the page's activity list and the board's log.
    pub fn record(&self, ok: bool, text: impl Into<String>) {
        let entry = Activity {
            at: unix_now_millis(),
            ok,
            text: text.into(),
        };
        say(&format!(
            "board: {}{}",
            if ok { "" } else { "FAILED: " },
            entry.text
        ));
        let snapshot = {
            let mut log = lock(&self.activity);
            log.push_front(entry);
            log.truncate(ACTIVITY_KEPT);
            ActivityLog(log.iter().cloned().collect())
        };
        self.hub.set(&snapshot);
    }
}

/// A std mutex whose poisoning (a panic while held) does not take the board down: the data
/// behind it is only a view, and the next sample overwrites it.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `./scripts` when run from the repository, else `<repo>/scripts` found from the binary's
/// place in `<repo>/target/<profile>/sagactl`.
fn find_scripts_dir() -> Option<PathBuf> {
    let is_scripts = |dir: &Path| dir.join("svc.sh").is_file() && dir.join("lab").is_dir();
    let here = PathBuf::from("scripts");
    if is_scripts(&here) {
        return std::fs::canonicalize(here).ok();
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .map(|dir| dir.join("scripts"))
        .find(|dir| is_scripts(dir))
}

/// The board's one broker connection, made again whenever it is lost.
pub struct BrokerLink {
    url: String,
    conn: tokio::sync::Mutex<Option<Arc<lapin::Connection>>>,
}

impl BrokerLink {
    fn new(url: String) -> Self {
        Self {
            url,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// The connection, connecting first if there is none or it died.
    ///
    /// # Errors
    /// The broker is unreachable.
    pub async fn get(&self) -> anyhow::Result<Arc<lapin::Connection>> {
        let mut conn = self.conn.lock().await;
        if let Some(live) = conn.as_ref().filter(|c| c.status().connected()) {
            return Ok(live.clone());
        }
        let fresh = Arc::new(
            tokio::time::timeout(
                Duration::from_secs(6),
                sagactl::broker::connect_named(&self.url, CONNECTION_NAME),
            )
            .await
            .context("the broker did not answer")??,
        );
        *conn = Some(fresh.clone());
        Ok(fresh)
    }
}

/// Cancelled together with the board: for tasks that must end when it does.
pub type Shutdown = CancellationToken;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_address_is_one_a_person_can_open() {
        let at = |addr: &str, hosts: &[&str]| {
            let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
            page_authority(addr.parse().unwrap(), &hosts)
        };
        assert_eq!(at("127.0.0.1:8080", &["board.lab"]), "127.0.0.1:8080");
        assert_eq!(at("0.0.0.0:8080", &[]), "localhost:8080");
        assert_eq!(at("0.0.0.0:8080", &["board.lab"]), "board.lab:8080");
        assert_eq!(at("0.0.0.0:8080", &["board.lab:80"]), "board.lab:80");
        assert_eq!(at("[::]:8080", &["[fd00::1]"]), "[fd00::1]:8080");
    }
}
