//! `thin_metadata_pack` and `thin_metadata_unpack`: the command lines, on the
//! engine in [`crate::thin::engines::pack`].

use std::ffi::OsString;

use clap::CommandFactory;

use crate::commands::exit::Outcome;
use crate::thin::engines::pack::{PackOpts, UnpackOpts};

/// Runs `thin_metadata_pack` on `args` (without argv\[0\]).
#[must_use]
pub fn run_pack(args: &[OsString]) -> Outcome {
    crate::thin::engines::pack::pack_command(args)
}

/// Runs `thin_metadata_unpack` on `args` (without argv\[0\]).
#[must_use]
pub fn run_unpack(args: &[OsString]) -> Outcome {
    crate::thin::engines::pack::unpack_command(args)
}

/// The command-line definition of `thin_metadata_pack`.
#[must_use]
pub fn cli_pack() -> clap::Command {
    PackOpts::command()
}

/// The command-line definition of `thin_metadata_unpack`.
#[must_use]
pub fn cli_unpack() -> clap::Command {
    UnpackOpts::command()
}
