//! Every long-running task is watched (invariant 8), and `/ready` names what is not working.
//!
//! A service runs a few tasks for its whole life: the outbox relay, the consumers, a sweeper.
//! [`supervise`] runs one of them: when it ends before shutdown, or panics, that is logged,
//! counted (`saga_task_restarts_total{task}`), noted in the service's [`Watchdog`] (so `/ready`
//! answers 503 naming it) and the task is started again after a capped backoff.
//!
//! The same [`Watchdog`] holds any other part of a service that is down while the rest works:
//! a queue the broker refuses to declare (406), for example. Each service owns one (never a
//! process-wide static: tests run several services in one process).
//!
//! What `/ready` names is also a gauge, `saga_part_down{part}` (1 while down, 0 once up again,
//! `part` being the same name), so that an alert can watch it (deploy/prometheus/alerts.yml).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::service::backoff::Backoff;

/// What is not working in one service right now: a name (`task outbox relay`,
/// `queue inventory_queue`) and why, in words an operator can act on.
#[derive(Debug, Default)]
pub struct Watchdog {
    problems: Mutex<BTreeMap<String, String>>,
}

impl Watchdog {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// `what` is not working, because `why`. Returns whether this is news (it was working, or
    /// failing for another reason), so callers can log a problem once rather than at every retry.
    pub fn down(&self, what: impl Into<String>, why: impl Into<String>) -> bool {
        let (what, why) = (what.into(), why.into());
        let mut problems = self.lock();
        let news = problems.get(&what) != Some(&why);
        metrics::gauge!(PART_DOWN, "part" => what.clone()).set(1.0);
        problems.insert(what, why);
        news
    }

    /// `what` works again. Returns whether it was down.
    pub fn up(&self, what: &str) -> bool {
        let was_down = self.lock().remove(what).is_some();
        if was_down {
            metrics::gauge!(PART_DOWN, "part" => what.to_owned()).set(0.0);
        }
        was_down
    }

    /// Everything that is down, by name.
    pub fn problems(&self) -> BTreeMap<String, String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.problems.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The gauge of what is down: one series per part ever down, 1 while it is, 0 once it works again.
pub const PART_DOWN: &str = "saga_part_down";

/// The watchdog's name for a task.
pub fn task_name(task: &str) -> String {
    format!("task {task}")
}

/// The watchdog's name for a queue.
pub fn queue_name(queue: &str) -> String {
    format!("queue {queue}")
}

/// A run that lasted this long earns a fresh backoff: it was working, not flapping.
const HEALTHY_RUN: Duration = Duration::from_secs(30);

/// Run the task `start()` makes until `shutdown`; whenever it ends early or panics, log it, count
/// it, mark it down in `watchdog` and start it again after a backoff (100 ms doubling to 5 s).
///
/// A task returning after `shutdown` was cancelled is the normal end. The task is marked up again
/// as soon as it is restarted: a task that panics at once is down again a moment later, and
/// meanwhile `/ready` has said so.
pub async fn supervise<F, Fut>(
    task: &str,
    watchdog: Arc<Watchdog>,
    shutdown: CancellationToken,
    mut start: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let name = task_name(task);
    let mut backoff = Backoff::for_outages();
    loop {
        let started = Instant::now();
        // Run it as a task of its own, so that a panic unwinds that task only and arrives here
        // as a JoinError, whatever the task holds.
        let ended = tokio::spawn(std::panic::AssertUnwindSafe(start()).catch_unwind()).await;
        if shutdown.is_cancelled() {
            watchdog.up(&name);
            return;
        }
        let why = match ended {
            Ok(Ok(())) => "it ended by itself".to_owned(),
            Ok(Err(panic)) => format!("panicked: {}", panic_message(panic.as_ref())),
            Err(join) => format!("stopped: {join}"),
        };
        metrics::counter!("saga_task_restarts_total", "task" => task.to_owned()).increment(1);
        watchdog.down(&name, &why);
        if started.elapsed() > HEALTHY_RUN {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        error!(task, cause = %why, restart_in_ms = delay.as_millis() as u64,
               "Task {task} stopped ({why}); restarting it");
        if !backoff.wait(&shutdown).await {
            return;
        }
        if watchdog.up(&name) {
            info!(task, "Task {task} restarted");
        }
    }
}

/// The text of a panic's payload (`panic!("...")` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn problems_are_news_once() {
        let w = Watchdog::new();
        assert!(w.down("queue q", "406"));
        assert!(
            !w.down("queue q", "406"),
            "the same problem again is not news"
        );
        assert!(w.down("queue q", "404"), "another reason is");
        assert_eq!(w.problems().get("queue q").map(String::as_str), Some("404"));
        assert!(w.up("queue q"));
        assert!(!w.up("queue q"));
        assert!(w.problems().is_empty());
    }

    #[test]
    fn what_is_down_is_a_gauge_named_as_ready_names_it() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let metrics = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let w = Watchdog::new();
            w.down(task_name("outbox relay"), "panicked: boom");
            w.down(queue_name("inventory_queue"), "406");
            let text = metrics.render();
            assert!(
                text.contains(r#"saga_part_down{part="task outbox relay"} 1"#),
                "{text}"
            );
            assert!(
                text.contains(r#"saga_part_down{part="queue inventory_queue"} 1"#),
                "{text}"
            );
            assert!(w.up("task outbox relay"));
            let text = metrics.render();
            assert!(
                text.contains(r#"saga_part_down{part="task outbox relay"} 0"#),
                "{text}"
            );
            assert!(
                text.contains(r#"saga_part_down{part="queue inventory_queue"} 1"#),
                "{text}"
            );
        });
    }

    #[tokio::test]
    async fn a_task_that_panics_is_marked_down_and_restarted() {
        let watchdog = Watchdog::new();
        let shutdown = CancellationToken::new();
        let runs = Arc::new(AtomicU32::new(0));
        let (seen_down, seen) = (Arc::new(Mutex::new(None)), watchdog.clone());
        let task = {
            let (runs, shutdown, seen_down) = (runs.clone(), shutdown.clone(), seen_down.clone());
            move || {
                let (runs, shutdown, seen_down, seen) = (
                    runs.clone(),
                    shutdown.clone(),
                    seen_down.clone(),
                    seen.clone(),
                );
                async move {
                    match runs.fetch_add(1, Ordering::SeqCst) {
                        0 => panic!("boom"),
                        _ => {
                            // Restarted: what the watchdog said while it was down is gone now.
                            *seen_down.lock().unwrap() = Some(seen.problems());
                            shutdown.cancel();
                        }
                    }
                }
            }
        };
        tokio::time::timeout(
            Duration::from_secs(10),
            supervise("relay", watchdog.clone(), shutdown.clone(), task),
        )
        .await
        .expect("supervise returns at shutdown");
        assert_eq!(runs.load(Ordering::SeqCst), 2, "restarted once");
        assert!(
            seen_down.lock().unwrap().as_ref().unwrap().is_empty(),
            "up again once restarted"
        );
        assert!(watchdog.problems().is_empty());
    }

    #[test]
    fn panic_messages_are_read() {
        let p: Box<dyn std::any::Any + Send> = Box::new("static");
        assert_eq!(panic_message(p.as_ref()), "static");
        let p: Box<dyn std::any::Any + Send> = Box::new(String::from("owned"));
        assert_eq!(panic_message(p.as_ref()), "owned");
        let p: Box<dyn std::any::Any + Send> = Box::new(42u8);
        assert_eq!(panic_message(p.as_ref()), "a panic without a message");
    }
}
