//! The saga's vocabulary, with no I/O: what the services, `sagactl`, the benchmark and the
//! tests mean when they say "order", "status", "event". No broker, no store, no runtime here
//! (the `saga-platform` crate does that), so every rule is a plain unit test.
//!
//! - [`order`]: an order's status and its transition table; the records kept about an order
//!   (its timeline, DLQ hops, reservation, notifications) and an item's stock books.
//! - [`ids`]: newtypes (`OrderId`, `Item`, `Qty`, `StudentId`, ...), built only by `parse()`.
//! - [`lines`]: an order's lines (`Lines`: 1 to 20, each item once) and what inventory answers
//!   about each (reserved, unserved, released).
//! - [`events`]: the events of the saga: their types, routing keys and metadata.
//! - [`wire`]: their JSON bodies as serde structs, read with reasons a person can act on
//!   ([`wire::Malformed`]: a DLQ reason or an HTTP 400), `TryFrom` into the events.
//! - [`product`]: the catalog: products, prices in minor units with their currency, and the
//!   product events inventory-svc announces (with the stock signals' crossing rule).
//! - [`owner`]: who owns an order and who may do what to it (the per-user API's token claims,
//!   `Caller`, the staff rule).
//! - [`view`]: what `GET /order/{id}` answers (`OrderView`), declared once for every reader.
//! - [`dlq`]: the headers that say why a message is in the DLQ (`DlqHeaders`), written by the
//!   consume loop and read by `sagactl`.
//! - [`invariants`]: the invariants of docs/DESIGN.md §6 as pure rules over what the services
//!   left behind; `sagactl check`, the board and the tests apply them.
//! - [`retry`]: the retry policy: an outage is waited out, any other failure is retried a few
//!   times, then dead-lettered (invariant 4).
//! - [`version`]: the events' schema versions (`x-schema-version`, `MAJOR.MINOR`) and the rule
//!   a reader applies before it parses a body.
//! - [`envelope`]: one event in the shapes of other buses (CloudEvents binary and structured,
//!   StandardMessage, the Go bus Event, the course starter's BaseEvent), written and read.
//! - [`trace`]: W3C Trace Context (`traceparent`), one trace per order across the saga.
//! - `schema` (feature `openapi`): the newtypes as OpenAPI schemas with their `parse()` limits;
//!   the bodies above derive theirs, for order-svc's and inventory-svc's `/openapi.json`.
//!
//! Start at [`order::OrderStatus::next`]: the whole saga, seen from one order, is that table.

pub mod dlq;
pub mod envelope;
pub mod events;
pub mod ids;
pub mod invariants;
pub mod lines;
pub mod order;
pub mod owner;
pub mod product;
pub mod retry;
#[cfg(feature = "openapi")]
pub mod schema;
pub mod trace;
pub mod version;
pub mod view;
pub mod wire;
