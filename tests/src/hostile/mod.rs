//! The hostile-input suite's kit (tests/tests/it/hostile.rs): seeded random HTTP requests and AMQP
//! messages thrown at the real services, and the checks that must still hold afterwards.
//!
//! - [`run`]: the seed (printed; `HOSTILE_SEED` replays it), the budget in cases and wall time
//!   (`HOSTILE_SOAK=1` for a long run by hand), drawing cases from proptest strategies, and the
//!   findings a run collects, each with its case and the command that replays it.
//! - [`http`]: random requests at every route of a service or the board, and what every answer
//!   must be (no 5xx but a documented 503, every error JSON with `"error"`).
//! - [`amqp`]: random messages, published raw with lapin, to every work and retry queue.
//! - [`after`]: what must hold after each batch: alive, nothing held unacked, every message
//!   processed or dead-lettered with a reason, new orders final, no panic in any log.
//! - [`board`]: a `sagactl board` of the test's own, which can reach nothing but its world.
//!
//! Cases are drawn, not shrunk: each one runs against live services whose state it changes, so
//! proptest's shrinking (which replays variations of a failing case) would judge a different
//! world each time. A failing case is reported whole; `HOSTILE_ONLY=<n>` runs that case alone.

pub mod after;
pub mod amqp;
pub mod board;
pub mod http;
pub mod run;
