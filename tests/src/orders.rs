//! Driving order-svc over real HTTP: the client crate's [`OrderClient`], reached through a
//! test's env, and the typed waits every test uses (an [`OrderView`] out, an [`OrderStatus`] in;
//! no JSON digging for a status).

use std::time::Duration;

use saga_client::OrderClient;
use saga_domain::order::OrderStatus;
use saga_domain::view::OrderView;
use serde_json::{Value, json};
use testkit::Endpoint;

use crate::TestEnv;

/// The statuses an order's timeline went through, oldest first.
pub fn timeline(view: &OrderView) -> Vec<OrderStatus> {
    view.history.iter().map(|entry| entry.status).collect()
}

impl TestEnv {
    /// A client for `order_svc`, on this env's HTTP client (one connection pool for the test,
    /// not a new one for every poll of `wait_final`).
    pub fn orders(&self, order_svc: &impl Endpoint) -> OrderClient {
        OrderClient::with_http(self.http().clone(), &order_svc.url(""))
    }

    /// `POST /order`; returns the status code and the JSON body.
    ///
    /// # Errors
    /// order-svc unreachable.
    pub async fn post_order(
        &self,
        order_svc: &impl Endpoint,
        item: &str,
        qty: i64,
    ) -> anyhow::Result<(u16, Value)> {
        self.orders(order_svc).post_order(item, qty).await
    }

    /// Place an order that must be accepted; returns its id.
    ///
    /// # Errors
    /// Not a 201.
    pub async fn place(
        &self,
        order_svc: &impl Endpoint,
        item: &str,
        qty: i64,
    ) -> anyhow::Result<String> {
        self.orders(order_svc).place(item, qty).await
    }

    /// `POST /order` of several lines (`{"items": [{"item", "qty"}, ...], "student_id"}`): version 2
    /// of OrderPlaced and of the outcomes about it. The new order's id.
    ///
    /// # Errors
    /// order-svc unreachable, or not a 201 with an id.
    pub async fn place_lines(
        &self,
        order_svc: &impl Endpoint,
        lines: &[(&str, i64)],
    ) -> anyhow::Result<String> {
        let items: Vec<Value> = lines
            .iter()
            .map(|(item, qty)| json!({"item": item, "qty": qty}))
            .collect();
        let r = self
            .http()
            .post(order_svc.url("/order"))
            .json(&json!({"items": items, "student_id": "s-lines"}))
            .send()
            .await?;
        let status = r.status().as_u16();
        let body: Value = r.json().await?;
        anyhow::ensure!(status == 201, "POST /order answered {status}: {body}");
        body["order_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("POST /order answered no order_id: {body}"))
    }

    /// `GET /order/{id}`, or `None` on 404.
    ///
    /// # Errors
    /// order-svc unreachable or another status.
    pub async fn get_order(
        &self,
        order_svc: &impl Endpoint,
        id: &str,
    ) -> anyhow::Result<Option<OrderView>> {
        self.orders(order_svc).get(id).await
    }

    /// `GET /order/{id}` of an order that must exist.
    ///
    /// # Errors
    /// order-svc unreachable, or no such order.
    pub async fn order(&self, order_svc: &impl Endpoint, id: &str) -> anyhow::Result<OrderView> {
        self.get_order(order_svc, id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("GET /order/{id} answered 404"))
    }

    /// Wait until the order reaches a final status; returns the order.
    ///
    /// # Errors
    /// It did not within `timeout`.
    pub async fn wait_final(
        &self,
        order_svc: &impl Endpoint,
        id: &str,
        timeout: Duration,
    ) -> anyhow::Result<OrderView> {
        self.wait_order(order_svc, id, "final", timeout, OrderStatus::is_decided)
            .await
    }

    /// Wait until the order has exactly `status`; returns the order.
    ///
    /// # Errors
    /// It did not within `timeout`.
    pub async fn wait_status(
        &self,
        order_svc: &impl Endpoint,
        id: &str,
        status: OrderStatus,
        timeout: Duration,
    ) -> anyhow::Result<OrderView> {
        self.wait_order(order_svc, id, status.as_str(), timeout, |now| now == status)
            .await
    }

    async fn wait_order(
        &self,
        order_svc: &impl Endpoint,
        id: &str,
        what: &str,
        timeout: Duration,
        done: impl Fn(OrderStatus) -> bool,
    ) -> anyhow::Result<OrderView> {
        let client = self.orders(order_svc);
        crate::eventually(&format!("order {id} {what}"), timeout, || async {
            match client.get(id).await {
                Ok(Some(view)) if done(view.order.status) => Ok(view),
                Ok(seen) => Err(format!("{seen:?}")),
                Err(e) => Err(format!("{e:#}")),
            }
        })
        .await
    }
}

/// Which of order-svc's two paths a `PATCH .../status` goes to: its own, or the one the lab's
/// seed uses. Both must answer alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusPath {
    /// `/order/{id}/status`
    Order,
    /// `/api/v1/orders/{id}/status`
    ApiV1,
}

impl StatusPath {
    pub const BOTH: [StatusPath; 2] = [Self::Order, Self::ApiV1];

    /// The path for order `id`.
    pub fn of(self, id: &str) -> String {
        match self {
            Self::Order => format!("/order/{id}/status"),
            Self::ApiV1 => format!("/api/v1/orders/{id}/status"),
        }
    }
}

impl TestEnv {
    /// `PATCH .../status` with a body as it is (bad JSON included); the status code and the
    /// JSON body (`Null` if the answer is not JSON).
    ///
    /// # Errors
    /// order-svc unreachable.
    pub async fn patch_status_raw(
        &self,
        order_svc: &impl Endpoint,
        path: StatusPath,
        id: &str,
        body: impl Into<reqwest::Body>,
    ) -> anyhow::Result<(u16, Value)> {
        let r = self
            .http()
            .patch(order_svc.url(&path.of(id)))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?;
        Ok((r.status().as_u16(), r.json().await.unwrap_or(Value::Null)))
    }

    /// `PATCH .../status` asking for `status`, said to be by `updated_by` if given.
    ///
    /// # Errors
    /// order-svc unreachable.
    pub async fn patch_status(
        &self,
        order_svc: &impl Endpoint,
        path: StatusPath,
        id: &str,
        status: OrderStatus,
        updated_by: Option<&str>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut body = serde_json::json!({ "status": status, "note": "from the lifecycle tests" });
        if let Some(who) = updated_by {
            body["updated_by"] = who.into();
        }
        self.patch_status_raw(order_svc, path, id, body.to_string())
            .await
    }

    /// Every order id in order-svc's index, oldest first.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn order_ids(&self) -> anyhow::Result<Vec<String>> {
        use redis::AsyncCommands as _;
        Ok(self
            .redis()
            .await?
            .zrange(self.keys.orders(), 0, -1)
            .await?)
    }
}
