//! thin_restore (being written).

use std::ffi::OsString;

use crate::exit::Outcome;

/// Entry point of `thin_restore`: parses `args` (without argv[0]) and runs the tool.
#[must_use]
pub fn command(args: &[OsString]) -> Outcome {
    let _ = args;
    eprintln!("thin_restore: not available yet");
    Outcome::Failure
}
