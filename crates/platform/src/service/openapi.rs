//! The routes every service shares, described for OpenAPI (feature `openapi`): `/health`,
//! `/ready`, `/metrics` ([`super::http::ops_routes`]) and `/openapi.json` itself; the route
//! that serves a service's document ([`route`]); and the 405 with `Allow` that a method the
//! document does not list for a path gets ([`method_not_allowed`]: the document is the one
//! list of a service's routes and methods).
//!
//! A service lists these paths in its own `#[derive(OpenApi)]` beside its routes' paths; the
//! bodies are the structs the handlers serialize ([`Health`], [`Ready`], [`super::http::ErrorBody`]), so
//! the document says what is sent.

use std::sync::Arc;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AllOfBuilder, AnyOfBuilder, ObjectBuilder, Schema, Type};

use warp::http::{HeaderValue, Method, StatusCode};
use warp::path::FullPath;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::http::{ApiError, Health, Ready};

/// The tag of the operations endpoints in every service's document.
pub const OPS_TAG: &str = "ops";

/// The process is alive and answering (it says nothing about its dependencies: see `/ready`).
#[utoipa::path(get, path = "/health", tag = OPS_TAG,
    responses((status = 200, description = "Alive", body = Health)))]
pub fn health() {}

/// Whether the service can do its work: every broker connection up, Redis reachable (with the
/// replicas its writes wait for), every watched task running and every queue there.
#[utoipa::path(get, path = "/ready", tag = OPS_TAG, responses(
    (status = 200, description = "Ready", body = Ready),
    (status = 503, description = "Not ready; `checks` says what is down and why", body = Ready),
))]
pub fn ready() {}

/// The service's metrics in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = OPS_TAG, responses(
    (status = 200, description = "Prometheus text exposition format", body = String,
     content_type = "text/plain; version=0.0.4"),
))]
pub fn metrics() {}

/// This document: the service's HTTP API as OpenAPI, generated from its code.
#[utoipa::path(get, path = "/openapi.json", tag = OPS_TAG, responses(
    (status = 200, description = "The OpenAPI document", body = Object),
))]
pub fn openapi_json() {}

/// Add to the component schema `name` what its derive cannot say (how its fields go together),
/// as `allOf` of the derived schema and `constraints`; the description stays on the whole.
/// Nothing happens to a schema that is not a derived object.
pub fn constrain(
    document: &mut utoipa::openapi::OpenApi,
    name: &str,
    constraints: impl IntoIterator<Item = Schema>,
) {
    let Some(components) = document.components.as_mut() else {
        return;
    };
    let Some(RefOr::T(Schema::Object(mut derived))) = components.schemas.get(name).cloned() else {
        return;
    };
    let description = derived.description.take();
    let mut all = AllOfBuilder::new().item(derived).description(description);
    for constraint in constraints {
        all = all.item(constraint);
    }
    components.schemas.insert(name.to_owned(), all.into());
}

/// A constraint: at least one of `alternatives` holds.
pub fn any_of(alternatives: impl IntoIterator<Item = Schema>) -> Schema {
    alternatives
        .into_iter()
        .fold(AnyOfBuilder::new(), AnyOfBuilder::item)
        .into()
}

/// A constraint: these fields are given, each of its type (not `null`), and these others are
/// absent or `null`.
pub fn given(fields: &[(&str, Type)], absent: &[&str]) -> Schema {
    let mut object = ObjectBuilder::new();
    for (field, of) in fields {
        object = object
            .property(*field, ObjectBuilder::new().schema_type(of.clone()))
            .required(*field);
    }
    for field in absent {
        object = object.property(*field, ObjectBuilder::new().schema_type(Type::Null));
    }
    object.into()
}

/// `GET /openapi.json`: `document`, rendered once.
///
/// # Errors
/// The rejection of any other request, for the routes after it.
pub fn route(
    document: &utoipa::openapi::OpenApi,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + use<> {
    // Rendered once at start-up: the document never changes while the service runs. A document
    // that cannot be rendered is a bug in its description, and says so in its place.
    let json: Arc<str> = document
        .to_json()
        .unwrap_or_else(|e| {
            serde_json::json!({ "error": format!("cannot render the OpenAPI document: {e}") })
                .to_string()
        })
        .into();
    warp::path!("openapi.json").and(warp::get()).map(move || {
        warp::reply::with_header(json.to_string(), "content-type", "application/json")
            .into_response()
    })
}

/// A path template of the document (`/order/{id}`) split into segments, with its methods.
type Resource = (Vec<String>, Vec<&'static str>);

/// 405 JSON with `Allow` (RFC 9110) for a request to a path of `document` with a method it does
/// not list for that path; a rejection (not found) for anything else, so that the routes'
/// own answers and rejections stand. Put it after every route and before the recovery.
pub fn method_not_allowed(
    document: &utoipa::openapi::OpenApi,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + use<> {
    let resources: Arc<[Resource]> = document
        .paths
        .paths
        .iter()
        .map(|(template, item)| (segments(template), methods(item)))
        .collect();
    warp::method()
        .and(warp::path::full())
        .and_then(move |method: Method, path: FullPath| {
            let resources = resources.clone();
            async move {
                let asked: Vec<&str> = path.as_str().trim_start_matches('/').split('/').collect();
                match methods_of(&resources, &asked) {
                    Some(allowed) if !allowed.contains(&method.as_str()) => {
                        Ok(not_allowed(allowed))
                    }
                    _ => Err(warp::reject::not_found()),
                }
            }
        })
}

fn segments(template: &str) -> Vec<String> {
    template
        .trim_start_matches('/')
        .split('/')
        .map(str::to_owned)
        .collect()
}

/// Whether a request's path segments fit a template's: `{name}` is any one non-empty segment.
fn matches(template: &[String], asked: &[&str]) -> bool {
    template.len() == asked.len()
        && template.iter().zip(asked).all(|(t, a)| {
            if t.starts_with('{') {
                !a.is_empty()
            } else {
                t == a
            }
        })
}

/// The methods of the resource a request's path segments name, if any: a concrete path before a
/// template (OpenAPI's rule), so `/products/announce` is not `/products/{item}`.
fn methods_of<'a>(resources: &'a [Resource], asked: &[&str]) -> Option<&'a [&'static str]> {
    resources
        .iter()
        .filter(|(template, _)| matches(template, asked))
        .max_by_key(|(template, _)| literals(template))
        .map(|(_, methods)| methods.as_slice())
}

/// How many of a template's segments are not `{name}`: the more, the more concrete.
fn literals(template: &[String]) -> usize {
    template.iter().filter(|t| !t.starts_with('{')).count()
}

fn methods(item: &utoipa::openapi::PathItem) -> Vec<&'static str> {
    [
        ("GET", &item.get),
        ("PUT", &item.put),
        ("POST", &item.post),
        ("DELETE", &item.delete),
        ("OPTIONS", &item.options),
        ("HEAD", &item.head),
        ("PATCH", &item.patch),
        ("TRACE", &item.trace),
    ]
    .into_iter()
    .filter_map(|(name, operation)| operation.as_ref().map(|_| name))
    .collect()
}

fn not_allowed(allowed: &[&str]) -> Response {
    let allow = allowed.join(", ");
    metrics::counter!("saga_http_errors_total", "status" => "405").increment(1);
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed on this route; it takes {allow}"),
    )
    .with_details(serde_json::json!({ "allow": allowed }))
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert("allow", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_segment_is_any_one_segment() {
        let template = segments("/order/{id}/cancel");
        assert!(matches(&template, &["order", "o-1", "cancel"]));
        assert!(!matches(&template, &["order", "", "cancel"]));
        assert!(!matches(&template, &["order", "o-1"]));
        assert!(!matches(&template, &["orders", "o-1", "cancel"]));
    }

    #[test]
    fn a_concrete_path_comes_before_a_template() {
        // The template first, as a document may list it.
        let resources: Vec<Resource> = vec![
            (segments("/products/{item}"), vec!["PUT"]),
            (segments("/products/announce"), vec!["POST"]),
            (segments("/products"), vec!["GET"]),
        ];
        let methods = |path: &str| {
            let asked: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            methods_of(&resources, &asked).map(<[&str]>::to_vec)
        };
        assert_eq!(methods("/products/announce"), Some(vec!["POST"]));
        assert_eq!(methods("/products/burger"), Some(vec!["PUT"]));
        assert_eq!(methods("/products"), Some(vec!["GET"]));
        assert_eq!(methods("/products/burger/x"), None);
    }
}
