//! notification-svc: tells students what happened to their orders, exactly once per outcome:
//! reserved, failed, released (from inventory's outcome or the order's status event, whichever
//! comes first), shipped and delivered (from the status event).
//!
//! - [`handler`]: claim ([`handler::Claims`], in Redis) → deliver to the sink → record as sent
//!   (kept for the retention plus dedupe window); the consume loop then acks.
//! - [`sink`]: log line (default), JSON-lines file, or webhook.
//!
//! [`App::build`] binds `/health`, `/ready`, `/metrics`; [`App::run`] consumes until shutdown.

pub mod handler;
pub mod sink;

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use saga_platform::amqp::BrokerStatus;
use saga_platform::amqp::consumer::{ConsumerSettings, run_watched_consumer};
use saga_platform::redis::store::{Keys, Timeline};
use saga_platform::service::config::Common;
use saga_platform::service::http::{Readiness, ops_routes, recover, traced};
use saga_platform::service::spans::Spans;
use saga_platform::service::watch::Watchdog;
use saga_platform::service::{Bound, SagaService};
use tokio_util::sync::CancellationToken;
use tracing::info;
use warp::Filter;

use crate::handler::{NotifyHandler, RedisClaims, sent_mark_ttl};
use crate::sink::{Sink, SinkSpec};

pub const SERVICE: &str = "notification-svc";

/// notification-svc: one notification per (order, outcome).
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
pub struct Config {
    #[command(flatten)]
    pub common: Common,

    /// Address for /health, /ready and /metrics.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:5003")]
    pub http_addr: SocketAddr,

    /// Where notifications go: log, file:PATH (JSON lines) or webhook:URL.
    #[arg(long, env = "NOTIFY_SINK", default_value = "log")]
    pub sink: SinkSpec,

    /// Milliseconds after which a claim by a sender that died may be taken over.
    #[arg(long, env = "CLAIM_LEASE_MS", default_value_t = 10_000)]
    pub claim_lease_ms: u64,
}

/// The service with its HTTP port bound, ready to run.
pub struct App(Bound<Config>);

impl SagaService for App {
    type Config = Config;
    const NAME: &'static str = SERVICE;

    fn common(config: &Config) -> &Common {
        &config.common
    }

    async fn build(config: Config) -> anyhow::Result<Self> {
        let addr = config.http_addr;
        Ok(Self(Bound::bind(config, addr).await?))
    }

    fn addr(&self) -> SocketAddr {
        self.0.addr
    }

    /// Consume until `shutdown`, then finish in-flight notifications and close.
    ///
    /// # Errors
    /// Only set-up errors that no retry can fix.
    async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Bound {
            config,
            listener,
            addr,
        } = self.0;
        let common = &config.common;
        let redis =
            saga_platform::redis::store::connect_with(&common.redis_url, common.replication)?;
        let broker = Arc::new(BrokerStatus::default());
        let metrics = saga_platform::service::telemetry::init_metrics();
        let watchdog = Watchdog::new();
        let readiness = Readiness {
            brokers: vec![broker.clone()],
            redis: redis.clone(),
            watchdog: watchdog.clone(),
        };
        let routes = traced(
            ops_routes(SERVICE, readiness, metrics)
                .recover(recover)
                .unify(),
        );
        let http = tokio::spawn(saga_platform::service::http::serve(
            listener,
            routes,
            shutdown.clone(),
        ));
        info!(addr = %addr, sink = ?config.sink, "notification-svc HTTP ready");

        let keys = Keys::new(&common.redis_prefix);
        let handler = NotifyHandler {
            claims: RedisClaims::new(
                redis.clone(),
                keys.clone(),
                config.claim_lease_ms,
                sent_mark_ttl(&common.retention),
            ),
            sink: Sink::new(&config.sink),
            instance: uuid::Uuid::new_v4().to_string(),
        };
        let settings = ConsumerSettings::new(SERVICE, common, &common.topology.notification_queue)
            .with_timeline(Timeline::new(redis, keys))
            .with_watchdog(watchdog)
            .with_spans(Spans::start(SERVICE, common.otel_endpoint.as_deref()));
        run_watched_consumer(settings, Arc::new(handler), broker, shutdown.clone()).await;
        saga_platform::amqp::log_task_end("http", http.await);
        info!("notification-svc stopped");
        Ok(())
    }
}
