//! The superblock values written by a repair.
//!
//! Rules:
//! - the data block size is the one given, else the superblock's, else that
//!   of a metadata-snapshot copy; it must be one the kernel accepts;
//! - with the superblock's own trees, its time, transaction id and data
//!   block count are kept (overrides raise them);
//! - with other trees, the transaction id is above every device's, and the
//!   time at least the newest mapping or device time found;
//! - the data space always holds the highest data block mapped.

use crate::thin::engines::repair::assemble::Assembled;
use crate::thin::engines::repair::fast::HealthyDevice;
use crate::thin::engines::repair::scan::ScanTable;
use crate::thin::engines::repair::select::{Chosen, Source};
use crate::thin::engines::repair::{RepairError, RepairOptions, RepairedDevice, RepairedPool};
use crate::thin::ir::{DeviceInfo, SuperblockInfo};
use crate::thin::model::superblock::{valid_data_block_size, Superblock};

/// Metadata version written.
const VERSION: u32 = 2;

fn blank(data_block_size: u32) -> SuperblockInfo {
    SuperblockInfo {
        uuid: String::new(),
        time: 0,
        transaction: 0,
        flags: 0,
        version: VERSION,
        data_block_size,
        nr_data_blocks: 0,
        metadata_snap: None,
    }
}

/// The pool of a healthy superblock: its values and devices as recorded.
#[must_use]
pub fn healthy_pool(
    sb: &Superblock,
    devs: Vec<HealthyDevice>,
    opts: &RepairOptions,
) -> RepairedPool {
    let mut info = SuperblockInfo {
        time: sb.time,
        transaction: sb.trans_id,
        nr_data_blocks: sb.data_sm_root.nr_blocks,
        ..blank(sb.data_block_size)
    };
    apply_overrides(&mut info, opts, None);
    let devices = devs
        .into_iter()
        .map(|d| RepairedDevice {
            info: DeviceInfo {
                dev_id: d.id,
                mapped_blocks: d.details.mapped_blocks,
                transaction: d.details.transaction_id,
                creation_time: d.details.creation_time,
                snap_time: d.details.snapshotted_time,
            },
            leaves: d.leaves,
        })
        .collect();
    RepairedPool {
        sb: info,
        devices,
        warnings: Vec::new(),
    }
}

/// Raises the transaction id and data block count to the overrides (and the
/// data block count above `highest`, the highest data block mapped), and
/// replaces the data block size.
pub fn apply_overrides(sb: &mut SuperblockInfo, opts: &RepairOptions, highest: Option<u64>) {
    if let Some(t) = opts.transaction_id {
        sb.transaction = sb.transaction.max(t);
    }
    if let Some(s) = opts.data_block_size {
        sb.data_block_size = s;
    }
    if let Some(n) = opts.nr_data_blocks {
        sb.nr_data_blocks = sb.nr_data_blocks.max(n);
    }
    if let Some(h) = highest {
        sb.nr_data_blocks = sb.nr_data_blocks.max(h + 1);
    }
}

/// The data block size: given, the superblock's, or a snapshot copy's.
///
/// # Errors
/// [`RepairError::DataBlockSizeNeeded`] when none is known,
/// [`RepairError::InvalidDataBlockSize`] when the one found is not valid.
pub fn data_block_size(
    opts: &RepairOptions,
    reference: Option<&Superblock>,
    table: &ScanTable,
) -> Result<u32, RepairError> {
    let dbs = match (opts.data_block_size, reference) {
        (Some(s), _) => s,
        (None, Some(r)) => r.data_block_size,
        (None, None) => match table.snapshots.first() {
            Some((_, s)) => s.data_block_size,
            None => return Err(RepairError::DataBlockSizeNeeded),
        },
    };
    if !valid_data_block_size(u64::from(dbs)) {
        return Err(RepairError::InvalidDataBlockSize(dbs));
    }
    Ok(dbs)
}

/// The superblock values for the trees `chosen` and the devices assembled.
///
/// # Errors
/// See [`data_block_size`].
pub fn superblock_values(
    chosen: &Chosen,
    a: &Assembled,
    reference: Option<&Superblock>,
    table: &ScanTable,
    opts: &RepairOptions,
) -> Result<SuperblockInfo, RepairError> {
    let mut sb = blank(data_block_size(opts, reference, table)?);
    let snap = table.snapshots.iter().map(|(_, s)| s);
    let snap_tid = snap.clone().map(|s| s.trans_id).max().unwrap_or(0);
    let snap_time = snap.map(|s| s.time).max().unwrap_or(0);
    let ref_time = reference.map_or(snap_time, |r| r.time);
    let ref_tid = reference.map_or(snap_tid, |r| r.trans_id);
    let ref_data = reference.map_or(0, |r| r.data_sm_root.nr_blocks);
    let current = matches!(chosen.source, Source::Current | Source::DetailsOnly)
        && chosen.details_root.is_some();
    if current {
        sb.time = ref_time;
        sb.transaction = ref_tid;
        sb.nr_data_blocks = ref_data;
        apply_overrides(&mut sb, opts, a.highest);
        return Ok(sb);
    }
    sb.nr_data_blocks = opts.nr_data_blocks.unwrap_or(ref_data);
    if let Some(h) = a.highest {
        sb.nr_data_blocks = sb.nr_data_blocks.max(h + 1);
    }
    let base_tid = opts.transaction_id.unwrap_or(ref_tid);
    let details = a.gathered.details.values();
    if chosen.details_root.is_some() {
        let details_tid = details.clone().map(|d| d.transaction_id).max();
        let details_age = details
            .map(|d| d.creation_time.max(d.snapshotted_time))
            .max()
            .unwrap_or(0);
        sb.transaction = base_tid.max(details_tid.map_or(0, |t| t + 1));
        sb.time = ref_time.max(a.age).max(details_age);
    } else {
        sb.transaction = base_tid.max(1);
        let bump = u32::from(!a.gathered.top.is_empty());
        sb.time = ref_time.max(a.age.saturating_add(bump));
    }
    Ok(sb)
}

/// Values for a device the details tree does not hold: created and
/// snapshotted at the pool's time, one transaction before it.
#[must_use]
pub fn regenerated_details(id: u64, mappings: u64, sb: &SuperblockInfo) -> DeviceInfo {
    DeviceInfo {
        dev_id: id,
        mapped_blocks: mappings,
        transaction: sb.transaction.saturating_sub(1),
        creation_time: sb.time,
        snap_time: sb.time,
    }
}
