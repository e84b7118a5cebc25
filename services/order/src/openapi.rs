//! order-svc's HTTP API as an OpenAPI 3 document, served at `GET /openapi.json`: every route of
//! [`crate::api`] with every answer it gives, generated from the code.
//!
//! The routes are warp filters, not functions, so each is described here by a `#[utoipa::path]`
//! on an empty function of its own; what can drift is held to the code: the bodies are the
//! handlers' own types (`NewOrderBody`, `StatusBody`, `CancelBody`, `Products` in
//! [`crate::api`], the replica's `ReplicaListing`, the domain's `OrderView`, `OrderAck`, `OrderPage` and their newtypes' limits, the platform's
//! `ErrorBody`), and the tests below hold the list of paths to the routes that answer.
//!
//! The per-user API (`/api/v1/orders...`) needs a Bearer token only when `AUTH_JWT_SECRET` is
//! set, so the document is made for the service as it runs ([`document`]): with auth on, those
//! operations require the `bearer` scheme (401 without it) and `GET /api/v1/orders` takes no
//! `?status=`; with auth off, they name no security.

use saga_domain::ids::{CorrelationId, IdempotencyKey, OrderId};
use saga_domain::order::OrderStatus;
use saga_domain::view::{OrderAck, OrderPage, OrderView};
use saga_platform::service::http::ErrorBody;
use saga_platform::service::openapi::{self as ops, OPS_TAG};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ObjectBuilder, OpenApi as Document, PathItem, RefOr, Required, Schema, Type,
};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use crate::api::{CancelBody, NewOrderBody, OrderList, Products, StatusBody};

/// The tag of the classic lab's routes.
const LAB: &str = "orders";
/// The tag of the catalog replica.
const CATALOG: &str = "catalog";
/// The tag of the per-user API.
const PER_USER: &str = "orders per user";
/// The name of the Bearer scheme in the document (the paths below spell it out: a macro's
/// attribute takes a literal there).
const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "order-svc",
        description = "Places, shows, lists, moves and cancels orders (the saga's front door). \
                       Every answer is JSON, errors included: `{\"error\": \"...\"}` beside what \
                       the error names (`field`, `limit`, `order_id`, ...)."
    ),
    paths(
        place, get_order, list_orders, cancel, set_status,
        api_place, api_list, api_get, api_set_status, api_cancel,
        list_products,
        ops::health, ops::ready, ops::metrics, ops::openapi_json,
    ),
    // Types named only by parameters are not collected on their own.
    components(schemas(ErrorBody, OrderId, CorrelationId, IdempotencyKey, PageLimit)),
    modifiers(&BearerScheme, &OrderBodyRules),
    tags(
        (name = LAB, description = "The classic lab's routes: open, orders without an owner"),
        (name = PER_USER, description = "`/api/v1/orders`: each user's own orders when \
            `AUTH_JWT_SECRET` is set (HS256 Bearer token; staff ship and deliver)"),
        (name = CATALOG, description = "The catalog as order-svc's replica holds it, from \
            inventory-svc's product events"),
        (name = OPS_TAG, description = "Liveness, readiness, metrics and this document"),
    )
)]
pub struct OrderApi;

/// The `bearer` security scheme: an HS256 JWT signed with `AUTH_JWT_SECRET`.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, document: &mut Document) {
        let components = document.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "HS256, signed with AUTH_JWT_SECRET; claims `sub` (or `user_id`), `email`, `exp`, \
                 and `roles: [\"staff\"]` for staff (`sagactl token` mints one)",
            ))
            .build();
        components.add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    }
}

/// What `NewOrderBody`'s derive cannot say, added beside it: one line (`item` and `qty`) or
/// several (`items`), never both; `student_id` or `user_id`, not both; and no line twice
/// (`uniqueItems`; the same item on two lines of different `qty`, which JSON Schema cannot
/// refuse, is refused with 422, not 400: [`crate::api::parse_new_order`]).
struct OrderBodyRules;

impl Modify for OrderBodyRules {
    fn modify(&self, document: &mut Document) {
        let lines = ops::any_of([
            ops::given(&[("items", Type::Array)], &["item", "qty"]),
            ops::given(
                &[("item", Type::String), ("qty", Type::Integer)],
                &["items"],
            ),
        ]);
        let one_student = ops::any_of([
            ops::given(&[], &["student_id"]),
            ops::given(&[], &["user_id"]),
        ]);
        if let Some(RefOr::T(Schema::Object(body))) = document
            .components
            .as_mut()
            .and_then(|c| c.schemas.get_mut("NewOrderBody"))
            && let Some(RefOr::T(Schema::Array(items))) = body.properties.get_mut("items")
        {
            items.unique_items = true;
        }
        ops::constrain(document, "NewOrderBody", [lines, one_student]);
    }
}

/// `?limit=`: any integer from 0, with no `format`: the service reads any size (more than a
/// page as a page), where `int64` would promise a refusal past 2^63 - 1.
pub struct PageLimit;

impl PartialSchema for PageLimit {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
            .description(Some(
                "Orders per page: any integer from 0; more than 1,000 is read as 1,000",
            ))
            .into()
    }
}

impl ToSchema for PageLimit {}

/// The document for order-svc as it runs: with `auth_on` (`AUTH_JWT_SECRET` set) or without.
pub fn document(auth_on: bool) -> Document {
    let mut document = OrderApi::openapi();
    for (path, item) in document.paths.paths.iter_mut() {
        if path.ends_with("/cancel") {
            // A cancel's body is optional (an empty body is no reason); the attribute can only
            // say so with a nullable schema, and `null` is not an object: refused.
            for operation in operations(item) {
                if let Some(body) = &mut operation.request_body {
                    body.required = Some(Required::False);
                }
            }
        }
        if !path.starts_with("/api/v1/") {
            continue;
        }
        for operation in operations(item) {
            if auth_on {
                // Only a caller without a token may filter by status (crate::api).
                if let Some(parameters) = &mut operation.parameters {
                    parameters.retain(|p| p.name != "status");
                }
            } else {
                // Without a token there is no caller: nothing is refused for want of one.
                operation.security = None;
                operation.responses.responses.remove("401");
                operation.responses.responses.remove("403");
            }
        }
    }
    document
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

// The lab's routes.

/// Place an order: 201 with its id, then inventory decides (`GET /order/{id}` tells).
///
/// A retry with the same `Idempotency-Key` gets the first answer again, with
/// `Idempotent-Replayed: true`, and places nothing.
#[utoipa::path(post, path = "/order", tag = LAB,
    params(
        ("X-Correlation-Id" = Option<CorrelationId>, Header, nullable = false, description = "Ties the order's events together (default: the order id)"),
        ("Idempotency-Key" = Option<IdempotencyKey>, Header, nullable = false, description = "Makes a retry safe: the same key and request get the same answer, within the idempotency window"),
    ),
    request_body(content = NewOrderBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Placed (or a replay of the request that placed it)", body = OrderAck,
         headers(("location" = String, description = "`/order/{id}`"),
                 ("idempotent-replayed" = String, description = "`true` on a replay"))),
        (status = 400, description = "A field or header is missing, ill-typed or over its limit (named in `field`, `limit`)", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB", body = ErrorBody),
        (status = 415, description = "A Content-Type that is not JSON", body = ErrorBody),
        (status = 422, description = "An item on two lines (`field: items`), or the Idempotency-Key first used with another request", body = ErrorBody),
        (status = 503, description = "Redis unavailable, the outbox full (with `Retry-After`), or the write not acknowledged by the replicas (`may_exist`, `order_id`)", body = ErrorBody,
         headers(("retry-after" = String, description = "Seconds to wait, when the outbox is full"))),
    ))]
pub fn place() {}

/// One order with its status, reason, history and DLQ hops.
#[utoipa::path(get, path = "/order/{id}", tag = LAB,
    params(("id" = OrderId, Path, description = "The order's id")),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 400, description = "Not an order id", body = ErrorBody),
        (status = 404, description = "No such order (`expired: false`), or one compacted after its retention (`expired: true`, with the status it finished in)", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    ))]
pub fn get_order() {}

/// Orders, newest first: without a query the lab's bare array (at most 1,000); with one, a page.
#[utoipa::path(get, path = "/orders", tag = LAB,
    params(
        ("status" = Option<OrderStatus>, Query, description = "Only orders in this status (any case)"),
        ("limit" = Option<PageLimit>, Query, description = "Orders per page (default 100); more than 1,000 is read as 1,000"),
        ("offset" = Option<u64>, Query, maximum = 1000000000, description = "Orders skipped, newest first"),
    ),
    responses(
        (status = 200, description = "A bare array without a query, a page (`OrderPage`) with one", body = OrderList),
        (status = 400, description = "An unknown status, or a limit or offset that is not an integer in range", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    ))]
pub fn list_orders() {}

/// Cancel an order: 202, it is CANCELLING until inventory gives its stock back.
#[utoipa::path(post, path = "/order/{id}/cancel", tag = LAB,
    params(
        ("id" = OrderId, Path, description = "The order's id"),
        ("X-Correlation-Id" = Option<CorrelationId>, Header, nullable = false, description = "Ties the cancel's events together"),
        ("Idempotency-Key" = Option<IdempotencyKey>, Header, nullable = false, description = "Makes a retry safe"),
    ),
    request_body(content = CancelBody, content_type = "application/json", description = "Optional: no body is no reason"),
    responses(
        (status = 202, description = "Cancelling (or a replay)", body = OrderAck),
        (status = 400, description = "Not an order id, a bad header, or a reason over its limit", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "Too late: the order is past cancelling (its `status` named)", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB", body = ErrorBody),
        (status = 422, description = "The Idempotency-Key was first used with another request", body = ErrorBody),
        (status = 503, description = "Redis unavailable, or the write not acknowledged by the replicas", body = ErrorBody),
    ))]
pub fn cancel() {}

/// Move an order: SHIPPED after CONFIRMED, DELIVERED after SHIPPED, or CANCELLED (a cancel).
#[utoipa::path(patch, path = "/order/{id}/status", tag = LAB,
    params(("id" = OrderId, Path, description = "The order's id")),
    request_body(content = StatusBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Moved: the order as it is now", body = OrderView),
        (status = 400, description = "Not an order id, an unknown status, or a field over its limit", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "Not from its status: `allowed` names what it may become", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB", body = ErrorBody),
        (status = 503, description = "Redis unavailable, or the write not acknowledged by the replicas", body = ErrorBody),
    ))]
pub fn set_status() {}

// The per-user API: the same handlers, after the caller's token.

/// Place an order; with a token, it is the caller's.
#[utoipa::path(post, path = "/api/v1/orders", tag = PER_USER, security(("bearer" = [])),
    params(
        ("X-Correlation-Id" = Option<CorrelationId>, Header, nullable = false, description = "Ties the order's events together"),
        ("Idempotency-Key" = Option<IdempotencyKey>, Header, nullable = false, description = "Makes a retry safe"),
    ),
    request_body(content = NewOrderBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Placed (or a replay)", body = OrderAck,
         headers(("location" = String, description = "`/order/{id}`"),
                 ("idempotent-replayed" = String, description = "`true` on a replay"))),
        (status = 400, description = "A field or header is missing, ill-typed or over its limit", body = ErrorBody),
        (status = 401, description = "No valid Bearer token", body = ErrorBody,
         headers(("www-authenticate" = String, description = "The Bearer challenge (RFC 6750)"))),
        (status = 413, description = "Body over 16 KiB", body = ErrorBody),
        (status = 415, description = "A Content-Type that is not JSON", body = ErrorBody),
        (status = 422, description = "An item on two lines (`field: items`), or the Idempotency-Key first used with another request", body = ErrorBody),
        (status = 503, description = "Redis unavailable, the outbox full, or the write not acknowledged", body = ErrorBody,
         headers(("retry-after" = String, description = "Seconds to wait, when the outbox is full"))),
    ))]
pub fn api_place() {}

/// A page of orders, newest first: with a token, the caller's own (staff: everyone's).
#[utoipa::path(get, path = "/api/v1/orders", tag = PER_USER, security(("bearer" = [])),
    params(
        ("status" = Option<OrderStatus>, Query, description = "Only orders in this status (without auth only)"),
        ("limit" = Option<PageLimit>, Query, description = "Orders per page (default 100); more than 1,000 is read as 1,000"),
        ("offset" = Option<u64>, Query, maximum = 1000000000, description = "Orders skipped, newest first"),
    ),
    responses(
        (status = 200, description = "A page", body = OrderPage),
        (status = 400, description = "A limit or offset that is not an integer in range, or an unknown status", body = ErrorBody),
        (status = 401, description = "No valid Bearer token", body = ErrorBody,
         headers(("www-authenticate" = String, description = "The Bearer challenge (RFC 6750)"))),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    ))]
pub fn api_list() {}

/// One order; someone else's is 404, the same answer as an unknown id.
#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = PER_USER, security(("bearer" = [])),
    params(("id" = OrderId, Path, description = "The order's id")),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 400, description = "Not an order id", body = ErrorBody),
        (status = 401, description = "No valid Bearer token", body = ErrorBody,
         headers(("www-authenticate" = String, description = "The Bearer challenge (RFC 6750)"))),
        (status = 404, description = "No such order, or not the caller's", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    ))]
pub fn api_get() {}

/// Move an order; with a token, SHIPPED and DELIVERED need staff, and `updated_by` is the caller.
#[utoipa::path(patch, path = "/api/v1/orders/{id}/status", tag = PER_USER, security(("bearer" = [])),
    params(("id" = OrderId, Path, description = "The order's id")),
    request_body(content = StatusBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Moved: the order as it is now", body = OrderView),
        (status = 400, description = "Not an order id, an unknown status, or a field over its limit", body = ErrorBody),
        (status = 401, description = "No valid Bearer token", body = ErrorBody,
         headers(("www-authenticate" = String, description = "The Bearer challenge (RFC 6750)"))),
        (status = 403, description = "SHIPPED or DELIVERED asked by someone who is not staff", body = ErrorBody),
        (status = 404, description = "No such order, or not the caller's", body = ErrorBody),
        (status = 409, description = "Not from its status: `allowed` names what it may become", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB", body = ErrorBody),
        (status = 503, description = "Redis unavailable, or the write not acknowledged by the replicas", body = ErrorBody),
    ))]
pub fn api_set_status() {}

/// Cancel one of the caller's orders.
#[utoipa::path(post, path = "/api/v1/orders/{id}/cancel", tag = PER_USER, security(("bearer" = [])),
    params(
        ("id" = OrderId, Path, description = "The order's id"),
        ("X-Correlation-Id" = Option<CorrelationId>, Header, nullable = false, description = "Ties the cancel's events together"),
        ("Idempotency-Key" = Option<IdempotencyKey>, Header, nullable = false, description = "Makes a retry safe"),
    ),
    request_body(content = CancelBody, content_type = "application/json", description = "Optional: no body is no reason"),
    responses(
        (status = 202, description = "Cancelling (or a replay)", body = OrderAck),
        (status = 400, description = "Not an order id, a bad header, or a reason over its limit", body = ErrorBody),
        (status = 401, description = "No valid Bearer token", body = ErrorBody,
         headers(("www-authenticate" = String, description = "The Bearer challenge (RFC 6750)"))),
        (status = 404, description = "No such order, or not the caller's", body = ErrorBody),
        (status = 409, description = "Too late: the order is past cancelling", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB", body = ErrorBody),
        (status = 422, description = "The Idempotency-Key was first used with another request", body = ErrorBody),
        (status = 503, description = "Redis unavailable, or the write not acknowledged by the replicas", body = ErrorBody),
    ))]
pub fn api_cancel() {}

/// The catalog as order-svc's replica holds it: each product with its price, stock, markers
/// (`low`, `out`) and how old the information is. A part inventory has not told yet (an item
/// only seen in a stock event has no name or price) is `null`.
#[utoipa::path(get, path = "/products", tag = CATALOG, responses(
    (status = 200, description = "The products, by item", body = Products),
    (status = 503, description = "Redis unavailable", body = ErrorBody),
))]
pub fn list_products() {}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::api::{MAX_OFFSET, MAX_REASON_CHARS, MAX_UPDATED_BY};

    fn json(auth_on: bool) -> Value {
        serde_json::to_value(document(auth_on)).unwrap()
    }

    /// Every `(METHOD, path)` order-svc serves (crate::api::routes, the platform's ops routes):
    /// a route added there and not described in [`OrderApi`] fails here, and in the
    /// integration test that asks the running service (tests/tests/it/openapi.rs).
    const ROUTES: [(&str, &str); 15] = [
        ("POST", "/order"),
        ("GET", "/order/{id}"),
        ("GET", "/orders"),
        ("POST", "/order/{id}/cancel"),
        ("PATCH", "/order/{id}/status"),
        ("POST", "/api/v1/orders"),
        ("GET", "/api/v1/orders"),
        ("GET", "/api/v1/orders/{id}"),
        ("PATCH", "/api/v1/orders/{id}/status"),
        ("POST", "/api/v1/orders/{id}/cancel"),
        ("GET", "/products"),
        ("GET", "/health"),
        ("GET", "/ready"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
    ];

    #[test]
    fn it_describes_every_route_and_no_other() {
        let mut described: Vec<(String, String)> = json(true)["paths"]
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
    }

    #[test]
    fn it_is_an_openapi_3_document_whose_references_all_resolve() {
        for auth_on in [true, false] {
            let text = document(auth_on).to_json().unwrap();
            // Read back into the typed model: the shape OpenAPI 3.1 gives a document.
            if let Err(e) = serde_json::from_str::<Document>(&text) {
                panic!("not an OpenAPI document: {e}");
            }
            let value = json(auth_on);
            assert!(value["openapi"].as_str().unwrap().starts_with("3."));
            let schemas = value["components"]["schemas"].as_object().unwrap();
            let mut refs = Vec::new();
            collect_refs(&value, &mut refs);
            assert!(!refs.is_empty());
            for r in refs {
                let name = r.strip_prefix("#/components/schemas/").unwrap();
                assert!(schemas.contains_key(name), "{r} is not in the document");
            }
            for (path, item) in value["paths"].as_object().unwrap() {
                for (method, operation) in item.as_object().unwrap() {
                    let responses = operation["responses"].as_object().unwrap();
                    assert!(!responses.is_empty(), "{method} {path}: no answer");
                    // Every {name} of the path is a parameter of the operation.
                    for name in path.split('/').filter_map(|s| s.strip_prefix('{')) {
                        let name = name.trim_end_matches('}');
                        let params = operation["parameters"].as_array().unwrap();
                        assert!(
                            params
                                .iter()
                                .any(|p| p["name"] == name && p["in"] == "path"),
                            "{method} {path}: no path parameter {name}"
                        );
                    }
                }
            }
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

    #[test]
    fn the_per_user_api_needs_a_token_only_with_auth_on() {
        let on = json(true);
        let off = json(false);
        let place = "/api/v1/orders";
        assert_eq!(on["paths"][place]["post"]["security"][0][BEARER], json!([]));
        assert!(on["paths"][place]["post"]["responses"]["401"].is_object());
        assert!(off["paths"][place]["post"]["security"].is_null());
        assert!(off["paths"][place]["post"]["responses"]["401"].is_null());
        assert_eq!(
            on["components"]["securitySchemes"][BEARER]["scheme"],
            "bearer"
        );
        // ?status= is refused on a user's own list.
        let names = |doc: &Value| -> Vec<Value> {
            doc["paths"][place]["get"]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].clone())
                .collect()
        };
        assert!(!names(&on).contains(&json!("status")));
        assert!(names(&off).contains(&json!("status")));
        // The lab's routes never need one.
        assert!(on["paths"]["/order"]["post"]["security"].is_null());
        // A cancel's body is optional.
        assert_eq!(
            on["paths"]["/order/{id}/cancel"]["post"]["requestBody"]["required"],
            false
        );
    }

    #[test]
    fn the_limits_it_states_are_the_code_s() {
        let doc = json(true);
        let schemas = &doc["components"]["schemas"];
        let status = &schemas["StatusBody"]["properties"];
        assert_eq!(status["note"]["maxLength"], json!(MAX_REASON_CHARS));
        assert_eq!(status["updated_by"]["maxLength"], json!(MAX_UPDATED_BY));
        assert_eq!(
            schemas["CancelBody"]["properties"]["reason"]["maxLength"],
            json!(MAX_REASON_CHARS)
        );
        assert_eq!(schemas["Qty"]["maximum"], json!(saga_domain::ids::MAX_QTY));
        assert_eq!(
            schemas["OrderId"]["maxLength"],
            json!(saga_domain::ids::MAX_ID_LEN)
        );
        let offset = doc["paths"]["/orders"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "offset")
            .unwrap()
            .clone();
        assert_eq!(offset["schema"]["maximum"], json!(MAX_OFFSET));
        // One line (item and qty) or several (items): neither is required on its own (the
        // derived schema is the first of allOf, the rules between fields beside it).
        let derived = &schemas["NewOrderBody"]["allOf"][0];
        assert_eq!(derived["required"], json!(null));
        let items = &derived["properties"]["items"];
        assert_eq!(items["maxItems"], json!(saga_domain::lines::MAX_LINES));
        assert_eq!(items["uniqueItems"], json!(true));
        assert_eq!(schemas["NewLineBody"]["required"], json!(["item", "qty"]));
    }

    /// `NewOrderBody`'s schema, as a validator reads it, against what the handler takes: the
    /// shapes, and the rules between fields.
    #[test]
    fn a_new_order_body_is_valid_when_the_handler_takes_it() {
        let doc = json(true);
        let schema = json!({
            "$ref": "#/components/schemas/NewOrderBody",
            "components": doc["components"],
        });
        let validator = jsonschema::validator_for(&schema).unwrap();
        let line = |item: &str, qty: i64| json!({"item": item, "qty": qty});
        let bodies = [
            json!({}),
            json!({"item": "burger", "qty": 1}),
            json!({"item": "burger", "qty": 1, "student_id": "s-1"}),
            json!({"item": "burger", "qty": 1, "user_id": "s-1"}),
            json!({"item": "burger", "qty": 1, "student_id": "s-1", "user_id": "s-1"}),
            json!({"item": "burger", "qty": 1, "student_id": null, "user_id": "s-1"}),
            json!({"item": "burger", "qty": 1, "items": null}),
            json!({"item": "burger"}),
            json!({"qty": 1}),
            json!({"item": "burger", "qty": null}),
            json!({"item": "burger", "qty": 0}),
            json!({"item": "a:b", "qty": 1}),
            json!({"items": [line("burger", 1)]}),
            json!({"items": [line("burger", 1), line("pizza", 2)], "user_id": "u"}),
            json!({"items": [line("burger", 1), line("burger", 1)]}),
            json!({"items": []}),
            json!({"items": [line("burger", 1)], "item": "pizza", "qty": 1}),
            json!({"items": [line("burger", 1)], "item": null, "qty": null}),
            json!({"items": [line("burger", 1)], "qty": 1}),
            json!({"items": [{"item": "burger"}]}),
            json!({"items": [{"sku": "burger", "qty": 1}]}),
            json!({"items": (0..=saga_domain::lines::MAX_LINES).map(|i| line(&format!("i{i}"), 1)).collect::<Vec<_>>()}),
            json!({"items": (0..saga_domain::lines::MAX_LINES).map(|i| line(&format!("i{i}"), 1)).collect::<Vec<_>>()}),
        ];
        // An item on two lines with other quantities: valid for the schema, 422 for the handler.
        let twice = json!({"items": [line("burger", 1), line("burger", 2)]});
        assert!(validator.is_valid(&twice));
        let refused = crate::api::parse_new_order(twice.to_string().as_bytes()).unwrap_err();
        assert_eq!(refused.status.as_u16(), 422, "{}", refused.message);
        let refused = crate::api::parse_new_order(
            json!({"items": [line("burger", 0), line("burger", 2)]})
                .to_string()
                .as_bytes(),
        )
        .unwrap_err();
        assert_eq!(refused.status.as_u16(), 400, "{}", refused.message);
        for body in bodies {
            let takes = crate::api::parse_new_order(body.to_string().as_bytes()).is_ok();
            // The starter's `sku` is taken for `item`; the schema names only `item`.
            let sku = body.to_string().contains("sku");
            assert_eq!(validator.is_valid(&body) || sku, takes, "{body}");
        }
    }

    #[test]
    fn its_patterns_take_what_parse_takes() {
        use saga_domain::ids::{CorrelationId, IdempotencyKey, Item, OrderId, StudentId};
        // Each newtype's schema, as a validator would read it, against its parse(): alone and
        // inside a word, every ASCII character (where bytes are characters, so the lengths
        // agree too), and the limits on length.
        let doc = json(true);
        type Parses = fn(&str) -> bool;
        let parsers: [(&str, Parses); 5] = [
            ("OrderId", |t| OrderId::parse(t).is_ok()),
            ("CorrelationId", |t| CorrelationId::parse(t).is_ok()),
            ("Item", |t| Item::parse(t).is_ok()),
            ("StudentId", |t| StudentId::parse(t).is_ok()),
            ("IdempotencyKey", |t| IdempotencyKey::parse(t).is_ok()),
        ];
        for (name, parses) in parsers {
            let schema = &doc["components"]["schemas"][name];
            let validator =
                jsonschema::validator_for(schema).unwrap_or_else(|e| panic!("{name}: {e}"));
            let max = schema["maxLength"].as_u64().unwrap() as usize;
            let mut texts: Vec<String> = (0u8..=127)
                .map(char::from)
                .flat_map(|c| [c.to_string(), format!("a{c}b")])
                .collect();
            texts.extend(["", "x"].map(str::to_owned));
            texts.extend([max, max + 1].map(|n| "x".repeat(n)));
            for text in texts {
                assert_eq!(
                    validator.is_valid(&json!(text)),
                    parses(&text),
                    "{name}: {text:?}"
                );
            }
        }
    }
}
