//! `sagactl stock ...`: inventory-svc's stock, shown as a table and set by hand.
//!
//! The table has a `books` column: stock is conserved when, per item,
//! `initial = available + reserved - released` (DESIGN.md §6, invariant 2). Seeing it hold
//! after a chaos drill is the point of the column.

use anyhow::anyhow;
use clap::Subcommand;
use serde_json::{Value, json};

use crate::http::{Service, encode_path_segment};

#[derive(Subcommand, Debug)]
pub enum StockCommand {
    /// Every item with its available, initial, reserved and released units (GET /stock).
    #[command(after_help = "Example:\n  sagactl stock show")]
    Show,
    /// Set an item's available units (PUT /stock/{item}); creates the item if it is new.
    #[command(after_help = "Example:\n  sagactl stock set burger 5")]
    Set {
        item: String,
        /// Units available from now on.
        available: u32,
    },
}

/// # Errors
/// inventory-svc unreachable or refusing.
pub async fn run(inventory_url: &str, command: StockCommand) -> anyhow::Result<()> {
    let inventory = Service::new("inventory-svc", inventory_url)?;
    match command {
        StockCommand::Show => {
            let answer = inventory.get("/stock").await?;
            let stock = answer
                .get("stock")
                .and_then(Value::as_object)
                .ok_or_else(|| anyhow!("inventory-svc answered without a \"stock\" object"))?;
            outln!(
                "{:<12} {:>9} {:>8} {:>9} {:>9}  books",
                "item",
                "available",
                "initial",
                "reserved",
                "released"
            )?;
            for (item, level) in stock {
                let units = |field: &str| level.get(field).and_then(Value::as_i64).unwrap_or(0);
                let (available, initial, reserved, released) = (
                    units("available"),
                    units("initial"),
                    units("reserved"),
                    units("released"),
                );
                let books = if initial == available + reserved - released {
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
