//! `thin_merge`: merge a thin snapshot back into its external origin (see
//! man/thin_merge.8). Arguments and messages only; the work is in
//! `thin::engines::merge`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgAction, CommandFactory, Parser};

use crate::commands::exit::Outcome;
use crate::commands::migrate::parse_size;
use crate::commands::run::{report_error, run_with, usage_error};
use crate::pdata::sys;
use crate::progress::Verbosity;
use crate::thin::engines::merge::{merge, MergeRequest, MergeSource};

/// Merge a thin back into its external origin, so the origin reads as the thin.
#[derive(Parser, Debug)]
#[command(name = "thin_merge", disable_version_flag = true)]
struct Args {
    /// The origin already holds thin ID merged: write only what differs from it
    #[arg(long = "base-id", value_name = "ID")]
    base_id: Option<u64>,
    /// Total size of the copy buffers, in megabytes
    #[arg(long = "buffer-size-meg", value_name = "MB", default_value_t = 64)]
    buffer_size_meg: u64,
    /// The pool's data device or image (the pool must be inactive)
    #[arg(long = "data-dev", value_name = "DEVICE")]
    data_dev: Option<PathBuf>,
    /// Print the blocks and bytes that would be written, write nothing
    #[arg(long = "dry-run", action = ArgAction::SetTrue)]
    dry_run: bool,
    /// Grow a regular-file origin that is smaller than the thin
    #[arg(long = "grow", action = ArgAction::SetTrue)]
    grow: bool,
    /// The pool's metadata device or image (the pool must be inactive)
    #[arg(long = "metadata-dev", value_name = "DEVICE", requires = "data_dev", conflicts_with_all = ["pool", "source_dev"])]
    metadata_dev: Option<PathBuf>,
    /// The thin's external origin, which receives the merge
    #[arg(long = "origin", value_name = "DEVICE")]
    origin: Option<PathBuf>,
    /// A live pool holding the thin (read through a metadata snapshot)
    #[arg(long = "pool", value_name = "DEVICE", conflicts_with = "source_dev")]
    pool: Option<PathBuf>,
    /// Suppress output messages, return only exit code
    #[arg(short = 'q', long = "quiet", action = ArgAction::SetTrue)]
    quiet: bool,
    /// The thin's size (bytes, or with a k/m/g/t or s(ectors) suffix)
    #[arg(long = "size", value_name = "SIZE", value_parser = parse_size)]
    size: Option<u64>,
    /// A live thin device (refused while it is active: it holds its origin)
    #[arg(long = "source-dev", value_name = "DEVICE")]
    source_dev: Option<PathBuf>,
    /// The id of the thin to merge
    #[arg(long = "thin-id", value_name = "ID")]
    thin_id: Option<u64>,
}

/// The command-line definition.
#[must_use]
pub fn cli() -> clap::Command {
    Args::command()
}

/// Runs `thin_merge` on `args` (without argv[0]).
#[must_use]
pub fn run(args: &[OsString]) -> Outcome {
    run_with::<Args, _>("thin_merge", args, |a| {
        let source = match (&a.metadata_dev, &a.data_dev, &a.pool, &a.source_dev) {
            (Some(m), Some(d), _, _) => MergeSource::Offline {
                metadata: m.clone(),
                data: d.clone(),
            },
            (_, _, Some(p), _) => MergeSource::Pool(p.clone()),
            (_, _, _, Some(t)) => MergeSource::Thin(t.clone()),
            _ => return usage_error(
                "You must specify a source: --metadata-dev and --data-dev, --pool, or --source-dev",
            ),
        };
        let thin = match (a.thin_id, &source) {
            (Some(t), _) => t,
            (None, MergeSource::Thin(_)) => 0,
            (None, _) => return usage_error("--thin-id is required"),
        };
        let Some(origin) = a.origin.clone() else {
            return usage_error("--origin is required");
        };
        if a.buffer_size_meg == 0 || a.buffer_size_meg > 64 * 1024 {
            return usage_error("--buffer-size-meg must be between 1 and 65536");
        }
        let req = MergeRequest {
            source,
            thin,
            origin,
            base: a.base_id,
            size: a.size,
            grow: a.grow,
            dry_run: a.dry_run,
            buffer_bytes: usize::try_from(a.buffer_size_meg << 20).unwrap_or(usize::MAX),
            progress: !a.quiet,
        };
        let _ = sys::catch_signals(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE]);
        let mut note = |m: String| {
            if !a.quiet {
                eprintln!("{m}");
            }
        };
        let outcome = match merge(&req, &sys::pending_signal, &mut note) {
            Ok(r) => {
                if a.dry_run {
                    // The product of a dry run: on stdout, even with -q.
                    println!(
                        "would write {} blocks ({} bytes) to {}",
                        r.blocks,
                        r.bytes,
                        req.origin.display()
                    );
                } else if !a.quiet {
                    eprintln!(
                        "merged {} blocks ({} bytes) of thin {} into {}",
                        r.blocks,
                        r.bytes,
                        thin,
                        req.origin.display()
                    );
                }
                Outcome::Success
            }
            Err(e) => report_error(&anyhow::Error::new(e), Verbosity::from_flags(a.quiet, 0)),
        };
        if let Some(sig) = sys::pending_signal() {
            sys::reraise(sig);
        }
        outcome
    })
}
