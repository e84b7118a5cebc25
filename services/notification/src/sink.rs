//! Where notifications go: a log line (default), a JSON-lines file, or a webhook.
//!
//! **Delivery to the outside is at-least-once.** notification-svc records a notification as
//! sent only after the sink took it; if the record cannot be written (Redis blips between the
//! webhook's 2xx and the record), the retry calls the webhook again. So every webhook call
//! carries `Idempotency-Key: <order_id>/<outcome>` ([`idempotency_key`]), the same on every
//! attempt for one notification: a receiver that remembers the keys it has seen drops repeats.
//!
//! **A webhook URL is a secret** (credentials, a token in the query, a secret path): it is never
//! shown whole. Logs show it redacted ([`saga_platform::service::config::redact_url`]), and an error the sink
//! returns (which becomes the DLQ reason and the order's public `dlq_hops`) names no URL at all.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tracing::info;

pub use saga_domain::order::Notification;

/// `--sink log`, `--sink file:PATH` or `--sink webhook:URL`. Its `Debug` (what the start-up
/// line shows) redacts the webhook's URL.
#[derive(Clone, PartialEq, Eq)]
pub enum SinkSpec {
    Log,
    File(PathBuf),
    Webhook(String),
}

impl FromStr for SinkSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            _ if s == "log" => Ok(Self::Log),
            Some(("file", path)) if !path.is_empty() => Ok(Self::File(path.into())),
            Some(("webhook", url))
                if (url.starts_with("http://") || url.starts_with("https://"))
                    && reqwest::Url::parse(url).is_ok() =>
            {
                Ok(Self::Webhook(url.to_owned()))
            }
            _ => Err(format!(
                "expected log, file:PATH or webhook:http://..., got {s:?}"
            )),
        }
    }
}

impl fmt::Debug for SinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Log => f.write_str("Log"),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Webhook(url) => f
                .debug_tuple("Webhook")
                .field(&saga_platform::service::config::redact_url(url))
                .finish(),
        }
    }
}

/// The key a receiver dedupes on: one per notification (notification-svc sends at most one per
/// order and outcome), the same on every retry of it.
pub fn idempotency_key(n: &Notification) -> String {
    // `/` is in no order id (see saga_domain::ids), so the key reads back unambiguously.
    format!("{}/{}", n.order_id, n.outcome)
}

/// A configured sink.
#[derive(Clone)]
pub enum Sink {
    Log,
    File(PathBuf),
    Webhook {
        url: String,
        client: reqwest::Client,
    },
}

impl Sink {
    pub fn new(spec: &SinkSpec) -> Self {
        match spec {
            SinkSpec::Log => Self::Log,
            SinkSpec::File(path) => Self::File(path.clone()),
            SinkSpec::Webhook(url) => Self::Webhook {
                url: url.clone(),
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap_or_default(),
            },
        }
    }

    /// Deliver one notification.
    ///
    /// # Errors
    /// The file cannot be written or the webhook did not answer 2xx: the caller retries.
    pub async fn deliver(&self, n: &Notification) -> anyhow::Result<()> {
        match self {
            Self::Log => {}
            Self::File(path) => {
                let mut line = serde_json::to_vec(n)?;
                line.push(b'\n');
                let mut file = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await?;
                file.write_all(&line).await?;
                file.flush().await?;
            }
            Self::Webhook { url, client } => {
                // reqwest's errors quote the URL: it is dropped from them (see the module doc).
                let response = client
                    .post(url)
                    .header("idempotency-key", idempotency_key(n))
                    .json(n)
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("webhook did not answer: {}", e.without_url()))?;
                anyhow::ensure!(
                    response.status().is_success(),
                    "webhook answered {}",
                    response.status()
                );
            }
        }
        info!(order_id = %n.order_id, outcome = %n.outcome, student_id = n.student_id.as_deref().unwrap_or("-"),
              "notified: {}", n.message);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sinks() {
        assert_eq!("log".parse(), Ok(SinkSpec::Log));
        assert_eq!(
            "file:/tmp/n.jsonl".parse(),
            Ok(SinkSpec::File("/tmp/n.jsonl".into()))
        );
        assert!(matches!(
            "webhook:http://127.0.0.1:9/x".parse(),
            Ok(SinkSpec::Webhook(_))
        ));
        assert!("webhook:ftp://x".parse::<SinkSpec>().is_err());
        assert!("webhook:http://".parse::<SinkSpec>().is_err());
        assert!("smoke-signals".parse::<SinkSpec>().is_err());
    }

    #[test]
    fn a_webhook_url_is_shown_redacted() {
        let spec: SinkSpec = "webhook:http://user:secret@hooks.example/path?token=t0k"
            .parse()
            .unwrap();
        let shown = format!("{spec:?}");
        assert!(
            !shown.contains("secret") && !shown.contains("t0k"),
            "{shown}"
        );
        assert!(shown.contains("hooks.example"), "{shown}");
    }

    #[test]
    fn one_key_per_notification() {
        let n = Notification {
            order_id: "o-1".into(),
            outcome: saga_domain::order::NotificationOutcome::Reserved,
            event_id: "e-1".into(),
            ..Default::default()
        };
        let again = Notification {
            event_id: "e-2".into(),
            at_ms: 5,
            ..n.clone()
        };
        assert_eq!(idempotency_key(&n), "o-1/reserved");
        assert_eq!(idempotency_key(&n), idempotency_key(&again));
    }
}
