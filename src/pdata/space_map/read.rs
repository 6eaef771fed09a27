//! Reading a whole on-disk space map: its index entries (data: the index
//! btree; metadata: the index block), every bitmap, and the ref-count tree.
//!
//! The reader validates what the kernel's validators check (checksums and
//! `blocknr` of bitmaps and the index block, tree nodes) and records every
//! metadata block the map references, so that a checker can count them. It is
//! shared by thin_check (comparison and leak repair), thin_trim (free runs)
//! and anything else that needs on-disk counts.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use crate::pdata::block::{Block, BlockNr, BLOCK_SIZE};
use crate::pdata::btree::node::{NodeError, NodeErrorKind, NodeRef};
use crate::pdata::btree::walk::{NodeState, TreeGraph, Walker};
use crate::pdata::checksum::{self, BlockKind, ChecksumError};
use crate::pdata::io::{read_sorted, BlockDevice};
use crate::pdata::space_map::disk::{
    bitmap_get, bitmap_words, entries_with_count, IndexEntry, BITMAP_HEADER_SIZE, INDEX_ENTRY_SIZE,
    MAX_METADATA_BITMAPS, REF_COUNT_VALUE_SIZE,
};
use crate::pdata::space_map::fingerprint::{CountFingerprint, Sum};
use crate::pdata::space_map::{SmRoot, ENTRIES_PER_BITMAP};
use crate::pdata::{low_u32, to_index};

/// Offset of `blocknr` in bitmap and index blocks.
const BLOCKNR_OFFSET: usize = 8;
/// Offset of the first index entry in the metadata index block.
const INDEX_ENTRIES_OFFSET: usize = 16;

/// Which space map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmKind {
    /// Data blocks; index entries in a btree.
    Data,
    /// Metadata blocks; index entries in one index block.
    Metadata,
}

impl fmt::Display for SmKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SmKind::Data => "data",
            SmKind::Metadata => "metadata",
        })
    }
}

/// A damaged piece of a space map, worded as thin_check prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SmError {
    /// A bitmap fails its checksum.
    BitmapChecksum {
        /// Bitmap location.
        block: BlockNr,
        /// Index entry naming it.
        entry: u64,
    },
    /// The block an index entry names carries another block type's checksum.
    NotABitmap {
        /// Block location.
        block: BlockNr,
        /// Index entry naming it.
        entry: u64,
    },
    /// A bitmap's `blocknr` is not its location.
    BitmapBlocknr {
        /// Bitmap location.
        block: BlockNr,
        /// Value stored.
        found: u64,
    },
    /// A bitmap could not be read.
    BitmapIo {
        /// Bitmap location.
        block: BlockNr,
        /// Index entry naming it.
        entry: u64,
    },
    /// Fewer index entries than bitmaps needed.
    MissingEntry(u64),
    /// Metadata index block checksum.
    IndexChecksum,
    /// Metadata index block `blocknr` wrong.
    IndexBlocknr(u64),
    /// Metadata index block unreadable.
    IndexIo,
    /// A node of the index tree or the ref-count tree.
    Tree(NodeError),
    /// The map's block count is too large for its per-block presence bits to
    /// be allocated.
    TooLarge(u64),
}

/// An [`SmError`] with the space map it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmErrorIn {
    /// Which map.
    pub kind: SmKind,
    /// What is wrong.
    pub error: SmError,
}

impl fmt::Display for SmErrorIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = self.kind;
        match &self.error {
            SmError::BitmapChecksum { block, entry } => {
                write!(
                    f,
                    "{k} space map: checksum error at block {block}, index entry {entry}"
                )
            }
            SmError::NotABitmap { block, entry } => write!(
                f,
                "{k} space map: block {block} of index entry {entry} is not a bitmap"
            ),
            SmError::BitmapBlocknr { block, found } => {
                write!(
                    f,
                    "{k} space map: bitmap at block {block} has blocknr {found}"
                )
            }
            SmError::BitmapIo { block, entry } => {
                write!(
                    f,
                    "{k} space map: io error at block {block}, index entry {entry}"
                )
            }
            SmError::MissingEntry(i) => {
                write!(f, "{k} space map: missing index entry for bitmap {i}")
            }
            SmError::IndexChecksum => write!(f, "{k} space map: bad checksum in index block"),
            SmError::IndexBlocknr(n) => write!(f, "{k} space map: index block has blocknr {n}"),
            SmError::IndexIo => write!(f, "{k} space map: io error reading the index block"),
            SmError::Tree(e) => write!(f, "{k} space map: {e}"),
            SmError::TooLarge(n) => {
                write!(
                    f,
                    "{k} space map: {n} blocks are too many to count in memory"
                )
            }
        }
    }
}

/// Where an index entry is stored, for rewriting it in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntrySlot {
    /// The index-tree leaf (data) or the index block (metadata).
    pub block: BlockNr,
    /// Position of the entry in that block.
    pub slot: usize,
}

impl EntrySlot {
    /// Byte offset of the entry inside its block, for a space map of `kind`.
    #[must_use]
    pub fn offset(&self, kind: SmKind, max_entries: usize) -> usize {
        match kind {
            SmKind::Metadata => INDEX_ENTRIES_OFFSET + self.slot * INDEX_ENTRY_SIZE as usize,
            SmKind::Data => 32 + 8 * max_entries + self.slot * INDEX_ENTRY_SIZE as usize,
        }
    }
}

/// A space map as stored on disk.
pub struct DiskSpaceMap {
    /// Which map.
    pub kind: SmKind,
    /// Its root, from the superblock.
    pub root: SmRoot,
    /// One index entry per bitmap (`ceil(nr_blocks / 16320)`).
    pub entries: Vec<IndexEntry>,
    /// Where each entry is stored.
    pub slots: Vec<EntrySlot>,
    /// Bitmap contents, one per entry.
    pub bitmaps: Vec<Block>,
    /// Which blocks the ref-count tree holds an entry for.
    pub tree: RefCountTree,
    /// Every metadata block this map references, once per reference: the
    /// roots, each tree node per parent entry, each bitmap, the index block.
    pub metadata_refs: Vec<BlockNr>,
    /// With [`TreeEntries::Fingerprint`]: the fingerprint of every block's
    /// count as the kernel reads it (the bitmap's 1 or 2, else the tree's
    /// value where the bitmap says 3; a 3 without a tree entry counts 0).
    pub fingerprint: Option<Sum>,
}

impl DiskSpaceMap {
    /// The bitmap entry of block `b` (0..=3; 0 past the end).
    #[must_use]
    pub fn bitmap_count(&self, b: u64) -> u32 {
        let Ok(i) = usize::try_from(b / ENTRIES_PER_BITMAP) else {
            return 0;
        };
        let Some(bm) = self.bitmaps.get(i) else {
            return 0;
        };
        bitmap_get(&bm.0, to_index(b % ENTRIES_PER_BITMAP))
    }

    /// Count of block `b`: the bitmap entry, or the ref-count tree value when
    /// the bitmap says 3 (a missing tree entry reads as 0). Exact when the map
    /// was read keeping every tree entry; otherwise `None` for an entry the
    /// caller's filter dropped.
    #[must_use]
    pub fn count(&self, b: u64) -> Option<u32> {
        match self.bitmap_count(b) {
            3 if !self.tree.has(b) => Some(0),
            3 => self.tree.kept(b),
            c => Some(c),
        }
    }

    /// Number of bitmaps.
    #[must_use]
    pub fn nr_bitmaps(&self) -> usize {
        self.bitmaps.len()
    }
}

/// The ref-count tree of a space map: a bit per block saying whether the tree
/// has an entry, and the values of the entries the reader was asked to keep.
pub struct RefCountTree {
    present: Vec<u64>,
    kept: Vec<(u64, u32)>,
    /// Entries whose key is past the end of the map.
    pub beyond: Vec<(u64, u32)>,
}

impl RefCountTree {
    /// True when the tree has an entry for `b`.
    #[must_use]
    pub fn has(&self, b: u64) -> bool {
        usize::try_from(b / 64)
            .ok()
            .and_then(|w| self.present.get(w))
            .is_some_and(|w| (w >> (b % 64)) & 1 == 1)
    }

    /// Presence bits of blocks `base..base + 32` (`base` a multiple of 32),
    /// block `base + k` at bit `k`.
    #[must_use]
    pub fn present32(&self, base: u64) -> u32 {
        let w = self.present.get(to_index(base / 64)).copied().unwrap_or(0);
        low_u32(w >> (base % 64))
    }

    /// True when no entry was kept (every entry equals the caller's count).
    #[must_use]
    pub fn nothing_kept(&self) -> bool {
        self.kept.is_empty()
    }

    /// The value of a kept entry.
    #[must_use]
    pub fn kept(&self, b: u64) -> Option<u32> {
        self.kept
            .binary_search_by_key(&b, |&(k, _)| k)
            .ok()
            .map(|i| self.kept[i].1)
    }

    /// Every block with an entry, ascending.
    pub fn blocks(&self) -> impl Iterator<Item = u64> + '_ {
        self.present.iter().enumerate().flat_map(|(i, &w)| {
            let base = i as u64 * 64;
            let mut rest = w;
            std::iter::from_fn(move || {
                (rest != 0).then(|| {
                    let k = u64::from(rest.trailing_zeros());
                    rest &= rest - 1;
                    base + k
                })
            })
        })
    }
}

/// What the reader keeps of the ref-count tree's entries.
#[derive(Clone, Copy)]
pub enum TreeEntries<'a> {
    /// Every entry.
    All,
    /// The entries for which the filter returns true (thin_check's exact
    /// comparison keeps only the values that differ from its own counts, so
    /// memory stays small).
    Differing(&'a (dyn Fn(u64, u32) -> bool + Sync)),
    /// No counts: the map's counts are summed into
    /// [`DiskSpaceMap::fingerprint`] instead. The bitmaps are read first so
    /// that only entries whose bitmap count is 3 are summed; the others
    /// (stale entries, which the kernel ignores) are kept.
    Fingerprint(&'a CountFingerprint),
}

/// Reads the space map `root` of `kind` from `dev`. `max_bitmaps` bounds the
/// number of bitmaps (and so the memory) the reader may allocate: a valid map
/// never has more bitmaps than the metadata device has blocks.
///
/// # Errors
/// Every damaged piece found, in reading order.
pub fn read_space_map(
    dev: &dyn BlockDevice,
    kind: SmKind,
    root: SmRoot,
    max_bitmaps: u64,
    keep: TreeEntries,
) -> Result<DiskSpaceMap, Vec<SmErrorIn>> {
    let mut errors = Vec::new();
    let nr_bitmaps = root.nr_bitmaps();
    let limit = match kind {
        SmKind::Metadata => max_bitmaps.min(MAX_METADATA_BITMAPS as u64),
        SmKind::Data => max_bitmaps,
    };
    let mut refs = Vec::new();
    let index = if nr_bitmaps > limit {
        Err(vec![SmError::MissingEntry(limit)])
    } else {
        match kind {
            SmKind::Data => read_index_tree(dev, root.bitmap_root, nr_bitmaps, &mut refs),
            SmKind::Metadata => read_index_block(dev, root.bitmap_root, nr_bitmaps, &mut refs),
        }
    };
    // Fingerprinting reads the bitmaps before the tree (their errors are
    // still reported after the tree's, as in the other modes).
    let early = match (&index, keep) {
        (Ok((entries, _)), TreeEntries::Fingerprint(_)) => {
            let mut errs = Vec::new();
            let bitmaps = read_bitmaps(dev, entries, &mut errs);
            Some((bitmaps, errs))
        }
        _ => None,
    };
    let tree = if nr_bitmaps > limit {
        Err(Vec::new())
    } else {
        let bitmaps = early.as_ref().map(|(b, _)| &b[..]);
        read_ref_count_tree(dev, root, keep, bitmaps, &mut refs)
    };
    let (entries, slots) = match index {
        Ok(x) => x,
        Err(es) => {
            errors.extend(es);
            (Vec::new(), Vec::new())
        }
    };
    let (tree, tree_sum) = tree.unwrap_or_else(|es| {
        errors.extend(es);
        (
            RefCountTree {
                present: Vec::new(),
                kept: Vec::new(),
                beyond: Vec::new(),
            },
            Sum::default(),
        )
    });
    let bitmaps = match early {
        _ if !errors.is_empty() => Vec::new(),
        Some((bitmaps, errs)) => {
            errors.extend(errs);
            bitmaps
        }
        None => read_bitmaps(dev, &entries, &mut errors),
    };
    refs.extend(entries.iter().map(|e| e.blocknr));
    if !errors.is_empty() {
        return Err(errors
            .into_iter()
            .map(|error| SmErrorIn { kind, error })
            .collect());
    }
    let fingerprint = match keep {
        TreeEntries::Fingerprint(f) => Some(tree_sum.plus(bitmap_sum(f, &bitmaps, root.nr_blocks))),
        _ => None,
    };
    Ok(DiskSpaceMap {
        kind,
        root,
        entries,
        slots,
        bitmaps,
        tree,
        metadata_refs: refs,
        fingerprint,
    })
}

/// The fingerprint of the counts 1 and 2 the bitmaps hold (3 means the
/// ref-count tree holds the count).
fn bitmap_sum(f: &CountFingerprint, bitmaps: &[Block], nr_blocks: u64) -> Sum {
    bitmaps
        .par_iter()
        .enumerate()
        .map(|(i, bm)| {
            let first = i as u64 * ENTRIES_PER_BITMAP;
            let real = nr_blocks.saturating_sub(first).min(ENTRIES_PER_BITMAP);
            let mut sum = Sum::default();
            for (j, w) in bitmap_words(&bm.0).iter().enumerate() {
                let base = j as u64 * 32;
                if base >= real {
                    break;
                }
                let valid = if real - base >= 32 {
                    u32::MAX
                } else {
                    (1u32 << (real - base)) - 1
                };
                for count in [1, 2] {
                    let mut m = entries_with_count(w.get(), count) & valid;
                    while m != 0 {
                        let k = u64::from(m.trailing_zeros());
                        m &= m - 1;
                        sum = sum.plus(f.counted(first + base + k, count));
                    }
                }
            }
            sum
        })
        .reduce(Sum::default, Sum::plus)
}

type Index = (Vec<IndexEntry>, Vec<EntrySlot>);

fn read_index_tree(
    dev: &dyn BlockDevice,
    root: BlockNr,
    nr_bitmaps: u64,
    refs: &mut Vec<BlockNr>,
) -> Result<Index, Vec<SmError>> {
    let mut walker = Walker::new(dev);
    let mut found: Vec<(u64, IndexEntry, EntrySlot)> = Vec::new();
    walker.walk(
        &[root],
        INDEX_ENTRY_SIZE,
        |nr, node: &NodeRef| {
            node.keys()
                .iter()
                .zip(node.value_bytes().chunks_exact(INDEX_ENTRY_SIZE as usize))
                .enumerate()
                .map(|(slot, (k, v))| {
                    (
                        k.get(),
                        IndexEntry::from_bytes(v),
                        EntrySlot { block: nr, slot },
                    )
                })
                .collect::<Vec<_>>()
        },
        |_, v| found.extend(v),
    );
    let graph = walker.into_graph();
    tree_refs(&graph, root, refs);
    let errs = tree_errors(&graph, root);
    if !errs.is_empty() {
        return Err(errs.into_iter().map(SmError::Tree).collect());
    }
    found.sort_unstable_by_key(|&(k, _, _)| k);
    let mut entries = Vec::new();
    let mut slots = Vec::new();
    for i in 0..nr_bitmaps {
        match found.binary_search_by_key(&i, |&(k, _, _)| k) {
            Ok(p) => {
                entries.push(found[p].1);
                slots.push(found[p].2);
            }
            Err(_) => return Err(vec![SmError::MissingEntry(i)]),
        }
    }
    Ok((entries, slots))
}

fn read_index_block(
    dev: &dyn BlockDevice,
    at: BlockNr,
    nr_bitmaps: u64,
    refs: &mut Vec<BlockNr>,
) -> Result<Index, Vec<SmError>> {
    refs.push(at);
    let mut b = Block::zeroed();
    if dev.read_at(at, &mut b).is_err() {
        return Err(vec![SmError::IndexIo]);
    }
    if checksum::verify(&b.0, BlockKind::Index).is_err() {
        return Err(vec![SmError::IndexChecksum]);
    }
    let blocknr = read_u64(&b.0, BLOCKNR_OFFSET);
    if blocknr != at {
        return Err(vec![SmError::IndexBlocknr(blocknr)]);
    }
    let n = usize::try_from(nr_bitmaps).unwrap_or(MAX_METADATA_BITMAPS);
    let entries = b.0[INDEX_ENTRIES_OFFSET..]
        .chunks_exact(INDEX_ENTRY_SIZE as usize)
        .take(n)
        .map(IndexEntry::from_bytes)
        .collect();
    let slots = (0..n).map(|slot| EntrySlot { block: at, slot }).collect();
    Ok((entries, slots))
}

fn read_ref_count_tree(
    dev: &dyn BlockDevice,
    root: SmRoot,
    keep: TreeEntries,
    bitmaps: Option<&[Block]>,
    refs: &mut Vec<BlockNr>,
) -> Result<(RefCountTree, Sum), Vec<SmError>> {
    let nr_blocks = root.nr_blocks;
    let words = to_index(nr_blocks.div_ceil(64));
    let mut present: Vec<AtomicU64> = Vec::new();
    present
        .try_reserve_exact(words)
        .map_err(|_| vec![SmError::TooLarge(nr_blocks)])?;
    present.extend((0..words).map(|_| AtomicU64::new(0)));
    let mut walker = Walker::new(dev);
    let mut kept: Vec<(u64, u32)> = Vec::new();
    let mut beyond: Vec<(u64, u32)> = Vec::new();
    let mut total = Sum::default();
    // The bitmap count of a block (3 when the bitmaps were not read).
    let bitmap_says = |b: u64| {
        bitmaps.map_or(3, |bms| {
            bms.get(to_index(b / ENTRIES_PER_BITMAP))
                .map_or(0, |bm| bitmap_get(&bm.0, to_index(b % ENTRIES_PER_BITMAP)))
        })
    };
    walker.walk(
        &[root.ref_count_root],
        REF_COUNT_VALUE_SIZE,
        |_, node: &NodeRef| {
            let mut out: Vec<(u64, u32)> = Vec::new();
            let mut sum = Sum::default();
            let values = node
                .value_bytes()
                .chunks_exact(REF_COUNT_VALUE_SIZE as usize);
            // Keys ascend: the presence bits of one word are set at once.
            let (mut word, mut bits) = (usize::MAX, 0u64);
            for (k, v) in node.keys().iter().zip(values) {
                let (b, c) = (k.get(), u32::from_le_bytes([v[0], v[1], v[2], v[3]]));
                if b >= nr_blocks {
                    out.push((b, c));
                    continue;
                }
                let w = to_index(b / 64);
                if w != word {
                    set_bits(&present, word, bits);
                    (word, bits) = (w, 0);
                }
                bits |= 1 << (b % 64);
                let keep_it = match keep {
                    TreeEntries::All => true,
                    TreeEntries::Differing(f) => f(b, c),
                    TreeEntries::Fingerprint(_) => bitmap_says(b) != 3,
                };
                if keep_it {
                    out.push((b, c));
                } else if let TreeEntries::Fingerprint(f) = keep {
                    sum = sum.plus(f.counted(b, c));
                }
            }
            set_bits(&present, word, bits);
            (out, sum)
        },
        |_, (v, sum): (Vec<(u64, u32)>, Sum)| {
            total = total.plus(sum);
            for (b, c) in v {
                if b >= nr_blocks {
                    beyond.push((b, c));
                } else {
                    kept.push((b, c));
                }
            }
        },
    );
    let graph = walker.into_graph();
    tree_refs(&graph, root.ref_count_root, refs);
    let errs = tree_errors(&graph, root.ref_count_root);
    if !errs.is_empty() {
        return Err(errs.into_iter().map(SmError::Tree).collect());
    }
    kept.sort_unstable_by_key(|&(k, _)| k);
    Ok((
        RefCountTree {
            present: present.into_iter().map(AtomicU64::into_inner).collect(),
            kept,
            beyond,
        },
        total,
    ))
}

/// ORs `bits` into word `w` of `words` (nothing when `bits` is 0).
fn set_bits(words: &[AtomicU64], w: usize, bits: u64) {
    if bits != 0 {
        words[w].fetch_or(bits, Ordering::Relaxed);
    }
}

/// Reads and validates every bitmap an entry names.
fn read_bitmaps(
    dev: &dyn BlockDevice,
    entries: &[IndexEntry],
    errors: &mut Vec<SmError>,
) -> Vec<Block> {
    let mut order: Vec<(BlockNr, usize)> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.blocknr, i))
        .collect();
    order.sort_unstable();
    let unique: Vec<BlockNr> = {
        let mut u: Vec<BlockNr> = order.iter().map(|&(b, _)| b).collect();
        u.dedup();
        u
    };
    let mut bitmaps = Block::zeroed_vec(entries.len());
    let mut found: Vec<(usize, SmError)> = Vec::new();
    let mut pos = 0usize;
    read_sorted(dev, &unique, &mut |nr, r: std::io::Result<&Block>| {
        while pos < order.len() && order[pos].0 == nr {
            let i = order[pos].1;
            let entry = i as u64;
            match r {
                Err(_) => found.push((i, SmError::BitmapIo { block: nr, entry })),
                Ok(b) => match checksum::verify(&b.0, BlockKind::Bitmap) {
                    Err(ChecksumError::Mismatch { .. }) => {
                        found.push((i, SmError::BitmapChecksum { block: nr, entry }));
                    }
                    Err(ChecksumError::WrongKind { .. }) => {
                        found.push((i, SmError::NotABitmap { block: nr, entry }));
                    }
                    Ok(()) => {
                        let got = read_u64(&b.0, BLOCKNR_OFFSET);
                        if got != nr {
                            found.push((
                                i,
                                SmError::BitmapBlocknr {
                                    block: nr,
                                    found: got,
                                },
                            ));
                        }
                        bitmaps[i].0.copy_from_slice(&b.0);
                    }
                },
            }
            pos += 1;
        }
    });
    found.sort_by_key(|&(i, _)| i);
    errors.extend(found.into_iter().map(|(_, e)| e));
    bitmaps
}

fn read_u64(b: &[u8; BLOCK_SIZE], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(w)
}

/// The root reference plus one per parent entry of each distinct internal node.
fn tree_refs(graph: &TreeGraph, root: BlockNr, refs: &mut Vec<BlockNr>) {
    refs.push(root);
    refs.extend(graph.child_refs());
}

/// Every damaged node reachable from `root` and every link error inside the
/// tree, in depth-first order, each block once.
#[must_use]
pub fn tree_errors(graph: &TreeGraph, root: BlockNr) -> Vec<NodeError> {
    let mut out: Vec<NodeError> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![(root, 0usize)];
    while let Some((nr, depth)) = stack.pop() {
        if !seen.insert(nr) {
            continue;
        }
        match graph.node(nr).map(|s| s.state) {
            Some(NodeState::Bad(kind)) => out.push(NodeError { block: nr, kind }),
            None => out.push(NodeError {
                block: nr,
                kind: NodeErrorKind::Io,
            }),
            Some(NodeState::Internal) if depth >= crate::pdata::btree::walk::MAX_DEPTH => {
                out.push(NodeError {
                    block: nr,
                    kind: NodeErrorKind::TooDeep,
                });
            }
            Some(NodeState::Internal) => {
                for &c in graph.children(nr).iter().rev() {
                    stack.push((c, depth + 1));
                }
            }
            Some(NodeState::Leaf) => {}
        }
    }
    for e in &graph.link_errors {
        if seen.contains(&e.block) && !out.iter().any(|o| o.block == e.block) {
            out.push(*e);
        }
    }
    out
}

/// Statistics of one bitmap, as the index entry should record them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BitmapStats {
    /// Zero entries over all 16320 slots.
    pub nr_free: u32,
    /// First zero among the real entries, or the number of real entries.
    pub first_free: u32,
    /// Non-zero entries among the real entries.
    pub allocated: u32,
}

/// The statistics of a bitmap whose first `real` entries are real blocks.
#[must_use]
pub fn bitmap_stats(bitmap: &Block, real: u64) -> BitmapStats {
    const PAIRS: u64 = 0x5555_5555_5555_5555;
    let words = &bitmap.0[BITMAP_HEADER_SIZE..];
    let mut st = BitmapStats {
        nr_free: 0,
        first_free: low_u32(real.min(ENTRIES_PER_BITMAP)),
        allocated: 0,
    };
    let mut found_free = false;
    for (wi, w) in words.chunks_exact(8).enumerate() {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        let w = u64::from_le_bytes(a);
        let used = (w | (w >> 1)) & PAIRS;
        let free = !used & PAIRS;
        st.nr_free += free.count_ones();
        let base = wi as u64 * 32;
        let valid = real.saturating_sub(base).min(32);
        let mask = if valid >= 32 {
            PAIRS
        } else {
            PAIRS & ((1u64 << (2 * valid)) - 1)
        };
        st.allocated += (used & mask).count_ones();
        if !found_free && free & mask != 0 {
            found_free = true;
            let k = u64::from((free & mask).trailing_zeros() / 2);
            st.first_free = low_u32(base + k);
        }
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdata::space_map::disk::bitmap_set;

    #[test]
    fn stats_count_every_slot_and_find_the_first_free_entry() {
        let mut b = Block::zeroed();
        for i in 0..5 {
            bitmap_set(&mut b.0, i, 1);
        }
        bitmap_set(&mut b.0, 7, 3);
        let st = bitmap_stats(&b, 1000);
        assert_eq!((st.nr_free, st.first_free, st.allocated), (16320 - 6, 5, 6));
        // A full bitmap of 3 real entries: the first free entry is "none" = 3.
        let mut c = Block::zeroed();
        for i in 0..3 {
            bitmap_set(&mut c.0, i, 2);
        }
        let st = bitmap_stats(&c, 3);
        assert_eq!((st.nr_free, st.first_free, st.allocated), (16317, 3, 3));
    }

    #[test]
    fn a_map_too_large_to_count_is_an_error() {
        let dev = crate::pdata::io::MemDevice::new(4);
        let root = SmRoot {
            nr_blocks: u64::MAX,
            ..SmRoot::default()
        };
        let Err(errs) = read_ref_count_tree(&dev, root, TreeEntries::All, None, &mut Vec::new())
        else {
            panic!("an impossible allocation was accepted");
        };
        assert_eq!(errs, vec![SmError::TooLarge(u64::MAX)]);
        let e = SmErrorIn {
            kind: SmKind::Data,
            error: errs[0].clone(),
        };
        assert_eq!(
            e.to_string(),
            "data space map: 18446744073709551615 blocks are too many to count in memory"
        );
    }

    #[test]
    fn error_texts() {
        let e = SmErrorIn {
            kind: SmKind::Data,
            error: SmError::BitmapChecksum { block: 5, entry: 0 },
        };
        assert_eq!(
            e.to_string(),
            "data space map: checksum error at block 5, index entry 0"
        );
        let e = SmErrorIn {
            kind: SmKind::Metadata,
            error: SmError::IndexChecksum,
        };
        assert_eq!(
            e.to_string(),
            "metadata space map: bad checksum in index block"
        );
    }
}
