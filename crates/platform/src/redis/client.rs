//! The Redis connection every service uses: one Redis, or the master Sentinel names; and, when
//! replicas are required, `WAIT` after every write.
//!
//! [`Redis`] is a cheap, cloneable handle that works wherever redis-rs wants a connection
//! (`query_async(&mut redis)`, scripts, `AsyncCommands`). Behind it is one multiplexed
//! connection, opened lazily (a service starts while Redis is away) and replaced when it breaks:
//! - **One Redis** (`redis://...`): reconnect to the same address, as before.
//! - **Sentinel** (`redis+sentinel://...`): ask the Sentinels which node is master (and check,
//!   by `ROLE`, that it says so) on every connect. A lost connection or a `READONLY` answer (the
//!   node was demoted: a failover happened) drops the connection, so the next command asks again
//!   and follows the master to its new address.
//!
//! A command that fails is not retried here: the error goes to the caller, whose retry policy
//! knows whether the work is safe to repeat (the consume loop waits out an outage and runs the
//! idempotent handler again; `POST /order` answers 503).
//!
//! **Acknowledged writes** ([`crate::redis::replication`]): with a policy that requires replicas, a
//! command that may write is not answered to its caller until `PUBLISH` + `WAIT` on the same
//! master say enough replicas hold it. `WAIT` waits for the offset of the last write *its own
//! connection* propagated; on a connection that has not written it answers at once, however far
//! behind the replicas are (measured: `WAIT 1` answered 2 with both replicas stopped). The
//! `PUBLISH`, which Redis always passes to its replicas, moves that offset to the master's
//! current one, so the `WAIT` after it covers everything the master held at that moment, whoever
//! wrote it (measured: 0, as it should be).
//!
//! That also means the `WAIT` need not share the write's connection, and one `WAIT` can cover
//! many writes. `WAIT` blocks the connection it is sent on, so it goes on a connection of its
//! own ([`Redis::wait_for_replicas`]): the writes that finish while one round of `PUBLISH` +
//! `WAIT` is under way are all covered by the next round (a group commit), and the connection
//! that carries the saga's commands never stands still.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::SentinelClient;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use tracing::{debug, info, warn};

use crate::redis::replication::{self, ReplicationLag, WaitPolicy};
use crate::redis::sentinel::{self, SentinelUrl};
use crate::service::config::redact_url;

/// How long opening a connection may take, Sentinel lookup included.
const CONNECT_DEADLINE: Duration = Duration::from_secs(3);
/// After a failed connect, commands fail at once for this long instead of each trying again:
/// during an outage a burst of requests costs one attempt, not one each.
const FAIL_FAST: Duration = Duration::from_millis(200);
/// The channel of the `PUBLISH` that precedes each `WAIT` (nobody needs to listen).
const WAIT_MARKER_CHANNEL: &str = "saga:wait-marker";

/// A Redis connection that follows the master and waits for replicas; see the module docs.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    source: Source,
    /// The URL with its password masked, for logs.
    shown: String,
    config: AsyncConnectionConfig,
    policy: WaitPolicy,
    db: i64,
    current: Mutex<Option<Link>>,
    /// Held while connecting, so concurrent commands wait for one attempt; remembers the last
    /// failure for [`FAIL_FAST`].
    connecting: tokio::sync::Mutex<Option<(Instant, RedisError)>>,
    next_id: AtomicU64,
    /// The address of the last master we connected to, to notice a failover.
    last_addr: Mutex<Option<String>>,
    /// Numbers handed to writes as they finish, in order; see [`Redis::wait_for_replicas`].
    tickets: AtomicU64,
    /// One round of `PUBLISH` + `WAIT` at a time, on its own connection.
    barrier: tokio::sync::Mutex<Barrier>,
}

/// The `WAIT` connection, and what the last successful round covered.
#[derive(Default)]
struct Barrier {
    link: Option<Link>,
    /// Every write with a ticket below `upto`, on the master at `addr`, is on enough replicas.
    covered: Option<(String, u64)>,
}

enum Source {
    Direct(redis::Client),
    Sentinel {
        client: tokio::sync::Mutex<SentinelClient>,
        master: String,
    },
}

/// The connection in use, with an id so that only the caller who saw it fail replaces it.
#[derive(Clone)]
struct Link {
    id: u64,
    addr: String,
    conn: MultiplexedConnection,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("url", &self.inner.shown)
            .field("policy", &self.inner.policy)
            .finish()
    }
}

impl Redis {
    /// A handle for `url` (plain or Sentinel form); connects on first use.
    ///
    /// # Errors
    /// The URL is unusable (config validation refuses those first, with a better message).
    pub fn new(url: &str, replication: replication::Replication) -> anyhow::Result<Self> {
        let is_sentinel = sentinel::is_sentinel(url);
        let (source, db) = if is_sentinel {
            let parsed = SentinelUrl::parse(url).map_err(|e| anyhow::anyhow!("{e}"))?;
            let source = Source::Sentinel {
                client: tokio::sync::Mutex::new(parsed.client()?),
                master: parsed.master.clone(),
            };
            (source, parsed.db)
        } else {
            let client = redis::Client::open(url)?;
            let db = client.get_connection_info().redis_settings().db();
            (Source::Direct(client), db)
        };
        let policy = replication.policy(is_sentinel);
        // WAIT holds its answer for up to the policy's timeout: the response timeout must be
        // longer, or a slow replica would look like a dead master.
        let response_timeout = Duration::from_secs(5).max(policy.timeout + Duration::from_secs(2));
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(response_timeout));
        Ok(Self {
            inner: Arc::new(Inner {
                source,
                shown: redact_url(url),
                config,
                policy,
                db,
                current: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(None),
                next_id: AtomicU64::new(1),
                last_addr: Mutex::new(None),
                tickets: AtomicU64::new(0),
                barrier: tokio::sync::Mutex::new(Barrier::default()),
            }),
        })
    }

    /// The `WAIT` policy in force.
    pub fn policy(&self) -> WaitPolicy {
        self.inner.policy
    }

    /// Whether the master is found through Sentinel.
    pub fn is_sentinel(&self) -> bool {
        matches!(self.inner.source, Source::Sentinel { .. })
    }

    /// Where the current connection goes (`host:port`), if there is one.
    pub fn current_address(&self) -> Option<String> {
        lock(&self.inner.current).as_ref().map(|l| l.addr.clone())
    }

    /// The connection in use, opening one if there is none.
    async fn link(&self) -> RedisResult<Link> {
        if let Some(link) = lock(&self.inner.current).clone() {
            return Ok(link);
        }
        let mut gate = self.inner.connecting.lock().await;
        // Someone else may have connected while we waited for the gate.
        if let Some(link) = lock(&self.inner.current).clone() {
            return Ok(link);
        }
        if let Some((at, err)) = gate.as_ref()
            && at.elapsed() < FAIL_FAST
        {
            return Err(err.clone());
        }
        let opened = match tokio::time::timeout(
            CONNECT_DEADLINE,
            self.inner.source.open(&self.inner.config),
        )
        .await
        {
            Ok(opened) => opened,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no Redis connection within {} s",
                    CONNECT_DEADLINE.as_secs()
                ),
            )
            .into()),
        };
        match opened {
            Ok((addr, conn)) => {
                *gate = None;
                let link = Link {
                    id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
                    addr,
                    conn,
                };
                self.note_connected(&link.addr);
                *lock(&self.inner.current) = Some(link.clone());
                Ok(link)
            }
            Err(e) => {
                *gate = Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    /// A new connection to the master (asking Sentinel which node that is, if there is one).
    async fn open(&self) -> RedisResult<Link> {
        let opened =
            tokio::time::timeout(CONNECT_DEADLINE, self.inner.source.open(&self.inner.config))
                .await
                .unwrap_or_else(|_| {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "no Redis connection within {} s",
                            CONNECT_DEADLINE.as_secs()
                        ),
                    )
                    .into())
                });
        let (addr, conn) = opened?;
        Ok(Link {
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            addr,
            conn,
        })
    }

    fn note_connected(&self, addr: &str) {
        metrics::counter!("saga_redis_connects_total").increment(1);
        let mut last = lock(&self.inner.last_addr);
        match last.as_deref() {
            Some(previous) if previous != addr => {
                metrics::counter!("saga_redis_master_changes_total").increment(1);
                warn!(redis = %self.inner.shown, from = previous, to = addr,
                      "the Redis master moved (a failover): now writing to {addr}");
            }
            Some(_) => debug!(redis = %self.inner.shown, addr, "reconnected to Redis"),
            None => info!(redis = %self.inner.shown, addr, "Redis connection opened"),
        }
        *last = Some(addr.to_owned());
    }

    /// After a command on `link` failed: drop the connection if the error says it is broken or
    /// no longer the master's, so the next command opens (and, with Sentinel, looks up) anew.
    fn after_error(&self, link: &Link, err: &RedisError) {
        if !replace_on(err) {
            return;
        }
        let mut current = lock(&self.inner.current);
        if current.as_ref().is_some_and(|l| l.id == link.id) {
            debug!(addr = %link.addr, cause = %err, "dropping the Redis connection");
            *current = None;
        }
    }

    /// Return once enough replicas hold a write that has just finished on the master at
    /// `written_to`.
    ///
    /// A group commit: the write takes a ticket; one round at a time sends `PUBLISH` + `WAIT`
    /// on the barrier's own connection, and covers every ticket taken before its `PUBLISH`
    /// (those writes had finished, so the master's offset includes them). A caller that waited
    /// for its turn while someone else's round ran is often covered by it already.
    ///
    /// # Errors
    /// [`ReplicationLag`] if too few replicas acknowledged in time; an I/O error if the barrier
    /// connection broke, or now leads to another master than the write (a failover in between:
    /// the write may be lost, so nothing is promised on it).
    async fn wait_for_replicas(&self, written_to: &str) -> RedisResult<()> {
        let ticket = self.inner.tickets.fetch_add(1, Ordering::SeqCst);
        let mut barrier = self.inner.barrier.lock().await;
        if let Some((addr, upto)) = &barrier.covered
            && addr == written_to
            && *upto > ticket
        {
            return Ok(());
        }
        // Every ticket below this was taken after its write finished, hence before our PUBLISH.
        let upto = self.inner.tickets.load(Ordering::SeqCst);
        let mut link = match barrier.link.clone() {
            Some(link) => link,
            None => self.open().await?,
        };
        if link.addr != written_to {
            barrier.link = None;
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                format!(
                    "the Redis master moved from {written_to} to {} between a write and its WAIT",
                    link.addr
                ),
            )
            .into());
        }
        let policy = self.inner.policy;
        let mut pipe = redis::pipe();
        pipe.cmd("PUBLISH")
            .arg(WAIT_MARKER_CHANNEL)
            .arg("")
            .ignore()
            .add_command(policy.command());
        metrics::counter!("saga_redis_wait_rounds_total").increment(1);
        let acknowledged = match pipe.query_async::<(i64,)>(&mut link.conn).await {
            Ok((acknowledged,)) => acknowledged,
            Err(e) => {
                barrier.link = None;
                return Err(e);
            }
        };
        barrier.link = Some(link);
        if acknowledged >= i64::from(policy.replicas) {
            barrier.covered = Some((written_to.to_owned(), upto));
            return Ok(());
        }
        metrics::counter!("saga_redis_wait_timeouts_total").increment(1);
        Err(ReplicationLag {
            acknowledged,
            required: policy.replicas,
            within: policy.timeout,
        }
        .into_redis_error())
    }

    /// What `/ready` says about Redis: `Ok(detail)` when writes can be acknowledged now, or why
    /// not (unreachable, no master, too few replicas for the `WAIT` policy).
    ///
    /// # Errors
    /// A sentence for `/ready`.
    pub async fn readiness(&self) -> Result<String, String> {
        let check = async {
            let mut conn = self.clone();
            if !self.is_sentinel() && !self.inner.policy.is_on() {
                let pong: String = redis::cmd("PING")
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| self.explain(&e))?;
                return if pong == "PONG" {
                    Ok("up".to_owned())
                } else {
                    Err(format!("unexpected PING reply {pong:?}"))
                };
            }
            let role: Value = redis::cmd("ROLE")
                .query_async(&mut conn)
                .await
                .map_err(|e| self.explain(&e))?;
            let (is_master, replicas) = read_role(&role);
            let addr = self.current_address().unwrap_or_default();
            if !is_master {
                return Err(format!("{addr} is not a master (a failover under way?)"));
            }
            let required = self.inner.policy.replicas as usize;
            if replicas < required {
                return Err(format!(
                    "master {addr} has {replicas} replica(s); writes need {required} (WAIT)"
                ));
            }
            Ok(format!("master {addr}, {replicas} replica(s)"))
        };
        match tokio::time::timeout(Duration::from_secs(2), check).await {
            Ok(verdict) => verdict,
            Err(_) => Err("no answer within 2 s".to_owned()),
        }
    }

    /// An error, in the words a person reading `/ready` during a failover needs.
    fn explain(&self, err: &RedisError) -> String {
        let last = lock(&self.inner.last_addr).clone().unwrap_or_default();
        match (&self.inner.source, err.kind()) {
            (Source::Sentinel { master, .. }, redis::ErrorKind::MasterNameNotFoundBySentinel) => {
                format!(
                    "no Sentinel names a master for {master:?} that is up (a failover under way?)"
                )
            }
            (Source::Sentinel { .. }, _) if err.is_connection_refusal() => format!(
                "the master ({last}) refuses connections; waiting for Sentinel to promote a replica"
            ),
            _ => err.to_string(),
        }
    }
}

impl Source {
    async fn open(
        &self,
        config: &AsyncConnectionConfig,
    ) -> RedisResult<(String, MultiplexedConnection)> {
        let client = match self {
            Self::Direct(client) => client.clone(),
            // Asks the Sentinels in turn, and checks that the node they name says "master".
            Self::Sentinel { client, master } => {
                let found = client.lock().await.async_get_client().await;
                found.inspect_err(|e| debug!(master, cause = %e, "Sentinel lookup failed"))?
            }
        };
        let addr = client.get_connection_info().addr().to_string();
        let conn = client
            .get_multiplexed_async_connection_with_config(config)
            .await?;
        Ok((addr, conn))
    }
}

/// Errors after which the connection is not worth keeping: it is broken, or it leads to a node
/// that is no longer (or not yet) the master.
fn replace_on(err: &RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_unrecoverable_error()
        || matches!(
            err.kind(),
            ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
        )
}

/// `ROLE` → (is it a master, how many replicas are connected to it).
fn read_role(role: &Value) -> (bool, usize) {
    let Value::Array(parts) = role else {
        return (false, 0);
    };
    let is_master = matches!(parts.first(),
        Some(Value::BulkString(name)) if name == b"master");
    let replicas = match parts.get(2) {
        Some(Value::Array(list)) => list.len(),
        _ => 0,
    };
    (is_master, replicas)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data half-written (each is a
    // single assignment), so a poisoned lock is still good to use.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl ConnectionLike for Redis {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut link = self.link().await?;
            let value = link
                .conn
                .send_packed_command(cmd)
                .await
                .inspect_err(|e| self.after_error(&link, e))?;
            let refused = matches!(value, Value::ServerError(_));
            if self.inner.policy.is_on() && !refused && replication::needs_wait(cmd) {
                self.wait_for_replicas(&link.addr).await?;
            }
            Ok(value)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut link = self.link().await?;
            let values = link
                .conn
                .send_packed_commands(pipeline, offset, count)
                .await
                .inspect_err(|e| self.after_error(&link, e))?;
            if self.inner.policy.is_on() && replication::pipeline_needs_wait(pipeline) {
                self.wait_for_replicas(&link.addr).await?;
            }
            Ok(values)
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.db
    }
}

/// The Redis adapter's verdict on its own errors ([`crate::amqp::retry::Classify`]): is the store as
/// a whole unable to serve now (an outage, waited out), or did this command fail (a fault of
/// the message, retried a few times, then dead-lettered)?
impl crate::amqp::retry::Classify for RedisError {
    fn failure_kind(&self) -> saga_domain::retry::FailureKind {
        use redis::{ErrorKind, ServerErrorKind};
        use saga_domain::retry::FailureKind::{Fault, Outage};
        if self.is_io_error() || self.is_timeout() || self.is_connection_dropped() {
            return Outage;
        }
        // Refusals of the store as a whole, none of them this message's fault:
        // - OOM: full, until someone makes room; NOREPLICAS: fewer replicas in sync than
        //   min-replicas-to-write (a WAIT that timed out, ReplicationLag, is an I/O timeout);
        // - MISCONF: it cannot persist (the AOF or a snapshot cannot be written), so it refuses
        //   writes until its disk is fixed;
        // - BUSY: a script or function runs past busy-reply-threshold and blocks everyone;
        // - UNBLOCKED: an operator's CLIENT UNBLOCK ... ERROR, or a failover, ended our
        //   blocking command.
        if matches!(
            self.code(),
            Some("OOM" | "NOREPLICAS" | "MISCONF" | "BUSY" | "UNBLOCKED")
        ) {
            return Outage;
        }
        let outage = matches!(
            self.kind(),
            ErrorKind::Io
                | ErrorKind::AuthenticationFailed
                | ErrorKind::ClusterConnectionNotFound
                | ErrorKind::MasterNameNotFoundBySentinel
                | ErrorKind::NoValidReplicasFoundBySentinel
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::ReadOnly
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                )
        );
        if outage { Outage } else { Fault }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(parts: Vec<Value>) -> Value {
        Value::Array(parts)
    }

    #[test]
    fn role_replies_are_read() {
        let replica = |port: &str| {
            role(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::BulkString(port.as_bytes().to_vec()),
                Value::BulkString(b"100".to_vec()),
            ])
        };
        let master = role(vec![
            Value::BulkString(b"master".to_vec()),
            Value::Int(100),
            role(vec![replica("6382"), replica("6383")]),
        ]);
        assert_eq!(read_role(&master), (true, 2));
        let replica_role = role(vec![
            Value::BulkString(b"slave".to_vec()),
            Value::BulkString(b"127.0.0.1".to_vec()),
            Value::Int(6381),
        ]);
        assert_eq!(read_role(&replica_role), (false, 0));
        assert_eq!(read_role(&Value::Nil), (false, 0));
    }

    #[test]
    fn broken_or_demoted_connections_are_replaced_failed_commands_are_not() {
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(replace_on(&refused));
        let readonly = match redis::parse_redis_value(
            b"-READONLY You can't write against a read only replica.\r\n",
        ) {
            Ok(Value::ServerError(e)) => RedisError::from(e),
            other => panic!("{other:?}"),
        };
        assert!(replace_on(&readonly));
        let script = match redis::parse_redis_value(b"-ERR user_script:1: oops\r\n") {
            Ok(Value::ServerError(e)) => RedisError::from(e),
            other => panic!("{other:?}"),
        };
        assert!(!replace_on(&script));
    }

    #[test]
    fn urls_of_both_forms_make_a_handle_without_connecting() {
        let plain =
            Redis::new("redis://127.0.0.1:1/2", replication::Replication::default()).unwrap();
        assert!(!plain.is_sentinel() && !plain.policy().is_on());
        assert_eq!(plain.get_db(), 2);
        let sentinel = Redis::new(
            "redis+sentinel://127.0.0.1:1,127.0.0.1:2/saga",
            replication::Replication::default(),
        )
        .unwrap();
        assert!(sentinel.is_sentinel() && sentinel.policy().replicas == 1);
        assert!(sentinel.current_address().is_none());
    }
}
