//! Walking the internal levels only: the leaves are listed, not read.
//!
//! thin_dump and thin_delta read every leaf once anyway (to render or to
//! compare it); reading the leaves in the walk as well would read each of
//! them twice. A node does not record its height, so the walk probes: the
//! first child of each new internal node is read, and when it is a leaf the
//! node is a *leaf parent* (a valid tree is balanced, so all its children
//! are leaves) whose children are recorded unread, with the key bounds the
//! parent gives them. Otherwise its children are read as usual. Whoever
//! reads the unread leaves applies the checks the walk would have made:
//! checksum and header ([`crate::pdata::btree::node::NodeRef::new`]), the
//! leaf flag and [`LeafBounds::admit`].

use std::io;

use rayon::prelude::*;
use rustc_hash::FxHashSet;

use crate::pdata::block::{Block, BlockNr};
use crate::pdata::btree::node::{NodeErrorKind, NodeRef};
use crate::pdata::btree::walk::{LevelRefs, NodeState, TreeGraph, Walker, TASK};
use crate::pdata::io::read_sorted;

/// The key range a parent allows its child (as the walker checks a child it
/// has read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafBounds {
    /// No key below this (the parent's key for the child).
    pub lo: u64,
    /// No key above this (the parent's next key; `u64::MAX` for a last
    /// child). A last key equal to it is tolerated, as the kernel does.
    pub hi: u64,
}

impl LeafBounds {
    /// True when a leaf whose keys run from `first` to `last` fits (an empty
    /// leaf always fits).
    #[must_use]
    pub fn admit(&self, nr_entries: usize, first: u64, last: u64) -> bool {
        nr_entries == 0 || (first >= self.lo && last <= self.hi)
    }
}

/// What [`Walker::walk_to_leaf_parents`] left unread: the leaf parents and,
/// per unread leaf, its bounds (intersected over every parent entry that
/// references it).
#[derive(Default)]
pub struct UnreadLeaves {
    parents: FxHashSet<BlockNr>,
    /// (leaf, bounds), sorted by leaf, one entry per leaf once finished.
    bounds: Vec<(BlockNr, LeafBounds)>,
}

impl UnreadLeaves {
    /// The leaves under `root`, left to right: the valid leaves the walk
    /// read and the unread children of leaf parents. Bad or missing nodes
    /// are skipped and reported through `bad` (block, kind).
    pub fn leaves_of(
        &self,
        graph: &TreeGraph,
        root: BlockNr,
        bad: impl FnMut(BlockNr, NodeErrorKind),
    ) -> Vec<BlockNr> {
        graph.leaves_below(root, |nr| self.parents.contains(&nr), bad)
    }

    /// The bounds of an unread leaf (None for a leaf the walk read, such as
    /// a root).
    #[must_use]
    pub fn bounds(&self, leaf: BlockNr) -> Option<LeafBounds> {
        self.bounds
            .binary_search_by_key(&leaf, |&(b, _)| b)
            .ok()
            .map(|i| self.bounds[i].1)
    }

    /// Number of distinct unread leaves.
    #[must_use]
    pub fn len(&self) -> usize {
        self.bounds.len()
    }

    /// True when no leaf was left unread.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.bounds.is_empty()
    }

    /// Sorts the references and intersects the bounds of each leaf's.
    fn finish(&mut self) {
        self.bounds.sort_unstable_by_key(|&(b, _)| b);
        self.bounds.dedup_by(|later, kept| {
            if later.0 != kept.0 {
                return false;
            }
            kept.1.lo = kept.1.lo.max(later.1.lo);
            kept.1.hi = kept.1.hi.min(later.1.hi);
            true
        });
    }
}

impl Walker<'_> {
    /// As [`Walker::walk`] without reading the leaves below internal nodes:
    /// those are returned unread (see the module comment). Roots that are
    /// leaves, and leaves of unbalanced trees below nodes whose first child is
    /// internal, are read as usual and recorded in the graph.
    pub fn walk_to_leaf_parents(
        &mut self,
        roots: &[BlockNr],
        leaf_value_size: u32,
    ) -> UnreadLeaves {
        let mut unread = UnreadLeaves::default();
        self.walk_levels(
            roots,
            leaf_value_size,
            &|_, _| (),
            |_, ()| {},
            Some(&mut unread),
        );
        unread.finish();
        unread
    }

    /// Sorts a level's new internal nodes into leaf parents (children
    /// recorded in `unread`) and the others (children pushed to `next`).
    pub(super) fn split_leaf_parents(
        &mut self,
        parents: &[(BlockNr, Vec<(u64, BlockNr)>)],
        leaf_value_size: u32,
        unread: &mut UnreadLeaves,
        next: &mut LevelRefs,
    ) {
        let mut probe: Vec<BlockNr> = parents
            .iter()
            .filter_map(|(_, links)| links.first().map(|&(_, c)| c))
            .filter(|c| !self.graph.nodes.contains_key(*c))
            .collect();
        probe.sort_unstable();
        probe.dedup();
        let leaves = self.probe_leaves(&probe, leaf_value_size);
        for (nr, links) in parents {
            let first = links.first().map(|&(_, c)| c);
            let leaf_parent = first.is_some_and(|c| match self.graph.nodes.get(c) {
                Some(s) => s.state == NodeState::Leaf,
                None => leaves.contains(&c),
            });
            if !leaf_parent {
                next.push_parent(links);
                continue;
            }
            for (i, &(key, child)) in links.iter().enumerate() {
                let hi = links.get(i + 1).map_or(u64::MAX, |&(k, _)| k);
                unread.bounds.push((child, LeafBounds { lo: key, hi }));
            }
            self.heights.insert(*nr, 1);
            unread.parents.insert(*nr);
        }
    }

    /// The blocks of `sorted` that are valid leaves.
    fn probe_leaves(&self, sorted: &[BlockNr], leaf_value_size: u32) -> FxHashSet<BlockNr> {
        let dev = self.dev;
        sorted
            .par_chunks(TASK)
            .flat_map_iter(|chunk| {
                let mut found = Vec::new();
                read_sorted(dev, chunk, &mut |nr, r: io::Result<&Block>| {
                    let leaf = r.is_ok_and(|b| {
                        NodeRef::new(&b.0, nr, leaf_value_size).is_ok_and(|n| n.is_leaf())
                    });
                    if leaf {
                        found.push(nr);
                    }
                });
                found
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_of_a_leaf_referenced_twice_are_intersected() {
        let mut u = UnreadLeaves::default();
        u.bounds.push((7, LeafBounds { lo: 10, hi: 50 }));
        u.bounds.push((
            3,
            LeafBounds {
                lo: 0,
                hi: u64::MAX,
            },
        ));
        u.bounds.push((7, LeafBounds { lo: 20, hi: 40 }));
        u.finish();
        assert_eq!(u.len(), 2);
        assert_eq!(u.bounds(7), Some(LeafBounds { lo: 20, hi: 40 }));
        assert_eq!(u.bounds(4), None);
        let b = u.bounds(7).unwrap();
        assert!(b.admit(2, 20, 40));
        assert!(!b.admit(2, 19, 30));
        assert!(!b.admit(2, 25, 41));
        assert!(b.admit(0, 0, 0));
    }
}
