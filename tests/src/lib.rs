//! The test harness: real binaries against a real RabbitMQ and Redis, each test in isolation.
//!
//! The plumbing (worlds, service processes, waiting) is the test kit's ([`testkit`]), shared with
//! the benchmark; the order client and the load generator are the client crate's ([`saga_client`]),
//! shared with sagactl and the benchmark. This crate adds what only the tests need, on top of them:
//!
//! - [`TestEnv`]: a test's [`testkit::World`] (fresh vhost and Redis prefix), removed on drop,
//!   with the services it starts ([`ServiceProcess`]: SIGTERM, `kill -9`, restart, captured log).
//! - [`eventually`]: poll with a deadline; no fixed sleeps.
//! - broker helpers: publish a bare message, queue depth by passive declare, drain the DLQ.
//! - [`hostile`]: the hostile-input suite's generators and checks.
//! - [`http`]: a service's page as text or JSON, and a figure out of `/metrics`.
//! - [`orders`]: order-svc through the env, with typed waits ([`TestEnv::wait_status`] with an
//!   `OrderStatus`, [`TestEnv::order`] as an `OrderView`), and `PATCH .../status` on both paths.
//! - [`status_events`]: `order.status.updated` off a tap of the test's own, deduplicated by event
//!   id, beside the transitions an order's timeline says it made; Redis bytes under a prefix.
//! - [`cluster`]: the cluster profile (`scripts/cluster.sh`) on private names and ports (the
//!   failover drill against it is the test suite's `cluster::drill`); [`partition`]: a Redis
//!   replication link that can be cut, as a network would be.
//!
//! Set `TEST_LOG=1` to see the services' logs while tests run.

pub mod broker;
pub mod cluster;
pub mod env;
pub mod hostile;
pub mod http;
pub mod load;
pub mod orders;
pub mod partition;
pub mod private;
pub mod process;
pub mod status_events;

pub use env::TestEnv;
pub use process::{ServiceKind, ServiceProcess};
pub use testkit::Endpoint;
pub use testkit::eventually;
