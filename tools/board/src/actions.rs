//! What anyone at the board may do: place orders, ship and deliver them, publish a duplicate or
//! a poison message, replay or purge the DLQ. Each action checks its parameters completely before it changes
//! anything, so a bad request (4xx) leaves the saga exactly as it was.
//!
//! Orders go through order-svc's HTTP API, as a client's would. Duplicates and poison are
//! published straight to the exchange, as a lab script (or a buggy producer) would, with the
//! same functions `sagactl publish` uses; the DLQ with those of `sagactl dlq`.

use std::sync::Arc;

use clap::ValueEnum;
use saga_domain::events::{EventType, OrderPlaced};
use saga_domain::ids::{Item, OrderId, Qty, StudentId};
use saga_domain::lines::{Line, Lines, MAX_LINES};
use saga_platform::service::http::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use warp::http::StatusCode;

use crate::Board;
use crate::page::{Moved, Placed, Published, Purged, Replayed};
use saga_domain::order::OrderStatus;
use sagactl::dlq::{self, DlqError};
use sagactl::publish::{self, Outgoing};
use sagactl::samples::{Sample, SampleParams};

/// At most this many orders per click.
pub const MAX_ORDERS_PER_CLICK: u32 = 50;
/// The student id orders placed from the board carry, so they are easy to tell apart.
const BOARD_STUDENT: &str = "board";

/// The body of order-svc's `POST /order` for an order of one line: the lab's, byte for byte.
#[derive(Debug, Serialize)]
struct PlaceOrder<'a> {
    item: &'a str,
    qty: u32,
    student_id: &'a str,
}

/// The body of order-svc's `POST /order` for an order of several lines.
#[derive(Debug, Serialize)]
struct PlaceLines<'a> {
    items: Vec<LineBody<'a>>,
    student_id: &'a str,
}

#[derive(Debug, Serialize)]
struct LineBody<'a> {
    item: &'a str,
    qty: u32,
}

/// `POST /api/orders`: one line (`item`, `qty`) or several (`items`), `count` times.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceRequest {
    #[serde(default)]
    pub item: Option<String>,
    #[serde(default)]
    pub qty: Option<i64>,
    /// The lines of an order of several (1 to [`MAX_LINES`], each item once).
    #[serde(default)]
    pub items: Option<Vec<LineRequest>>,
    #[serde(default = "one")]
    pub count: u32,
}

/// One line of `items`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineRequest {
    pub item: String,
    pub qty: i64,
}

fn one() -> u32 {
    1
}

impl PlaceRequest {
    /// The order's lines, checked as order-svc checks them.
    fn lines(&self) -> Result<Lines, ApiError> {
        let line = |item: &str, qty: i64| -> Result<Line, ApiError> {
            let item = Item::parse(item.trim()).map_err(|e| ApiError::bad_request(e.0))?;
            let qty =
                Qty::parse(qty).map_err(|e| ApiError::bad_request(format!("{item}: {}", e.0)))?;
            Ok(Line::new(item, qty))
        };
        let lines = match (&self.item, self.qty, &self.items) {
            (Some(item), Some(qty), None) => vec![line(item, qty)?],
            (None, None, Some(items)) => {
                if items.is_empty() || items.len() > MAX_LINES {
                    return Err(ApiError::bad_request(format!(
                        "items holds 1 to {MAX_LINES} lines, got {}",
                        items.len()
                    )));
                }
                items
                    .iter()
                    .map(|l| line(&l.item, l.qty))
                    .collect::<Result<_, _>>()?
            }
            _ => {
                return Err(ApiError::bad_request(
                    "send item and qty (one line) or items: [{item, qty}, ...] (several)",
                ));
            }
        };
        Lines::new(lines).map_err(|e| ApiError::bad_request(e.0))
    }
}

/// Place `count` orders of the request's lines through order-svc: an order of one line as the
/// lab's body (`{"item","qty","student_id"}`), one of several as `{"items": [...]}`.
///
/// # Errors
/// 400 for a bad item, quantity, line list or count (nothing placed); order-svc's own refusal,
/// passed on; 502 if order-svc cannot be reached.
pub async fn place(board: &Board, request: PlaceRequest) -> Result<Placed, ApiError> {
    let lines = request.lines()?;
    if !(1..=MAX_ORDERS_PER_CLICK).contains(&request.count) {
        return Err(ApiError::bad_request(format!(
            "count must be between 1 and {MAX_ORDERS_PER_CLICK}, got {}",
            request.count
        )));
    }
    let body = match lines.single_line() {
        Some(line) => serde_json::to_value(PlaceOrder {
            item: line.item.as_str(),
            qty: line.qty.get(),
            student_id: BOARD_STUDENT,
        }),
        None => serde_json::to_value(PlaceLines {
            items: lines
                .iter()
                .map(|l| LineBody {
                    item: l.item.as_str(),
                    qty: l.qty.get(),
                })
                .collect(),
            student_id: BOARD_STUDENT,
        }),
    }
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut placed = Vec::new();
    for _ in 0..request.count {
        let (status, answer) = board
            .order_svc
            .post_answer("/order", &body)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, format!("{e:#}")))?;
        if !status.is_success() {
            let reason = answer
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no reason given");
            board.record(
                false,
                format!("POST /order: order-svc answered {status}: {reason}"),
            );
            // Its verdict is the answer: a 4xx is the request's fault, a 5xx order-svc's.
            let status = if status.is_client_error() {
                status
            } else {
                StatusCode::BAD_GATEWAY
            };
            return Err(ApiError::new(status, format!("order-svc: {reason}"))
                .with_details(serde_json::json!({ "placed": placed })));
        }
        if let Some(id) = answer.get("order_id").and_then(Value::as_str) {
            placed.push(id.to_owned());
        }
    }
    board.record(
        true,
        format!(
            "POST /order {body}{}",
            match placed.len() {
                1 => format!("  -> {}", placed[0]),
                n => format!("  x {n}"),
            },
        ),
    );
    Ok(Placed { order_ids: placed })
}

/// Who the board says moved an order (the status event's `updated_by`).
const BOARD_CALLER: &str = "board";
/// The longest note order-svc takes with a PATCH.
const NOTE_MAX: usize = 500;

/// `POST /api/orders/{id}/status`: the status asked for, and a note for the timeline.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    pub status: String,
    #[serde(default)]
    pub note: Option<String>,
}

/// Ask order-svc to move an order (`PATCH /order/{id}/status`): SHIPPED, DELIVERED or
/// CANCELLED (a cancel), with the board as its caller.
///
/// # Errors
/// 400 for a bad order id, a status no one may ask for, or a note too long (nothing sent);
/// order-svc's own verdict passed on: 409 with the order's `status` and the `allowed` ones,
/// 404; 502 if order-svc cannot be reached or fails.
pub async fn set_status(
    board: &Board,
    order_id: &str,
    request: StatusRequest,
) -> Result<Moved, ApiError> {
    let id = OrderId::parse(order_id)
        .map_err(|e| ApiError::bad_request(format!("invalid order id: {}", e.0)))?;
    let target = OrderStatus::parse(&request.status.trim().to_ascii_uppercase())
        .filter(|s| OrderStatus::REQUESTABLE.contains(s))
        .ok_or_else(|| {
            let names: Vec<&str> = OrderStatus::REQUESTABLE.map(OrderStatus::as_str).to_vec();
            ApiError::bad_request(format!(
                "status must be one of {}, not {:?}",
                names.join(", "),
                request.status
            ))
        })?;
    if request
        .note
        .as_ref()
        .is_some_and(|n| n.chars().count() > NOTE_MAX)
    {
        return Err(ApiError::bad_request(format!(
            "note is longer than {NOTE_MAX} characters"
        )));
    }
    let mut body = serde_json::json!({ "status": target, "updated_by": BOARD_CALLER });
    if let Some(note) = request.note.filter(|n| !n.trim().is_empty()) {
        body["note"] = Value::from(note);
    }
    let path = format!(
        "/order/{}/status",
        sagactl::http::encode_path_segment(id.as_str())
    );
    let (status, answer) = board
        .order_svc
        .patch_answer(&path, &body)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, format!("{e:#}")))?;
    let reason = answer
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("no reason given");
    if !status.is_success() {
        board.record(
            false,
            format!("PATCH /order/{id}/status {target}: order-svc answered {status}: {reason}"),
        );
        let error = ApiError::new(
            if status.is_client_error() {
                status
            } else {
                StatusCode::BAD_GATEWAY
            },
            format!("order-svc: {reason}"),
        );
        // A 409 names where the order is and what it may become: the page shows it.
        return Err(match (answer.get("status"), answer.get("allowed")) {
            (Some(now), Some(allowed)) if status == StatusCode::CONFLICT => {
                error.with_details(serde_json::json!({ "status": now, "allowed": allowed }))
            }
            _ => error,
        });
    }
    let now = answer
        .get("status")
        .and_then(Value::as_str)
        .and_then(OrderStatus::parse)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("order-svc answered {status} without the order's status"),
            )
        })?;
    board.record(true, format!("PATCH /order/{id}/status {target}  -> {now}"));
    Ok(Moved {
        order_id: id.to_string(),
        status: now,
    })
}

/// Publish the order's OrderPlaced again, with the same message id: a duplicate on purpose.
///
/// # Errors
/// 400 for an invalid id, 404 for an order order-svc does not know, 502 if the broker or Redis
/// cannot be reached.
pub async fn duplicate(board: &Board, order_id: &str) -> Result<Published, ApiError> {
    let id = OrderId::parse(order_id)
        .map_err(|e| ApiError::bad_request(format!("invalid order id: {}", e.0)))?;
    let timeline = sagactl::timeline::read(&board.redis, &board.keys, id.as_str())
        .await
        .map_err(unavailable)?;
    let order = timeline
        .order
        .as_ref()
        .ok_or_else(|| ApiError::not_found(format!("order-svc has no order {id}")))?;
    let message_id = timeline
        .history
        .iter()
        .find(|h| h.event == Some(EventType::OrderPlaced))
        .map(|h| h.event_id.clone())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let event = OrderPlaced {
        order_id: id.clone(),
        lines: order
            .lines
            .as_ref()
            .ok_or_else(|| ApiError::bad_request(format!("order {id} holds no readable lines")))?
            .to_lines()
            .map_err(|e| ApiError::bad_request(e.0))?,
        student_id: order
            .student_id
            .as_deref()
            .and_then(|s| StudentId::parse(s).ok()),
    };
    let body = event.to_body();
    let routing_key = EventType::OrderPlaced.routing_key();
    send(
        board,
        routing_key,
        &body,
        publish::properties(routing_key, Some(id.as_str()), &message_id, &body),
    )
    .await?;
    board.record(
        true,
        format!(
            "sagactl publish --body '{}'  (same message_id {message_id})",
            String::from_utf8_lossy(&body)
        ),
    );
    Ok(Published {
        order_id: id.as_str().to_owned(),
        message_id,
        expect: "inventory finds its reservation record and re-sends the recorded outcome with the same event id; no stock moves",
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoisonRequest {
    pub kind: String,
}

/// The samples a person may publish as poison.
pub const POISON_KINDS: [Sample; 4] = [
    Sample::MissingQty,
    Sample::ZeroQty,
    Sample::QtyTwo,
    Sample::NotJson,
];

/// Publish one poison message of the chosen kind, about a fresh order id.
///
/// # Errors
/// 400 for an unknown kind (nothing published), 502 if the broker cannot be reached.
pub async fn poison(board: &Board, request: PoisonRequest) -> Result<Published, ApiError> {
    let sample = POISON_KINDS
        .into_iter()
        .find(|s| {
            s.to_possible_value()
                .is_some_and(|v| v.get_name() == request.kind)
        })
        .ok_or_else(|| {
            let kinds: Vec<String> = POISON_KINDS
                .iter()
                .filter_map(|s| s.to_possible_value().map(|v| v.get_name().to_owned()))
                .collect();
            ApiError::bad_request(format!(
                "unknown poison kind {:?}; the kinds are: {}",
                request.kind,
                kinds.join(", ")
            ))
        })?;
    let message = sample
        .build(&SampleParams {
            order_id: None,
            item: "burger".into(),
            qty: 1,
            student_id: None,
        })
        .map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
    let routing_key = message.event_type.routing_key();
    let message_id = uuid::Uuid::new_v4().to_string();
    send(
        board,
        routing_key,
        &message.body,
        publish::properties(
            routing_key,
            Some(&message.order_id),
            &message_id,
            &message.body,
        ),
    )
    .await?;
    board.record(
        true,
        format!(
            "sagactl publish --sample {} --order-id {}",
            request.kind, message.order_id
        ),
    );
    Ok(Published {
        order_id: message.order_id,
        message_id,
        expect: sample.expectation(),
    })
}

async fn send(
    board: &Board,
    routing_key: &str,
    body: &[u8],
    properties: lapin::BasicProperties,
) -> Result<(), ApiError> {
    let conn = board.broker.get().await.map_err(unavailable)?;
    let outgoing = Outgoing {
        exchange: &board.common.topology.exchange,
        routing_key,
        body,
        properties,
    };
    publish::publish_copies(&conn, &board.common.topology, &outgoing, 1)
        .await
        .map_err(unavailable)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Position in the DLQ, from 1, as the page listed it.
    pub position: Option<usize>,
    /// The message's key as the page saw it: a replay never hits another message.
    pub key: Option<String>,
    /// Replay every message in the DLQ instead.
    #[serde(default)]
    pub all: bool,
}

/// Replay one DLQ message (the one the page showed at that position) or all of them.
///
/// # Errors
/// 400 for a request that names no message, 404 for a position past the end, 409 when the
/// DLQ changed since the page looked, 502 for a broker failure.
pub async fn replay(board: &Arc<Board>, request: ReplayRequest) -> Result<Replayed, ApiError> {
    let dlq = board.common.topology.dlq_queue.clone();
    let result = match (request.all, request.position, request.key.as_deref()) {
        (true, None, None) => {
            let conn = board.broker.get().await.map_err(unavailable)?;
            let report = dlq::replay_every(&conn, &dlq).await.map_err(unavailable)?;
            board.record(
                report.failed == 0,
                format!(
                    "sagactl dlq replay --all  ({} replayed, {} left)",
                    report.replayed, report.failed
                ),
            );
            Ok(Replayed::All {
                replayed: report.replayed,
                left: report.failed,
                lines: report.lines,
            })
        }
        (false, Some(position), Some(key)) => {
            let conn = board.broker.get().await.map_err(unavailable)?;
            match dlq::replay_at(&conn, &dlq, position, Some(key)).await {
                Ok(done) => {
                    board.record(true, format!("sagactl dlq replay {position}  ({done})"));
                    Ok(Replayed::One {
                        replayed: 1,
                        what: done,
                    })
                }
                Err(e @ DlqError::NotNumbered) => Err(ApiError::bad_request(e.to_string())),
                Err(e @ DlqError::NoSuchMessage { .. }) => Err(ApiError::not_found(e.to_string())),
                Err(e @ DlqError::Changed { .. }) => {
                    Err(ApiError::new(StatusCode::CONFLICT, e.to_string()))
                }
                Err(e) => Err(unavailable(e)),
            }
        }
        _ => Err(ApiError::bad_request(
            "say which message ({\"position\": N, \"key\": \"...\"} as listed) or {\"all\": true}",
        )),
    };
    board.dlq_dirty.notify_one();
    result
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    #[serde(default)]
    pub confirm: bool,
}

/// Empty the DLQ, if the request confirms it.
///
/// # Errors
/// 400 without `"confirm": true` (nothing purged), 502 for a broker failure.
pub async fn purge(board: &Board, request: PurgeRequest) -> Result<Purged, ApiError> {
    if !request.confirm {
        return Err(ApiError::bad_request(
            "purging deletes every message in the DLQ for good: send {\"confirm\": true}",
        ));
    }
    let conn = board.broker.get().await.map_err(unavailable)?;
    let purged = dlq::purge_all(&conn, &board.common.topology.dlq_queue)
        .await
        .map_err(unavailable)?;
    board.record(true, format!("sagactl dlq purge  ({purged} deleted)"));
    board.dlq_dirty.notify_one();
    Ok(Purged { purged })
}

/// A dependency failed: the request was fine, the saga's plumbing was not there.
fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, format!("{e:#}"))
}
