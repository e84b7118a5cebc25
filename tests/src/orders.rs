//! Driving order-svc over real HTTP: the kit's [`OrderClient`], reached through a test's env.

use std::time::Duration;

use serde_json::Value;
use testkit::{Endpoint, OrderClient};

use crate::TestEnv;

/// The statuses an order ends in, from the domain.
pub const FINAL: [&str; 3] = sagactl::check::FINAL_STATUSES;

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

    /// `GET /order/{id}` body, or `None` on 404.
    ///
    /// # Errors
    /// order-svc unreachable or another status.
    pub async fn get_order(
        &self,
        order_svc: &impl Endpoint,
        id: &str,
    ) -> anyhow::Result<Option<Value>> {
        self.orders(order_svc).get(id).await
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
    ) -> anyhow::Result<Value> {
        self.orders(order_svc).wait_final(id, timeout).await
    }

    /// Wait until the order has exactly `status`.
    ///
    /// # Errors
    /// It did not within `timeout`.
    pub async fn wait_status(
        &self,
        order_svc: &impl Endpoint,
        id: &str,
        status: &str,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        self.orders(order_svc)
            .wait_status(id, status, timeout)
            .await
    }
}
