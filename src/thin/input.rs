//! Opening binary metadata for the read-only reporting tools (thin_delta,
//! thin_ls, thin_rmap): the shared input checks, the `-m[=BLOCKNR]` choice of
//! superblock (tools.md §2.7) and the device list with its consistency rule.
//!
//! Keeping this in one place means every tool words its failures the same way.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, Context};

use crate::pdata::block::{Block, BlockNr};
use crate::pdata::btree::walk::Walker;
use crate::pdata::io::{open_metadata, Access, BlockDevice, FileDevice, Sharing};
use crate::thin::device_details::DeviceDetails;
use crate::thin::metadata::{
    choose_superblock, read_details, read_top_level, ChosenSuperblock, OpenSnapError,
    SnapshotChoice,
};
use crate::thin::superblock::SuperblockError;

/// Turns the parsed `-m/--metadata-snap[=BLOCKNR]` option into a choice.
#[must_use]
pub fn snapshot_choice(opt: Option<Option<u64>>) -> SnapshotChoice {
    match opt {
        None => SnapshotChoice::Live,
        Some(None) => SnapshotChoice::Held,
        Some(Some(nr)) => SnapshotChoice::At(nr),
    }
}

/// An opened metadata device and the superblock to read from it.
pub struct Opened {
    /// The device, read-only.
    pub dev: FileDevice,
    /// The chosen superblock (and the live one when readable).
    pub chosen: ChosenSuperblock,
}

/// Opens `path` read-only (without O_EXCL in snapshot mode), then reads the
/// superblock `choice` names. A warning about an explicit snapshot block that
/// is not the held one goes to stderr.
///
/// # Errors
/// The open failure or the superblock failure, worded as tools.md says.
pub fn open_for_reading(path: &Path, choice: SnapshotChoice) -> anyhow::Result<Opened> {
    let sharing = match choice {
        SnapshotChoice::Live => Sharing::Exclusive,
        SnapshotChoice::Held | SnapshotChoice::At(_) => Sharing::LiveSnapshot,
    };
    let dev = open_metadata(path, Access::ReadOnly, sharing)?;
    let chosen = choose_superblock(&dev, choice).map_err(|e| superblock_failure(&dev, e))?;
    if let Some(w) = &chosen.warning {
        eprintln!("{w}");
    }
    Ok(Opened { dev, chosen })
}

/// Words a superblock failure, adding the "never formatted" hint when block 0
/// is all zeroes.
fn superblock_failure(dev: &dyn BlockDevice, e: OpenSnapError) -> anyhow::Error {
    if matches!(e, OpenSnapError::Live(SuperblockError::Checksum)) {
        let mut b = Block::zeroed();
        if dev.read_at(0, &mut b).is_ok() && b.is_zero() {
            return anyhow!("{e}\n(block 0 is all zeroes: this metadata was never formatted)");
        }
    }
    anyhow!("{e}")
}

/// One device as the reporting tools see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceEntry {
    /// Device id.
    pub id: u64,
    /// Root of its bottom-level mapping tree.
    pub root: BlockNr,
    /// Its details.
    pub details: DeviceDetails,
}

/// Reads the top-level mapping tree (device id → root).
///
/// # Errors
/// A damaged node in the tree.
pub fn device_roots(
    dev: &dyn BlockDevice,
    mapping_root: BlockNr,
) -> anyhow::Result<BTreeMap<u64, BlockNr>> {
    let mut walker = Walker::new(dev);
    read_top_level(&mut walker, mapping_root).context("top-level mapping tree")
}

/// Reads the top-level mapping tree and the details tree and pairs them by id.
/// Both trees must hold the same ids (`inconsistent device ids` otherwise).
///
/// # Errors
/// A damaged node in either tree, or differing id sets.
pub fn devices(
    dev: &dyn BlockDevice,
    mapping_root: BlockNr,
    details_root: BlockNr,
) -> anyhow::Result<Vec<DeviceEntry>> {
    let roots = device_roots(dev, mapping_root)?;
    let mut walker = Walker::new(dev);
    let details = read_details(&mut walker, details_root).context("device details tree")?;
    if roots.len() != details.len() || roots.keys().zip(details.keys()).any(|(a, b)| a != b) {
        return Err(anyhow!("inconsistent device ids"));
    }
    Ok(roots
        .iter()
        .zip(details.values())
        .map(|((&id, &root), &details)| DeviceEntry { id, root, details })
        .collect())
}
