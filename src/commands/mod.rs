//! The command layer: everything between a process's arguments and an
//! engine. It is the only layer that knows about clap, exit codes and
//! `anyhow`: each tool's file parses its arguments (shared option groups come
//! from [`args`]), calls its engine in [`crate::thin::engines`], prints the
//! result and chooses the exit code ([`exit`]).
//!
//! Adding a tool: an engine module under `src/thin/engines/`, a file here
//! with `run` and `cli`, a row in [`TOOLS`], and a two-line `src/bin/` main.

use std::ffi::OsString;
use std::process::ExitCode;

pub mod args;
pub mod exit;
pub mod run;

pub mod check;
pub mod delta;
pub mod dump;
pub mod ls;
pub mod merge;
pub mod metadata_size;
pub mod migrate;
pub mod pack;
pub mod recv;
pub mod repair;
pub mod restore;
pub mod rmap;
pub mod send;
pub mod send_recv;
pub mod shrink;
pub mod trim;

use exit::{exit_code, Outcome};

/// The project version, printed by `-V`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// One tool of the suite.
pub struct Tool {
    /// The name it is called by (binary, symlink or first argument).
    pub name: &'static str,
    /// Runs it on the arguments after argv\[0\].
    pub run: fn(&[OsString]) -> Outcome,
    /// Its command-line definition (options, help texts).
    pub cli: fn() -> clap::Command,
}

/// Every tool, in the order `pdata_tools --help` lists them.
pub const TOOLS: &[Tool] = &[
    Tool {
        name: "thin_check",
        run: check::run,
        cli: check::cli,
    },
    Tool {
        name: "thin_delta",
        run: delta::run,
        cli: delta::cli,
    },
    Tool {
        name: "thin_dump",
        run: dump::run,
        cli: dump::cli,
    },
    Tool {
        name: "thin_ls",
        run: ls::run,
        cli: ls::cli,
    },
    Tool {
        name: "thin_merge",
        run: merge::run,
        cli: merge::cli,
    },
    Tool {
        name: "thin_metadata_pack",
        run: pack::run_pack,
        cli: pack::cli_pack,
    },
    Tool {
        name: "thin_metadata_size",
        run: metadata_size::run,
        cli: metadata_size::cli,
    },
    Tool {
        name: "thin_metadata_unpack",
        run: pack::run_unpack,
        cli: pack::cli_unpack,
    },
    Tool {
        name: "thin_migrate",
        run: migrate::run,
        cli: migrate::cli,
    },
    Tool {
        name: "thin_repair",
        run: repair::run,
        cli: repair::cli,
    },
    Tool {
        name: "thin_restore",
        run: restore::run,
        cli: restore::cli,
    },
    Tool {
        name: "thin_recv",
        run: recv::command,
        cli: recv::cli,
    },
    Tool {
        name: "thin_rmap",
        run: rmap::run,
        cli: rmap::cli,
    },
    Tool {
        name: "thin_send",
        run: send::command,
        cli: send::cli,
    },
    Tool {
        name: "thin_send_recv",
        run: send_recv::command,
        cli: send::cli,
    },
    Tool {
        name: "thin_shrink",
        run: shrink::run,
        cli: shrink::cli,
    },
    Tool {
        name: "thin_trim",
        run: trim::run,
        cli: trim::cli,
    },
];

/// The tool called `name`, if there is one.
#[must_use]
pub fn find(name: &str) -> Option<&'static Tool> {
    TOOLS.iter().find(|t| t.name == name)
}

/// `main` of a single-tool binary.
///
/// # Panics
/// When `name` is not in [`TOOLS`] (a build mistake, caught by the tests).
#[must_use]
pub fn tool_main(name: &str) -> ExitCode {
    let tool = find(name).expect("every binary names a tool of the table");
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    exit_code((tool.run)(&args))
}
