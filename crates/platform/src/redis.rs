//! Redis: the services' store.
//!
//! - [`store`]: connecting with backoff, and the key layout under one prefix ([`store::Keys`]).
//! - [`client`]: the connection itself ([`client::Redis`]): one Redis or the master Sentinel names,
//!   `WAIT` after writes when replicas are required.
//! - [`replication`]: that policy (how many replicas must have a write, how long to wait).
//! - [`sentinel`]: `redis+sentinel://` URLs.

pub mod client;
pub mod replication;
pub mod sentinel;
pub mod store;
