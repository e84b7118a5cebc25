//! Resident memory of a process, read from `/proc/<pid>/status` (through `procfs`), once or
//! sampled over time.

use std::time::Duration;

use anyhow::Context;
use procfs::process::Process;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Resident set size (VmRSS) of `pid`, in bytes.
///
/// # Errors
/// The process is gone, or this is not Linux.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = Process::new(i32::try_from(pid)?)
        .and_then(|process| process.status())
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let kib = status
        .vmrss
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))?;
    Ok(kib * 1024)
}

/// What a series of samples saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RssStats {
    pub first: u64,
    pub min: u64,
    pub max: u64,
    pub last: u64,
    pub samples: usize,
}

impl RssStats {
    pub fn record(&mut self, bytes: u64) {
        if self.samples == 0 {
            self.first = bytes;
            self.min = bytes;
        }
        self.min = self.min.min(bytes);
        self.max = self.max.max(bytes);
        self.last = bytes;
        self.samples += 1;
    }

    /// How far the peak rose above where the series started.
    pub fn growth(&self) -> u64 {
        self.max.saturating_sub(self.first)
    }
}

/// A task that samples one process's RSS at a fixed interval until stopped.
pub struct Sampler {
    stop: oneshot::Sender<()>,
    task: JoinHandle<RssStats>,
}

impl Sampler {
    /// Sample `pid` now and then every `every`. A process that exits just ends the series.
    pub fn start(pid: u32, every: Duration) -> Self {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut stats = RssStats::default();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => match rss_bytes(pid) {
                        Ok(bytes) => stats.record(bytes),
                        Err(_) => break,
                    },
                }
            }
            stats
        });
        Self { stop, task }
    }

    /// Stop sampling and return what was seen.
    ///
    /// # Errors
    /// The sampling task panicked.
    pub async fn finish(self) -> anyhow::Result<RssStats> {
        let _ = self.stop.send(());
        self.task.await.context("RSS sampler panicked")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_rss_is_readable() {
        assert!(rss_bytes(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn stats_track_first_peak_and_growth() {
        let mut s = RssStats::default();
        for b in [10, 8, 15, 12] {
            s.record(b);
        }
        assert_eq!(
            (s.first, s.min, s.max, s.last, s.samples),
            (10, 8, 15, 12, 4)
        );
        assert_eq!(s.growth(), 5);
    }
}
