//! The `saga-board` binary: parse the command line and serve the board until SIGINT or SIGTERM;
//! on failure print one line (`saga-board: <what went wrong: why>`) and exit 1. Everything else
//! lives in the library (`sagactl board` is the same board, started through sagactl).

#[tokio::main]
async fn main() {
    let cli: saga_board::Cli = saga_platform::service::config::parse_or_exit();
    if let Err(e) = saga_board::run(cli).await {
        eprintln!("saga-board: {e:#}");
        std::process::exit(1);
    }
}
