//! `thin_trim`: the command line, on the engine in [`crate::thin::engines::trim`].

use std::ffi::OsString;

use clap::CommandFactory;

use crate::commands::exit::Outcome;

/// Runs the tool on `args` (without argv[0]).
#[must_use]
pub fn run(args: &[OsString]) -> Outcome {
    crate::thin::engines::trim::command(args)
}

/// The command-line definition.
#[must_use]
pub fn cli() -> clap::Command {
    crate::thin::engines::trim::Opts::command()
}
