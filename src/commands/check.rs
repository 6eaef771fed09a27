//! `thin_check`: the command line, on the engine in
//! [`crate::thin::engines::check`]. Conflicting options are rejected by clap
//! as usage errors; every flag may be repeated (each overrides itself).

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::PathBuf;

use clap::{ArgAction, CommandFactory, Parser};

use crate::commands::args::{self, MetadataSnap};
use crate::commands::exit::Outcome;
use crate::commands::run::{glue_optional_short, run_with};
use crate::pdata::io::open_metadata;
use crate::progress::Verbosity;
use crate::thin::engines::check::{
    check, open_mode, CheckOptions, Depth, Repair, Strictness, Summary,
};

/// The options of thin_check.
#[derive(Parser, Debug)]
#[command(
    name = "thin_check",
    about = "Validates thin provisioning metadata on a device or file.",
    disable_version_flag = true
)]
struct Args {
    /// Repair leaked blocks, then clear the needs_check flag
    #[arg(long, action = ArgAction::SetTrue, overrides_with = "auto_repair", conflicts_with_all = [
        "ignore_non_fatal_errors", "metadata_snap", "override_mapping_root",
        "override_details_root", "super_block_only", "skip_mappings"])]
    auto_repair: bool,

    /// Clear the needs_check flag when no fatal error is found (repairs leaks too)
    #[arg(long, action = ArgAction::SetTrue, overrides_with = "clear_needs_check_flag", conflicts_with_all = [
        "metadata_snap", "override_mapping_root", "override_details_root"])]
    clear_needs_check_flag: bool,

    /// Do not fail on non-fatal errors (leaks, underfull nodes)
    #[arg(long, action = ArgAction::SetTrue, overrides_with = "ignore_non_fatal_errors")]
    ignore_non_fatal_errors: bool,

    #[command(flatten)]
    snap: MetadataSnap,

    /// Use this device details tree root instead of the superblock's
    #[arg(long, value_name = "BLOCKNR")]
    override_details_root: Option<u64>,

    /// Use this top-level mapping tree root instead of the superblock's
    #[arg(long, value_name = "BLOCKNR")]
    override_mapping_root: Option<u64>,

    /// Check the superblock, top-level and details trees only
    #[arg(long, action = ArgAction::SetTrue, overrides_with = "skip_mappings")]
    skip_mappings: bool,

    /// Check the superblock only
    #[arg(long, action = ArgAction::SetTrue, overrides_with = "super_block_only")]
    super_block_only: bool,

    #[command(flatten)]
    verbosity: args::Verbosity,

    /// Metadata device or file
    #[arg(value_name = "INPUT")]
    input: PathBuf,
}

impl Args {
    fn options(&self) -> CheckOptions {
        let depth = if self.super_block_only {
            Depth::SuperblockOnly
        } else if self.skip_mappings {
            Depth::SkipMappings
        } else {
            Depth::Full
        };
        let repair = if self.auto_repair {
            Repair::AutoRepair
        } else if self.clear_needs_check_flag {
            Repair::ClearNeedsCheck
        } else {
            Repair::None
        };
        CheckOptions {
            depth,
            repair,
            strictness: if self.ignore_non_fatal_errors {
                Strictness::IgnoreNonFatal
            } else {
                Strictness::Strict
            },
            verbosity: self.verbosity.level(),
            snapshot: self.snap.is_set().then(|| self.snap.choice()),
            override_mapping_root: self.override_mapping_root,
            override_details_root: self.override_details_root,
            summary: Summary::Print,
        }
    }
}

/// Runs the tool on `args` (without argv\[0\]).
#[must_use]
pub fn run(args: &[OsString]) -> Outcome {
    let args = glue_optional_short(args, 'm');
    run_with::<Args, _>("thin_check", &args, |a| {
        let opts = a.options();
        let (access, sharing) = open_mode(&opts);
        let dev = match open_metadata(&a.input, access, sharing) {
            Ok(dev) => dev,
            Err(e) => {
                if opts.verbosity != Verbosity::Quiet {
                    let _ = writeln!(io::stderr().lock(), "{e}");
                }
                return Outcome::Failure;
            }
        };
        if check(&dev, &opts).failed() {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    })
}

/// The command-line definition.
#[must_use]
pub fn cli() -> clap::Command {
    Args::command()
}
