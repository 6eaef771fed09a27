//! `thin_dump`: the command line, on the engine in [`crate::thin::engines::dump`].

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgAction, CommandFactory, Parser, ValueEnum};

use crate::commands::args::{MetadataSnap, SuperblockOverrides, Verbosity};
use crate::commands::exit::Outcome;
use crate::commands::run::{glue_optional_short, report_error, run_with};
use crate::progress::Log;
use crate::thin::engines::dump::{dump, DumpError, DumpOptions, Format, Mappings, SharedLeaves};

/// Output format (`-f`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    // thin_dump XML (the default; thin_restore reads it). The variants carry
    // no doc comments so that --help lists the values on one line.
    Xml,
    // Indented text for people.
    #[value(name = "human_readable")]
    HumanReadable,
}

/// Command line of thin_dump.
#[derive(Parser, Debug)]
#[command(
    name = "thin_dump",
    version = crate::commands::VERSION,
    about = "Dump thin-provisioning metadata as XML or human-readable text",
    max_term_width = 100
)]
struct Args {
    #[command(flatten)]
    overrides: SuperblockOverrides,

    /// Dump only this device (repeatable)
    #[arg(long = "dev-id", value_name = "ID", action = ArgAction::Append)]
    dev_id: Vec<u64>,

    /// Write every device's mappings in full, without <def>/<ref> sharing
    #[arg(long)]
    expand_shared: bool,

    /// Output format
    #[arg(
        short = 'f',
        long,
        value_enum,
        default_value = "xml",
        value_name = "FORMAT"
    )]
    format: FormatArg,

    #[command(flatten)]
    snap: MetadataSnap,

    /// Write to this file instead of stdout
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,

    #[command(flatten)]
    verbosity: Verbosity,

    /// Find the trees of damaged metadata and dump what can be salvaged
    #[arg(
        short = 'r',
        long,
        action = ArgAction::SetTrue,
        overrides_with = "repair",
        conflicts_with = "metadata_snap"
    )]
    repair: bool,

    /// List devices with their details but no mappings
    #[arg(long, action = ArgAction::SetTrue, overrides_with = "skip_mappings")]
    skip_mappings: bool,

    /// Binary metadata: a file or block device
    #[arg(value_name = "INPUT")]
    input: PathBuf,
}

impl From<Args> for DumpOptions {
    fn from(a: Args) -> Self {
        DumpOptions {
            input: a.input,
            output: a.output,
            format: match a.format {
                FormatArg::Xml => Format::Xml,
                FormatArg::HumanReadable => Format::HumanReadable,
            },
            snapshot: a.snap.choice(),
            dev_ids: (!a.dev_id.is_empty()).then(|| a.dev_id.into_iter().collect()),
            mappings: if a.skip_mappings {
                Mappings::Skip
            } else {
                Mappings::Dump
            },
            shared: if a.expand_shared {
                SharedLeaves::Expanded
            } else {
                SharedLeaves::DefRef
            },
            overrides: a.overrides.values(),
            quiet: a.verbosity.quiet,
            verbose: a.verbosity.verbose,
        }
    }
}

/// Runs the tool on `args` (without argv\[0\]).
#[must_use]
pub fn run(args: &[OsString]) -> Outcome {
    let args = glue_optional_short(args, 'm');
    run_with::<Args, _>("thin_dump", &args, |a| {
        let repair = a.repair;
        let opts = DumpOptions::from(a);
        if repair {
            return crate::thin::engines::repair::dump::dump_command(&opts);
        }
        let log = Log::stderr(opts.verbosity());
        match dump(&opts, &log) {
            Ok(report) if report.complete() => Outcome::Success,
            Ok(_) => Outcome::Failure,
            Err(e) => report(e, opts.quiet),
        }
    })
}

/// The command-line definition.
#[must_use]
pub fn cli() -> clap::Command {
    Args::command()
}

/// Prints `e` (nothing for a broken pipe or when quiet).
fn report(e: DumpError, quiet: bool) -> Outcome {
    if e.is_broken_pipe() {
        return Outcome::Failure;
    }
    report_error(&anyhow::Error::from(e), quiet)
}
