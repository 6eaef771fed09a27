//! The one btree walker.
//!
//! Every tool that reads trees goes through [`Walker`]: it reads nodes level by
//! level (each level sorted by block number, coalesced into large reads and
//! validated on several threads), visits each distinct node once, and records
//! a compact [`NodeSummary`] per node in a [`TreeGraph`]. Tools pass a leaf
//! function that runs on worker threads and a collector that receives its
//! results on the calling thread in ascending block order; everything else
//! (reference counts, per-root mapping counts, leaf sequences for dump,
//! key-range and balance checks) is derived from the graph.

use std::io;

use rayon::prelude::*;
use rustc_hash::FxHashMap as HashMap;

use crate::pdata::block::{Block, BlockNr};
use crate::pdata::btree::node::{NodeError, NodeErrorKind, NodePosition, NodeRef};
use crate::pdata::btree::node_map::NodeMap;
use crate::pdata::io::{read_sorted, BlockDevice};

mod leaf_parents;

pub use leaf_parents::{LeafBounds, UnreadLeaves};

/// Deeper than any real tree (real ones have at most 5 levels): a cycle guard.
pub const MAX_DEPTH: usize = 16;
/// Blocks read per window of a level (bounds memory).
const WINDOW: usize = 8192;
/// Blocks per parallel task inside a window.
const TASK: usize = 512;

/// What a node turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// A valid leaf.
    Leaf,
    /// A valid internal node.
    Internal,
    /// Unreadable or invalid.
    Bad(NodeErrorKind),
}

/// Compact record of one distinct node: 24 bytes, kept for every node a
/// walk reads.
#[derive(Clone, Copy, Debug)]
pub struct NodeSummary {
    /// First key (0 when empty or bad).
    pub first_key: u64,
    /// Last key (0 when empty or bad).
    pub last_key: u64,
    /// Where the node's children start in the graph's child list.
    children_start: u32,
    /// The entry count (low bits) and two flags, see [`ENTRIES_MASK`].
    entries_and_flags: u16,
    /// Leaf, internal, or bad.
    pub state: NodeState,
    /// A non-fatal issue (`% 3`, underfull non-root internal node).
    pub non_fatal: Option<NodeErrorKind>,
}

const _: () = assert!(std::mem::size_of::<NodeSummary>() == 24);

/// The bits of `entries_and_flags` holding the entry count: a valid node
/// has at most 4064 / 9 entries (one-byte values), far below 2^14.
const ENTRIES_MASK: u16 = (1 << 14) - 1;
/// Set when the node's children were added to the graph's child list (one
/// per entry); kept when the node is later marked bad.
const HAS_CHILDREN: u16 = 1 << 14;
/// Set for an internal node less than a third full (non-fatal unless it is
/// a root).
const UNDERFULL: u16 = 1 << 15;

impl NodeSummary {
    /// Entries in the node (0 for bad nodes).
    #[must_use]
    pub fn nr_entries(&self) -> u32 {
        u32::from(self.entries_and_flags & ENTRIES_MASK)
    }

    fn underfull(&self) -> bool {
        self.entries_and_flags & UNDERFULL != 0
    }

    /// The stretch of the graph's child list holding the children.
    fn children_range(&self) -> std::ops::Range<usize> {
        if self.entries_and_flags & HAS_CHILDREN == 0 {
            return 0..0;
        }
        let a = self.children_start as usize;
        a..a + self.nr_entries() as usize
    }
}

/// A warning the kernel tolerates (key equal to the next parent key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyWarning {
    /// The node holding the key.
    pub block: BlockNr,
    /// The key.
    pub key: u64,
}

/// Everything learned about the nodes walked so far.
#[derive(Default)]
pub struct TreeGraph {
    nodes: NodeMap<NodeSummary>,
    children: Vec<BlockNr>,
    /// Structural errors found between nodes (key ranges, balance, depth),
    /// attributed to the child block.
    pub link_errors: Vec<NodeError>,
    /// Keys equal to the next parent key.
    pub key_warnings: Vec<KeyWarning>,
}

impl TreeGraph {
    /// The summary of node `nr`, if it was walked.
    #[must_use]
    pub fn node(&self, nr: BlockNr) -> Option<&NodeSummary> {
        self.nodes.get(nr)
    }

    /// Children of an internal node (empty for leaves, bad or unknown nodes).
    #[must_use]
    pub fn children(&self, nr: BlockNr) -> &[BlockNr] {
        match self.nodes.get(nr) {
            Some(s) => &self.children[s.children_range()],
            None => &[],
        }
    }

    /// Every distinct node walked, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (BlockNr, &NodeSummary)> {
        self.nodes.iter()
    }

    /// Number of distinct nodes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when nothing was walked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Marks node `nr` bad after the fact (a leaf whose values are out of
    /// bounds, a node breaking a link rule), so that [`TreeGraph::leaves_of`]
    /// and [`TreeGraph::subtree_totals`] treat it as an error. Its recorded
    /// children are kept: the references still exist on disk.
    pub fn mark_bad(&mut self, nr: BlockNr, kind: NodeErrorKind) {
        if let Some(s) = self.nodes.get_mut(nr) {
            s.state = NodeState::Bad(kind);
        } else {
            self.nodes.insert(nr, bad_summary(kind));
        }
    }

    /// Every reference held by an internal node: each child once per parent
    /// entry, each distinct parent once (a child shared by two parents is
    /// referenced twice). Roots are not included.
    pub fn child_refs(&self) -> impl Iterator<Item = BlockNr> + '_ {
        self.nodes
            .values()
            .flat_map(|s| self.children[s.children_range()].iter().copied())
    }

    /// The valid leaves under `root`, left to right. Bad nodes are skipped and
    /// reported through `bad` (block, kind).
    pub fn leaves_of(
        &self,
        root: BlockNr,
        bad: impl FnMut(BlockNr, NodeErrorKind),
    ) -> Vec<BlockNr> {
        self.leaves_below(root, |_| false, bad)
    }

    /// The leaves under `root`, left to right, where an internal node for
    /// which `leaf_parent` holds contributes its children as they are (they
    /// were not read). Bad or missing nodes are skipped and reported through
    /// `bad` (block, kind).
    pub(crate) fn leaves_below(
        &self,
        root: BlockNr,
        leaf_parent: impl Fn(BlockNr) -> bool,
        mut bad: impl FnMut(BlockNr, NodeErrorKind),
    ) -> Vec<BlockNr> {
        let mut out = Vec::new();
        let mut stack = vec![(root, 0usize)];
        while let Some((nr, depth)) = stack.pop() {
            match self.nodes.get(nr).map(|s| s.state) {
                Some(NodeState::Leaf) => out.push(nr),
                Some(NodeState::Internal) if depth >= MAX_DEPTH => {
                    bad(nr, NodeErrorKind::TooDeep);
                }
                Some(NodeState::Internal) if leaf_parent(nr) => {
                    out.extend_from_slice(self.children(nr));
                }
                Some(NodeState::Internal) => {
                    for &c in self.children(nr).iter().rev() {
                        stack.push((c, depth + 1));
                    }
                }
                Some(NodeState::Bad(k)) => bad(nr, k),
                None => bad(nr, NodeErrorKind::Io),
            }
        }
        out
    }

    /// Per-node totals, computed bottom-up with memoisation: for each node the
    /// number of leaf entries and the number of bad nodes beneath it.
    #[must_use]
    pub fn subtree_totals(&self) -> HashMap<BlockNr, SubtreeTotals> {
        let mut memo: HashMap<BlockNr, SubtreeTotals> =
            HashMap::with_capacity_and_hasher(self.nodes.len(), Default::default());
        for nr in self.nodes.keys() {
            let t = self.totals_of(nr, &mut memo, 0);
            memo.insert(nr, t);
        }
        memo
    }

    /// As [`TreeGraph::subtree_totals`] for the given roots only, in order:
    /// only internal nodes get memo entries, so this costs little when the
    /// graph is mostly leaves.
    #[must_use]
    pub fn totals_of_roots(&self, roots: &[BlockNr]) -> Vec<SubtreeTotals> {
        let mut memo: HashMap<BlockNr, SubtreeTotals> = HashMap::default();
        roots
            .iter()
            .map(|&r| self.totals_of(r, &mut memo, 0))
            .collect()
    }

    fn totals_of(
        &self,
        nr: BlockNr,
        memo: &mut HashMap<BlockNr, SubtreeTotals>,
        depth: usize,
    ) -> SubtreeTotals {
        if let Some(s) = self.nodes.get(nr) {
            if s.state == NodeState::Leaf {
                return SubtreeTotals {
                    entries: u64::from(s.nr_entries()),
                    errors: 0,
                };
            }
        }
        if let Some(t) = memo.get(&nr) {
            return *t;
        }
        let t = match self.nodes.get(nr) {
            Some(s) => match s.state {
                NodeState::Leaf => SubtreeTotals {
                    entries: u64::from(s.nr_entries()),
                    errors: 0,
                },
                NodeState::Bad(_) => SubtreeTotals {
                    entries: 0,
                    errors: 1,
                },
                NodeState::Internal if depth >= MAX_DEPTH => SubtreeTotals {
                    entries: 0,
                    errors: 1,
                },
                NodeState::Internal => {
                    let mut t = SubtreeTotals::default();
                    for &c in self.children(nr) {
                        let ct = self.totals_of(c, memo, depth + 1);
                        t.entries += ct.entries;
                        t.errors += ct.errors;
                    }
                    t
                }
            },
            None => SubtreeTotals {
                entries: 0,
                errors: 1,
            },
        };
        memo.insert(nr, t);
        t
    }
}

/// Leaf entries and bad nodes beneath a node (each path counted: shared
/// subtrees count once per reference).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubtreeTotals {
    /// Leaf entries.
    pub entries: u64,
    /// Bad nodes.
    pub errors: u64,
}

/// One reference to a node from a parent entry or a root.
#[derive(Clone, Copy)]
struct PendingRef {
    nr: BlockNr,
    /// Lowest key allowed (parent key i), None for roots.
    lo: Option<u64>,
    /// Keys must stay below this (parent key i+1; None for a parent's last
    /// entry and for roots).
    hi: Option<u64>,
}

/// The references of one tree level: the child, the key its parent entry
/// gives it, and whether the entry is its parent's last (the next key of the
/// same parent is the child's upper bound). The roots' level has no keys. In
/// a plain walk the children are the stretch of the graph's child list that
/// the level's parents appended (9 bytes per reference here); otherwise they
/// are held here (17 bytes).
#[derive(Default)]
pub(super) struct LevelRefs {
    own: Vec<BlockNr>,
    in_graph: Option<std::ops::Range<usize>>,
    key: Vec<u64>,
    last: Vec<bool>,
}

impl LevelRefs {
    fn roots(roots: &[BlockNr]) -> LevelRefs {
        LevelRefs {
            own: roots.to_vec(),
            ..LevelRefs::default()
        }
    }

    /// A level whose children the graph's child list holds from `start` on.
    fn in_graph(start: usize) -> LevelRefs {
        LevelRefs {
            in_graph: Some(start..start),
            ..LevelRefs::default()
        }
    }

    fn children<'a>(&'a self, graph: &'a TreeGraph) -> &'a [BlockNr] {
        match &self.in_graph {
            Some(r) => &graph.children[r.clone()],
            None => &self.own,
        }
    }

    fn push_keys(&mut self, links: &[(u64, BlockNr)]) {
        self.key.extend(links.iter().map(|&(k, _)| k));
        self.last
            .extend((0..links.len()).map(|i| i + 1 == links.len()));
    }

    /// Adds the entries of one parent, in key order, keeping the children.
    pub(super) fn push_parent(&mut self, links: &[(u64, BlockNr)]) {
        debug_assert!(self.in_graph.is_none());
        self.own.extend(links.iter().map(|&(_, c)| c));
        self.push_keys(links);
    }

    /// Adds the keys of one parent whose children were just appended to the
    /// graph's child list.
    fn push_appended(&mut self, links: &[(u64, BlockNr)]) {
        if let Some(r) = self.in_graph.as_mut() {
            r.end += links.len();
        }
        self.push_keys(links);
    }

    /// Reference `i` (of `children`) with its bounds.
    fn get(&self, children: &[BlockNr], i: usize) -> PendingRef {
        let nr = children[i];
        if self.key.is_empty() {
            return PendingRef {
                nr,
                lo: None,
                hi: None,
            };
        }
        PendingRef {
            nr,
            lo: Some(self.key[i]),
            hi: (!self.last[i]).then(|| self.key[i + 1]),
        }
    }
}

/// The walker: reads nodes once each and grows a [`TreeGraph`].
pub struct Walker<'d> {
    dev: &'d dyn BlockDevice,
    graph: TreeGraph,
    heights: HashMap<BlockNr, u32>,
}

/// Result of validating one block on a worker thread.
struct Parsed<T> {
    nr: BlockNr,
    summary: NodeSummary,
    /// (key, child) pairs of an internal node.
    links: Vec<(u64, BlockNr)>,
    leaf_out: Option<T>,
}

impl<'d> Walker<'d> {
    /// A walker over `dev` with an empty graph.
    #[must_use]
    pub fn new(dev: &'d dyn BlockDevice) -> Self {
        Walker {
            dev,
            graph: TreeGraph {
                nodes: NodeMap::for_device(dev.nr_blocks()),
                ..TreeGraph::default()
            },
            heights: HashMap::default(),
        }
    }

    /// The graph built so far.
    #[must_use]
    pub fn graph(&self) -> &TreeGraph {
        &self.graph
    }

    /// Gives the graph up.
    #[must_use]
    pub fn into_graph(self) -> TreeGraph {
        self.graph
    }

    /// Height of a node (0 for leaves), once known.
    #[must_use]
    pub fn height(&self, nr: BlockNr) -> Option<u32> {
        self.heights.get(&nr).copied()
    }

    /// Walks the trees under `roots` whose leaves hold `leaf_value_size`-byte
    /// values. Nodes already in the graph are not read again. `on_leaf` runs on
    /// worker threads for each new valid leaf; `collect` receives its results
    /// on this thread, in ascending block order within each batch.
    pub fn walk<T, F, C>(&mut self, roots: &[BlockNr], leaf_value_size: u32, on_leaf: F, collect: C)
    where
        T: Send,
        F: Fn(BlockNr, &NodeRef) -> T + Sync,
        C: FnMut(BlockNr, T),
    {
        self.walk_levels(roots, leaf_value_size, &on_leaf, collect, None);
    }

    /// The level loop of [`Walker::walk`]. With `unread`, the children of
    /// internal nodes found to be leaf parents are recorded there instead
    /// of being read.
    fn walk_levels<T, F, C>(
        &mut self,
        roots: &[BlockNr],
        leaf_value_size: u32,
        on_leaf: &F,
        mut collect: C,
        mut unread: Option<&mut UnreadLeaves>,
    ) where
        T: Send,
        F: Fn(BlockNr, &NodeRef) -> T + Sync,
        C: FnMut(BlockNr, T),
    {
        let mut frontier = LevelRefs::roots(roots);
        let mut depth = 0usize;
        let mut new_internal: Vec<BlockNr> = Vec::new();
        while !frontier.children(&self.graph).is_empty() {
            let mut todo: Vec<BlockNr> = frontier
                .children(&self.graph)
                .iter()
                .copied()
                .filter(|&nr| !self.graph.nodes.contains_key(nr))
                .collect();
            todo.sort_unstable();
            todo.dedup();
            if depth >= MAX_DEPTH {
                for &nr in &todo {
                    self.insert_bad(nr, NodeErrorKind::TooDeep);
                }
                todo.clear();
            }
            let mut next = if unread.is_some() {
                LevelRefs::default()
            } else {
                LevelRefs::in_graph(self.graph.children.len())
            };
            let mut parents: Vec<(BlockNr, Vec<(u64, BlockNr)>)> = Vec::new();
            self.graph.nodes.reserve(todo.len());
            for window in todo.chunks(WINDOW) {
                let parsed = self.read_window(window, leaf_value_size, on_leaf);
                for p in parsed {
                    let Parsed {
                        nr,
                        mut summary,
                        links,
                        leaf_out,
                    } = p;
                    if summary.state == NodeState::Internal {
                        let start = u32::try_from(self.graph.children.len()).unwrap_or(u32::MAX);
                        summary.children_start = start;
                        summary.entries_and_flags |= HAS_CHILDREN;
                        debug_assert_eq!(links.len(), summary.nr_entries() as usize);
                        self.graph.children.extend(links.iter().map(|&(_, c)| c));
                        new_internal.push(nr);
                        if unread.is_some() {
                            self.graph.nodes.insert(nr, summary);
                            parents.push((nr, links));
                            continue;
                        }
                        next.push_appended(&links);
                    }
                    self.graph.nodes.insert(nr, summary);
                    if let Some(out) = leaf_out {
                        collect(nr, out);
                    }
                }
            }
            if let Some(u) = unread.as_deref_mut() {
                self.split_leaf_parents(&parents, leaf_value_size, u, &mut next);
            }
            self.check_refs(&frontier);
            drop(todo);
            frontier = next;
            depth += 1;
        }
        self.finish_internal(&new_internal, roots);
    }

    fn insert_bad(&mut self, nr: BlockNr, kind: NodeErrorKind) {
        self.graph.nodes.insert(nr, bad_summary(kind));
    }

    fn read_window<T, F>(
        &self,
        window: &[BlockNr],
        leaf_value_size: u32,
        on_leaf: &F,
    ) -> Vec<Parsed<T>>
    where
        T: Send,
        F: Fn(BlockNr, &NodeRef) -> T + Sync,
    {
        let dev = self.dev;
        let tasks: Vec<Vec<Parsed<T>>> = window
            .par_chunks(TASK)
            .map(|chunk| {
                let mut out = Vec::with_capacity(chunk.len());
                read_sorted(dev, chunk, &mut |nr, r: io::Result<&Block>| {
                    out.push(parse_one(nr, r, leaf_value_size, on_leaf));
                });
                out
            })
            .collect();
        tasks.into_iter().flatten().collect()
    }

    /// Key-range checks for every reference in a level.
    fn check_refs(&mut self, refs: &LevelRefs) {
        // The lookups are read-only and most references find nothing wrong:
        // classify in parallel, then apply the few findings in order.
        let nodes = &self.graph.nodes;
        let children = refs.children(&self.graph);
        let findings: Vec<RefFinding> = (0..children.len())
            .into_par_iter()
            .with_min_len(4096)
            .filter_map(|i| classify_ref(nodes, &refs.get(children, i)))
            .collect();
        for f in findings {
            if f.underfull {
                if let Some(node) = self.graph.nodes.get_mut(f.block) {
                    // Only non-root internal nodes must be at least a third full.
                    node.non_fatal = node.non_fatal.or(Some(NodeErrorKind::Underfull));
                }
            }
            if let Some(kind) = f.link {
                self.graph.link_errors.push(NodeError {
                    block: f.block,
                    kind,
                });
            }
            if let Some(key) = f.equal_key {
                self.graph.key_warnings.push(KeyWarning {
                    block: f.block,
                    key,
                });
            }
        }
    }

    /// Heights and balance: every child of an internal node has the same height.
    fn finish_internal(&mut self, new_internal: &[BlockNr], roots: &[BlockNr]) {
        for &nr in new_internal.iter().rev() {
            self.height_of(nr, 0);
        }
        for &r in roots {
            self.height_of(r, 0);
        }
    }

    fn height_of(&mut self, nr: BlockNr, depth: usize) -> Option<u32> {
        let s = *self.graph.nodes.get(nr)?;
        match s.state {
            // Leaves are most nodes: their height needs no memo entry.
            NodeState::Leaf => return Some(0),
            NodeState::Bad(_) => return None,
            NodeState::Internal if depth >= MAX_DEPTH => return None,
            NodeState::Internal => {}
        }
        if let Some(&h) = self.heights.get(&nr) {
            return Some(h);
        }
        let range = s.children_range();
        let mut h0 = None;
        for i in range.clone() {
            let c = self.graph.children[i];
            h0 = self.height_of(c, depth + 1);
            if h0.is_some() {
                break;
            }
        }
        let h0 = h0?;
        for i in range {
            let c = self.graph.children[i];
            if self.height_of(c, depth + 1).is_some_and(|h| h != h0) {
                self.graph.link_errors.push(NodeError {
                    block: c,
                    kind: NodeErrorKind::Unbalanced,
                });
            }
        }
        self.heights.insert(nr, h0 + 1);
        Some(h0 + 1)
    }
}

/// What one reference revealed about its child.
struct RefFinding {
    block: BlockNr,
    underfull: bool,
    link: Option<NodeErrorKind>,
    equal_key: Option<u64>,
}

/// The key-range and fill checks of one reference (None when all is well).
fn classify_ref(nodes: &NodeMap<NodeSummary>, r: &PendingRef) -> Option<RefFinding> {
    let s = *nodes.get(r.nr)?;
    let mut f = RefFinding {
        block: r.nr,
        underfull: r.lo.is_some() && s.underfull() && s.non_fatal.is_none(),
        link: None,
        equal_key: None,
    };
    if matches!(s.state, NodeState::Bad(_)) || s.nr_entries() == 0 {
        if s.state == NodeState::Internal && s.nr_entries() == 0 {
            f.link = Some(NodeErrorKind::EmptyInternal);
        }
    } else {
        let below = r.lo.is_some_and(|lo| s.first_key < lo);
        let above = r.hi.is_some_and(|hi| s.last_key > hi);
        if below || above {
            f.link = Some(NodeErrorKind::KeyRange);
        } else if r.hi.is_some_and(|hi| s.last_key == hi) {
            f.equal_key = Some(s.last_key);
        }
    }
    (f.underfull || f.link.is_some() || f.equal_key.is_some()).then_some(f)
}

fn bad_summary(kind: NodeErrorKind) -> NodeSummary {
    NodeSummary {
        state: NodeState::Bad(kind),
        entries_and_flags: 0,
        first_key: 0,
        last_key: 0,
        non_fatal: None,
        children_start: 0,
    }
}

/// The entry count of a parsed node as stored in a summary (a parsed node
/// fits its block, so its count is always below the mask).
fn entries_field(n: usize) -> u16 {
    u16::try_from(n).map_or(ENTRIES_MASK, |e| e.min(ENTRIES_MASK))
}

fn parse_one<T, F>(
    nr: BlockNr,
    r: io::Result<&Block>,
    leaf_value_size: u32,
    on_leaf: &F,
) -> Parsed<T>
where
    F: Fn(BlockNr, &NodeRef) -> T,
{
    let bad = |kind| Parsed {
        nr,
        summary: bad_summary(kind),
        links: Vec::new(),
        leaf_out: None,
    };
    let block = match r {
        Ok(b) => b,
        Err(_) => return bad(NodeErrorKind::Io),
    };
    let node = match NodeRef::new(&block.0, nr, leaf_value_size) {
        Ok(n) => n,
        Err(e) => return bad(e.kind),
    };
    let n = node.len();
    let summary = NodeSummary {
        state: if node.is_leaf() {
            NodeState::Leaf
        } else {
            NodeState::Internal
        },
        entries_and_flags: entries_field(n)
            | if !node.is_leaf() && node.non_fatal_issue(NodePosition::NonRoot).is_some() {
                UNDERFULL
            } else {
                0
            },
        first_key: if n > 0 { node.key(0) } else { 0 },
        last_key: if n > 0 { node.key(n - 1) } else { 0 },
        non_fatal: node.non_fatal_issue(NodePosition::Root),
        children_start: 0,
    };
    if node.is_leaf() {
        let out = on_leaf(nr, &node);
        Parsed {
            nr,
            summary,
            links: Vec::new(),
            leaf_out: Some(out),
        }
    } else {
        let links = node
            .keys()
            .iter()
            .zip(node.values_u64())
            .map(|(k, v)| (k.get(), v.get()))
            .collect();
        Parsed {
            nr,
            summary,
            links,
            leaf_out: None,
        }
    }
}
