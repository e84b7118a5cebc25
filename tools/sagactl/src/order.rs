//! `sagactl order ...`: order-svc's HTTP API from the command line.
//!
//! Answers are printed as order-svc sends them (pretty JSON), so what a class sees here is
//! exactly what `curl` would show. Nothing is validated locally: a bad quantity is sent as is,
//! and order-svc's own error is what you read.
//!
//! `ship`, `deliver` and `status` move an order along its life (`PATCH /order/{id}/status`) and
//! say the outcome in one line; a refusal (409) exits non-zero with the order's status and the
//! statuses it may still become.
//!
//! With `--json` the answer is read into the domain's answer types ([`OrderAck`], [`OrderView`],
//! [`OrderPage`], the very types order-svc serves) and printed on one line: a status order-svc
//! does not know is an error here rather than a surprise in a script, and the fields are always
//! the same ones.

use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};
use saga_client::{OrderClient, StatusAnswer};
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
    /// Mark a CONFIRMED order SHIPPED (PATCH /order/{id}/status).
    #[command(
        after_help = "Example:\n  sagactl order ship 0f8fad5b-d9cb-469f-a165-70867728950e --note \"DHL 123\""
    )]
    Ship {
        id: String,
        #[command(flatten)]
        patch: PatchArgs,
    },
    /// Mark a SHIPPED order DELIVERED (PATCH /order/{id}/status).
    #[command(
        after_help = "Example:\n  sagactl order deliver 0f8fad5b-d9cb-469f-a165-70867728950e"
    )]
    Deliver {
        id: String,
        #[command(flatten)]
        patch: PatchArgs,
    },
    /// Ask for any status a person may ask for: SHIPPED, DELIVERED, or CANCELLED (a cancel)
    /// (PATCH /order/{id}/status).
    #[command(
        after_help = "Example:\n  sagactl order status 0f8fad5b-d9cb-469f-a165-70867728950e shipped"
    )]
    Status {
        id: String,
        /// The status asked for.
        #[arg(ignore_case = true, value_parser = order_status_parser())]
        status: OrderStatus,
        #[command(flatten)]
        patch: PatchArgs,
    },
}

/// What every `PATCH .../status` may say besides the status.
#[derive(Args, Debug)]
pub struct PatchArgs {
    /// A note for the order's timeline (at most 500 characters).
    #[arg(long)]
    note: Option<String>,
    /// Who asks (recorded as the status event's `updated_by`; order-svc says `api` if absent).
    #[arg(long)]
    by: Option<String>,
    #[command(flatten)]
    output: Output,
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
        OrderCommand::Ship { id, patch } => {
            move_to(order_url, &id, OrderStatus::Shipped, patch).await
        }
        OrderCommand::Deliver { id, patch } => {
            move_to(order_url, &id, OrderStatus::Delivered, patch).await
        }
        OrderCommand::Status { id, status, patch } => move_to(order_url, &id, status, patch).await,
    }
}

/// `PATCH /order/{id}/status` and one line about it: where the order is now, or (an error, so
/// a non-zero exit) why it could not move.
async fn move_to(
    order_url: &str,
    id: &str,
    target: OrderStatus,
    patch: PatchArgs,
) -> anyhow::Result<()> {
    let client = OrderClient::new(order_url, Duration::from_secs(10));
    let answer = client
        .set_status(
            &encode_path_segment(id),
            target,
            patch.note.as_deref(),
            patch.by.as_deref(),
        )
        .await
        .with_context(|| format!("cannot reach order-svc at {order_url}"))?;
    let view = moved(id, target, answer)?;
    if patch.output.json {
        return print_json(&view);
    }
    outln!("{}", moved_line(&view))?;
    Ok(())
}

/// The order a PATCH moved, or the refusal as one line.
fn moved(id: &str, target: OrderStatus, answer: StatusAnswer) -> anyhow::Result<OrderView> {
    match answer {
        StatusAnswer::Moved(view) => Ok(*view),
        StatusAnswer::Conflict {
            status, allowed, ..
        } => Err(anyhow!(
            "order {id} is {status}, so it cannot become {target}; {}",
            may_become(status, &allowed)
        )),
        StatusAnswer::NotFound {
            expired: true,
            error,
        } => Err(anyhow!(
            "order {id} expired (compacted after its retention): {error}"
        )),
        StatusAnswer::NotFound { .. } => Err(anyhow!("order {id} not found")),
        StatusAnswer::Refused { status, body } => {
            let reason = match (&body["error"], &body) {
                (Value::String(error), _) => error.clone(),
                (_, Value::Null) => "no JSON body (an order-svc without this route?)".to_owned(),
                (_, other) => other.to_string(),
            };
            Err(anyhow!("order-svc answered {status}: {reason}"))
        }
    }
}

/// "from CONFIRMED it may become SHIPPED or CANCELLED", or that nothing moves it any more.
fn may_become(status: OrderStatus, allowed: &[OrderStatus]) -> String {
    let names: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
    match names.as_slice() {
        [] => format!("nothing moves a {status} order any more"),
        [only] => format!("from {status} it may only become {only}"),
        [rest @ .., last] => format!("from {status} it may become {} or {last}", rest.join(", ")),
    }
}

/// "order o-1 is now SHIPPED (note: DHL 123)": the order's status after the PATCH.
fn moved_line(view: &OrderView) -> String {
    let order = &view.order;
    let mut line = format!("order {} is now {}", order.order_id, order.status);
    if order.status == OrderStatus::Cancelling {
        line.push_str(" (inventory gives the stock back, then it is CANCELLED)");
    }
    line
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

    #[test]
    fn a_refusal_names_the_status_and_what_it_may_become() {
        let answer = StatusAnswer::Conflict {
            status: OrderStatus::Confirmed,
            allowed: vec![OrderStatus::Shipped, OrderStatus::Cancelled],
            error: String::new(),
        };
        let err = moved("o-1", OrderStatus::Delivered, answer).unwrap_err();
        assert_eq!(
            err.to_string(),
            "order o-1 is CONFIRMED, so it cannot become DELIVERED; from CONFIRMED it may \
             become SHIPPED or CANCELLED"
        );
        let done = StatusAnswer::Conflict {
            status: OrderStatus::Delivered,
            allowed: vec![],
            error: String::new(),
        };
        let err = moved("o-1", OrderStatus::Shipped, done).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("nothing moves a DELIVERED order any more"),
            "{err}"
        );
        assert_eq!(
            may_become(OrderStatus::Shipped, &[OrderStatus::Delivered]),
            "from SHIPPED it may only become DELIVERED"
        );
    }
}
