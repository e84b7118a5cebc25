//! Where notifications go: a log line (default), a JSON-lines file, or a webhook.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tracing::info;

pub use shared::domain::Notification;

/// `--sink log`, `--sink file:PATH` or `--sink webhook:URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
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
            Some(("webhook", url)) if url.starts_with("http://") || url.starts_with("https://") => {
                Ok(Self::Webhook(url.to_owned()))
            }
            _ => Err(format!(
                "expected log, file:PATH or webhook:http://..., got {s:?}"
            )),
        }
    }
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
                let response = client.post(url).json(n).send().await?;
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
        assert!("smoke-signals".parse::<SinkSpec>().is_err());
    }
}
