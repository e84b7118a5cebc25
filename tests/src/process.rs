//! Service processes come from the test kit ([`testkit::service`]); what is left here is the port
//! for a *third-party* server a test starts itself (redis-server, a RabbitMQ node, chromedriver).

use std::net::TcpListener;

pub use testkit::service::{ServiceKind, ServiceProcess, bin_dir};

/// A free loopback port for a program that cannot report the port it picked (bind to 0, read
/// it, release it). Our own services never need this: they start on port 0 and say which port
/// they got.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}
