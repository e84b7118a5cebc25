//! JSON over HTTP to the saga's services.
//!
//! Every service answers errors as `{"error": "..."}` with a 4xx/5xx status; [`ServiceApi`] turns
//! those into one readable error line that names the service and quotes its reason.

use std::time::Duration;

use anyhow::{Context, anyhow};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

/// One service's HTTP API, e.g. order-svc at `http://127.0.0.1:5001`.
#[derive(Debug, Clone)]
pub struct ServiceApi {
    name: &'static str,
    base: String,
    client: reqwest::Client,
}

impl ServiceApi {
    /// # Errors
    /// The HTTP client could not be built (no TLS backend is needed for `http://`).
    pub fn new(name: &'static str, base: &str) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            name,
            base: base.trim_end_matches('/').to_owned(),
            client,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path`, expecting a 2xx JSON answer.
    ///
    /// # Errors
    /// Unreachable, or a non-2xx answer (with the service's `error` text).
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.client.get(self.url(path))).await
    }

    /// `POST path` with a JSON body.
    ///
    /// # Errors
    /// As [`ServiceApi::get`].
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.client.post(self.url(path)).json(body)).await
    }

    /// `PUT path` with a JSON body.
    ///
    /// # Errors
    /// As [`ServiceApi::get`].
    pub async fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.client.put(self.url(path)).json(body)).await
    }

    /// `POST path` with a JSON body; the answer's status and JSON body whatever the status,
    /// for a caller that passes the service's own verdict on (the board).
    ///
    /// # Errors
    /// Unreachable, or an answer that is not JSON.
    pub async fn post_answer(
        &self,
        path: &str,
        body: &Value,
    ) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        self.answer(self.client.post(self.url(path)).json(body))
            .await
    }

    /// `PATCH path` with a JSON body; the answer's status and JSON body whatever the status
    /// (as [`ServiceApi::post_answer`]).
    ///
    /// # Errors
    /// Unreachable, or an answer that is not JSON.
    pub async fn patch_answer(
        &self,
        path: &str,
        body: &Value,
    ) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        self.answer(self.client.patch(self.url(path)).json(body))
            .await
    }

    async fn answer(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {} at {}", self.name, self.base))?;
        let status = response.status();
        let body = response
            .json()
            .await
            .with_context(|| format!("{} answered {status} with non-JSON", self.name))?;
        Ok((status, body))
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {} at {}", self.name, self.base))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("{} answered {status} but the body was lost", self.name))?;
        let body: Option<Value> = serde_json::from_str(&text).ok();
        if status.is_success() {
            return body.ok_or_else(|| anyhow!("{} answered {status} with non-JSON", self.name));
        }
        let reason = body
            .as_ref()
            .and_then(|b| b.get("error"))
            .and_then(Value::as_str)
            .map_or_else(|| text.trim().to_owned(), str::to_owned);
        Err(anyhow!("{} answered {status}: {reason}", self.name))
    }
}

/// Everything but RFC 3986's unreserved characters (letters, digits, `-._~`).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encode one URL path segment: everything but unreserved characters (RFC 3986), so a
/// vhost `/` becomes `%2F` and an id can never add a path segment of its own.
pub fn encode_path_segment(segment: &str) -> String {
    utf8_percent_encode(segment, PATH_SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_path_segments() {
        assert_eq!(encode_path_segment("/"), "%2F");
        assert_eq!(encode_path_segment("sagactl-dev"), "sagactl-dev");
        assert_eq!(encode_path_segment("a b/c"), "a%20b%2Fc");
        assert_eq!(encode_path_segment("dlq_queue"), "dlq_queue");
    }

    #[test]
    fn encodes_what_would_change_the_path_or_its_meaning() {
        // Each UTF-8 byte on its own, a percent sign so it is not read as an escape, and the
        // query and fragment marks so they stay part of the segment.
        assert_eq!(encode_path_segment("café"), "caf%C3%A9");
        assert_eq!(encode_path_segment("100%"), "100%25");
        assert_eq!(encode_path_segment("a?b#c"), "a%3Fb%23c");
        assert_eq!(encode_path_segment("~x.y"), "~x.y");
    }
}
