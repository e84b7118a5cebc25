//! The lines of an order: which items, how many of each, all reserved or none.
//!
//! The lab's order is one item and a quantity; a real one holds several lines. [`Lines`] is
//! built only by [`Lines::new`], which enforces the limits a person reads in a 400 or a DLQ
//! reason: at least one line, at most [`MAX_LINES`], each item at most once (two lines of one
//! item would make "all or nothing" ambiguous: put the quantities on one line). An order of one
//! line is the lab's order: it travels as the flat lab body, version 1 of its events; an order
//! of several travels as version 2 ([`crate::version`]).
//!
//! What inventory answers about lines has a type per answer: [`ReservedLine`] (taken, with what
//! is left), [`UnservedLine`] (why not) and [`ReleasedLine`] (given back).

use std::collections::BTreeSet;

use crate::events::FailureCode;
use crate::ids::{Invalid, Item, Qty};
use crate::product::{Currency, Priced};

/// Most lines an order may hold: enough for any meal, few enough that one Lua step decides them.
pub const MAX_LINES: usize = 20;

/// One line of an order: `qty` units of `item`, with the product's name and unit price as they
/// were when the order was placed, when order-svc's replica of the catalog knew them (`None`:
/// the price is unknown; inventory still decides the line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub item: Item,
    pub qty: Qty,
    pub priced: Option<Priced>,
}

impl Line {
    pub fn new(item: Item, qty: Qty) -> Self {
        Self {
            item,
            qty,
            priced: None,
        }
    }

    /// The same line, with its product's name and unit price.
    pub fn priced(mut self, priced: Option<Priced>) -> Self {
        self.priced = priced;
        self
    }
}

/// What a set of lines costs: the sum of `qty × unit price` in minor units, when every line has
/// a price and all in one currency (otherwise there is no honest total).
pub fn total<'a>(
    lines: impl IntoIterator<Item = (u32, Option<(i64, &'a Currency)>)>,
) -> Option<(i64, Currency)> {
    let mut sum: i64 = 0;
    let mut currency: Option<&Currency> = None;
    for (qty, price) in lines {
        let (amount, line_currency) = price?;
        if currency.is_some_and(|c| c != line_currency) {
            return None;
        }
        currency = Some(line_currency);
        sum = sum.checked_add(amount.checked_mul(i64::from(qty))?)?;
    }
    Some((sum, currency?.clone()))
}

/// The lines of one order: 1 to [`MAX_LINES`], each item once, in the order they were asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lines(Vec<Line>);

impl Lines {
    /// # Errors
    /// No lines, too many, or an item twice: the reason names which.
    pub fn new(lines: Vec<Line>) -> Result<Self, Invalid> {
        if lines.is_empty() {
            return Err(Invalid("items must hold at least one line".into()));
        }
        if lines.len() > MAX_LINES {
            return Err(Invalid(format!(
                "an order holds at most {MAX_LINES} lines, got {}",
                lines.len()
            )));
        }
        let mut seen = BTreeSet::new();
        for line in &lines {
            if !seen.insert(line.item.as_str()) {
                return Err(Invalid(format!(
                    "item {:?} is on two lines; put its quantities on one",
                    line.item.as_str()
                )));
            }
        }
        Ok(Self(lines))
    }

    /// The lab's order: one line.
    pub fn single(item: Item, qty: Qty) -> Self {
        Self(vec![Line::new(item, qty)])
    }

    /// The one line of a lab order, or `None` for an order of several.
    pub fn single_line(&self) -> Option<&Line> {
        match self.0.as_slice() {
            [line] => Some(line),
            _ => None,
        }
    }

    /// The same lines, each with the price `price_of` gives its item (or none).
    pub fn priced_by(self, mut price_of: impl FnMut(&Item) -> Option<Priced>) -> Self {
        Self(
            self.0
                .into_iter()
                .map(|line| {
                    let priced = price_of(&line.item);
                    line.priced(priced)
                })
                .collect(),
        )
    }

    /// The first line: every order has one.
    pub fn first(&self) -> &Line {
        &self.0[0]
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Line> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true (an order has a line); here because `len` is.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What the order costs, when every line has a price in one currency ([`total`]).
    pub fn total(&self) -> Option<(i64, Currency)> {
        total(self.0.iter().map(|l| {
            (
                l.qty.get(),
                l.priced
                    .as_ref()
                    .map(|p| (p.price.amount_minor(), p.price.currency())),
            )
        }))
    }

    /// Units over every line.
    pub fn units(&self) -> u64 {
        self.0.iter().map(|l| u64::from(l.qty.get())).sum()
    }

    /// A few words for a log line or a notification: `2 x burger` or `3 lines, 7 units`.
    pub fn summary(&self) -> String {
        match self.single_line() {
            Some(line) => format!("{} x {}", line.qty.get(), line.item),
            None => format!("{} lines, {} units", self.len(), self.units()),
        }
    }
}

impl<'a> IntoIterator for &'a Lines {
    type Item = &'a Line;
    type IntoIter = std::slice::Iter<'a, Line>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// A line inventory reserved, with the units of its item left after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedLine {
    pub item: Item,
    pub qty: Qty,
    pub remaining: i64,
}

/// A line inventory could not serve, and why: the item is unknown or has too few units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnservedLine {
    pub item: Item,
    pub qty: Qty,
    pub code: FailureCode,
}

/// A line a cancel gave back to stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasedLine {
    pub item: Item,
    pub qty: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(item: &str, qty: i64) -> Line {
        Line::new(Item::parse(item).unwrap(), Qty::parse(qty).unwrap())
    }

    #[test]
    fn an_order_holds_one_to_twenty_distinct_lines() {
        assert_eq!(
            Lines::new(vec![]).unwrap_err().0,
            "items must hold at least one line"
        );
        let many: Vec<Line> = (0..=MAX_LINES).map(|i| line(&format!("i{i}"), 1)).collect();
        assert_eq!(
            Lines::new(many.clone()).unwrap_err().0,
            "an order holds at most 20 lines, got 21"
        );
        assert_eq!(Lines::new(many[..MAX_LINES].to_vec()).unwrap().len(), 20);
        assert_eq!(
            Lines::new(vec![line("burger", 1), line("pizza", 2), line("burger", 3)])
                .unwrap_err()
                .0,
            "item \"burger\" is on two lines; put its quantities on one"
        );
    }

    #[test]
    fn a_total_needs_every_price_in_one_currency() {
        use crate::product::{Price, ProductName};
        let priced = |amount, currency: &str| {
            Some(Priced {
                name: ProductName::parse("x").unwrap(),
                price: Price::new(amount, Currency::parse(currency).unwrap()).unwrap(),
            })
        };
        let lines = |prices: Vec<Option<Priced>>| {
            Lines::new(
                prices
                    .into_iter()
                    .enumerate()
                    .map(|(i, p)| line(&format!("i{i}"), 2).priced(p))
                    .collect(),
            )
            .unwrap()
        };
        assert_eq!(
            lines(vec![priced(899, "EUR"), priced(1250, "EUR")]).total(),
            Some((4298, Currency::parse("EUR").unwrap()))
        );
        assert_eq!(lines(vec![priced(899, "EUR"), None]).total(), None);
        assert_eq!(
            lines(vec![priced(899, "EUR"), priced(100, "USD")]).total(),
            None
        );
    }

    #[test]
    fn a_single_line_is_the_labs_order() {
        let one = Lines::new(vec![line("burger", 2)]).unwrap();
        assert_eq!(
            one,
            Lines::single(one.first().item.clone(), one.first().qty)
        );
        assert_eq!(one.single_line(), Some(&line("burger", 2)));
        assert_eq!(one.summary(), "2 x burger");
        let two = Lines::new(vec![line("burger", 2), line("pizza", 5)]).unwrap();
        assert_eq!(two.single_line(), None);
        assert_eq!(two.units(), 7);
        assert_eq!(two.summary(), "2 lines, 7 units");
    }
}
