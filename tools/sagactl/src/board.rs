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
    let error = std::process::Command::new(binary())
        .args(board_argv(&argv, &shortcut.args))
        .exec();
    anyhow::anyhow!("cannot run {BINARY} (build it: cargo build --workspace --bins): {error}")
}

/// saga-board's words from sagactl's (`argv` without the program): the settings before `board`,
/// then `after` (everything after `board`, so `board` itself is just before them).
fn board_argv(argv: &[OsString], after: &[OsString]) -> Vec<OsString> {
    let settings = argv.len().saturating_sub(after.len() + 1);
    argv[..settings].iter().chain(after).cloned().collect()
}

/// `saga-board` beside this binary (target/<profile>/), else the one on the PATH.
fn binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .map(|me| me.with_file_name(BINARY))
        .filter(|beside| beside.is_file())
        .unwrap_or_else(|| PathBuf::from(BINARY))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[test]
    fn the_board_gets_the_settings_before_board_and_the_flags_after_it() {
        let line = [
            "--redis-prefix",
            "board",
            "board",
            "--addr",
            "127.0.0.1:9",
            "--allow-faults",
        ];
        let cli = crate::Cli::try_parse_from(std::iter::once("sagactl").chain(line)).unwrap();
        let crate::Command::Board(shortcut) = cli.command else {
            panic!("not the board shortcut");
        };
        let argv: Vec<OsString> = line.iter().map(OsString::from).collect();
        let words: Vec<OsString> = board_argv(&argv, &shortcut.args);
        assert_eq!(
            words,
            [
                "--redis-prefix",
                "board",
                "--addr",
                "127.0.0.1:9",
                "--allow-faults"
            ]
            .map(OsString::from)
        );
        // --help is the board's, passed on.
        let help = crate::Cli::try_parse_from(["sagactl", "board", "--help"]).unwrap();
        let crate::Command::Board(shortcut) = help.command else {
            panic!("not the board shortcut");
        };
        assert_eq!(shortcut.args, [OsString::from("--help")]);
    }
}
