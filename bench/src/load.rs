//! The client side of `POST /order`: one order, or N of them from C clients at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Deserialize;
use tokio::task::JoinSet;

/// What a person would post: one unit of [`crate::broker::ITEM`], which inventory-svc has plenty of.
const ORDER_BODY: &str = r#"{"item":"burger","qty":1,"student_id":"bench"}"#;

#[derive(Deserialize)]
struct Placed {
    order_id: String,
}

/// Places orders on one order-svc; cheap to clone (one connection pool).
#[derive(Clone)]
pub struct OrderClient {
    http: reqwest::Client,
    url: Arc<str>,
}

impl OrderClient {
    /// A client for the order-svc at `base` (e.g. `http://127.0.0.1:40123`).
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build an HTTP client")?;
        Ok(Self {
            http,
            url: format!("{base}/order").into(),
        })
    }

    /// POST one order; its id once answered 201.
    ///
    /// # Errors
    /// Any other answer, or no answer.
    pub async fn place(&self) -> anyhow::Result<String> {
        let response = self
            .http
            .post(&*self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(ORDER_BODY)
            .send()
            .await?;
        let status = response.status();
        anyhow::ensure!(
            status == reqwest::StatusCode::CREATED,
            "POST /order answered {status}: {}",
            response.text().await.unwrap_or_default()
        );
        let placed: Placed = response.json().await.context("201 without an order_id")?;
        Ok(placed.order_id)
    }
}

/// What a closed-loop run saw.
#[derive(Debug)]
pub struct ClosedLoop {
    /// Accepted orders with the instant their POST was sent.
    pub placed: Vec<(String, Instant)>,
    /// Orders not answered 201 (counted, not retried: the report says so).
    pub refused: usize,
    pub first_error: Option<String>,
    pub started: Instant,
    /// When the last 201 arrived.
    pub last_accept: Instant,
}

/// POST `n` orders from `concurrency` clients, each sending its next as soon as its last is
/// answered.
///
/// # Errors
/// A client task panicked.
pub async fn closed_loop(
    client: &OrderClient,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<ClosedLoop> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = JoinSet::new();
    for _ in 0..concurrency.min(n).max(1) {
        let (client, next) = (client.clone(), next.clone());
        clients.spawn(async move {
            let mut placed = Vec::new();
            let mut refused = 0;
            let mut first_error = None;
            let mut last_accept = None;
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let sent = Instant::now();
                match client.place().await {
                    Ok(order_id) => {
                        placed.push((order_id, sent));
                        last_accept = Some(Instant::now());
                    }
                    Err(e) => {
                        refused += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            (placed, refused, first_error, last_accept)
        });
    }
    let mut run = ClosedLoop {
        placed: Vec::with_capacity(n),
        refused: 0,
        first_error: None,
        started,
        last_accept: started,
    };
    while let Some(done) = clients.join_next().await {
        let (placed, refused, first_error, last_accept) = done.context("a client task panicked")?;
        run.placed.extend(placed);
        run.refused += refused;
        run.first_error = run.first_error.or(first_error);
        if let Some(last) = last_accept {
            run.last_accept = run.last_accept.max(last);
        }
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_the_item_inventory_is_seeded_with() {
        let body: serde_json::Value = serde_json::from_str(ORDER_BODY).unwrap();
        assert_eq!(body["item"], crate::broker::ITEM);
        assert_eq!(body["qty"], 1);
    }
}
