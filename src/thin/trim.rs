//! thin_trim (being written).

use std::ffi::OsString;

use crate::exit::Outcome;

/// Entry point of `thin_trim`: parses `args` (without argv[0]) and runs the tool.
#[must_use]
pub fn command(args: &[OsString]) -> Outcome {
    let _ = args;
    eprintln!("thin_trim: not available yet");
    Outcome::Failure
}
