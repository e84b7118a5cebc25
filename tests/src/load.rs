//! A steady stream of orders while a test breaks things: the kit's load generator, each order
//! retried until accepted, as a client told "503, come back" would.

use std::time::Duration;

use testkit::OrderClient;
use testkit::load::{Pace, Plan};
use testkit::orders::order_body;

pub use testkit::load::Rng;

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
    let plan = Plan {
        orders: n,
        pace: Pace::Closed {
            clients: concurrency,
            think: pace,
        },
        body: order_body(item, 1, "load"),
        retry_for: per_order,
    };
    let client = OrderClient::new(&base, Duration::from_secs(5));
    let run = testkit::load::run(&client, &plan, |_| {}).await;
    LoadReport {
        accepted: run.accepted(),
        refused: run.refused(),
        unavailable_json: run
            .answers
            .iter()
            .filter(|t| t.answer.is_unavailable_json())
            .count(),
    }
}
