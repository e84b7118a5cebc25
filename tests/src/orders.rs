//! Driving order-svc over real HTTP.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{Service, TestEnv, eventually};

/// The statuses an order ends in, from the domain.
pub const FINAL: [&str; 3] = sagactl::check::FINAL_STATUSES;

impl TestEnv {
    /// `POST /order`; returns the status code and the JSON body.
    ///
    /// # Errors
    /// order-svc unreachable.
    pub async fn post_order(
        &self,
        order_svc: &Service,
        item: &str,
        qty: i64,
    ) -> anyhow::Result<(u16, Value)> {
        let r = self
            .http()
            .post(order_svc.url("/order"))
            .json(&json!({ "item": item, "qty": qty, "student_id": "s1" }))
            .send()
            .await?;
        Ok((r.status().as_u16(), r.json().await.unwrap_or(Value::Null)))
    }

    /// Place an order that must be accepted; returns its id.
    ///
    /// # Errors
    /// Not a 201.
    pub async fn place(&self, order_svc: &Service, item: &str, qty: i64) -> anyhow::Result<String> {
        let (status, body) = self.post_order(order_svc, item, qty).await?;
        anyhow::ensure!(status == 201, "POST /order answered {status}: {body}");
        body["order_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no order_id in {body}"))
    }

    /// `GET /order/{id}` body, or `None` on 404.
    ///
    /// # Errors
    /// order-svc unreachable or another status.
    pub async fn get_order(&self, order_svc: &Service, id: &str) -> anyhow::Result<Option<Value>> {
        let r = self
            .http()
            .get(order_svc.url(&format!("/order/{id}")))
            .send()
            .await?;
        match r.status().as_u16() {
            200 => Ok(Some(r.json().await?)),
            404 => Ok(None),
            s => anyhow::bail!("GET /order/{id} answered {s}"),
        }
    }

    /// Wait until the order reaches a final status; returns the order.
    ///
    /// # Errors
    /// It did not within `timeout`.
    pub async fn wait_final(
        &self,
        order_svc: &Service,
        id: &str,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        eventually(&format!("order {id} final"), timeout, || async {
            match self.get_order(order_svc, id).await {
                Ok(Some(o)) if FINAL.contains(&o["status"].as_str().unwrap_or("")) => Ok(o),
                Ok(o) => Err(format!("{o:?}")),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }

    /// Wait until the order has exactly `status`.
    ///
    /// # Errors
    /// It did not within `timeout`.
    pub async fn wait_status(
        &self,
        order_svc: &Service,
        id: &str,
        status: &str,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        eventually(&format!("order {id} {status}"), timeout, || async {
            match self.get_order(order_svc, id).await {
                Ok(Some(o)) if o["status"] == status => Ok(o),
                Ok(o) => Err(format!("{o:?}")),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }
}
