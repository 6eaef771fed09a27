//! `thin_migrate`: copy a thin volume to another device or a file (see
//! man/thin_migrate.8). Arguments and messages only; the work is in
//! `thin::engines::migrate`.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::anyhow;
use clap::{ArgAction, CommandFactory, Parser};

use crate::commands::exit::Outcome;
use crate::commands::run::{report_error, run_with, usage_error};
use crate::pdata::sys;
use crate::progress::Verbosity;
use crate::thin::engines::migrate::{self, CopyRequest, DestSpec, OfflineSource, Report};

/// Copy a thin volume to another device or file, whole or incrementally.
#[derive(Parser, Debug)]
#[command(name = "thin_migrate", disable_version_flag = true)]
struct Args {
    /// Total size of the copy buffers, in megabytes
    #[arg(long = "buffer-size-meg", value_name = "MB", default_value_t = 64)]
    buffer_size_meg: u64,
    /// Offline: the pool's data device or image
    #[arg(long = "data-dev", value_name = "DEVICE", requires = "metadata_dev")]
    data_dev: Option<PathBuf>,
    /// The destination already holds thin ID: write only the difference
    #[arg(long = "delta-id", value_name = "ID")]
    delta_id: Option<u64>,
    /// Destination block device (at least the source's size)
    #[arg(long = "dest-dev", value_name = "DEVICE", conflicts_with = "dest_file")]
    dest_dev: Option<PathBuf>,
    /// Destination file (created, or resized to the source's size)
    #[arg(long = "dest-file", value_name = "FILE")]
    dest_file: Option<PathBuf>,
    /// Copy a writable active source anyway (the copy may be inconsistent)
    #[arg(long = "force", action = ArgAction::SetTrue)]
    force: bool,
    /// Offline: the pool's metadata device or image
    #[arg(
        long = "metadata-dev",
        value_name = "DEVICE",
        requires_all = ["data_dev", "thin_id"],
        conflicts_with = "source_dev"
    )]
    metadata_dev: Option<PathBuf>,
    /// Offline: the external origin of the thin, if it has one
    #[arg(long = "origin", value_name = "FILE", requires = "metadata_dev")]
    origin: Option<PathBuf>,
    /// Suppress output messages, return only exit code
    #[arg(short = 'q', long = "quiet", action = ArgAction::SetTrue)]
    quiet: bool,
    /// Offline: volume size (bytes, or with a k/m/g/t or s(ectors) suffix)
    #[arg(long = "size", value_name = "SIZE", value_parser = parse_size, requires = "metadata_dev")]
    size: Option<u64>,
    /// The thin device to copy (a live thin, active read-only)
    #[arg(long = "source-dev", value_name = "DEVICE")]
    source_dev: Option<PathBuf>,
    /// Offline: the id of the thin to copy
    #[arg(long = "thin-id", value_name = "ID", requires = "metadata_dev")]
    thin_id: Option<u64>,
    /// Zero everything the copy does not write (a destination that is not fresh)
    #[arg(long = "zero-dest", action = ArgAction::SetTrue, conflicts_with = "delta_id")]
    zero_dest: bool,
}

/// Parses a size: a number of bytes, or with a binary unit suffix.
///
/// # Errors
/// A malformed number or unknown unit.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_lowercase() {
                's' => 512,
                'k' => 1 << 10,
                'm' => 1 << 20,
                'g' => 1 << 30,
                't' => 1 << 40,
                _ => return Err(format!("unknown size unit '{c}'")),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("invalid size '{s}'"))
}

/// The command-line definition.
#[must_use]
pub fn cli() -> clap::Command {
    Args::command()
}

/// Runs `thin_migrate` on `args` (without argv[0]).
#[must_use]
pub fn run(args: &[OsString]) -> Outcome {
    run_with::<Args, _>("thin_migrate", args, |a| {
        if a.source_dev.is_none() && a.metadata_dev.is_none() {
            return usage_error("You must specify a source");
        }
        let dest = match (&a.dest_dev, &a.dest_file) {
            (Some(d), _) => DestSpec::Device(d.clone()),
            (None, Some(f)) => DestSpec::File(f.clone()),
            (None, None) => return usage_error("You must specify a dest"),
        };
        if a.buffer_size_meg == 0 || a.buffer_size_meg > 64 * 1024 {
            return usage_error("--buffer-size-meg must be between 1 and 65536");
        }
        let req = CopyRequest {
            dest,
            delta_id: a.delta_id,
            zero_dest: a.zero_dest,
            buffer_bytes: usize::try_from(a.buffer_size_meg << 20).unwrap_or(usize::MAX),
            progress: !a.quiet,
        };
        let _ = sys::catch_signals(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE]);
        let result = migrate(&a, &req);
        let outcome = match result {
            Ok(report) => {
                if !a.quiet {
                    print_report(&report);
                }
                Outcome::Success
            }
            Err(e) => report_error(&e, Verbosity::from_flags(a.quiet, 0)),
        };
        if let Some(sig) = sys::pending_signal() {
            sys::reraise(sig);
        }
        outcome
    })
}

fn migrate(a: &Args, req: &CopyRequest) -> anyhow::Result<Report> {
    let stop = sys::pending_signal;
    if let Some(meta) = &a.metadata_dev {
        let (Some(data), Some(thin)) = (&a.data_dev, a.thin_id) else {
            return Err(anyhow!("--metadata-dev needs --data-dev and --thin-id"));
        };
        let src = OfflineSource {
            metadata: meta.clone(),
            data: data.clone(),
            thin,
            origin: a.origin.clone(),
            size: a.size,
        };
        return Ok(migrate::migrate_offline(&src, req, &stop)?);
    }
    let Some(source) = &a.source_dev else {
        return Err(anyhow!("You must specify a source"));
    };
    live(source, a.force, a.quiet, req, &stop)
}

fn print_report(r: &Report) {
    let s = &r.stats;
    eprintln!(
        "copied {} bytes of a {}-byte volume: {} read, {} written, {} zeroed, {} zero bytes skipped",
        r.planned_bytes, r.size_bytes, s.bytes_read, s.bytes_written, s.bytes_zeroed, s.bytes_skipped
    );
}

fn live(
    source: &std::path::Path,
    force: bool,
    quiet: bool,
    req: &CopyRequest,
    stop: &(dyn Fn() -> Option<i32> + Sync),
) -> anyhow::Result<Report> {
    let mut note = |m: String| {
        if !quiet {
            eprintln!("{m}");
        }
    };
    Ok(migrate::migrate_live(source, force, req, stop, &mut note)?)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("12m"), Ok(12 << 20));
        assert_eq!(parse_size("8s"), Ok(4096));
        assert!(parse_size("1x").is_err());
        assert!(parse_size("99999999999999t").is_err());
    }
}
