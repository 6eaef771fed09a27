//! The thin_check command line (spec/tools.md §3) and its translation into
//! [`CheckOptions`]. Conflicting options are rejected by clap as usage errors.

use std::path::PathBuf;

use clap::{ArgAction, Parser};

use crate::thin::engines::check::{CheckOptions, Depth, Repair, Strictness, Summary, Verbosity};
use crate::thin::model::open::SnapshotChoice;

/// Flags may be repeated (tools.md §2.1): each overrides itself.
#[derive(Parser, Debug)]
#[command(
    name = "thin_check",
    about = "Validates thin provisioning metadata on a device or file.",
    disable_version_flag = true
)]
pub struct Args {
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

    /// Check the metadata snapshot (at BLOCKNR, or the held one) instead of the live trees
    #[arg(
        short = 'm',
        long = "metadata-snap",
        value_name = "BLOCKNR",
        num_args = 0..=1,
        require_equals = true
    )]
    metadata_snap: Option<Option<u64>>,

    /// Use this device details tree root instead of the superblock's
    #[arg(long, value_name = "BLOCKNR")]
    override_details_root: Option<u64>,

    /// Use this top-level mapping tree root instead of the superblock's
    #[arg(long, value_name = "BLOCKNR")]
    override_mapping_root: Option<u64>,

    /// Print nothing; only the exit status tells the result
    #[arg(short, long, action = ArgAction::SetTrue, overrides_with = "quiet")]
    quiet: bool,

    /// Check the superblock, top-level and details trees only
    #[arg(long, action = ArgAction::SetTrue, overrides_with = "skip_mappings")]
    skip_mappings: bool,

    /// Check the superblock only
    #[arg(long, action = ArgAction::SetTrue, overrides_with = "super_block_only")]
    super_block_only: bool,

    /// More detail (repeat for debug output)
    #[arg(short = 'v', action = ArgAction::Count)]
    verbose: u8,

    /// Metadata device or file
    #[arg(value_name = "INPUT")]
    input: PathBuf,
}

impl Args {
    /// The options a run needs.
    #[must_use]
    pub fn into_options(self) -> CheckOptions {
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
        let verbosity = match (self.quiet, self.verbose) {
            (true, _) => Verbosity::Quiet,
            (_, 0) => Verbosity::Normal,
            (_, 1) => Verbosity::Info,
            _ => Verbosity::Debug,
        };
        CheckOptions {
            input: self.input,
            depth,
            repair,
            strictness: if self.ignore_non_fatal_errors {
                Strictness::IgnoreNonFatal
            } else {
                Strictness::Strict
            },
            verbosity,
            snapshot: self.metadata_snap.map(|v| match v {
                Some(n) => SnapshotChoice::At(n),
                None => SnapshotChoice::Held,
            }),
            override_mapping_root: self.override_mapping_root,
            override_details_root: self.override_details_root,
            summary: Summary::Print,
        }
    }
}
