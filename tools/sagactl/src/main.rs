//! The `sagactl` binary: parse the command line, run it, and on failure print one line
//! (`sagactl: <what went wrong: why>`) and exit 1. Everything else lives in the library.

/// The exit code of a process killed by SIGPIPE, which is what `sagactl ... | head` would have
/// been without Rust's default of ignoring the signal.
const STDOUT_CLOSED: i32 = 128 + 13;

#[tokio::main]
async fn main() {
    let cli: sagactl::Cli = saga_platform::service::config::parse_or_exit();
    if let Err(e) = sagactl::run(cli).await {
        if stdout_closed(&e) {
            // The reader went away (`| head`); nobody is left to read an error line.
            std::process::exit(STDOUT_CLOSED);
        }
        eprintln!("sagactl: {}", one_line(&e));
        std::process::exit(1);
    }
}

fn stdout_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes on one line. Some libraries already repeat their cause in their own
/// message; a cause the line already says is left out rather than said twice.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string().replace('\n', " ");
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
