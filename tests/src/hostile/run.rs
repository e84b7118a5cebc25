//! One hostile run: its seed, its budget, the cases it draws and the findings it collects.
//!
//! Environment (all optional):
//! - `HOSTILE_SEED=<u64>`: replay a run (the seed is printed at the start of every run);
//! - `HOSTILE_SOAK=1`: a long run by hand (20 times the cases, up to 15 minutes per suite);
//! - `HOSTILE_CASES=<n>`, `HOSTILE_SECS=<s>`: set the case count or the wall time directly;
//! - `HOSTILE_ONLY=<n>`: run case number `n` alone (with the same seed: the minimal reproduction
//!   of a finding; the cases before it are still drawn, not sent, so it is the same case);
//! - `HOSTILE_WITHOUT=<class>,...`: leave a class of input out, to look past a known finding
//!   that is not fixed yet (`bulky-headers`: header tables near the frame limit).
//!   A run with it draws other cases than the same seed without it;
//! - `HOSTILE_WITH=<class>,...`: add a class left out by default (`retry-without-expiration`:
//!   messages put straight into a retry queue with no expiration, which come back only at the
//!   retry queue's own TTL of an hour: for a soak whose checks can wait that long).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// The run's seed: from `HOSTILE_SEED`, or fresh.
#[derive(Debug, Clone, Copy)]
pub struct Seed(pub u64);

impl Seed {
    /// `HOSTILE_SEED` if set (a number), else a fresh one. Printed either way.
    ///
    /// # Errors
    /// `HOSTILE_SEED` is set but is not a number.
    pub fn from_env(suite: &str) -> anyhow::Result<Self> {
        let seed = match std::env::var("HOSTILE_SEED") {
            Ok(text) => text
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("HOSTILE_SEED={text:?} is not a number"))?,
            Err(_) => u64::from_le_bytes(
                uuid::Uuid::new_v4().as_bytes()[..8]
                    .try_into()
                    .unwrap_or_default(),
            ),
        };
        eprintln!("hostile {suite}: seed {seed} (replay with HOSTILE_SEED={seed})");
        Ok(Self(seed))
    }

    /// A runner whose random stream depends on the seed and `stream` only, so each suite of one
    /// run draws its own cases and replays them alike.
    pub fn runner(self, stream: &str) -> TestRunner {
        let mut bytes = [0u8; 32];
        fastrand::Rng::with_seed(self.0 ^ fnv(stream)).fill(&mut bytes);
        TestRunner::new_with_rng(
            Config::default(),
            TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
        )
    }
}

/// The stream's name as a number (FNV-1a), so that each stream of one seed draws apart.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whether `HOSTILE_WITHOUT` leaves out the input class `class`.
pub fn without(class: &str) -> bool {
    std::env::var("HOSTILE_WITHOUT").is_ok_and(|list| list.split(',').any(|c| c.trim() == class))
}

/// Whether `HOSTILE_WITH` adds the input class `class`, left out by default.
pub fn with(class: &str) -> bool {
    std::env::var("HOSTILE_WITH").is_ok_and(|list| list.split(',').any(|c| c.trim() == class))
}

/// Draw one value of `strategy` (no shrinking: see the module doc of [`super`]).
///
/// # Errors
/// The strategy rejected every value it tried (a filter too strict).
pub fn draw<S: Strategy>(runner: &mut TestRunner, strategy: &S) -> anyhow::Result<S::Value> {
    strategy
        .new_tree(runner)
        .map(|tree| tree.current())
        .map_err(|why| anyhow::anyhow!("cannot draw a case: {why}"))
}

/// How much a suite may try: cases, cases per batch (checks run after each), and wall time.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub cases: usize,
    pub batch: usize,
    pub wall: Duration,
    /// Run only this case (`HOSTILE_ONLY`).
    pub only: Option<usize>,
}

impl Budget {
    /// The default for `.ci/run`, changed by the environment (see the module doc).
    pub fn from_env(cases: usize, batch: usize, wall: Duration) -> Self {
        let number = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let soak = std::env::var_os("HOSTILE_SOAK").is_some_and(|v| v != "0");
        let (mut cases, mut wall) = if soak {
            (cases * 20, Duration::from_secs(15 * 60))
        } else {
            (cases, wall)
        };
        if let Some(n) = number("HOSTILE_CASES") {
            cases = usize::try_from(n).unwrap_or(cases);
        }
        if let Some(s) = number("HOSTILE_SECS") {
            wall = Duration::from_secs(s);
        }
        let only = number("HOSTILE_ONLY").and_then(|n| usize::try_from(n).ok());
        Self {
            cases,
            batch,
            wall,
            only,
        }
    }

    /// Whether case `index` is to be sent (all of them, unless `HOSTILE_ONLY` names one).
    pub fn sends(&self, index: usize) -> bool {
        self.only.is_none_or(|only| only == index)
    }

    /// How many cases to draw: up to the one asked for, or all.
    pub fn draws(&self) -> usize {
        self.only.map_or(self.cases, |only| only + 1)
    }
}

/// Something a suite found broken, with what reproduces it.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Case number within its suite (`HOSTILE_ONLY=` replays it), or none for a batch check.
    pub case: Option<usize>,
    /// What broke, in a sentence.
    pub what: String,
    /// The case (or the batch's cases) that led to it.
    pub repro: String,
}

/// Every finding of one suite, and how many cases of each kind it tried and how long they took.
#[derive(Debug)]
pub struct Findings {
    pub suite: &'static str,
    pub seed: Seed,
    pub found: Vec<Finding>,
    pub tally: BTreeMap<String, Tally>,
    started: Instant,
}

/// Cases of one kind: how many were tried, how many the client side could not even send (a
/// 256-byte short string, a frame over the limit), and the time spent sending them.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub tried: usize,
    pub unsendable: usize,
    pub refused: usize,
    pub spent: Duration,
}

/// The most findings kept in full; past that, only counted (a broken service repeats itself).
const KEEP: usize = 40;

impl Findings {
    pub fn new(suite: &'static str, seed: Seed) -> Self {
        Self {
            suite,
            seed,
            found: Vec::new(),
            tally: BTreeMap::new(),
            started: Instant::now(),
        }
    }

    pub fn add(&mut self, case: Option<usize>, what: impl Into<String>, repro: impl Into<String>) {
        let finding = Finding {
            case,
            what: what.into(),
            repro: repro.into(),
        };
        eprintln!(
            "hostile {}: FINDING{}: {}\n    {}",
            self.suite,
            case.map(|c| format!(" in case {c}")).unwrap_or_default(),
            finding.what,
            finding.repro
        );
        if self.found.len() < KEEP {
            self.found.push(finding);
        }
    }

    /// Count one case of `kind` that took `spent`.
    pub fn count(&mut self, kind: &str, spent: Duration) {
        let tally = self.tally.entry(kind.to_owned()).or_default();
        tally.tried += 1;
        tally.spent += spent;
    }

    /// Count one case of `kind` that could not be sent at all.
    pub fn unsendable(&mut self, kind: &str) {
        self.tally.entry(kind.to_owned()).or_default().unsendable += 1;
    }

    /// Count one case of `kind` that the broker or the HTTP stack refused before a service saw it.
    pub fn refused(&mut self, kind: &str) {
        self.tally.entry(kind.to_owned()).or_default().refused += 1;
    }

    /// Print what was tried, then fail with every finding, each with how to replay it.
    ///
    /// # Errors
    /// Any finding.
    pub fn verdict(&self) -> anyhow::Result<()> {
        eprintln!("{self}");
        anyhow::ensure!(
            self.found.is_empty(),
            "hostile {}: {} finding(s) with seed {} (replay: HOSTILE_SEED={} cargo test -p saga-tests --test it hostile::{}):\n{}",
            self.suite,
            self.found.len(),
            self.seed.0,
            self.seed.0,
            self.suite,
            self.found
                .iter()
                .map(|f| format!(
                    "- {}{}\n    {}",
                    f.case
                        .map(|c| format!("[case {c}, HOSTILE_ONLY={c}] "))
                        .unwrap_or_default(),
                    f.what,
                    f.repro
                ))
                .collect::<Vec<_>>()
                .join("\n")
        );
        Ok(())
    }
}

impl fmt::Display for Findings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "hostile {}: seed {}, {:.1} s in all; per kind: tried / not sendable / refused before a service saw it / time sending",
            self.suite,
            self.seed.0,
            self.started.elapsed().as_secs_f64()
        )?;
        for (kind, t) in &self.tally {
            writeln!(
                f,
                "  {kind:<28} {:>5} / {:>4} / {:>4} / {:>6.2} s",
                t.tried,
                t.unsendable,
                t.refused,
                t.spent.as_secs_f64()
            )?;
        }
        Ok(())
    }
}

/// A long value shown short: its length and a prefix, so a finding stays readable.
pub fn brief(bytes: &[u8]) -> String {
    const SHOWN: usize = 48;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(SHOWN)]);
    if bytes.len() > SHOWN {
        format!("{text:?}… ({} bytes)", bytes.len())
    } else {
        format!("{text:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_draws_the_same_cases_and_streams_differ() {
        let strategy = proptest::collection::vec(0u32..1000, 5);
        let seed = Seed(42);
        let a = draw(&mut seed.runner("http"), &strategy).unwrap();
        let b = draw(&mut seed.runner("http"), &strategy).unwrap();
        let c = draw(&mut seed.runner("amqp"), &strategy).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn long_values_are_shown_short() {
        assert_eq!(brief(b"abc"), "\"abc\"");
        let long = brief(&[b'x'; 300]);
        assert!(long.ends_with("(300 bytes)"), "{long}");
    }
}
