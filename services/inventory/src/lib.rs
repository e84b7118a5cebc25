//! inventory-svc: consumes `inventory_queue`, reserves or releases stock, announces the outcome.
//!
//! - [`stock`]: the Redis ledger (atomic Lua reserve / release, seeding, manual set).
//! - [`handler`]: one delivery → parse (poison to the DLQ) → decide → confirmed publish (the
//!   outcome, then the product's stock events).
//! - [`catalog`]: the products it owns (name, unit price, currency, threshold) and their events,
//!   written with each change into the catalog's outbox and published by its relay; a snapshot
//!   of every product at every start.
//! - [`api`]: `/health`, `/ready`, `/metrics`, `GET /stock`, `PUT /stock/{item}`, and the
//!   catalog's `GET /products`, `PUT /products/{item}`, `POST /products/announce` (changes:
//!   loopback or `ADMIN_TOKEN` only).
//! - [`openapi`]: that HTTP API as an OpenAPI 3 document generated from its code
//!   (`GET /openapi.json`).
//! - [`retention`]: the sweeper that compacts reservation records after `ORDER_RETENTION` and
//!   archives them into per-item totals after `DEDUPE_WINDOW` more.
//!
//! [`App::build`] binds the HTTP port and returns the real address (tests ask for port 0);
//! [`App::run`] works until the shutdown token is cancelled, then drains in-flight deliveries.

pub mod api;
pub mod catalog;
pub mod handler;
pub mod openapi;
pub mod retention;
pub mod stock;

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use saga_platform::amqp::BrokerStatus;
use saga_platform::amqp::consumer::{ConsumerSettings, run_watched_consumer};
use saga_platform::redis::store::{Keys, Timeline};
use saga_platform::service::config::Common;
use saga_platform::service::http::Readiness;
use saga_platform::service::spans::Spans;
use saga_platform::service::watch::{Watchdog, supervise};
use saga_platform::service::{Bound, SagaService};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::catalog::relay::CatalogRelay;
use crate::catalog::{Catalog, CatalogArgs};
use crate::handler::{InventoryHandler, SERVICE};
use crate::retention::Sweeper;
use crate::stock::{RedisLedger, StockList, parse_stock_list};

/// inventory-svc: reserves stock for placed orders and releases it for cancelled ones.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
pub struct Config {
    #[command(flatten)]
    pub common: Common,

    /// Address for /health, /ready, /metrics and /stock.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:5002")]
    pub http_addr: SocketAddr,

    /// Starting stock, applied only to items that have none yet (restarts keep stock).
    #[arg(long, env = "INITIAL_STOCK", default_value = "burger=100,pizza=50,sushi=30,salad=200",
          value_parser = parse_stock_list)]
    pub initial_stock: StockList,

    /// ADMIN_TOKEN: what PUT /stock/{item} and the catalog's changes need from callers off
    /// this machine.
    #[command(flatten)]
    pub admin: saga_platform::service::admin::AdminArgs,

    /// The catalog's seeded prices, currency and thresholds.
    #[command(flatten)]
    pub catalog: CatalogArgs,

    /// The versions of OrderPlaced this service reads: `1,2` (orders of several lines too), or
    /// `1` to play a service not upgraded yet: a version-2 order goes straight to the DLQ with
    /// the reason (the schema-evolution drill, scripts/lab/schema_evolution.sh).
    #[arg(long, env = "ORDER_PLACED_READS", default_value = "1,2", value_parser = parse_reads)]
    pub order_placed_reads: OrderPlacedReads,
}

/// Which majors of OrderPlaced inventory-svc reads (`ORDER_PLACED_READS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderPlacedReads(pub &'static [u16]);

fn parse_reads(s: &str) -> Result<OrderPlacedReads, String> {
    match s.replace(' ', "").as_str() {
        "1" => Ok(OrderPlacedReads(&[1])),
        "1,2" | "2,1" => Ok(OrderPlacedReads(&[1, 2])),
        other => Err(format!("{other:?}: expected 1 or 1,2")),
    }
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

    /// Serve and consume until `shutdown`; then stop taking work, finish in-flight, close.
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
        let ledger = RedisLedger::new(
            redis.clone(),
            Keys::new(&common.redis_prefix),
            common.retention,
        );
        let catalog = Catalog::new(
            redis.clone(),
            Keys::new(&common.redis_prefix),
            config.catalog.clone(),
        );
        let broker = Arc::new(BrokerStatus::default());
        let relay_status = Arc::new(BrokerStatus::default());
        let metrics = saga_platform::service::telemetry::init_metrics();

        let watchdog = Watchdog::new();
        let readiness = Readiness {
            brokers: vec![broker.clone(), relay_status.clone()],
            redis: redis.clone(),
            watchdog: watchdog.clone(),
        };
        let gate = |action| saga_platform::service::admin::AdminGate::new(&config.admin, action);
        let gates = api::Gates {
            stock: gate("changing stock"),
            catalog: gate("changing the catalog"),
        };
        let routes = api::routes(ledger.clone(), catalog.clone(), readiness, metrics, gates);
        let http = tokio::spawn(saga_platform::service::http::serve(
            listener,
            routes,
            shutdown.clone(),
        ));
        info!(addr = %addr, "inventory-svc HTTP ready");

        // Seed before consuming, so the first order never meets an empty stock table.
        if !seed_when_reachable(&ledger, &catalog, &config, &shutdown).await {
            let _ = http.await;
            return Ok(());
        }

        let relay = Arc::new(CatalogRelay {
            catalog,
            url: common.rabbitmq_url.clone(),
            topology: common.topology.clone(),
            status: relay_status,
            envelope: common.event_envelope,
        });
        let relay = tokio::spawn(supervise(
            "catalog relay",
            watchdog.clone(),
            shutdown.clone(),
            {
                let shutdown = shutdown.clone();
                move || relay.clone().run(shutdown.clone())
            },
        ));

        let sweeper = Arc::new(Sweeper::new(&ledger));
        let sweeper = tokio::spawn(supervise(
            "reservation retention",
            watchdog.clone(),
            shutdown.clone(),
            {
                let shutdown = shutdown.clone();
                move || sweeper.clone().run(shutdown.clone())
            },
        ));

        let timeline = Timeline::new(redis.clone(), Keys::new(&common.redis_prefix));
        let settings = ConsumerSettings::new(SERVICE, common, &common.topology.inventory_queue)
            .with_timeline(timeline)
            .with_watchdog(watchdog)
            .with_spans(Spans::start(SERVICE, common.otel_endpoint.as_deref()));
        let handler = Arc::new(InventoryHandler {
            ledger,
            order_placed_reads: config.order_placed_reads.0,
        });
        run_watched_consumer(settings, handler, broker, shutdown.clone()).await;
        saga_platform::amqp::log_task_end("reservation retention", sweeper.await);
        saga_platform::amqp::log_task_end("catalog relay", relay.await);
        let _ = http.await;
        info!("inventory-svc stopped");
        Ok(())
    }
}

/// Seed the stock and the catalog, then announce a snapshot of every product (the start-up
/// snapshot: anyone who missed an event gets the state it led to), retrying until Redis answers.
async fn seed_when_reachable(
    ledger: &RedisLedger,
    catalog: &Catalog,
    config: &Config,
    shutdown: &CancellationToken,
) -> bool {
    let mut backoff = saga_platform::service::backoff::Backoff::for_outages();
    loop {
        if !saga_platform::redis::store::wait_until_reachable(
            ledger.redis(),
            &config.common.redis_url,
            shutdown,
        )
        .await
        {
            return false;
        }
        let seeded = async {
            let items = ledger.seed(&config.initial_stock.0).await?;
            let products = catalog.seed(&config.initial_stock).await?;
            let announced = catalog.announce().await?;
            Ok::<_, redis::RedisError>((items, products, announced))
        };
        match seeded.await {
            Ok((added, products, announced)) => {
                info!(items_added = added, "stock seeded (existing items kept)");
                info!(
                    products_added = products,
                    announced, "catalog seeded (existing products kept); snapshot announced"
                );
                if let Ok(levels) = ledger.levels().await {
                    for (item, level) in levels {
                        metrics::gauge!("saga_stock_available", "item" => item)
                            .set(level.available as f64);
                    }
                }
                return true;
            }
            Err(e) => {
                warn!(cause = %e, "could not seed stock yet");
                if !backoff.wait(shutdown).await {
                    return false;
                }
            }
        }
    }
}
