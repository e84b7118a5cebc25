//! `sagactl explain <order-id>`: an order's journey through the saga, step by step, with why each
//! step was safe. The board draws the same [`Journey`] as a swimlane.
//!
//! Read from the model out:
//! - `journey.rs`: the journey model, a pure function from an order's [`Timeline`]
//!   (what the services recorded in Redis) to a [`Journey`]: lanes, steps, and why each step
//!   was safe. No I/O, no formatting; its unit tests tell every story without Redis.
//! - `text.rs`: the journey for a terminal, one block per step (the default).
//! - `mermaid.rs`: the journey as a Mermaid sequence diagram (`--mermaid`), e.g. for a lab report.
//!
//! `--json` needs no renderer of its own: it prints the model and its timeline as they are
//! (serde). This file reads the timeline from Redis and picks the rendering.

mod journey;
mod mermaid;
mod text;

use anyhow::bail;
use clap::Args;
use saga_platform::redis::store::Keys;
use saga_platform::service::config::Common;
use serde::Serialize;

pub use journey::{Journey, Lane, Step, StepKind, journey};
pub use text::utc;

use crate::output::{Output, print_json};
use crate::timeline::{self, Timeline};

#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  sagactl explain 0f8fad5b-d9cb-469f-a165-70867728950e\n  \
                  sagactl explain 0f8fad5b-d9cb-469f-a165-70867728950e --mermaid > journey.mmd\n  \
                  sagactl explain 0f8fad5b-d9cb-469f-a165-70867728950e --json"
)]
pub struct ExplainArgs {
    /// The order_id returned when the order was placed.
    order_id: String,
    /// Print the journey as a Mermaid sequence diagram instead of text.
    #[arg(long, conflicts_with = "json")]
    mermaid: bool,
    /// With --json: the journey and the records it was told from.
    #[command(flatten)]
    output: Output,
}

/// What `explain --json` prints: the journey, and the timeline (every record) it was told from.
#[derive(Debug, Serialize)]
struct ExplainDoc<'a> {
    journey: &'a Journey,
    timeline: &'a Timeline,
}

/// # Errors
/// Redis unreachable, or nothing at all is recorded about the order.
pub async fn run(common: &Common, args: ExplainArgs) -> anyhow::Result<()> {
    let redis = saga_platform::redis::store::connect(&common.redis_url)?;
    let keys = Keys::new(&common.redis_prefix);
    let timeline = timeline::read(&redis, &keys, &args.order_id).await?;
    if timeline.is_unknown() {
        bail!(
            "nothing is recorded about order {:?} under prefix {:?}",
            args.order_id,
            common.redis_prefix
        );
    }
    let journey = journey(&timeline);
    if args.output.json {
        return print_json(&ExplainDoc {
            journey: &journey,
            timeline: &timeline,
        });
    }
    let text = if args.mermaid {
        journey.mermaid()
    } else {
        journey.text()
    };
    outln!("{}", text.trim_end())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::journey::tests::confirmed;
    use super::*;

    #[test]
    fn text_and_mermaid_carry_the_same_steps() {
        let j = journey(&confirmed());
        let text = j.text();
        assert!(text.starts_with(
            "order o1: 2 x burger for s1, CONFIRMED\nstarted 2023-11-14 22:13:20.000 UTC"
        ));
        assert!(text.contains("client → order-svc"));
        assert!(text.contains("event  InventoryReserved e-reserved"));
        assert!(text.contains("(no time recorded)"));
        assert_eq!(text.matches("safe   ").count(), j.steps.len());

        let mermaid = j.mermaid();
        assert!(mermaid.starts_with("sequenceDiagram\n    participant C as client\n"));
        assert!(
            mermaid.contains("    B->>O: +0.030s InventoryReserved: PLACED → CONFIRMED [e-reserv]")
        );
        let arrows = mermaid
            .lines()
            .filter(|l| l.contains("->>") || l.contains("-x"))
            .count();
        assert_eq!(arrows, j.steps.len());
    }
}
