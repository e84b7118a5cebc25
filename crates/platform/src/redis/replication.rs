//! When a Redis write counts as acknowledged: the `WAIT` policy.
//!
//! Redis replicates asynchronously. A write the master answered may not have reached any replica
//! yet, and if the master dies then, Sentinel promotes a replica that never saw it: a 201 or an
//! ack would have promised something a failover takes back. So, when replicas are configured,
//! every write is followed by `WAIT <replicas> <timeout>` on the same master (how, and why a
//! `PUBLISH` comes first: [`crate::redis::client`]), and only a reply of at least `<replicas>`
//! makes it acknowledged. A `WAIT` that times out is an outage
//! ([`crate::amqp::retry::is_outage`]): the handler's work is retried (it is idempotent), `POST /order`
//! answers 503; never a silent success.
//!
//! [`crate::redis::client::Redis`] applies the policy to every command it sends, so a handler
//! needs no call of its own: the order with its outbox entry, the reservation, the status
//! transition and the notification record are each followed by `WAIT` before the service answers
//! 201 or acks. Reads are told apart from writes by their command name ([`is_write`]); anything
//! not known to be a read is treated as a write. A read whose answer leaves the store (the outbox
//! relay's `XRANGE`, whose entries it publishes) waits too ([`needs_wait`]): an event must not
//! go out for an order a failover could still erase.
//!
//! How many replicas: `REDIS_MIN_REPLICAS`, `auto` by default, which means 1 with a Sentinel URL
//! (the cluster profile: a master with replicas) and 0 with a plain URL (one Redis, exactly as
//! before: no `WAIT` at all). Set it to 0 to switch `WAIT` off (the failover drill's
//! demonstration of what is then lost), or higher to wait for more replicas.

use std::fmt;
use std::time::Duration;

use redis::{Arg, Cmd, Pipeline};

/// How many replicas must acknowledge each write, and how long to wait for them.
#[derive(clap::Args, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    /// Replicas that must have each write before it counts (WAIT); `auto`: 1 with a Sentinel
    /// URL, 0 (no WAIT) with a plain Redis URL.
    #[arg(long = "redis-min-replicas", env = "REDIS_MIN_REPLICAS", default_value = "auto",
          value_parser = parse_min_replicas)]
    pub min_replicas: MinReplicas,

    /// How long a write waits for its replicas before it counts as an outage (and is retried).
    #[arg(long = "redis-wait-timeout", env = "REDIS_WAIT_TIMEOUT", default_value = "1s",
          value_parser = parse_wait_timeout)]
    pub wait_timeout: Duration,
}

impl Default for Replication {
    fn default() -> Self {
        Self {
            min_replicas: MinReplicas::Auto,
            wait_timeout: Duration::from_secs(1),
        }
    }
}

/// `REDIS_MIN_REPLICAS`: a number, or `auto` (decided by the kind of URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinReplicas {
    Auto,
    Exactly(u32),
}

impl Replication {
    /// The policy for a store reached through `sentinel` (true) or a plain URL (false).
    pub fn policy(&self, sentinel: bool) -> WaitPolicy {
        let replicas = match self.min_replicas {
            MinReplicas::Exactly(n) => n,
            MinReplicas::Auto if sentinel => 1,
            MinReplicas::Auto => 0,
        };
        WaitPolicy {
            replicas,
            timeout: self.wait_timeout,
        }
    }
}

/// The policy in force on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitPolicy {
    /// 0: writes are acknowledged by the master alone (no `WAIT`).
    pub replicas: u32,
    pub timeout: Duration,
}

impl WaitPolicy {
    pub fn is_on(&self) -> bool {
        self.replicas > 0
    }

    /// The `WAIT` that follows a write.
    pub fn command(&self) -> Cmd {
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(self.replicas).arg(self.timeout.as_millis() as u64);
        cmd
    }
}

/// Fewer replicas than required acknowledged a write in time. The write may or may not survive a
/// failover, so nothing may be promised on it: an outage, waited out like Redis being away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationLag {
    pub acknowledged: i64,
    pub required: u32,
    pub within: Duration,
}

impl fmt::Display for ReplicationLag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WAIT: {} of {} replica(s) acknowledged the write within {} ms (a replica down or \
             lagging, or a failover under way); not acknowledged, will retry",
            self.acknowledged.max(0),
            self.required,
            self.within.as_millis()
        )
    }
}

impl std::error::Error for ReplicationLag {}

impl ReplicationLag {
    /// As the Redis error a connection returns: an I/O timeout, which every caller already
    /// treats as "the store is away" (and [`crate::amqp::retry::is_outage`] as an outage).
    pub fn into_redis_error(self) -> redis::RedisError {
        std::io::Error::new(std::io::ErrorKind::TimedOut, self).into()
    }

    /// The lag inside `err`, if that is what it is: the write was done, and only its
    /// replication is unconfirmed. `POST /order` tells this apart from a store that is away,
    /// because then the order may exist, and the client must retry with the same
    /// `Idempotency-Key` rather than place it again.
    pub fn of(err: &redis::RedisError) -> Option<&Self> {
        use std::error::Error as _;
        // redis-rs keeps the io::Error behind an `Arc<dyn Error>`, which is what `source` gives.
        let shared = err
            .source()?
            .downcast_ref::<std::sync::Arc<dyn std::error::Error + Send + Sync>>()?;
        let io = (**shared).downcast_ref::<std::io::Error>()?;
        io.get_ref()?.downcast_ref::<Self>()
    }
}

/// Commands that never change the data set. `SCRIPT` (`LOAD`, `EXISTS`) is one: a script is
/// not data, and a script's *effects* are replicated when it runs (EVALSHA, which waits). Were
/// `SCRIPT LOAD` followed by `WAIT`, a lagging replica would fail the load that precedes a
/// script's first run, and the caller would take "not acknowledged" for "written but not
/// acknowledged" when nothing was written. Anything else (including EVALSHA, MULTI/EXEC and
/// commands this list does not know) is treated as a write and followed by `WAIT`: waiting
/// needlessly costs a round trip, not waiting when needed costs an acknowledged write.
const READS: &[&str] = &[
    "AUTH",
    "CLIENT",
    "DBSIZE",
    "ECHO",
    "EVALSHA_RO",
    "EVAL_RO",
    "EXISTS",
    "GET",
    "GETRANGE",
    "HELLO",
    "HEXISTS",
    "HGET",
    "HGETALL",
    "HKEYS",
    "HLEN",
    "HMGET",
    "HSCAN",
    "HSTRLEN",
    "HVALS",
    "INFO",
    "KEYS",
    "LINDEX",
    "LLEN",
    "LPOS",
    "LRANGE",
    "MGET",
    "PING",
    "PTTL",
    "ROLE",
    "SCAN",
    "SCARD",
    "SCRIPT",
    "SELECT",
    "SISMEMBER",
    "SMEMBERS",
    "SMISMEMBER",
    "SRANDMEMBER",
    "SSCAN",
    "STRLEN",
    "TIME",
    "TTL",
    "TYPE",
    "WAIT",
    "XINFO",
    "XLEN",
    "XPENDING",
    "XRANGE",
    "XREAD",
    "XREVRANGE",
    "ZCARD",
    "ZCOUNT",
    "ZRANGE",
    "ZRANGEBYSCORE",
    "ZRANK",
    "ZREVRANGE",
    "ZREVRANGEBYSCORE",
    "ZREVRANK",
    "ZSCAN",
    "ZSCORE",
];

/// Reads whose answer the saga passes on to the world: the outbox relay publishes what
/// `XRANGE` returns. What they return must be on the replicas first, or the relay could publish
/// the OrderPlaced of an order whose 201 was never given (its `WAIT` timed out) and that a
/// failover then erases, and inventory would hold stock for an order nobody has (measured: 54
/// such reservations in one drill before this rule).
const PASSED_ON: &[&str] = &["XRANGE", "XREVRANGE", "XREAD"];

fn name_is(cmd: &Cmd, names: &[&str]) -> Option<bool> {
    let Some(Arg::Simple(name)) = cmd.args_iter().next() else {
        return None;
    };
    Some(
        names
            .iter()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(name)),
    )
}

/// Whether `cmd` may change the data set (and so needs `WAIT` before it counts).
pub fn is_write(cmd: &Cmd) -> bool {
    name_is(cmd, READS).is_none_or(|read| !read)
}

/// Whether `cmd` must be followed by `WAIT` (when the policy asks for replicas): a write, or a
/// read whose answer is passed on ([`PASSED_ON`]).
pub fn needs_wait(cmd: &Cmd) -> bool {
    is_write(cmd) || name_is(cmd, PASSED_ON).unwrap_or(false)
}

/// Whether any command of `pipeline` must be followed by `WAIT`.
pub fn pipeline_needs_wait(pipeline: &Pipeline) -> bool {
    pipeline.cmd_iter().any(needs_wait)
}

fn parse_min_replicas(s: &str) -> Result<MinReplicas, String> {
    match s.trim() {
        "auto" => Ok(MinReplicas::Auto),
        n => n
            .parse::<u32>()
            .ok()
            .filter(|n| *n <= 16)
            .map(MinReplicas::Exactly)
            .ok_or_else(|| format!("{s:?}: use auto, or a number of replicas from 0 to 16")),
    }
}

/// A WAIT timeout from a humane duration, 10 ms to 10 s: `WAIT` blocks the connection it is sent
/// on (Redis answers nothing else on it meanwhile), so a long one stalls every request behind it;
/// and 0 would mean "wait for ever" to Redis.
fn parse_wait_timeout(s: &str) -> Result<Duration, String> {
    let timeout = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e}; expected a duration such as 500ms or 1s"))?;
    if timeout < Duration::from_millis(10) || timeout > Duration::from_secs(10) {
        return Err(format!("{s} is out of range: use 10ms to 10s"));
    }
    Ok(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_waits_only_behind_sentinel() {
        let auto = Replication::default();
        assert_eq!(auto.policy(true).replicas, 1);
        assert!(!auto.policy(false).is_on());
        let off = Replication {
            min_replicas: MinReplicas::Exactly(0),
            ..auto
        };
        assert!(!off.policy(true).is_on());
        let two = Replication {
            min_replicas: MinReplicas::Exactly(2),
            ..auto
        };
        assert_eq!(two.policy(false).replicas, 2);
    }

    #[test]
    fn settings_parse_and_silly_ones_do_not() {
        assert_eq!(parse_min_replicas("auto"), Ok(MinReplicas::Auto));
        assert_eq!(parse_min_replicas("2"), Ok(MinReplicas::Exactly(2)));
        assert!(parse_min_replicas("-1").is_err());
        assert!(parse_min_replicas("many").is_err());
        assert_eq!(parse_wait_timeout("250ms"), Ok(Duration::from_millis(250)));
        assert!(
            parse_wait_timeout("0s").is_err(),
            "0 means for ever to Redis"
        );
        assert!(parse_wait_timeout("1m").is_err());
    }

    #[test]
    fn writes_are_told_from_reads() {
        assert!(!is_write(redis::cmd("HGETALL").arg("k")));
        assert!(!is_write(redis::cmd("xrange").arg("k").arg("-").arg("+")));
        assert!(is_write(redis::cmd("HSET").arg("k").arg("f").arg("v")));
        assert!(is_write(redis::cmd("EVALSHA").arg("abc").arg(0)));
        assert!(!is_write(redis::cmd("SCRIPT").arg("LOAD").arg("return 1")));
        assert!(is_write(&redis::cmd("SOMETHINGNEW")), "unknown means write");
        let mut reads = redis::pipe();
        reads.get("a").hgetall("b");
        assert!(!pipeline_needs_wait(&reads));
        let mut order = redis::pipe();
        order
            .atomic()
            .hset("o", "f", "v")
            .xadd("outbox", "*", &[("k", "v")]);
        assert!(pipeline_needs_wait(&order));
        // The relay publishes what it reads from the outbox: replicated first.
        let mut relay = redis::pipe();
        relay
            .cmd("XRANGE")
            .arg("outbox")
            .arg("-")
            .arg("+")
            .cmd("XLEN")
            .arg("outbox");
        assert!(pipeline_needs_wait(&relay));
        assert!(!needs_wait(redis::cmd("XLEN").arg("outbox")));
    }

    #[test]
    fn a_lagging_replica_reads_as_an_outage() {
        let lag = ReplicationLag {
            acknowledged: 0,
            required: 1,
            within: Duration::from_millis(500),
        };
        let err = lag.clone().into_redis_error();
        assert!(err.is_io_error() && err.is_timeout());
        assert_eq!(
            ReplicationLag::of(&err),
            Some(&lag),
            "told apart from other errors"
        );
        let away = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert_eq!(ReplicationLag::of(&away), None);
        assert!(err.to_string().contains("0 of 1 replica(s)"), "{err}");
        assert_eq!(
            WaitPolicy {
                replicas: 1,
                timeout: lag.within
            }
            .command()
            .args_iter()
            .count(),
            3
        );
    }
}
