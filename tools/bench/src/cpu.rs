//! Where a run's CPU went: each process's user + system time, from `/proc/<pid>/stat` (through
//! `procfs`), read before and after. On a 2-core machine every cycle a service spends is one the
//! broker does not get, so this is the profile that explains a ratio to the ceiling.

use anyhow::Context;
use procfs::process::Process;

/// Who to watch: a label and the processes it sums (RabbitMQ runs as several).
#[derive(Debug, Clone)]
pub struct Watched {
    pub label: String,
    pub pids: Vec<u32>,
}

/// CPU seconds one label used during the run.
#[derive(Debug, Clone)]
pub struct CpuUse {
    pub label: String,
    pub seconds: f64,
}

/// Readings taken at the start, to subtract at the end.
pub struct CpuMeter {
    start: Vec<(Watched, u64)>,
}

/// The saga's helpers on this machine: every broker and Redis process.
pub fn local_helpers() -> Vec<Watched> {
    vec![
        Watched {
            label: "RabbitMQ".into(),
            pids: pids_named(&["beam.smp", "erl_child_setup", "epmd"]),
        },
        Watched {
            label: "Redis".into(),
            pids: pids_named(&["redis-server"]),
        },
    ]
}

impl CpuMeter {
    /// The saga's helpers on this machine (the broker and Redis), then `services`, then this
    /// benchmark itself (the load generator).
    pub fn start(services: Vec<Watched>) -> Self {
        Self::start_with(local_helpers(), services)
    }

    /// [`CpuMeter::start`] with the helpers named (e.g. each node of a cluster on its own).
    pub fn start_with(helpers: Vec<Watched>, services: Vec<Watched>) -> Self {
        let mut watched = helpers;
        watched.extend(services);
        watched.push(Watched {
            label: "saga-bench (this process: HTTP load, or the broker-only clients)".into(),
            pids: vec![std::process::id()],
        });
        let start = watched
            .into_iter()
            .map(|w| {
                let ticks = total_ticks(&w.pids);
                (w, ticks)
            })
            .collect();
        Self { start }
    }

    /// CPU seconds per label since [`CpuMeter::start`]. Read it before the services stop.
    pub fn finish(self) -> Vec<CpuUse> {
        // `/proc` counts CPU time in clock ticks (`USER_HZ`).
        let ticks_per_sec = procfs::ticks_per_second() as f64;
        self.start
            .into_iter()
            .map(|(w, before)| CpuUse {
                seconds: total_ticks(&w.pids).saturating_sub(before) as f64 / ticks_per_sec,
                label: w.label,
            })
            .collect()
    }
}

/// utime + stime of every pid that still exists, in ticks.
fn total_ticks(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|&pid| cpu_ticks(pid).ok()).sum()
}

/// utime + stime of `pid`, in ticks.
///
/// # Errors
/// The process is gone, or its stat line is not what Linux writes.
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = Process::new(i32::try_from(pid)?)
        .and_then(|process| process.stat())
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    Ok(stat.utime + stat.stime)
}

/// Every process whose command name is one of `names`.
fn pids_named(names: &[&str]) -> Vec<u32> {
    let Ok(processes) = procfs::process::all_processes() else {
        return Vec::new();
    };
    processes
        // A process that exits while we look is simply not one of them.
        .filter_map(|process| process.ok()?.stat().ok())
        .filter(|stat| names.contains(&stat.comm.as_str()))
        .filter_map(|stat| u32::try_from(stat.pid).ok())
        .collect()
}

/// The labels of `runs`' CPU readings, each once, in the order they first appear: the rows of a
/// table or chart that sets runs side by side.
pub fn labels<'a>(runs: impl IntoIterator<Item = &'a [CpuUse]>) -> Vec<&'a str> {
    let mut labels: Vec<&str> = Vec::new();
    for used in runs.into_iter().flatten() {
        if !labels.contains(&used.label.as_str()) {
            labels.push(&used.label);
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_cpu_time_is_counted() {
        // Burn CPU until the kernel has charged this process a tick (10 ms at USER_HZ=100),
        // with a bound so a broken reading fails instead of spinning for ever.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut spin = 0_u64;
        while cpu_ticks(std::process::id()).unwrap() == 0 && std::time::Instant::now() < deadline {
            for i in 0..1_000_000_u64 {
                spin = std::hint::black_box(spin.wrapping_add(i));
            }
        }
        assert!(cpu_ticks(std::process::id()).unwrap() > 0);
        assert!(procfs::ticks_per_second() > 0);
    }

    #[test]
    fn finds_processes_by_command_name() {
        let us = Process::myself().unwrap().stat().unwrap().comm;
        assert!(pids_named(&[us.as_str()]).contains(&std::process::id()));
        assert!(pids_named(&["no-such-process-name"]).is_empty());
    }

    #[test]
    fn labels_come_once_in_first_seen_order() {
        let used = |label: &str| CpuUse {
            label: label.into(),
            seconds: 1.0,
        };
        let e2e = [used("RabbitMQ"), used("Redis"), used("order-svc")];
        let ceiling = [used("RabbitMQ"), used("saga-bench")];
        assert_eq!(
            labels([&e2e[..], &ceiling[..]]),
            ["RabbitMQ", "Redis", "order-svc", "saga-bench"]
        );
    }
}
