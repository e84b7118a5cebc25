//! What makes a saga service a service: settings in, an HTTP port bound, work until shutdown.
//!
//! Each service crate implements [`Service`] for its `App`; its binary is then one line,
//! [`main`], and a test can run the same `App` in-process on port 0 ([`Service::build`], then
//! [`Service::addr`] tells the port) exactly as the binary does.

use std::future::Future;
use std::net::SocketAddr;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::config::Common;

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
        let (listener, addr) = crate::http::bind(addr).await?;
        Ok(Self {
            config,
            listener,
            addr,
        })
    }
}

/// One of the saga's services.
pub trait Service: Sized {
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
pub async fn main<S: Service>() {
    let config: S::Config = crate::config::parse_or_exit();
    crate::telemetry::init_logging(S::common(&config).log_format);
    let shutdown = crate::shutdown::on_signal();
    let result = async { S::build(config).await?.run(shutdown).await }.await;
    if let Err(e) = result {
        eprintln!("{}: {e:#}", S::NAME);
        std::process::exit(1);
    }
}
