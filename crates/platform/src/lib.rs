//! What the three saga services run on, defined once: the broker, the store, and a service's
//! life. The saga's own vocabulary (statuses, ids, events, bodies) is the `saga-domain` crate;
//! this crate moves it over RabbitMQ and keeps it in Redis.
//!
//! - [`amqp`]: RabbitMQ: connect, publish with confirms, the topology, the consume loop that
//!   turns a handler's outcome into ack, dead-letter or retry, and the retry policy.
//! - [`redis`]: Redis: the connection (one Redis, or the master Sentinel names, with `WAIT` when
//!   replicas are required) and the key layout under one prefix.
//! - [`service`]: the [`service::SagaService`] trait every service's `App` implements and the one
//!   `main` they run; settings, telemetry, `/health` `/ready` `/metrics`, admin endpoints,
//!   shutdown, backoff and task supervision.
//!
//! Start at [`service::main`]: it reads the settings, starts logging and runs a service until
//! SIGINT or SIGTERM; the service's `App` then uses [`amqp`] and [`redis`].

pub mod amqp;
pub mod redis;
pub mod service;
