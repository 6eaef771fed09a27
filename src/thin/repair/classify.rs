//! Classification of scanned nodes into trees (repair.md §1.1 and G2/G3).
//!
//! Every node gets a kind (mapping tree, top-level tree, details tree) and an
//! aggregate over its subtree, children first, memoised. Upstream rejects a
//! whole tree for one bad node; we keep such a tree as *damaged*: its valid
//! children are aggregated, the others dropped (`complete = false`). Upstream's
//! candidates are exactly our complete ones.
//!
//! A u64 leaf is a top-level leaf only when its keys are possible device ids,
//! its values distinct block numbers and each names a mapping-tree root (bad
//! blocks allowed when at least one root is good); otherwise it is a mapping
//! leaf (never rejected for looking like both, G3).

use std::collections::{HashMap, HashSet};

use crate::pdata::block::BlockNr;
use crate::thin::repair::scan::{ScanResult, ScannedNode, U64Leaf};

/// Deepest tree accepted (cycle guard).
const MAX_DEPTH: u32 = 16;
/// Device ids must fit in 24 bits to be top-level keys.
const DEV_ID_LIMIT: u64 = 1 << 24;

/// Which tree a node belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A bottom-level mapping tree.
    Mapping,
    /// The top-level mapping tree (device id -> mapping root).
    TopLevel,
    /// The device details tree.
    Details,
}

/// The aggregate of a node's subtree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Class {
    /// Tree kind.
    pub kind: Kind,
    /// No node below was bad or dropped.
    pub complete: bool,
    /// Leaf height (0 = leaf).
    pub height: u32,
    /// Leaf entries below (mappings or devices).
    pub entries: u64,
    /// Mappings below (top-level: Σ over its devices' trees).
    pub mappings: u64,
    /// Lowest key (valid when `entries > 0`).
    pub first_key: u64,
    /// Highest key.
    pub last_key: u64,
    /// Highest time seen (mappings; details: creation/snapshot times).
    pub age: u32,
    /// Highest data block mapped.
    pub max_data: u64,
    /// Details: Σ mapped_blocks.
    pub sum_mapped: u64,
    /// Details: highest transaction id.
    pub max_tid: u64,
}

impl Class {
    fn empty(kind: Kind) -> Class {
        Class {
            kind,
            complete: true,
            height: 0,
            entries: 0,
            mappings: 0,
            first_key: 0,
            last_key: 0,
            age: 0,
            max_data: 0,
            sum_mapped: 0,
            max_tid: 0,
        }
    }

    fn absorb(&mut self, c: &Class) {
        if c.entries > 0 {
            if self.entries == 0 {
                self.first_key = c.first_key;
            }
            self.last_key = c.last_key;
        }
        self.entries += c.entries;
        self.mappings += c.mappings;
        self.age = self.age.max(c.age);
        self.max_data = self.max_data.max(c.max_data);
        self.sum_mapped += c.sum_mapped;
        self.max_tid = self.max_tid.max(c.max_tid);
        self.complete &= c.complete;
    }
}

/// Classes of every scanned node and the set of nodes some tree references.
pub struct Classified<'s> {
    /// The scan.
    pub scan: &'s ScanResult,
    classes: HashMap<BlockNr, Option<Class>>,
    /// Mapping-leaf reading of leaves that were classified as top-level.
    alt: HashMap<BlockNr, Class>,
    /// Children of valid internal nodes.
    pub referenced: HashSet<BlockNr>,
    /// For each valid internal node, which children were kept.
    kept: HashMap<BlockNr, Vec<bool>>,
    in_progress: HashSet<BlockNr>,
}

fn mapping_leaf(l: &U64Leaf) -> Class {
    let mut c = Class::empty(Kind::Mapping);
    c.entries = u64::from(l.nr);
    c.mappings = c.entries;
    c.first_key = l.first_key;
    c.last_key = l.last_key;
    c.age = l.age;
    c.max_data = l.max_data;
    c
}

impl<'s> Classified<'s> {
    /// Classifies every node of `scan`.
    #[must_use]
    pub fn new(scan: &'s ScanResult) -> Self {
        let mut c = Classified {
            scan,
            classes: HashMap::with_capacity(scan.nodes.len()),
            alt: HashMap::new(),
            referenced: HashSet::new(),
            kept: HashMap::new(),
            in_progress: HashSet::new(),
        };
        let mut all: Vec<BlockNr> = scan.nodes.keys().copied().collect();
        all.sort_unstable();
        for b in all {
            c.class_of(b, 0);
        }
        c
    }

    /// The class of `b` (None: not a node, unreadable or invalid).
    #[must_use]
    pub fn class(&self, b: BlockNr) -> Option<Class> {
        self.classes.get(&b).copied().flatten()
    }

    /// The class of `b` read as `kind` (a top-level leaf can also be read
    /// as a mapping leaf).
    #[must_use]
    pub fn class_as(&self, b: BlockNr, kind: Kind) -> Option<Class> {
        match self.class(b) {
            Some(c) if c.kind == kind => Some(c),
            Some(_) if kind == Kind::Mapping => self.alt.get(&b).copied(),
            _ => None,
        }
    }

    /// The children of a valid internal node with whether each was kept.
    #[must_use]
    pub fn children(&self, b: BlockNr) -> Vec<(u64, BlockNr, bool)> {
        match (self.scan.nodes.get(&b), self.kept.get(&b)) {
            (Some(ScannedNode::Internal(links)), Some(kept)) => links
                .iter()
                .zip(kept)
                .map(|(&(k, c), &ok)| (k, c, ok))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn class_of(&mut self, b: BlockNr, depth: u32) -> Option<Class> {
        if let Some(c) = self.classes.get(&b) {
            return *c;
        }
        if depth > MAX_DEPTH || !self.in_progress.insert(b) {
            return None;
        }
        let scan = self.scan;
        let c = match scan.nodes.get(&b) {
            None => None,
            Some(ScannedNode::U64(l)) => self.u64_leaf(b, l, depth),
            Some(ScannedNode::Details(d)) => {
                let mut c = Class::empty(Kind::Details);
                c.entries = d.entries.len() as u64;
                if let (Some(f), Some(l)) = (d.entries.first(), d.entries.last()) {
                    c.first_key = f.0;
                    c.last_key = l.0;
                }
                for (_, det) in &d.entries {
                    c.sum_mapped += det.mapped_blocks;
                    c.max_tid = c.max_tid.max(det.transaction_id);
                    c.age = c.age.max(det.creation_time).max(det.snapshotted_time);
                }
                Some(c)
            }
            Some(ScannedNode::Internal(links)) => self.internal(b, links, depth),
        };
        self.in_progress.remove(&b);
        self.classes.insert(b, c);
        c
    }

    fn u64_leaf(&mut self, b: BlockNr, l: &U64Leaf, depth: u32) -> Option<Class> {
        let as_mapping = mapping_leaf(l);
        let Some(values) = &l.small_values else {
            return Some(as_mapping);
        };
        if values.iter().any(|&(k, v)| k >= DEV_ID_LIMIT || v == 0) {
            return Some(as_mapping);
        }
        let mut distinct: Vec<u64> = values.iter().map(|&(_, v)| v).collect();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() != values.len() {
            return Some(as_mapping);
        }
        let mut top = Class::empty(Kind::TopLevel);
        let mut good = 0;
        for &(_, v) in values {
            match self.class_of(v, depth + 1) {
                Some(c) if c.kind == Kind::Mapping => {
                    good += 1;
                    top.mappings += c.mappings;
                    top.age = top.age.max(c.age);
                    top.max_data = top.max_data.max(c.max_data);
                    top.complete &= c.complete;
                }
                Some(_) => return Some(as_mapping),
                None if self.scan.nodes.contains_key(&v) => return Some(as_mapping),
                None => top.complete = false,
            }
        }
        if good == 0 {
            return Some(as_mapping);
        }
        top.entries = u64::from(l.nr);
        top.first_key = l.first_key;
        top.last_key = l.last_key;
        self.alt.insert(b, as_mapping);
        Some(top)
    }

    fn internal(&mut self, b: BlockNr, links: &[(u64, BlockNr)], depth: u32) -> Option<Class> {
        let mut kids: Vec<Option<Class>> = Vec::with_capacity(links.len());
        for &(_, c) in links {
            kids.push(self.class_of(c, depth + 1));
        }
        // The majority kind and height decide what the node is.
        let mut votes: HashMap<(Kind, u32), usize> = HashMap::new();
        for k in kids.iter().flatten() {
            *votes.entry((k.kind, k.height)).or_default() += 1;
        }
        let (&(kind, height), _) = votes
            .iter()
            .max_by_key(|(&(k, h), &n)| (n, k == Kind::Mapping, h))?;
        let mut node = Class::empty(kind);
        node.height = height + 1;
        let mut prev_last: Option<u64> = None;
        let mut any = false;
        let mut kept = Vec::with_capacity(links.len());
        for (i, (&(key, child), k)) in links.iter().zip(&kids).enumerate() {
            let k = match k {
                Some(k) if k.kind == kind && k.height == height => Some(*k),
                Some(_) if kind == Kind::Mapping && height == 0 => self.alt.get(&child).copied(),
                _ => None,
            };
            let hi = links.get(i + 1).map(|l| l.0);
            let in_range = |k: &Class| {
                k.entries == 0
                    || (k.first_key >= key
                        && hi.is_none_or(|h| k.last_key < h)
                        && prev_last.is_none_or(|p| k.first_key > p))
            };
            match k {
                Some(k) if in_range(&k) => {
                    if k.entries > 0 {
                        prev_last = Some(k.last_key);
                    }
                    node.absorb(&k);
                    any = true;
                    kept.push(true);
                }
                _ => {
                    node.complete = false;
                    kept.push(false);
                }
            }
        }
        if !any {
            return None;
        }
        self.kept.insert(b, kept);
        for &(_, c) in links {
            self.referenced.insert(c);
        }
        Some(node)
    }
}
