//! thin_restore: XML (formats.md §2) in, fresh binary metadata out.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use clap::Parser;

use crate::commands::exit::Outcome;
use crate::commands::run as cli;
use crate::pdata::io::open_output;
use crate::thin::ir::channel::run_pipelined;
use crate::thin::ir::metadata_writer::{Overrides, ThinWriter};
use crate::thin::ir::xml::read::read_xml;
use crate::thin::model::superblock::valid_data_block_size;

/// Restore thin-provisioning metadata from an XML dump.
#[derive(Parser, Debug)]
#[command(name = "thin_restore", version, disable_version_flag = true)]
pub struct RestoreArgs {
    /// Sectors per data block (replaces the dump's value)
    #[arg(long = "data-block-size", value_name = "SECTORS")]
    pub data_block_size: Option<u32>,
    /// XML dump to read (a file, FIFO or /proc/<pid>/fd/<n>)
    #[arg(short = 'i', long = "input", value_name = "FILE", required = true)]
    pub input: PathBuf,
    /// Data space map size (at least the dump's value)
    #[arg(long = "nr-data-blocks", value_name = "NUM")]
    pub nr_data_blocks: Option<u64>,
    /// Metadata device or file to write (must exist, at least 40960 bytes)
    #[arg(short = 'o', long = "output", value_name = "FILE", required = true)]
    pub output: PathBuf,
    /// Print nothing on stderr
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Transaction id (at least the dump's value)
    #[arg(long = "transaction-id", value_name = "NUM")]
    pub transaction_id: Option<u64>,
    /// More information on stderr
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Opens the XML input: regular files, block devices, FIFOs and pipes are
/// accepted; directories and sockets are not (tools.md §2.4).
///
/// # Errors
/// Worded as the tools print them.
pub fn open_xml_input(path: &Path) -> Result<File> {
    let shown = path.display();
    let md = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(anyhow!("Couldn't find input file '{shown}'"));
        }
        Err(e) => return Err(anyhow!("Invalid input file: {e}")),
    };
    let ft = md.file_type();
    if ft.is_dir() || ft.is_socket() {
        return Err(anyhow!("Not a block device or regular file '{shown}'."));
    }
    File::open(path).map_err(|e| anyhow!("{shown}: {e}"))
}

/// Validates a `--data-block-size` value (usage error otherwise).
///
/// # Errors
/// The usage outcome, already reported.
pub fn check_block_size_override(v: Option<u32>) -> Result<(), Outcome> {
    match v {
        Some(s) if !valid_data_block_size(u64::from(s)) => {
            Err(cli::usage_error("invalid data block size"))
        }
        _ => Ok(()),
    }
}

/// Runs a restore with parsed arguments.
///
/// # Errors
/// Any runtime failure, worded for the user.
pub fn restore(args: &RestoreArgs) -> Result<()> {
    let input = open_xml_input(&args.input)?;
    let out = open_output(&args.output)?;
    let overrides = Overrides {
        transaction_id: args.transaction_id,
        data_block_size: args.data_block_size,
        nr_data_blocks: args.nr_data_blocks,
    };
    let mut writer = ThinWriter::new(&out, overrides);
    let res = run_pipelined(|v| read_xml(input, v), &mut writer);
    if !args.quiet {
        for w in writer.take_warnings() {
            eprintln!("{w}");
        }
    }
    res?;
    if args.verbose > 0 && !args.quiet {
        if let Some(s) = writer.summary() {
            eprintln!(
                "restored {} devices, {} mappings; {} metadata blocks in use",
                s.nr_devices, s.nr_mappings, s.metadata_blocks_used
            );
        }
    }
    Ok(())
}

/// Entry point of `thin_restore`: parses `args` (without argv[0]) and runs the tool.
#[must_use]
pub fn command(args: &[OsString]) -> Outcome {
    cli::run_with::<RestoreArgs, _>("thin_restore", args, |a| {
        if let Err(o) = check_block_size_override(a.data_block_size) {
            return o;
        }
        match restore(&a) {
            Ok(()) => Outcome::Success,
            Err(e) => cli::report_error(&e, a.quiet),
        }
    })
}
