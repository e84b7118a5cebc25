//! order-svc: takes orders over HTTP and follows them to their final status.
//!
//! - [`orders`]: orders in Redis, each written with its event; guarded status transitions.
//! - [`outbox`]: the transactional outbox: the entry format, the relay that publishes it with
//!   confirms, and the backpressure at the front door.
//! - [`api`]: the HTTP API (warp), JSON everywhere, errors included; the limits on what a
//!   request may bring, and `Idempotency-Key`.
//! - [`auth`]: the per-user API's door (`/api/v1/orders`): who is asking, from an HS256 Bearer
//!   token, when `AUTH_JWT_SECRET` is set; 401 otherwise.
//! - [`openapi`]: that API as an OpenAPI 3 document generated from its code (`GET /openapi.json`).
//! - [`headers`]: the request headers it reads, parsed at the edge with their limits.
//! - [`lifecycle`]: the one compare-and-set every move goes through, with its status event.
//! - [`status`]: consumes `order_status_queue` and applies inventory outcomes to orders.
//! - [`replica`]: the catalog replica, fed by inventory's product events from
//!   `order_catalog_queue` and kept in Redis (`GET /products`, [`replica::Replica::lookup`]).
//! - [`sweeper`]: decision deadlines (timeouts, re-sent cancels) and retention (compaction).
//!
//! [`App::build`] binds the HTTP port and returns the real address (tests ask for port 0);
//! [`App::run`] works until the shutdown token is cancelled, then drains and closes.

pub mod api;
pub mod auth;
pub mod headers;
pub mod lifecycle;
pub mod openapi;
pub mod orders;
pub mod outbox;
pub mod replica;
pub mod status;
pub mod sweeper;

/// This service's name: in logs, connection names, `app_id` and the DLQ's `x-dlq-service`.
pub const SERVICE: &str = "order-svc";

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use saga_platform::amqp::BrokerStatus;
use saga_platform::amqp::consumer::{ConsumerSettings, run_watched_consumer};
use saga_platform::redis::store::{Keys, Timeline};
use saga_platform::service::config::Common;
use saga_platform::service::http::Readiness;
use saga_platform::service::jwt::AuthArgs;
use saga_platform::service::spans::Spans;
use saga_platform::service::watch::{Watchdog, supervise};
use saga_platform::service::{Bound, SagaService};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::orders::OrderStore;
use crate::outbox::Outbox;
use crate::outbox::relay::Relay;
use crate::replica::Replica;
use crate::replica::coalesce::Coalesced;
use crate::replica::consumer::CatalogHandler;
use crate::status::StatusHandler;
use crate::sweeper::Sweeper;

/// order-svc: the HTTP front door of the saga.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
pub struct Config {
    #[command(flatten)]
    pub common: Common,

    /// Address of the HTTP API.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:5001")]
    pub http_addr: SocketAddr,

    /// Outbox depth above which `POST /order` waits (up to 1 s, then 503) while the broker
    /// is connected: backpressure instead of an ever-longer queue. About one relay batch.
    #[arg(long, env = "OUTBOX_HIGH_WATER", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub outbox_high_water: u64,

    /// How long an `Idempotency-Key` is remembered: a retry with the same key within this
    /// window gets the first answer and never a second order (e.g. 24h, 30m).
    #[arg(long, env = "IDEMPOTENCY_WINDOW", default_value = "24h",
          value_parser = parse_idempotency_window)]
    pub idempotency_window: Duration,

    /// How long an order may stay PLACED (no answer from inventory) before it fails with
    /// reason `timeout` and its cancel is sent (a late reservation is given back); also how
    /// long a CANCELLING order waits before its cancel is sent again. `off` (or 0): never.
    #[arg(long, env = "ORDER_DECISION_TIMEOUT", default_value = "5m",
          value_parser = parse_decision_timeout)]
    pub decision_timeout: DecisionTimeout,

    #[command(flatten)]
    pub auth: AuthArgs,
}

/// `ORDER_DECISION_TIMEOUT`: `None` is off. (A newtype: clap reads a field of type `Option` as
/// "the flag may be absent", not as a value that may say "off".)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecisionTimeout(pub Option<Duration>);

/// A decision timeout: `off`/`0` for none, else 1 s to 30 days.
fn parse_decision_timeout(s: &str) -> Result<DecisionTimeout, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("off") || s == "0" {
        return Ok(DecisionTimeout(None));
    }
    let timeout = humantime::parse_duration(s)
        .map_err(|e| format!("{e}; expected a duration such as 5m or 30s, or off"))?;
    if timeout < Duration::from_secs(1) || timeout > Duration::from_secs(30 * 24 * 3600) {
        return Err(format!("{s} is out of range: use 1s to 30days, or off"));
    }
    Ok(DecisionTimeout(Some(timeout)))
}

/// An idempotency window from a humane duration, 1 s to 30 days: shorter is no protection
/// against a client's retries, longer keeps a record per request for ever in all but name.
fn parse_idempotency_window(s: &str) -> Result<Duration, String> {
    let window = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e}; expected a duration such as 24h or 30m"))?;
    if window < Duration::from_secs(1) || window > Duration::from_secs(30 * 24 * 3600) {
        return Err(format!("{s} is out of range: use 1s to 30days"));
    }
    Ok(window)
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

    /// Serve, relay and consume until `shutdown`; then finish in-flight work and close.
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
        let relay_status = Arc::new(BrokerStatus::default());
        let outbox = Arc::new(Outbox::new(config.outbox_high_water, relay_status.clone()));
        let keys = Keys::new(&common.redis_prefix);
        let windows = lifecycle::Windows {
            decision_timeout: config.decision_timeout.0,
            retention: common.retention.order_retention,
            dedupe_window: common.retention.dedupe_window,
        };
        let spans = Spans::start(SERVICE, common.otel_endpoint.as_deref());
        let store = OrderStore::new(
            redis.clone(),
            keys,
            outbox,
            config.idempotency_window,
            windows,
        )
        .with_spans(spans.clone());
        let consumer_status = Arc::new(BrokerStatus::default());
        let catalog_status = Arc::new(BrokerStatus::default());
        let replica = Replica::new(store.redis().clone(), store.keys().clone());
        let metrics = saga_platform::service::telemetry::init_metrics();

        let watchdog = Watchdog::new();
        let readiness = Readiness {
            brokers: vec![
                relay_status.clone(),
                consumer_status.clone(),
                catalog_status.clone(),
            ],
            redis,
            watchdog: watchdog.clone(),
        };
        let auth = auth::Auth::new(config.auth.secret().cloned());
        if auth.is_on() {
            info!(
                "Per-user API /api/v1/orders: a Bearer token (HS256, AUTH_JWT_SECRET) is required; the lab's routes stay open"
            );
        } else {
            info!(
                "Per-user API /api/v1/orders: open (AUTH_JWT_SECRET not set), orders without owners"
            );
        }
        let routes = api::routes(store.clone(), replica.clone(), auth, readiness, metrics);
        let http = tokio::spawn(saga_platform::service::http::serve(
            listener,
            routes,
            shutdown.clone(),
        ));
        info!(addr = %addr, "order-svc HTTP ready: POST /order, GET /order/{{id}}, GET /orders, PATCH /order/{{id}}/status, /api/v1/orders");

        let relay = Arc::new(Relay {
            store: store.clone(),
            url: common.rabbitmq_url.clone(),
            topology: common.topology.clone(),
            status: relay_status,
            envelope: common.event_envelope,
            spans: spans.clone(),
        });
        let relay = tokio::spawn(supervise(
            "outbox relay",
            watchdog.clone(),
            shutdown.clone(),
            {
                let shutdown = shutdown.clone();
                move || relay.clone().run(shutdown.clone())
            },
        ));

        let sweeper = Arc::new(Sweeper {
            store: store.clone(),
        });
        let sweeper = tokio::spawn(supervise("sweeper", watchdog.clone(), shutdown.clone(), {
            let shutdown = shutdown.clone();
            move || sweeper.clone().run(shutdown.clone())
        }));

        // The replica's consumer: no timeline (product events are about no order).
        let catalog_settings =
            ConsumerSettings::new(SERVICE, common, &common.topology.order_catalog_queue)
                .with_watchdog(watchdog.clone())
                .with_spans(spans.clone());
        let catalog = tokio::spawn(run_watched_consumer(
            catalog_settings,
            Arc::new(CatalogHandler {
                replica: Coalesced::new(replica),
            }),
            catalog_status,
            shutdown.clone(),
        ));

        let timeline = Timeline::new(store.redis().clone(), store.keys().clone());
        let settings = ConsumerSettings::new(SERVICE, common, &common.topology.order_status_queue)
            .with_timeline(timeline)
            .with_watchdog(watchdog)
            .with_spans(spans);
        run_watched_consumer(
            settings,
            Arc::new(StatusHandler { orders: store }),
            consumer_status,
            shutdown.clone(),
        )
        .await;
        saga_platform::amqp::log_task_end("catalog consumer", catalog.await);
        saga_platform::amqp::log_task_end("outbox relay", relay.await);
        saga_platform::amqp::log_task_end("sweeper", sweeper.await);
        saga_platform::amqp::log_task_end("http", http.await);
        info!("order-svc stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings are printed with `{:?}` here and there (a panic, a debug line): the secret must
    /// not be in them, and `--help` must not show its value.
    #[test]
    fn the_auth_secret_never_shows_in_the_settings() {
        let secret = "a-secret-nobody-may-read-0123456789";
        let config =
            Config::try_parse_from(["order-svc", &format!("--auth-jwt-secret={secret}")]).unwrap();
        assert!(config.auth.secret().is_some());
        assert!(!format!("{config:?}").contains(secret));

        let off = Config::try_parse_from(["order-svc", "--auth-jwt-secret="]).unwrap();
        assert!(off.auth.secret().is_none(), "empty is off");
        assert!(
            Config::try_parse_from(["order-svc"])
                .unwrap()
                .auth
                .secret()
                .is_none()
        );
    }
}
