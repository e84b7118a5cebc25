//! The notification-svc binary: config, telemetry, run until SIGINT/SIGTERM.
#![forbid(unsafe_code)]

use notification_svc::{App, Config};

/// mimalloc instead of glibc's malloc: a profile under load showed a third of the service's
/// CPU in glibc's malloc and free (see docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let config: Config = shared::config::parse_or_exit();
    shared::telemetry::init_logging(config.common.log_format);
    let shutdown = shared::shutdown::on_signal();
    let result = async { App::build(config).await?.run(shutdown).await }.await;
    if let Err(e) = result {
        eprintln!("notification-svc: {e:#}");
        std::process::exit(1);
    }
}
