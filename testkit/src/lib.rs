//! The test kit: the worlds and processes the saga is driven in from the outside, written
//! once for the integration tests and the benchmark.
//!
//! - [`world`]: a fresh vhost and Redis prefix (one name for both), made and removed through the
//!   management API and `SCAN`/`UNLINK`, so nobody sees anyone else's queues or keys.
//! - [`cluster_profile`]: the ports `scripts/cluster.sh` uses, for tests and bench that start one.
//! - [`service`]: a real service process on a port it picks and reports, its log captured,
//!   SIGTERM'd, `kill -9`'d and restarted.
//! - `inproc` (feature `inproc`): a service's `App` inside the test's own process, on port 0,
//!   for tests where a separate process is not the point.
//! - [`poll`]: waiting with a deadline ([`poll::eventually`]) or until progress stalls
//!   ([`poll::Stall`]); never a fixed sleep.
//!
//! The order client and the load generator are not here: they are the `saga-client` crate,
//! which sagactl uses without the rest of the kit.
//!
//! Queue depth is not here: it is [`saga_platform::amqp::depth`], which the services' own tools use too.

pub mod cluster_profile;
#[cfg(feature = "inproc")]
pub mod inproc;
pub mod poll;
pub mod service;
pub mod world;

pub use poll::{Stall, eventually};
pub use service::{Endpoint, ServiceKind, ServiceProcess, Spawn};
pub use world::World;
