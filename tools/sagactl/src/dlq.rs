//! `sagactl dlq ...`: look at, replay and purge the dead-letter queue.
//!
//! Looking must never lose a message. `list` and `show` take messages with `basic_get` without
//! acking, print them, and give them all back (see [`Held`]): the DLQ is the same afterwards.
//! `replay` republishes a message where it was first published, byte for byte, waits for the
//! broker's confirm and only *then* acks it off the DLQ, so a crash in between leaves it in the
//! DLQ (at worst also republished: consumers are idempotent). Messages are numbered from 1, in
//! queue order, as `list` shows them.
//!
//! The same operations are library functions ([`peek`], [`replay_at`], [`purge_all`]) for the
//! board, which shows the DLQ in a browser; the subcommands only print what they return.
//! `list --json` and `show --json` print the same as one JSON document ([`Listing`],
//! [`Message`]) for scripts.

use saga_domain::dlq::header;
use std::collections::BTreeMap;

use anyhow::{Context, anyhow, bail};
use clap::Subcommand;
use lapin::message::Delivery;
use lapin::options::QueuePurgeOptions;
use lapin::types::{AMQPValue, FieldTable};
use saga_domain::events::unix_now_secs;
use saga_platform::amqp::Publisher;
use saga_platform::amqp::properties::header_str;
use saga_platform::service::config::Common;
use serde::Serialize;
use serde_json::Value;

use crate::broker::{self, Held};
use crate::output::{Output, print_json};
use crate::provenance::{DeadLetteredBy, Provenance, is_dead_letter_header};

/// How much of a body `dlq list` shows.
const BODY_PREVIEW_CHARS: usize = 100;
/// The most messages held at once: beyond this many, numbers may shift on a quorum queue.
const HOLD_AT_MOST: usize = 10_000;

#[derive(Subcommand, Debug)]
pub enum DlqCommand {
    /// List dead-lettered messages with why, who and when; they stay in the DLQ.
    #[command(after_help = "Example:\n  sagactl dlq list --limit 5\n  sagactl dlq list --json")]
    List {
        /// Show at most this many, oldest first.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        output: Output,
    },
    /// Show message N in full: properties, every header, the whole body; it stays in the DLQ.
    #[command(after_help = "Example:\n  sagactl dlq show 1\n  sagactl dlq show 1 --json")]
    Show {
        /// Position in the DLQ, from 1 (as `dlq list` numbers them).
        n: usize,
        #[command(flatten)]
        output: Output,
    },
    /// Republish message N (or all) to its original exchange and routing key, then remove it.
    #[command(after_help = "Example:\n  sagactl dlq replay 1\n  sagactl dlq replay --all")]
    Replay {
        /// Replay every message in the DLQ (those there now; re-dead-lettered ones stay).
        #[arg(long, conflicts_with = "n")]
        all: bool,
        /// Position in the DLQ, from 1.
        #[arg(required_unless_present = "all")]
        n: Option<usize>,
    },
    /// Delete every message in the DLQ and say how many there were.
    #[command(after_help = "Example:\n  sagactl dlq purge")]
    Purge,
}

/// # Errors
/// Broker unreachable, no such message, or a replay the broker did not confirm.
pub async fn run(common: &Common, command: DlqCommand) -> anyhow::Result<()> {
    let dlq = common.topology.dlq_queue.as_str();
    let conn = broker::connect(&common.rabbitmq_url).await?;
    // A replay publishes to the saga's exchange: make sure it and its bindings exist.
    saga_platform::amqp::declare_topology(&conn, &common.topology)
        .await
        .context("declaring the saga's exchange and queues")?;
    let result = match command {
        DlqCommand::List { limit, output } => list(&conn, dlq, limit, output).await,
        DlqCommand::Show { n, output } => show(&conn, dlq, n, output).await,
        DlqCommand::Replay { all: true, .. } => replay_all(&conn, dlq).await,
        DlqCommand::Replay { n: Some(n), .. } => replay_one(&conn, dlq, n).await,
        DlqCommand::Replay { n: None, .. } => Err(anyhow!("say which message, or --all")),
        DlqCommand::Purge => purge(&conn, dlq).await,
    };
    let _ = conn.close(200, "done".into()).await;
    result
}

/// What `dlq list --json` prints: the DLQ's depth and its first messages, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listing {
    pub queue: String,
    /// Messages ready in the DLQ, shown or not.
    pub total: usize,
    pub entries: Vec<Entry>,
}

async fn list(
    conn: &lapin::Connection,
    dlq: &str,
    limit: usize,
    output: Output,
) -> anyhow::Result<()> {
    // `peek` gives every message back before anything is printed: a closed stdout must not be
    // what keeps them.
    let Peek { total, entries, .. } = peek(conn, dlq, limit.min(HOLD_AT_MOST)).await?;
    if output.json {
        return print_json(&Listing {
            queue: dlq.to_owned(),
            total,
            entries,
        });
    }
    let mut lines = vec![format!("{dlq}: {total} message(s)")];
    if total > entries.len() {
        lines[0].push_str(&format!(", showing the first {}", entries.len()));
    }
    for dead in &entries {
        lines.push(format!("#{:<3} reason   {}", dead.position, dead.reason));
        lines.push(format!(
            "     from     {} (routing key {}), {}",
            dead.service,
            dead.routing_key.as_deref().unwrap_or("?"),
            dead.age()
        ));
        lines.push(format!("     body     {}", dead.body_preview));
    }
    outln!("{}", lines.join("\n"))?;
    Ok(())
}

async fn show(conn: &lapin::Connection, dlq: &str, n: usize, output: Output) -> anyhow::Result<()> {
    let index = position(n)?;
    let held = Held::take(conn, dlq, n).await?;
    let message = held.messages.get(index).map(|m| Message::of(n, m));
    let count = held.messages.len();
    held.requeue_rest().await?;
    let Some(message) = message else {
        bail!("no message #{n}: {dlq} holds {count}");
    };
    if output.json {
        return print_json(&message);
    }
    outln!(
        "{}",
        message
            .describe(&format!("message #{n} of {dlq}"))
            .join("\n")
    )?;
    Ok(())
}

/// One DLQ message in full, as `dlq show` prints it: what [`Entry`] says about it, its
/// properties, every header, and the whole body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    #[serde(flatten)]
    pub entry: Entry,
    pub properties: Properties,
    /// Every header, by name, as JSON (the broker's `x-death` is a list of tables).
    pub headers: BTreeMap<String, Value>,
    /// The body as text (bytes that are not UTF-8 show as U+FFFD); `body_len` counts bytes.
    pub body: String,
}

/// The AMQP properties a person asks about; `null` where the publisher set none (pika's bare
/// messages set none at all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Properties {
    pub message_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub correlation_id: Option<String>,
    pub app_id: Option<String>,
    /// Seconds since the Unix epoch.
    pub timestamp: Option<u64>,
    pub content_type: Option<String>,
}

impl Message {
    pub fn of(position: usize, message: &Delivery) -> Self {
        let props = &message.properties;
        let text = |v: &Option<lapin::types::ShortString>| v.as_ref().map(|s| s.to_string());
        let headers = props
            .headers()
            .as_ref()
            .map(|h| {
                h.inner()
                    .iter()
                    .map(|(name, value)| (name.to_string(), amqp_to_json(value)))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            entry: Entry::of(position, message),
            properties: Properties {
                message_id: text(props.message_id()),
                kind: text(props.kind()),
                correlation_id: text(props.correlation_id()),
                app_id: text(props.app_id()),
                timestamp: *props.timestamp(),
                content_type: text(props.content_type()),
            },
            headers,
            body: String::from_utf8_lossy(&message.data).into_owned(),
        }
    }

    /// Everything about the message, a line each, for a person.
    fn describe(&self, title: &str) -> Vec<String> {
        let text = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
        let props = &self.properties;
        let mut lines = vec![
            title.to_owned(),
            format!("  message_id      {}", text(&props.message_id)),
            format!("  type            {}", text(&props.kind)),
            format!("  correlation_id  {}", text(&props.correlation_id)),
            format!("  app_id          {}", text(&props.app_id)),
            format!(
                "  timestamp       {}",
                text(&props.timestamp.map(|t| t.to_string()))
            ),
            format!("  content_type    {}", text(&props.content_type)),
            "  headers".to_owned(),
        ];
        for (name, value) in &self.headers {
            let value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            lines.push(format!("    {name:<24} {value}"));
        }
        lines.push(format!("  body ({} bytes)", self.entry.body_len));
        lines.push(self.body.clone());
        lines
    }
}

/// A header value as JSON: text as strings, numbers as numbers, tables and arrays as objects
/// and lists (so `x-death` stays readable), raw bytes as (lossy) text.
fn amqp_to_json(value: &AMQPValue) -> Value {
    let bytes = |b: &[u8]| Value::String(String::from_utf8_lossy(b).into_owned());
    match value {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(n) => Value::from(*n),
        AMQPValue::ShortShortUInt(n) => Value::from(*n),
        AMQPValue::ShortInt(n) => Value::from(*n),
        AMQPValue::ShortUInt(n) => Value::from(*n),
        AMQPValue::LongInt(n) => Value::from(*n),
        AMQPValue::LongUInt(n) => Value::from(*n),
        AMQPValue::LongLongInt(n) => Value::from(*n),
        AMQPValue::Float(x) => Value::from(f64::from(*x)),
        AMQPValue::Double(x) => Value::from(*x),
        AMQPValue::DecimalValue(d) => {
            Value::from(f64::from(d.value) / 10f64.powi(i32::from(d.scale)))
        }
        AMQPValue::ShortString(s) => Value::String(s.as_str().to_owned()),
        AMQPValue::LongString(s) => bytes(s.as_bytes()),
        AMQPValue::ByteArray(b) => bytes(b.as_slice()),
        AMQPValue::FieldArray(items) => {
            Value::Array(items.as_slice().iter().map(amqp_to_json).collect())
        }
        AMQPValue::FieldTable(table) => Value::Object(
            table
                .inner()
                .iter()
                .map(|(name, value)| (name.to_string(), amqp_to_json(value)))
                .collect(),
        ),
        AMQPValue::Timestamp(t) => Value::from(*t),
        AMQPValue::Void => Value::Null,
    }
}

async fn replay_one(conn: &lapin::Connection, dlq: &str, n: usize) -> anyhow::Result<()> {
    let replayed = replay_at(conn, dlq, n, None).await?;
    outln!("#{n}: {replayed}")?;
    Ok(())
}

/// Why a replay or a look at one message did not happen.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("messages are numbered from 1")]
    NotNumbered,
    #[error("no message #{n}: the DLQ holds {count}")]
    NoSuchMessage { n: usize, count: usize },
    /// The message at that position is not the one the caller saw there: the DLQ changed
    /// (another replay, a purge) between looking and acting. Nothing was replayed.
    #[error("message #{n} is not the one you saw: the DLQ changed meanwhile; look again")]
    Changed { n: usize },
    #[error(transparent)]
    Broker(#[from] anyhow::Error),
}

/// Replay message `n` (from 1): republish it where it was first published, wait for the
/// confirm, then remove it from the DLQ; every other message goes back untouched. With
/// `expected_key`, only if message `n` is still the one with that [`Entry::key`].
///
/// # Errors
/// See [`DlqError`]: nothing was replayed, except for a failed removal after the republish
/// (then the message is in the DLQ and republished: consumers are idempotent).
pub async fn replay_at(
    conn: &lapin::Connection,
    dlq: &str,
    n: usize,
    expected_key: Option<&str>,
) -> Result<String, DlqError> {
    let index = n.checked_sub(1).ok_or(DlqError::NotNumbered)?;
    let mut held = Held::take(conn, dlq, n).await?;
    let found = held.messages.get(index).map(|m| Entry::of(n, m).key);
    let refusal = match (found, expected_key) {
        (None, _) => Some(DlqError::NoSuchMessage {
            n,
            count: held.messages.len(),
        }),
        (Some(key), Some(expected)) if key != expected => Some(DlqError::Changed { n }),
        _ => None,
    };
    if let Some(refusal) = refusal {
        held.requeue_rest().await?;
        return Err(refusal);
    }
    let publisher = Publisher::open(conn).await.map_err(anyhow::Error::from)?;
    let replayed = replay(&mut held, index, &publisher).await;
    // Give the others back whatever happened to this one.
    held.requeue_rest().await?;
    Ok(replayed?)
}

/// What is in the DLQ: its depth and the first messages, each described, all given back.
#[derive(Debug, Clone, Default)]
pub struct Peek {
    /// Messages ready in the DLQ (those someone else holds unacked right now are not counted).
    pub total: usize,
    pub entries: Vec<Entry>,
    /// The same messages as the invariant checker reads them.
    pub dead_letters: Vec<crate::check::DeadLetter>,
}

/// Look at the first `limit` messages of the DLQ without losing any: take them unacked,
/// describe them, give them all back in their places.
///
/// # Errors
/// Broker unreachable or no such queue.
pub async fn peek(conn: &lapin::Connection, dlq: &str, limit: usize) -> anyhow::Result<Peek> {
    let total = {
        let channel = conn.create_channel().await?;
        let depth = broker::depth(&channel, dlq).await?.messages as usize;
        let _ = channel.close(200, "done".into()).await;
        depth
    };
    let held = Held::take(conn, dlq, limit.min(total)).await?;
    let entries = held
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| Entry::of(i + 1, m))
        .collect();
    let dead_letters = held
        .messages
        .iter()
        .map(crate::check::dead_letter_of)
        .collect();
    held.requeue_rest().await?;
    Ok(Peek {
        total,
        entries,
        dead_letters,
    })
}

async fn replay_all(conn: &lapin::Connection, dlq: &str) -> anyhow::Result<()> {
    let report = replay_every(conn, dlq).await?;
    for line in &report.lines {
        outln!("{line}")?;
    }
    outln!(
        "replayed {}, left {} in {dlq}",
        report.replayed,
        report.failed
    )?;
    if report.failed > 0 {
        bail!("{} message(s) could not be replayed", report.failed);
    }
    Ok(())
}

/// What a replay of the whole DLQ did.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    pub replayed: usize,
    /// Left in the DLQ (no original exchange in its headers, or the broker refused it).
    pub failed: usize,
    /// One line per message: `#N: what happened`.
    pub lines: Vec<String>,
}

/// Replay every message in the DLQ now, each as [`replay_at`] does.
///
/// # Errors
/// Broker unreachable; a message that cannot be replayed is counted in
/// [`ReplayReport::failed`] and stays in the DLQ.
pub async fn replay_every(conn: &lapin::Connection, dlq: &str) -> anyhow::Result<ReplayReport> {
    // Take only what is there now: a replayed message that is still poison comes straight
    // back to the DLQ, and taking "until empty" would replay it forever.
    let count = {
        let channel = conn.create_channel().await?;
        broker::depth(&channel, dlq).await?.messages as usize
    };
    let mut held = Held::take(conn, dlq, count).await?;
    let publisher = Publisher::open(conn).await?;
    let mut report = ReplayReport::default();
    for index in 0..held.messages.len() {
        match replay(&mut held, index, &publisher).await {
            Ok(done) => {
                report.replayed += 1;
                report.lines.push(format!("#{}: {done}", index + 1));
            }
            Err(e) => {
                report.failed += 1;
                report
                    .lines
                    .push(format!("#{}: left in the DLQ: {e:#}", index + 1));
            }
        }
    }
    held.requeue_rest().await?;
    Ok(report)
}

/// Republish held message `index` where it was first published, wait for the confirm, then
/// ack it off the DLQ. Returns a line saying what happened.
async fn replay(held: &mut Held, index: usize, publisher: &Publisher) -> anyhow::Result<String> {
    let message = held
        .messages
        .get(index)
        .ok_or_else(|| anyhow!("no held message #{}", index + 1))?;
    let headers = message.properties.headers();
    let origin = Provenance::of(&message.properties);
    let exchange = origin.exchange.ok_or_else(|| {
        anyhow!(
            "no {} header nor x-death: cannot tell where it came from",
            header::ORIGINAL_EXCHANGE
        )
    })?;
    let routing_key = origin.routing_key.ok_or_else(|| {
        anyhow!(
            "no {} header nor x-death: cannot tell where it came from",
            header::ORIGINAL_ROUTING_KEY
        )
    })?;
    let properties = message
        .properties
        .clone()
        .with_headers(without_dead_letter_headers(headers));
    publisher
        .publish(&exchange, &routing_key, &message.data, properties)
        .await
        .with_context(|| format!("republishing to exchange {exchange:?}"))?;
    held.ack(index)
        .await
        .context("republished, but could not remove it from the DLQ (it will show up twice)")?;
    Ok(format!(
        "replayed to exchange {exchange:?} with routing key {routing_key}; removed from the DLQ"
    ))
}

/// The message's headers as they were before it was dead-lettered: the DLQ's own `x-dlq-*` and
/// `x-original-*`, the retry count `x-retry-*` and the broker's `x-death` (and its companions)
/// go (a replayed message starts with a fresh set of attempts), anything the publisher set
/// stays. If it fails again, the consumer (or the broker) adds fresh ones.
fn without_dead_letter_headers(headers: &Option<FieldTable>) -> FieldTable {
    let mut kept = FieldTable::default();
    if let Some(headers) = headers {
        for (name, value) in headers.inner() {
            if !is_dead_letter_header(name.as_str()) {
                kept.insert(name.clone(), value.clone());
            }
        }
    }
    kept
}

async fn purge(conn: &lapin::Connection, dlq: &str) -> anyhow::Result<()> {
    let purged = purge_all(conn, dlq).await?;
    outln!("purged {purged} message(s) from {dlq}")?;
    Ok(())
}

/// Delete every message in the DLQ; returns how many there were.
///
/// # Errors
/// Broker unreachable or no such queue.
pub async fn purge_all(conn: &lapin::Connection, dlq: &str) -> anyhow::Result<u32> {
    let channel = conn.create_channel().await?;
    let purged = channel
        .queue_purge(dlq.into(), QueuePurgeOptions::default())
        .await
        .with_context(|| format!("cannot purge {dlq}"))?;
    let _ = channel.close(200, "done".into()).await;
    Ok(purged)
}

/// A 1-based position as an index.
fn position(n: usize) -> anyhow::Result<usize> {
    n.checked_sub(1)
        .ok_or_else(|| anyhow!("messages are numbered from 1"))
}

/// One dead-lettered message as a person reads it: what its headers say about it (ours,
/// `x-dlq-*`, or the broker's, `x-death`: see [`Provenance`]), and the start of its body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Its place in the DLQ, from 1, when it was looked at.
    pub position: usize,
    /// Tells this message from others at the same position later (its `message_id`, else a
    /// digest of its body and dead-lettering time): a replay names the message it means.
    pub key: String,
    pub message_id: Option<String>,
    pub reason: String,
    /// Who dead-lettered it: a service's name, or the broker (a queue's delivery limit).
    pub service: String,
    pub routing_key: Option<String>,
    /// When it was dead-lettered, seconds since the Unix epoch (`x-dlq-at`, or `x-death`'s time).
    pub at: Option<u64>,
    /// Which header said when: `x-dlq-at` or `x-death time`.
    #[serde(skip)]
    pub at_header: &'static str,
    /// Attempts made before giving up, for a retried failure (`x-dlq-attempts`); none for poison.
    pub attempts: Option<String>,
    /// The order it is about, if its body says.
    pub order_id: Option<String>,
    pub body_preview: String,
    pub body_len: usize,
}

impl Entry {
    pub fn of(position: usize, message: &Delivery) -> Self {
        let headers = message.properties.headers();
        let origin = Provenance::of(&message.properties);
        let message_id = message
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.to_string());
        let salt = origin.at.map(|t| t.to_string()).unwrap_or_default();
        let key = message_id
            .clone()
            .unwrap_or_else(|| digest(&message.data, &salt));
        Self {
            position,
            key,
            message_id,
            service: origin.who(),
            at_header: match origin.by {
                DeadLetteredBy::Broker => "x-death time",
                DeadLetteredBy::Consumer(_) => header::AT,
            },
            reason: origin.reason,
            routing_key: origin.routing_key,
            at: origin.at,
            attempts: header_str(headers, header::ATTEMPTS),
            order_id: order_id_in(&message.data),
            body_preview: preview(&message.data),
            body_len: message.data.len(),
        }
    }

    fn age(&self) -> String {
        let header = self.at_header;
        match self.at {
            Some(at) => format!(
                "{header} {at} ({} s ago)",
                unix_now_secs().saturating_sub(at)
            ),
            None => format!("{header} unknown"),
        }
    }
}

/// FNV-1a over the body and a salt, as hex: a stable name for a message without a message_id.
fn digest(body: &[u8], salt: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in body.iter().chain(salt.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("fnv-{hash:016x}")
}

/// The `order_id` a body names, if it is JSON with one; for a body that is not JSON, the first
/// UUID-looking word in it (the `not-json` sample writes its order id into its text).
fn order_id_in(body: &[u8]) -> Option<String> {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        return value.get("order_id")?.as_str().map(str::to_owned);
    }
    String::from_utf8_lossy(body)
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .find(|word| uuid::Uuid::parse_str(word).is_ok())
        .map(str::to_owned)
}

/// The start of a body, on one line.
fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body).replace(['\n', '\r'], " ");
    if text.chars().count() > BODY_PREVIEW_CHARS {
        let cut: String = text.chars().take(BODY_PREVIEW_CHARS).collect();
        format!("{cut}... ({} bytes)", body.len())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{AMQPValue, LongString};

    #[test]
    fn replay_strips_only_what_the_dlq_added() {
        let mut headers = FieldTable::default();
        for name in ["x-dlq-reason", "x-original-routing-key", "x-trace"] {
            headers.insert(
                name.into(),
                AMQPValue::LongString(LongString::from(b"v".to_vec())),
            );
        }
        let kept = without_dead_letter_headers(&Some(headers));
        let names: Vec<&str> = kept.inner().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-trace"]);
    }

    #[test]
    fn messages_are_named_by_id_or_by_digest_and_say_their_order() {
        assert_ne!(digest(b"a", "1"), digest(b"a", "2"));
        assert_eq!(digest(b"a", "1"), digest(b"a", "1"));
        assert_eq!(
            order_id_in(br#"{"order_id":"o-1","qty":"two"}"#),
            Some("o-1".into())
        );
        let id = "0f8fad5b-d9cb-469f-a165-70867728950e";
        assert_eq!(
            order_id_in(format!("order {id}: 2 x burger, please").as_bytes()),
            Some(id.into())
        );
        assert_eq!(order_id_in(b"nothing here"), None);
    }

    #[test]
    fn headers_read_as_json_with_the_broker_s_x_death_as_a_list_of_tables() {
        let mut death = FieldTable::default();
        death.insert(
            "queue".into(),
            AMQPValue::LongString(LongString::from(b"inventory_queue".to_vec())),
        );
        death.insert("count".into(), AMQPValue::LongLongInt(3));
        death.insert("time".into(), AMQPValue::Timestamp(1_700_000_000));
        let deaths = AMQPValue::FieldArray(vec![AMQPValue::FieldTable(death)].into());
        assert_eq!(
            amqp_to_json(&deaths),
            serde_json::json!([{ "queue": "inventory_queue", "count": 3, "time": 1_700_000_000 }])
        );
        assert_eq!(amqp_to_json(&AMQPValue::Void), Value::Null);
        assert_eq!(amqp_to_json(&AMQPValue::Boolean(true)), Value::Bool(true));
    }

    #[test]
    fn previews_are_short_and_on_one_line() {
        assert_eq!(preview(b"a\nb"), "a b");
        let long = "x".repeat(500);
        assert!(preview(long.as_bytes()).ends_with("... (500 bytes)"));
        assert_eq!(position(1).unwrap(), 0);
        assert!(position(0).is_err());
    }
}
