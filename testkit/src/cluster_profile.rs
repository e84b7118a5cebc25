//! The ports `scripts/cluster.sh` derives from its base, for the tests and the benchmark that
//! start a private cluster profile: one definition, so both pick a block nobody listens on.

/// Bases whose every port (up to base + 20,703) stays below 32,768, where Linux's ephemeral
/// range begins: an outgoing connection's local port can take a port in that range between the
/// check that it is free and the bind (it happened: "redis2 does not answer PING").
const FIRST_BASE: u16 = 7_000;
const BASES: u64 = 500;

/// The ports the script uses for base `b` (see its header): 3 AMQP, 3 management, 3 Erlang
/// distribution, 3 Redis, 3 Sentinel, 4 HTTP.
fn ports_of(base: u16) -> Vec<u16> {
    let mut ports = Vec::new();
    for i in 1..=3 {
        ports.extend([base + i, base + 10_000 + i, base + 20_000 + i]);
        ports.extend([base + 700 + i, base + 20_700 + i]);
    }
    ports.extend((91..=94).map(|i| base + i));
    ports
}

fn all_free(ports: &[u16]) -> bool {
    ports
        .iter()
        .all(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
}

/// A base for `scripts/cluster.sh` whose every port is free now, trying a few at random.
pub fn free_base() -> Option<u16> {
    (0..50)
        .map(|_| FIRST_BASE + 10 * (saga_platform::service::backoff::random_below(BASES) as u16))
        .find(|b| all_free(&ports_of(*b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_port_stays_below_the_ephemeral_range() {
        let highest = FIRST_BASE + 10 * (BASES as u16 - 1);
        assert!(ports_of(highest).iter().all(|p| *p < 32_768));
        assert_eq!(ports_of(FIRST_BASE).len(), 19);
    }
}
