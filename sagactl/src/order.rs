//! `sagactl order ...`: order-svc's HTTP API from the command line.
//!
//! Answers are printed as order-svc sends them (pretty JSON), so what a class sees here is
//! exactly what `curl` would show. Nothing is validated locally: a bad quantity is sent as is,
//! and order-svc's own error is what you read.

use clap::Subcommand;
use serde_json::json;
use shared::domain::OrderStatus;

use crate::http::{Service, encode_path_segment};

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
    },
    /// Show one order with its status, reason and history (GET /order/{id}).
    #[command(after_help = "Example:\n  sagactl order get 0f8fad5b-d9cb-469f-a165-70867728950e")]
    Get {
        /// The order_id returned when the order was placed.
        id: String,
    },
    /// List orders, newest first (GET /orders).
    #[command(after_help = "Example:\n  sagactl order list --status confirmed --limit 5")]
    List {
        /// Only orders in this status.
        #[arg(long, value_enum, ignore_case = true)]
        status: Option<OrderStatus>,
        /// At most this many orders.
        #[arg(long, default_value_t = 20)]
        limit: usize,
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
    },
}

/// # Errors
/// order-svc unreachable or answering 4xx/5xx (its `error` text is the message).
pub async fn run(order_url: &str, command: OrderCommand) -> anyhow::Result<()> {
    let order_svc = Service::new("order-svc", order_url)?;
    let answer = match command {
        OrderCommand::Place { item, qty, student } => {
            let mut body = json!({ "item": item, "qty": qty });
            if let Some(student) = student {
                body["student_id"] = json!(student);
            }
            order_svc.post("/order", &body).await?
        }
        OrderCommand::Get { id } => {
            order_svc
                .get(&format!("/order/{}", encode_path_segment(&id)))
                .await?
        }
        OrderCommand::List { status, limit } => {
            let mut path = format!("/orders?limit={limit}");
            if let Some(status) = status {
                path.push_str(&format!("&status={}", status.as_str()));
            }
            order_svc.get(&path).await?
        }
        OrderCommand::Cancel { id, reason } => {
            let body = reason.map_or_else(|| json!({}), |r| json!({ "reason": r }));
            order_svc
                .post(
                    &format!("/order/{}/cancel", encode_path_segment(&id)),
                    &body,
                )
                .await?
        }
    };
    let pretty = serde_json::to_string_pretty(&answer).unwrap_or_else(|_| answer.to_string());
    outln!("{pretty}")?;
    Ok(())
}
