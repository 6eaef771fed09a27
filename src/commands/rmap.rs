//! `thin_rmap`: the command line, on the engine in
//! [`crate::thin::engines::rmap`].

use std::ffi::OsString;
use std::io::Write;
use std::ops::Range;
use std::path::PathBuf;

use clap::{ArgAction, CommandFactory, Parser};

use crate::commands::exit::Outcome;
use crate::commands::run::{finish, run_with, stdout_writer};
use crate::progress::Verbosity;
use crate::thin::engines::rmap::{rmap_input, RmapOptions};

/// Print the thin blocks that map to given data blocks.
#[derive(Parser, Debug)]
#[command(name = "thin_rmap", disable_version_flag = true)]
struct Args {
    /// Data blocks BEGIN..END (END exclusive); repeatable
    #[arg(
        long = "region",
        value_name = "BLOCK_RANGE",
        required = true,
        action = ArgAction::Append,
        value_parser = parse_region
    )]
    region: Vec<Range<u64>>,
    /// Metadata device or file
    #[arg(value_name = "INPUT")]
    input: PathBuf,
}

/// Parses `BEGIN..END` (decimal, END exclusive, END > BEGIN).
///
/// # Errors
/// `badly formed region`, `end <= begin`, or the integer parse error.
pub fn parse_region(s: &str) -> Result<Range<u64>, String> {
    let parts: Vec<&str> = s.split("..").collect();
    let [b, e] = parts[..] else {
        return Err("badly formed region".to_string());
    };
    let begin: u64 = b
        .parse()
        .map_err(|e: std::num::ParseIntError| e.to_string())?;
    let end: u64 = e
        .parse()
        .map_err(|e: std::num::ParseIntError| e.to_string())?;
    if end <= begin {
        return Err("end <= begin".to_string());
    }
    Ok(begin..end)
}

/// Runs the tool on `args` (without argv\[0\]).
#[must_use]
pub fn run(args: &[OsString]) -> Outcome {
    run_with::<Args, _>("thin_rmap", args, |a| {
        let opts = RmapOptions {
            input: a.input,
            regions: a.region,
        };
        finish(print(&opts), Verbosity::Normal)
    })
}

/// The command-line definition.
#[must_use]
pub fn cli() -> clap::Command {
    Args::command()
}

fn print(opts: &RmapOptions) -> anyhow::Result<()> {
    let lines = rmap_input(opts)?;
    let mut out = stdout_writer();
    for l in &lines {
        writeln!(
            out,
            "data {}..{} -> thin({}) {}..{}",
            l.data_begin,
            l.data_end,
            l.dev,
            l.thin_begin,
            l.thin_begin + (l.data_end - l.data_begin)
        )?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_validation_messages() {
        assert_eq!(parse_region("0..10"), Ok(0..10));
        assert_eq!(parse_region("+3..5"), Ok(3..5));
        assert_eq!(parse_region("5"), Err("badly formed region".into()));
        assert_eq!(parse_region("1..2..3"), Err("badly formed region".into()));
        assert_eq!(parse_region("5..5"), Err("end <= begin".into()));
        assert_eq!(parse_region("6..5"), Err("end <= begin".into()));
        assert_eq!(
            parse_region("a..5"),
            Err("invalid digit found in string".into())
        );
        assert_eq!(
            parse_region("..5"),
            Err("cannot parse integer from empty string".into())
        );
    }
}
