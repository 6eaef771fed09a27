//! `thin_repair -i <FILE> -o <FILE> [OPTIONS] [IGNORED]` (spec/tools.md).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgAction, Parser};

use crate::commands::exit::Outcome;
use crate::commands::run as cli;
use crate::pdata::io::{open_metadata, open_output, Access, Sharing};
use crate::thin::engines::repair::output::write_metadata;
use crate::thin::engines::repair::{repair_plan, RepairOptions, Verbosity};
use crate::thin::model::superblock::valid_data_block_size;

/// Repair thin-provisioning metadata and write it to another device or file.
#[derive(Parser, Debug)]
#[command(name = "thin_repair", disable_version_flag = true)]
pub struct Args {
    /// Provide the data block size (sectors) when the superblock is lost.
    #[arg(long, value_name = "SECTORS", value_parser = parse_data_block_size)]
    data_block_size: Option<u32>,
    /// Damaged binary metadata to read.
    #[arg(short = 'i', long, value_name = "FILE")]
    input: PathBuf,
    /// Size the data space map to at least this many blocks.
    #[arg(long, value_name = "NUM")]
    nr_data_blocks: Option<u64>,
    /// Existing device or file to write the repaired metadata to.
    #[arg(short = 'o', long, value_name = "FILE")]
    output: PathBuf,
    /// Print nothing on stderr.
    #[arg(short = 'q', long, action = ArgAction::SetTrue)]
    quiet: bool,
    /// Raise the transaction id to at least this.
    #[arg(long, value_name = "NUM")]
    transaction_id: Option<u64>,
    /// Print the candidate roots found.
    #[arg(short = 'v', long, action = ArgAction::Count)]
    verbose: u8,
    /// Ignored (old lvm2 passes an empty argument).
    #[arg(hide = true)]
    ignored: Option<OsString>,
}

/// Parses `--data-block-size`: 128..=2097152 sectors, a multiple of 128.
///
/// # Errors
/// `invalid data block size`.
pub fn parse_data_block_size(s: &str) -> Result<u32, String> {
    let v: u64 = s
        .strip_prefix('+')
        .unwrap_or(s)
        .parse()
        .map_err(|e: std::num::ParseIntError| e.to_string())?;
    if !valid_data_block_size(v) {
        return Err("invalid data block size".to_string());
    }
    u32::try_from(v).map_err(|e| e.to_string())
}

/// Entry point of `thin_repair`: parses `args` (without argv[0]) and runs the tool.
#[must_use]
pub fn command(args: &[OsString]) -> Outcome {
    cli::run_with::<Args, _>("thin_repair", args, |a| {
        let quiet = a.quiet;
        match run(a) {
            Ok(()) => Outcome::Success,
            Err(e) => cli::report_error(&e, quiet),
        }
    })
}

fn run(a: Args) -> anyhow::Result<()> {
    let verbosity = match (a.quiet, a.verbose) {
        (true, _) => Verbosity::Quiet,
        (false, 0) => Verbosity::Normal,
        _ => Verbosity::Verbose,
    };
    let input = open_metadata(&a.input, Access::ReadOnly, Sharing::Exclusive)?;
    let output = open_output(&a.output)?;
    let mut opts = RepairOptions::new(verbosity);
    opts.transaction_id = a.transaction_id;
    opts.data_block_size = a.data_block_size;
    opts.nr_data_blocks = a.nr_data_blocks;
    let pool = repair_plan(&input, &opts)?;
    for w in write_metadata(&input, &pool, &output)? {
        opts.log.warn(&w);
    }
    opts.log.info(&format!(
        "wrote {} devices, {} mappings",
        pool.devices.len(),
        pool.devices
            .iter()
            .map(|d| d.info.mapped_blocks)
            .sum::<u64>()
    ));
    Ok(())
}
