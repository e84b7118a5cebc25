//! inventory-svc's HTTP: operations endpoints plus a view and a knob on the stock.
//!
//! `/health`, `/ready`, `/metrics` and `GET /stock` are open. `PUT /stock/{item}` changes
//! state, so it passes [`AdminGate`] first: a caller on the same machine (a loopback peer) may,
//! anyone else must send `Authorization: Bearer <ADMIN_TOKEN>`, and without `ADMIN_TOKEN` set
//! nobody off the machine may.

use std::net::SocketAddr;
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::json;
use shared::http::{ApiError, Readiness, ops_routes, recover, traced};
use shared::ids::Item;
use shared::wire::{self, required};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

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
        .and(shared::http::body_up_to(4096))
        .and(with_ledger)
        .then(set_stock);
    let api = ops_routes("inventory-svc", readiness, metrics)
        .or(show
            .or(set)
            .unify()
            .map(|r: Result<Response, ApiError>| r.unwrap_or_else(Reply::into_response)))
        .unify()
        .recover(recover)
        .unify();
    traced(api)
}

/// Who may call a state-changing endpoint: loopback peers, and others with the admin token.
#[derive(Clone, Default)]
pub struct AdminGate {
    token: Option<Arc<str>>,
}

impl AdminGate {
    /// `token`: the `ADMIN_TOKEN` non-loopback callers must send (none or empty: they may not).
    pub fn new(token: Option<&str>) -> Self {
        Self {
            token: token.filter(|t| !t.is_empty()).map(Arc::from),
        }
    }

    /// Passes an allowed request on; refuses any other with 403 JSON, before its body is read.
    fn filter(&self) -> impl Filter<Extract = (), Error = Rejection> + Clone + use<> {
        let gate = self.clone();
        warp::addr::remote()
            .and(warp::header::optional::<String>("authorization"))
            .and_then(
                move |peer: Option<SocketAddr>, authorization: Option<String>| {
                    let checked = gate.check(peer, authorization.as_deref());
                    async move { checked.map_err(warp::reject::custom) }
                },
            )
            .untuple_one()
    }

    /// # Errors
    /// 403 for a caller off the machine without the right token.
    pub fn check(
        &self,
        peer: Option<SocketAddr>,
        authorization: Option<&str>,
    ) -> Result<(), ApiError> {
        if peer.is_some_and(|p| p.ip().to_canonical().is_loopback()) {
            return Ok(());
        }
        let from = peer.map_or_else(|| "an unknown address".to_owned(), |p| p.ip().to_string());
        let Some(token) = &self.token else {
            tracing::warn!(%from, "refused a stock change from off the machine: no ADMIN_TOKEN is set");
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "refused: changing stock from {from} needs an admin token; inventory-svc has \
                     none (set ADMIN_TOKEN, send Authorization: Bearer <token>), so only callers \
                     on its own machine may"
                ),
            ));
        };
        let sent = authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .map(str::trim);
        if sent.is_some_and(|sent| same_secret(sent.as_bytes(), token.as_bytes())) {
            return Ok(());
        }
        tracing::warn!(%from, "refused a stock change without the admin token");
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "refused: changing stock from {from} needs Authorization: Bearer <ADMIN_TOKEN>"
            ),
        ))
    }
}

/// Compare two secrets in time that does not depend on where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// `GET /stock`: every item's available, initial, reserved and released units.
async fn show_stock(ledger: RedisLedger) -> Result<Response, ApiError> {
    let levels = ledger
        .levels()
        .await
        .map_err(|e| ApiError::unavailable(format!("Redis unavailable: {e}")))?;
    Ok(warp::reply::json(&json!({ "stock": levels })).into_response())
}

/// The body of `PUT /stock/{item}`, read like an event's body (see [`shared::wire`]).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StockBody {
    #[serde(deserialize_with = "wire::integer")]
    available: Option<i64>,
}

/// `PUT /stock/{item}` with `{"available": N}`.
async fn set_stock(
    item: String,
    body: bytes::Bytes,
    ledger: RedisLedger,
) -> Result<Response, ApiError> {
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
    let body = json!({ "item": item, "available": available, "previous": previous });
    Ok(warp::reply::with_status(warp::reply::json(&body), StatusCode::OK).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_changes_need_loopback_or_the_admin_token() {
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:40000".parse().unwrap();
        let remote: SocketAddr = "10.203.0.2:40000".parse().unwrap();
        let none = AdminGate::new(None);
        let set = AdminGate::new(Some("s3cret"));
        // (gate, peer, Authorization, allowed?)
        let cases = [
            (&none, Some(local), None, true),
            (&none, Some(mapped), None, true),
            (&none, Some(remote), None, false),
            (&none, Some(remote), Some("Bearer s3cret"), false),
            (&none, None, None, false),
            (&set, Some(local), None, true),
            (&set, Some(remote), None, false),
            (&set, Some(remote), Some("Bearer wrong!"), false),
            (&set, Some(remote), Some("s3cret"), false),
            (&set, Some(remote), Some("Bearer s3cret"), true),
        ];
        for (gate, peer, authorization, allowed) in cases {
            let got = gate.check(peer, authorization);
            assert_eq!(got.is_ok(), allowed, "{peer:?} {authorization:?}");
            if let Err(e) = got {
                assert_eq!(e.status, StatusCode::FORBIDDEN);
            }
        }
        assert!(
            AdminGate::new(Some("")).token.is_none(),
            "an empty token is none"
        );
    }
}
