//! Emitting a repaired pool: the devices' leaf lists go through the same
//! `<def>`/`<ref>` planning and emitter as thin_dump, into any IR sink (the
//! XML or human-readable writer, or the metadata writer for thin_repair).

use std::collections::BTreeMap;

use zerocopy::little_endian::U64;

use crate::pdata::block::{Block, BlockNr};
use crate::pdata::btree::node::{NodeError, NodeErrorKind, NodeRef};
use crate::pdata::io::BlockDevice;
use crate::thin::engines::repair::{RepairError, RepairReport, RepairedPool};
use crate::thin::ir::emit::{emit, DeviceLeaves, LeafFn, LeafReader};
use crate::thin::ir::metadata_writer::{Overrides, ThinWriter};
use crate::thin::ir::sharing_plan::SharingPlan;
use crate::thin::ir::{ChunkSink, DeviceInfo, RunList};
use crate::thin::model::mapping::MAPPING_VALUE_SIZE;

/// How shared leaves are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeafSharing {
    /// `<def>`/`<ref>` as thin_dump writes them.
    DefRef,
    /// Every device in full (`--expand-shared`).
    Expanded,
}

/// The devices' values and the sharing plan of `pool`.
#[must_use]
pub fn plan_of(pool: &RepairedPool, sharing: LeafSharing) -> (Vec<DeviceInfo>, SharingPlan) {
    let lists: Vec<&[BlockNr]> = pool.devices.iter().map(|d| d.leaves.as_slice()).collect();
    let plan = match sharing {
        // A salvaged tree can give leaf sequences the run algorithm refuses;
        // writing those devices in full is always correct.
        LeafSharing::DefRef => {
            SharingPlan::build(&lists).unwrap_or_else(|_| SharingPlan::expanded(&lists))
        }
        LeafSharing::Expanded => SharingPlan::expanded(&lists),
    };
    (pool.devices.iter().map(|d| d.info).collect(), plan)
}

/// Sends `pool` to `sink`, reading mapping leaves from `dev`.
///
/// # Errors
/// [`RepairError::Leaf`] for a leaf that no longer reads as a valid mapping
/// leaf, [`RepairError::Sink`] for a sink failure.
pub fn emit_repaired<S: ChunkSink + Send>(
    dev: &dyn BlockDevice,
    pool: &RepairedPool,
    sharing: LeafSharing,
    sink: &mut S,
) -> Result<(), RepairError> {
    let (devices, plan) = plan_of(pool, sharing);
    let reader = RepairLeaves {
        dev,
        inner: DeviceLeaves::new(dev),
        misplaced: &pool.misplaced,
        dropped: &pool.dropped,
    };
    emit::<S, RepairError>(&pool.sb, &devices, &plan, &reader, sink)
}

/// Writes `pool` as fresh binary metadata on `out` through the metadata
/// writer (which flushes everything before the superblock and syncs).
///
/// # Errors
/// As [`emit_repaired`].
pub fn write_repaired(
    input: &dyn BlockDevice,
    pool: &RepairedPool,
    out: &dyn BlockDevice,
) -> Result<RepairReport, RepairError> {
    let mut w = RunList(ThinWriter::new(out, Overrides::default()));
    emit_repaired(input, pool, LeafSharing::DefRef, &mut w)?;
    Ok(RepairReport::of(pool, w.0.take_warnings()))
}

/// Reads the leaves of a repaired pool: through [`DeviceLeaves`], except the
/// misplaced ones, whose block-number field is not checked, and those with
/// dropped keys, which are left out.
struct RepairLeaves<'d, 'p> {
    dev: &'d dyn BlockDevice,
    inner: DeviceLeaves<'d>,
    misplaced: &'p [BlockNr],
    dropped: &'p BTreeMap<BlockNr, Vec<u64>>,
}

impl RepairLeaves<'_, '_> {
    /// Reads one leaf on its own: misplaced (the block-number field is not
    /// checked) or with keys to leave out.
    fn read_special(&self, nr: BlockNr, f: &mut LeafFn<'_>) -> Result<(), NodeError> {
        let err = |kind| NodeError { block: nr, kind };
        let mut b = Block::zeroed();
        self.dev
            .read_at(nr, &mut b)
            .map_err(|_| err(NodeErrorKind::Io))?;
        let recorded = if self.misplaced.binary_search(&nr).is_ok() {
            u64::from_le_bytes([
                b.0[8], b.0[9], b.0[10], b.0[11], b.0[12], b.0[13], b.0[14], b.0[15],
            ])
        } else {
            nr
        };
        let n = NodeRef::new(&b.0, recorded, MAPPING_VALUE_SIZE).map_err(|e| err(e.kind))?;
        if !n.is_leaf() {
            return Err(err(NodeErrorKind::BadFlags));
        }
        match self.dropped.get(&nr) {
            None => f(nr, n.keys(), n.values_u64()),
            Some(drop) => {
                let (keys, values): (Vec<U64>, Vec<U64>) = n
                    .keys()
                    .iter()
                    .zip(n.values_u64())
                    .filter(|(k, _)| drop.binary_search(&k.get()).is_err())
                    .map(|(k, v)| (*k, *v))
                    .unzip();
                f(nr, &keys, &values);
            }
        }
        Ok(())
    }
}

impl LeafReader for RepairLeaves<'_, '_> {
    fn read_leaves(&self, leaves: &[BlockNr], f: &mut LeafFn<'_>) -> Result<(), NodeError> {
        if self.misplaced.is_empty() && self.dropped.is_empty() {
            return self.inner.read_leaves(leaves, f);
        }
        let is_special =
            |l: &BlockNr| self.misplaced.binary_search(l).is_ok() || self.dropped.contains_key(l);
        let mut rest = leaves;
        while !rest.is_empty() {
            let run = rest.iter().position(is_special).unwrap_or(rest.len());
            self.inner.read_leaves(&rest[..run], f)?;
            if let Some(&l) = rest.get(run) {
                self.read_special(l, f)?;
            }
            rest = rest.get(run + 1..).unwrap_or(&[]);
        }
        Ok(())
    }
}
