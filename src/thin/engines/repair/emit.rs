//! Emitting a repaired pool: the devices' leaf lists go through the same
//! `<def>`/`<ref>` planning and emitter as thin_dump, into any IR sink (the
//! XML or human-readable writer, or the metadata writer for thin_repair).

use crate::pdata::block::BlockNr;
use crate::pdata::btree::node::NodeError;
use crate::pdata::io::BlockDevice;
use crate::thin::engines::repair::{RepairError, RepairReport, RepairedPool};
use crate::thin::ir::emit::{emit, DeviceLeaves};
use crate::thin::ir::metadata_writer::{Overrides, ThinWriter};
use crate::thin::ir::sharing_plan::SharingPlan;
use crate::thin::ir::{ChunkSink, DeviceInfo, RunList};

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
    emit(&pool.sb, &devices, &plan, &DeviceLeaves::new(dev), sink).map_err(|e| {
        // Moved out of the sink's error wrapper so that the error keeps its
        // own type: a damaged leaf is told apart, and a broken pipe stays one.
        match e
            .reallocate_into_boxed_dyn_error_without_backtrace()
            .downcast::<NodeError>()
        {
            Ok(leaf) => RepairError::Leaf(*leaf),
            Err(other) => RepairError::Sink(other),
        }
    })
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
