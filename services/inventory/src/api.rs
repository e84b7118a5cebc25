//! inventory-svc's HTTP: operations endpoints plus a view and a knob on the stock, and the
//! catalog's routes ([`crate::catalog::http`]).
//!
//! `/health`, `/ready`, `/metrics`, `/openapi.json` ([`crate::openapi`]), `GET /stock` and
//! `GET /products` are open. `PUT /stock/{item}`, `PUT /products/{item}` and
//! `POST /products/announce` change state, so they pass an [`AdminGate`] first: a caller on the
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

use crate::catalog::{self, Catalog};
use crate::stock::RedisLedger;

/// The gates of the state-changing routes: both pass the same callers, and say what they
/// refused in their own words.
#[derive(Clone)]
pub struct Gates {
    pub stock: AdminGate,
    pub catalog: AdminGate,
}

pub fn routes(
    ledger: RedisLedger,
    catalog: Catalog,
    readiness: Readiness,
    metrics: PrometheusHandle,
    gates: Gates,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone {
    let with_catalog = warp::any().map(move || catalog.clone());
    let with_ledger = warp::any().map(move || ledger.clone());
    let show = warp::path!("stock")
        .and(warp::get())
        .and(with_ledger.clone())
        .then(show_stock);
    let set = warp::path!("stock" / String)
        .and(warp::put())
        .and(gates.stock.filter())
        .and(saga_platform::service::http::body_up_to(4096))
        .and(with_ledger)
        .and(with_catalog.clone())
        .then(set_stock);
    let products = warp::path!("products")
        .and(warp::get())
        .and(with_catalog.clone())
        .then(catalog::http::list_products);
    // `/products/announce` is a resource of its own (OpenAPI matches a concrete path before a
    // template): a PUT there is a 405 naming POST, not a product called `announce`.
    let set_product = warp::path!("products" / String)
        .and_then(|item: String| async move {
            if item == "announce" {
                Err(warp::reject::not_found())
            } else {
                Ok(item)
            }
        })
        .and(warp::put())
        .and(gates.catalog.filter())
        .and(saga_platform::service::http::body_up_to(4096))
        .and(with_catalog.clone())
        .then(catalog::http::set_product);
    let announce = warp::path!("products" / "announce")
        .and(warp::post())
        .and(gates.catalog.filter())
        .and(with_catalog)
        .then(catalog::http::announce);
    let document = crate::openapi::InventoryApi::document();
    let api = ops_routes("inventory-svc", readiness, metrics)
        .or(saga_platform::service::openapi::route(&document))
        .unify()
        .or(show
            .or(set)
            .unify()
            .or(products)
            .unify()
            .or(announce)
            .unify()
            .or(set_product)
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

/// The `{item}` of a path: warp hands the segment over as sent, and `fish%20chips` names the
/// item `fish chips`.
///
/// # Errors
/// 400: not UTF-8 once percent-decoded, or not an item.
pub(crate) fn item_in_path(segment: &str) -> Result<Item, ApiError> {
    let item = percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| ApiError::bad_request("item is not UTF-8 once percent-decoded"))?;
    Item::parse(&item).map_err(|e| ApiError::bad_request(e.0))
}

/// `PUT /stock/{item}` with `{"available": N}`; its stock events go out through the catalog's
/// outbox, written in the same step.
async fn set_stock(
    item: String,
    body: bytes::Bytes,
    ledger: RedisLedger,
    catalog: Catalog,
) -> Result<Response, ApiError> {
    let item = item_in_path(&item)?;
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
    catalog.wake_relay();
    tracing::info!(%item, previous, available, "stock set by hand");
    metrics::gauge!("saga_stock_available", "item" => item.to_string()).set(f64::from(available));
    let body = StockSet {
        item,
        available,
        previous,
    };
    Ok(warp::reply::with_status(warp::reply::json(&body), StatusCode::OK).into_response())
}
