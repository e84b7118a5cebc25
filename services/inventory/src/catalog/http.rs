//! The catalog over HTTP: `GET /products` (open), `PUT /products/{item}` and
//! `POST /products/announce` (behind the same [`saga_platform::service::admin::AdminGate`] as
//! `PUT /stock`). Bad input is a 4xx JSON answer naming the field, and changes nothing.

use saga_domain::product::{Currency, MAX_UNIT_PRICE, ProductName, low_threshold};
use saga_domain::wire;
use saga_platform::service::http::ApiError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::Reply;
use warp::http::StatusCode;
use warp::reply::Response;

use super::{Catalog, Listing, ProductUpdate, Updated};
use crate::api::item_in_path;

fn store_down(e: redis::RedisError) -> ApiError {
    ApiError::unavailable(format!("Redis unavailable: {e}"))
}

/// `GET /products`: every product with its price, stock and markers.
pub async fn list_products(catalog: Catalog) -> Result<Response, ApiError> {
    let products = catalog.list().await.map_err(store_down)?;
    Ok(warp::reply::json(&Products { products }).into_response())
}

/// The answer to `GET /products`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Products {
    /// Every product, by item.
    products: Vec<Listing>,
}

/// The answer to `PUT /products/{item}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProductSet {
    /// The product as it is now.
    product: Listing,
    /// Whether anything was written (and announced): `false` when it already was so.
    changed: bool,
}

/// The answer to `POST /products/announce`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Announced {
    /// How many products the snapshot holds.
    announced: usize,
}

/// The body of `PUT /products/{item}`, read like an event's body (see [`saga_domain::wire`]):
/// any of the fields, at least one of them not `null` (the document adds that to this schema:
/// [`crate::openapi`]); fields it does not know are ignored. The schema's limits are the
/// domain's ([`saga_domain::product`]; the tests hold them to it). (`default` is on each
/// field, not the struct, so that the schema shows no `null` default.)
#[derive(Debug, Default, Deserialize, ToSchema)]
pub(crate) struct ProductBody {
    /// What the menu calls it: 1 to 100 characters, not only spaces, no control characters.
    #[serde(default, deserialize_with = "wire::text")]
    // ProductName::parse's rules (the tests hold the pattern to it).
    #[schema(
        max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    name: Option<String>,
    /// The price of one unit in minor units (`899` is 8.99).
    #[serde(default, deserialize_with = "wire::integer")]
    #[schema(minimum = 0, maximum = 100_000_000)]
    unit_price: Option<i64>,
    /// ISO 4217: three capital letters (a product added without one gets CATALOG_CURRENCY).
    #[serde(default, deserialize_with = "wire::text")]
    #[schema(pattern = "^[A-Z]{3}$")]
    currency: Option<String>,
    /// Below this many units the product is low on stock (0: never).
    #[serde(default, deserialize_with = "wire::integer")]
    #[schema(minimum = 0, maximum = 1_000_000_000)]
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
    let item = item_in_path(&item)?;
    let update = ProductUpdate::try_from(wire::read::<ProductBody>(&body)?)?;
    let (listing, status, changed) =
        match catalog.update(&item, &update).await.map_err(store_down)? {
            Updated::Incomplete => {
                // The request is well formed; the catalog lacks what it would change.
                return Err(ApiError::not_found(format!(
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
    let body = ProductSet {
        product: listing,
        changed,
    };
    Ok(warp::reply::with_status(warp::reply::json(&body), status).into_response())
}

/// `POST /products/announce`: a snapshot of every product, published again.
pub async fn announce(catalog: Catalog) -> Result<Response, ApiError> {
    let announced = catalog.announce().await.map_err(store_down)?;
    tracing::info!(announced, "catalog snapshot announced on request");
    let body = Announced { announced };
    Ok(warp::reply::with_status(warp::reply::json(&body), StatusCode::ACCEPTED).into_response())
}
