//! `thin_shrink`: the command line, on the engine in
//! [`crate::thin::engines::shrink`].

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{ArgAction, CommandFactory, Parser};

use crate::commands::args::Verbosity;
use crate::commands::exit::Outcome;
use crate::commands::run::{report_error, run_with};
use crate::progress::{Display, Log};
use crate::thin::engines::shrink::{shrink, Copy, Format, ShrinkOptions};

/// Move the data of an inactive pool below a new size and rewrite its metadata.
#[derive(Parser, Debug)]
#[command(name = "thin_shrink", disable_version_flag = true)]
struct Args {
    /// Read and write binary metadata instead of XML
    #[arg(long = "binary", action = ArgAction::SetTrue)]
    binary: bool,
    /// The pool's data device (or file), where data is moved
    #[arg(long = "data", value_name = "FILE", required = true)]
    data: PathBuf,
    /// The metadata to read: XML, or binary with --binary
    #[arg(short = 'i', long = "input", value_name = "FILE", required = true)]
    input: PathBuf,
    /// Rewrite the metadata only, without copying data (for measurements)
    #[arg(long = "no-copy", action = ArgAction::SetTrue)]
    no_copy: bool,
    /// The new size of the pool, in data blocks
    #[arg(long = "nr-blocks", value_name = "NUM", required = true)]
    nr_blocks: u64,
    /// Where to write the new metadata: an XML file (created), or with
    /// --binary an existing metadata device or file
    #[arg(short = 'o', long = "output", value_name = "FILE", required = true)]
    output: PathBuf,
    #[command(flatten)]
    verbosity: Verbosity,
}

/// Runs the tool on `args` (without argv\[0\]).
#[must_use]
pub fn run(args: &[OsString]) -> Outcome {
    run_with::<Args, _>("thin_shrink", args, |a| {
        let level = a.verbosity.level();
        let progress = if level.display() == Display::Shown && std::io::stderr().is_terminal() {
            Display::Shown
        } else {
            Display::Quiet
        };
        let opts = ShrinkOptions {
            input: a.input,
            output: a.output,
            data: a.data,
            nr_blocks: a.nr_blocks,
            format: if a.binary {
                Format::Binary
            } else {
                Format::Xml
            },
            copy: if a.no_copy {
                Copy::MetadataOnly
            } else {
                Copy::Data
            },
            progress,
        };
        let log = Log::stderr(level);
        match shrink(&opts, &log) {
            Ok(_) => Outcome::Success,
            Err(e) => report_error(&anyhow::Error::new(e), a.verbosity.level()),
        }
    })
}

/// The command-line definition.
#[must_use]
pub fn cli() -> clap::Command {
    Args::command()
}
