//! The newtypes of [`crate::ids`] and [`crate::owner`] as OpenAPI schemas (feature `openapi`):
//! a string or an integer with the same limits `parse()` applies, read from the same constants,
//! so that order-svc's `/openapi.json` says what the edge really accepts.
//!
//! JSON Schema counts a string's length in characters and these limits are bytes; a pattern
//! cannot count bytes. So for ASCII text a schema is exact, and the descriptions say the limit
//! in bytes for the rest (schemathesis, in CI, sends ASCII: tests/tests/it/openapi.rs).

use std::borrow::Cow;

use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::ids::{
    CorrelationId, IdempotencyKey, Item, MAX_ID_LEN, MAX_IDEMPOTENCY_KEY_LEN, MAX_QTY, OrderId,
    Qty, StudentId,
};
use crate::owner::{Email, MAX_EMAIL_LEN, MAX_USER_ID_LEN, UserId};

/// A string schema: `1..=max` long, matching `pattern`.
fn text(max: usize, pattern: &str, description: String) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(pattern))
        .description(Some(description))
        .into()
}

/// `impl ToSchema` for a newtype whose `PartialSchema` is written below, under its own name.
macro_rules! named {
    ($($name:ident),*) => {$(
        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    )*};
}
named!(
    OrderId,
    CorrelationId,
    Item,
    StudentId,
    IdempotencyKey,
    Qty,
    UserId,
    Email
);

impl PartialSchema for OrderId {
    fn schema() -> RefOr<Schema> {
        text(
            MAX_ID_LEN,
            "^[A-Za-z0-9._-]+$",
            format!(
                "An order's id: 1 to {MAX_ID_LEN} ASCII letters, digits, '-', '_', '.' (never \
                 ':', which separates the parts of a Redis key)"
            ),
        )
    }
}

impl PartialSchema for CorrelationId {
    fn schema() -> RefOr<Schema> {
        text(
            MAX_ID_LEN,
            "^[A-Za-z0-9._:-]+$",
            format!("1 to {MAX_ID_LEN} ASCII letters, digits, '-', '_', '.', ':'"),
        )
    }
}

impl PartialSchema for Item {
    fn schema() -> RefOr<Schema> {
        text(
            MAX_ID_LEN,
            // Every ASCII character but letters, digits, space, '-', '_', '.' is refused, and
            // so are control characters; beyond ASCII, `parse()` takes letters and digits only,
            // which a pattern portable across regex dialects cannot name.
            "^[^\\u0000-\\u001F!-,/:-@\\[-^`{-\\u009F]+$",
            format!(
                "A menu item, e.g. `burger`: 1 to {MAX_ID_LEN} bytes of letters and digits (of \
                 any script), space, '-', '_', '.'"
            ),
        )
    }
}

impl PartialSchema for StudentId {
    fn schema() -> RefOr<Schema> {
        text(
            MAX_ID_LEN,
            "^[^\\u0000-\\u001F\\u007F-\\u009F]+$",
            format!(
                "Who placed the order (the lab's `student_id`): 1 to {MAX_ID_LEN} bytes, no control characters"
            ),
        )
    }
}

impl PartialSchema for IdempotencyKey {
    fn schema() -> RefOr<Schema> {
        text(
            MAX_IDEMPOTENCY_KEY_LEN,
            "^[A-Za-z0-9._+/=-]+$",
            format!(
                "A client's name for one attempt at a request: 1 to {MAX_IDEMPOTENCY_KEY_LEN} \
                 ASCII letters, digits, '-', '_', '.', '+', '/', '='"
            ),
        )
    }
}

impl PartialSchema for Qty {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(MAX_QTY))
            .description(Some(format!(
                "Units ordered: an integer from 1 to {MAX_QTY} (more is absurd)"
            )))
            .into()
    }
}

impl PartialSchema for UserId {
    fn schema() -> RefOr<Schema> {
        text(
            MAX_USER_ID_LEN,
            "^[!-9;-~]+$",
            format!(
                "A user's id (a token's `sub`): 1 to {MAX_USER_ID_LEN} visible ASCII characters, never ':'"
            ),
        )
    }
}

impl PartialSchema for Email {
    fn schema() -> RefOr<Schema> {
        text(
            MAX_EMAIL_LEN,
            "^\\S+@\\S+$",
            format!("An e-mail address: name@domain, at most {MAX_EMAIL_LEN} bytes"),
        )
    }
}
