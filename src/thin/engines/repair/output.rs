//! Emitting a repaired pool: the devices' leaf lists go through the same
//! `<def>`/`<ref>` planning and emitter as thin_dump (G6), to the XML or
//! human-readable writer, or to the metadata writer for thin_repair.

use crate::pdata::block::BlockNr;
use crate::pdata::io::BlockDevice;
use crate::thin::engines::repair::RepairedPool;
use crate::thin::ir::emit::{emit, DeviceLeaves};
use crate::thin::ir::metadata_writer::{Overrides, ThinWriter};
use crate::thin::ir::sharing_plan::SharingPlan;
use crate::thin::ir::{ChunkSink, DeviceInfo, RunList};

/// How shared leaves are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sharing {
    /// `<def>`/`<ref>` as thin_dump writes them.
    DefRef,
    /// Every device in full (`--expand-shared`).
    Expanded,
}

/// The devices' values and the sharing plan of `pool`.
#[must_use]
pub fn plan_of(pool: &RepairedPool, sharing: Sharing) -> (Vec<DeviceInfo>, SharingPlan) {
    let lists: Vec<&[BlockNr]> = pool.devices.iter().map(|d| d.leaves.as_slice()).collect();
    let plan = match sharing {
        // A salvaged tree can give leaf sequences the run algorithm refuses;
        // writing those devices in full is always correct.
        Sharing::DefRef => {
            SharingPlan::build(&lists).unwrap_or_else(|_| SharingPlan::expanded(&lists))
        }
        Sharing::Expanded => SharingPlan::expanded(&lists),
    };
    (pool.devices.iter().map(|d| d.info).collect(), plan)
}

/// Sends `pool` to `sink`, reading mapping leaves from `dev`.
///
/// # Errors
/// A leaf that no longer reads as a valid mapping leaf, or a sink failure.
pub fn emit_pool<S: ChunkSink + Send>(
    dev: &dyn BlockDevice,
    pool: &RepairedPool,
    sink: &mut S,
) -> anyhow::Result<()> {
    let (devices, plan) = plan_of(pool, Sharing::DefRef);
    emit(&pool.sb, &devices, &plan, &DeviceLeaves::new(dev), sink)
}

/// Writes `pool` as fresh binary metadata on `out` through the metadata
/// writer; returns the writer's warnings.
///
/// # Errors
/// A leaf that cannot be read again, or a write failure.
pub fn write_metadata(
    input: &dyn BlockDevice,
    pool: &RepairedPool,
    out: &dyn BlockDevice,
) -> anyhow::Result<Vec<String>> {
    let mut w = RunList(ThinWriter::new(out, Overrides::default()));
    emit_pool(input, pool, &mut w)?;
    Ok(w.0.take_warnings())
}
