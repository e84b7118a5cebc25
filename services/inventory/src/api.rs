//! inventory-svc's HTTP: operations endpoints plus a view and a knob on the stock.
//!
//! `/health`, `/ready`, `/metrics`, `/openapi.json` ([`crate::openapi`]) and `GET /stock` are
//! open. `PUT /stock/{item}` changes state, so it passes [`AdminGate`] first: a caller on the
//! same machine (a loopback peer) may, anyone else must send `Authorization: Bearer
//! <ADMIN_TOKEN>`, and without `ADMIN_TOKEN` set nobody off the machine may.

use std::collections::BTreeMap;

use metrics_exporter_prometheus::PrometheusHandle;
use saga_domain::ids::Item;
use saga_domain::order::StockLevel;
use saga_domain::wire::{self, required};
use saga_platform::service::admin::AdminGate;
use saga_platform::service::http::{ApiError, Readiness, ops_routes, recover, traced};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::stock::RedisLedger;

pub fn routes(
    ledger: RedisLedger,
    readiness: Readiness,
    metrics: PrometheusHandle,
    gate: AdminGate,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone {
    let with_ledger = warp::any().map(move || ledger.clone());
    let show = warp::path!("stock")
        .and(warp::get())
        .and(with_ledger.clone())
        .then(show_stock);
    let set = warp::path!("stock" / String)
        .and(warp::put())
        .and(gate.filter())
        .and(saga_platform::service::http::body_up_to(4096))
        .and(with_ledger)
        .then(set_stock);
    let document = crate::openapi::InventoryApi::document();
    let api = ops_routes("inventory-svc", readiness, metrics)
        .or(saga_platform::service::openapi::route(&document))
        .unify()
        .or(show
            .or(set)
            .unify()
            .map(|r: Result<Response, ApiError>| r.unwrap_or_else(Reply::into_response)))
        .unify()
        .or(saga_platform::service::openapi::method_not_allowed(
            &document,
        ))
        .unify()
        .recover(recover)
        .unify();
    traced(api)
}

/// `GET /stock`: every item's available, initial, reserved and released units.
async fn show_stock(ledger: RedisLedger) -> Result<Response, ApiError> {
    let levels = ledger
        .levels()
        .await
        .map_err(|e| ApiError::unavailable(format!("Redis unavailable: {e}")))?;
    Ok(warp::reply::json(&Stock { stock: levels }).into_response())
}

/// The answer to `GET /stock`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Stock {
    /// Every item's books, by item.
    stock: BTreeMap<String, StockLevel>,
}

/// The body of `PUT /stock/{item}`, read like an event's body (see [`saga_domain::wire`]).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub(crate) struct StockBody {
    /// Units available from now on (the item's new `initial` too): 0 to 4294967295. An i64
    /// with bounds, not a u32: `format: int32` would say 2^31 - 1 is the most.
    #[serde(default, deserialize_with = "wire::integer")]
    #[schema(required = true, value_type = i64, minimum = 0, maximum = 4294967295_u64)]
    available: Option<i64>,
}

/// The answer to `PUT /stock/{item}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StockSet {
    item: Item,
    /// Units available now.
    available: u32,
    /// Units that were available before.
    previous: i64,
}

/// `PUT /stock/{item}` with `{"available": N}`.
async fn set_stock(
    item: String,
    body: bytes::Bytes,
    ledger: RedisLedger,
) -> Result<Response, ApiError> {
    // warp hands the segment over as sent: `fish%20chips` names the item `fish chips`.
    let item = percent_encoding::percent_decode_str(&item)
        .decode_utf8()
        .map_err(|_| ApiError::bad_request("item is not UTF-8 once percent-decoded"))?;
    let item = Item::parse(&item).map_err(|e| ApiError::bad_request(e.0))?;
    let available = required(wire::read::<StockBody>(&body)?.available, "available")?;
    let available = u32::try_from(available).map_err(|_| {
        ApiError::bad_request(format!(
            "available must be 0..={}, got {available}",
            u32::MAX
        ))
    })?;
    let previous = ledger
        .set_available(&item, available)
        .await
        .map_err(|e| ApiError::unavailable(format!("Redis unavailable: {e}")))?;
    tracing::info!(%item, previous, available, "stock set by hand");
    metrics::gauge!("saga_stock_available", "item" => item.to_string()).set(f64::from(available));
    let body = StockSet {
        item,
        available,
        previous,
    };
    Ok(warp::reply::with_status(warp::reply::json(&body), StatusCode::OK).into_response())
}
