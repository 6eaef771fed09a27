//! thin_repair and the repair engine shared with `thin_dump --repair`
//! (repair.md): scan every block (`scan`), classify nodes into trees
//! (`classify`, `tree`), choose roots and superblock values (`roots`), then
//! emit what can be read as IR events (`emit`) into the restore writer or an
//! XML writer.

pub mod classify;
pub mod dump;
pub mod emit;
pub mod roots;
pub mod scan;
pub mod tree;

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

use crate::cli;
use crate::exit::Outcome;
use crate::pdata::block::BlockNr;
use crate::pdata::io::{open_metadata, open_output, Access, BlockDevice, Sharing};
use crate::thin::emit::DeviceLeaves;
use crate::thin::ir::{MetadataVisitor, RunList};
use crate::thin::restore::check_block_size_override;
use crate::thin::shared_runs::SharingPlan;
use crate::thin::superblock::read_superblock;
use crate::thin::writer::{Overrides, ThinWriter};

pub use emit::{Pool, Salvage};
pub use roots::Chosen;

/// What a repair found and did.
#[derive(Clone, Debug)]
pub struct RepairReport {
    /// Roots and superblock values used.
    pub chosen: Chosen,
    /// Devices and their leaves.
    pub pool: Pool,
    /// What was recovered.
    pub salvage: Salvage,
    /// Warnings for stderr (not with `-q`).
    pub warnings: Vec<String>,
    /// Information lines for `-v`.
    pub info: Vec<String>,
}

fn describe_candidates(
    tops: &[roots::Candidate],
    details: &[roots::Candidate],
    info: &mut Vec<String>,
) {
    info.push(format!("mapping candidates ({}):", tops.len()));
    for t in tops {
        let times: Vec<String> = t.times.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        info.push(format!(
            "b={}, nr_devices={}, nr_mappings={}, highest_mapped={}, age={}, time_counts={{{}}}",
            t.root,
            t.class.entries,
            t.class.mappings,
            t.class.max_data,
            t.class.age,
            times.join(", ")
        ));
    }
    info.push(format!("device candidates ({}):", details.len()));
    for d in details {
        info.push(format!(
            "b={}, nr_devices={}, nr_mappings={}, max_tid={}, age={}",
            d.root, d.class.entries, d.class.sum_mapped, d.class.max_tid, d.class.age
        ));
    }
    let pairs = roots::pairs(tops, details);
    info.push(format!("compatible roots ({}):", pairs.len()));
    for (i, j) in pairs {
        info.push(format!("({}, {})", tops[i].root, details[j].root));
    }
}

/// Finds the pool in `dev`: roots, superblock values, and per device the
/// leaves that can be read. Reads `dev` only.
///
/// # Errors
/// `no compatible roots found`, or a missing or invalid data block size.
pub fn find_pool(dev: &dyn BlockDevice, overrides: &Overrides) -> Result<RepairReport> {
    let reference = read_superblock(dev, 0).ok().map(|(sb, _)| sb);
    let scanned = scan::scan(dev);
    let cl = classify::Classified::new(&scanned);
    let (tops, details) = roots::candidates(&cl);
    let mut info = Vec::new();
    describe_candidates(&tops, &details, &mut info);
    let mut warnings = Vec::new();
    let chosen = roots::choose(
        &cl,
        reference.as_ref(),
        overrides,
        &tops,
        &details,
        &mut warnings,
    )?;
    if let (Some(r), false) = (&reference, chosen.from_superblock) {
        warnings.push(format!(
            "superblock roots ({}, {}) unusable: using ({}, {}), transaction {}, time {} (superblock: transaction {}, time {})",
            r.mapping_root,
            r.details_root,
            chosen.top.unwrap_or(0),
            chosen.details.unwrap_or(0),
            chosen.sb.transaction,
            chosen.sb.time,
            r.trans_id,
            r.time
        ));
    }
    let (pool, salvage) = emit::pool(&cl, &chosen, &mut warnings);
    if salvage.lost_subtrees > 0 || (salvage.regenerated > 0 && chosen.details.is_some()) {
        warnings.push(format!(
            "salvaged {} devices, {} mappings; lost {} subtrees",
            salvage.devices, salvage.mappings, salvage.lost_subtrees
        ));
    }
    Ok(RepairReport {
        chosen,
        pool,
        salvage,
        warnings,
        info,
    })
}

/// The def/ref plan of a repaired pool (plain leaves if the lists are not
/// consistent enough to plan).
#[must_use]
pub fn sharing_plan(pool: &Pool) -> SharingPlan {
    let refs: Vec<&[BlockNr]> = pool.leaves.iter().map(Vec::as_slice).collect();
    SharingPlan::build(&refs).unwrap_or_else(|_| SharingPlan::expanded(&refs))
}

/// Finds the pool in `dev` and emits it into `sink` (superblock first, then
/// defs, devices, end). Nothing reaches `sink` before roots are found.
///
/// # Errors
/// As [`find_pool`], plus input re-read and sink failures.
pub fn repair_to<S: MetadataVisitor + Send>(
    dev: &dyn BlockDevice,
    overrides: &Overrides,
    sink: S,
) -> Result<(RepairReport, S)> {
    let report = find_pool(dev, overrides)?;
    let plan = sharing_plan(&report.pool);
    let mut sink = RunList(sink);
    crate::thin::emit::emit(
        &report.chosen.sb,
        &report.pool.devices,
        &plan,
        &DeviceLeaves::new(dev),
        &mut sink,
    )?;
    Ok((report, sink.0))
}

/// Repair damaged thin-provisioning metadata into a fresh metadata device.
#[derive(Parser, Debug)]
#[command(name = "thin_repair", version, disable_version_flag = true)]
pub struct RepairArgs {
    /// Sectors per data block (needed when the superblock is lost)
    #[arg(long = "data-block-size", value_name = "SECTORS")]
    pub data_block_size: Option<u32>,
    /// Damaged metadata device or file to read
    #[arg(short = 'i', long = "input", value_name = "FILE", required = true)]
    pub input: PathBuf,
    /// Data space map size (at least the value found)
    #[arg(long = "nr-data-blocks", value_name = "NUM")]
    pub nr_data_blocks: Option<u64>,
    /// Metadata device or file to write (must exist, at least 40960 bytes)
    #[arg(short = 'o', long = "output", value_name = "FILE", required = true)]
    pub output: PathBuf,
    /// Print nothing on stderr
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Transaction id (at least the value found)
    #[arg(long = "transaction-id", value_name = "NUM")]
    pub transaction_id: Option<u64>,
    /// More information on stderr
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Ignored (old lvm2 passes an empty argument)
    #[arg(hide = true)]
    pub ignored: Option<OsString>,
}

/// Runs thin_repair with parsed arguments.
///
/// # Errors
/// Any runtime failure, worded for the user.
pub fn repair(args: &RepairArgs) -> Result<()> {
    let input = open_metadata(&args.input, Access::ReadOnly, Sharing::Exclusive)?;
    let out = open_output(&args.output)?;
    let overrides = Overrides {
        transaction_id: args.transaction_id,
        data_block_size: args.data_block_size,
        nr_data_blocks: args.nr_data_blocks,
    };
    let writer = ThinWriter::new(&out, Overrides::default());
    let (report, mut writer) = repair_to(&input, &overrides, writer)?;
    let loud = !args.quiet;
    if loud {
        if args.verbose > 0 {
            for l in &report.info {
                eprintln!("{l}");
            }
        }
        for w in &report.warnings {
            eprintln!("{w}");
        }
    }
    if loud {
        for w in writer.take_warnings() {
            if !w.contains("mapped_blocks is") {
                eprintln!("{w}");
            }
        }
    }
    Ok(())
}

/// Entry point of `thin_repair`: parses `args` (without argv[0]) and runs the tool.
#[must_use]
pub fn command(args: &[OsString]) -> Outcome {
    cli::run_with::<RepairArgs, _>("thin_repair", args, |a| {
        if let Err(o) = check_block_size_override(a.data_block_size) {
            return o;
        }
        match repair(&a) {
            Ok(()) => Outcome::Success,
            Err(e) => cli::report_error(&e, a.quiet),
        }
    })
}
