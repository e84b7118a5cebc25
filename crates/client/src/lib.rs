//! order-svc as a client sees it, written once for `sagactl load`, the benchmark and the
//! integration tests (none of them needs the others, or the test kit, to place an order).
//!
//! - [`orders`]: the client side of order-svc's HTTP API ([`OrderClient`]): place (its answer
//!   read as the domain's [`saga_domain::view::OrderAck`]), cancel, move along the lifecycle
//!   (`PATCH .../status`: [`StatusAnswer`]), and read an order as the
//!   domain's [`saga_domain::view::OrderView`].
//! - [`load`]: the load generator (closed loop or fixed rate, with or without retries); it only
//!   sends and records, and what a run means is the caller's to work out.

pub mod load;
pub mod orders;

pub use orders::{Answer, OrderClient, StatusAnswer, Timed, order_body, status_body};
