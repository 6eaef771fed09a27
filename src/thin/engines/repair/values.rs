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
        misplaced: Vec::new(),
        dropped: std::collections::BTreeMap::new(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thin::engines::repair::assemble::Gathered;
    use crate::thin::engines::repair::test_images::{options, pool, superblock, TIME, TRANSACTION};
    use crate::thin::model::device_details::DeviceDetails;

    fn assembled(details: &[(u64, u64, u32)], highest: Option<u64>, age: u32) -> Assembled {
        let mut gathered = Gathered::default();
        for &(id, tid, time) in details {
            gathered.details.insert(
                id,
                DeviceDetails {
                    mapped_blocks: 0,
                    transaction_id: tid,
                    creation_time: time,
                    snapshotted_time: 0,
                },
            );
            gathered.top.push((id, 0, true));
        }
        Assembled {
            gathered,
            devices: Vec::new(),
            highest,
            age,
            lost_subtrees: 0,
            dropped: std::collections::BTreeMap::new(),
        }
    }

    fn chosen(source: Source, details: bool) -> Chosen {
        Chosen {
            mapping_root: 1,
            details_root: details.then_some(2),
            source,
            empty: false,
        }
    }

    #[test]
    fn the_data_block_size_is_given_recorded_or_from_a_snapshot() {
        let table = ScanTable::default();
        let mut opts = options();
        assert!(matches!(
            data_block_size(&opts, None, &table),
            Err(RepairError::DataBlockSizeNeeded)
        ));
        let sb = superblock(&pool(&[]));
        assert_eq!(data_block_size(&opts, Some(&sb), &table).unwrap(), 128);
        opts.data_block_size = Some(256);
        assert_eq!(data_block_size(&opts, Some(&sb), &table).unwrap(), 256);
        opts.data_block_size = Some(100);
        let e = data_block_size(&opts, None, &table).unwrap_err();
        assert!(matches!(e, RepairError::InvalidDataBlockSize(100)));
        assert_eq!(e.to_string(), "invalid data block size");
    }

    #[test]
    fn the_superblocks_own_trees_keep_its_values_raised_by_overrides() {
        let sb = superblock(&pool(&[(1, 5)]));
        let mut opts = options();
        opts.transaction_id = Some(99);
        let a = assembled(&[(1, 40, 30)], Some(20_000), 50);
        let v = superblock_values(
            &chosen(Source::Current, true),
            &a,
            Some(&sb),
            &ScanTable::default(),
            &opts,
        )
        .unwrap();
        assert_eq!(
            (v.transaction, v.time, v.nr_data_blocks, v.data_block_size),
            (99, TIME, 20_001, 128)
        );
        opts.transaction_id = Some(1);
        let v = superblock_values(
            &chosen(Source::Current, true),
            &a,
            Some(&sb),
            &ScanTable::default(),
            &opts,
        )
        .unwrap();
        assert_eq!(v.transaction, TRANSACTION, "an override only raises");
    }

    #[test]
    fn other_trees_get_a_transaction_above_every_device_and_the_newest_time() {
        let mut opts = options();
        opts.data_block_size = Some(128);
        let a = assembled(&[(1, 7, 3), (2, 4, 9)], Some(99), 6);
        let table = ScanTable::default();
        let v = superblock_values(&chosen(Source::Pair, true), &a, None, &table, &opts).unwrap();
        assert_eq!((v.transaction, v.time, v.nr_data_blocks), (8, 9, 100));
        // No details tree: at least transaction 1, and the time after the
        // newest mapping.
        let v =
            superblock_values(&chosen(Source::NoDetails, false), &a, None, &table, &opts).unwrap();
        assert_eq!((v.transaction, v.time), (1, 7));
    }

    #[test]
    fn made_up_details_date_from_the_pool() {
        let sb = SuperblockInfo {
            time: 4,
            transaction: 10,
            ..blank(128)
        };
        let d = regenerated_details(3, 12, &sb);
        assert_eq!(
            (
                d.dev_id,
                d.mapped_blocks,
                d.transaction,
                d.creation_time,
                d.snap_time
            ),
            (3, 12, 9, 4, 4)
        );
    }
}
