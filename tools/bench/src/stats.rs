//! Latency: every order goes into an HDR histogram (microseconds, 3 significant digits), so
//! the percentiles are over all orders, not a sample, and cost a few kilobytes whatever N is.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Percentiles of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latency {
    pub count: u64,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// Collects latencies.
pub struct Recorder {
    histogram: Histogram<u64>,
}

impl Recorder {
    /// A histogram from 1 µs to 1 h.
    ///
    /// # Errors
    /// Never with these bounds; hdrhistogram checks them at run time, so the type says so.
    pub fn new() -> anyhow::Result<Self> {
        let histogram = Histogram::new_with_bounds(1, 3_600_000_000, 3)?;
        Ok(Self { histogram })
    }

    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.histogram.saturating_record(micros);
    }

    pub fn summary(&self) -> Latency {
        let at = |q: f64| Duration::from_micros(self.histogram.value_at_quantile(q));
        Latency {
            count: self.histogram.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: Duration::from_micros(self.histogram.max()),
        }
    }
}

/// Latency of each order from its start (POST sent, or scheduled) to its arrival (outcome
/// seen). Orders with no arrival are counted separately, never guessed.
///
/// # Errors
/// The histogram could not be made (see [`Recorder::new`]).
pub fn latencies(
    starts: &[(String, Instant)],
    arrivals: &HashMap<String, Instant>,
) -> anyhow::Result<(Latency, usize)> {
    let mut recorder = Recorder::new()?;
    let mut missing = 0;
    for (order_id, start) in starts {
        match arrivals.get(order_id) {
            Some(arrival) => recorder.record(arrival.saturating_duration_since(*start)),
            None => missing += 1,
        }
    }
    Ok((recorder.summary(), missing))
}

/// `count` per `elapsed`, 0 for an empty interval.
pub fn per_sec(count: usize, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_cover_every_recorded_value() {
        let mut r = Recorder::new().unwrap();
        for ms in 1..=100 {
            r.record(Duration::from_millis(ms));
        }
        let s = r.summary();
        assert_eq!(s.count, 100);
        let close = |d: Duration, ms: u64| d.as_micros().abs_diff(ms as u128 * 1000) < 1000;
        assert!(close(s.p50, 50), "{s:?}");
        assert!(close(s.p90, 90), "{s:?}");
        assert!(close(s.p99, 99), "{s:?}");
        assert!(close(s.max, 100), "{s:?}");
    }

    #[test]
    fn orders_without_an_arrival_are_counted_not_guessed() {
        let t0 = Instant::now();
        let starts = vec![("a".to_owned(), t0), ("b".to_owned(), t0)];
        let arrivals = HashMap::from([("a".to_owned(), t0 + Duration::from_millis(5))]);
        let (latency, missing) = latencies(&starts, &arrivals).unwrap();
        assert_eq!((latency.count, missing), (1, 1));
    }
}
