//! `sagactl watch`: follow a queue's depth, e.g. a backlog draining after a consumer restarts.
//!
//! The depth is read with a passive declare every 200 ms (exact, unlike the management UI's
//! sampled graphs). On a terminal a progress bar shows how much of the largest backlog seen has
//! drained; in a script or a log (stdout not a terminal) it prints one plain line a second.
//! With `--json` it prints nothing while it watches, then one [`WatchDoc`] at the end.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use saga_platform::service::config::Common;
use serde::Serialize;

use crate::broker::{self, Depth};
use crate::output::{Output, print_json};

const POLL_EVERY: Duration = Duration::from_millis(200);
const LINE_EVERY: Duration = Duration::from_secs(1);

#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  sagactl watch --queue inventory_queue --until-empty --timeout 60"
)]
pub struct WatchArgs {
    /// Queue to watch (default: the topology's inventory queue).
    #[arg(long)]
    queue: Option<String>,
    /// Stop, successfully, once the queue is empty. The default when stdin is not a terminal;
    /// otherwise it watches until Ctrl-C.
    #[arg(long)]
    until_empty: bool,
    /// Give up after this many seconds; with --until-empty that is a failure (exit 1).
    #[arg(long)]
    timeout: Option<u64>,
    /// With --json: no progress while watching, one document at the end.
    #[command(flatten)]
    output: Output,
}

/// What `watch --json` prints when the watch ends.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WatchDoc {
    pub queue: String,
    /// Messages ready at the last reading.
    pub messages: u32,
    pub consumers: u32,
    /// The most messages seen waiting at once.
    pub largest_backlog: u32,
    pub elapsed_secs: f64,
    pub ended: Ended,
}

/// How a watch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ended {
    /// The queue was empty (with --until-empty).
    Empty,
    /// The --timeout passed first.
    TimedOut,
    /// Ctrl-C.
    Stopped,
}

impl Ended {
    fn words(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TimedOut => "timed out",
            Self::Stopped => "stopped",
        }
    }
}

/// # Errors
/// Broker unreachable, no such queue, or (with --until-empty) not empty before the timeout.
pub async fn run(common: &Common, args: WatchArgs) -> anyhow::Result<()> {
    let queue = args
        .queue
        .unwrap_or_else(|| common.topology.inventory_queue.clone());
    let until_empty = args.until_empty || !std::io::stdin().is_terminal();
    let timeout = args.timeout.map(Duration::from_secs);

    let conn = broker::connect(&common.rabbitmq_url).await?;
    let channel = conn.create_channel().await?;
    let mut display = if args.output.json {
        Display::Quiet
    } else {
        Display::new(&queue)
    };
    let started = Instant::now();
    let mut largest_backlog = 0;
    let mut last = Depth {
        messages: 0,
        consumers: 0,
    };
    let mut ticker = tokio::time::interval(POLL_EVERY);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    let ended: anyhow::Result<Ended> = loop {
        tokio::select! {
            _ = &mut ctrl_c => break Ok(Ended::Stopped),
            _ = ticker.tick() => {}
        }
        let depth = match broker::depth(&channel, &queue).await {
            Ok(depth) => depth,
            Err(e) => break Err(e),
        };
        last = depth;
        largest_backlog = largest_backlog.max(depth.messages);
        let elapsed = started.elapsed();
        if let Err(e) = display.show(depth, largest_backlog, elapsed) {
            break Err(e.into());
        }
        if until_empty && depth.messages == 0 {
            break Ok(Ended::Empty);
        }
        if timeout.is_some_and(|limit| elapsed >= limit) {
            break Ok(Ended::TimedOut);
        }
    };
    let _ = conn.close(200, "done".into()).await;
    let ended = match ended {
        Ok(ended) => ended,
        Err(e) => {
            display.finish("failed");
            return Err(e);
        }
    };
    display.finish(ended.words());
    let elapsed = started.elapsed();
    if args.output.json {
        print_json(&WatchDoc {
            queue: queue.clone(),
            messages: last.messages,
            consumers: last.consumers,
            largest_backlog,
            elapsed_secs: elapsed.as_secs_f64(),
            ended,
        })?;
    } else if ended == Ended::Empty {
        outln!(
            "{queue} is empty after {:.1} s (largest backlog seen: {largest_backlog})",
            elapsed.as_secs_f64()
        )?;
    }
    if ended == Ended::TimedOut && until_empty {
        anyhow::bail!(
            "{queue} still holds {} message(s) after {} s",
            last.messages,
            timeout.map_or(0, |t| t.as_secs())
        );
    }
    Ok(())
}

/// A progress bar on a terminal, a plain line a second anywhere else, nothing under `--json`.
enum Display {
    Bar(ProgressBar),
    Lines {
        queue: String,
        /// When the next line is due, counted from the start of the watch.
        next: Duration,
    },
    Quiet,
}

impl Display {
    fn new(queue: &str) -> Self {
        if !std::io::stdout().is_terminal() {
            return Self::Lines {
                queue: queue.to_owned(),
                next: Duration::ZERO,
            };
        }
        let bar = ProgressBar::new(0);
        // The template is a constant, so failing to parse it is a bug; fall back to the default.
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix} {pos}/{len} drained, {msg} ({per_sec}) [{wide_bar:.cyan/blue}]",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(queue.to_owned());
        Self::Bar(bar)
    }

    fn show(
        &mut self,
        depth: Depth,
        largest_backlog: u32,
        elapsed: Duration,
    ) -> std::io::Result<()> {
        let drained = largest_backlog - depth.messages;
        match self {
            Self::Bar(bar) => {
                bar.set_length(largest_backlog.into());
                bar.set_position(drained.into());
                bar.set_message(format!(
                    "{} waiting, {} consumer(s)",
                    depth.messages, depth.consumers
                ));
            }
            Self::Lines { queue, next } => {
                if elapsed < *next {
                    return Ok(());
                }
                // On whole seconds, however late this poll came.
                *next = Duration::from_secs(elapsed.as_secs()) + LINE_EVERY;
                outln!(
                    "[{:>5.1} s] {queue}: {} waiting, {drained} of {largest_backlog} drained, {} consumer(s)",
                    elapsed.as_secs_f64(),
                    depth.messages,
                    depth.consumers
                )?;
            }
            Self::Quiet => {}
        }
        Ok(())
    }

    fn finish(&self, how: &str) {
        if let Self::Bar(bar) = self {
            bar.abandon_with_message(how.to_owned());
        }
    }
}
