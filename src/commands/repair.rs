//! `thin_repair -i <FILE> -o <FILE> [OPTIONS] [IGNORED]`: the command line,
//! on the engine in [`crate::thin::engines::repair`].

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{CommandFactory, Parser};

use crate::commands::args::{SuperblockOverrides, Verbosity};
use crate::commands::exit::Outcome;
use crate::commands::run as cli;
use crate::pdata::io::{open_metadata, open_output, Access, Sharing};
use crate::progress;
use crate::progress::Log;
use crate::thin::engines::repair::{self, RepairOptions};

/// Repair thin-provisioning metadata and write it to another device or file.
#[derive(Parser, Debug)]
#[command(name = "thin_repair", disable_version_flag = true)]
struct Args {
    /// Damaged binary metadata to read.
    #[arg(short = 'i', long, value_name = "FILE")]
    input: PathBuf,
    /// Existing device or file to write the repaired metadata to.
    #[arg(short = 'o', long, value_name = "FILE")]
    output: PathBuf,
    #[command(flatten)]
    overrides: SuperblockOverrides,
    #[command(flatten)]
    verbosity: Verbosity,
    /// Ignored (old lvm2 passes an empty argument).
    #[arg(hide = true)]
    ignored: Option<OsString>,
}

/// Runs the tool on `args` (without argv[0]).
#[must_use]
pub fn run(args: &[OsString]) -> Outcome {
    cli::run_with::<Args, _>("thin_repair", args, |a| {
        let quiet = a.verbosity.quiet;
        cli::finish(repair_files(&a), progress::Verbosity::from_flags(quiet, 0))
    })
}

/// The command-line definition.
#[must_use]
pub fn cli() -> clap::Command {
    Args::command()
}

fn repair_files(a: &Args) -> anyhow::Result<()> {
    let input = open_metadata(&a.input, Access::ReadOnly, Sharing::Exclusive)?;
    let output = open_output(&a.output)?;
    let opts = RepairOptions {
        transaction_id: a.overrides.transaction_id,
        data_block_size: a.overrides.data_block_size,
        nr_data_blocks: a.overrides.nr_data_blocks,
        log: Log::stderr(a.verbosity.level()),
    };
    let pool = repair::plan(&input, &opts)?;
    let report = repair::write_repaired(&input, &pool, &output)?;
    for w in &report.writer_warnings {
        opts.log.warn(w);
    }
    opts.log.info(format!(
        "wrote {} devices, {} mappings",
        report.devices, report.mappings
    ));
    Ok(())
}
