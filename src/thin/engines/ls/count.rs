//! Counting each device's mapped, shared and exclusive blocks.
//!
//! A mapping is *shared* when its leaf or any node above it is referenced
//! more than once (one reference per root plus one per child entry of each
//! distinct internal node), or when its data block is referenced by more than
//! one leaf entry (each distinct leaf counted once).
//!
//! Every mapping tree is walked once with the shared walker. Node reference
//! counts come from the walker's graph; only the leaves whose whole path is
//! referenced once ("exclusive-path" leaves) can hold exclusive mappings.
//! Data references are counted one of two ways ([`Counting`]):
//! - `Owners` (small pools only, while the table stays under 16 MiB): one
//!   32-bit slot per data block records the one leaf referencing it, or
//!   "shared"; a leaf's exclusive entries are then the slots it owns. One
//!   read of every leaf.
//! - `Rescan` (the default): two bits per data block (seen once, seen again);
//!   each device's exclusive-path leaves are then read a second time, in
//!   block order and in parallel chunks, counting the entries whose data
//!   block was not seen again. Only a count per device is kept.
//!
//! Both are dense arrays filled from the walker's worker threads with atomic
//! operations; there is never an entry per mapping. Memory: the walker's
//! graph (one summary per metadata node), one byte per metadata block for
//! node reference counts, and two bits per data block (or, for small pools,
//! at most 16 MiB of owner slots).

use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use rayon::prelude::*;

use crate::pdata::block::{Block, BlockNr};
use crate::pdata::btree::node::NodeRef;
use crate::pdata::btree::walk::{NodeState, TreeGraph, Walker};
use crate::pdata::io::{read_sorted, BlockDevice};
use crate::thin::model::mapping::BlockTime;
use crate::thin::model::mapping::MAPPING_VALUE_SIZE;

use super::LsError;

/// Counts for one device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceCounts {
    /// Mappings found by walking the tree.
    pub mapped: u64,
    /// Mappings that are shared.
    pub shared: u64,
    /// Highest mapped thin block (0 when nothing is mapped).
    pub highest: u64,
}

impl DeviceCounts {
    /// Mapped minus shared.
    #[must_use]
    pub fn exclusive(&self) -> u64 {
        self.mapped - self.shared
    }
}

/// How data block references are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counting {
    /// One owner slot (4 bytes) per data block, one pass over the leaves.
    Owners,
    /// Two bits per data block, exclusive-path leaves read twice.
    Rescan,
}

/// Largest owner table (bytes) before falling back to [`Counting::Rescan`].
const OWNERS_BUDGET: u64 = 16 << 20;

/// Owner slot: no reference yet.
const NO_OWNER: u32 = 0;
/// Owner slot: referenced more than once.
const SHARED: u32 = u32::MAX;

/// For each data block, the one leaf referencing it (block number + 1), or
/// [`NO_OWNER`] / [`SHARED`].
struct Owners {
    slots: Vec<AtomicU32>,
}

impl Owners {
    fn new(nr_blocks: u64) -> Result<Owners, LsError> {
        Ok(Owners {
            slots: (0..index(nr_blocks)?)
                .map(|_| AtomicU32::new(NO_OWNER))
                .collect(),
        })
    }

    /// Records a reference from leaf `tag`; false when `b` is beyond the
    /// space map (such a reference is not counted, as upstream does).
    fn claim(&self, b: u64, tag: u32) -> bool {
        let Some(slot) = usize::try_from(b).ok().and_then(|i| self.slots.get(i)) else {
            return false;
        };
        if let Err(cur) = slot.compare_exchange(NO_OWNER, tag, Ordering::Relaxed, Ordering::Relaxed)
        {
            if cur != SHARED {
                slot.store(SHARED, Ordering::Relaxed);
            }
        }
        true
    }
}

/// Largest number of data blocks counted when the size must be guessed from
/// the mappings (damaged live superblock): bounds the allocation.
const GUESSED_DATA_BLOCKS_LIMIT: u64 = 1 << 30;

/// Data blocks referenced once / more than once, two bits per block, safe to
/// mark from several threads.
struct DataRefs {
    seen: Vec<AtomicU64>,
    again: Vec<AtomicU64>,
    nr_blocks: u64,
}

impl DataRefs {
    fn new(nr_blocks: u64) -> Result<DataRefs, LsError> {
        let words = index(nr_blocks.div_ceil(64))?;
        let zeros = |n| (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Ok(DataRefs {
            seen: zeros(words),
            again: zeros(words),
            nr_blocks,
        })
    }

    fn slot(&self, b: u64) -> Option<(usize, u64)> {
        let word = usize::try_from(b / 64).ok()?;
        (b < self.nr_blocks).then_some((word, 1u64 << (b % 64)))
    }

    /// Counts one reference per block of a leaf; blocks beyond the space
    /// map are not counted (they then count as referenced once, as upstream
    /// does). Neighbouring blocks of the same 64-block word are marked with
    /// one atomic operation: a leaf of ascending data blocks touches a few
    /// words, not one per entry.
    fn inc_all(&self, blocks: impl Iterator<Item = u64>) {
        let mut word = usize::MAX;
        let mut mask = 0u64;
        let mut twice = 0u64;
        for b in blocks {
            let Some((w, bit)) = self.slot(b) else {
                continue;
            };
            if w != word {
                self.mark(word, mask, twice);
                (word, mask, twice) = (w, 0, 0);
            }
            twice |= mask & bit;
            mask |= bit;
        }
        self.mark(word, mask, twice);
    }

    /// Marks the blocks of `mask` in word `w` seen, and those of `twice` (or
    /// already seen) seen again.
    fn mark(&self, w: usize, mask: u64, twice: u64) {
        if mask == 0 {
            return;
        }
        let again = (self.seen[w].fetch_or(mask, Ordering::Relaxed) & mask) | twice;
        if again != 0 {
            self.again[w].fetch_or(again, Ordering::Relaxed);
        }
    }

    fn shared(&self, b: u64) -> bool {
        self.slot(b)
            .is_some_and(|(w, bit)| self.again[w].load(Ordering::Relaxed) & bit != 0)
    }
}

fn data_blocks<'a>(n: &'a NodeRef) -> impl Iterator<Item = u64> + 'a {
    n.values_u64()
        .iter()
        .map(|v| BlockTime::unpack(v.get()).block)
}

/// Counts every device whose bottom-level root is in `roots` (in that order).
/// `nr_data_blocks` sizes the data counters (the live superblock's data space
/// map); `None` sizes them from the highest mapped data block.
///
/// # Errors
/// `metadata contains errors` when any mapping tree is damaged.
pub fn count_devices(
    dev: &dyn BlockDevice,
    roots: &[BlockNr],
    nr_data_blocks: Option<u64>,
) -> Result<Vec<DeviceCounts>, LsError> {
    let nr_data_blocks = match nr_data_blocks {
        Some(n) => n,
        None => guess_nr_data_blocks(dev, roots),
    };
    let fits = nr_data_blocks.saturating_mul(4) <= OWNERS_BUDGET
        && dev.nr_blocks() < u64::from(SHARED - 1);
    let how = if fits {
        Counting::Owners
    } else {
        Counting::Rescan
    };
    count_devices_with(dev, roots, nr_data_blocks, how)
}

/// As [`count_devices`] with the data block counting chosen by the caller.
///
/// # Errors
/// `metadata contains errors` when any mapping tree is damaged.
pub fn count_devices_with(
    dev: &dyn BlockDevice,
    roots: &[BlockNr],
    nr_data_blocks: u64,
    how: Counting,
) -> Result<Vec<DeviceCounts>, LsError> {
    let mut walker = Walker::new(dev);
    let (owned, refs) = match how {
        Counting::Owners => {
            let mut exclusive = ExclusiveInLeaves::new(dev.nr_blocks())?;
            claim_owners(&mut walker, roots, nr_data_blocks, &mut exclusive)?;
            (Some(exclusive), None)
        }
        Counting::Rescan => {
            let bits = DataRefs::new(nr_data_blocks)?;
            walker.walk(
                roots,
                MAPPING_VALUE_SIZE,
                |_, n: &NodeRef| bits.inc_all(data_blocks(n)),
                |_, ()| {},
            );
            (None, Some(bits))
        }
    };
    let graph = walker.into_graph();
    if damaged(&graph, roots) {
        return Err(LsError::Damaged);
    }
    let rc = node_ref_counts(&graph, roots, dev.nr_blocks())?;
    let totals = graph.totals_of_roots(roots);
    let mut out = Vec::with_capacity(roots.len());
    for (&root, total) in roots.iter().zip(&totals) {
        let leaves = exclusive_path_leaves(&graph, &rc, root);
        let excl = match (&owned, &refs) {
            (Some(exclusive), _) => leaves.iter().map(|&l| exclusive.get(l)).sum(),
            (None, Some(bits)) => unshared_entries(dev, leaves, bits)?,
            (None, None) => 0,
        };
        let mapped = total.entries;
        out.push(DeviceCounts {
            mapped,
            shared: mapped - excl.min(mapped),
            highest: highest_key(&graph, root),
        });
    }
    Ok(out)
}

/// Exclusive entries per leaf, indexed by block number.
struct ExclusiveInLeaves(Vec<u32>);

impl ExclusiveInLeaves {
    fn new(nr_blocks: u64) -> Result<Self, LsError> {
        Ok(ExclusiveInLeaves(vec![0u32; index(nr_blocks)?]))
    }

    fn add(&mut self, leaf: BlockNr, n: u32) {
        if let Some(c) = usize::try_from(leaf).ok().and_then(|i| self.0.get_mut(i)) {
            *c = c.saturating_add(n);
        }
    }

    fn get(&self, leaf: BlockNr) -> u64 {
        usize::try_from(leaf)
            .ok()
            .and_then(|i| self.0.get(i))
            .map_or(0, |&c| u64::from(c))
    }
}

/// A block count as an array length.
fn index(nr_blocks: u64) -> Result<usize, LsError> {
    usize::try_from(nr_blocks).map_err(|_| LsError::TooLarge(nr_blocks))
}

/// The owner-tag counting: each data block remembers the first leaf that
/// claimed it; a leaf's entries claimed by nobody else are exclusive to it.
fn claim_owners(
    walker: &mut Walker,
    roots: &[BlockNr],
    nr_data_blocks: u64,
    exclusive: &mut ExclusiveInLeaves,
) -> Result<(), LsError> {
    let owners = Owners::new(nr_data_blocks)?;
    let mut unclaimed: Vec<(BlockNr, u32)> = Vec::new();
    walker.walk(
        roots,
        MAPPING_VALUE_SIZE,
        |nr, n: &NodeRef| {
            let tag = u32::try_from(nr + 1).unwrap_or(SHARED);
            let out = data_blocks(n).filter(|&b| !owners.claim(b, tag)).count();
            u32::try_from(out).unwrap_or(u32::MAX)
        },
        |nr, out| {
            if out > 0 {
                unclaimed.push((nr, out));
            }
        },
    );
    for slot in &owners.slots {
        let tag = slot.load(Ordering::Relaxed);
        if tag != NO_OWNER && tag != SHARED {
            exclusive.add(u64::from(tag - 1), 1);
        }
    }
    for (nr, out) in unclaimed {
        exclusive.add(nr, out);
    }
    Ok(())
}

/// Highest mapped data block + 1, capped, for counting without a live
/// superblock.
fn guess_nr_data_blocks(dev: &dyn BlockDevice, roots: &[BlockNr]) -> u64 {
    let mut highest: Option<u64> = None;
    let mut walker = Walker::new(dev);
    walker.walk(
        roots,
        MAPPING_VALUE_SIZE,
        |_, n: &NodeRef| data_blocks(n).max(),
        |_, m: Option<u64>| highest = highest.max(m),
    );
    highest.map_or(0, |h| h.saturating_add(1).min(GUESSED_DATA_BLOCKS_LIMIT))
}

/// True when a node under any root is bad or the trees break a structural rule.
fn damaged(graph: &TreeGraph, roots: &[BlockNr]) -> bool {
    let mut bad = false;
    for &root in roots {
        let _ = graph.leaves_of(root, |_, _| bad = true);
    }
    bad || !graph.link_errors.is_empty()
}

/// Reference counts of tree nodes, saturating at 2: one per root occurrence,
/// one per child entry of each distinct internal node.
fn node_ref_counts(
    graph: &TreeGraph,
    roots: &[BlockNr],
    nr_blocks: u64,
) -> Result<Vec<u8>, LsError> {
    let mut rc = vec![0u8; index(nr_blocks)?];
    let mut inc = |b: BlockNr| {
        if let Some(c) = usize::try_from(b).ok().and_then(|i| rc.get_mut(i)) {
            *c = c.saturating_add(1).min(2);
        }
    };
    roots.iter().for_each(|&r| inc(r));
    for (nr, s) in graph.iter() {
        if s.state == NodeState::Internal {
            graph.children(nr).iter().for_each(|&c| inc(c));
        }
    }
    Ok(rc)
}

fn rc_of(rc: &[u8], b: BlockNr) -> u8 {
    usize::try_from(b)
        .ok()
        .and_then(|i| rc.get(i))
        .copied()
        .unwrap_or(2)
}

/// Leaves under `root` reached through nodes that are each referenced once.
fn exclusive_path_leaves(graph: &TreeGraph, rc: &[u8], root: BlockNr) -> Vec<BlockNr> {
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(nr) = stack.pop() {
        if rc_of(rc, nr) != 1 {
            continue;
        }
        match graph.node(nr).map(|s| s.state) {
            Some(NodeState::Leaf) => out.push(nr),
            Some(NodeState::Internal) => stack.extend(graph.children(nr).iter().rev()),
            _ => {}
        }
    }
    out
}

/// Leaves read together in the second pass (4 MiB of metadata).
const RESCAN_CHUNK: usize = 1024;

/// Pass 2: the entries of `leaves` (a device's exclusive-path leaves) whose
/// data block is referenced once. The leaves are read again in block order,
/// in chunks spread over the worker threads; only a count is kept. Pass 1
/// verified their checksums and keys, so only the header rules that bound
/// the values are checked again, and the keys are not read.
///
/// # Errors
/// `metadata contains errors` when a leaf read in pass 1 no longer reads as
/// a valid leaf.
fn unshared_entries(
    dev: &dyn BlockDevice,
    mut leaves: Vec<BlockNr>,
    refs: &DataRefs,
) -> Result<u64, LsError> {
    leaves.sort_unstable();
    leaves
        .par_chunks(RESCAN_CHUNK)
        .map(|chunk| {
            let mut n = 0u64;
            let mut damaged = false;
            read_sorted(dev, chunk, &mut |nr, r: io::Result<&Block>| {
                let leaf = r
                    .ok()
                    .and_then(|b| NodeRef::parse_rechecked(&b.0, nr, MAPPING_VALUE_SIZE).ok())
                    .filter(NodeRef::is_leaf);
                match leaf {
                    Some(leaf) => {
                        n += data_blocks(&leaf).filter(|&b| !refs.shared(b)).count() as u64;
                    }
                    None => damaged = true,
                }
            });
            if damaged {
                Err(LsError::Damaged)
            } else {
                Ok(n)
            }
        })
        .try_reduce(|| 0, |a, b| Ok(a + b))
}

/// The last key of the rightmost leaf under `root` (0 for an empty tree).
fn highest_key(graph: &TreeGraph, root: BlockNr) -> u64 {
    let mut nr = root;
    for _ in 0..crate::pdata::btree::walk::MAX_DEPTH {
        match graph.node(nr) {
            Some(s) if s.state == NodeState::Leaf => return s.last_key,
            Some(s) if s.state == NodeState::Internal => match graph.children(nr).last() {
                Some(&c) => nr = c,
                None => return 0,
            },
            _ => return 0,
        }
    }
    0
}
