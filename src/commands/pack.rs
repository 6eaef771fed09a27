//! `thin_metadata_pack` and `thin_metadata_unpack`: the command lines, on the
//! engine in [`crate::thin::engines::pack`].

use std::ffi::OsString;
use std::io::{self, BufRead, Write};
use std::path::PathBuf;

use clap::{ArgAction, CommandFactory, Parser};

use crate::commands::exit::Outcome;
use crate::commands::run::{finish, report_error, run_with};
use crate::progress::{Display, Progress, Verbosity};
use crate::thin::engines::pack::{pack, unpack, Overwrite, PackOptions, UnpackOptions};

/// Produce a compressed file of thin metadata.
#[derive(Parser, Debug)]
#[command(
    name = "thin_metadata_pack",
    version = crate::commands::VERSION,
    about = "Produce a compressed file of thin metadata"
)]
struct PackArgs {
    /// Overwrite the output without asking, even if it holds metadata
    #[arg(short = 'f', long = "force", action = ArgAction::Count)]
    force: u8,
    /// Metadata device or file to pack
    #[arg(short = 'i', long = "input", value_name = "DEV")]
    input: PathBuf,
    /// Pack file to write
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
}

/// Unpack a compressed file of thin metadata.
#[derive(Parser, Debug)]
#[command(
    name = "thin_metadata_unpack",
    version = crate::commands::VERSION,
    about = "Unpack a compressed file of thin metadata"
)]
struct UnpackArgs {
    /// Overwrite the output without asking, even if it holds metadata
    #[arg(short = 'f', long = "force", action = ArgAction::Count)]
    force: u8,
    /// Pack file to read
    #[arg(short = 'i', long = "input", value_name = "FILE")]
    input: PathBuf,
    /// Metadata device or file to write
    #[arg(short = 'o', long = "output", value_name = "DEV")]
    output: PathBuf,
}

/// `-f` overwrites; otherwise the user is asked.
fn overwrite(force: u8) -> Overwrite {
    if force > 0 {
        Overwrite::Force
    } else {
        Overwrite::Ask(confirm_overwrite)
    }
}

/// Asks on stderr, reads one line from stdin: `y`/`yes` (any case) accepts;
/// an unreadable stdin declines.
fn confirm_overwrite() -> io::Result<bool> {
    {
        let mut e = io::stderr().lock();
        write!(
            e,
            "The destination appears to already contain metadata, are you sure? [y/n]: "
        )?;
        e.flush()?;
    }
    let mut line = String::new();
    if io::stdin().lock().read_line(&mut line).is_err() {
        return Ok(false);
    }
    let answer = line.trim().to_ascii_lowercase();
    Ok(answer == "y" || answer == "yes")
}

/// Runs `thin_metadata_pack` on `args` (without argv\[0\]).
#[must_use]
pub fn run_pack(args: &[OsString]) -> Outcome {
    run_with::<PackArgs, _>("thin_metadata_pack", args, |a| {
        let opts = PackOptions {
            input: a.input,
            output: a.output,
            overwrite: overwrite(a.force),
        };
        match pack(&opts, &Progress::new(Display::Shown)) {
            Ok(_) => Outcome::Success,
            Err(e) => report_error(&anyhow::Error::from(e), Verbosity::Normal),
        }
    })
}

/// Runs `thin_metadata_unpack` on `args` (without argv\[0\]).
#[must_use]
pub fn run_unpack(args: &[OsString]) -> Outcome {
    run_with::<UnpackArgs, _>("thin_metadata_unpack", args, |a| {
        let opts = UnpackOptions {
            input: a.input,
            output: a.output,
            overwrite: overwrite(a.force),
        };
        finish(
            unpack(&opts, &Progress::new(Display::Shown)),
            Verbosity::Normal,
        )
    })
}

/// The command-line definition of `thin_metadata_pack`.
#[must_use]
pub fn cli_pack() -> clap::Command {
    PackArgs::command()
}

/// The command-line definition of `thin_metadata_unpack`.
#[must_use]
pub fn cli_unpack() -> clap::Command {
    UnpackArgs::command()
}
