//! The catalog over HTTP: `GET /products` (open), `PUT /products/{item}` and
//! `POST /products/announce` (behind the same [`saga_platform::service::admin::AdminGate`] as
//! `PUT /stock`). Bad input is a 4xx JSON answer naming the field, and changes nothing.

use saga_domain::ids::Item;
use saga_domain::product::{Currency, MAX_UNIT_PRICE, ProductName, low_threshold};
use saga_domain::wire;
use saga_platform::service::http::ApiError;
use serde::Deserialize;
use serde_json::json;
use warp::Reply;
use warp::http::StatusCode;
use warp::reply::Response;

use super::{Catalog, ProductUpdate, Updated};

fn store_down(e: redis::RedisError) -> ApiError {
    ApiError::unavailable(format!("Redis unavailable: {e}"))
}

/// `GET /products`: every product with its price, stock and markers.
pub async fn list_products(catalog: Catalog) -> Result<Response, ApiError> {
    let products = catalog.list().await.map_err(store_down)?;
    Ok(warp::reply::json(&json!({ "products": products })).into_response())
}

/// The body of `PUT /products/{item}`, read like an event's body (see [`saga_domain::wire`]).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ProductBody {
    #[serde(deserialize_with = "wire::text")]
    name: Option<String>,
    #[serde(deserialize_with = "wire::integer")]
    unit_price: Option<i64>,
    #[serde(deserialize_with = "wire::text")]
    currency: Option<String>,
    #[serde(deserialize_with = "wire::integer")]
    low_threshold: Option<i64>,
}

impl TryFrom<ProductBody> for ProductUpdate {
    type Error = ApiError;

    fn try_from(body: ProductBody) -> Result<Self, ApiError> {
        let bad = |e: saga_domain::ids::Invalid| ApiError::bad_request(e.0);
        let update = Self {
            name: body
                .name
                .as_deref()
                .map(ProductName::parse)
                .transpose()
                .map_err(bad)?,
            unit_price: body
                .unit_price
                .map(|p| {
                    (0..=MAX_UNIT_PRICE)
                        .contains(&p)
                        .then_some(p)
                        .ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "unit_price must be 0..={MAX_UNIT_PRICE} (minor units), got {p}"
                            ))
                        })
                })
                .transpose()?,
            currency: body
                .currency
                .as_deref()
                .map(Currency::parse)
                .transpose()
                .map_err(bad)?,
            low_threshold: body
                .low_threshold
                .map(low_threshold)
                .transpose()
                .map_err(bad)?,
        };
        if update == Self::default() {
            return Err(ApiError::bad_request(
                "nothing to change: give name, unit_price, currency or low_threshold",
            ));
        }
        Ok(update)
    }
}

/// `PUT /products/{item}` with any of `{"name", "unit_price", "currency", "low_threshold"}`:
/// changes the product (adding it needs a name and a unit price), and announces the change.
pub async fn set_product(
    item: String,
    body: bytes::Bytes,
    catalog: Catalog,
) -> Result<Response, ApiError> {
    let item = Item::parse(&item).map_err(|e| ApiError::bad_request(e.0))?;
    let update = ProductUpdate::try_from(wire::read::<ProductBody>(&body)?)?;
    let (listing, status, changed) =
        match catalog.update(&item, &update).await.map_err(store_down)? {
            Updated::Incomplete => {
                return Err(ApiError::bad_request(format!(
                    "{item} is no product yet: name and unit_price are needed to add it"
                )));
            }
            Updated::Unchanged(listing) => (listing, StatusCode::OK, false),
            Updated::Written { listing, added } => {
                tracing::info!(%item, name = %listing.name, unit_price = listing.unit_price,
                           currency = %listing.currency, added, "product set by hand");
                let status = if added {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                (listing, status, true)
            }
        };
    let body = json!({ "product": listing, "changed": changed });
    Ok(warp::reply::with_status(warp::reply::json(&body), status).into_response())
}

/// `POST /products/announce`: a snapshot of every product, published again.
pub async fn announce(catalog: Catalog) -> Result<Response, ApiError> {
    let announced = catalog.announce().await.map_err(store_down)?;
    tracing::info!(announced, "catalog snapshot announced on request");
    let body = json!({ "announced": announced });
    Ok(warp::reply::with_status(warp::reply::json(&body), StatusCode::ACCEPTED).into_response())
}
