//! Ready-made messages for the lab: a valid order, the classic poison messages, a business
//! failure and a cancel, each with what the saga is expected to do with it.
//!
//! The table is the [`Sample`] enum: its doc comments are what `sagactl publish --help` lists,
//! and [`Sample::expectation`] is what `sagactl publish` prints after publishing one.

use anyhow::{Context, anyhow};
use clap::ValueEnum;
use saga_domain::events::{EventType, OrderCancelled, OrderPlaced};
use saga_domain::ids::{Item, OrderId, Qty, StudentId};
use saga_domain::lines::Lines;
use saga_domain::order::OrderStatus;
use serde_json::{Value, json};

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sample {
    /// A valid OrderPlaced (uses --item, --qty, --student): reserved, or failed for lack of stock.
    Order,
    /// OrderPlaced without qty: poison, goes to the DLQ.
    MissingQty,
    /// OrderPlaced with qty 0: poison, goes to the DLQ.
    ZeroQty,
    /// OrderPlaced with qty "two" (a string): poison, goes to the DLQ.
    QtyTwo,
    /// A body that is not JSON at all: poison, goes to the DLQ.
    NotJson,
    /// OrderPlaced for an item nobody sells: a business failure (inventory.failed), not poison.
    UnknownItem,
    /// OrderCancelled for --order-id: inventory gives back what that order reserved.
    Cancel,
}

/// What a person may choose about a sample.
#[derive(Debug, Clone)]
pub struct SampleParams {
    /// The order the message is about; a fresh UUID when absent (except for `cancel`).
    pub order_id: Option<String>,
    pub item: String,
    pub qty: i64,
    pub student_id: Option<String>,
}

/// A sample, ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub body: Vec<u8>,
    pub order_id: String,
    pub event_type: EventType,
}

/// The item the `unknown-item` sample orders: a name no stock list has.
pub const UNKNOWN_ITEM: &str = "unicorn";

impl Sample {
    /// Build the sample's body.
    ///
    /// # Errors
    /// `cancel` without an order id, or `order` with values the contract refuses (use the poison
    /// samples for those).
    pub fn build(self, params: &SampleParams) -> anyhow::Result<Message> {
        let order_id = match (&params.order_id, self) {
            (Some(id), _) => id.clone(),
            (None, Self::Cancel) => {
                return Err(anyhow!(
                    "the cancel sample needs --order-id (the order to cancel)"
                ));
            }
            (None, _) => uuid::Uuid::new_v4().to_string(),
        };
        let item = params.item.as_str();
        let json = |value: Value| value.to_string().into_bytes();
        let body = match self {
            Self::Order => valid_order(&order_id, item, params.qty, params.student_id.as_deref())
                .context(
                "--sample order must be valid (the poison samples are for invalid ones)",
            )?,
            Self::UnknownItem => valid_order(&order_id, UNKNOWN_ITEM, 1, None)?,
            Self::MissingQty => {
                json(json!({ "order_id": order_id, "item": item, "status": OrderStatus::Placed }))
            }
            Self::ZeroQty => json(json!({ "order_id": order_id, "item": item, "qty": 0 })),
            Self::QtyTwo => json(json!({ "order_id": order_id, "item": item, "qty": "two" })),
            // The order id is in the text so the message is easy to find in the DLQ.
            Self::NotJson => format!("order {order_id}: 2 x {item}, please").into_bytes(),
            Self::Cancel => OrderCancelled {
                order_id: OrderId::parse(&order_id).map_err(|e| anyhow!(e.0))?,
                reason: "cancelled by sagactl".into(),
            }
            .to_body(),
        };
        let event_type = match self {
            Self::Cancel => EventType::OrderCancelled,
            _ => EventType::OrderPlaced,
        };
        Ok(Message {
            body,
            order_id,
            event_type,
        })
    }

    /// What the saga should do with this sample, in a sentence.
    pub fn expectation(self) -> &'static str {
        match self {
            Self::Order => {
                "inventory reserves it once (inventory.reserved), or fails it for lack of stock"
            }
            Self::MissingQty => "DLQ, reason \"missing required field qty\"",
            Self::ZeroQty => "DLQ, reason \"qty must be at least 1, got 0\"",
            Self::QtyTwo => "DLQ, reason \"qty must be an integer, got string \\\"two\\\"\"",
            Self::NotJson => "DLQ, reason \"body is not valid JSON: ...\"",
            Self::UnknownItem => {
                "inventory.failed with code unknown_item (a business outcome, not the DLQ)"
            }
            Self::Cancel => "inventory.released: the order's reserved units go back to stock",
        }
    }
}

/// An OrderPlaced body built from the shared event type, so a valid sample is valid by
/// construction.
fn valid_order(
    order_id: &str,
    item: &str,
    qty: i64,
    student_id: Option<&str>,
) -> anyhow::Result<Vec<u8>> {
    let order = OrderPlaced {
        order_id: OrderId::parse(order_id).map_err(|e| anyhow!(e.0))?,
        lines: Lines::single(
            Item::parse(item).map_err(|e| anyhow!(e.0))?,
            Qty::parse(qty).map_err(|e| anyhow!(e.0))?,
        ),
        student_id: student_id
            .map(StudentId::parse)
            .transpose()
            .map_err(|e| anyhow!(e.0))?,
    };
    Ok(order.to_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(order_id: Option<&str>) -> SampleParams {
        SampleParams {
            order_id: order_id.map(str::to_owned),
            item: "burger".into(),
            qty: 3,
            student_id: None,
        }
    }

    #[test]
    fn valid_samples_parse_and_poison_samples_do_not() {
        for sample in Sample::value_variants() {
            if *sample == Sample::Cancel {
                continue;
            }
            let message = sample.build(&params(None)).unwrap();
            let parsed = OrderPlaced::from_body(&message.body);
            let valid = matches!(sample, Sample::Order | Sample::UnknownItem);
            assert_eq!(parsed.is_ok(), valid, "{sample:?}");
        }
    }

    #[test]
    fn poison_reasons_match_the_expectations() {
        let reason = |s: Sample| {
            OrderPlaced::from_body(&s.build(&params(Some("o1"))).unwrap().body)
                .unwrap_err()
                .0
        };
        assert_eq!(reason(Sample::MissingQty), "missing required field qty");
        assert_eq!(reason(Sample::ZeroQty), "qty must be at least 1, got 0");
        assert!(reason(Sample::NotJson).starts_with("body is not valid JSON"));
    }

    #[test]
    fn cancel_needs_an_order_id() {
        assert!(Sample::Cancel.build(&params(None)).is_err());
        let cancel = Sample::Cancel.build(&params(Some("o1"))).unwrap();
        assert_eq!(cancel.event_type, EventType::OrderCancelled);
        assert!(OrderCancelled::from_body(&cancel.body).is_ok());
    }

    #[test]
    fn the_order_sample_keeps_the_given_id_and_quantity() {
        let order = Sample::Order.build(&params(Some("o42"))).unwrap();
        let placed = OrderPlaced::from_body(&order.body).unwrap();
        assert_eq!(placed.order_id.as_str(), "o42");
        assert_eq!(placed.lines.first().qty.get(), 3);
        assert!(
            Sample::Order
                .build(&SampleParams {
                    qty: 0,
                    ..params(None)
                })
                .is_err()
        );
    }
}
