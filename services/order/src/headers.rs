//! The request headers order-svc reads, each parsed into its domain type at the edge, with its
//! limit ([`saga_domain::ids`] has the rules).
//!
//! A header that breaks its rule is the client's to fix: 400 JSON naming the header and its
//! limit (`{"error": "X-Correlation-Id: correlation id longer than 64 bytes", "field":
//! "X-Correlation-Id", "limit": "..."}`), never a value we carry on and fail with later. The
//! lesson behind this module: a 300-byte `X-Correlation-Id` on cancel was once taken as it came,
//! written to the outbox, and stopped the relay for good (an AMQP short string holds 255 bytes).

use saga_domain::ids::{
    CorrelationId, IdempotencyKey, Invalid, MAX_ID_LEN, MAX_IDEMPOTENCY_KEY_LEN,
};
use saga_domain::trace::{TRACEPARENT, TRACESTATE, Trace};
use saga_platform::service::http::ApiError;
use serde_json::json;
use warp::http::HeaderMap;

/// `X-Correlation-Id`: kept as the order's correlation id and sent as the events' AMQP
/// `correlation_id`.
pub const CORRELATION_ID: &str = "X-Correlation-Id";
/// `Idempotency-Key`: a retried request with the same key never places or cancels twice.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// The request's `X-Correlation-Id`, if it sent one.
///
/// # Errors
/// 400 naming the header and its limit.
pub fn correlation_id(headers: &HeaderMap) -> Result<Option<CorrelationId>, ApiError> {
    one(
        headers,
        CORRELATION_ID,
        CorrelationId::parse,
        format!("1 to {MAX_ID_LEN} bytes: ASCII letters, digits, '-', '_', '.', ':'"),
    )
}

/// A request's place in its trace.
#[derive(Debug, Clone)]
pub struct RequestTrace {
    /// The request's own span.
    pub span: Trace,
    /// The caller's span, when it sent one.
    pub parent: Option<u64>,
}

/// The request's span in its trace: a child of the `traceparent` (and `tracestate`) it came
/// with, or a new trace. Never refused: a header that is not a trace context starts a new
/// trace, as the W3C recommendation says (tracing must not stop work).
pub fn trace(headers: &HeaderMap) -> RequestTrace {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    match Trace::of_headers(text(TRACEPARENT), text(TRACESTATE)) {
        Some(caller) => RequestTrace {
            span: caller.child(),
            parent: Some(caller.context.span_id),
        },
        None => RequestTrace {
            span: Trace::root(),
            parent: None,
        },
    }
}

/// The request's `Idempotency-Key`, if it sent one.
///
/// # Errors
/// 400 naming the header and its limit.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    one(
        headers,
        IDEMPOTENCY_KEY,
        IdempotencyKey::parse,
        format!(
            "1 to {MAX_IDEMPOTENCY_KEY_LEN} bytes: ASCII letters, digits, '-', '_', '.', '+', '/', '='"
        ),
    )
}

/// Header `name` parsed, if present once; sent twice, it is refused rather than guessed at.
fn one<T>(
    headers: &HeaderMap,
    name: &'static str,
    parse: fn(&str) -> Result<T, Invalid>,
    limit: String,
) -> Result<Option<T>, ApiError> {
    let refuse = |why: String| {
        ApiError::bad_request(format!("{name}: {why}"))
            .with_details(json!({ "field": name, "limit": limit }))
    };
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(refuse("sent more than once; send it once".to_owned()));
    }
    let text = value
        .to_str()
        .map_err(|_| refuse("not visible ASCII".to_owned()))?;
    parse(text).map(Some).map_err(|e| refuse(e.0))
}

#[cfg(test)]
mod tests {
    use warp::http::HeaderValue;

    use super::*;

    fn with(name: &'static str, values: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(name, HeaderValue::from_bytes(value).unwrap());
        }
        headers
    }

    #[test]
    fn each_header_is_parsed_or_refused_naming_itself_and_its_limit() {
        assert_eq!(correlation_id(&HeaderMap::new()).unwrap(), None);
        let ok = correlation_id(&with(CORRELATION_ID, &[b"class-demo:42"])).unwrap();
        assert_eq!(ok.unwrap().as_str(), "class-demo:42");

        let long = "c".repeat(300);
        let err = correlation_id(&with(CORRELATION_ID, &[long.as_bytes()])).unwrap_err();
        assert_eq!(err.status, 400);
        assert_eq!(
            err.message,
            "X-Correlation-Id: correlation id longer than 64 bytes"
        );
        let details = err.details.unwrap();
        assert_eq!(details["field"], "X-Correlation-Id");
        assert!(details["limit"].as_str().unwrap().contains("64 bytes"));

        let twice = correlation_id(&with(CORRELATION_ID, &[b"a", b"b"])).unwrap_err();
        assert!(
            twice.message.contains("more than once"),
            "{}",
            twice.message
        );
        let latin1 = correlation_id(&with(CORRELATION_ID, &[b"caf\xe9"])).unwrap_err();
        assert!(latin1.message.contains("ASCII"), "{}", latin1.message);

        let key = "k".repeat(256);
        let err = idempotency_key(&with(IDEMPOTENCY_KEY, &[key.as_bytes()])).unwrap_err();
        assert_eq!(
            err.message,
            "Idempotency-Key: idempotency key longer than 255 bytes"
        );
        let err = idempotency_key(&with(IDEMPOTENCY_KEY, &[b"a b"])).unwrap_err();
        assert!(err.message.contains("contains ' '"), "{}", err.message);
    }
}
