//! `sagactl outbox ...`: the outbox entries order-svc's relay parked, and putting them back.
//!
//! The relay parks an entry it can never publish as it is (a property longer than AMQP allows,
//! an event it does not publish, a missing field, a publish that panicked) in
//! `{prefix}:outbox:parked`, with its reason, so that the entries behind it flow (see
//! order-svc's `outbox::parked`). `list` shows them with why; `replay` moves one (or all) back
//! to the outbox, optionally with fields changed (`--set correlation_id=...`), where the relay
//! publishes it like any other. The move is one atomic step that first checks the entry is
//! still parked, so two replays of one entry put it back once.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use clap::Subcommand;
use redis::{AsyncCommands, Script};
use saga_platform::redis::store::{Keys, Redis, parked};
use saga_platform::service::config::Common;
use serde::Serialize;

use crate::output::{Output, print_json};

/// A stream entry: its id and its fields, as bytes. An entry is parked precisely when it may not
/// be what order-svc writes (not UTF-8, say), so nothing here assumes text.
type Entry = (String, BTreeMap<Vec<u8>, Vec<u8>>);

/// How much of a long value `list` shows.
const SHOWN_CHARS: usize = 80;

#[derive(Subcommand, Debug)]
pub enum OutboxCommand {
    /// List parked outbox entries (never published) with why and when; they stay parked.
    #[command(after_help = "Example:\n  sagactl outbox list\n  sagactl outbox list --json")]
    List {
        /// Show at most this many, oldest first.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        output: Output,
    },
    /// Put parked entry ID (or all) back in the outbox, to be published again.
    #[command(
        after_help = "Example:\n  sagactl outbox replay 1733338000000-0\n  sagactl outbox replay 1733338000000-0 --set correlation_id=9b0c3f8e\n  sagactl outbox replay --all"
    )]
    Replay {
        /// Replay every parked entry.
        #[arg(long, conflicts_with = "id")]
        all: bool,
        /// The parked entry's id, as `outbox list` shows it.
        #[arg(required_unless_present = "all")]
        id: Option<String>,
        /// Change a field on the way back (FIELD=VALUE, repeatable), e.g. the value that
        /// made it unpublishable.
        #[arg(long = "set", value_name = "FIELD=VALUE", value_parser = parse_assignment)]
        set: Vec<(String, String)>,
    },
}

/// What `outbox list --json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listing {
    pub stream: String,
    /// Entries parked now, shown or not.
    pub total: usize,
    /// Entries waiting in the outbox to be published.
    pub outbox_depth: usize,
    pub entries: Vec<ParkedEntry>,
}

/// One parked entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParkedEntry {
    /// Its id in the parked stream: what `replay` takes.
    pub id: String,
    pub order_id: String,
    /// The event's type (`OrderPlaced`, `OrderCancelled`).
    pub event: String,
    pub reason: String,
    /// When it was parked, ms since the Unix epoch.
    pub parked_at: u64,
    /// Its id in the outbox it was taken from.
    pub parked_from: String,
    /// Every field of the entry, long values cut.
    pub fields: BTreeMap<String, String>,
}

/// # Errors
/// Redis unreachable, no such entry, or a bad `--set`.
pub async fn run(common: &Common, command: OutboxCommand) -> anyhow::Result<()> {
    let redis = saga_platform::redis::store::connect_with(&common.redis_url, common.replication)?;
    let keys = Keys::new(&common.redis_prefix);
    match command {
        OutboxCommand::List { limit, output } => {
            let listing = list(&redis, &keys, limit).await?;
            if output.json {
                return print_json(&listing);
            }
            print_listing(&listing)
        }
        OutboxCommand::Replay { all, id, set } => {
            let ids = match (all, id) {
                (true, _) => list(&redis, &keys, usize::MAX)
                    .await?
                    .entries
                    .into_iter()
                    .map(|e| e.id)
                    .collect(),
                (false, Some(id)) => vec![id],
                (false, None) => bail!("say which entry, or --all"),
            };
            for id in &ids {
                replay(&redis, &keys, id, &set).await?;
                outln!("{id}: back in the outbox; the relay publishes it next")?;
            }
            if ids.is_empty() {
                outln!("no parked entries")?;
            }
            Ok(())
        }
    }
}

/// The parked entries, oldest first, at most `limit` of them.
///
/// # Errors
/// Redis unreachable.
pub async fn list(redis: &Redis, keys: &Keys, limit: usize) -> anyhow::Result<Listing> {
    let stream = keys.outbox_parked();
    let count = limit.clamp(1, 100_000);
    let (entries, total, outbox_depth): (Vec<Entry>, usize, usize) = redis::pipe()
        .xrange_count(&stream, "-", "+", count)
        .xlen(&stream)
        .xlen(keys.outbox())
        .query_async(&mut redis.clone())
        .await
        .context("reading the parked outbox entries from Redis")?;
    let entries = entries
        .into_iter()
        .take(limit)
        .map(|(id, raw)| {
            let fields: BTreeMap<String, String> = raw
                .iter()
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(k).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    )
                })
                .collect();
            let get = |k: &str| fields.get(k).map(|v| cut(v)).unwrap_or_default();
            ParkedEntry {
                order_id: get("order_id"),
                event: get("type"),
                reason: fields.get(parked::REASON).cloned().unwrap_or_default(),
                parked_at: fields
                    .get(parked::AT)
                    .and_then(|at| at.parse().ok())
                    .unwrap_or(0),
                parked_from: get(parked::FROM),
                fields: fields
                    .iter()
                    .filter(|(k, _)| !parked::ALL.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), cut(v)))
                    .collect(),
                id,
            }
        })
        .collect();
    Ok(Listing {
        stream,
        total,
        outbox_depth,
        entries,
    })
}

fn print_listing(listing: &Listing) -> anyhow::Result<()> {
    outln!(
        "{}: {} parked entr{} ({} waiting in the outbox)",
        listing.stream,
        listing.total,
        if listing.total == 1 { "y" } else { "ies" },
        listing.outbox_depth
    )?;
    for e in &listing.entries {
        outln!(
            "  {}  order {}  {}  parked {}",
            e.id,
            e.order_id,
            e.event,
            crate::explain::utc(e.parked_at)
        )?;
        outln!("      why: {}", e.reason)?;
    }
    if !listing.entries.is_empty() {
        outln!("replay one with: sagactl outbox replay ID [--set FIELD=VALUE]")?;
    }
    Ok(())
}

/// Move parked entry `id` back to the outbox, without its parking fields and with `set`
/// applied.
///
/// # Errors
/// No such parked entry, or Redis unreachable.
pub async fn replay(
    redis: &Redis,
    keys: &Keys,
    id: &str,
    set: &[(String, String)],
) -> anyhow::Result<()> {
    let stream = keys.outbox_parked();
    let found: Vec<Entry> = redis
        .clone()
        .xrange(&stream, id, id)
        .await
        .with_context(|| format!("reading parked entry {id}"))?;
    let Some((_, mut fields)) = found.into_iter().next() else {
        bail!("no parked entry {id} in {stream} (see sagactl outbox list)");
    };
    // Byte for byte, but for the parking fields and what `set` changes.
    fields.retain(|k, _| !parked::ALL.iter().any(|p| p.as_bytes() == k.as_slice()));
    for (field, value) in set {
        fields.insert(field.as_bytes().to_vec(), value.as_bytes().to_vec());
    }
    // Checks that it is still parked, and moves it, in one step.
    let script = Script::new(
        r"if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then return 0 end
          redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
          redis.call('XDEL', KEYS[1], ARGV[1])
          return 1",
    );
    let mut invocation = script.prepare_invoke();
    invocation.key(&stream).key(keys.outbox()).arg(id);
    for (field, value) in &fields {
        invocation.arg(field).arg(value);
    }
    let moved: i64 = invocation
        .invoke_async(&mut redis.clone())
        .await
        .with_context(|| format!("moving parked entry {id} back to the outbox"))?;
    if moved == 0 {
        bail!("parked entry {id} is gone (replayed meanwhile?)");
    }
    Ok(())
}

fn parse_assignment(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((field, value)) if !field.is_empty() => Ok((field.to_owned(), value.to_owned())),
        _ => Err(format!("{s:?}: expected FIELD=VALUE")),
    }
}

fn cut(value: &str) -> String {
    if value.chars().count() <= SHOWN_CHARS {
        return value.to_owned();
    }
    let mut shown: String = value.chars().take(SHOWN_CHARS).collect();
    shown.push_str(&format!("… ({} bytes)", value.len()));
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_and_cut_values() {
        assert_eq!(
            parse_assignment("correlation_id=abc=d"),
            Ok(("correlation_id".into(), "abc=d".into()))
        );
        assert!(parse_assignment("nothing").is_err());
        assert!(parse_assignment("=x").is_err());
        assert_eq!(cut("short"), "short");
        let long = cut(&"c".repeat(300));
        assert!(long.ends_with("… (300 bytes)"), "{long}");
    }
}
