//! Domain newtypes, built only by `parse()` ("parse, don't validate").
//!
//! Once a value is an `OrderId` or a `Qty`, the rest of the code never checks it again. The limits
//! here are what makes a message *poison*: anything these reject goes to the DLQ (from the broker)
//! or gets a 400 (from HTTP).
//!
//! | value | bytes | alphabet |
//! |---|---|---|
//! | [`OrderId`] | 1 to [`MAX_ID_LEN`] | ASCII letters, digits, `-`, `_`, `.` |
//! | [`CorrelationId`] | 1 to [`MAX_ID_LEN`] | the same, and `:` |
//! | [`Item`] | 1 to [`MAX_ID_LEN`] | letters, digits, space, `-`, `_`, `.` |
//! | [`StudentId`] | 1 to [`MAX_ID_LEN`] | anything but control characters |
//! | [`IdempotencyKey`] | 1 to [`MAX_IDEMPOTENCY_KEY_LEN`] | ASCII letters, digits, `-`, `_`, `.`, `+`, `/`, `=` |
//! | [`Qty`] | | an integer from 1 to [`MAX_QTY`] |
//!
//! **Why an order id has no `:`**: an order id becomes part of Redis keys
//! (`{prefix}:order:{id}`, `{prefix}:order:{id}:history`, `{prefix}:order:{id}:dlq`, see
//! `saga_platform::redis::store::Keys`), and `:` separates their parts. With `:` allowed, the order
//! `o1:history` would *be* the history list of `o1`, and the order `o1:dlq` its DLQ hops: one
//! crafted id could read or overwrite another order's records. UUIDs (ours) and the lab's short
//! tokens (`o1`, `dup-1`, `lab-1`) need none of it. A correlation id is only ever a value, never
//! part of a key, so it may keep `:` (`trace:42`).
//!
//! Every one of these limits is also a limit of the wire: an AMQP short string (message id,
//! correlation id, type) holds at most 255 bytes, so none of these values can make a message the
//! broker would refuse, or a client library panic on.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Largest quantity one order may ask for; more is "absurd" and treated as poison.
pub const MAX_QTY: i64 = 10_000;
/// Longest id, correlation id, item name or student id we accept, in bytes.
pub const MAX_ID_LEN: usize = 64;
/// Longest `Idempotency-Key` we accept, in bytes (Stripe's limit; room for any UUID or hash).
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// Why a value was refused; the text ends up in an HTTP error or an `x-dlq-reason` header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

macro_rules! text_newtype {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr, $allowed:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, Invalid> {
                let allowed: fn(char) -> bool = $allowed;
                if raw.is_empty() {
                    return Err(Invalid(format!("{} must not be empty", $what)));
                }
                if raw.len() > $max {
                    return Err(Invalid(format!("{} longer than {} bytes", $what, $max)));
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

        /// Read through `parse`, so a record read back is as valid as the one written.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// The characters of an order id: never `:`, which separates the parts of a Redis key.
fn id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.".contains(c)
}

text_newtype!(
    /// An order's id: a UUID from order-svc, or any short token a lab script chose. Part of
    /// Redis keys, so never a `:` (see the module docs).
    OrderId, "order_id", MAX_ID_LEN, id_char
);
text_newtype!(
    /// What ties the events of one request together (`X-Correlation-Id`; the AMQP
    /// `correlation_id`): by default the order id. A value only, never part of a key.
    CorrelationId, "correlation id", MAX_ID_LEN, |c| id_char(c) || c == ':'
);
text_newtype!(
    /// A menu item, e.g. `burger`. Whether it exists is a business question for inventory-svc.
    Item, "item", MAX_ID_LEN, |c| c.is_alphanumeric() || " -_.".contains(c)
);
text_newtype!(
    /// Who placed the order (the lab's `student_id`).
    StudentId, "student_id", MAX_ID_LEN, |c| !c.is_control()
);
text_newtype!(
    /// The `Idempotency-Key` of a request: a client's name for one attempt at placing or
    /// cancelling an order, so that retrying it never does it twice. A UUID, or any token of
    /// the alphabet base64 and hex keys use.
    IdempotencyKey, "idempotency key", MAX_IDEMPOTENCY_KEY_LEN,
    |c| c.is_ascii_alphanumeric() || "-_.+/=".contains(c)
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
        assert!(OrderId::parse("o1.v2_x-3").is_ok());
    }

    #[test]
    fn an_order_id_cannot_name_another_orders_keys() {
        // `o1:history` would be the key of o1's history list, `o1:dlq` its DLQ hops.
        for crafted in ["o1:history", "o1:dlq", ":", "a:b"] {
            let err = OrderId::parse(crafted).unwrap_err();
            assert_eq!(err.0, "order_id contains ':'", "{crafted}");
        }
        // On the bus the same rule makes the message poison: its body cannot be read.
        let body = br#"{"order_id":"o1:history","item":"burger","qty":1}"#;
        let poison = crate::events::OrderPlaced::from_body(body).unwrap_err();
        assert_eq!(poison.0, "order_id contains ':'");
        let cancel = br#"{"order_id":"o1:dlq","reason":"x"}"#;
        assert!(crate::events::OrderCancelled::from_body(cancel).is_err());
    }

    #[test]
    fn correlation_ids_and_idempotency_keys() {
        assert!(CorrelationId::parse("trace:42").is_ok());
        assert!(CorrelationId::parse("class-demo-42").is_ok());
        let long = CorrelationId::parse(&"c".repeat(300)).unwrap_err();
        assert_eq!(long.0, "correlation id longer than 64 bytes");
        assert!(CorrelationId::parse("a b").is_err());
        assert!(IdempotencyKey::parse("0f8fad5b-d9cb-469f-a165-70867728950e").is_ok());
        assert!(IdempotencyKey::parse("dGVzdA+/==").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(MAX_IDEMPOTENCY_KEY_LEN)).is_ok());
        let long = IdempotencyKey::parse(&"k".repeat(MAX_IDEMPOTENCY_KEY_LEN + 1)).unwrap_err();
        assert_eq!(long.0, "idempotency key longer than 255 bytes");
        assert!(IdempotencyKey::parse("a:b").is_err());
        assert!(IdempotencyKey::parse("").is_err());
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
