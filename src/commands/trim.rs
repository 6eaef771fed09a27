//! `thin_trim`: the command line, on the engine in [`crate::thin::engines::trim`].

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::PathBuf;

use clap::{ArgAction, CommandFactory, Parser};

use crate::commands::exit::Outcome;
use crate::commands::run::{report_error, run_with};
use crate::progress::Verbosity;
use crate::thin::engines::trim::{trim, TrimOptions};

/// Discard the unused data blocks of an inactive thin pool.
#[derive(Parser, Debug)]
#[command(
    name = "thin_trim",
    version = crate::commands::VERSION,
    about = "Discard the unused data blocks of an inactive thin pool"
)]
struct Args {
    /// The pool's data device or file
    #[arg(long = "data-dev", value_name = "FILE")]
    data_dev: PathBuf,
    /// The pool's metadata device or file
    #[arg(long = "metadata-dev", value_name = "FILE")]
    metadata_dev: PathBuf,
    /// Print nothing on stderr
    #[arg(short = 'q', long = "quiet", action = ArgAction::Count)]
    quiet: u8,
    /// Print more information (repeatable)
    #[arg(short = 'v', action = ArgAction::Count)]
    verbose: u8,
}

/// Runs the tool on `args` (without argv\[0\]).
#[must_use]
pub fn run(args: &[OsString]) -> Outcome {
    run_with::<Args, _>("thin_trim", args, |a| {
        let quiet = a.quiet > 0;
        // `-v` shows the pre-check's findings and a closing count; `-q` wins.
        let verbose = a.verbose > 0 && !quiet;
        let opts = TrimOptions {
            data_dev: a.data_dev,
            metadata_dev: a.metadata_dev,
            precheck_verbosity: if verbose {
                Verbosity::Normal
            } else {
                Verbosity::Quiet
            },
        };
        match trim(&opts) {
            Ok(report) => {
                if verbose {
                    let _ = writeln!(
                        io::stderr().lock(),
                        "discarded {} free runs, {} data blocks",
                        report.runs,
                        report.blocks
                    );
                }
                Outcome::Success
            }
            Err(e) => report_error(&anyhow::Error::from(e), Verbosity::from_flags(quiet, 0)),
        }
    })
}

/// The command-line definition.
#[must_use]
pub fn cli() -> clap::Command {
    Args::command()
}
