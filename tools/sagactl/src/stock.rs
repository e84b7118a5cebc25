//! `sagactl stock ...`: inventory-svc's stock, shown as a table and set by hand.
//!
//! The table has a `books` column: stock is conserved when, per item,
//! `initial = available + reserved - released` (docs/DESIGN.md §6, invariant 2). Seeing it hold
//! after a chaos drill is the point of the column. `--json` prints the same rows as
//! `{"stock": {item: {available, initial, reserved, released, balanced}}}`.

use std::collections::BTreeMap;

use anyhow::Context;
use clap::Subcommand;
use saga_domain::order::StockLevel;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::http::{ServiceApi, encode_path_segment};
use crate::output::{Output, print_json};

#[derive(Subcommand, Debug)]
pub enum StockCommand {
    /// Every item with its available, initial, reserved and released units (GET /stock).
    #[command(after_help = "Example:\n  sagactl stock show\n  sagactl stock show --json")]
    Show {
        #[command(flatten)]
        output: Output,
    },
    /// Set an item's available units (PUT /stock/{item}); creates the item if it is new.
    #[command(after_help = "Example:\n  sagactl stock set burger 5")]
    Set {
        item: String,
        /// Units available from now on.
        available: u32,
    },
}

/// inventory-svc's `GET /stock`: every item's books, by item.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct StockAnswer {
    stock: BTreeMap<String, StockLevel>,
}

/// What `stock show --json` prints: every item's books, and whether they balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StockDoc {
    pub stock: BTreeMap<String, StockRow>,
}

/// One item's books and the conservation check the table's `books` column shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StockRow {
    #[serde(flatten)]
    pub level: StockLevel,
    /// `initial = available + reserved - released` holds.
    pub balanced: bool,
}

impl StockDoc {
    fn of(answer: StockAnswer) -> Self {
        let stock = answer
            .stock
            .into_iter()
            .map(|(item, level)| {
                let row = StockRow {
                    level,
                    balanced: level.is_balanced(),
                };
                (item, row)
            })
            .collect();
        Self { stock }
    }
}

/// # Errors
/// inventory-svc unreachable or refusing.
pub async fn run(inventory_url: &str, command: StockCommand) -> anyhow::Result<()> {
    let inventory = ServiceApi::new("inventory-svc", inventory_url)?;
    match command {
        StockCommand::Show { output } => {
            let answer = inventory.get("/stock").await?;
            let answer: StockAnswer = serde_json::from_value(answer)
                .context("inventory-svc answered without a \"stock\" object of item books")?;
            let doc = StockDoc::of(answer);
            if output.json {
                return print_json(&doc);
            }
            outln!(
                "{:<12} {:>9} {:>8} {:>9} {:>9}  books",
                "item",
                "available",
                "initial",
                "reserved",
                "released"
            )?;
            for (item, row) in &doc.stock {
                let StockLevel {
                    available,
                    initial,
                    reserved,
                    released,
                } = row.level;
                let books = if row.balanced {
                    "balanced"
                } else {
                    "UNBALANCED"
                };
                outln!(
                    "{item:<12} {available:>9} {initial:>8} {reserved:>9} {released:>9}  {books}"
                )?;
            }
        }
        StockCommand::Set { item, available } => {
            let path = format!("/stock/{}", encode_path_segment(&item));
            let answer = inventory
                .put(&path, &json!({ "available": available }))
                .await?;
            let previous = answer.get("previous").and_then(Value::as_i64).unwrap_or(0);
            outln!("{item}: available {previous} -> {available}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_says_what_the_books_column_says() {
        let answer: StockAnswer = serde_json::from_value(json!({ "stock": {
            "burger": { "available": 95, "initial": 100, "reserved": 7, "released": 2 },
            "pizza": { "available": 40, "initial": 50, "reserved": 5, "released": 0 }
        }}))
        .unwrap();
        let doc = serde_json::to_value(StockDoc::of(answer)).unwrap();
        assert_eq!(
            doc["stock"]["burger"],
            json!({ "available": 95, "initial": 100, "reserved": 7, "released": 2, "balanced": true })
        );
        assert_eq!(doc["stock"]["pizza"]["balanced"], false);
    }
}
