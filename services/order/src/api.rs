//! order-svc's HTTP API. Every answer is JSON, errors included (`{"error": ...}` + 4xx/5xx).
//!
//! | route | does |
//! |---|---|
//! | `POST /order` | `{"item","qty","student_id"}`, `{"items":[{"item","qty"}],"student_id"}` or the course starter's `{"user_id","items":[{"sku","qty"}]}` → 201 `{"order_id","status"}` ([`OrderAck`]) |
//! | `GET /order/{id}` | the order with its status, reason and history |
//! | `GET /orders` | the classic lab's list: a bare array, newest first (at most 1,000) |
//! | `GET /orders?status=&limit=&offset=` | newest first, filtered and paged, with the total |
//! | `POST /order/{id}/cancel` | `{"reason"}` optional → 202, or 409 if it is too late |
//! | `PATCH /order/{id}/status` | `{"status","note"?,"updated_by"?}` → 200 with the order, 409 naming the statuses allowed |
//! | `GET /products` | the catalog replica ([`crate::replica`]): each product with its price, stock, markers and age |
//! | `GET /openapi.json` | all of this as an OpenAPI 3 document ([`crate::openapi`]), with `/health`, `/ready`, `/metrics` |
//!
//! **The per-user API** (the seed's paths) maps onto the same handlers, with the caller
//! ([`crate::auth`]) as one more argument:
//!
//! | route | does |
//! |---|---|
//! | `POST /api/v1/orders` | as `POST /order`; with a token, the order is the caller's |
//! | `GET /api/v1/orders?limit=&offset=` | a page ([`OrderPage`]); with a token, the caller's orders only (`?status=` only without) |
//! | `GET /api/v1/orders/{id}` | as `GET /order/{id}`; someone else's order is 404, the same answer as an unknown one |
//! | `PATCH /api/v1/orders/{id}/status` | as the lab's PATCH; with a token, SHIPPED and DELIVERED need staff (403), and `updated_by` is the caller |
//! | `POST /api/v1/orders/{id}/cancel` | as `POST /order/{id}/cancel`, for the order's owner |
//!
//! With `AUTH_JWT_SECRET` unset they need no token and their orders have no owner. With it set,
//! they need one (401 otherwise), and staff (`roles: ["staff"]`) see and move every order.
//!
//! `GET /order/{id}` of an order compacted after its retention answers 404 with `"expired":
//! true`, the status it finished in and when; of an id never seen (or long gone), 404 with
//! `"expired": false`.
//!
//! **Limits.** Everything a request brings is parsed at this edge into a domain type, and
//! anything over its limit is refused with 400 JSON naming the field and the limit (413 for a
//! body, naming its limit), before any of it is stored:
//!
//! | what | limit |
//! |---|---|
//! | request body | [`MAX_BODY`] bytes (413 beyond) |
//! | `{id}` in a path, `order_id` | 1 to 64 bytes of ASCII letters, digits, `-`, `_`, `.` (never `:`: [`saga_domain::ids`]) |
//! | `item`, `student_id` | 1 to 64 bytes ([`saga_domain::ids`]) |
//! | `qty` | an integer from 1 to 10,000 |
//! | `items` | 1 to [`saga_domain::lines::MAX_LINES`] lines, each item once |
//! | cancel's `reason`, a PATCH's `note` | at most [`MAX_REASON_CHARS`] characters |
//! | a PATCH's `updated_by` | 1 to [`MAX_UPDATED_BY`] characters |
//! | `X-Correlation-Id` | 1 to 64 bytes of ASCII letters, digits, `-`, `_`, `.`, `:` ([`crate::headers`]) |
//! | `Idempotency-Key` | 1 to 255 bytes of ASCII letters, digits, `-`, `_`, `.`, `+`, `/`, `=` |
//! | `GET /orders?limit=` | at most 1,000 (more is read as 1,000) |
//! | `GET /orders?offset=` | at most [`MAX_OFFSET`] |
//!
//! **Idempotency-Key** (on `POST /order` and cancel, optional): a retried request with the same
//! key, within the idempotency window (`IDEMPOTENCY_WINDOW`, 24 h by default), gets the answer
//! the first attempt got (the same order id and status code, with `Idempotent-Replayed: true`)
//! and changes nothing, whether that first attempt succeeded, failed after writing, or is still
//! running. The same key with a different request (another body, another order, another route)
//! is 422, as Stripe does: a key names one request. When the order is written but the Redis
//! replicas do not acknowledge it in time (`WAIT`, with replicas required), the answer is 503
//! with the `order_id` it wrote: the order may exist, and a retry must carry the same key.

use std::collections::HashMap;
use std::time::SystemTime;

use bytes::Bytes;
use metrics_exporter_prometheus::PrometheusHandle;
use saga_domain::ids::{IdempotencyKey, Item, OrderId, Qty, StudentId};
use saga_domain::lines::{Line, Lines};
use saga_domain::order::OrderStatus;
use saga_domain::owner::{Caller, STAFF, UserId};
use saga_domain::trace::Trace;
use saga_domain::view::{Order, OrderAck, OrderPage};
use saga_domain::wire::{self, Malformed, required};
use saga_platform::service::http::{
    ApiError, Readiness, count_request, ops_routes, record_order_id, record_route, recover, traced,
};
use saga_platform::service::spans::{self, Spans};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{info, warn};
use utoipa::ToSchema;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::auth::{self, Auth};
use crate::headers::{self, RequestTrace};
use crate::orders::{
    Cancelled, Idempotent, NewOrder, OrderStore, Placed, Seen, StatusSet, WriteError,
};
use crate::replica::{Replica, ReplicaListing};

/// Largest request body we read; anything bigger is a 413 that names this limit.
pub const MAX_BODY: u64 = 16 * 1024;
/// Longest cancel `reason`, in characters: it travels in OrderCancelled and the order's history.
pub const MAX_REASON_CHARS: usize = 500;
/// Longest `updated_by` a PATCH may name: a person or a system, not a paragraph.
pub const MAX_UPDATED_BY: usize = 64;
const MAX_PAGE: usize = 1000;
/// The furthest page `GET /orders?offset=` reaches: far beyond any store's orders, and far
/// from the integer overflow an unbounded offset would reach when the page's end is computed.
pub const MAX_OFFSET: usize = 1_000_000_000;
/// The header that tells a client its answer is the one an earlier request with the same
/// Idempotency-Key got (Stripe's name for it).
const REPLAYED: &str = "idempotent-replayed";

pub fn routes(
    store: OrderStore,
    replica: Replica,
    auth: Auth,
    readiness: Readiness,
    metrics: PrometheusHandle,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone {
    let with_store = warp::any().map(move || store.clone());
    let with_replica = warp::any().map(move || replica.clone());
    // The whole map, read by crate::headers: a header warp would refuse to read (not ASCII)
    // is answered 400 naming it, like any other bad value.
    let headers = warp::header::headers_cloned();
    let body = || saga_platform::service::http::body_up_to(MAX_BODY);
    // The lab's routes: no caller, ever (docs/SECURITY.md).
    let nobody = || warp::any().map(|| None::<Caller>);
    // Every handler's future is boxed where it is made: warp's combinators move a route's
    // future as they poll it, and unboxed (kilobytes for `POST /order`: its Redis calls and
    // its span) each move copied all of it. memcpy was a quarter of order-svc's instructions.

    let place = warp::path!("order")
        .and(warp::post())
        .and(nobody())
        .and(body())
        .and(headers)
        .and(with_store.clone())
        .and(with_replica.clone())
        .then(|caller, body, headers, store, replica| {
            Box::pin(place_traced(
                "POST /order",
                caller,
                body,
                headers,
                store,
                replica,
            ))
        });
    let get = warp::path!("order" / String)
        .and(warp::get())
        .and(nobody())
        .and(with_store.clone())
        .then(|id, caller, store| {
            Box::pin(answer("GET /order/{id}", get_order(id, caller, store)))
        });
    let products = warp::path!("products")
        .and(warp::get())
        .and(with_replica.clone())
        .then(|replica| Box::pin(answer("GET /products", list_products(replica))));
    let list = warp::path!("orders")
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_store.clone())
        .then(|q, store| Box::pin(answer("GET /orders", list_orders(q, store))));
    let status = warp::path!("order" / String / "status")
        .and(warp::patch())
        .and(nobody())
        .and(body())
        .and(headers)
        .and(with_store.clone())
        .then(|id, caller, body, headers, store| {
            Box::pin(patch_traced(
                "PATCH /order/{id}/status",
                id,
                caller,
                body,
                headers,
                store,
            ))
        });
    let cancel = warp::path!("order" / String / "cancel")
        .and(warp::post())
        .and(nobody())
        .and(body())
        .and(headers)
        .and(with_store.clone())
        .then(|id, caller, body, headers, store| {
            Box::pin(cancel_traced(
                "POST /order/{id}/cancel",
                id,
                caller,
                body,
                headers,
                store,
            ))
        });

    // The per-user API: the same handlers, each after the caller's token (and before its body).
    let api_place = warp::path!("api" / "v1" / "orders")
        .and(warp::post())
        .and(auth.caller("POST /api/v1/orders"))
        .and(body())
        .and(headers)
        .and(with_store.clone())
        .and(with_replica)
        .then(|caller, body, headers, store, replica| {
            Box::pin(place_traced(
                "POST /api/v1/orders",
                caller,
                body,
                headers,
                store,
                replica,
            ))
        });
    let api_list = warp::path!("api" / "v1" / "orders")
        .and(warp::get())
        .and(auth.caller("GET /api/v1/orders"))
        .and(warp::query::<HashMap<String, String>>())
        .and(with_store.clone())
        .then(|caller, q, store| {
            Box::pin(answer(
                "GET /api/v1/orders",
                list_own_orders(caller, q, store),
            ))
        });
    let api_get = warp::path!("api" / "v1" / "orders" / String)
        .and(warp::get())
        .and(auth.caller("GET /api/v1/orders/{id}"))
        .and(with_store.clone())
        .then(|id, caller, store| {
            Box::pin(answer(
                "GET /api/v1/orders/{id}",
                get_order(id, caller, store),
            ))
        });
    let api_status = warp::path!("api" / "v1" / "orders" / String / "status")
        .and(warp::patch())
        .and(auth.caller("PATCH /api/v1/orders/{id}/status"))
        .and(body())
        .and(headers)
        .and(with_store.clone())
        .then(|id, caller, body, headers, store| {
            Box::pin(patch_traced(
                "PATCH /api/v1/orders/{id}/status",
                id,
                caller,
                body,
                headers,
                store,
            ))
        });
    let api_cancel = warp::path!("api" / "v1" / "orders" / String / "cancel")
        .and(warp::post())
        .and(auth.caller("POST /api/v1/orders/{id}/cancel"))
        .and(body())
        .and(headers)
        .and(with_store)
        .then(|id, caller, body, headers, store| {
            Box::pin(cancel_traced(
                "POST /api/v1/orders/{id}/cancel",
                id,
                caller,
                body,
                headers,
                store,
            ))
        });
    let per_user = api_place
        .or(api_list)
        .unify()
        .or(api_get)
        .unify()
        .or(api_status)
        .unify()
        .or(api_cancel)
        .unify()
        .recover(auth::refused)
        .unify();

    let document = crate::openapi::document(auth.is_on());
    let api = ops_routes("order-svc", readiness, metrics)
        .or(saga_platform::service::openapi::route(&document))
        .unify()
        .or(place)
        .unify()
        .or(get)
        .unify()
        .or(list)
        .unify()
        .or(products)
        .unify()
        .or(cancel)
        .unify()
        .or(status)
        .unify()
        .or(per_user)
        .unify()
        .or(saga_platform::service::openapi::method_not_allowed(
            &document,
        ))
        .unify()
        .recover(recover)
        .unify();
    traced(api)
}

/// `GET /products`: the catalog as order-svc's replica holds it, each entry with its age.
async fn list_products(replica: Replica) -> Result<Response, ApiError> {
    let products = replica.list().await.map_err(store_down)?;
    Ok(warp::reply::json(&Products { products }).into_response())
}

/// The answer to `GET /products`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Products {
    /// Every product the replica knows, by item.
    products: Vec<ReplicaListing>,
}

/// Serve one request of an API route: name its route in the request's span (see
/// [`saga_platform::service::http::traced`]), count it, and turn an `ApiError` into its JSON response.
async fn answer(
    route: &'static str,
    work: impl Future<Output = Result<Response, ApiError>>,
) -> Response {
    record_route(route);
    let response = work.await.unwrap_or_else(Reply::into_response);
    count_request(route, response.status());
    response
}

/// `POST /order` (or its /api/v1 twin) answered as a span of the request's trace.
async fn place_traced(
    route: &'static str,
    caller: Option<Caller>,
    body: Bytes,
    headers: HeaderMap,
    store: OrderStore,
    replica: Replica,
) -> Response {
    let request = headers::trace(&headers);
    let spans = store.spans.clone();
    let work = place_order(caller, body, headers, store, replica, request.span.clone());
    answer_traced(route, &spans, &request, work).await
}

/// A cancel (lab route or /api/v1) answered as a span of the request's trace.
async fn cancel_traced(
    route: &'static str,
    id: String,
    caller: Option<Caller>,
    body: Bytes,
    headers: HeaderMap,
    store: OrderStore,
) -> Response {
    let request = headers::trace(&headers);
    let spans = store.spans.clone();
    let work = cancel_order(id, caller, body, headers, store, request.span.clone());
    answer_traced(route, &spans, &request, work).await
}

/// A PATCH of an order's status (lab route or /api/v1) answered as a span of the request's
/// trace: the status event it writes continues that trace.
async fn patch_traced(
    route: &'static str,
    id: String,
    caller: Option<Caller>,
    body: Bytes,
    headers: HeaderMap,
    store: OrderStore,
) -> Response {
    let request = headers::trace(&headers);
    let spans = store.spans.clone();
    let work = set_order_status(id, caller, body, store, request.span.clone());
    answer_traced(route, &spans, &request, work).await
}

/// [`answer`], reported as a span of the request's trace (when spans are exported).
async fn answer_traced(
    route: &'static str,
    spans: &Spans,
    request: &RequestTrace,
    work: impl Future<Output = Result<Response, ApiError>>,
) -> Response {
    let started = SystemTime::now();
    let response = answer(route, work).await;
    spans.record(|| {
        spans::server(
            route,
            request.span.clone(),
            request.parent,
            started,
            response.status().as_u16(),
        )
    });
    response
}

fn store_down(e: redis::RedisError) -> ApiError {
    ApiError::unavailable("order store (Redis) unavailable; try again shortly")
        .with_details(json!({ "cause": e.to_string() }))
}

/// A write that failed, as its answer: 503 either way, but when it was written and only its
/// replication is unconfirmed, the answer says the order may exist, names it, and tells the
/// client to retry with the same Idempotency-Key (a retry without one could place it twice).
fn write_failed(e: WriteError, key: Option<&IdempotencyKey>, written: &str) -> ApiError {
    match e {
        WriteError::Store(e) => store_down(e),
        WriteError::Unacknowledged { order_id, lag } => {
            warn!(order_id = %order_id, cause = %lag, "Write not acknowledged by the Redis replicas ({written}); answered 503, it may exist");
            let retry = match key {
                Some(_) => "retry with the same Idempotency-Key to get it".to_owned(),
                None => format!(
                    "GET /order/{order_id} tells whether it exists; a plain retry could do it \
                     twice (send an Idempotency-Key to make retries safe)"
                ),
            };
            ApiError::unavailable(format!(
                "{written} was written but the Redis replicas did not acknowledge it in time, \
                 so it may exist (and then it will be processed): {retry}"
            ))
            .with_details(json!({
                "order_id": order_id,
                "may_exist": true,
                "idempotency_key": key.map(IdempotencyKey::as_str),
                "cause": lag.to_string(),
            }))
        }
    }
}

/// The answer to a request whose Idempotency-Key was used before: the first success again
/// (`status`, `body`), or 422 if the key came with another request. A caller of the per-user
/// API is not told which order the key made (it may be someone else's).
fn replay(
    seen: Seen,
    key: Option<&IdempotencyKey>,
    caller: Option<&Caller>,
    status: StatusCode,
    body: OrderAck,
) -> Result<Response, ApiError> {
    let key = key.map_or("", IdempotencyKey::as_str);
    if !seen.same_request && caller.is_some() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "Idempotency-Key {key:?} was first used with a different request; a key names \
                 one request: use a new key for a new request"
            ),
        )
        .with_details(json!({ "idempotency_key": key })));
    }
    if !seen.same_request {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "Idempotency-Key {key:?} was first used with a different request (order {}); \
                 a key names one request: use a new key for a new request",
                seen.order_id
            ),
        )
        .with_details(json!({ "idempotency_key": key, "order_id": seen.order_id })));
    }
    info!(order_id = %seen.order_id, idempotency_key = key, "Request replayed: its Idempotency-Key was used before; answering as the first time");
    let reply = warp::reply::with_status(warp::reply::json(&body), status);
    Ok(warp::reply::with_header(reply, REPLAYED, "true").into_response())
}

/// `POST /order` and `POST /api/v1/orders`: with a caller, the order is theirs.
async fn place_order(
    caller: Option<Caller>,
    body: Bytes,
    headers: HeaderMap,
    store: OrderStore,
    replica: Replica,
    trace: Trace,
) -> Result<Response, ApiError> {
    if let Some(ct) = headers.get("content-type") {
        let ct = String::from_utf8_lossy(ct.as_bytes());
        if !ct.to_ascii_lowercase().contains("json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "send application/json, not {}",
                    ct.chars().take(100).collect::<String>()
                ),
            ));
        }
    }
    let correlation_id = headers::correlation_id(&headers)?;
    let key = headers::idempotency_key(&headers)?;
    let mut new = parse_new_order(&body)?;
    // Each line copies its product's name and unit price from the replica, as they are now:
    // the order keeps them whatever the catalog does later. An item the replica does not
    // know is still ordered (inventory decides), its price unknown.
    new.lines = replica.price(new.lines).await.map_err(store_down)?;
    new.owner = caller.as_ref().map(|c| c.owner.clone());
    if let Err(busy) = store.outbox.admit().await {
        let error = ApiError::unavailable(busy.to_string())
            .with_details(json!({ "outbox_depth": busy.depth }));
        return Ok(
            warp::reply::with_header(error.into_response(), "retry-after", "1").into_response(),
        );
    }
    let idempotent = key.clone().map(|key| {
        let lines: Vec<(&str, u32)> = new
            .lines
            .iter()
            .map(|l| (l.item.as_str(), l.qty.get()))
            .collect();
        let mut request = json!({
            "route": "POST /order",
            "lines": lines,
            "student_id": new.student_id,
        });
        // Another user's retry with the same key is another request, never a replay of this one.
        if let Some(owner) = &new.owner {
            request["owner"] = json!(owner.user_id);
        }
        Idempotent {
            key,
            request: request.to_string(),
        }
    });
    let order = match store
        .place(new, correlation_id, idempotent.as_ref(), &trace)
        .await
        .map_err(|e| write_failed(e, key.as_ref(), "the order"))?
    {
        Placed::New(order) => order,
        Placed::Seen(seen) => {
            record_order_id(&seen.order_id);
            let body = OrderAck {
                order_id: seen.order_id.clone(),
                status: OrderStatus::Placed,
            };
            let location = format!("/order/{}", seen.order_id);
            let reply = replay(
                seen,
                key.as_ref(),
                caller.as_ref(),
                StatusCode::CREATED,
                body,
            )?;
            return Ok(warp::reply::with_header(reply, "location", location).into_response());
        }
    };
    record_order_id(&order.order_id);
    info!(order_id = %order.order_id, lines = %order.lines.summary(),
          student_id = order.student_id.as_deref().unwrap_or("-"), correlation_id = %order.correlation_id,
          owner = order.owner.as_ref().map_or("-", |o| o.user_id.as_str()),
          idempotency_key = key.as_ref().map_or("-", IdempotencyKey::as_str), "order placed");
    let body = OrderAck {
        order_id: order.order_id.to_string(),
        status: order.status,
    };
    let reply = warp::reply::with_status(warp::reply::json(&body), StatusCode::CREATED);
    Ok(
        warp::reply::with_header(reply, "location", format!("/order/{}", order.order_id))
            .into_response(),
    )
}

/// Read a new order's body with a reason a person can act on: 400 for a body its schema
/// refuses, 422 for one refused only because an item is on two lines (well formed, and what the
/// schema cannot refuse: JSON Schema cannot ask lines to differ in one field).
pub(crate) fn parse_new_order(body: &[u8]) -> Result<NewOrder, ApiError> {
    let body = wire::read::<NewOrderBody>(body)?;
    let without_repeats = body.without_repeated_items();
    NewOrder::try_from(body).map_err(|e| {
        if without_repeats.is_some_and(|b| NewOrder::try_from(b).is_ok()) {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.0)
                .with_details(json!({ "field": "items" }))
        } else {
            e.into()
        }
    })
}

/// The body of `POST /order`, read like an event's body (see [`saga_domain::wire`]): an
/// `order.placed` without the id, which is ours to give. Three shapes: the lab's one line
/// (`item`, `qty`), several (`items`), and the course starter's (`user_id`, `items` of `sku`).
/// Fields it does not know are ignored. (Its schema names the domain types `TryFrom` builds,
/// with their limits; `default` is on each field, not the struct, so that the schema shows no
/// `null` default.)
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub(crate) struct NewOrderBody {
    /// The lab's one line, with `qty` (or give `items`).
    #[serde(default, deserialize_with = "wire::text")]
    #[schema(value_type = Option<Item>)]
    item: Option<String>,
    #[serde(default, deserialize_with = "wire::integer")]
    #[schema(value_type = Option<Qty>)]
    qty: Option<i64>,
    /// Several lines (1 to 20, each item once), instead of `item` and `qty`.
    #[serde(default, deserialize_with = "wire::list")]
    #[schema(max_items = 20, min_items = 1)]
    items: Option<Vec<NewLineBody>>,
    #[serde(default, deserialize_with = "wire::text")]
    #[schema(value_type = Option<StudentId>)]
    student_id: Option<String>,
    /// The course starter's name for the student (give it or `student_id`, not both).
    #[serde(default, deserialize_with = "wire::text")]
    #[schema(value_type = Option<StudentId>)]
    user_id: Option<String>,
}

/// One of `items`: `item` (or the starter's `sku`) and `qty`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub(crate) struct NewLineBody {
    #[serde(default, deserialize_with = "wire::text", alias = "sku")]
    #[schema(required = true, value_type = Item)]
    item: Option<String>,
    #[serde(default, deserialize_with = "wire::integer")]
    #[schema(required = true, value_type = Qty)]
    qty: Option<i64>,
}

impl NewOrderBody {
    /// The body with each item's later lines left out, when an item is on two lines (and the
    /// lines are no more than an order holds).
    fn without_repeated_items(&self) -> Option<Self> {
        let items = self.items.as_ref()?;
        if items.len() > saga_domain::lines::MAX_LINES {
            return None;
        }
        let mut seen = std::collections::BTreeSet::new();
        let kept: Vec<NewLineBody> = items
            .iter()
            .filter(|line| {
                line.item
                    .as_ref()
                    .is_none_or(|item| seen.insert(item.clone()))
            })
            .cloned()
            .collect();
        (kept.len() < items.len()).then(|| Self {
            items: Some(kept),
            ..self.clone()
        })
    }

    /// The order's lines: `items`, or the lab's `item` and `qty`; never both.
    fn lines(&mut self) -> Result<Lines, Malformed> {
        let Some(items) = self.items.take() else {
            return Ok(Lines::single(
                Item::parse(&required(self.item.take(), "item")?)?,
                Qty::parse(required(self.qty, "qty")?)?,
            ));
        };
        if self.item.is_some() || self.qty.is_some() {
            return Err(Malformed(
                "give either item and qty (one line) or items (several), not both".into(),
            ));
        }
        let lines = items
            .into_iter()
            .enumerate()
            .map(|(i, line)| {
                let at = |e: Malformed| Malformed(format!("items[{i}]: {e}"));
                let item = required(line.item, "item").map_err(at)?;
                let qty = required(line.qty, "qty").map_err(at)?;
                Ok(Line::new(
                    Item::parse(&item).map_err(|e| at(e.into()))?,
                    Qty::parse(qty).map_err(|e| at(e.into()))?,
                ))
            })
            .collect::<Result<_, Malformed>>()?;
        Ok(Lines::new(lines)?)
    }
}

impl TryFrom<NewOrderBody> for NewOrder {
    type Error = Malformed;

    fn try_from(mut body: NewOrderBody) -> Result<Self, Malformed> {
        let lines = body.lines()?;
        let student_id = match (body.student_id, body.user_id) {
            (Some(_), Some(_)) => {
                return Err(Malformed(
                    "give student_id or user_id (the same person), not both".into(),
                ));
            }
            (student, user) => student.or(user),
        };
        Ok(Self {
            lines,
            student_id: student_id.as_deref().map(StudentId::parse).transpose()?,
            // Never from the body: only a verified token says whose an order is.
            owner: None,
        })
    }
}

/// The body of `POST /order/{id}/cancel`, if there is one (an empty body is no reason).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub(crate) struct CancelBody {
    /// Why; at most [`MAX_REASON_CHARS`] characters (`cancelled by request` when absent).
    #[serde(default, deserialize_with = "wire::text")]
    #[schema(max_length = 500)]
    reason: Option<String>,
}

fn parse_order_id(raw: &str) -> Result<OrderId, ApiError> {
    OrderId::parse(raw).map_err(|e| {
        ApiError::bad_request(format!("invalid order id: {}", e.0)).with_details(json!({
            "field": "order_id",
            "limit": format!(
                "1 to {} bytes: ASCII letters, digits, '-', '_', '.'",
                saga_domain::ids::MAX_ID_LEN
            ),
        }))
    })
}

/// `GET /order/{id}` and `GET /api/v1/orders/{id}`: a caller sees only what is theirs to see.
async fn get_order(
    id: String,
    caller: Option<Caller>,
    store: OrderStore,
) -> Result<Response, ApiError> {
    let order_id = parse_order_id(&id)?;
    record_order_id(&order_id);
    let caller = caller.as_ref();
    let Some(view) = store.get(&order_id).await.map_err(store_down)? else {
        return Err(not_found(&order_id, &store, caller).await);
    };
    if !sees(caller, view.order.owner.as_ref().map(|o| &o.user_id)) {
        return Err(unknown(&order_id));
    }
    Ok(warp::reply::json(&view).into_response())
}

/// Whether the request may see an order owned by `owner`: anyone without auth; with a token,
/// its owner and staff ([`Caller::may_see`]).
fn sees(caller: Option<&Caller>, owner: Option<&UserId>) -> bool {
    caller.is_none_or(|caller| caller.may_see(owner))
}

/// The 404 for an order id never seen (or long gone), and, with auth, for an order that is
/// someone else's: the same answer, so that a 404 never tells whether an id is real.
fn unknown(order_id: &OrderId) -> ApiError {
    ApiError::not_found(format!("no order {order_id}"))
        .with_details(json!({ "order_id": order_id, "expired": false }))
}

/// The 404 for an order that is not here: expired (compacted after its retention; its
/// tombstone says what it was, to whoever may see it) or unknown.
async fn not_found(order_id: &OrderId, store: &OrderStore, caller: Option<&Caller>) -> ApiError {
    match store.tombstone(order_id).await {
        Ok(Some(gone)) if !sees(caller, gone.owner_id.as_ref()) => unknown(order_id),
        Ok(Some(gone)) => ApiError::not_found(format!(
            "order {order_id} expired: it finished {} and was compacted after the retention window",
            gone.status
        ))
        .with_details(json!({
            "order_id": order_id,
            "expired": true,
            "status": gone.status,
            "finished_at": gone.finished_at,
            "expired_at": gone.expired_at,
        })),
        Ok(None) => unknown(order_id),
        Err(e) => store_down(e),
    }
}

/// The body of `PATCH /order/{id}/status`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub(crate) struct StatusBody {
    /// The status asked for (any case): SHIPPED, DELIVERED or CANCELLED, as the order's status
    /// allows (409 otherwise, naming what it allows).
    #[serde(default, deserialize_with = "wire::text")]
    #[schema(required = true, value_type = OrderStatus)]
    status: Option<String>,
    /// Kept in the order's history; at most [`MAX_REASON_CHARS`] characters.
    #[serde(default, deserialize_with = "wire::text")]
    #[schema(max_length = 500)]
    note: Option<String>,
    /// Who asks (`api` when absent): 1 to [`MAX_UPDATED_BY`] printable characters. With a
    /// token, the token's user instead.
    #[serde(default, deserialize_with = "wire::text")]
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$"
    )]
    updated_by: Option<String>,
}

/// A PATCH's request, read at the edge: the status asked for, a note, and who asks.
#[derive(Debug, PartialEq, Eq)]
struct StatusRequest {
    status: OrderStatus,
    note: Option<String>,
    updated_by: String,
}

fn parse_status_request(body: &[u8]) -> Result<StatusRequest, ApiError> {
    let body = wire::read::<StatusBody>(body)?;
    let raw = required(body.status, "status")?;
    let status = OrderStatus::parse(&raw.to_ascii_uppercase()).ok_or_else(|| {
        ApiError::bad_request(format!(
            "unknown status {:?}; an order's statuses are {}",
            raw.chars().take(40).collect::<String>(),
            OrderStatus::ALL.map(OrderStatus::as_str).join(", ")
        ))
        .with_details(json!({ "field": "status" }))
    })?;
    if let Some(note) = &body.note
        && note.chars().count() > MAX_REASON_CHARS
    {
        return Err(ApiError::bad_request(format!(
            "note longer than {MAX_REASON_CHARS} characters"
        ))
        .with_details(json!({ "field": "note", "limit": MAX_REASON_CHARS })));
    }
    let updated_by = body.updated_by.unwrap_or_else(|| "api".to_owned());
    let length = updated_by.chars().count();
    if length == 0 || length > MAX_UPDATED_BY || updated_by.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "updated_by must be 1 to {MAX_UPDATED_BY} printable characters"
        ))
        .with_details(json!({ "field": "updated_by", "limit": MAX_UPDATED_BY })));
    }
    Ok(StatusRequest {
        status,
        note: body.note,
        updated_by,
    })
}

/// `PATCH .../status`. With a caller: staff alone may ask for SHIPPED or DELIVERED (403, told
/// before the order is looked at, so it says nothing about the order), someone else's order is
/// unknown (404), and the move is recorded as the caller's (`updated_by`).
async fn set_order_status(
    id: String,
    caller: Option<Caller>,
    body: Bytes,
    store: OrderStore,
    trace: Trace,
) -> Result<Response, ApiError> {
    let order_id = parse_order_id(&id)?;
    record_order_id(&order_id);
    let mut request = parse_status_request(&body)?;
    if let Some(caller) = &caller {
        if !caller.may_request(request.status) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "only staff may mark an order {}; the token has no roles: [\"staff\"]",
                    request.status
                ),
            )
            .with_details(json!({ "status": request.status, "needs_role": STAFF })));
        }
        let owner = store.owner_of(&order_id).await.map_err(store_down)?;
        if !caller.may_see(owner.as_ref()) {
            return Err(not_found(&order_id, &store, Some(caller)).await);
        }
        request.updated_by = caller.owner.user_id.to_string();
    }
    let answer = store
        .set_status(
            &order_id,
            request.status,
            request.note.as_deref(),
            &request.updated_by,
            &trace,
        )
        .await
        .map_err(|e| write_failed(e, None, "the status change"))?;
    match answer {
        StatusSet::Moved(view) => {
            info!(order_id = %order_id, status = %view.order.status, updated_by = %request.updated_by,
                  "Order {order_id} {} (asked by {})", view.order.status.as_str().to_lowercase(), request.updated_by);
            Ok(warp::reply::json(&view).into_response())
        }
        StatusSet::Conflict(status) => {
            let allowed = status.requestable_from();
            let may = match allowed.as_slice() {
                [] => "nothing may change it any more".to_owned(),
                some => format!(
                    "from {status} it may become {}",
                    some.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            };
            Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("order {order_id} is {status}; {may}"),
            )
            .with_details(json!({
                "order_id": order_id,
                "status": status,
                "requested": request.status,
                "allowed": allowed,
            })))
        }
        StatusSet::UnknownOrder => Err(not_found(&order_id, &store, caller.as_ref()).await),
    }
}

/// What `GET /orders?...` and `GET /api/v1/orders` read from the query.
struct PageQuery {
    limit: usize,
    offset: usize,
    status: Option<OrderStatus>,
}

fn parse_page_query(query: &HashMap<String, String>) -> Result<PageQuery, ApiError> {
    let number = |key: &str, default: usize, most: usize| -> Result<usize, ApiError> {
        query.get(key).map_or(Ok(default), |v| {
            // An integer too large for a usize is still an integer: over any limit (and, for
            // `limit`, read as a page like any other large one), never a parse error.
            v.parse::<usize>()
                .or_else(|e| match e.kind() {
                    std::num::IntErrorKind::PosOverflow => Ok(usize::MAX),
                    _ => Err(e),
                })
                .ok()
                .filter(|n| *n <= most)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "{key} must be an integer from 0 to {most}, got {:?}",
                        v.chars().take(40).collect::<String>()
                    ))
                    .with_details(json!({ "field": key, "limit": most }))
                })
        })
    };
    // More than a page is read as a page (the lab's scripts ask for "all" that way).
    let limit = number("limit", 100, usize::MAX)?.min(MAX_PAGE);
    let offset = number("offset", 0, MAX_OFFSET)?;
    let status = match query.get("status").map(|s| s.to_ascii_uppercase()) {
        Some(s) => match OrderStatus::parse(&s) {
            Some(status) => Some(status),
            None => {
                let shown: String = s.chars().take(40).collect();
                return Err(ApiError::bad_request(format!("unknown status {shown:?}")));
            }
        },
        None => None,
    };
    Ok(PageQuery {
        limit,
        offset,
        status,
    })
}

/// `GET /api/v1/orders`: always a page ([`OrderPage`]). With a caller, only the caller's orders
/// (their own index; no `status` filter there yet); without, every order, as `GET /orders?...`.
async fn list_own_orders(
    caller: Option<Caller>,
    query: HashMap<String, String>,
    store: OrderStore,
) -> Result<Response, ApiError> {
    let page = parse_page_query(&query)?;
    let (orders, total) = match &caller {
        None => store.list(page.status, page.offset, page.limit).await,
        Some(_) if page.status.is_some() => {
            return Err(ApiError::bad_request(
                "?status= is not available on a user's own list; read the orders' status",
            )
            .with_details(json!({ "field": "status" })));
        }
        Some(caller) => {
            store
                .list_owned(&caller.owner.user_id, page.offset, page.limit)
                .await
        }
    }
    .map_err(store_down)?;
    Ok(warp::reply::json(&OrderPage {
        count: orders.len(),
        orders,
        total,
        offset: page.offset,
        limit: page.limit,
    })
    .into_response())
}

async fn list_orders(
    query: HashMap<String, String>,
    store: OrderStore,
) -> Result<Response, ApiError> {
    let page = parse_page_query(&query)?;
    if query.is_empty() {
        // The classic lab's shape: a plain GET /orders is a bare array of orders (its drills
        // read it so), newest first, the newest MAX_PAGE of them.
        let (orders, _) = store.list(None, 0, MAX_PAGE).await.map_err(store_down)?;
        return Ok(warp::reply::json(&OrderList::All(orders)).into_response());
    }
    let (orders, total) = store
        .list(page.status, page.offset, page.limit)
        .await
        .map_err(store_down)?;
    let body = OrderList::Page(OrderPage {
        count: orders.len(),
        orders,
        total,
        offset: page.offset,
        limit: page.limit,
    });
    Ok(warp::reply::json(&body).into_response())
}

/// What `GET /orders` answers: the lab's bare array without a query, a page with one.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum OrderList {
    /// `GET /orders`: the newest 1,000 orders, newest first.
    All(Vec<Order>),
    /// `GET /orders?status=&limit=&offset=`.
    Page(OrderPage),
}

/// `POST /order/{id}/cancel` and `POST /api/v1/orders/{id}/cancel`: with a caller, only an
/// order it sees (someone else's is unknown).
async fn cancel_order(
    id: String,
    caller: Option<Caller>,
    body: Bytes,
    headers: HeaderMap,
    store: OrderStore,
    trace: Trace,
) -> Result<Response, ApiError> {
    let order_id = parse_order_id(&id)?;
    record_order_id(&order_id);
    if let Some(caller) = &caller {
        let owner = store.owner_of(&order_id).await.map_err(store_down)?;
        if !caller.may_see(owner.as_ref()) {
            return Err(not_found(&order_id, &store, Some(caller)).await);
        }
    }
    let correlation_id = headers::correlation_id(&headers)?;
    let key = headers::idempotency_key(&headers)?;
    let reason = parse_cancel_reason(&body)?;
    let idempotent = key.clone().map(|key| Idempotent {
        key,
        request: json!({
            "route": "POST /order/{id}/cancel",
            "order_id": order_id,
            "reason": reason,
        })
        .to_string(),
    });
    let cancelling = OrderAck {
        order_id: order_id.to_string(),
        status: OrderStatus::Cancelling,
    };
    match store
        .cancel(
            &order_id,
            &reason,
            correlation_id,
            idempotent.as_ref(),
            &trace,
        )
        .await
        .map_err(|e| write_failed(e, key.as_ref(), "the cancel"))?
    {
        Cancelled::Started => {
            info!(order_id = %order_id, %reason, "order cancelling: stock will be released");
            Ok(
                warp::reply::with_status(warp::reply::json(&cancelling), StatusCode::ACCEPTED)
                    .into_response(),
            )
        }
        Cancelled::Seen(seen) => replay(
            seen,
            key.as_ref(),
            caller.as_ref(),
            StatusCode::ACCEPTED,
            cancelling,
        ),
        Cancelled::NotCancellable(status) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("order {order_id} is {status} and cannot be cancelled"),
        )
        .with_details(json!({ "order_id": order_id, "status": status }))),
        Cancelled::UnknownOrder => Err(not_found(&order_id, &store, caller.as_ref()).await),
    }
}

/// The cancel's `reason`, from an optional body `{"reason": "..."}`.
fn parse_cancel_reason(body: &[u8]) -> Result<String, ApiError> {
    const DEFAULT: &str = "cancelled by request";
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DEFAULT.to_owned());
    }
    let reason = wire::read::<CancelBody>(body)?.reason;
    match reason {
        None => Ok(DEFAULT.to_owned()),
        Some(r) if r.chars().count() > MAX_REASON_CHARS => Err(ApiError::bad_request(format!(
            "reason longer than {MAX_REASON_CHARS} characters"
        ))
        .with_details(json!({ "field": "reason", "limit": MAX_REASON_CHARS }))),
        Some(r) => Ok(r),
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
        assert_eq!(new.unwrap().lines.summary(), "2 x burger");
    }

    #[test]
    fn an_order_of_several_lines_in_each_of_its_shapes() {
        let lines = |body: &str| {
            parse_new_order(body.as_bytes())
                .map(|n| (n.lines.summary(), n.student_id.map(|s| s.to_string())))
        };
        let err = |body: &str| parse_new_order(body.as_bytes()).unwrap_err().message;
        assert_eq!(
            lines(r#"{"items":[{"item":"burger","qty":2},{"item":"pizza","qty":1}],"student_id":"s1"}"#).unwrap(),
            ("2 lines, 3 units".into(), Some("s1".into()))
        );
        // The course starter's body: sku for item, user_id for the student.
        assert_eq!(
            lines(
                r#"{"user_id":"u-7","items":[{"sku":"burger","qty":2},{"sku":"salad","qty":4}]}"#
            )
            .unwrap(),
            ("2 lines, 6 units".into(), Some("u-7".into()))
        );
        // One line in items is the lab's order.
        assert_eq!(
            lines(r#"{"items":[{"item":"burger","qty":2}]}"#).unwrap().0,
            "2 x burger"
        );
        assert_eq!(
            err(r#"{"item":"burger","qty":1,"items":[{"item":"pizza","qty":1}]}"#),
            "give either item and qty (one line) or items (several), not both"
        );
        assert_eq!(err(r#"{"items":[]}"#), "items must hold at least one line");
        assert_eq!(
            err(r#"{"items":[{"item":"a","qty":1},{"item":"a","qty":1}]}"#),
            "item \"a\" is on two lines; put its quantities on one"
        );
        assert_eq!(
            err(r#"{"items":[{"item":"a","qty":1},{"item":"b","qty":0}]}"#),
            "items[1]: qty must be at least 1, got 0"
        );
        assert_eq!(
            err(r#"{"items":[{"item":"a"}]}"#),
            "items[0]: missing required field qty"
        );
        assert_eq!(
            err(r#"{"items":{"a":1}}"#),
            "items must be an array, got an object"
        );
        assert_eq!(
            err(r#"{"items":[{"item":"a","qty":1}],"student_id":"s","user_id":"u"}"#),
            "give student_id or user_id (the same person), not both"
        );
        let many: Vec<String> = (0..21)
            .map(|i| format!(r#"{{"item":"i{i}","qty":1}}"#))
            .collect();
        assert_eq!(
            err(&format!(r#"{{"items":[{}]}}"#, many.join(","))),
            "an order holds at most 20 lines, got 21"
        );
    }

    #[test]
    fn a_status_request_names_a_status_and_may_say_why_and_who() {
        let ok = parse_status_request(br#"{"status":"shipped","note":"DHL 42"}"#).unwrap();
        assert_eq!(
            ok,
            StatusRequest {
                status: OrderStatus::Shipped,
                note: Some("DHL 42".into()),
                updated_by: "api".into()
            }
        );
        let err = |b: &str| parse_status_request(b.as_bytes()).unwrap_err();
        assert_eq!(err("{}").message, "missing required field status");
        assert!(
            err(r#"{"status":"LOST"}"#)
                .message
                .starts_with("unknown status \"LOST\"")
        );
        assert_eq!(err(r#"{"status":5}"#).status, StatusCode::BAD_REQUEST);
        assert!(err("nope").message.starts_with("body is not valid JSON"));
        let long = format!(
            r#"{{"status":"SHIPPED","updated_by":"{}"}}"#,
            "u".repeat(65)
        );
        assert!(err(&long).message.contains("updated_by"));
        assert!(
            err(r#"{"status":"SHIPPED","updated_by":""}"#)
                .message
                .contains("updated_by")
        );
    }

    #[test]
    fn a_cancel_reason_is_optional_and_bounded() {
        assert_eq!(parse_cancel_reason(b"").unwrap(), "cancelled by request");
        assert_eq!(parse_cancel_reason(b"{}").unwrap(), "cancelled by request");
        assert_eq!(
            parse_cancel_reason(br#"{"reason":"late"}"#).unwrap(),
            "late"
        );
        let long = format!(r#"{{"reason":"{}"}}"#, "r".repeat(MAX_REASON_CHARS + 1));
        let err = parse_cancel_reason(long.as_bytes()).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(err.message, "reason longer than 500 characters");
    }
}
