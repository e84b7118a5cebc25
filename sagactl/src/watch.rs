//! `sagactl watch`: follow a queue's depth, e.g. a backlog draining after a consumer restarts.
//!
//! The depth is read with a passive declare every 200 ms (exact, unlike the management UI's
//! sampled graphs). On a terminal a progress bar shows how much of the largest backlog seen has
//! drained; in a script or a log (stdout not a terminal) it prints one plain line a second.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use shared::config::Common;

use crate::broker::{self, Depth};

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
    let mut display = Display::new(&queue);
    let started = Instant::now();
    let mut largest_backlog = 0;
    let mut ticker = tokio::time::interval(POLL_EVERY);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    let result = loop {
        tokio::select! {
            _ = &mut ctrl_c => {
                display.finish("stopped");
                break Ok(());
            }
            _ = ticker.tick() => {}
        }
        let depth = match broker::depth(&channel, &queue).await {
            Ok(depth) => depth,
            Err(e) => break Err(e),
        };
        largest_backlog = largest_backlog.max(depth.messages);
        let elapsed = started.elapsed();
        if let Err(e) = display.show(depth, largest_backlog, elapsed) {
            break Err(e.into());
        }

        if until_empty && depth.messages == 0 {
            display.finish("empty");
            outln!(
                "{queue} is empty after {:.1} s (largest backlog seen: {largest_backlog})",
                elapsed.as_secs_f64()
            )?;
            break Ok(());
        }
        if let Some(limit) = timeout.filter(|limit| elapsed >= *limit) {
            display.finish("timed out");
            if until_empty {
                break Err(anyhow::anyhow!(
                    "{queue} still holds {} message(s) after {} s",
                    depth.messages,
                    limit.as_secs()
                ));
            }
            break Ok(());
        }
    };
    let _ = conn.close(200, "done".into()).await;
    result
}

/// A progress bar on a terminal, a plain line a second anywhere else.
enum Display {
    Bar(ProgressBar),
    Lines {
        queue: String,
        /// When the next line is due, counted from the start of the watch.
        next: Duration,
    },
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
        }
        Ok(())
    }

    fn finish(&self, how: &str) {
        if let Self::Bar(bar) = self {
            bar.abandon_with_message(how.to_owned());
        }
    }
}
