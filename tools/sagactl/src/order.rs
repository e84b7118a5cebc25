//! `sagactl order ...`: order-svc's HTTP API from the command line.
//!
//! Answers are printed as order-svc sends them (pretty JSON), so what a class sees here is
//! exactly what `curl` would show. Nothing is validated locally: a bad quantity is sent as is,
//! and order-svc's own error is what you read.
//!
//! With `--json` the answer is read into the domain's answer types ([`OrderAck`], [`OrderView`],
//! [`OrderPage`], the very types order-svc serves) and printed on one line: a status order-svc
//! does not know is an error here rather than a surprise in a script, and the fields are always
//! the same ones.

use anyhow::Context;
use clap::Subcommand;
use saga_domain::order::OrderStatus;
use saga_domain::view::{OrderAck, OrderPage, OrderView};
use saga_platform::service::config::order_status_parser;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::http::{ServiceApi, encode_path_segment};
use crate::output::{Output, print_json};

#[derive(Subcommand, Debug)]
pub enum OrderCommand {
    /// Place an order (POST /order) and print the answer: its order_id and status PLACED.
    #[command(after_help = "Example:\n  sagactl order place --item burger --qty 2 --student s1")]
    Place {
        /// Menu item, e.g. burger, pizza, sushi, salad.
        #[arg(long)]
        item: String,
        /// Units to order (order-svc accepts 1..=10000).
        #[arg(long, allow_negative_numbers = true)]
        qty: i64,
        /// Who ordered (the lab's student_id).
        #[arg(long)]
        student: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Show one order with its status, reason and history (GET /order/{id}).
    #[command(after_help = "Example:\n  sagactl order get 0f8fad5b-d9cb-469f-a165-70867728950e")]
    Get {
        /// The order_id returned when the order was placed.
        id: String,
        #[command(flatten)]
        output: Output,
    },
    /// List orders, newest first (GET /orders).
    #[command(after_help = "Example:\n  sagactl order list --status confirmed --limit 5")]
    List {
        /// Only orders in this status.
        #[arg(long, ignore_case = true, value_parser = order_status_parser())]
        status: Option<OrderStatus>,
        /// At most this many orders.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        output: Output,
    },
    /// Cancel an order (POST /order/{id}/cancel): inventory gives its stock back.
    #[command(
        after_help = "Example:\n  sagactl order cancel 0f8fad5b-d9cb-469f-a165-70867728950e --reason \"changed my mind\""
    )]
    Cancel {
        id: String,
        /// Why; recorded in the order's history.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        output: Output,
    },
}

/// # Errors
/// order-svc unreachable or answering 4xx/5xx (its `error` text is the message).
pub async fn run(order_url: &str, command: OrderCommand) -> anyhow::Result<()> {
    let order_svc = ServiceApi::new("order-svc", order_url)?;
    match command {
        OrderCommand::Place {
            item,
            qty,
            student,
            output,
        } => {
            let mut body = json!({ "item": item, "qty": qty });
            if let Some(student) = student {
                body["student_id"] = json!(student);
            }
            let answer = order_svc.post("/order", &body).await?;
            show::<OrderAck>(answer, output)
        }
        OrderCommand::Get { id, output } => {
            let answer = order_svc
                .get(&format!("/order/{}", encode_path_segment(&id)))
                .await?;
            show::<OrderView>(answer, output)
        }
        OrderCommand::List {
            status,
            limit,
            output,
        } => {
            // Always with a parameter: a bare GET /orders is the classic lab's bare array.
            let mut path = format!("/orders?limit={limit}");
            if let Some(status) = status {
                path.push_str(&format!("&status={}", status.as_str()));
            }
            let answer = order_svc.get(&path).await?;
            show::<OrderPage>(answer, output)
        }
        OrderCommand::Cancel { id, reason, output } => {
            let body = reason.map_or_else(|| json!({}), |r| json!({ "reason": r }));
            let answer = order_svc
                .post(
                    &format!("/order/{}/cancel", encode_path_segment(&id)),
                    &body,
                )
                .await?;
            show::<OrderAck>(answer, output)
        }
    }
}

/// Print order-svc's answer: as it came (pretty), or read into `T` and printed as one line.
fn show<T: Serialize + DeserializeOwned>(answer: Value, output: Output) -> anyhow::Result<()> {
    if output.json {
        let doc: T = serde_json::from_value(answer)
            .context("order-svc answered with JSON sagactl does not understand")?;
        return print_json(&doc);
    }
    let pretty = serde_json::to_string_pretty(&answer).unwrap_or_else(|_| answer.to_string());
    outln!("{pretty}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_reads_as_order_svc_writes_it() {
        let answer = json!({
            "order_id": "o1", "item": "burger", "qty": 2, "student_id": null,
            "status": "CONFIRMED", "correlation_id": "o1", "created_at": 5, "updated_at": 6,
            "history": [
                {"at": 5, "status": "PLACED", "event": "OrderPlaced", "event_id": "e1",
                 "service": "order-svc", "redelivered": false, "applied": true},
                {"at": 6, "status": "CONFIRMED", "event": "InventoryReserved", "event_id": "e2",
                 "service": "inventory-svc", "redelivered": false, "applied": true}
            ],
            "dlq_hops": [],
            "a_field_from_next_term": 1
        });
        let order: OrderView = serde_json::from_value(answer).unwrap();
        assert_eq!(order.order.status, OrderStatus::Confirmed);
        assert_eq!(order.history.len(), 2);
        // The document a script reads: flat, as order-svc's, with every field always there.
        let doc = serde_json::to_value(&order).unwrap();
        assert_eq!(doc["status"], "CONFIRMED");
        assert_eq!(doc["reason"], Value::Null);
        assert_eq!(doc["history"][1]["event"], "InventoryReserved");
        assert!(doc.get("a_field_from_next_term").is_none());
    }
}
