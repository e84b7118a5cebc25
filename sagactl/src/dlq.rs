//! `sagactl dlq ...`: look at, replay and purge the dead-letter queue.
//!
//! Looking must never lose a message. `list` and `show` take messages with `basic_get` without
//! acking, print them, and give them all back (see [`Held`]): the DLQ is the same afterwards.
//! `replay` republishes a message where it was first published, byte for byte, waits for the
//! broker's confirm and only *then* acks it off the DLQ, so a crash in between leaves it in the
//! DLQ (at worst also republished: consumers are idempotent). Messages are numbered from 1, in
//! queue order, as `list` shows them.
//!
//! Every command takes the whole DLQ (up to [`HOLD_AT_MOST`]) and gives it back in order, even
//! to show one message: a quorum queue (the cluster profile's DLQ is one) puts a message given
//! back at its *tail*, so taking only the first few would move them behind the rest, and the
//! numbers `list` showed would point at other messages by the time `replay N` runs.
//!
//! Both kinds of dead letter are shown and replayed alike ([`crate::provenance`]): ours, with
//! `x-dlq-*` headers, and the broker's (the cluster profile's delivery limit), with `x-death`.

use anyhow::{Context, anyhow, bail};
use clap::Subcommand;
use lapin::message::Delivery;
use lapin::options::QueuePurgeOptions;
use lapin::types::FieldTable;
use shared::amqp::Publisher;
use shared::config::Common;
use shared::events::{header_str, unix_now_secs};

use crate::broker::{self, Held};
use crate::provenance::{DeadLetteredBy, Provenance, is_dead_letter_header};

/// How much of a body `dlq list` shows.
const BODY_PREVIEW_CHARS: usize = 100;
/// The most messages held at once: beyond this many, numbers may shift on a quorum queue.
const HOLD_AT_MOST: usize = 10_000;

#[derive(Subcommand, Debug)]
pub enum DlqCommand {
    /// List dead-lettered messages with why, who and when; they stay in the DLQ.
    #[command(after_help = "Example:\n  sagactl dlq list --limit 5")]
    List {
        /// Show at most this many, oldest first.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Show message N in full: properties, every header, the whole body; it stays in the DLQ.
    #[command(after_help = "Example:\n  sagactl dlq show 1")]
    Show {
        /// Position in the DLQ, from 1 (as `dlq list` numbers them).
        n: usize,
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
    shared::amqp::declare_topology(&conn, &common.topology)
        .await
        .context("declaring the saga's exchange and queues")?;
    let result = match command {
        DlqCommand::List { limit } => list(&conn, dlq, limit).await,
        DlqCommand::Show { n } => show(&conn, dlq, n).await,
        DlqCommand::Replay { all: true, .. } => replay_all(&conn, dlq).await,
        DlqCommand::Replay { n: Some(n), .. } => replay_one(&conn, dlq, n).await,
        DlqCommand::Replay { n: None, .. } => Err(anyhow!("say which message, or --all")),
        DlqCommand::Purge => purge(&conn, dlq).await,
    };
    let _ = conn.close(200, "done".into()).await;
    result
}

async fn list(conn: &lapin::Connection, dlq: &str, limit: usize) -> anyhow::Result<()> {
    let total = {
        let channel = conn.create_channel().await?;
        broker::depth(&channel, dlq).await?.messages as usize
    };
    let held = Held::take(conn, dlq, HOLD_AT_MOST).await?;
    let shown = held.messages.len().min(limit);
    let mut lines = vec![format!("{dlq}: {total} message(s)")];
    if total > shown {
        lines[0].push_str(&format!(", showing the first {shown}"));
    }
    for (i, message) in held.messages.iter().take(shown).enumerate() {
        let dead = Provenance::of(&message.properties);
        lines.push(format!("#{:<3} reason   {}", i + 1, dead.reason));
        lines.push(format!(
            "     from     {} (routing key {}), {}",
            dead.who(),
            dead.routing_key.as_deref().unwrap_or("?"),
            age(&dead)
        ));
        lines.push(format!("     body     {}", preview(&message.data)));
    }
    // Give the messages back before printing: a closed stdout must not be what keeps them.
    held.requeue_rest().await?;
    outln!("{}", lines.join("\n"))?;
    Ok(())
}

async fn show(conn: &lapin::Connection, dlq: &str, n: usize) -> anyhow::Result<()> {
    let index = position(n)?;
    let held = Held::take(conn, dlq, HOLD_AT_MOST).await?;
    let description = held
        .messages
        .get(index)
        .map(|message| describe(message, &format!("message #{n} of {dlq}")));
    let count = held.messages.len();
    held.requeue_rest().await?;
    match description {
        Some(lines) => outln!("{}", lines.join("\n"))?,
        None => bail!("no message #{n}: {dlq} holds {count}"),
    }
    Ok(())
}

/// Everything about one message: properties, every header, the whole body.
fn describe(message: &Delivery, title: &str) -> Vec<String> {
    let props = &message.properties;
    let text = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    let short = |v: &Option<lapin::types::ShortString>| text(v.as_ref().map(|s| s.to_string()));
    let mut lines = vec![
        title.to_owned(),
        format!("  message_id      {}", short(props.message_id())),
        format!("  type            {}", short(props.kind())),
        format!("  correlation_id  {}", short(props.correlation_id())),
        format!("  app_id          {}", short(props.app_id())),
        format!(
            "  timestamp       {}",
            text(props.timestamp().map(|t| t.to_string()))
        ),
        format!("  content_type    {}", short(props.content_type())),
        "  headers".to_owned(),
    ];
    let headers = props.headers();
    let mut names: Vec<String> = headers
        .as_ref()
        .map(|h| h.inner().keys().map(|k| k.to_string()).collect())
        .unwrap_or_default();
    names.sort();
    for name in names {
        lines.push(format!(
            "    {name:<24} {}",
            text(header_str(headers, &name))
        ));
    }
    lines.push(format!("  body ({} bytes)", message.data.len()));
    lines.push(String::from_utf8_lossy(&message.data).into_owned());
    lines
}

async fn replay_one(conn: &lapin::Connection, dlq: &str, n: usize) -> anyhow::Result<()> {
    let index = position(n)?;
    let mut held = Held::take(conn, dlq, HOLD_AT_MOST).await?;
    if index >= held.messages.len() {
        let count = held.messages.len();
        held.requeue_rest().await?;
        bail!("no message #{n}: {dlq} holds {count}");
    }
    let publisher = Publisher::open(conn).await?;
    let replayed = replay(&mut held, index, &publisher).await;
    // Give the others back whatever happened to this one.
    held.requeue_rest().await?;
    outln!("#{n}: {}", replayed?)?;
    Ok(())
}

async fn replay_all(conn: &lapin::Connection, dlq: &str) -> anyhow::Result<()> {
    // Take only what is there now: a replayed message that is still poison comes straight
    // back to the DLQ, and taking "until empty" would replay it forever.
    let count = {
        let channel = conn.create_channel().await?;
        broker::depth(&channel, dlq).await?.messages as usize
    };
    let mut held = Held::take(conn, dlq, count).await?;
    let publisher = Publisher::open(conn).await?;
    let mut failed = 0;
    for index in 0..held.messages.len() {
        match replay(&mut held, index, &publisher).await {
            Ok(done) => outln!("#{}: {done}", index + 1)?,
            Err(e) => {
                failed += 1;
                outln!("#{}: left in the DLQ: {e:#}", index + 1)?;
            }
        }
    }
    let replayed = held.messages.len() - failed;
    held.requeue_rest().await?;
    outln!("replayed {replayed}, left {failed} in {dlq}")?;
    if failed > 0 {
        bail!("{failed} message(s) could not be replayed");
    }
    Ok(())
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
        anyhow!("no x-original-exchange header nor x-death: cannot tell where it came from")
    })?;
    let routing_key = origin.routing_key.ok_or_else(|| {
        anyhow!("no x-original-routing-key header nor x-death: cannot tell where it came from")
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
    let channel = conn.create_channel().await?;
    let purged = channel
        .queue_purge(dlq.into(), QueuePurgeOptions::default())
        .await
        .with_context(|| format!("cannot purge {dlq}"))?;
    outln!("purged {purged} message(s) from {dlq}")?;
    Ok(())
}

/// A 1-based position as an index.
fn position(n: usize) -> anyhow::Result<usize> {
    n.checked_sub(1)
        .ok_or_else(|| anyhow!("messages are numbered from 1"))
}

/// When it was dead-lettered, as the header that says so.
fn age(dead: &Provenance) -> String {
    let header = match dead.by {
        DeadLetteredBy::Broker => "x-death time",
        DeadLetteredBy::Consumer(_) => "x-dlq-at",
    };
    match dead.at {
        Some(at) => format!(
            "{header} {at} ({} s ago)",
            unix_now_secs().saturating_sub(at)
        ),
        None => format!("{header} unknown"),
    }
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
    fn previews_are_short_and_on_one_line() {
        assert_eq!(preview(b"a\nb"), "a b");
        let long = "x".repeat(500);
        assert!(preview(long.as_bytes()).ends_with("... (500 bytes)"));
        assert_eq!(position(1).unwrap(), 0);
        assert!(position(0).is_err());
    }
}
