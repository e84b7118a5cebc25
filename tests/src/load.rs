//! A steady stream of orders while a test breaks things: the client crate's load generator, each
//! order retried until accepted, as a client told "503, come back" would; and the seeded
//! random numbers a fault schedule is drawn from.

use std::time::Duration;

use saga_client::OrderClient;
use saga_client::load::{Pace, Plan};
use saga_client::order_body;

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
    let run = saga_client::load::run(&client, &plan, |_| {}).await;
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

/// The random numbers of one fault schedule, seeded from `FAULT_SEED` if set, else from the
/// clock; the seed is printed either way, so a failing schedule can be replayed.
pub fn fault_rng(test: &str) -> fastrand::Rng {
    let seed = std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::Rng::new().u64(1..));
    eprintln!("{test}: fault schedule seed {seed} (rerun with FAULT_SEED={seed})");
    fastrand::Rng::with_seed(seed)
}

#[cfg(test)]
mod tests {
    /// What `FAULT_SEED` relies on: one seed, one schedule.
    #[test]
    fn a_seed_replays_the_same_schedule() {
        let draw = |seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            (0..5).map(|_| rng.u64(10..20)).collect::<Vec<_>>()
        };
        assert_eq!(draw(42), draw(42));
        assert!(draw(42).iter().all(|n| (10..20).contains(n)));
    }
}
