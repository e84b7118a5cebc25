//! The client side of order-svc's HTTP API, as a person's `curl` would use it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use saga_domain::order::OrderStatus;
use saga_domain::view::{OrderAck, OrderView};
use serde::Deserialize;
use serde_json::{Value, json};

/// What one `POST /order` came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// 201, with the new order's id.
    Accepted(String),
    /// Any other status, with the JSON body (`Null` if it had none).
    Refused { status: u16, body: Value },
    /// No answer at all (refused connection, timeout).
    Failed(String),
}

impl Answer {
    pub fn order_id(&self) -> Option<&str> {
        match self {
            Self::Accepted(id) => Some(id),
            _ => None,
        }
    }

    /// A 503 with a JSON `error`: "come back later", said the way the API promises.
    pub fn is_unavailable_json(&self) -> bool {
        matches!(self, Self::Refused { status: 503, body } if body["error"].is_string())
    }
}

/// `{"item": .., "qty": .., "student_id": ..}`, the body of `POST /order`.
pub fn order_body(item: &str, qty: i64, student_id: &str) -> Value {
    json!({ "item": item, "qty": qty, "student_id": student_id })
}

/// One order-svc, by its base URL; cheap to clone (one connection pool).
#[derive(Clone, Debug)]
pub struct OrderClient {
    http: reqwest::Client,
    base: String,
}

impl OrderClient {
    /// A client for the order-svc at `base` (e.g. `http://127.0.0.1:40123`); `timeout` bounds
    /// each request.
    pub fn new(base: &str, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap_or_default();
        Self::with_http(http, base)
    }

    /// A client for `base` on an HTTP client the caller already has (and its connection pool).
    pub fn with_http(http: reqwest::Client, base: &str) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// POST an order body as it is (already serialized: a load run builds it once).
    pub async fn post(&self, body: Bytes) -> Answer {
        match self.post_raw(body).await {
            Ok((201, body)) if body["order_id"].is_string() => {
                Answer::Accepted(body["order_id"].as_str().unwrap_or_default().to_owned())
            }
            Ok((status, body)) => Answer::Refused { status, body },
            Err(why) => Answer::Failed(why),
        }
    }

    /// The status and JSON body (`Null` if none) of one POST, or why there was no answer.
    async fn post_raw(&self, body: Bytes) -> Result<(u16, Value), String> {
        let response = self
            .http
            .post(format!("{}/order", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("{:#}", anyhow::Error::new(e)))?;
        let status = response.status().as_u16();
        // Read the body either way, so the connection goes back to the pool.
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// `POST /order`; the status code and the JSON body (raw: a refusal's body is whatever the
    /// service said, and that is what a caller checks).
    ///
    /// # Errors
    /// order-svc unreachable.
    pub async fn post_order(&self, item: &str, qty: i64) -> anyhow::Result<(u16, Value)> {
        let body = Bytes::from(order_body(item, qty, "s1").to_string());
        self.post_raw(body)
            .await
            .map_err(|why| anyhow::anyhow!("POST /order: {why}"))
    }

    /// Place an order that must be accepted; its id.
    ///
    /// # Errors
    /// Not a 201.
    pub async fn place(&self, item: &str, qty: i64) -> anyhow::Result<String> {
        let (status, body) = self.post_order(item, qty).await?;
        anyhow::ensure!(status == 201, "POST /order answered {status}: {body}");
        let ack = OrderAck::deserialize(&body)
            .map_err(|e| anyhow::anyhow!("not an order's acknowledgement ({e}): {body}"))?;
        Ok(ack.order_id)
    }

    /// `POST /order/{id}/cancel` with a reason; the status code and the JSON body.
    ///
    /// # Errors
    /// order-svc unreachable.
    pub async fn cancel(&self, id: &str, reason: &str) -> anyhow::Result<(u16, Value)> {
        let r = self
            .http
            .post(format!("{}/order/{id}/cancel", self.base))
            .json(&json!({ "reason": reason }))
            .send()
            .await?;
        Ok((r.status().as_u16(), r.json().await.unwrap_or(Value::Null)))
    }

    /// `PATCH /order/{id}/status`: ask for SHIPPED, DELIVERED or CANCELLED (a cancel), with an
    /// optional note and who asks (order-svc records `api` when nobody says).
    ///
    /// # Errors
    /// order-svc unreachable.
    pub async fn set_status(
        &self,
        id: &str,
        target: OrderStatus,
        note: Option<&str>,
        updated_by: Option<&str>,
    ) -> anyhow::Result<StatusAnswer> {
        let r = self
            .http
            .patch(format!("{}/order/{id}/status", self.base))
            .json(&status_body(target, note, updated_by))
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok(StatusAnswer::read(
            status,
            r.json().await.unwrap_or(Value::Null),
        ))
    }

    /// `GET /order/{id}` as the domain's view, or `None` on 404.
    ///
    /// # Errors
    /// order-svc unreachable, another status, or a body that is not an order.
    pub async fn get(&self, id: &str) -> anyhow::Result<Option<OrderView>> {
        let r = self
            .http
            .get(format!("{}/order/{id}", self.base))
            .send()
            .await?;
        match r.status().as_u16() {
            200 => Ok(Some(r.json().await?)),
            404 => Ok(None),
            s => anyhow::bail!("GET /order/{id} answered {s}"),
        }
    }
}

/// What one `PATCH /order/{id}/status` came to.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusAnswer {
    /// 200: the move was applied; the order as it is now.
    Moved(Box<OrderView>),
    /// 409: the order's status does not allow it; what it is and what it may become.
    Conflict {
        status: OrderStatus,
        allowed: Vec<OrderStatus>,
        error: String,
    },
    /// 404: no such order; `expired` when order-svc says it was compacted after retention.
    NotFound { expired: bool, error: String },
    /// Any other status (a 400 for a bad body), with order-svc's JSON body.
    Refused { status: u16, body: Value },
}

/// The 409 body of a refused PATCH, as order-svc writes it.
#[derive(Deserialize)]
struct ConflictBody {
    status: OrderStatus,
    #[serde(default)]
    allowed: Vec<OrderStatus>,
    #[serde(default)]
    error: String,
}

impl StatusAnswer {
    /// Read order-svc's answer (status code and JSON body) into its meaning. A 200 or a 409
    /// whose body is not what the API promises is a `Refused`, so that nothing is lost.
    pub fn read(status: u16, body: Value) -> Self {
        let error = body["error"].as_str().unwrap_or_default().to_owned();
        match status {
            200 => match OrderView::deserialize(&body) {
                Ok(view) => Self::Moved(Box::new(view)),
                Err(_) => Self::Refused { status, body },
            },
            409 => match ConflictBody::deserialize(&body) {
                Ok(c) => Self::Conflict {
                    status: c.status,
                    allowed: c.allowed,
                    error: c.error,
                },
                Err(_) => Self::Refused { status, body },
            },
            // order-svc's own 404 says why in JSON; a bare one is a route it does not have.
            404 if body["error"].is_string() => Self::NotFound {
                expired: body["expired"].as_bool().unwrap_or(false),
                error,
            },
            _ => Self::Refused { status, body },
        }
    }
}

/// `{"status": .., "note": .., "updated_by": ..}`, the body of `PATCH /order/{id}/status`
/// (note and updated_by only when given).
pub fn status_body(target: OrderStatus, note: Option<&str>, updated_by: Option<&str>) -> Value {
    let mut body = json!({ "status": target });
    if let Some(note) = note {
        body["note"] = json!(note);
    }
    if let Some(by) = updated_by {
        body["updated_by"] = json!(by);
    }
    body
}

/// One answer of a load run, with its times.
#[derive(Debug, Clone)]
pub struct Timed {
    /// When the schedule wanted it sent (open loop), or when it was sent (closed loop).
    pub due: Instant,
    pub sent: Instant,
    pub answered: Instant,
    pub answer: Answer,
}

impl Timed {
    /// How long the request took.
    pub fn latency(&self) -> Duration {
        self.answered.saturating_duration_since(self.sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflict_reads_as_the_status_and_what_it_may_become() {
        let body = json!({
            "error": "order o-1 is CONFIRMED; from CONFIRMED it may become SHIPPED or CANCELLED",
            "order_id": "o-1", "status": "CONFIRMED", "allowed": ["SHIPPED", "CANCELLED"]
        });
        match StatusAnswer::read(409, body) {
            StatusAnswer::Conflict {
                status, allowed, ..
            } => {
                assert_eq!(status, OrderStatus::Confirmed);
                assert_eq!(allowed, vec![OrderStatus::Shipped, OrderStatus::Cancelled]);
            }
            other => panic!("not a conflict: {other:?}"),
        }
        let finished = json!({"error": "x", "status": "DELIVERED", "allowed": []});
        assert!(matches!(
            StatusAnswer::read(409, finished),
            StatusAnswer::Conflict { allowed, .. } if allowed.is_empty()
        ));
    }

    #[test]
    fn not_found_says_whether_it_expired_and_odd_bodies_are_kept() {
        let gone = json!({"error": "order o-1 expired", "order_id": "o-1", "expired": true});
        assert!(matches!(
            StatusAnswer::read(404, gone),
            StatusAnswer::NotFound { expired: true, .. }
        ));
        assert!(matches!(
            StatusAnswer::read(404, Value::Null),
            StatusAnswer::Refused { status: 404, .. }
        ));
        let odd = json!({"error": "what"});
        assert!(matches!(
            StatusAnswer::read(409, odd),
            StatusAnswer::Refused { status: 409, .. }
        ));
        assert!(matches!(
            StatusAnswer::read(400, json!({"error": "unknown status"})),
            StatusAnswer::Refused { status: 400, .. }
        ));
    }

    #[test]
    fn the_body_names_only_what_was_given() {
        assert_eq!(
            status_body(OrderStatus::Shipped, None, None),
            json!({"status": "SHIPPED"})
        );
        assert_eq!(
            status_body(OrderStatus::Delivered, Some("at the door"), Some("courier")),
            json!({"status": "DELIVERED", "note": "at the door", "updated_by": "courier"})
        );
    }
}
