//! inventory-svc's HTTP API as an OpenAPI 3 document, served at `GET /openapi.json`: the stock
//! routes of [`crate::api`] and the operations endpoints, with every answer they give.
//!
//! The routes are warp filters, so each is described by a `#[utoipa::path]` on an empty
//! function of its own; the bodies are the handlers' own types (`Stock`, `StockBody`,
//! `StockSet` in [`crate::api`], the domain's `StockLevel` and `Item`, the platform's
//! `ErrorBody`), and the tests below hold the list of paths to the routes.

use saga_domain::ids::Item;
use saga_platform::service::http::ErrorBody;
use saga_platform::service::openapi::{self as ops, OPS_TAG};
use utoipa::OpenApi;

use crate::api::{Stock, StockBody, StockSet};

/// The tag of the stock routes.
const STOCK: &str = "stock";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "inventory-svc",
        description = "Reserves and releases stock from events (no HTTP needed for that); over \
                       HTTP it shows the stock and lets an operator set it. Every error is JSON: \
                       `{\"error\": \"...\"}`."
    ),
    paths(show_stock, set_stock, ops::health, ops::ready, ops::metrics, ops::openapi_json),
    // Types named only by parameters are not collected on their own.
    components(schemas(ErrorBody, Item)),
    tags(
        (name = STOCK, description = "Every item's books, and setting one by hand"),
        (name = OPS_TAG, description = "Liveness, readiness, metrics and this document"),
    )
)]
pub struct InventoryApi;

impl InventoryApi {
    /// The document, as served.
    pub fn document() -> utoipa::openapi::OpenApi {
        Self::openapi()
    }
}

/// Every item's stock books: available, initial, reserved and released units.
#[utoipa::path(get, path = "/stock", tag = STOCK, responses(
    (status = 200, description = "The books, by item", body = Stock),
    (status = 503, description = "Redis unavailable", body = ErrorBody),
))]
pub fn show_stock() {}

/// Set an item's available units (and its initial ones): from this machine, or with
/// `Authorization: Bearer <ADMIN_TOKEN>` from anywhere else.
#[utoipa::path(put, path = "/stock/{item}", tag = STOCK,
    params(("item" = Item, Path, description = "The item, percent-encoded")),
    request_body(content = StockBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Set: the units now and before", body = StockSet),
        (status = 400, description = "Not an item, or `available` missing or not an integer from 0 to 4294967295", body = ErrorBody),
        (status = 403, description = "From off the machine without the admin token (or with none set)", body = ErrorBody),
        (status = 413, description = "Body over 4 KiB", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    ))]
pub fn set_stock() {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `(METHOD, path)` inventory-svc serves (crate::api::routes and the platform's ops
    /// routes): a route added there and not described above fails here, and in the integration
    /// test that asks the running service (tests/tests/it/openapi.rs).
    const ROUTES: [(&str, &str); 6] = [
        ("GET", "/stock"),
        ("PUT", "/stock/{item}"),
        ("GET", "/health"),
        ("GET", "/ready"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
    ];

    #[test]
    fn it_describes_every_route_and_no_other() {
        let document = serde_json::to_value(InventoryApi::document()).unwrap();
        assert!(document["openapi"].as_str().unwrap().starts_with("3."));
        let mut described: Vec<(String, String)> = document["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(|method| (method.to_uppercase(), path.clone()))
            })
            .collect();
        let mut served: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        described.sort();
        served.sort();
        assert_eq!(described, served);
        let schemas = document["components"]["schemas"].as_object().unwrap();
        for name in [
            "Stock",
            "StockBody",
            "StockSet",
            "StockLevel",
            "Item",
            "ErrorBody",
        ] {
            assert!(schemas.contains_key(name), "{name}");
        }
        assert_eq!(
            schemas["StockBody"]["properties"]["available"]["maximum"],
            serde_json::json!(u32::MAX)
        );
    }
}
