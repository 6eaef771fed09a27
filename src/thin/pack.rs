//! thin_metadata_pack / thin_metadata_unpack (being written).

use std::ffi::OsString;

use crate::exit::Outcome;

/// Entry point of `thin_metadata_pack`.
#[must_use]
pub fn pack_command(args: &[OsString]) -> Outcome {
    let _ = args;
    eprintln!("thin_metadata_pack: not available yet");
    Outcome::Failure
}

/// Entry point of `thin_metadata_unpack`.
#[must_use]
pub fn unpack_command(args: &[OsString]) -> Outcome {
    let _ = args;
    eprintln!("thin_metadata_unpack: not available yet");
    Outcome::Failure
}
