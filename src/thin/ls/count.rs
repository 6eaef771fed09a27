//! Counting each device's mapped, shared and exclusive blocks (formats.md §5).
//!
//! A mapping is *shared* when its leaf or any node above it is referenced
//! more than once (one reference per root plus one per child entry of each
//! distinct internal node), or when its data block is referenced by more than
//! one leaf entry (each distinct leaf counted once).
//!
//! Pass 1 walks every mapping tree once with the shared walker; leaf visitors
//! mark data blocks in two dense bitsets (seen once, seen again) from the
//! worker threads. Node reference counts come from the walker's graph. Only
//! the leaves whose whole path is referenced once ("exclusive-path" leaves)
//! can hold exclusive mappings; pass 2 re-reads just those to count their
//! entries whose data block was seen again. Memory: two bits per data block
//! and one byte per metadata block, never an entry per mapping.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::anyhow;

use crate::pdata::block::BlockNr;
use crate::pdata::btree::node::NodeRef;
use crate::pdata::btree::walk::{NodeState, TreeGraph, Walker};
use crate::pdata::io::BlockDevice;
use crate::thin::mapping::BlockTime;

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

/// Largest number of data blocks counted when the size must be guessed from
/// the mappings (damaged live superblock): bounds the allocation.
const GUESSED_DATA_BLOCKS_LIMIT: u64 = 1 << 32;

/// Data blocks referenced once / more than once, two bits per block, safe to
/// mark from several threads.
struct DataRefs {
    seen: Vec<AtomicU64>,
    again: Vec<AtomicU64>,
    nr_blocks: u64,
}

impl DataRefs {
    fn new(nr_blocks: u64) -> DataRefs {
        let words = usize::try_from(nr_blocks.div_ceil(64)).unwrap_or(0);
        let zeros = |n| (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        DataRefs {
            seen: zeros(words),
            again: zeros(words),
            nr_blocks,
        }
    }

    fn slot(&self, b: u64) -> Option<(usize, u64)> {
        (b < self.nr_blocks).then(|| (usize::try_from(b / 64).unwrap_or(0), 1u64 << (b % 64)))
    }

    /// Counts one reference; blocks beyond the space map are not counted
    /// (they then count as referenced once, as upstream does).
    fn inc(&self, b: u64) {
        if let Some((w, bit)) = self.slot(b) {
            if self.seen[w].fetch_or(bit, Ordering::Relaxed) & bit != 0 {
                self.again[w].fetch_or(bit, Ordering::Relaxed);
            }
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
) -> anyhow::Result<Vec<DeviceCounts>> {
    let nr_data_blocks = match nr_data_blocks {
        Some(n) => n,
        None => guess_nr_data_blocks(dev, roots),
    };
    let refs = DataRefs::new(nr_data_blocks);
    let mut walker = Walker::new(dev);
    walker.walk(
        roots,
        8,
        |_, n: &NodeRef| data_blocks(n).for_each(|b| refs.inc(b)),
        |_, ()| {},
    );
    let graph = walker.into_graph();
    if damaged(&graph, roots) {
        return Err(anyhow!("metadata contains errors"));
    }
    let rc = node_ref_counts(&graph, roots, dev.nr_blocks());
    let totals = graph.subtree_totals();
    let mut excl_leaves: Vec<Vec<BlockNr>> = Vec::with_capacity(roots.len());
    for &root in roots {
        excl_leaves.push(exclusive_path_leaves(&graph, &rc, root));
    }
    let shared_in_leaf = count_shared_in_leaves(dev, &excl_leaves, &refs);
    let mut out = Vec::with_capacity(roots.len());
    for (&root, leaves) in roots.iter().zip(&excl_leaves) {
        let mapped = totals.get(&root).map_or(0, |t| t.entries);
        let exclusive: u64 = leaves
            .iter()
            .map(|l| {
                let entries = graph.node(*l).map_or(0, |s| u64::from(s.nr_entries));
                entries - u64::from(shared_in_leaf.get(l).copied().unwrap_or(0))
            })
            .sum();
        out.push(DeviceCounts {
            mapped,
            shared: mapped - exclusive.min(mapped),
            highest: highest_key(&graph, root),
        });
    }
    Ok(out)
}

/// Highest mapped data block + 1, capped, for counting without a live
/// superblock.
fn guess_nr_data_blocks(dev: &dyn BlockDevice, roots: &[BlockNr]) -> u64 {
    let mut highest: Option<u64> = None;
    let mut walker = Walker::new(dev);
    walker.walk(
        roots,
        8,
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
fn node_ref_counts(graph: &TreeGraph, roots: &[BlockNr], nr_blocks: u64) -> Vec<u8> {
    let mut rc = vec![0u8; usize::try_from(nr_blocks).unwrap_or(0)];
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
    rc
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

/// Pass 2: for each exclusive-path leaf, the number of its entries whose data
/// block is referenced more than once.
fn count_shared_in_leaves(
    dev: &dyn BlockDevice,
    leaves: &[Vec<BlockNr>],
    refs: &DataRefs,
) -> HashMap<BlockNr, u32> {
    let all: Vec<BlockNr> = leaves.iter().flatten().copied().collect();
    let mut out = HashMap::with_capacity(all.len());
    if all.is_empty() {
        return out;
    }
    let mut walker = Walker::new(dev);
    walker.walk(
        &all,
        8,
        |_, n: &NodeRef| {
            let shared = data_blocks(n).filter(|&b| refs.shared(b)).count();
            u32::try_from(shared).unwrap_or(u32::MAX)
        },
        |nr, shared| {
            out.insert(nr, shared);
        },
    );
    out
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
