//! Reading a service over HTTP: a page as text or JSON, and a figure out of `/metrics`.

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

/// The sum of every sample of metric `name` whose line contains all of `labels`, from a
/// Prometheus text page (0 if there is none).
pub fn metric(page: &str, name: &str, labels: &[&str]) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
