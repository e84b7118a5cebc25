//! order-svc's HTTP API. Every answer is JSON, errors included (`{"error": ...}` + 4xx/5xx).
//!
//! | route | does |
//! |---|---|
//! | `POST /order` | `{"item","qty","student_id"}` → 201 `{"order_id","status":"PLACED"}` |
//! | `GET /order/{id}` | the order with its status, reason and history |
//! | `GET /orders` | the classic lab's list: a bare array, newest first (at most 1,000) |
//! | `GET /orders?status=&limit=&offset=` | newest first, filtered and paged, with the total |
//! | `POST /order/{id}/cancel` | `{"reason"}` optional → 202, or 409 if it is too late |

use std::collections::HashMap;

use bytes::Bytes;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::json;
use shared::http::{
    ApiError, Readiness, count_request, ops_routes, record_order_id, record_route, recover, traced,
};
use shared::ids::{Item, OrderId, Qty, StudentId};
use shared::wire::{self, Malformed, required};
use tracing::info;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::orders::{Cancelled, NewOrder, OrderStore};

/// Largest request body we read; anything bigger is a 413.
pub const MAX_BODY: u64 = 16 * 1024;
const MAX_PAGE: usize = 1000;

pub fn routes(
    store: OrderStore,
    readiness: Readiness,
    metrics: PrometheusHandle,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone {
    let with_store = warp::any().map(move || store.clone());
    let correlation = warp::header::optional::<String>("x-correlation-id");

    let place = warp::path!("order")
        .and(warp::post())
        .and(warp::header::optional::<String>("content-type"))
        .and(shared::http::body_up_to(MAX_BODY))
        .and(correlation)
        .and(with_store.clone())
        .then(|ct, body, corr, store| answer("POST /order", place_order(ct, body, corr, store)));
    let get = warp::path!("order" / String)
        .and(warp::get())
        .and(with_store.clone())
        .then(|id, store| answer("GET /order/{id}", get_order(id, store)));
    let list = warp::path!("orders")
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_store.clone())
        .then(|q, store| answer("GET /orders", list_orders(q, store)));
    let cancel = warp::path!("order" / String / "cancel")
        .and(warp::post())
        .and(shared::http::body_up_to(MAX_BODY))
        .and(correlation)
        .and(with_store)
        .then(|id, body, corr, store| {
            answer(
                "POST /order/{id}/cancel",
                cancel_order(id, body, corr, store),
            )
        });

    let api = ops_routes("order-svc", readiness, metrics)
        .or(place)
        .unify()
        .or(get)
        .unify()
        .or(list)
        .unify()
        .or(cancel)
        .unify()
        .recover(recover)
        .unify();
    traced(api)
}

/// Serve one request of an API route: name its route in the request's span (see
/// [`shared::http::traced`]), count it, and turn an `ApiError` into its JSON response.
async fn answer(
    route: &'static str,
    work: impl Future<Output = Result<Response, ApiError>>,
) -> Response {
    record_route(route);
    let response = work.await.unwrap_or_else(Reply::into_response);
    count_request(route, response.status());
    response
}

fn store_down(e: redis::RedisError) -> ApiError {
    ApiError::unavailable("order store (Redis) unavailable; try again shortly")
        .with_details(json!({ "cause": e.to_string() }))
}

async fn place_order(
    content_type: Option<String>,
    body: Bytes,
    correlation_id: Option<String>,
    store: OrderStore,
) -> Result<Response, ApiError> {
    if let Some(ct) = content_type.filter(|ct| !ct.to_ascii_lowercase().contains("json")) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("send application/json, not {ct}"),
        ));
    }
    let new = parse_new_order(&body)?;
    if let Err(busy) = store.outbox.admit().await {
        let error = ApiError::unavailable(busy.to_string())
            .with_details(json!({ "outbox_depth": busy.depth }));
        return Ok(
            warp::reply::with_header(error.into_response(), "retry-after", "1").into_response(),
        );
    }
    let correlation_id = correlation_id
        .map(|c| OrderId::parse(&c).map(|c| c.to_string()))
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("X-Correlation-Id: {}", e.0)))?;
    let order = store.place(new, correlation_id).await.map_err(store_down)?;
    record_order_id(&order.order_id);
    info!(order_id = %order.order_id, item = %order.item, qty = order.qty,
          student_id = order.student_id.as_deref().unwrap_or("-"), correlation_id = %order.correlation_id, "order placed");
    let body = json!({ "order_id": order.order_id, "status": order.status });
    let reply = warp::reply::with_status(warp::reply::json(&body), StatusCode::CREATED);
    Ok(
        warp::reply::with_header(reply, "location", format!("/order/{}", order.order_id))
            .into_response(),
    )
}

/// Read `{"item","qty","student_id"}` with a reason a person can act on.
fn parse_new_order(body: &[u8]) -> Result<NewOrder, ApiError> {
    Ok(NewOrder::try_from(wire::read::<NewOrderBody>(body)?)?)
}

/// The body of `POST /order`, read like an event's body (see [`shared::wire`]): an
/// `order.placed` without the id, which is ours to give.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NewOrderBody {
    #[serde(deserialize_with = "wire::text")]
    item: Option<String>,
    #[serde(deserialize_with = "wire::integer")]
    qty: Option<i64>,
    #[serde(deserialize_with = "wire::text")]
    student_id: Option<String>,
}

impl TryFrom<NewOrderBody> for NewOrder {
    type Error = Malformed;

    fn try_from(body: NewOrderBody) -> Result<Self, Malformed> {
        Ok(Self {
            item: Item::parse(&required(body.item, "item")?)?,
            qty: Qty::parse(required(body.qty, "qty")?)?,
            student_id: body
                .student_id
                .as_deref()
                .map(StudentId::parse)
                .transpose()?,
        })
    }
}

/// The body of `POST /order/{id}/cancel`, if there is one.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CancelBody {
    #[serde(deserialize_with = "wire::text")]
    reason: Option<String>,
}

fn parse_order_id(raw: &str) -> Result<OrderId, ApiError> {
    OrderId::parse(raw).map_err(|e| ApiError::bad_request(format!("invalid order id: {}", e.0)))
}

async fn get_order(id: String, store: OrderStore) -> Result<Response, ApiError> {
    let order_id = parse_order_id(&id)?;
    record_order_id(&order_id);
    let Some(view) = store.get(&order_id).await.map_err(store_down)? else {
        return Err(ApiError::not_found(format!("no order {order_id}"))
            .with_details(json!({ "order_id": order_id })));
    };
    Ok(warp::reply::json(&view).into_response())
}

async fn list_orders(
    query: HashMap<String, String>,
    store: OrderStore,
) -> Result<Response, ApiError> {
    let number = |key: &str, default: usize| -> Result<usize, ApiError> {
        query.get(key).map_or(Ok(default), |v| {
            v.parse().map_err(|_| {
                ApiError::bad_request(format!("{key} must be a non-negative integer, got {v:?}"))
            })
        })
    };
    let limit = number("limit", 100)?.min(MAX_PAGE);
    let offset = number("offset", 0)?;
    let status = match query.get("status").map(|s| s.to_ascii_uppercase()) {
        Some(s)
            if ["PLACED", "CONFIRMED", "FAILED", "CANCELLING", "CANCELLED"]
                .contains(&s.as_str()) =>
        {
            Some(s)
        }
        Some(s) => return Err(ApiError::bad_request(format!("unknown status {s:?}"))),
        None => None,
    };
    if query.is_empty() {
        // The classic lab's shape: a plain GET /orders is a bare array of orders (its drills
        // read it so), newest first, the newest MAX_PAGE of them.
        let (orders, _) = store.list(None, 0, MAX_PAGE).await.map_err(store_down)?;
        return Ok(warp::reply::json(&orders).into_response());
    }
    let (orders, total) = store
        .list(status.as_deref(), offset, limit)
        .await
        .map_err(store_down)?;
    let body = json!({ "orders": orders, "count": orders.len(), "total": total, "offset": offset, "limit": limit });
    Ok(warp::reply::json(&body).into_response())
}

async fn cancel_order(
    id: String,
    body: Bytes,
    correlation_id: Option<String>,
    store: OrderStore,
) -> Result<Response, ApiError> {
    let order_id = parse_order_id(&id)?;
    record_order_id(&order_id);
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        "cancelled by request".to_owned()
    } else {
        wire::read::<CancelBody>(&body)?
            .reason
            .as_deref()
            .unwrap_or("cancelled by request")
            .chars()
            .take(500)
            .collect()
    };
    match store
        .cancel(&order_id, &reason, correlation_id)
        .await
        .map_err(store_down)?
    {
        Cancelled::Started => {
            info!(order_id = %order_id, %reason, "order cancelling: stock will be released");
            let body = json!({ "order_id": order_id, "status": "CANCELLING" });
            Ok(
                warp::reply::with_status(warp::reply::json(&body), StatusCode::ACCEPTED)
                    .into_response(),
            )
        }
        Cancelled::NotCancellable(status) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("order {order_id} is {status} and cannot be cancelled"),
        )
        .with_details(json!({ "order_id": order_id, "status": status }))),
        Cancelled::UnknownOrder => Err(ApiError::not_found(format!("no order {order_id}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_order_errors_are_readable() {
        let err = |b: &str| parse_new_order(b.as_bytes()).unwrap_err().message;
        assert_eq!(err(r#"{"item":"burger"}"#), "missing required field qty");
        assert_eq!(
            err(r#"{"item":"burger","qty":"two"}"#),
            "qty must be an integer, got string \"two\""
        );
        assert!(err(r#"{"item":"burger","qty":0}"#).contains("at least 1"));
        assert!(err("{nope").starts_with("body is not valid JSON"));
        assert!(parse_new_order(br#"{"item":"burger","qty":2,"student_id":"s1"}"#).is_ok());
    }

    #[test]
    fn a_new_order_is_read_like_an_event() {
        let err = |b: &str| parse_new_order(b.as_bytes()).unwrap_err();
        let e = err(r#"{"item":"burger","qty":1,"student_id":7}"#);
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.message, "student_id must be a string, got number 7");
        assert_eq!(
            err(r#"{"item":"fish & chips","qty":1}"#).message,
            "item contains '&'"
        );
        assert_eq!(
            err("[1,2,3]").message,
            "body is JSON but not an object (got an array)"
        );
        // The id is ours to give: one in the body is ignored, like any field we do not know.
        let new = parse_new_order(br#"{"order_id":"mine","item":"burger","qty":2,"x":[]}"#);
        assert_eq!(new.unwrap().qty.get(), 2);
    }
}
