//! The repair scan: every block of the input is read once, in large
//! sequential chunks, and each btree node is reduced to a compact
//! [`ScanNode`].
//!
//! Nothing here decides what a node *is* beyond its on-disk shape; the
//! classification (top-level, mapping, details; complete or damaged) is
//! done afterwards from these summaries alone, so the scan never has to
//! re-read a block to classify it. Superblock copies met on the way
//! (metadata snapshots) are kept: their data block size, transaction id and
//! time stand in for a lost superblock's.

use rayon::prelude::*;

use crate::pdata::block::{Block, BlockNr};
use crate::pdata::btree::node::{NodeRef, INTERNAL_NODE, LEAF_NODE};
use crate::pdata::checksum::{self, BlockKind};
use crate::pdata::io::{BlockDevice, MAX_RUN};
use crate::thin::model::device_details::{DeviceDetails, DETAILS_VALUE_LEN, DETAILS_VALUE_SIZE};
use crate::thin::model::mapping::{
    BlockTime, MAPPING_VALUE_SIZE, TIME_LIMIT, TOP_LEVEL_VALUE_SIZE,
};
use crate::thin::model::superblock::Superblock;

/// Value size of top-level and mapping leaves, and of every internal node
/// (a block number or a packed block/time).
pub const LEAF8_VALUE_SIZE: u32 = MAPPING_VALUE_SIZE;
const _: () = assert!(TOP_LEVEL_VALUE_SIZE == MAPPING_VALUE_SIZE);

/// Blocks classified per parallel window (64 MiB).
const WINDOW_BLOCKS: u64 = 16384;

/// The on-disk shape of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Internal node: `arena[start..start+n]` keys, then `n` child block numbers.
    Internal,
    /// Leaf with 8-byte values (top-level or mapping leaf).
    Leaf8,
    /// Leaf with 24-byte values (device details).
    Leaf24,
}

/// Summary of a value_size-8 leaf read as a mapping leaf.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MappingSummary {
    /// Highest data block mapped.
    pub max_block: u64,
    /// Highest mapping time.
    pub max_time: u32,
    /// Every value ≤ the input's block count (upstream's top-level test).
    pub all_small: bool,
    /// Could be a top-level leaf: keys < 2^24 (device ids), values block
    /// numbers in 1..nr_blocks.
    pub top_shaped: bool,
    /// Start of this leaf's time histogram in [`ScanTable::hist`].
    pub hist_start: u32,
    /// Number of distinct times.
    pub hist_len: u32,
}

/// Summary of a details leaf.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetailsSummary {
    /// Σ mapped_blocks.
    pub mapped: u64,
    /// Highest device transaction id.
    pub max_tid: u64,
    /// Highest creation or snapshot time.
    pub age: u32,
}

/// One btree node found by the scan.
#[derive(Clone, Copy, Debug)]
pub struct ScanNode {
    /// Location.
    pub nr: BlockNr,
    /// Internal node, 8-byte leaf or 24-byte leaf.
    pub shape: Shape,
    /// Entries.
    pub nr_entries: u32,
    /// First key (0 when empty).
    pub first_key: u64,
    /// Last key (0 when empty).
    pub last_key: u64,
    /// Start of this node's keys (and children/values) in [`ScanTable::arena`]:
    /// internal nodes and top-shaped leaves hold `n` keys then `n` values;
    /// details leaves hold `n` keys then `3n` packed details; other mapping
    /// leaves hold nothing.
    pub arena_start: u32,
    /// Its block-number field names another block. Such a node is used only
    /// where a parent or a top-level entry names it, never as a root or an
    /// orphan on its own.
    pub misplaced: bool,
    /// Mapping-leaf summary (8-byte leaves).
    pub mapping: MappingSummary,
    /// Details summary (24-byte leaves).
    pub details: DetailsSummary,
}

/// Everything the scan found.
#[derive(Default)]
pub struct ScanTable {
    /// Nodes in ascending block order.
    pub nodes: Vec<ScanNode>,
    /// Keys, children, top-level values, packed details.
    pub arena: Vec<u64>,
    /// Time histograms of mapping leaves: (time, count), ascending time.
    pub hist: Vec<(u32, u32)>,
    /// Superblock copies at blocks other than 0 (metadata snapshots).
    pub snapshots: Vec<(BlockNr, Superblock)>,
    /// Blocks of the input.
    pub nr_blocks: u64,
}

impl ScanTable {
    /// Index of the node at `nr`, if the scan found one there.
    #[must_use]
    pub fn find(&self, nr: BlockNr) -> Option<usize> {
        self.nodes.binary_search_by_key(&nr, |n| n.nr).ok()
    }

    /// Keys of an internal node, top-shaped leaf or details leaf.
    #[must_use]
    pub fn keys(&self, n: &ScanNode) -> &[u64] {
        if n.shape == Shape::Leaf8 && !n.mapping.top_shaped {
            return &[];
        }
        let s = n.arena_start as usize;
        &self.arena[s..s + n.nr_entries as usize]
    }

    /// Children of an internal node, or values of a top-shaped leaf.
    #[must_use]
    pub fn values(&self, n: &ScanNode) -> &[u64] {
        if n.shape == Shape::Leaf8 && !n.mapping.top_shaped {
            return &[];
        }
        let s = n.arena_start as usize + n.nr_entries as usize;
        let len = match n.shape {
            Shape::Leaf24 => 3 * n.nr_entries as usize,
            _ => n.nr_entries as usize,
        };
        &self.arena[s..s + len]
    }

    /// Device details of entry `i` of a details leaf.
    #[must_use]
    pub fn details(&self, n: &ScanNode, i: usize) -> DeviceDetails {
        let v = &self.values(n)[3 * i..3 * i + 3];
        DeviceDetails {
            mapped_blocks: v[0],
            transaction_id: v[1],
            creation_time: low_half(v[2]),
            snapshotted_time: low_half(v[2] >> 32),
        }
    }

    /// The time histogram of a mapping leaf.
    #[must_use]
    pub fn histogram(&self, n: &ScanNode) -> &[(u32, u32)] {
        let s = n.mapping.hist_start as usize;
        &self.hist[s..s + n.mapping.hist_len as usize]
    }
}

/// The low 32 bits of `v`.
fn low_half(v: u64) -> u32 {
    let b = v.to_le_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// A node parsed on a worker thread, with its own small arenas.
struct Parsed {
    node: ScanNode,
    arena: Vec<u64>,
    hist: Vec<(u32, u32)>,
}

enum Found {
    Node(Parsed),
    Snapshot(BlockNr, Superblock),
}

/// Reads every block of `dev` and summarises the btree nodes.
#[must_use]
pub fn scan(dev: &dyn BlockDevice) -> ScanTable {
    let nr_blocks = dev.nr_blocks();
    let mut table = ScanTable {
        nr_blocks,
        ..ScanTable::default()
    };
    let mut start = 0;
    while start < nr_blocks {
        let end = nr_blocks.min(start + WINDOW_BLOCKS);
        let runs: Vec<(u64, u64)> = (start..end)
            .step_by(MAX_RUN)
            .map(|b| (b, end.min(b + MAX_RUN as u64)))
            .collect();
        let found: Vec<Vec<Found>> = runs
            .par_iter()
            .with_max_len(1)
            .map(|&(a, b)| scan_run(dev, a, b, nr_blocks))
            .collect();
        for f in found.into_iter().flatten() {
            table.absorb(f);
        }
        start = end;
    }
    table
}

impl ScanTable {
    fn absorb(&mut self, f: Found) {
        match f {
            Found::Snapshot(nr, sb) => self.snapshots.push((nr, sb)),
            Found::Node(mut p) => {
                p.node.arena_start = u32::try_from(self.arena.len()).unwrap_or(u32::MAX);
                p.node.mapping.hist_start = u32::try_from(self.hist.len()).unwrap_or(u32::MAX);
                self.arena.extend_from_slice(&p.arena);
                self.hist.extend_from_slice(&p.hist);
                self.nodes.push(p.node);
            }
        }
    }
}

/// Reads blocks `a..b` in one request (block by block if that fails).
fn scan_run(dev: &dyn BlockDevice, a: u64, b: u64, nr_blocks: u64) -> Vec<Found> {
    // Runs are at most MAX_RUN blocks long.
    let len = usize::try_from(b - a).unwrap_or(MAX_RUN);
    let mut buf = Block::zeroed_vec(len);
    let mut out = Vec::new();
    if dev.read_run(a, &mut buf).is_ok() {
        for (i, blk) in buf.iter().enumerate() {
            if let Some(f) = examine(a + i as u64, blk, nr_blocks) {
                out.push(f);
            }
        }
    } else {
        let mut one = Block::zeroed();
        for nr in a..b {
            if dev.read_at(nr, &mut one).is_ok() {
                if let Some(f) = examine(nr, &one, nr_blocks) {
                    out.push(f);
                }
            }
        }
    }
    out
}

fn examine(nr: BlockNr, blk: &Block, nr_blocks: u64) -> Option<Found> {
    match checksum::classify(&blk.0)? {
        BlockKind::Node => parse_node(nr, blk, nr_blocks).map(Found::Node),
        BlockKind::Superblock if nr != 0 => {
            let sb = Superblock::from_bytes(&blk.0);
            sb.validate(nr).ok()?;
            Some(Found::Snapshot(nr, sb))
        }
        _ => None,
    }
}

/// Decodes a node leniently (no `% 3` or fill rules); `None` when the header
/// is unusable or the value size is not one a thin tree uses.
fn parse_node(nr: BlockNr, blk: &Block, nr_blocks: u64) -> Option<Parsed> {
    let raw_flags = u32::from_le_bytes([blk.0[4], blk.0[5], blk.0[6], blk.0[7]]);
    let raw_vs = u32::from_le_bytes([blk.0[24], blk.0[25], blk.0[26], blk.0[27]]);
    let shape = match (raw_flags, raw_vs) {
        (INTERNAL_NODE, LEAF8_VALUE_SIZE) => Shape::Internal,
        (LEAF_NODE, LEAF8_VALUE_SIZE) => Shape::Leaf8,
        (LEAF_NODE, DETAILS_VALUE_SIZE) => Shape::Leaf24,
        _ => return None,
    };
    // A node whose only fault is its block-number field (its checksum, keys
    // and entries are sound) is kept, marked as misplaced.
    let recorded = u64::from_le_bytes([
        blk.0[8], blk.0[9], blk.0[10], blk.0[11], blk.0[12], blk.0[13], blk.0[14], blk.0[15],
    ]);
    let node = NodeRef::parse(&blk.0, recorded, raw_vs).ok()?;
    if shape == Shape::Internal && node.is_empty() {
        return None;
    }
    let n = node.len();
    let mut p = Parsed {
        node: ScanNode {
            nr,
            shape,
            nr_entries: node.nr_entries(),
            first_key: if n > 0 { node.key(0) } else { 0 },
            last_key: if n > 0 { node.key(n - 1) } else { 0 },
            misplaced: recorded != nr,
            arena_start: 0,
            mapping: MappingSummary::default(),
            details: DetailsSummary::default(),
        },
        arena: Vec::new(),
        hist: Vec::new(),
    };
    match shape {
        Shape::Internal => {
            p.arena.extend(node.keys().iter().map(|k| k.get()));
            p.arena.extend(node.values_u64().iter().map(|v| v.get()));
        }
        Shape::Leaf8 => summarise_leaf8(&node, nr_blocks, &mut p),
        Shape::Leaf24 => summarise_details(&node, &mut p),
    }
    Some(p)
}

fn summarise_leaf8(node: &NodeRef, nr_blocks: u64, p: &mut Parsed) {
    let values = node.values_u64();
    let mut m = MappingSummary {
        all_small: !values.is_empty(),
        top_shaped: !values.is_empty(),
        ..MappingSummary::default()
    };
    for v in values {
        let v = v.get();
        let bt = BlockTime::unpack(v);
        m.max_block = m.max_block.max(bt.block);
        m.max_time = m.max_time.max(bt.time);
        m.all_small &= v <= nr_blocks;
        m.top_shaped &= v >= 1 && v < nr_blocks;
        match p.hist.iter_mut().find(|(t, _)| *t == bt.time) {
            Some(e) => e.1 += 1,
            None => p.hist.push((bt.time, 1)),
        }
    }
    p.hist.sort_unstable();
    // Two devices may name the same mapping root (a snapshot not written
    // since it was taken), so values need not be distinct.
    m.top_shaped &= node.keys().iter().all(|k| k.get() < TIME_LIMIT);
    if m.top_shaped {
        p.arena.extend(node.keys().iter().map(|k| k.get()));
        p.arena.extend(values.iter().map(|v| v.get()));
    }
    // At most one time per entry, and the entry count is a u32.
    m.hist_len = u32::try_from(p.hist.len()).unwrap_or(u32::MAX);
    p.node.mapping = m;
}

fn summarise_details(node: &NodeRef, p: &mut Parsed) {
    let mut d = DetailsSummary::default();
    p.arena.extend(node.keys().iter().map(|k| k.get()));
    for v in node.value_bytes().as_chunks::<DETAILS_VALUE_LEN>().0 {
        let dd = DeviceDetails::from_bytes(v);
        d.mapped = d.mapped.saturating_add(dd.mapped_blocks);
        d.max_tid = d.max_tid.max(dd.transaction_id);
        d.age = d.age.max(dd.creation_time).max(dd.snapshotted_time);
        p.arena.push(dd.mapped_blocks);
        p.arena.push(dd.transaction_id);
        p.arena
            .push(u64::from(dd.creation_time) | (u64::from(dd.snapshotted_time) << 32));
    }
    p.node.details = d;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thin::engines::repair::test_images::{corrupt, entries, pool, superblock};

    #[test]
    fn every_node_of_a_pool_is_summarised_by_its_shape() {
        let dev = pool(&[(1, 600), (2, 10)]);
        let sb = superblock(&dev);
        let table = scan(&dev);
        assert!(table.snapshots.is_empty(), "block 0 is not a snapshot copy");
        assert_eq!(table.nr_blocks, 256);

        let top = &table.nodes[table.find(sb.mapping_root).unwrap()];
        assert_eq!((top.shape, top.nr_entries), (Shape::Leaf8, 2));
        assert!(top.mapping.top_shaped);
        assert_eq!(table.keys(top), &[1, 2]);

        let det = &table.nodes[table.find(sb.details_root).unwrap()];
        assert_eq!(det.shape, Shape::Leaf24);
        assert_eq!((det.details.mapped, det.details.max_tid), (610, 2));
        assert_eq!(table.details(det, 0).mapped_blocks, 600);
        assert_eq!(table.details(det, 1).creation_time, 1);

        let root1 = table.values(top)[0];
        let internal = &table.nodes[table.find(root1).unwrap()];
        assert_eq!(internal.shape, Shape::Internal);
        let leaves = table.values(internal);
        assert!(leaves.len() >= 3, "600 mappings need three leaves");
        let mut total = 0;
        for &l in leaves {
            let n = &table.nodes[table.find(l).unwrap()];
            assert_eq!(n.shape, Shape::Leaf8);
            assert!(
                !n.mapping.top_shaped,
                "block 0 is mapped: not a top-level leaf"
            );
            assert_eq!(table.histogram(n), &[(1, n.nr_entries)]);
            total += u64::from(n.nr_entries);
        }
        assert_eq!(total, 600);
        let last = &table.nodes[table.find(*leaves.last().unwrap()).unwrap()];
        assert_eq!((last.last_key, last.mapping.max_block), (599, 599));
    }

    #[test]
    fn a_block_with_a_bad_checksum_is_not_a_node() {
        let dev = pool(&[(1, 600)]);
        let leaf = entries(&dev, entries(&dev, superblock(&dev).mapping_root)[0].1)[1].1;
        let before = scan(&dev).nodes.len();
        corrupt(&dev, leaf);
        let table = scan(&dev);
        assert_eq!(table.find(leaf), None);
        assert_eq!(table.nodes.len(), before - 1);
    }

    #[test]
    fn low_half_keeps_the_low_32_bits() {
        assert_eq!(low_half(0x1234_5678_9abc_def0), 0x9abc_def0);
        assert_eq!(low_half(0x1234_5678_9abc_def0 >> 32), 0x1234_5678);
    }
}
