//! `sagactl board`: a shortcut to the classroom board, which is a crate and a binary of its own
//! (`saga-board`, in tools/board).
//!
//! The board uses this crate's library (queues, the DLQ, the checker, an order's journey), so
//! this crate cannot use the board's: the shortcut runs the `saga-board` binary beside this one
//! instead, in this process's place (exec: same pid, same signals, same exit). `saga-board`
//! takes the same settings as `sagactl` (broker, Redis, the services' URLs) and the board's own
//! flags, so `sagactl [settings] board [flags]` is `saga-board [settings] [flags]`.

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;

use clap::Args;

/// The words after `board`, passed on as they are (`--help` included: saga-board answers it).
#[derive(Args, Debug, Clone)]
pub struct Shortcut {
    /// The board's flags: see `saga-board --help`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<OsString>,
}

/// The binary's name.
pub const BINARY: &str = "saga-board";

/// Become `saga-board` with the same settings: the words of this command line before `board`,
/// then those after it. Returns only if that cannot be done.
pub fn exec(shortcut: &Shortcut) -> anyhow::Error {
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    // Everything after `board` is the shortcut's; so `board` itself is just before them.
    let settings = argv.len().saturating_sub(shortcut.args.len() + 1);
    let error = std::process::Command::new(binary())
        .args(&argv[..settings])
        .args(&shortcut.args)
        .exec();
    anyhow::anyhow!("cannot run {BINARY} (build it: cargo build --workspace --bins): {error}")
}

/// `saga-board` beside this binary (target/<profile>/), else the one on the PATH.
fn binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .map(|me| me.with_file_name(BINARY))
        .filter(|beside| beside.is_file())
        .unwrap_or_else(|| PathBuf::from(BINARY))
}
