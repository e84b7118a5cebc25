//! What the three saga services share, defined once.
//!
//! - [`cluster_profile`]: the ports `scripts/cluster.sh` uses, for tests and bench that start one.
//! - [`config`]: the command-line / environment settings every service takes.
//! - [`telemetry`]: log set-up (readable or JSON) and the Prometheus recorder.
//! - [`domain`]: the order's status and its transition table; the records kept about an order.
//! - [`ids`]: domain newtypes (`OrderId`, `Item`, `Qty`, `StudentId`), built only by `parse()`.
//! - [`events`]: the wire contract: event types, routing keys and AMQP properties.
//! - [`wire`]: the JSON bodies as serde structs, read with reasons a person can act on
//!   ([`wire::Malformed`]: a DLQ reason or an HTTP 400), `TryFrom` into the events.
//! - [`topology`]: the exchange, queues and bindings, declared idempotently by every service.
//! - [`amqp`]: connecting with backoff, publishing with confirms, declaring the topology.
//! - [`nodes`]: `RABBITMQ_URL` as a list of cluster nodes: validated, redacted, tried in turn.
//! - [`headers`]: copies of a message's headers made to fit one AMQP frame (DLQ, retry queue).
//! - [`oversized`]: taking off a queue a message the broker grew past the frame (lapin cannot read it).
//! - [`consumer`]: the consume loop that turns a handler's [`consumer::Outcome`] into ack,
//!   dead-letter or retry.
//! - [`retry`]: the retry policy: an outage is waited out, any other failure is retried a few
//!   times through a retry queue, then dead-lettered.
//! - [`store`]: Redis connection and the key layout under one prefix.
//! - [`redis_client`]: the connection itself: one Redis or the master Sentinel names, `WAIT`
//!   after writes when replicas are required ([`replication`]; Sentinel URLs: [`sentinel`]).
//! - [`backoff`]: capped exponential backoff for everything transient.
//! - [`http`]: `/health`, `/ready`, `/metrics` and JSON errors, for every service.
//! - [`admin`]: state-changing ops endpoints: loopback callers, or `ADMIN_TOKEN`.
//! - [`service`]: the [`service::Service`] trait each service's `App` implements, and the
//!   one `main` every service binary runs.
//! - [`shutdown`]: SIGINT/SIGTERM into a cancellation token.
//! - [`watch`]: every long-running task supervised (restarted with backoff), and the
//!   [`watch::Watchdog`] that `/ready` reads: what is down, and why.
#![forbid(unsafe_code)]

pub mod admin;
pub mod amqp;
pub mod backoff;
pub mod cluster_profile;
pub mod config;
pub mod consumer;
pub mod domain;
pub mod events;
pub mod headers;
pub mod http;
pub mod ids;
pub mod nodes;
pub mod oversized;
pub mod redis_client;
pub mod replication;
pub mod retry;
pub mod sentinel;
pub mod service;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod topology;
pub mod watch;
pub mod wire;
