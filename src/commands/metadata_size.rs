//! `thin_metadata_size`: the command line, on the engine in
//! [`crate::thin::engines::metadata_size`].

use std::ffi::OsString;
use std::io::Write;

use clap::{CommandFactory, Parser};

use crate::commands::exit::Outcome;
use crate::commands::run::{finish, run_with, usage_error};
use crate::progress::Verbosity;
use crate::thin::engines::metadata_size::{
    format_size, parse_size, parse_unit, Estimate, NumericOnly, SizeError, Unit, SECTOR,
};

fn numeric_arg(s: &str) -> Result<NumericOnly, String> {
    match s {
        "" | "plain" => Ok(NumericOnly::Plain),
        "short" => Ok(NumericOnly::Short),
        "long" => Ok(NumericOnly::Long),
        _ => Err("possible values: short, long".to_string()),
    }
}

fn size_arg(s: &str) -> Result<u64, SizeError> {
    parse_size(s)
}

fn unit_arg(s: &str) -> Result<Unit, SizeError> {
    parse_unit(s)
}

/// Estimate the size of the metadata device needed for a thin pool.
#[derive(Parser, Debug)]
#[command(
    name = "thin_metadata_size",
    version = crate::commands::VERSION,
    about = "Estimate the size of the metadata device needed for a thin pool"
)]
struct Args {
    /// Data block size (<digits>[unit], default unit sectors)
    #[arg(short = 'b', long = "block-size", value_name = "SIZE", value_parser = size_arg)]
    block_size: u64,
    /// Maximum number of thin devices and snapshots
    #[arg(short = 'm', long = "max-thins", value_name = "NUM")]
    max_thins: u64,
    /// Print only the number (=short adds the unit letter, =long the unit name)
    #[arg(
        short = 'n',
        long = "numeric-only",
        value_name = "short|long",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "plain",
        value_parser = numeric_arg
    )]
    numeric_only: Option<NumericOnly>,
    /// Pool size (<digits>[unit], default unit sectors)
    #[arg(short = 's', long = "pool-size", value_name = "SIZE", value_parser = size_arg)]
    pool_size: u64,
    /// Output unit (default sector)
    #[arg(short = 'u', long = "unit", value_name = "UNIT", value_parser = unit_arg)]
    unit: Option<Unit>,
}

/// Runs the tool on `args` (without argv\[0\]).
#[must_use]
pub fn run(args: &[OsString]) -> Outcome {
    run_with::<Args, _>("thin_metadata_size", args, |a| {
        let est = match Estimate::new(a.block_size, a.pool_size, a.max_thins) {
            Ok(e) => e,
            Err(e) => return usage_error(&e.to_string()),
        };
        let line = format_size(
            est.metadata_bytes(),
            a.unit.unwrap_or(SECTOR),
            a.numeric_only,
        );
        let mut out = std::io::stdout().lock();
        finish(
            writeln!(out, "{line}").and_then(|()| out.flush()),
            Verbosity::Normal,
        )
    })
}

/// The command-line definition.
#[must_use]
pub fn cli() -> clap::Command {
    Args::command()
}
