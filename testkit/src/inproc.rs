//! A service inside the test's own process: the service crate's `App`, built on port 0 and
//! run until the test drops it, exactly as its binary runs it ([`saga_platform::service::SagaService`]).
//!
//! For tests where a separate process is not the point: no binary to build first, no process to
//! start, and a panic inside the service fails the test with its backtrace. What it cannot do is
//! what only a process can: be `kill -9`'d, have its own log, its own `/metrics` (the metrics
//! recorder is one per process, so in-process services share theirs). Tests of those use
//! [`crate::service::ServiceProcess`].
//!
//! Settings are given as the environment variables a binary reads (`RABBITMQ_URL`, ...) and
//! passed as the flags clap knows for them (clap's `CommandFactory` says which flag reads which
//! variable), so the test process's own environment is never changed.

use std::ffi::OsString;
use std::net::SocketAddr;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use saga_platform::service::SagaService;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::service::{Endpoint, ServiceKind};

/// A running in-process service; stopped (shutdown token cancelled) when dropped.
pub struct InProcess {
    pub kind: ServiceKind,
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl InProcess {
    /// Build `kind`'s `App` with `env` (and `HTTP_ADDR=127.0.0.1:0` unless given) and run it.
    ///
    /// # Errors
    /// A setting is not one the service knows, or its value is bad, or the port cannot be bound.
    pub async fn start(kind: ServiceKind, env: &[(String, String)]) -> anyhow::Result<Self> {
        match kind {
            ServiceKind::Order => Self::run::<order_svc::App>(kind, env).await,
            ServiceKind::Inventory => Self::run::<inventory_svc::App>(kind, env).await,
            ServiceKind::Notification => Self::run::<notification_svc::App>(kind, env).await,
        }
    }

    async fn run<S>(kind: ServiceKind, env: &[(String, String)]) -> anyhow::Result<Self>
    where
        S: SagaService + Send + 'static,
        S::Config: CommandFactory,
    {
        let mut env = env.to_vec();
        if !env.iter().any(|(k, _)| k == "HTTP_ADDR") {
            env.push(("HTTP_ADDR".into(), "127.0.0.1:0".into()));
        }
        let args = flags_for::<S::Config>(S::NAME, &env);
        let config = S::Config::try_parse_from(args)
            .with_context(|| format!("{} in-process settings", S::NAME))?;
        let app = S::build(config).await?;
        let addr = app.addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run(shutdown.clone()));
        Ok(Self {
            kind,
            addr,
            shutdown,
            task: Some(task),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Ask it to stop, as SIGTERM would, and wait until it has.
    ///
    /// # Errors
    /// It failed, or panicked.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

impl Endpoint for InProcess {
    fn kind(&self) -> ServiceKind {
        self.kind
    }
    fn url(&self, path: &str) -> String {
        InProcess::url(self, path)
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// `argv` for `name` that sets what `env` sets: each variable becomes the long flag that reads
/// it. A variable the service does not read is left out, as a process would ignore it (a test's
/// env carries settings for all three services).
fn flags_for<C: CommandFactory>(name: &str, env: &[(String, String)]) -> Vec<OsString> {
    let command = C::command();
    let mut args = vec![OsString::from(name)];
    for (var, value) in env {
        let flag = command
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == var.as_str()))
            .and_then(|a| a.get_long());
        if let Some(flag) = flag {
            args.push(format!("--{flag}={value}").into());
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_variable_becomes_the_flag_that_reads_it() {
        let env = [
            ("REDIS_PREFIX".to_owned(), "t1".to_owned()),
            ("INITIAL_STOCK".to_owned(), "widget=5".to_owned()),
        ];
        let args = flags_for::<inventory_svc::Config>("inventory-svc", &env);
        assert_eq!(
            args,
            [
                "inventory-svc",
                "--redis-prefix=t1",
                "--initial-stock=widget=5"
            ]
        );
        let order_only = [("OUTBOX_HIGH_WATER".to_owned(), "20".to_owned())];
        assert_eq!(
            flags_for::<inventory_svc::Config>("inventory-svc", &order_only),
            ["inventory-svc"]
        );
    }
}
