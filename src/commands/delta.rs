//! `thin_delta`: the command line, on the engine in
//! [`crate::thin::engines::delta`].

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use clap::{ArgAction, CommandFactory, Parser};

use crate::commands::args::MetadataSnap;
use crate::commands::exit::Outcome;
use crate::commands::run::{finish, glue_optional_short, run_with, stdout_writer, usage_error};
use crate::progress::Verbosity;
use crate::thin::engines::delta::{delta, write_xml, DeltaOptions, Side, Style};

/// Print the differences between the mappings of two thin devices.
#[derive(Parser, Debug)]
#[command(name = "thin_delta", disable_version_flag = true)]
struct Args {
    /// Left side: a thin device id
    #[arg(
        long = "thin1",
        visible_alias = "snap1",
        value_name = "ID",
        conflicts_with = "root1"
    )]
    thin1: Option<u64>,
    /// Left side: the root block of a mapping tree
    #[arg(long = "root1", value_name = "BLOCKNR")]
    root1: Option<u64>,
    /// Right side: a thin device id
    #[arg(
        long = "thin2",
        visible_alias = "snap2",
        value_name = "ID",
        conflicts_with = "root2"
    )]
    thin2: Option<u64>,
    /// Right side: the root block of a mapping tree
    #[arg(long = "root2", value_name = "BLOCKNR")]
    root2: Option<u64>,
    #[command(flatten)]
    snap: MetadataSnap,
    /// Print data block numbers too, grouped by kind of difference
    #[arg(long = "verbose", action = ArgAction::Count)]
    verbose: u8,
    /// Metadata device or file
    #[arg(value_name = "INPUT")]
    input: PathBuf,
}

/// Runs the tool on `args` (without argv\[0\]).
#[must_use]
pub fn run(args: &[OsString]) -> Outcome {
    let args = glue_optional_short(args, 'm');
    run_with::<Args, _>("thin_delta", &args, |a| {
        let Some(left) = side(a.thin1, a.root1) else {
            return usage_error("--thin1 or --root1 not specified");
        };
        let Some(right) = side(a.thin2, a.root2) else {
            return usage_error("--thin2 or --root2 not specified");
        };
        let style = if a.verbose > 0 {
            Style::Verbose
        } else {
            Style::Simple
        };
        let opts = DeltaOptions {
            input: a.input,
            snapshot: a.snap.choice(),
            left,
            right,
        };
        finish(print(&opts, style), Verbosity::Normal)
    })
}

/// The command-line definition.
#[must_use]
pub fn cli() -> clap::Command {
    Args::command()
}

fn side(thin: Option<u64>, root: Option<u64>) -> Option<Side> {
    thin.map(Side::Thin).or(root.map(Side::Root))
}

fn print(opts: &DeltaOptions, style: Style) -> anyhow::Result<()> {
    let report = delta(opts)?;
    let mut out = stdout_writer();
    write_xml(
        &mut out,
        &report.sb,
        (opts.left, opts.right),
        &report,
        style,
    )?;
    out.flush()?;
    Ok(())
}
