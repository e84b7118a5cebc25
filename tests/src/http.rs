//! Reading a service over HTTP: a page as text or JSON, and a figure out of `/metrics`.

use prometheus_parse::{Scrape, Value as Sample};
use serde_json::Value;

use crate::TestEnv;

impl TestEnv {
    /// GET `url`; the body as text, whatever the status.
    ///
    /// # Errors
    /// The service is unreachable or the body is not text.
    pub async fn get_text(&self, url: &str) -> anyhow::Result<String> {
        Ok(self.http().get(url).send().await?.text().await?)
    }

    /// GET `url`; the body as JSON, whatever the status.
    ///
    /// # Errors
    /// The service is unreachable or the body is not JSON.
    pub async fn get_json(&self, url: &str) -> anyhow::Result<Value> {
        Ok(self.http().get(url).send().await?.json().await?)
    }
}

/// The sum of every sample of metric `name` that matches all of `labels`, from a Prometheus text
/// page (0 if there is none). A filter `key="value"` matches that label; a bare `value` matches
/// any label with that value (`"inventory_queue"`). `NAME_count` and `NAME_sum` read a
/// histogram's count and sum.
pub fn metric(page: &str, name: &str, labels: &[&str]) -> f64 {
    let Ok(scrape) = Scrape::parse(page.lines().map(|l| Ok(l.to_owned()))) else {
        return 0.0;
    };
    scrape
        .samples
        .iter()
        .filter(|s| labels.iter().all(|f| has_label(&s.labels, f)))
        .filter(|s| s.metric == name)
        .filter_map(|s| match s.value {
            Sample::Counter(v) | Sample::Gauge(v) | Sample::Untyped(v) => Some(v),
            // A histogram's buckets; its `_count` and `_sum` are samples of their own.
            Sample::Histogram(_) | Sample::Summary(_) => None,
        })
        .sum()
}

fn has_label(labels: &prometheus_parse::Labels, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((key, value)) => labels.get(key) == Some(value.trim_matches('"')),
        None => labels.values().any(|v| v == filter),
    }
}

#[cfg(test)]
mod tests {
    use super::metric;

    /// The shape metrics-exporter-prometheus renders.
    const PAGE: &str = r#"# TYPE saga_consumed_total counter
saga_consumed_total{queue="inventory_queue",outcome="processed"} 3
saga_consumed_total{queue="inventory_queue",outcome="dead_lettered"} 1
saga_consumed_total{queue="order_status_queue",outcome="processed"} 2
# TYPE saga_handler_seconds histogram
saga_handler_seconds_bucket{queue="inventory_queue",le="0.5"} 4
saga_handler_seconds_bucket{queue="inventory_queue",le="+Inf"} 4
saga_handler_seconds_sum{queue="inventory_queue"} 0.02
saga_handler_seconds_count{queue="inventory_queue"} 4
"#;

    #[test]
    fn sums_the_samples_whose_labels_match() {
        assert_eq!(metric(PAGE, "saga_consumed_total", &[]), 6.0);
        assert_eq!(
            metric(PAGE, "saga_consumed_total", &["outcome=\"processed\""]),
            5.0
        );
        assert_eq!(
            metric(
                PAGE,
                "saga_consumed_total",
                &["inventory_queue", "outcome=\"processed\""]
            ),
            3.0
        );
        assert_eq!(metric(PAGE, "saga_handler_seconds_count", &[]), 4.0);
        assert_eq!(metric(PAGE, "saga_missing_total", &[]), 0.0);
    }
}
