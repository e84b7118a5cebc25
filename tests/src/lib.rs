//! The test harness: real binaries against a real RabbitMQ and Redis, each test in isolation.
//!
//! The plumbing (worlds, service processes, waiting, the order client, the load generator) is
//! the test kit's ([`testkit`]), shared with the benchmark and sagactl; this crate adds what only
//! the tests need, on top of it:
//!
//! - [`TestEnv`]: a test's [`testkit::World`] (fresh vhost and Redis prefix), removed on drop,
//!   with the services it starts ([`ServiceProcess`]: SIGTERM, `kill -9`, restart, captured log).
//! - [`eventually`]: poll with a deadline; no fixed sleeps.
//! - broker helpers: publish a bare message, queue depth by passive declare, drain the DLQ.
//! - [`hostile`]: the hostile-input suite's generators and checks.
//! - [`http`]: a service's page as text or JSON, and a figure out of `/metrics`.
//! - [`cluster`]: the cluster profile (`scripts/cluster.sh`) on private names and ports;
//!   [`drill`]: the failover drill against it; [`partition`]: a Redis replication link that can
//!   be cut, as a network would be.
//!
//! Set `TEST_LOG=1` to see the services' logs while tests run.

pub mod broker;
pub mod cluster;
pub mod drill;
pub mod env;
pub mod hostile;
pub mod http;
pub mod load;
pub mod orders;
pub mod partition;
pub mod private;
pub mod process;

pub use env::TestEnv;
pub use process::{ServiceKind, ServiceProcess};
pub use testkit::Endpoint;
pub use testkit::eventually;
