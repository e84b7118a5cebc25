//! HTTP pieces every service shares: a span per request, JSON errors, a bounded body,
//! `/health`, `/ready`, `/metrics`, serving.

use std::convert::Infallible;
use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::amqp::BrokerStatus;
use crate::redis::store::Redis;
use crate::service::watch::Watchdog;

/// The target of the one event logged per answered request, at DEBUG so a classroom log shows
/// business events only: `RUST_LOG=info,http=debug` shows every request as well.
pub const REQUEST_LOG_TARGET: &str = "http";

/// Serve every request of `routes` (a service's whole route tree, errors already turned into
/// answers by [`recover`]) in a span of its own, `request{method path route order_id status
/// latency_ms}`, and log it once when answered.
///
/// Everything a handler logs happens inside the span, so each line says which request it
/// served; a handler adds what only it knows with [`record_route`] and [`record_order_id`]
/// (zero2prod's habit: ids go into the span as soon as they are known). warp's own trace
/// events are off unless asked for ([`crate::service::telemetry::log_filter`]): this one line says all
/// they do, and more.
pub fn traced<F>(routes: F) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone
where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    warp::any()
        .map(Instant::now)
        .and(routes)
        .map(|started: Instant, response: Response| {
            // Still inside the request's span: `warp::trace` enters it on every poll of the
            // route tree, this closure included.
            let span = tracing::Span::current();
            span.record("status", response.status().as_u16());
            // Milliseconds to the microsecond: finer is noise in a log.
            let latency_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
            span.record("latency_ms", latency_ms);
            tracing::debug!(target: REQUEST_LOG_TARGET, "answered");
            response
        })
        .with(warp::trace(request_span))
        .map(Reply::into_response)
}

fn request_span(info: warp::trace::Info<'_>) -> tracing::Span {
    use tracing::field::Empty;
    tracing::info_span!(
        "request",
        method = %info.method(),
        path = %info.path(),
        route = Empty,
        order_id = Empty,
        status = Empty,
        latency_ms = Empty,
    )
}

/// Name the current request by its route template (`GET /order/{id}`), which groups requests
/// the way `/metrics` counts them; the path names the one request.
pub fn record_route(route: &'static str) {
    tracing::Span::current().record("route", route);
}

/// Put the order a request is about into its span, once it is known (parsed from the path, or
/// just created).
pub fn record_order_id(order_id: &impl Display) {
    tracing::Span::current().record("order_id", tracing::field::display(order_id));
}

/// An error answered as `{"error": message}` with a 4xx/5xx status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            details: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }
}

/// A request body we cannot read is the client's to fix: 400, with the same reason a message
/// would carry to the DLQ.
impl From<saga_domain::wire::Malformed> for ApiError {
    fn from(e: saga_domain::wire::Malformed) -> Self {
        Self::bad_request(e.0)
    }
}

impl warp::reject::Reject for ApiError {}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        let details = match self.details {
            Some(serde_json::Value::Object(details)) => details,
            _ => serde_json::Map::new(),
        };
        let body = ErrorBody {
            error: self.message,
            details,
        };
        warp::reply::with_status(warp::reply::json(&body), self.status).into_response()
    }
}

/// The JSON body of every error answer ([`ApiError`]): `{"error": "..."}`, beside what the error
/// names, such as the `field` and its `limit`, or the `order_id`.
#[derive(Debug, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What went wrong, in words a person can act on.
    pub error: String,
    /// What the error names, beside `error` (the schema allows any other property).
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// Turn every rejection into a JSON error, so no client ever sees warp's plain-text defaults.
pub async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    let error = if let Some(api) = rejection.find::<ApiError>() {
        ApiError {
            status: api.status,
            message: api.message.clone(),
            details: api.details.clone(),
        }
    } else if rejection.is_not_found() {
        ApiError::not_found("no such route")
    } else if let Some(e) = rejection.find::<warp::filters::body::BodyDeserializeError>() {
        ApiError::bad_request(format!("invalid JSON body: {e}"))
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
    } else if rejection
        .find::<warp::reject::UnsupportedMediaType>()
        .is_some()
    {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the body as application/json",
        )
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        ApiError::new(StatusCode::LENGTH_REQUIRED, "a Content-Length is required")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on this route",
        )
    } else if rejection.find::<warp::reject::InvalidQuery>().is_some() {
        ApiError::bad_request("invalid query string")
    } else if let Some(header) = rejection.find::<warp::reject::InvalidHeader>() {
        // A header a route reads with warp's typed filters, in a form they cannot read (not
        // ASCII, not a number): the client's to fix, so a 400 naming it, never a 500.
        ApiError::bad_request(format!("header {} is not valid", header.name()))
            .with_details(json!({ "field": header.name() }))
    } else if let Some(header) = rejection.find::<warp::reject::MissingHeader>() {
        ApiError::bad_request(format!("header {} is required", header.name()))
            .with_details(json!({ "field": header.name() }))
    } else {
        tracing::warn!(?rejection, "unhandled rejection");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    };
    metrics::counter!("saga_http_errors_total", "status" => error.status.as_u16().to_string())
        .increment(1);
    Ok(error.into_response())
}

/// What `/ready` checks: every broker connection the service holds, and Redis: reachable, and,
/// behind Sentinel, a master with the replicas its writes wait for.
///
/// `broker` and `redis` say `up` or `down`; `broker_detail` and `redis_detail` say why. A
/// cluster that lost the majority of its nodes pauses the rest (pause_minority), so a lost
/// quorum shows as "none of the N nodes answered"; a missing Redis master as Sentinel naming
/// none, or naming a node that is not (yet) one.
///
/// `problems` names every watched task that is down and every queue the broker refuses
/// ([`crate::service::watch`]): any of them makes the service not ready.
#[derive(Clone)]
pub struct Readiness {
    pub brokers: Vec<Arc<BrokerStatus>>,
    pub redis: Redis,
    pub watchdog: Arc<Watchdog>,
}

impl Readiness {
    async fn report(&self) -> (bool, ReadyChecks) {
        let broker = self.brokers.iter().all(|b| b.is_up());
        let broker_detail = if broker {
            "connected".to_owned()
        } else {
            crate::amqp::last_connect_failure().unwrap_or_else(|| "connecting".to_owned())
        };
        let redis = self.redis.readiness().await;
        let redis_up = redis.is_ok();
        let redis_detail = redis.unwrap_or_else(|why| why);
        let problems = self.watchdog.problems();
        (
            broker && redis_up && problems.is_empty(),
            ReadyChecks {
                broker: UpDown::of(broker),
                broker_detail,
                redis: UpDown::of(redis_up),
                redis_detail,
                problems,
            },
        )
    }
}

/// `GET /health`: the process is alive and answering.
#[derive(Debug, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// Always `ok`.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^ok$"))]
    pub status: &'static str,
    /// The service answering, e.g. `order-svc`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub service: &'static str,
}

/// `GET /ready` (200 when ready, 503 when not): whether the service can do its work, and why not.
#[derive(Debug, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Ready {
    pub ready: bool,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub service: &'static str,
    pub checks: ReadyChecks,
}

/// What `/ready` checked (see [`Readiness`]).
#[derive(Debug, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReadyChecks {
    pub broker: UpDown,
    /// `connected`, or why not.
    pub broker_detail: String,
    pub redis: UpDown,
    /// Why Redis is up or down, in words.
    pub redis_detail: String,
    /// Every watched task that is down and every queue the broker refuses, with why.
    pub problems: std::collections::BTreeMap<String, String>,
}

/// A dependency's state as `/ready` tells it.
#[derive(Debug, Clone, Copy, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum UpDown {
    Up,
    Down,
}

impl UpDown {
    fn of(up: bool) -> Self {
        if up { Self::Up } else { Self::Down }
    }
}

/// `GET /health` (alive), `GET /ready` (dependencies reachable), `GET /metrics` (Prometheus).
pub fn ops_routes(
    service: &'static str,
    readiness: Readiness,
    metrics: PrometheusHandle,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let health = warp::path!("health").and(warp::get()).map(move || {
        warp::reply::json(&Health {
            status: "ok",
            service,
        })
        .into_response()
    });
    let ready = warp::path!("ready").and(warp::get()).then(move || {
        let readiness = readiness.clone();
        async move {
            let (ok, checks) = readiness.report().await;
            let status = if ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body = Ready {
                ready: ok,
                service,
                checks,
            };
            warp::reply::with_status(warp::reply::json(&body), status).into_response()
        }
    });
    let metrics = warp::path!("metrics").and(warp::get()).map(move || {
        warp::reply::with_header(
            metrics.render(),
            "content-type",
            "text/plain; version=0.0.4",
        )
        .into_response()
    });
    health.or(ready).unify().or(metrics).unify()
}

/// The most of a too-large body that is read and thrown away before answering 413. Clients such
/// as Python's `http.client` (hence `requests`) write the whole body before they read a byte of
/// the answer: were the connection closed with their body unread, they would see a reset
/// instead of the 413. Beyond this bound the answer is still 413, but the connection is closed.
pub const DISCARD_AT_MOST: u64 = 4 * 1024 * 1024;

/// The request body, if it is at most `limit` bytes (declared or chunked); otherwise a 413 JSON
/// error, after reading and discarding up to [`DISCARD_AT_MOST`] bytes of it.
pub fn body_up_to(limit: u64) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(move |declared: Option<u64>, body| async move {
            read_up_to(declared, body, limit)
                .await
                .map_err(warp::reject::custom)
        })
}

async fn read_up_to<S, B>(declared: Option<u64>, body: S, limit: u64) -> Result<Bytes, ApiError>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body too large (at most {limit} bytes)"),
        )
    };
    if declared.is_some_and(|n| n > DISCARD_AT_MOST) {
        return Err(too_large());
    }
    let mut body = std::pin::pin!(body);
    let mut kept = BytesMut::new();
    let mut seen: u64 = 0;
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk
            .map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
        seen += chunk.remaining() as u64;
        if seen > DISCARD_AT_MOST {
            return Err(too_large());
        }
        if seen <= limit {
            kept.put(&mut chunk);
        } else {
            chunk.advance(chunk.remaining());
        }
    }
    if seen > limit {
        return Err(too_large());
    }
    Ok(kept.freeze())
}

/// Bind `addr` (port 0 picks a free one) and return the listener with its real address.
///
/// # Errors
/// The address is in use or not ours to bind.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    // Under a target of its own, so a filter that hides everything else (the benchmark runs
    // services at `warn`) can still let it through: whoever started us on port 0 learns the port
    // from this line (testkit's `ServiceProcess`).
    tracing::info!(target: "listening", "listening on http://{local}");
    Ok((listener, local))
}

/// Serve `routes` on `listener` until `shutdown`, then let open requests finish.
pub async fn serve<F>(listener: tokio::net::TcpListener, routes: F, shutdown: CancellationToken)
where
    F: Filter + Clone + Send + Sync + 'static,
    F::Extract: Reply,
{
    warp::serve(routes)
        .incoming(listener)
        .graceful(async move { shutdown.cancelled().await })
        .run()
        .await;
}

/// Count a request by route and status (for `/metrics`).
pub fn count_request(route: &'static str, status: StatusCode) {
    metrics::counter!("saga_http_requests_total", "route" => route, "status" => status.as_u16().to_string())
        .increment(1);
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Mutex;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Everything the subscriber writes, for the test to read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    // Current-thread runtime: the server's tasks run on this thread, under this thread's
    // subscriber.
    #[tokio::test]
    async fn every_request_is_answered_in_a_span_with_its_status_latency_and_order() {
        let captured = Captured::default();
        let writer = captured.clone();
        // What a person asking for the request lines gets.
        let rust_log = format!("info,{REQUEST_LOG_TARGET}=debug");
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(crate::service::telemetry::log_filter(Some(&rust_log)))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);

        let order = warp::path!("order" / String).map(|id: String| {
            record_order_id(&id);
            warp::reply().into_response()
        });
        let routes = traced(order.recover(recover).unify());
        let (listener, addr) = bind(([127, 0, 0, 1], 0).into()).await.unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, routes, shutdown.clone()));

        assert!(get(addr, "/order/o-1").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/nowhere").await.starts_with("HTTP/1.1 404"));
        shutdown.cancel();
        server.await.unwrap();

        let log = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
        let answered: Vec<&str> = log.lines().filter(|l| l.contains("answered")).collect();
        assert_eq!(answered.len(), 2, "{log}");
        for (line, fields) in answered.iter().zip([
            [
                "method=GET",
                "path=/order/o-1",
                "order_id=o-1",
                "status=200",
            ],
            ["method=GET", "path=/nowhere", "status=404", "latency_ms="],
        ]) {
            for field in fields {
                assert!(line.contains(field), "{field} missing in {line}");
            }
            assert!(line.contains("latency_ms="), "{line}");
        }
        assert!(
            !log.contains("processing request"),
            "warp's own events: {log}"
        );
    }
}
