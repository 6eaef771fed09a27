//! Opening thin metadata for reading: the input checks, the choice of the
//! live superblock or a metadata snapshot (`-m[=BLOCKNR]`), and reading the
//! top-level mapping tree and the device details tree into a device list.
//!
//! Every read-only tool opens its input here, so every tool words its
//! failures the same way.

use std::collections::BTreeMap;
use std::path::Path;

use crate::pdata::block::{Block, BlockNr};
use crate::pdata::btree::node::{NodeError, NodeRef};
use crate::pdata::btree::walk::{NodeState, Walker};
use crate::pdata::io::{self, open_metadata, Access, BlockDevice, FileDevice, Sharing};
use crate::thin::model::device_details::{DeviceDetails, DETAILS_VALUE_LEN, DETAILS_VALUE_SIZE};
use crate::thin::model::mapping::TOP_LEVEL_VALUE_SIZE;
use crate::thin::model::superblock::{read_superblock, Superblock, SuperblockError};

/// Which superblock a read-only tool reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotChoice {
    /// The live superblock at block 0.
    Live,
    /// The metadata snapshot named by the live superblock's `held_root`.
    Held,
    /// The metadata snapshot at this block.
    At(BlockNr),
}

/// Failures choosing the superblock, worded as the tools print them.
#[derive(Debug, thiserror::Error)]
pub enum OpenSnapError {
    /// Live superblock bad.
    #[error("{0}")]
    Live(SuperblockError),
    /// `held_root` is 0.
    #[error("no current metadata snap")]
    NoSnap,
    /// The snapshot copy is bad.
    #[error("metadata snap: {0}")]
    Snap(SuperblockError),
}

/// The superblock to read, and the live one when it could be read.
pub struct ChosenSuperblock {
    /// The superblock whose trees are read.
    pub sb: Superblock,
    /// The live superblock (None when damaged and a snapshot block was given).
    pub live: Option<Superblock>,
    /// A warning to print (explicit block differs from held root).
    pub warning: Option<String>,
}

/// Reads the superblock `choice` names. An explicit snapshot block that is
/// not the held one is read anyway, with a warning; a damaged live superblock
/// is tolerated only then.
///
/// # Errors
/// An [`OpenSnapError`].
pub fn choose_superblock(
    dev: &dyn BlockDevice,
    choice: SnapshotChoice,
) -> Result<ChosenSuperblock, OpenSnapError> {
    let live = read_superblock(dev, 0).and_then(|(sb, _)| sb.validate(0).map(|()| sb));
    match choice {
        SnapshotChoice::Live => {
            let sb = live.map_err(OpenSnapError::Live)?;
            Ok(ChosenSuperblock {
                sb: sb.clone(),
                live: Some(sb),
                warning: None,
            })
        }
        SnapshotChoice::Held => {
            let live = live.map_err(OpenSnapError::Live)?;
            if live.held_root == 0 {
                return Err(OpenSnapError::NoSnap);
            }
            let sb = read_snapshot(dev, live.held_root)?;
            Ok(ChosenSuperblock {
                sb,
                live: Some(live),
                warning: None,
            })
        }
        SnapshotChoice::At(nr) => {
            let sb = read_snapshot(dev, nr)?;
            let live = live.ok();
            let warning = live.as_ref().filter(|l| l.held_root != nr).map(|l| {
                format!(
                    "block {nr} is not the held metadata snapshot (held root is {})",
                    l.held_root
                )
            });
            Ok(ChosenSuperblock { sb, live, warning })
        }
    }
}

fn read_snapshot(dev: &dyn BlockDevice, nr: BlockNr) -> Result<Superblock, OpenSnapError> {
    let (sb, _) = read_superblock(dev, nr).map_err(OpenSnapError::Snap)?;
    sb.validate(nr).map_err(OpenSnapError::Snap)?;
    Ok(sb)
}

/// One thin device: its id, bottom-level root and recorded details.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Device {
    /// Device id.
    pub id: u64,
    /// Root of its mapping tree.
    pub root: BlockNr,
    /// Details-tree values.
    pub details: DeviceDetails,
}

/// Entries of a one-level tree with u64 values (the top-level mapping tree),
/// or the first node error met.
///
/// # Errors
/// The first damaged node.
pub fn read_top_level(
    walker: &mut Walker,
    root: BlockNr,
) -> Result<BTreeMap<u64, BlockNr>, NodeError> {
    let mut out = BTreeMap::new();
    walker.walk(
        &[root],
        TOP_LEVEL_VALUE_SIZE,
        |_, n: &NodeRef| pairs_u64(n),
        |_, v: Vec<(u64, u64)>| out.extend(v),
    );
    first_error(walker, root)?;
    Ok(out)
}

/// Entries of the device details tree, or the first node error met.
///
/// # Errors
/// The first damaged node.
pub fn read_details(
    walker: &mut Walker,
    root: BlockNr,
) -> Result<BTreeMap<u64, DeviceDetails>, NodeError> {
    let mut out = BTreeMap::new();
    walker.walk(
        &[root],
        DETAILS_VALUE_SIZE,
        |_, n: &NodeRef| {
            n.keys()
                .iter()
                .zip(n.value_bytes().as_chunks::<DETAILS_VALUE_LEN>().0)
                .map(|(k, v)| (k.get(), DeviceDetails::from_bytes(v)))
                .collect::<Vec<_>>()
        },
        |_, v: Vec<(u64, DeviceDetails)>| out.extend(v),
    );
    first_error(walker, root)?;
    Ok(out)
}

fn pairs_u64(n: &NodeRef) -> Vec<(u64, u64)> {
    n.keys()
        .iter()
        .zip(n.values_u64())
        .map(|(k, v)| (k.get(), v.get()))
        .collect()
}

/// The first bad node under `root`, or a structural error, if any.
fn first_error(walker: &Walker, root: BlockNr) -> Result<(), NodeError> {
    let g = walker.graph();
    let mut err = None;
    let _ = g.leaves_of(root, |block, kind| {
        err.get_or_insert(NodeError { block, kind });
    });
    if let Some(e) = err {
        return Err(e);
    }
    if let Some(e) = g.link_errors.first() {
        return Err(*e);
    }
    let _ = NodeState::Leaf;
    Ok(())
}

/// Failures of the read-only tools' input, worded as the tools print them.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The input could not be opened.
    #[error(transparent)]
    Open(#[from] io::OpenError),
    /// The chosen superblock could not be read.
    #[error("{err}{}", if *never_formatted { "\n(block 0 is all zeroes: this metadata was never formatted)" } else { "" })]
    Superblock {
        /// What was wrong.
        err: OpenSnapError,
        /// Block 0 is all zeroes.
        never_formatted: bool,
    },
    /// A damaged node in the top-level mapping tree.
    #[error("top-level mapping tree: {0}")]
    TopLevel(NodeError),
    /// A damaged node in the device details tree.
    #[error("device details tree: {0}")]
    Details(NodeError),
    /// The two trees hold different device ids.
    #[error("inconsistent device ids")]
    InconsistentIds,
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
/// The open failure or the superblock failure.
pub fn open_for_reading(path: &Path, choice: SnapshotChoice) -> Result<Opened, ReadError> {
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
fn superblock_failure(dev: &dyn BlockDevice, e: OpenSnapError) -> ReadError {
    let mut never_formatted = false;
    if matches!(e, OpenSnapError::Live(SuperblockError::Checksum)) {
        let mut b = Block::zeroed();
        never_formatted = dev.read_at(0, &mut b).is_ok() && b.is_zero();
    }
    ReadError::Superblock {
        err: e,
        never_formatted,
    }
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
) -> Result<BTreeMap<u64, BlockNr>, ReadError> {
    let mut walker = Walker::new(dev);
    read_top_level(&mut walker, mapping_root).map_err(ReadError::TopLevel)
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
) -> Result<Vec<DeviceEntry>, ReadError> {
    let roots = device_roots(dev, mapping_root)?;
    let mut walker = Walker::new(dev);
    let details = read_details(&mut walker, details_root).map_err(ReadError::Details)?;
    if roots.len() != details.len() || roots.keys().zip(details.keys()).any(|(a, b)| a != b) {
        return Err(ReadError::InconsistentIds);
    }
    Ok(roots
        .iter()
        .zip(details.values())
        .map(|((&id, &root), &details)| DeviceEntry { id, root, details })
        .collect())
}
