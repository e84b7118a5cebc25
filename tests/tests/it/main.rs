//! The integration suite, one test binary: each module is one part of the specification, run
//! against the real binaries, a real RabbitMQ and a real Redis, each test in a world of its own
//! (vhost and Redis prefix; see `harness::TestEnv`).
//!
//! One binary, so that the workspace links the test code once rather than once per file. Run
//! one part with a filter on its module: `cargo test -p saga-tests --test it saga::`.
//!
//! - [`saga`]: the saga end to end; [`compensation`]: cancel and compensation; [`retries`]: the
//!   retry policy; [`edge`]: the front door and the outbox under hostile input; [`poison`]:
//!   hostile messages and broker state; [`hostile`]: the seeded hostile-input suite;
//!   [`envelopes`]: the six shapes an event arrives in, and the CloudEvents headers we send;
//!   [`traces`]: one order, one W3C trace, from the HTTP request to its last event;
//!   [`lifecycle`]: an order's whole life (PATCH, status events, deadlines, retention);
//!   [`lines`]: orders of several lines, all or nothing, and OrderPlaced version 2.
//! - [`alerts`]: the Prometheus alert rules, by promtool's unit cases and in a real Prometheus
//!   scraping the services and the broker.
//! - [`faults`]: invariants under real faults; [`healing`]: the topology heals itself;
//!   [`replication`]: acknowledged means replicated; [`cluster`]: the cluster profile and the
//!   failover drill.
//! - [`catalog`]: the catalog inventory-svc owns, its product events (the start-up snapshot,
//!   each threshold crossed once) and order-svc's replica of it, across a restart.
//! - [`notify_lifecycle`]: notification-svc tells an order's whole life once per outcome.
//! - [`openapi`]: the HTTP API as documents (each service's `/openapi.json`), held to the routes
//!   the services answer and fuzzed by schemathesis against them.
//! - [`contract`]: the bus as documents (docs/schemas/, docs/asyncapi.yaml), held to the code and
//!   to every message of a real run.
//! - [`sagactl_json`]: what scripts read; [`board`]: the classroom board in a real browser;
//!   [`security`]: who may change state; [`auth`]: orders per user, opt-in (Bearer tokens on
//!   `/api/v1/orders`); [`compose`]: the Compose profile against the binaries.

mod alerts;
mod auth;
mod board;
mod catalog;
mod cluster;
mod compensation;
mod compose;
mod contract;
mod edge;
mod envelopes;
mod faults;
mod healing;
mod hostile;
mod lifecycle;
mod lines;
mod notify_lifecycle;
mod openapi;
mod poison;
mod replication;
mod retention_inventory;
mod retries;
mod saga;
mod sagactl_json;
mod sagactl_lifecycle;
mod security;
mod traces;
