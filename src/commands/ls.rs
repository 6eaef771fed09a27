//! `thin_ls`: the command line, on the engine in [`crate::thin::engines::ls`].

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use clap::{ArgAction, CommandFactory, Parser};

use crate::commands::args::MetadataSnap;
use crate::commands::exit::Outcome;
use crate::commands::run::{finish, glue_optional_short, run_with, stdout_writer, usage_error};
use crate::progress::Verbosity;
use crate::thin::engines::ls::{ls, Field, LsOptions};

/// List thin devices with their mapping counts.
#[derive(Parser, Debug)]
#[command(name = "thin_ls", disable_version_flag = true)]
struct Args {
    /// Comma-separated list of fields to print
    #[arg(short = 'o', long = "format", value_name = "FIELDS")]
    format: Option<String>,
    /// Do not print the header row
    #[arg(long = "no-headers", action = ArgAction::Count)]
    no_headers: u8,
    #[command(flatten)]
    snap: MetadataSnap,
    /// More messages on stderr (repeatable)
    #[arg(short = 'v', action = ArgAction::Count)]
    verbose: u8,
    /// Metadata device or file
    #[arg(value_name = "INPUT")]
    input: PathBuf,
}

const DEFAULT_FIELDS: &str = "DEV,MAPPED,CREATE_TIME,SNAP_TIME";

/// Runs the tool on `args` (without argv\[0\]).
#[must_use]
pub fn run(args: &[OsString]) -> Outcome {
    let args = glue_optional_short(args, 'm');
    run_with::<Args, _>("thin_ls", &args, |a| {
        let fields = match Field::parse_list(a.format.as_deref().unwrap_or(DEFAULT_FIELDS)) {
            Ok(f) => f,
            Err(bad) => {
                return usage_error(&format!(
                    "invalid value '{bad}' for '--format <FIELDS>': Unknown field"
                ))
            }
        };
        let opts = LsOptions {
            input: a.input,
            snapshot: a.snap.choice(),
            fields,
            headers: a.no_headers == 0,
        };
        finish(print(&opts), Verbosity::Normal)
    })
}

/// The command-line definition.
#[must_use]
pub fn cli() -> clap::Command {
    Args::command()
}

fn print(opts: &LsOptions) -> anyhow::Result<()> {
    let table = ls(opts)?;
    let mut out = stdout_writer();
    table.render(&mut out)?;
    out.flush()?;
    Ok(())
}
