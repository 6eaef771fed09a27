//! `thin_restore`: the command line, on the engine in [`crate::thin::engines::restore`].

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{CommandFactory, Parser};

use crate::commands::args::{SuperblockOverrides, Verbosity};
use crate::commands::exit::Outcome;
use crate::commands::run::{report_error, run_with};
use crate::progress::{Log, Progress};
use crate::thin::engines::restore::{restore, RestoreOptions};

/// Restore thin-provisioning metadata from an XML dump.
#[derive(Parser, Debug)]
#[command(name = "thin_restore", version, disable_version_flag = true)]
struct Args {
    #[command(flatten)]
    overrides: SuperblockOverrides,
    /// XML dump to read (a file, FIFO or /proc/<pid>/fd/<n>)
    #[arg(short = 'i', long = "input", value_name = "FILE", required = true)]
    input: PathBuf,
    /// Metadata device or file to write (must exist, at least 40960 bytes)
    #[arg(short = 'o', long = "output", value_name = "FILE", required = true)]
    output: PathBuf,
    #[command(flatten)]
    verbosity: Verbosity,
}

/// Runs the tool on `args` (without argv\[0\]).
#[must_use]
pub fn run(args: &[OsString]) -> Outcome {
    run_with::<Args, _>("thin_restore", args, |a| {
        let opts = RestoreOptions {
            input: a.input,
            output: a.output,
            overrides: a.overrides.values(),
        };
        let log = Log::stderr(a.verbosity.level());
        let progress = Progress::new(a.verbosity.level().display());
        match restore(&opts, &log, &progress) {
            Ok(summary) => {
                if let Some(s) = summary {
                    log.info(format_args!(
                        "restored {} devices, {} mappings; {} metadata blocks in use",
                        s.nr_devices, s.nr_mappings, s.metadata_blocks_used
                    ));
                }
                Outcome::Success
            }
            Err(e) => report_error(&anyhow::Error::from(e), a.verbosity.level()),
        }
    })
}

/// The command-line definition.
#[must_use]
pub fn cli() -> clap::Command {
    Args::command()
}
