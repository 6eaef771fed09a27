//! The repair engine shared by `thin_repair` and `thin_dump --repair`:
//! decide which superblock values and roots describe the pool, salvage what
//! can be read, and emit it through the IR.
//!
//! Flow of [`plan`]: a valid superblock at block 0 whose trees are whole and
//! agree with each other is read directly ([`fast`]). Otherwise every block
//! is scanned ([`scan`]), nodes are classified children first
//! ([`classify`]), candidate roots are collected, ordered and paired
//! ([`candidates`]), the roots are chosen ([`select`]), the devices are
//! assembled from the chosen trees ([`assemble`]) with holes filled from
//! older trees ([`fill`]) and unreferenced subtrees ([`orphans`]) less the
//! mappings whose data blocks were reused since ([`reuse`]), the
//! superblock values are rebuilt ([`values`]), and every warning is worded
//! in [`messages`]. [`emit`] sends the result to an IR sink.
//!
//! Public API used by the commands: [`plan`], [`emit_repaired`] (any
//! [`ChunkSink`]: thin_dump's XML or human-readable writer),
//! [`write_repaired`] (fresh binary metadata, thin_repair) and
//! [`repair_to_sink`] (plan then emit).

pub mod assemble;
pub mod candidates;
pub mod classify;
pub mod emit;
pub mod fast;
pub mod fill;
pub mod messages;
pub mod orphans;
pub mod reuse;
pub mod scan;
pub mod select;
pub mod trees;
pub mod values;

#[cfg(test)]
pub(crate) mod test_images;

use std::collections::BTreeSet;

use crate::pdata::block::BlockNr;
use crate::pdata::btree::node::NodeError;
use crate::pdata::io::BlockDevice;
use crate::progress::{Log, Progress, Unit, Verbosity};
use crate::thin::engines::repair::classify::Classifier;
use crate::thin::engines::repair::messages::Notes;
use crate::thin::ir::{ChunkSink, DeviceInfo, IrError, SuperblockInfo};
use crate::thin::model::superblock::read_superblock;

pub use emit::{emit_repaired, write_repaired, LeafSharing};

/// A failed repair.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// No pair of trees (nor a lone top-level tree, nor an empty pool) was found.
    #[error("no compatible roots found")]
    NoRoots,
    /// The superblock is lost, no snapshot copy holds the data block size and
    /// none was given.
    #[error("data block size needs to be provided due to corruption in the superblock")]
    DataBlockSizeNeeded,
    /// The data block size found (in sectors) is not one the kernel accepts.
    #[error("invalid data block size")]
    InvalidDataBlockSize(u32),
    /// A mapping leaf chosen by the plan no longer reads as one while emitting.
    #[error(transparent)]
    Leaf(NodeError),
    /// The sink (document writer or metadata writer) failed.
    #[error(transparent)]
    Sink(IrError),
}

impl From<IrError> for RepairError {
    fn from(e: IrError) -> Self {
        match e {
            IrError::Leaf(leaf) => RepairError::Leaf(leaf),
            other => RepairError::Sink(other),
        }
    }
}

impl RepairError {
    /// True when the output was a pipe whose reader went away.
    #[must_use]
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, RepairError::Sink(e) if e.is_broken_pipe())
    }
}

/// Superblock overrides and diagnostics.
#[derive(Debug)]
pub struct RepairOptions {
    /// `--transaction-id`: the result is at least this.
    pub transaction_id: Option<u64>,
    /// `--data-block-size`: replaces the value found (already validated).
    pub data_block_size: Option<u32>,
    /// `--nr-data-blocks`: the data space map has at least this many blocks.
    pub nr_data_blocks: Option<u64>,
    /// Warnings and info lines.
    pub log: Log,
}

impl RepairOptions {
    /// No overrides; messages to stderr at `verbosity`.
    #[must_use]
    pub fn new(verbosity: Verbosity) -> Self {
        RepairOptions {
            transaction_id: None,
            data_block_size: None,
            nr_data_blocks: None,
            log: Log::stderr(verbosity),
        }
    }
}

/// One device to write: its values and its mapping leaves in key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepairedDevice {
    /// Values written (`mapped_blocks` = mappings in `leaves`).
    pub info: DeviceInfo,
    /// Valid mapping leaves, left to right.
    pub leaves: Vec<BlockNr>,
}

/// What repair decided to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepairedPool {
    /// Superblock values (overrides applied).
    pub sb: SuperblockInfo,
    /// Devices in ascending id.
    pub devices: Vec<RepairedDevice>,
    /// The warnings given while planning, in order (already logged).
    pub warnings: Vec<String>,
    /// Leaves used whose block-number field names another block, ascending.
    pub misplaced: Vec<BlockNr>,
    /// Keys left out of leaves borrowed from older copies: their data
    /// blocks were reused since (see [`reuse`]).
    pub dropped: std::collections::BTreeMap<BlockNr, Vec<u64>>,
}

impl RepairedPool {
    /// Keeps only the devices whose id is in `ids` (`--dev-id`).
    pub fn retain_devices(&mut self, ids: &BTreeSet<u64>) {
        self.devices.retain(|d| ids.contains(&d.info.dev_id));
    }

    /// Drops every device's mappings, keeping the devices (`--skip-mappings`).
    pub fn drop_mappings(&mut self) {
        for d in &mut self.devices {
            d.leaves.clear();
        }
    }

    /// Mappings the pool holds.
    #[must_use]
    pub fn mappings(&self) -> u64 {
        self.devices.iter().map(|d| d.info.mapped_blocks).sum()
    }
}

/// What was written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Devices written.
    pub devices: usize,
    /// Mappings written.
    pub mappings: u64,
    /// Warnings of the plan, in order (printed while planning).
    pub warnings: Vec<String>,
    /// Warnings of the metadata writer (not printed yet).
    pub writer_warnings: Vec<String>,
}

impl RepairReport {
    /// The report of writing `pool`, with the metadata writer's warnings.
    #[must_use]
    pub fn of(pool: &RepairedPool, writer_warnings: Vec<String>) -> Self {
        RepairReport {
            devices: pool.devices.len(),
            mappings: pool.mappings(),
            warnings: pool.warnings.clone(),
            writer_warnings,
        }
    }
}

/// Finds the roots, rebuilds the superblock of `dev` and decides what to
/// write. Warnings and `-v` lines go to `opts.log` as they are found.
///
/// # Errors
/// [`RepairError::NoRoots`], [`RepairError::DataBlockSizeNeeded`],
/// [`RepairError::InvalidDataBlockSize`].
pub fn plan(dev: &dyn BlockDevice, opts: &RepairOptions) -> Result<RepairedPool, RepairError> {
    let notes = Notes::new(&opts.log);
    let reference = read_superblock(dev, 0).ok().map(|(sb, _)| sb);
    if let Some(sb) = reference.as_ref().filter(|sb| sb.validate(0).is_ok()) {
        if let Some(devs) = fast::healthy_devices(dev, sb) {
            notes.info("superblock and trees are healthy: no scan needed");
            return Ok(values::healthy_pool(sb, devs, opts));
        }
    }
    let table = {
        let progress = Progress::new(opts.log.verbosity().display());
        let total = Some(dev.nr_blocks());
        let counter = progress.counter("Scanning", total, Unit::Items("blocks"));
        scan::scan_counted(dev, &counter)
    };
    let cls = Classifier::new(&table);
    let snapshot_roots: BTreeSet<BlockNr> = table
        .snapshots
        .iter()
        .flat_map(|(_, s)| [s.mapping_root, s.details_root])
        .collect();
    let cands = candidates::find(&cls, &snapshot_roots);
    for line in candidates::info_lines(&cands) {
        notes.info(&line);
    }
    let chosen = select::choose(&cls, &cands, reference.as_ref()).ok_or(RepairError::NoRoots)?;
    let ctx = assemble::Context {
        dev,
        cls: &cls,
        cands: &cands,
        chosen: &chosen,
        reference: reference.as_ref(),
        notes: &notes,
    };
    let assembled = assemble::assemble(&ctx);
    let sb = values::superblock_values(&chosen, &assembled, reference.as_ref(), &table, opts)?;
    let mut pool = assemble::finish(&ctx, assembled, sb);
    pool.misplaced = assemble::misplaced_leaves(&ctx, &pool);
    Ok(RepairedPool {
        warnings: notes.into_warnings(),
        ..pool
    })
}

/// Plans the repair of `dev` and sends the result to `sink` with shared
/// leaves as `<def>`/`<ref>`.
///
/// # Errors
/// The errors of [`plan`], then those of [`emit_repaired`].
pub fn repair_to_sink<S: ChunkSink + Send>(
    dev: &dyn BlockDevice,
    opts: &RepairOptions,
    sink: &mut S,
) -> Result<RepairReport, RepairError> {
    let pool = plan(dev, opts)?;
    emit_repaired(dev, &pool, LeafSharing::DefRef, sink)?;
    Ok(RepairReport::of(&pool, Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdata::io::MemDevice;
    use crate::thin::engines::repair::test_images::{
        corrupt, entries, options, pool, superblock, zero, BLOCKS,
    };
    use crate::thin::ir::RunList;

    fn counts(p: &RepairedPool) -> Vec<(u64, u64)> {
        p.devices
            .iter()
            .map(|d| (d.info.dev_id, d.info.mapped_blocks))
            .collect()
    }

    #[test]
    fn healthy_metadata_is_read_without_a_scan() {
        let dev = pool(&[(1, 600), (2, 10)]);
        let opts = options();
        let p = plan(&dev, &opts).unwrap();
        assert_eq!(counts(&p), vec![(1, 600), (2, 10)]);
        assert_eq!((p.sb.transaction, p.sb.time), (5, 2));
        assert!(p.warnings.is_empty());
        assert_eq!(
            opts.log.lines(),
            vec!["superblock and trees are healthy: no scan needed"]
        );
    }

    #[test]
    fn a_lost_superblock_needs_a_data_block_size_then_comes_back() {
        let dev = pool(&[(1, 600), (2, 10)]);
        let sb = superblock(&dev);
        let healthy = plan(&dev, &options()).unwrap();
        zero(&dev, 0);
        let e = plan(&dev, &options()).unwrap_err();
        assert!(matches!(e, RepairError::DataBlockSizeNeeded), "{e}");
        let mut opts = options();
        opts.data_block_size = Some(128);
        let p = plan(&dev, &opts).unwrap();
        assert_eq!(p.devices, healthy.devices);
        assert_eq!(
            p.warnings,
            vec![format!(
                "superblock lost: using mapping root {}, details root {} (transaction {}, time {})",
                sb.mapping_root, sb.details_root, p.sb.transaction, p.sb.time
            )]
        );
        assert!(opts.log.lines()[0].starts_with("mapping candidates (1):"));
    }

    #[test]
    fn nothing_to_repair_from_is_an_error() {
        let dev = MemDevice::new(16);
        let e = plan(&dev, &options()).unwrap_err();
        assert!(matches!(e, RepairError::NoRoots));
        assert_eq!(e.to_string(), "no compatible roots found");
    }

    #[test]
    fn written_repairs_read_back_as_healthy_metadata() {
        let dev = pool(&[(1, 600), (2, 10)]);
        let root1 = entries(&dev, superblock(&dev).mapping_root)[0].1;
        corrupt(&dev, entries(&dev, root1)[0].1);
        let p = plan(&dev, &options()).unwrap();
        assert_eq!(counts(&p)[1], (2, 10));
        let out = MemDevice::new(BLOCKS);
        let report = write_repaired(&dev, &p, &out).unwrap();
        assert_eq!((report.devices, report.mappings), (2, p.mappings()));
        assert_eq!(report.warnings, p.warnings);
        let opts = options();
        let again = plan(&out, &opts).unwrap();
        assert_eq!(counts(&again), counts(&p));
        assert_eq!(
            opts.log.lines(),
            vec!["superblock and trees are healthy: no scan needed"]
        );
    }

    #[test]
    fn a_leaf_damaged_after_planning_is_a_leaf_error() {
        let dev = pool(&[(1, 600)]);
        let p = plan(&dev, &options()).unwrap();
        let leaf = p.devices[0].leaves[0];
        corrupt(&dev, leaf);
        let out = MemDevice::new(BLOCKS);
        let mut w = RunList(crate::thin::ir::metadata_writer::ThinWriter::new(
            &out,
            crate::thin::ir::metadata_writer::Overrides::default(),
        ));
        match emit_repaired(&dev, &p, LeafSharing::DefRef, &mut w) {
            Err(RepairError::Leaf(e)) => assert_eq!(e.block, leaf),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dump_selections_drop_devices_and_mappings() {
        let dev = pool(&[(1, 600), (2, 10), (3, 1)]);
        let mut p = plan(&dev, &options()).unwrap();
        p.retain_devices(&BTreeSet::from([1, 3]));
        assert_eq!(counts(&p), vec![(1, 600), (3, 1)]);
        p.drop_mappings();
        assert!(p.devices.iter().all(|d| d.leaves.is_empty()));
    }
}
