//! thin_metadata_size (being written).

use std::ffi::OsString;

use crate::exit::Outcome;

/// Entry point of `thin_metadata_size`: parses `args` (without argv[0]) and runs the tool.
#[must_use]
pub fn command(args: &[OsString]) -> Outcome {
    let _ = args;
    eprintln!("thin_metadata_size: not available yet");
    Outcome::Failure
}
