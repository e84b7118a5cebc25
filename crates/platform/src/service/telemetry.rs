//! Logging and metrics set-up, done once per process.
//!
//! Logs are for people in a classroom: one readable line per business event, colored on a
//! terminal, or JSON with `--log-format json`. `RUST_LOG` filters (default `info`).

use std::io::IsTerminal;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{EnvFilter, fmt};

use crate::service::config::LogFormat;

/// What is logged when `RUST_LOG` is not set (see [`log_filter`] for why each part).
pub const DEFAULT_FILTER: &str = "info,lapin=off,amq_protocol=off,warp::filters::trace=off";

/// warp's own request events, silenced unless `RUST_LOG` names warp.
const WARP_TRACE_OFF: &str = "warp::filters::trace=off";

/// Install the global subscriber. Safe to call twice (the second call is ignored).
pub fn init_logging(format: LogFormat) {
    let filter = log_filter(std::env::var(EnvFilter::DEFAULT_ENV).ok().as_deref());
    let result = match format {
        LogFormat::Json => fmt()
            .json()
            .with_env_filter(filter)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => fmt()
            .with_env_filter(filter)
            .with_target(false)
            .with_ansi(std::io::stdout().is_terminal())
            .try_init(),
    };
    let _ = result;
}

/// The filter for a `RUST_LOG` value (`None`: not set; an invalid one counts as not set).
///
/// lapin logs its own view of every connection error (at ERROR, several lines each); we log
/// each of those once ourselves, in words a class can follow, so it is off unless asked for
/// (`RUST_LOG=info,lapin=debug`). The warp trace filter that `http::traced` builds its request
/// span on logs two INFO lines per request of its own; `traced` logs one, with the status and
/// latency, at DEBUG. So `RUST_LOG=info,http=debug` shows each request once: warp's lines stay
/// off unless `RUST_LOG` names warp.
pub fn log_filter(rust_log: Option<&str>) -> EnvFilter {
    let spec = match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        None => DEFAULT_FILTER.to_owned(),
        Some(spec) if spec.contains("warp") => spec.to_owned(),
        Some(spec) => format!("{spec},{WARP_TRACE_OFF}"),
    };
    EnvFilter::try_new(spec).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
}

/// How often histogram samples are folded into their buckets when nobody scrapes `/metrics`.
const METRICS_UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// Install the Prometheus recorder behind the `metrics` macros and return the handle that
/// renders `/metrics`. Call it inside the tokio runtime: it spawns the recorder's upkeep.
pub fn init_metrics() -> PrometheusHandle {
    let recorder = PrometheusBuilder::new()
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ])
        .map(|b| b.build_recorder())
        .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
    let handle = recorder.handle();
    // A second install (only possible in tests) keeps the first recorder; the handle still renders.
    let _ = metrics::set_global_recorder(recorder);
    // Histogram samples pile up until something drains them, and a classroom demo is rarely
    // scraped: without this, memory would grow by a few bytes per message for as long as the
    // service runs.
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let upkeep = handle.clone();
        runtime.spawn(async move {
            let mut every = tokio::time::interval(METRICS_UPKEEP);
            loop {
                every.tick().await;
                upkeep.run_upkeep();
            }
        });
    }
    handle
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warp_s_own_request_lines_are_off_unless_asked_for() {
        let shown = |rust_log: Option<&str>| log_filter(rust_log).to_string();
        assert!(shown(None).contains("warp::filters::trace=off"));
        assert!(shown(Some("info,http=debug")).contains("warp::filters::trace=off"));
        assert!(!shown(Some("debug,warp=trace")).contains("=off"));
        // Not a filter at all: the default, as before.
        assert!(shown(Some("info,lapin=nonsense")).contains("lapin=off"));
    }
}
