//! A saga service's life: settings in, an HTTP port bound, work until shutdown, supervised.
//!
//! - this module: the [`SagaService`] trait each service's `App` implements, and [`main`], the
//!   whole of every service binary.
//! - [`config`]: the command-line / environment settings every service takes.
//! - [`telemetry`]: log set-up (readable or JSON) and the Prometheus recorder.
//! - [`http`]: `/health`, `/ready`, `/metrics` and JSON errors, for every service.
//! - `openapi` (feature `openapi`): those shared routes described for OpenAPI, and the route
//!   that serves a service's document at `/openapi.json`.
//! - [`redact`]: URLs with their passwords and tokens blanked, for logs and errors.
//! - [`admin`]: state-changing ops endpoints: loopback callers, or `ADMIN_TOKEN`.
//! - [`jwt`]: HS256 Bearer tokens (`AUTH_JWT_SECRET`): minted by `sagactl token`, verified by
//!   order-svc's per-user API.
//! - [`shutdown`]: SIGINT/SIGTERM into a cancellation token.
//! - [`spans`]: the spans a service made, exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT`
//!   is set (and nothing built when not).
//! - [`backoff`]: capped exponential backoff for everything transient.
//! - [`watch`]: every long-running task supervised (restarted with backoff), and the
//!   [`watch::Watchdog`] that `/ready` reads: what is down, and why.
//!
//! Each service crate implements [`SagaService`] for its `App`; its binary is then one line,
//! [`main`], and a test can run the same `App` in-process on port 0 ([`SagaService::build`],
//! then [`SagaService::addr`] tells the port) exactly as the binary does.

pub mod admin;
pub mod backoff;
pub mod config;
pub mod http;
pub mod jwt;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod redact;
pub mod shutdown;
pub mod spans;
pub mod telemetry;
pub mod watch;

use std::future::Future;
use std::net::SocketAddr;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::service::config::Common;

/// A service's settings with its HTTP port already bound: what every `App::build` makes first,
/// before the broker or Redis is contacted (they may be down; the port must not be).
pub struct Bound<C> {
    pub config: C,
    pub listener: tokio::net::TcpListener,
    /// The real address (port 0 asks the kernel for a free one).
    pub addr: SocketAddr,
}

impl<C> Bound<C> {
    /// Bind `addr` for `config`.
    ///
    /// # Errors
    /// The address is in use or not ours to bind.
    pub async fn bind(config: C, addr: SocketAddr) -> anyhow::Result<Self> {
        let (listener, addr) = crate::service::http::bind(addr).await?;
        Ok(Self {
            config,
            listener,
            addr,
        })
    }
}

/// One of the saga's services: its settings, its name, and its life (build, then run).
pub trait SagaService: Sized {
    /// Its settings: flags, each with an environment variable.
    type Config: Parser;
    /// The name in logs, errors and the broker's connection list, e.g. `order-svc`.
    const NAME: &'static str;

    fn common(config: &Self::Config) -> &Common;

    /// Bind the HTTP port; nothing else is contacted yet.
    ///
    /// # Errors
    /// The HTTP address cannot be bound.
    fn build(config: Self::Config) -> impl Future<Output = anyhow::Result<Self>> + Send;

    /// Where the HTTP API listens.
    fn addr(&self) -> SocketAddr;

    /// Serve and consume until `shutdown` is cancelled; then finish in-flight work and close.
    ///
    /// # Errors
    /// Only set-up errors that no retry can fix.
    fn run(self, shutdown: CancellationToken) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// The whole of a service binary: settings (a bad value exits 2 with one line), logging, run
/// until SIGINT or SIGTERM; a fatal error exits 1 with one line.
pub async fn main<S: SagaService>() {
    let config: S::Config = crate::service::config::parse_or_exit();
    crate::service::telemetry::init_logging(S::common(&config).log_format);
    let shutdown = crate::service::shutdown::on_signal();
    let result = async { S::build(config).await?.run(shutdown).await }.await;
    if let Err(e) = result {
        eprintln!("{}: {e:#}", S::NAME);
        std::process::exit(1);
    }
}
