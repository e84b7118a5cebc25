//! Latency under a fixed rate: orders sent on a schedule, whatever the saga is doing.
//!
//! Open loop: order k is due at `start + k / rate` and is sent then, without waiting for
//! earlier answers. Its latency is measured from when it was *due*, not when it went out, so
//! a stall anywhere (even in this sender) shows in the figures instead of quietly delaying the
//! next orders ("coordinated omission").

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use saga_client::load::{Pace, Plan};

use crate::load::{Placed, client};
use crate::saga::{Anchor, Saga, stamps, wait_all_final};
use crate::stats::{Latency, latencies};
use crate::world::{Lab, World};

/// More answers outstanding than this and the saga is not keeping up: the sender then waits
/// for one, rather than open thousands of connections. The lag shows in `max_send_lag`.
const MAX_OUTSTANDING: usize = 2_048;

#[derive(Debug, Clone)]
pub struct FixedRateResult {
    /// Orders per second asked for.
    pub rate: f64,
    pub secs: u64,
    pub sent: usize,
    pub accepted: usize,
    pub refused: usize,
    pub first_error: Option<String>,
    /// Due → outcome applied by order-svc.
    pub latency: Latency,
    /// Due → `201 Created`: the part of `latency` spent before the order was accepted.
    pub accept: Latency,
    /// Due → inventory-svc decided (its reservation stamp): accepted, relayed from the
    /// outbox, delivered, and decided.
    pub decided: Latency,
    pub missing: usize,
    /// The latest any order went out after it was due.
    pub max_send_lag: Duration,
    /// Every accepted order's legs, for the latency-distribution chart.
    pub legs: Legs,
}

/// Each accepted order's time from when it was due to each stage, in milliseconds (orders
/// that never reached a stage are left out of that stage).
#[derive(Debug, Clone, Default)]
pub struct Legs {
    /// Due → `201 Created`.
    pub accept: Vec<f64>,
    /// Due → decided by inventory-svc.
    pub decided: Vec<f64>,
    /// Due → outcome applied by order-svc.
    pub finals: Vec<f64>,
}

impl Legs {
    fn of(placed: &[(String, Instant)], columns: [&HashMap<String, Instant>; 3]) -> Self {
        let [accept, decided, finals] =
            columns.map(|column| since_due(placed, column).flatten().collect());
        Self {
            accept,
            decided,
            finals,
        }
    }
}

/// For each placed order, milliseconds from when it was due until it shows in `column`.
fn since_due<'a>(
    placed: &'a [(String, Instant)],
    column: &'a HashMap<String, Instant>,
) -> impl Iterator<Item = Option<f64>> + 'a {
    placed.iter().map(|(order_id, due)| {
        column
            .get(order_id)
            .map(|t| t.saturating_duration_since(*due).as_secs_f64() * 1e3)
    })
}

/// Send orders at `rate` per second for `secs` seconds to a fresh saga.
///
/// # Errors
/// A service did not start, the orders never became final, or the broker or Redis failed.
pub async fn run(
    lab: &Lab,
    rate: f64,
    secs: u64,
    trace: Option<&Path>,
) -> anyhow::Result<FixedRateResult> {
    anyhow::ensure!(
        rate.is_finite() && rate > 0.0,
        "the rate must be positive, got {rate}"
    );
    lab.in_world("fixed-rate", async |world: &World<'_>| {
        let saga = Saga::start(world, 1).await?;
        let client = client(&saga);

        let anchor = Anchor::now();
        let total = (rate * secs as f64).round().max(1.0) as usize;
        let plan = Plan {
            orders: total,
            pace: Pace::Open {
                rate,
                max_outstanding: MAX_OUTSTANDING,
            },
            body: crate::load::body(),
            retry_for: Duration::ZERO,
        };
        let sent = Placed::from(saga_client::load::run(&client, &plan, |_| {}).await);
        let accepted = sent.placed.len();
        wait_all_final(world, accepted as u64).await?;
        let stamps = stamps(world, &sent.placed, &anchor).await?;
        let (latency, missing) = latencies(&sent.placed, &stamps.finals)?;
        let (accept, _) = latencies(&sent.placed, &sent.accepted_at)?;
        let (decided, _) = latencies(&sent.placed, &stamps.decided)?;
        let columns = [&sent.accepted_at, &stamps.decided, &stamps.finals];
        if let Some(path) = trace {
            write_trace(path, anchor, &sent.placed, columns)?;
        }
        let legs = Legs::of(&sent.placed, columns);
        saga.stop().await;
        Ok(FixedRateResult {
            rate,
            secs,
            sent: total,
            accepted,
            refused: sent.refused,
            first_error: sent.first_error,
            latency,
            accept,
            decided,
            missing,
            max_send_lag: sent.max_lag,
            legs,
        })
    })
    .await
}

/// One row of the `--fixed-rate-trace` CSV, in milliseconds: when the order was due (since the
/// run began), then due → 201, due → decided by inventory-svc and due → final (each empty if the
/// order never got there).
#[derive(Debug, PartialEq, serde::Serialize)]
struct TraceRow {
    due_ms: f64,
    accept_ms: Option<f64>,
    decided_ms: Option<f64>,
    final_ms: Option<f64>,
}

/// One CSV row per accepted order (see [`TraceRow`]), for plotting where in the run the slow
/// orders were, and which leg made them slow.
fn write_trace(
    path: &Path,
    anchor: Anchor,
    placed: &[(String, Instant)],
    columns: [&HashMap<String, Instant>; 3],
) -> anyhow::Result<()> {
    let [mut accept, mut decided, mut finals] = columns.map(|column| since_due(placed, column));
    // Microseconds are all a trace needs; rounding keeps the file short.
    let micros = |ms: Option<f64>| ms.map(|ms| (ms * 1e3).round() / 1e3);
    let mut csv =
        csv::Writer::from_path(path).with_context(|| format!("cannot write {}", path.display()))?;
    for (_, due) in placed {
        let since_start = due.saturating_duration_since(anchor.instant());
        csv.serialize(TraceRow {
            due_ms: (since_start.as_secs_f64() * 1e6).round() / 1e3,
            accept_ms: micros(accept.next().flatten()),
            decided_ms: micros(decided.next().flatten()),
            final_ms: micros(finals.next().flatten()),
        })?;
    }
    csv.flush()
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_is_a_csv_row_per_order_with_empty_missing_legs() {
        let anchor = Anchor::now();
        let t0 = anchor.instant();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let placed = vec![("a".to_owned(), ms(10)), ("b".to_owned(), ms(20))];
        let accepted = HashMap::from([("a".to_owned(), ms(15)), ("b".to_owned(), ms(21))]);
        let decided = HashMap::from([("a".to_owned(), ms(40))]);
        let finals = HashMap::from([("a".to_owned(), ms(60))]);
        let dir = std::env::temp_dir().join(format!("saga-bench-trace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("trace.csv");
        write_trace(&path, anchor, &placed, [&accepted, &decided, &finals]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            text,
            "due_ms,accept_ms,decided_ms,final_ms\n10.0,5.0,30.0,50.0\n20.0,1.0,,\n"
        );
    }
}
