//! The `saga-bench` binary: parse the flags, run the benchmark, print and write the report.
//!
//! Everything lives in the library (`bench`); see its module map. Usually started through
//! `scripts/bench.sh`, which makes sure the broker and Redis run and builds the release binaries.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let args = bench::Args::parse();
    match bench::run(args).await {
        Ok(bench::Verdict::AllRan) => ExitCode::SUCCESS,
        // A section that could not run (not a slow number: numbers never fail) is worth a
        // non-zero exit, so a script notices the report has holes.
        Ok(bench::Verdict::SectionsFailed) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("saga-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
