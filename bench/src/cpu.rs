//! Where a run's CPU went: each process's user + system time, from `/proc/<pid>/stat`, read
//! before and after. On a 2-core machine every cycle a service spends is one the broker does
//! not get, so this is the profile that explains a ratio to the ceiling.

use anyhow::Context;

/// `/proc` reports CPU time in clock ticks of `USER_HZ`, which Linux fixes at 100 for every
/// user-visible interface.
const TICKS_PER_SEC: f64 = 100.0;

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
        self.start
            .into_iter()
            .map(|(w, before)| CpuUse {
                seconds: total_ticks(&w.pids).saturating_sub(before) as f64 / TICKS_PER_SEC,
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
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    parse_ticks(&stat).with_context(|| format!("unexpected /proc/{pid}/stat: {stat}"))
}

/// Fields 14 and 15 (utime, stime) of a stat line. The command name (field 2) may contain
/// spaces and parentheses, so counting starts after its closing parenthesis.
fn parse_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Every process whose command name is one of `names`.
fn pids_named(names: &[&str]) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| names.contains(&comm.trim_end()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utime_and_stime_after_an_awkward_command_name() {
        let stat = "42 (a (weird) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        assert_eq!(parse_ticks(stat), Some(300));
    }

    #[test]
    fn our_own_cpu_time_is_readable() {
        assert!(cpu_ticks(std::process::id()).is_ok());
    }
}
