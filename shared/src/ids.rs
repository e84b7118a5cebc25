//! Domain newtypes, built only by `parse()` ("parse, don't validate").
//!
//! Once a value is an `OrderId` or a `Qty`, the rest of the code never checks it again. The limits
//! here are what makes a message *poison*: anything these reject goes to the DLQ (from the broker)
//! or gets a 400 (from HTTP).

use std::fmt;

use serde::{Serialize, Serializer};

/// Largest quantity one order may ask for; more is "absurd" and treated as poison.
pub const MAX_QTY: i64 = 10_000;
/// Longest id or item name we accept.
pub const MAX_ID_LEN: usize = 64;

/// Why a value was refused; the text ends up in an HTTP error or an `x-dlq-reason` header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

macro_rules! text_newtype {
    ($(#[$doc:meta])* $name:ident, $what:literal, $allowed:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, Invalid> {
                let allowed: fn(char) -> bool = $allowed;
                if raw.is_empty() {
                    return Err(Invalid(format!("{} must not be empty", $what)));
                }
                if raw.len() > MAX_ID_LEN {
                    return Err(Invalid(format!("{} longer than {MAX_ID_LEN} bytes", $what)));
                }
                if let Some(bad) = raw.chars().find(|c| !allowed(*c)) {
                    return Err(Invalid(format!("{} contains {bad:?}", $what)));
                }
                Ok(Self(raw.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

fn id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.:".contains(c)
}

text_newtype!(
    /// An order's id: a UUID from order-svc, or any short token a lab script chose.
    OrderId, "order_id", id_char
);
text_newtype!(
    /// A menu item, e.g. `burger`. Whether it exists is a business question for inventory-svc.
    Item, "item", |c| c.is_alphanumeric() || " -_.".contains(c)
);
text_newtype!(
    /// Who placed the order (the lab's `student_id`).
    StudentId, "student_id", |c| !c.is_control()
);

impl OrderId {
    /// A fresh random id (UUID v4) for an order placed over HTTP.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
}

/// How many units an order asks for: an integer in `1..=MAX_QTY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Qty(u32);

impl Qty {
    pub fn parse(raw: i64) -> Result<Self, Invalid> {
        if raw < 1 {
            return Err(Invalid(format!("qty must be at least 1, got {raw}")));
        }
        if raw > MAX_QTY {
            return Err(Invalid(format!("qty {raw} is absurd (limit {MAX_QTY})")));
        }
        Ok(Self(raw as u32))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Qty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_ids() {
        assert!(OrderId::parse("x").is_ok());
        assert!(OrderId::parse("0f8fad5b-d9cb-469f-a165-70867728950e").is_ok());
        assert!(OrderId::parse("").is_err());
        assert!(OrderId::parse(&"a".repeat(65)).is_err());
        assert!(OrderId::parse("a b").is_err());
        assert!(OrderId::parse("a\n").is_err());
    }

    #[test]
    fn items_and_students() {
        assert!(Item::parse("burger").is_ok());
        assert!(Item::parse("fish & chips").is_err());
        assert!(StudentId::parse("Ada Lovelace").is_ok());
        assert!(StudentId::parse("bad\u{0}").is_err());
    }

    #[test]
    fn quantities() {
        assert_eq!(Qty::parse(1).map(Qty::get), Ok(1));
        assert_eq!(Qty::parse(MAX_QTY).map(Qty::get), Ok(MAX_QTY as u32));
        assert!(Qty::parse(0).is_err());
        assert!(Qty::parse(-3).is_err());
        assert!(Qty::parse(MAX_QTY + 1).is_err());
    }
}
