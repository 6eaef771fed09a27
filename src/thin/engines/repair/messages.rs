//! The wording of repair's warnings, and where they go.
//!
//! Every warning the engine gives is a [`Warning`]; its `Display` is the line
//! printed. [`Notes`] prints each warning through the tool's [`Log`] as it is
//! found (so the order on stderr follows the work) and keeps the text for the
//! report.

use std::cell::RefCell;
use std::fmt;

use crate::pdata::block::{Block, BlockNr};
use crate::pdata::btree::node::{NodeErrorKind, NodeRef};
use crate::pdata::io::BlockDevice;
use crate::progress::Log;
use crate::thin::engines::repair::classify::Loss;
use crate::thin::engines::repair::scan::ScanTable;
use crate::thin::engines::repair::trees::LostRange;
use crate::thin::model::device_details::DETAILS_VALUE_SIZE;
use crate::thin::model::mapping::MAPPING_VALUE_SIZE;

/// A key range `[begin, end)`; `end` None = unbounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRange {
    /// First key.
    pub begin: u64,
    /// End (exclusive).
    pub end: Option<u64>,
}

impl From<&LostRange> for KeyRange {
    fn from(l: &LostRange) -> Self {
        KeyRange {
            begin: l.begin,
            end: l.end,
        }
    }
}

impl fmt::Display for KeyRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.end {
            Some(e) => write!(f, "[{}..{e})", self.begin),
            None => write!(f, "[{}..)", self.begin),
        }
    }
}

/// Key ranges written one after the other, separated by ", ".
struct RangeList<'a>(&'a [KeyRange]);

impl fmt::Display for RangeList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// The roots a repair used instead of the superblock's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsedRoots {
    /// Top-level tree root.
    pub mapping_root: BlockNr,
    /// Details tree root, if one was found.
    pub details_root: Option<BlockNr>,
}

impl fmt::Display for UsedRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mapping root {}, details root ", self.mapping_root)?;
        match self.details_root {
            Some(d) => write!(f, "{d}"),
            None => write!(f, "none"),
        }
    }
}

/// One warning of a repair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// Part of the top-level tree was dropped.
    TopLevelLost { range: KeyRange, why: String },
    /// Part of the details tree was dropped.
    DetailsLost { range: KeyRange, why: String },
    /// A device's mapping tree came whole from an older top-level tree;
    /// `dropped` mappings of it named reused data blocks.
    TreeFromOlderTop {
        id: u64,
        top: BlockNr,
        mappings: u64,
        dropped: u64,
    },
    /// Part of a device's mapping tree was dropped.
    MappingsLost {
        id: u64,
        range: KeyRange,
        block: BlockNr,
        why: String,
    },
    /// Leaves of an older copy of the device filled a lost range;
    /// `dropped` mappings of them named reused data blocks.
    FilledFromOlderTop {
        id: u64,
        ranges: Vec<KeyRange>,
        mappings: u64,
        leaves: usize,
        top: BlockNr,
        dropped: u64,
    },
    /// Leaves under an older internal node of the device's tree filled a
    /// lost range; `dropped` mappings of them named reused data blocks.
    FilledFromOlderNode {
        id: u64,
        ranges: Vec<KeyRange>,
        mappings: u64,
        leaves: usize,
        node: BlockNr,
        dropped: u64,
    },
    /// A device's whole mapping tree was an unreferenced root.
    TreeFromOrphan { id: u64, root: BlockNr },
    /// Unreferenced subtrees filled a device's lost ranges; `dropped`
    /// mappings of them named reused data blocks.
    SubtreesAdopted {
        id: u64,
        mappings: u64,
        subtrees: usize,
        dropped: u64,
    },
    /// A leaf whose block-number field names another block was used.
    Misplaced { block: BlockNr },
    /// A device that should have mappings got none.
    KeptEmpty { id: u64 },
    /// No details tree: every device's details were made up.
    NoDetailsTree { devices: usize },
    /// A device missing from the details tree got made-up details.
    DetailsRegenerated { id: u64 },
    /// The recorded mapping count differs from what was recovered.
    MappedBlocksDiffer {
        id: u64,
        recorded: u64,
        recovered: u64,
    },
    /// Block 0 is not a superblock: the values were rebuilt.
    SuperblockLost {
        roots: UsedRoots,
        transaction: u64,
        time: u32,
    },
    /// The live top-level tree is lost; trees were matched by mapping counts.
    TopLevelTreeLost { mapping_root: BlockNr },
    /// The superblock's roots were replaced by older ones.
    RolledBack {
        sb_mapping_root: BlockNr,
        sb_details_root: BlockNr,
        roots: UsedRoots,
        transaction: u64,
        time: u32,
        sb_transaction: u64,
        sb_time: u32,
    },
    /// A device written is not in the current details.
    Resurrected { id: u64 },
    /// A device's current mapping count differs from the older one written.
    CountRolledBack {
        id: u64,
        current: u64,
        recovered: u64,
    },
    /// Summary of a salvage that lost subtrees.
    Salvaged {
        devices: usize,
        mappings: u64,
        lost: usize,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Warning as W;
        // Every variant is routed here by name, so a new one cannot be
        // forgotten.
        match self {
            W::TopLevelLost { .. }
            | W::DetailsLost { .. }
            | W::TreeFromOlderTop { .. }
            | W::MappingsLost { .. }
            | W::FilledFromOlderTop { .. }
            | W::FilledFromOlderNode { .. }
            | W::TreeFromOrphan { .. }
            | W::SubtreesAdopted { .. }
            | W::Misplaced { .. }
            | W::KeptEmpty { .. }
            | W::NoDetailsTree { .. }
            | W::DetailsRegenerated { .. }
            | W::MappedBlocksDiffer { .. } => fmt_device(self, f),
            W::SuperblockLost { .. }
            | W::TopLevelTreeLost { .. }
            | W::RolledBack { .. }
            | W::Resurrected { .. }
            | W::CountRolledBack { .. }
            | W::Salvaged { .. } => fmt_pool(self, f),
        }
    }
}

/// Wording of the warnings about trees and devices.
fn fmt_device(w: &Warning, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    use Warning as W;
    match w {
        W::TopLevelLost { range, why } => {
            write!(f, "top-level tree: lost devices in {range} ({why})")
        }
        W::DetailsLost { range, why } => write!(
            f,
            "device details tree: lost details of devices in {range} ({why})"
        ),
        W::TreeFromOlderTop {
            id,
            top,
            mappings,
            dropped,
        } => {
            write!(
                f,
                "device {id}: mapping tree taken whole from the older top-level tree at block \
                 {top} ({mappings} mappings): they may be older than the pool's last commit"
            )?;
            fmt_dropped(*dropped, f)
        }
        W::MappingsLost {
            id,
            range,
            block,
            why,
        } => write!(
            f,
            "device {id}: lost mappings in {range} (block {block} unreadable: {why})"
        ),
        W::FilledFromOlderTop {
            id,
            ranges,
            mappings,
            leaves,
            top,
            dropped,
        } => {
            write!(
                f,
                "device {id}: mappings in {} taken from an older copy of its tree \
                 ({mappings} mappings in {leaves} leaves of the older top-level tree at block \
                 {top}): they may be older than the pool's last commit",
                RangeList(ranges)
            )?;
            fmt_dropped(*dropped, f)
        }
        W::FilledFromOlderNode {
            id,
            ranges,
            mappings,
            leaves,
            node,
            dropped,
        } => {
            write!(
                f,
                "device {id}: mappings in {} taken from an older copy of its tree \
                 ({mappings} mappings in {leaves} leaves under the older internal node at block \
                 {node}): they may be older than the pool's last commit",
                RangeList(ranges)
            )?;
            fmt_dropped(*dropped, f)
        }
        W::TreeFromOrphan { id, root } => write!(
            f,
            "device {id}: mapping tree recovered from unreferenced root {root}"
        ),
        W::SubtreesAdopted {
            id,
            mappings,
            subtrees,
            dropped,
        } => {
            write!(
                f,
                "device {id}: took {mappings} mappings in {subtrees} unreferenced subtrees \
                 inside its lost ranges"
            )?;
            fmt_dropped(*dropped, f)
        }
        W::KeptEmpty { id } => write!(f, "device {id}: kept with no mappings"),
        W::Misplaced { block } => write!(
            f,
            "block {block}: leaf with a wrong block number field; its entries are used"
        ),
        W::NoDetailsTree { devices } => {
            write!(f, "found {devices} mapping trees without device details")
        }
        W::DetailsRegenerated { id } => write!(f, "device {id}: details regenerated"),
        W::MappedBlocksDiffer {
            id,
            recorded,
            recovered,
        } => write!(
            f,
            "device {id}: mapped_blocks is {recorded} but {recovered} mappings were recovered"
        ),
        // Routed to the other group by `Warning::fmt`.
        _ => Ok(()),
    }
}

/// The end of a warning about mappings taken from older copies: how many
/// were dropped because their data blocks have been reused.
fn fmt_dropped(dropped: u64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if dropped == 0 {
        return Ok(());
    }
    write!(
        f,
        "; dropped {dropped} whose data blocks the surviving trees use elsewhere (reused)"
    )
}

/// Wording of the warnings about the pool as a whole.
fn fmt_pool(w: &Warning, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    use Warning as W;
    match w {
        W::SuperblockLost {
            roots,
            transaction,
            time,
        } => write!(
            f,
            "superblock lost: using {roots} (transaction {transaction}, time {time})"
        ),
        W::TopLevelTreeLost { mapping_root } => write!(
            f,
            "top-level tree at block {mapping_root} is lost: mapping trees matched to the \
             current details by their mapping counts"
        ),
        W::RolledBack {
            sb_mapping_root,
            sb_details_root,
            roots,
            transaction,
            time,
            sb_transaction,
            sb_time,
        } => write!(
            f,
            "the superblock's roots (mapping root {sb_mapping_root}, details root \
             {sb_details_root}) are not usable: using {roots} (transaction {transaction}, \
             time {time}; superblock transaction {sb_transaction}, time {sb_time})"
        ),
        W::Resurrected { id } => write!(
            f,
            "device {id}: not in the current details (resurrected from an older transaction)"
        ),
        W::CountRolledBack {
            id,
            current,
            recovered,
        } => write!(
            f,
            "device {id}: {current} mappings in the current details, {recovered} recovered"
        ),
        W::Salvaged {
            devices,
            mappings,
            lost,
        } => write!(
            f,
            "salvaged {devices} devices, {mappings} mappings; lost {lost} subtrees"
        ),
        // Routed to the other group by `Warning::fmt`.
        _ => Ok(()),
    }
}

/// Prints warnings and info lines through a [`Log`] and keeps the warnings.
pub struct Notes<'l> {
    log: &'l Log,
    warnings: RefCell<Vec<String>>,
}

impl<'l> Notes<'l> {
    /// Notes printed through `log`.
    #[must_use]
    pub fn new(log: &'l Log) -> Self {
        Notes {
            log,
            warnings: RefCell::new(Vec::new()),
        }
    }

    /// Prints `w` (unless quiet) and keeps it.
    pub fn warn(&self, w: &Warning) {
        let line = w.to_string();
        self.log.warn(&line);
        self.warnings.borrow_mut().push(line);
    }

    /// Prints an information line (`-v`).
    pub fn info(&self, line: &str) {
        self.log.info(line);
    }

    /// The warnings given, in order.
    #[must_use]
    pub fn into_warnings(self) -> Vec<String> {
        self.warnings.into_inner()
    }
}

/// Why the subtree of `l` was dropped, in the words of the node checks.
#[must_use]
pub fn loss_text(dev: &dyn BlockDevice, table: &ScanTable, l: &LostRange) -> String {
    match l.loss {
        Loss::Unreadable => unreadable_text(dev, l.block),
        Loss::Incompatible if table.find(l.block).is_some() => "node of another tree".to_string(),
        Loss::Incompatible => "not a usable node".to_string(),
        Loss::KeyRange => NodeErrorKind::KeyRange.to_string(),
        Loss::Height => NodeErrorKind::Unbalanced.to_string(),
    }
}

/// What the node checks say about block `nr`, read as a mapping-tree node
/// first; a value-size complaint there defers to the details-tree reading.
fn unreadable_text(dev: &dyn BlockDevice, nr: BlockNr) -> String {
    let mut b = Block::zeroed();
    if dev.read_at(nr, &mut b).is_err() {
        return NodeErrorKind::Io.to_string();
    }
    let err = |vs| NodeRef::new(&b.0, nr, vs).err().map(|e| e.kind);
    match (err(MAPPING_VALUE_SIZE), err(DETAILS_VALUE_SIZE)) {
        (Some(NodeErrorKind::ValueSize), Some(k)) | (Some(k), _) => k.to_string(),
        (None, _) => "not a usable node".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_roots_are_worded_with_open_ends() {
        let r = |begin, end| KeyRange { begin, end };
        assert_eq!(r(3, Some(9)).to_string(), "[3..9)");
        assert_eq!(r(3, None).to_string(), "[3..)");
        let roots = UsedRoots {
            mapping_root: 7,
            details_root: None,
        };
        assert_eq!(roots.to_string(), "mapping root 7, details root none");
    }

    #[test]
    fn every_kind_of_warning_has_its_own_line() {
        let w = [
            Warning::KeptEmpty { id: 4 },
            Warning::Salvaged {
                devices: 2,
                mappings: 30,
                lost: 1,
            },
            Warning::Resurrected { id: 5 },
        ];
        let lines: Vec<String> = w.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "device 4: kept with no mappings",
                "salvaged 2 devices, 30 mappings; lost 1 subtrees",
                "device 5: not in the current details (resurrected from an older transaction)",
            ]
        );
    }

    #[test]
    fn notes_keep_warnings_but_not_info_lines() {
        let log = Log::capture(crate::progress::Verbosity::Quiet);
        let notes = Notes::new(&log);
        notes.warn(&Warning::DetailsRegenerated { id: 1 });
        notes.info("candidates");
        assert!(log.lines().is_empty(), "quiet prints nothing");
        assert_eq!(notes.into_warnings(), vec!["device 1: details regenerated"]);
    }
}
