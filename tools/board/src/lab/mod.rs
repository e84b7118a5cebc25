//! The lab controls: what the board does to the demo beyond watching it, kept apart from the
//! live view ([`crate::live`]) and the routes ([`crate::routes`]).
//!
//! - [`drills`]: run the four lab drills (scripts/lab) one at a time, streaming their output.
//! - [`faults`]: breaking things on purpose: stop, start or `kill -9` a service, close every
//!   broker connection. Only with `--allow-faults`, and only while the board listens on a
//!   loopback address.
//! - [`redis_outage`]: stopping the one Redis the board was allowed to stop, and starting it
//!   again with the settings it ran with.
//! - [`processes`]: the demo's service processes, found from the pid files scripts/svc.sh
//!   writes.

pub mod drills;
pub mod faults;
pub mod processes;
pub mod redis_outage;
