//! `sagactl load`: place many orders at once and measure, over real HTTP.
//!
//! N `POST /order` requests run with at most C in flight. Every request's latency goes into an
//! HDR histogram, so the percentiles are exact enough to compare runs (a mean would hide the
//! slow tail). `--wait-final` then follows the orders to their final status and reports the
//! end-to-end rate: how fast the whole saga, not just the front door, gets through them.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use saga_client::OrderClient;
use saga_client::load::Plan;
use saga_client::{Answer, Timed, order_body};
use saga_domain::order::OrderStatus;
use serde_json::Value;

use crate::http::ServiceApi;

const POLL_EVERY: Duration = Duration::from_millis(200);

#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  sagactl load --orders 1000 --concurrency 50\n  sagactl load --orders 200 --concurrency 20 --item pizza --wait-final"
)]
pub struct LoadArgs {
    /// How many orders to place.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    orders: u64,
    /// At most this many requests in flight at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    concurrency: u64,
    /// Item every order asks for.
    #[arg(long, default_value = "burger")]
    item: String,
    /// Units per order (sent as is: 0 or less shows what rejections look like).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    qty: i64,
    /// student_id on every order, so load-test orders are easy to tell apart.
    #[arg(long, default_value = "sagactl-load")]
    student: String,
    /// Afterwards, wait until the accepted orders are final and report the end-to-end rate.
    /// (It counts orders becoming final meanwhile, so run it on an otherwise quiet system.)
    #[arg(long)]
    wait_final: bool,
    /// Seconds --wait-final waits before giving up.
    #[arg(long, default_value_t = 120)]
    wait_timeout: u64,
}

/// # Errors
/// order-svc unreachable, or some orders were not accepted, or (with --wait-final) they were
/// not all final in time.
pub async fn run(order_url: &str, args: LoadArgs) -> anyhow::Result<()> {
    let order_svc = ServiceApi::new("order-svc", order_url)?;
    let client = OrderClient::new(order_url, Duration::from_secs(30));
    let body = order_body(&args.item, args.qty, &args.student);
    let final_before = if args.wait_final {
        Some(final_orders(&order_svc).await?)
    } else {
        None
    };

    let bar = progress_bar(args.orders);
    let started = Instant::now();
    let plan = Plan::closed(args.orders as usize, args.concurrency as usize, body);
    let shown = bar.clone();
    let run = saga_client::load::run(&client, &plan, move |_| shown.inc(1)).await;
    let elapsed = started.elapsed();
    bar.finish_and_clear();

    let accepted = summarize(&args, &run.answers, elapsed)?;
    if let Some(before) = final_before {
        wait_final(&order_svc, before, accepted, started, args.wait_timeout).await?;
    }
    let refused = args.orders - accepted;
    if refused > 0 {
        bail!("{refused} of {} orders were not accepted", args.orders);
    }
    Ok(())
}

/// Print the run's summary; returns how many orders were accepted.
fn summarize(args: &LoadArgs, answers: &[Timed], elapsed: Duration) -> anyhow::Result<u64> {
    // Microseconds from 1 µs to 10 min, 3 significant digits.
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)
        .context("cannot create the latency histogram")?;
    let (mut accepted, mut failed) = (0u64, 0u64);
    let mut rejected: BTreeMap<u16, u64> = BTreeMap::new();
    let mut first_failure = None;
    for timed in answers {
        match &timed.answer {
            Answer::Accepted(_) => accepted += 1,
            Answer::Refused { status, .. } => *rejected.entry(*status).or_default() += 1,
            Answer::Failed(why) => {
                failed += 1;
                first_failure.get_or_insert(why);
                continue;
            }
        }
        let micros = timed.latency().as_micros();
        latencies.saturating_record(micros.try_into().unwrap_or(u64::MAX));
    }

    let secs = elapsed.as_secs_f64();
    outln!(
        "placed {} orders at concurrency {} in {secs:.2} s: {:.1} orders/s",
        args.orders,
        args.concurrency,
        args.orders as f64 / secs.max(f64::EPSILON)
    )?;
    outln!("  accepted  {accepted} (201)")?;
    let rejected_total: u64 = rejected.values().sum();
    let by_status: Vec<String> = rejected.iter().map(|(s, n)| format!("{n} x {s}")).collect();
    if by_status.is_empty() {
        outln!("  rejected  0")?;
    } else {
        outln!("  rejected  {rejected_total} ({})", by_status.join(", "))?;
    }
    match first_failure {
        Some(why) => outln!("  errors    {failed} (first: {why})")?,
        None => outln!("  errors    0")?,
    }
    if latencies.is_empty() {
        outln!("  POST latency: no answers")?;
    } else {
        let ms = |micros: u64| micros as f64 / 1000.0;
        outln!(
            "  POST latency  p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            ms(latencies.value_at_quantile(0.50)),
            ms(latencies.value_at_quantile(0.90)),
            ms(latencies.value_at_quantile(0.99)),
            ms(latencies.max())
        )?;
    }
    Ok(accepted)
}

/// How many orders order-svc has in each decided status (from `GET /orders?status=`'s total).
async fn final_orders(order_svc: &ServiceApi) -> anyhow::Result<BTreeMap<&'static str, u64>> {
    let mut counts = BTreeMap::new();
    for status in OrderStatus::DECIDED.map(OrderStatus::as_str) {
        // limit=1: only the total matters, not the page.
        let page = order_svc
            .get(&format!("/orders?status={status}&limit=1"))
            .await?;
        let total = page.get("total").and_then(Value::as_u64).unwrap_or(0);
        counts.insert(status, total);
    }
    Ok(counts)
}

/// Poll until `accepted` more orders are final than `before`, then report the end-to-end rate.
async fn wait_final(
    order_svc: &ServiceApi,
    before: BTreeMap<&'static str, u64>,
    accepted: u64,
    started: Instant,
    timeout_secs: u64,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    loop {
        let now = final_orders(order_svc).await?;
        let gained: BTreeMap<&str, u64> = now
            .iter()
            .map(|(status, n)| {
                (
                    *status,
                    n.saturating_sub(before.get(status).copied().unwrap_or(0)),
                )
            })
            .collect();
        let finished: u64 = gained.values().sum();
        if finished >= accepted {
            let secs = started.elapsed().as_secs_f64();
            let breakdown: Vec<String> = gained
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(status, n)| format!("{status} {n}"))
                .collect();
            outln!(
                "  final     all {accepted} after {secs:.2} s: {:.1} orders/s end to end ({})",
                accepted as f64 / secs.max(f64::EPSILON),
                breakdown.join(", ")
            )?;
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "only {finished} of {accepted} accepted orders were final after {timeout_secs} s"
            );
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

fn progress_bar(orders: u64) -> ProgressBar {
    if !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(orders);
    if let Ok(style) = ProgressStyle::with_template(
        "placing [{bar:40.cyan/blue}] {pos}/{len} ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
