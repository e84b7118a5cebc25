//! The load generator: many `POST /order`s, closed loop or on a schedule, every answer kept.
//!
//! One generator serves `sagactl load` (latency histogram, progress bar), the benchmark (closed
//! loop and fixed rate) and the fault tests (orders retried until accepted while a fault lands).
//! It only sends and records; what a run *means* (a rate, percentiles, lost orders) is the
//! caller's to work out from the [`Timed`] answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use tokio::task::JoinSet;

use crate::orders::{Answer, OrderClient, Timed};

/// When orders go out.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// `clients` clients, each sending its next order as soon as its last is answered (and
    /// `think` has passed): the system under test sets the pace.
    Closed { clients: usize, think: Duration },
    /// Order k is due at `k / rate` s, whatever the answers (no coordinated omission: a stall
    /// shows up as latency from `due`, not as a slower schedule), at most `max_outstanding` in
    /// flight.
    Open { rate: f64, max_outstanding: usize },
}

/// A load run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub orders: usize,
    pub pace: Pace,
    /// The body every order posts.
    pub body: Value,
    /// Refused orders are sent again every 20 ms for this long, as a client told "503, come
    /// back" would (`Duration::ZERO`: each order is sent once).
    pub retry_for: Duration,
}

impl Plan {
    /// `orders` orders of `body` from `clients` closed-loop clients, each sent once.
    pub fn closed(orders: usize, clients: usize, body: Value) -> Self {
        Self {
            orders,
            pace: Pace::Closed {
                clients,
                think: Duration::ZERO,
            },
            body,
            retry_for: Duration::ZERO,
        }
    }
}

/// What a run saw: every answer, retries included.
#[derive(Debug, Default)]
pub struct Run {
    pub answers: Vec<Timed>,
}

impl Run {
    /// Ids of the accepted orders, in the order their answers came.
    pub fn accepted(&self) -> Vec<String> {
        self.answers
            .iter()
            .filter_map(|t| t.answer.order_id().map(str::to_owned))
            .collect()
    }

    /// Answers other than 201 (refusals and failures), retries included.
    pub fn refused(&self) -> usize {
        self.answers
            .iter()
            .filter(|t| t.answer.order_id().is_none())
            .count()
    }

    /// The first refusal or failure, in words.
    pub fn first_error(&self) -> Option<String> {
        self.answers.iter().find_map(|t| match &t.answer {
            Answer::Accepted(_) => None,
            Answer::Refused { status, body } => {
                Some(format!("POST /order answered {status}: {body}"))
            }
            Answer::Failed(why) => Some(why.clone()),
        })
    }
}

/// Send `plan`'s orders to `client`; `on_answer` sees each answer as it comes (a progress bar).
pub async fn run(
    client: &OrderClient,
    plan: &Plan,
    on_answer: impl Fn(&Timed) + Send + Sync + 'static,
) -> Run {
    let body = Bytes::from(plan.body.to_string());
    let on_answer = Arc::new(on_answer);
    let mut tasks = JoinSet::new();
    let mut run = Run::default();
    match plan.pace {
        Pace::Closed { clients, think } => {
            let next = Arc::new(AtomicUsize::new(0));
            for _ in 0..clients.min(plan.orders).max(1) {
                let (client, body, next, on_answer) = (
                    client.clone(),
                    body.clone(),
                    next.clone(),
                    on_answer.clone(),
                );
                let (orders, retry_for) = (plan.orders, plan.retry_for);
                tasks.spawn(async move {
                    let mut answers = Vec::new();
                    while next.fetch_add(1, Ordering::Relaxed) < orders {
                        let due = Instant::now();
                        let accepted =
                            one_order(&client, &body, due, retry_for, &mut answers, &*on_answer)
                                .await;
                        if accepted {
                            tokio::time::sleep(think).await;
                        }
                    }
                    answers
                });
            }
        }
        Pace::Open {
            rate,
            max_outstanding,
        } => {
            let start = Instant::now();
            let interval = Duration::from_secs_f64(1.0 / rate.max(f64::MIN_POSITIVE));
            for k in 0..plan.orders {
                let due = start + interval.mul_f64(k as f64);
                // Sleeping is the point here: the schedule, not the saga, decides when orders go.
                tokio::time::sleep_until(due.into()).await;
                while let Some(done) = tasks.try_join_next() {
                    run.answers.extend(done.unwrap_or_default());
                }
                if tasks.len() >= max_outstanding.max(1)
                    && let Some(done) = tasks.join_next().await
                {
                    run.answers.extend(done.unwrap_or_default());
                }
                let (client, body, on_answer) = (client.clone(), body.clone(), on_answer.clone());
                let retry_for = plan.retry_for;
                tasks.spawn(async move {
                    let mut answers = Vec::new();
                    one_order(&client, &body, due, retry_for, &mut answers, &*on_answer).await;
                    answers
                });
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        run.answers.extend(done.unwrap_or_default());
    }
    run
}

/// Send one order, again every 20 ms while it is refused and `retry_for` has not passed; every
/// answer goes into `answers`. Whether it was accepted in the end.
async fn one_order(
    client: &OrderClient,
    body: &Bytes,
    due: Instant,
    retry_for: Duration,
    answers: &mut Vec<Timed>,
    on_answer: &(dyn Fn(&Timed) + Send + Sync),
) -> bool {
    loop {
        let sent = Instant::now();
        let answer = client.post(body.clone()).await;
        let timed = Timed {
            due,
            sent,
            answered: Instant::now(),
            answer,
        };
        on_answer(&timed);
        let accepted = timed.answer.order_id().is_some();
        answers.push(timed);
        if accepted || due.elapsed() >= retry_for {
            return accepted;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_counts_refusals_and_keeps_the_first_error() {
        let now = Instant::now();
        let timed = |answer| Timed {
            due: now,
            sent: now,
            answered: now,
            answer,
        };
        let run = Run {
            answers: vec![
                timed(Answer::Refused {
                    status: 503,
                    body: serde_json::json!({"error": "busy"}),
                }),
                timed(Answer::Accepted("o1".into())),
                timed(Answer::Failed("refused".into())),
            ],
        };
        assert_eq!(run.accepted(), ["o1"]);
        assert_eq!(run.refused(), 2);
        assert!(run.first_error().unwrap().contains("503"));
        assert!(run.answers[0].answer.is_unavailable_json());
    }
}
