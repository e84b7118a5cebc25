//! The client side of a run: the client crate's load generator ([`saga_client::load`]), and what the
//! benchmark reads off its answers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use saga_client::OrderClient;
use saga_client::load::Run;
use saga_client::order_body;
use serde_json::{Value, json};

use crate::saga::Saga;

/// What every benchmark order asks for: one unit of [`crate::broker::ITEM`], which inventory-svc
/// has plenty of.
pub fn body() -> Value {
    order_body(crate::broker::ITEM, 1, "bench")
}

/// The lines of every order in the `--lines-mix` run: one unit each of three items, so each
/// order is an OrderPlaced of version 2 (`lines`) and inventory-svc decides three lines in one
/// Lua step.
pub const LINES_MIX: [(&str, i64); 3] = [("burger", 1), ("pizza", 1), ("salad", 1)];

/// Units of each item inventory-svc starts with: far more than any run orders, so every order
/// is reserved (no failure path) whichever run it is in.
const STOCK_PER_ITEM: u64 = 100_000_000;

/// What a run's orders ask for: the body every order posts, and how many lines that is.
#[derive(Debug, Clone)]
pub struct Mix {
    pub body: Value,
    pub lines: usize,
}

impl Mix {
    /// The lab's order: one line, [`body`].
    pub fn lab() -> Self {
        Self {
            body: body(),
            lines: 1,
        }
    }

    /// Orders of several lines, each [`LINES_MIX`].
    pub fn lines() -> Self {
        let items: Vec<Value> = LINES_MIX
            .iter()
            .map(|(item, qty)| json!({"item": item, "qty": qty}))
            .collect();
        Self {
            body: json!({"items": items, "student_id": "bench"}),
            lines: LINES_MIX.len(),
        }
    }

    /// The mix as the report states it: `3 lines: burger 1, pizza 1, salad 1`.
    pub fn describe() -> String {
        let lines: Vec<String> = LINES_MIX
            .iter()
            .map(|(item, qty)| format!("{item} {qty}"))
            .collect();
        format!("{} lines: {}", LINES_MIX.len(), lines.join(", "))
    }
}

/// `INITIAL_STOCK` for inventory-svc: [`STOCK_PER_ITEM`] of every item any run orders.
pub fn initial_stock() -> String {
    let mut items = vec![crate::broker::ITEM];
    for (item, _) in LINES_MIX {
        if !items.contains(&item) {
            items.push(item);
        }
    }
    let stock: Vec<String> = items
        .iter()
        .map(|item| format!("{item}={STOCK_PER_ITEM}"))
        .collect();
    stock.join(",")
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

    #[test]
    fn the_lines_mix_is_three_lines_every_one_in_stock() {
        let mix = Mix::lines();
        assert_eq!(mix.lines, 3);
        assert_eq!(mix.body["items"].as_array().map(Vec::len), Some(3));
        assert_eq!(mix.body["items"][1], json!({"item": "pizza", "qty": 1}));
        assert_eq!(Mix::describe(), "3 lines: burger 1, pizza 1, salad 1");
        assert_eq!(
            initial_stock(),
            "burger=100000000,pizza=100000000,salad=100000000"
        );
        assert_eq!(Mix::lab().lines, 1);
    }
}
