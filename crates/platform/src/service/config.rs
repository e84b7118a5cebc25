//! The settings every service takes, as clap flags that also read environment variables.
//!
//! Each service flattens [`Common`] into its own `Config` and adds what only it needs (its HTTP
//! address, its queue). A bad value exits at once with one readable line ([`parse_or_exit`]).

use std::time::Duration;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Parser, ValueEnum};
use saga_domain::envelope::Envelope;
use saga_domain::order::OrderStatus;
use saga_domain::retry::{MAX_DELAY, RetryPolicy};

use crate::amqp::topology::Topology;
use crate::redis::replication::Replication;
use crate::redis::sentinel::{self, SentinelUrl};
// Where callers have always found them; they live in their own module.
pub use crate::service::redact::{mask_passwords, redact_url};

/// Connection and behaviour settings shared by all three services and `sagactl`.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// AMQP URL of the broker; the vhost is the path (`%2f` is `/`). A cluster: the URLs of its
    /// nodes, separated by commas (each connection starts at a random one, moves on when one fails).
    #[arg(long, env = "RABBITMQ_URL", default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
          value_parser = crate::amqp::nodes::validate, hide_env_values = true)]
    pub rabbitmq_url: String,

    /// Redis URL; or, for a master with replicas, its Sentinels:
    /// redis+sentinel://host:port,host:port,.../<master-name>.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379", value_parser = parse_redis_url,
          hide_env_values = true)]
    pub redis_url: String,

    #[command(flatten)]
    pub replication: Replication,

    /// Every Redis key lives under this prefix, so tests and a running demo never collide.
    #[arg(long, env = "REDIS_PREFIX", default_value = "saga", value_parser = parse_prefix)]
    pub redis_prefix: String,

    /// Unacked deliveries a consumer may hold at once (also its in-flight concurrency).
    #[arg(long, env = "RABBITMQ_PREFETCH", default_value_t = 64,
          value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub prefetch: u16,

    /// How this service publishes its events: `binary` (the lab's flat body, CloudEvents
    /// attributes in `cloudEvents_*` headers), or a structured envelope in the body:
    /// `standard-message`, `go-event`, `cloudevents`. Every consumer reads them all
    /// (saga_domain::envelope), so services set differently still talk.
    #[arg(long, env = "EVENT_ENVELOPE", default_value_t = Envelope::Binary,
          value_parser = parse_envelope)]
    pub event_envelope: Envelope,

    /// Where to export spans over OTLP/HTTP (`http://127.0.0.1:4318`; `/v1/traces` is added).
    /// Unset (the default): nothing is exported and no span is built; the trace context still
    /// travels with every event.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otel_endpoint: Option<String>,

    /// Log format: readable lines (colored on a terminal) or one JSON object per line.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// Seconds a shutdown waits for in-flight work before closing anyway.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,

    #[command(flatten)]
    pub topology: Topology,

    #[command(flatten)]
    pub retry: RetryArgs,

    #[command(flatten)]
    pub retention: RetentionArgs,
}

/// How long the saga keeps what it knows about an order (docs/OPERATIONS.md, "Retention").
/// Every service reads both, so that one setting means one window across the saga.
#[derive(clap::Args, Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionArgs {
    /// How long a *finished* order (DELIVERED, FAILED, CANCELLED) is kept whole (its record,
    /// timeline and DLQ hops; inventory's full reservation record) before it is compacted to
    /// a small tombstone: 3days, 12h, 5s.
    #[arg(long, env = "ORDER_RETENTION", default_value = "3days", value_parser = parse_window)]
    pub order_retention: Duration,

    /// How long the tombstones a late duplicate is told by outlive the compaction (an order's
    /// "expired" answer, inventory's reservation stub, notification-svc's sent marks). A
    /// duplicate of an order's event that arrives later than this is no longer recognised.
    #[arg(long, env = "DEDUPE_WINDOW", default_value = "30days", value_parser = parse_window)]
    pub dedupe_window: Duration,
}

impl Default for RetentionArgs {
    fn default() -> Self {
        Self {
            order_retention: Duration::from_secs(3 * 24 * 3600),
            dedupe_window: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// A retention window from a humane duration: 1 s to 10 years.
pub fn parse_window(s: &str) -> Result<Duration, String> {
    let window = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e}; expected a duration such as 3days, 12h or 30s"))?;
    if window < Duration::from_secs(1) || window > Duration::from_secs(10 * 365 * 24 * 3600) {
        return Err(format!("{s} is out of range: use 1s to 10years"));
    }
    Ok(window)
}

/// The retry policy ([`RetryPolicy`]) as flags: a failure that is not an outage is retried
/// `RABBITMQ_RETRY_COUNT` times, `RABBITMQ_RETRY_DELAY` apart (the names the lab's seed uses).
#[derive(clap::Args, Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryArgs {
    /// Retries of a failed message (not an outage) before it goes to the DLQ.
    #[arg(long = "retry-count", env = "RABBITMQ_RETRY_COUNT", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(0..=100))]
    pub count: u32,

    /// Wait between those retries, held by the broker in a retry queue: 500ms, 5s, 1m, ...
    #[arg(long = "retry-delay", env = "RABBITMQ_RETRY_DELAY", default_value = "5s",
          value_parser = parse_delay)]
    pub delay: Duration,
}

impl From<RetryArgs> for RetryPolicy {
    fn from(args: RetryArgs) -> Self {
        Self {
            count: args.count,
            delay: args.delay,
        }
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Parse the command line (and environment); on a bad value print one line and exit 2.
/// `--help` and `--version` print as usual.
pub fn parse_or_exit<T: Parser>() -> T {
    match T::try_parse() {
        Ok(config) => config,
        Err(err) => {
            use clap::error::ErrorKind;
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                err.exit();
            }
            let rendered = err.render().to_string();
            let mut lines = rendered.lines().map(str::trim).filter(|l| !l.is_empty());
            let first = lines.next().unwrap_or("invalid arguments");
            // "required arguments were not provided:" names them on the next line.
            let line = match (first.ends_with(':'), lines.next()) {
                (true, Some(what)) => format!("{first} {what}"),
                _ => first.to_owned(),
            };
            // clap repeats the refused value, which may be a URL with a password in it, or a
            // secret (a flag that hides its value, such as AUTH_JWT_SECRET) given too short.
            let line = match refused_secret::<T>(&err) {
                Some(secret) => line.replace(&secret, "***"),
                None => line,
            };
            eprintln!("{} (try --help)", mask_passwords(&line));
            std::process::exit(2);
        }
    }
}

/// The value clap refused, when it belongs to a flag that hides its value (`hide_env_values`)
/// and is not a URL: a secret, which an error line must not repeat. (A URL's secret parts are
/// blanked by [`mask_passwords`], and the rest of it helps.)
fn refused_secret<T: clap::CommandFactory>(err: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue};
    let (Some(ContextValue::String(arg)), Some(ContextValue::String(value))) = (
        err.get(ContextKind::InvalidArg),
        err.get(ContextKind::InvalidValue),
    ) else {
        return None;
    };
    let hidden = hides_value(&T::command(), arg);
    (hidden && !value.is_empty() && !value.contains("://")).then(|| value.clone())
}

/// Whether the flag `arg` (as clap names it in an error: `--name <VAR>`) of `command`, or of any
/// of its subcommands, hides its value.
fn hides_value(command: &clap::Command, arg: &str) -> bool {
    command.get_arguments().any(|a| {
        a.is_hide_env_values_set()
            && a.get_long().is_some_and(|long| {
                arg.starts_with(&format!("--{long} ")) || arg == format!("--{long}")
            })
    }) || command.get_subcommands().any(|sub| hides_value(sub, arg))
}

fn parse_redis_url(s: &str) -> Result<String, String> {
    if sentinel::is_sentinel(s) {
        return SentinelUrl::parse(s).map(|_| s.to_owned()).map_err(|e| {
            format!(
                "{}: {e}; expected e.g. redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/saga",
                redact_url(s)
            )
        });
    }
    redis::Client::open(s).map(|_| s.to_owned()).map_err(|e| {
        format!(
            "not a Redis URL ({e}); expected e.g. redis://127.0.0.1:6379, or \
             redis+sentinel://host:port,host:port/<master-name>"
        )
    })
}

/// `EVENT_ENVELOPE`: one of the words of [`Envelope`].
pub fn parse_envelope(s: &str) -> Result<Envelope, String> {
    s.parse()
}

fn parse_prefix(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if ok {
        Ok(s.to_owned())
    } else {
        Err("use 1-64 characters from [A-Za-z0-9-_.:]".into())
    }
}

/// A delay from a humane duration: `500ms`, `5s`, `1m`. Between 10 ms and one hour: a shorter
/// one is a hot loop through the broker, a longer one looks like a lost message.
fn parse_delay(s: &str) -> Result<Duration, String> {
    let delay = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e}; expected a duration such as 500ms, 5s or 1m"))?;
    if delay < Duration::from_millis(10) || delay > MAX_DELAY {
        return Err(format!("{s} is out of range: use 10ms to 1h"));
    }
    Ok(delay)
}

/// `--status confirmed` (any case) read as an [`OrderStatus`], its possible values listed in
/// `--help`. The domain crate has no clap, so its command-line parser lives here:
/// `#[arg(long, ignore_case = true, value_parser = order_status_parser())]`.
pub fn order_status_parser() -> impl TypedValueParser<Value = OrderStatus> {
    PossibleValuesParser::new(OrderStatus::ALL.map(|status| PossibleValue::new(status.as_str())))
        .try_map(|s: String| {
            OrderStatus::parse(&s.to_ascii_uppercase()).ok_or(format!("no order status {s:?}"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humane_delays_parse_and_silly_ones_do_not() {
        assert_eq!(parse_delay("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_delay("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_delay("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_delay("5").is_err(), "a bare number has no unit");
        assert!(parse_delay("1ms").is_err());
        assert!(parse_delay("2h").is_err());
        assert!(parse_delay("soon").is_err());
    }

    #[test]
    fn an_order_status_is_read_in_any_case() {
        let status = clap::Arg::new("status")
            .long("status")
            .ignore_case(true)
            .value_parser(order_status_parser());
        let cmd = clap::Command::new("sagactl").arg(status);
        for given in ["confirmed", "CONFIRMED", "Confirmed"] {
            let matches = cmd
                .clone()
                .try_get_matches_from(["sagactl", "--status", given]);
            let status = matches.unwrap().get_one::<OrderStatus>("status").copied();
            assert_eq!(status, Some(OrderStatus::Confirmed), "{given}");
        }
        let shipped = cmd
            .clone()
            .try_get_matches_from(["sagactl", "--status", "shipped"]);
        assert_eq!(
            shipped.unwrap().get_one::<OrderStatus>("status").copied(),
            Some(OrderStatus::Shipped)
        );
        assert!(
            cmd.try_get_matches_from(["sagactl", "--status", "lost"])
                .is_err()
        );
    }

    #[test]
    fn a_refused_secret_is_not_repeated() {
        #[derive(Parser, Debug)]
        struct WithSecret {
            #[command(flatten)]
            auth: crate::service::jwt::AuthArgs,
        }
        let err =
            WithSecret::try_parse_from(["x", "--auth-jwt-secret=too-short-to-sign"]).unwrap_err();
        assert!(err.render().to_string().contains("too-short-to-sign"));
        assert_eq!(
            refused_secret::<WithSecret>(&err).as_deref(),
            Some("too-short-to-sign")
        );
    }

    #[test]
    fn rejects_bad_urls_and_prefixes() {
        assert!(crate::amqp::nodes::validate("http://x").is_err());
        assert!(crate::amqp::nodes::validate("amqp://guest:guest@127.0.0.1:5672/%2f").is_ok());
        assert!(parse_redis_url("nonsense").is_err());
        assert!(parse_redis_url("redis+sentinel://h1:1,h2:2/saga").is_ok());
        let bad = parse_redis_url("redis+sentinel://u:secret@h1:1,h2:x/saga").unwrap_err();
        assert!(
            bad.contains("Sentinel 2: port") && !bad.contains("secret"),
            "{bad}"
        );
        assert!(parse_prefix("has space").is_err());
        assert!(parse_prefix("test-1a2b").is_ok());
    }
}
