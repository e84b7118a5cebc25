//! `--json`: what a read command prints for a script instead of its table.
//!
//! A person reads the table; a script (the lab drills, a test, `jq`) reads one JSON document,
//! printed on one line of stdout, built from serde types so its field names are a contract and
//! not an accident of formatting. Errors are the same either way: one line on stderr and a
//! non-zero exit, so a script can tell "no answer" from an answer.

use anyhow::Context;
use clap::Args;
use serde::Serialize;

/// The output switch every read command flattens into its arguments.
#[derive(Args, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Output {
    /// Print one JSON document on stdout (stable field names) instead of the table, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// Print `doc` as one line of JSON on stdout.
///
/// # Errors
/// stdout is closed, or `doc` cannot be serialized (a map with non-string keys: a bug).
pub fn print_json<T: Serialize + ?Sized>(doc: &T) -> anyhow::Result<()> {
    let line = serde_json::to_string(doc).context("cannot write the answer as JSON")?;
    outln!("{line}")?;
    Ok(())
}
