//! inventory-svc's HTTP API as an OpenAPI 3 document, served at `GET /openapi.json`: the stock
//! routes of [`crate::api`] and the operations endpoints, with every answer they give.
//!
//! The routes are warp filters, so each is described by a `#[utoipa::path]` on an empty
//! function of its own; the bodies are the handlers' own types (`Stock`, `StockBody`,
//! `StockSet` in [`crate::api`]; `Products`, `ProductBody`, `ProductSet`, `Announced` in
//! [`crate::catalog::http`] and the catalog's `Listing`; the domain's `StockLevel` and `Item`,
//! the platform's `ErrorBody`), and the tests below hold the list of paths to the routes.

use saga_domain::ids::Item;
use saga_platform::service::http::ErrorBody;
use saga_platform::service::openapi::{self as ops, OPS_TAG};
use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::schema::Type;
use utoipa::{Modify, OpenApi};

use crate::api::{Stock, StockBody, StockSet};
use crate::catalog::http::{Announced, ProductBody, ProductSet, Products};

/// The tag of the stock routes.
const STOCK: &str = "stock";
/// The tag of the catalog's routes.
const CATALOG: &str = "catalog";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "inventory-svc",
        description = "Reserves and releases stock from events (no HTTP needed for that); over \
                       HTTP it shows the stock and lets an operator set it. Every error is JSON: \
                       `{\"error\": \"...\"}`."
    ),
    paths(
        show_stock, set_stock, list_products, set_product, announce,
        ops::health, ops::ready, ops::metrics, ops::openapi_json,
    ),
    // Types named only by parameters are not collected on their own.
    components(schemas(ErrorBody, Item)),
    modifiers(&OneChangeAtLeast),
    tags(
        (name = STOCK, description = "Every item's books, and setting one by hand"),
        (name = CATALOG, description = "The products (price, stock, markers), changing one \
            by hand, and announcing them all again"),
        (name = OPS_TAG, description = "Liveness, readiness, metrics and this document"),
    )
)]
pub struct InventoryApi;

/// `ProductBody` needs at least one of its fields, not `null` (else "nothing to change"): what
/// its derive cannot say, added beside it.
struct OneChangeAtLeast;

impl Modify for OneChangeAtLeast {
    fn modify(&self, document: &mut Document) {
        let fields = [
            ("name", Type::String),
            ("unit_price", Type::Integer),
            ("currency", Type::String),
            ("low_threshold", Type::Integer),
        ];
        let one_given = ops::any_of(fields.map(|field| ops::given(&[field], &[])));
        ops::constrain(document, "ProductBody", [one_given]);
    }
}

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

/// Every product with its price, stock and markers (`low`: below its threshold, `out`: none
/// left), and the `seq` of the last event made about it.
#[utoipa::path(get, path = "/products", tag = CATALOG, responses(
    (status = 200, description = "The products, by item", body = Products),
    (status = 503, description = "Redis unavailable", body = ErrorBody),
))]
pub fn list_products() {}

/// Change a product (any of name, unit price, currency, low-stock threshold), or add one (a
/// name and a unit price needed), and announce the change: from this machine, or with
/// `Authorization: Bearer <ADMIN_TOKEN>` from anywhere else. The same change again is 200 with
/// `changed: false`, and announces nothing.
#[utoipa::path(put, path = "/products/{item}", tag = CATALOG,
    params(("item" = Item, Path, description = "The item, percent-encoded (never `announce`: \
        that path is `POST /products/announce`'s)")),
    request_body(content = ProductBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Changed, or already so (`changed: false`): the product now", body = ProductSet),
        (status = 201, description = "Added: the product now", body = ProductSet),
        (status = 400, description = "Not an item; the body not a JSON object; a field ill-typed or out of range; or no field to change", body = ErrorBody),
        (status = 403, description = "From off the machine without the admin token (or with none set)", body = ErrorBody),
        (status = 404, description = "The item is no product yet, and a name or a unit price is missing to add it", body = ErrorBody),
        (status = 413, description = "Body over 4 KiB", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    ))]
pub fn set_product() {}

/// Announce every product again (a snapshot each, with a fresh `seq`), for whoever missed an
/// event: from this machine, or with `Authorization: Bearer <ADMIN_TOKEN>` from anywhere else.
#[utoipa::path(post, path = "/products/announce", tag = CATALOG, responses(
    (status = 202, description = "Written to the catalog's outbox, to be published", body = Announced),
    (status = 403, description = "From off the machine without the admin token (or with none set)", body = ErrorBody),
    (status = 503, description = "Redis unavailable", body = ErrorBody),
))]
pub fn announce() {}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// Every `(METHOD, path)` inventory-svc serves (crate::api::routes and the platform's ops
    /// routes): a route added there and not described above fails here, and in the integration
    /// test that asks the running service (tests/tests/it/openapi.rs).
    const ROUTES: [(&str, &str); 9] = [
        ("GET", "/stock"),
        ("PUT", "/stock/{item}"),
        ("GET", "/products"),
        ("PUT", "/products/{item}"),
        ("POST", "/products/announce"),
        ("GET", "/health"),
        ("GET", "/ready"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
    ];

    fn json() -> Value {
        serde_json::to_value(InventoryApi::document()).unwrap()
    }

    #[test]
    fn it_describes_every_route_and_no_other() {
        let document = json();
        assert!(document["openapi"].as_str().unwrap().starts_with("3."));
        // Read back into the typed model: the shape OpenAPI 3.1 gives a document.
        let text = InventoryApi::document().to_json().unwrap();
        if let Err(e) = serde_json::from_str::<Document>(&text) {
            panic!("not an OpenAPI document: {e}");
        }
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
            "Products",
            "Listing",
            "ProductBody",
            "ProductSet",
            "Announced",
            "Item",
            "ErrorBody",
        ] {
            assert!(schemas.contains_key(name), "{name}");
        }
        assert_eq!(
            schemas["StockBody"]["properties"]["available"]["maximum"],
            json!(u32::MAX)
        );
        let mut refs = Vec::new();
        collect_refs(&document, &mut refs);
        for r in refs {
            let name = r.strip_prefix("#/components/schemas/").unwrap();
            assert!(schemas.contains_key(name), "{r} is not in the document");
        }
    }

    fn collect_refs(value: &Value, into: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    into.push(r.clone());
                }
                map.values().for_each(|v| collect_refs(v, into));
            }
            Value::Array(items) => items.iter().for_each(|v| collect_refs(v, into)),
            _ => {}
        }
    }

    /// `ProductBody`'s schema, as a validator reads it, against what the handler takes: the
    /// domain's limits, and at least one field that is not `null`.
    #[test]
    fn a_product_body_is_valid_when_the_handler_takes_it() {
        use saga_domain::product::{MAX_LOW_THRESHOLD, MAX_NAME_CHARS, MAX_UNIT_PRICE};

        use crate::catalog::ProductUpdate;
        use crate::catalog::http::ProductBody;

        let document = json();
        let schema = json!({
            "$ref": "#/components/schemas/ProductBody",
            "components": document["components"],
        });
        let validator = jsonschema::validator_for(&schema).unwrap();
        let takes = |body: &Value| {
            saga_domain::wire::read::<ProductBody>(body.to_string().as_bytes())
                .ok()
                .is_some_and(|b| ProductUpdate::try_from(b).is_ok())
        };
        let long = "n".repeat(MAX_NAME_CHARS);
        let mut bodies = vec![
            json!({}),
            json!({"name": null}),
            json!({"name": null, "unit_price": null, "currency": null, "low_threshold": null}),
            json!({"other": 1}),
            json!({"other": 1, "unit_price": 5}),
            json!({"unit_price": 0}),
            json!({"unit_price": MAX_UNIT_PRICE}),
            json!({"unit_price": MAX_UNIT_PRICE + 1}),
            json!({"unit_price": -1}),
            json!({"unit_price": 2.5}),
            json!({"unit_price": 7.0}),
            json!({"unit_price": "5"}),
            json!({"low_threshold": 0}),
            json!({"low_threshold": MAX_LOW_THRESHOLD}),
            json!({"low_threshold": MAX_LOW_THRESHOLD + 1}),
            json!({"low_threshold": -1}),
            json!({"name": null, "low_threshold": 3}),
            json!({"name": long}),
            json!({"name": format!("{long}n")}),
            json!({"name": 5}),
            json!({"name": "Fish and chips", "unit_price": 899, "currency": "GBP"}),
            json!({"name": "Crème brûlée"}),
            json!({"currency": "EUR"}),
            json!({"currency": 3}),
            json!({"currency": "EU"}),
            json!({"currency": "EURO"}),
            json!({"currency": "eur"}),
            json!({"currency": "ÉUR"}),
        ];
        // Every character alone and inside a name: control characters and names of nothing but
        // spaces are refused.
        for c in (0u32..=0xA0)
            .chain([0x2003, 0x3000])
            .filter_map(char::from_u32)
        {
            bodies.push(json!({ "name": c.to_string() }));
            bodies.push(json!({ "name": format!("a{c}b") }));
            bodies.push(json!({ "name": format!(" {c} ") }));
        }
        for body in bodies {
            assert_eq!(validator.is_valid(&body), takes(&body), "{body}");
        }
        let product = &document["components"]["schemas"]["ProductBody"]["allOf"][0];
        assert_eq!(
            product["properties"]["unit_price"]["maximum"],
            json!(MAX_UNIT_PRICE)
        );
        assert_eq!(
            product["properties"]["name"]["maxLength"],
            json!(MAX_NAME_CHARS)
        );
    }
}
