//! The order-svc binary: config, telemetry, run until SIGINT/SIGTERM.
#![forbid(unsafe_code)]

use order_svc::{App, Config};

#[tokio::main]
async fn main() {
    let config: Config = shared::config::parse_or_exit();
    shared::telemetry::init_logging(config.common.log_format);
    let shutdown = shared::shutdown::on_signal();
    let result = async { App::build(config).await?.run(shutdown).await }.await;
    if let Err(e) = result {
        eprintln!("order-svc: {e:#}");
        std::process::exit(1);
    }
}
