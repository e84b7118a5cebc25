//! The client side of order-svc's HTTP API, as a person's `curl` would use it.

use std::time::{Duration, Instant};

use bytes::Bytes;
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
