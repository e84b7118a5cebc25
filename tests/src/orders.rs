//! Driving order-svc over real HTTP: the client crate's [`OrderClient`], reached through a
//! test's env, and the typed waits every test uses (an [`OrderView`] out, an [`OrderStatus`] in;
//! no JSON digging for a status).

use std::time::Duration;

use saga_client::OrderClient;
use saga_domain::order::OrderStatus;
use saga_domain::view::OrderView;
use serde_json::Value;
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
