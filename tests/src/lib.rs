//! The test harness: real binaries against a real RabbitMQ and Redis, each test in isolation.
//!
//! - [`TestEnv`]: a fresh vhost (management API) and Redis key prefix per test, removed on drop.
//! - [`Service`]: one real service process (`order-svc`, ...) with its log captured, that a test
//!   can SIGTERM, `kill -9` and restart.
//! - [`eventually`]: poll with a deadline; no fixed sleeps.
//! - broker helpers: publish a bare message, queue depth by passive declare, drain the DLQ.
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
pub mod http;
pub mod load;
pub mod orders;
pub mod partition;
pub mod poll;
pub mod private;
pub mod process;

pub use env::TestEnv;
pub use poll::eventually;
pub use process::{Service, ServiceKind};
