//! The bus's contract as documents a person or a tool can read (issue 21), held to the code and
//! to a real run: the JSON Schemas of docs/schemas/ and the AsyncAPI document docs/asyncapi.yaml.
//!
//! - [`documents`]: those files, read once (the YAML as JSON), and a schema compiled by name.
//! - [`asyncapi`]: the document lists exactly the routing keys, queues and bindings the code
//!   declares, and every message's payload is a schema file that exists. No broker needed.
//! - [`envelopes`]: each event in each envelope of `EVENT_ENVELOPE`, as `Stamp::wrap` writes it,
//!   matches the document's schema of that envelope, and its properties the document's headers.
//! - [`saga_run`]: every message the saga publishes while orders go down every path matches the
//!   schema its routing key and `x-schema-version` name, and the headers the document describes.
//!
//! The schemas against the Rust types that write and read the bodies: crates/domain/tests/schemas.rs.

mod asyncapi;
mod documents;
mod envelopes;
mod saga_run;
