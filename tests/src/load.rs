//! A steady stream of orders while a test breaks things.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

/// What a load run saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Ids of orders answered 201.
    pub accepted: Vec<String>,
    /// Answers other than 201 (e.g. 503 while Redis was down) and connection errors.
    pub refused: usize,
    /// How many 503s with a JSON `error` body were seen.
    pub unavailable_json: usize,
}

/// POST `n` unit orders of `item` at `concurrency`, retrying each until it is accepted (a
/// client would), every 20 ms, for at most `per_order` each. `base` is order-svc's base URL.
pub async fn place_orders(
    base: String,
    item: &str,
    n: usize,
    concurrency: usize,
    per_order: Duration,
) -> LoadReport {
    place_orders_paced(base, item, n, concurrency, per_order, Duration::ZERO).await
}

/// Like [`place_orders`], each worker pausing `pace` after each accepted order, so that a run
/// lasts long enough for faults to land in the middle of it.
pub async fn place_orders_paced(
    base: String,
    item: &str,
    n: usize,
    concurrency: usize,
    per_order: Duration,
    pace: Duration,
) -> LoadReport {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    let next = Arc::new(AtomicUsize::new(0));
    let workers = (0..concurrency).map(|_| {
        let (client, next, base, item) =
            (client.clone(), next.clone(), base.clone(), item.to_owned());
        tokio::spawn(async move {
            let mut report = LoadReport::default();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let started = Instant::now();
                while started.elapsed() < per_order {
                    let body = json!({ "item": item, "qty": 1, "student_id": "load" });
                    match client
                        .post(format!("{base}/order"))
                        .json(&body)
                        .send()
                        .await
                    {
                        Ok(r) if r.status().as_u16() == 201 => {
                            let v: serde_json::Value = r.json().await.unwrap_or_default();
                            if let Some(id) = v["order_id"].as_str() {
                                report.accepted.push(id.to_owned());
                            }
                            tokio::time::sleep(pace).await;
                            break;
                        }
                        Ok(r) => {
                            report.refused += 1;
                            let status = r.status().as_u16();
                            let v: serde_json::Value = r.json().await.unwrap_or_default();
                            if status == 503 && v["error"].is_string() {
                                report.unavailable_json += 1;
                            }
                        }
                        Err(_) => report.refused += 1,
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            report
        })
    });
    let mut total = LoadReport::default();
    for worker in futures_util::future::join_all(workers)
        .await
        .into_iter()
        .flatten()
    {
        total.accepted.extend(worker.accepted);
        total.refused += worker.refused;
        total.unavailable_json += worker.unavailable_json;
    }
    total
}

/// A tiny seeded generator (xorshift), so a fault schedule can be replayed from its seed.
pub struct Rng(u64);

impl Rng {
    /// Seed from `FAULT_SEED` if set, else from the clock; the seed is printed either way.
    pub fn from_env(test: &str) -> Self {
        let seed = std::env::var("FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        eprintln!("{test}: fault schedule seed {seed} (rerun with FAULT_SEED={seed})");
        Self(seed.max(1))
    }

    /// A generator of its own from `seed` (e.g. drawn from another one).
    pub fn seeded(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// A number in `lo..hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + self.0 % (hi - lo).max(1)
    }
}
