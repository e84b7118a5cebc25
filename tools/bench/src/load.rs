//! The client side of a run: the client crate's load generator ([`saga_client::load`]), and what the
//! benchmark reads off its answers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use saga_client::OrderClient;
use saga_client::load::Run;
use saga_client::order_body;
use serde_json::Value;

use crate::saga::Saga;

/// What every benchmark order asks for: one unit of [`crate::broker::ITEM`], which inventory-svc
/// has plenty of.
pub fn body() -> Value {
    order_body(crate::broker::ITEM, 1, "bench")
}

/// A client for the saga's order-svc; a request may take long under load, not for ever.
pub fn client(saga: &Saga) -> OrderClient {
    OrderClient::new(&saga.order_url(), Duration::from_secs(30))
}

/// The accepted orders of a run, with their times.
#[derive(Debug, Default)]
pub struct Placed {
    /// Accepted orders with the instant each was due (closed loop: sent).
    pub placed: Vec<(String, Instant)>,
    /// When each accepted order's `201` came back.
    pub accepted_at: HashMap<String, Instant>,
    /// The last `201`.
    pub last_answer: Option<Instant>,
    /// Orders not answered 201 (counted, not retried: the report says so).
    pub refused: usize,
    pub first_error: Option<String>,
    /// The longest an order went out after it was due (the sender falling behind its schedule).
    pub max_lag: Duration,
}

impl From<Run> for Placed {
    fn from(run: Run) -> Self {
        let mut placed = Self {
            refused: run.refused(),
            first_error: run.first_error(),
            ..Self::default()
        };
        for timed in run.answers {
            placed.max_lag = placed
                .max_lag
                .max(timed.sent.saturating_duration_since(timed.due));
            if let Some(order_id) = timed.answer.order_id() {
                placed
                    .accepted_at
                    .insert(order_id.to_owned(), timed.answered);
                placed.placed.push((order_id.to_owned(), timed.due));
                placed.last_answer = placed.last_answer.max(Some(timed.answered));
            }
        }
        placed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_the_item_inventory_is_seeded_with() {
        let body = body();
        assert_eq!(body["item"], crate::broker::ITEM);
        assert_eq!(body["qty"], 1);
    }
}
