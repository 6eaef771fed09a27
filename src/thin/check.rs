//! thin_check (being written).

use std::ffi::OsString;

use crate::exit::Outcome;

/// Entry point of `thin_check`: parses `args` (without argv[0]) and runs the tool.
#[must_use]
pub fn command(args: &[OsString]) -> Outcome {
    let _ = args;
    eprintln!("thin_check: not available yet");
    Outcome::Failure
}
