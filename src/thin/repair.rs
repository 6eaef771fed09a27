//! thin_repair (being written).

use std::ffi::OsString;

use crate::exit::Outcome;

/// Entry point of `thin_repair`: parses `args` (without argv[0]) and runs the tool.
#[must_use]
pub fn command(args: &[OsString]) -> Outcome {
    let _ = args;
    eprintln!("thin_repair: not available yet");
    Outcome::Failure
}
