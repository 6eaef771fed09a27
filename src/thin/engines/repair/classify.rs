//! Classification of scanned nodes, children before parents, memoised.
//!
//! A node may be read three ways: as part of a mapping tree, of the
//! top-level tree, or of the details tree. Each reading that survives is an
//! [`Agg`]: *complete* when nothing beneath it was lost (upstream's "valid"),
//! *damaged* when some children had to be dropped (unreadable, of another
//! kind, out of key order, overlapping, outside the parent's bounds or at a
//! minority height). An internal node keeps the readings supported by the
//! largest number of its children, so one bad child costs only its own key
//! range. A value_size-8 leaf is always a possible mapping leaf, and also a
//! top-level leaf when its shape allows it (device-id keys, distinct block
//! numbers as values) and most of its values name
//! mapping-tree roots; its parent decides between the two.

use crate::pdata::block::BlockNr;
use crate::thin::engines::repair::scan::{ScanNode, ScanTable, Shape};

/// Deepest nesting followed (top-level tree plus mapping tree, with margin).
const MAX_NESTING: u32 = 24;

/// Which tree a node belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A bottom-level (per-device) mapping tree.
    Mapping,
    /// The top-level tree (device id → mapping root).
    Top,
    /// The device details tree.
    Details,
}

/// Whether anything beneath a node was lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Every node beneath is valid (upstream would accept it).
    Complete,
    /// Some subtrees were dropped.
    Damaged,
}

/// One reading of a node and its subtree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agg {
    /// Complete or damaged.
    pub status: Status,
    /// 0 for leaves.
    pub height: u32,
    /// Lowest key kept.
    pub first_key: u64,
    /// Highest key kept.
    pub last_key: u64,
    /// Mappings (mapping), devices (top-level, details).
    pub entries: u64,
    /// Counted mappings (top-level), Σ mapped_blocks (details), = entries (mapping).
    pub mappings: u64,
    /// Highest data block mapped (mapping, top-level).
    pub max_block: u64,
    /// Highest mapping time (mapping, top-level) or creation/snapshot time (details).
    pub age: u32,
    /// Highest device transaction id (details).
    pub max_tid: u64,
}

impl Agg {
    /// A leaf's reading: its key range and entry count, nothing beneath it.
    fn leaf(n: &ScanNode, status: Status) -> Agg {
        Agg {
            status,
            height: 0,
            first_key: n.first_key,
            last_key: n.last_key,
            entries: u64::from(n.nr_entries),
            mappings: 0,
            max_block: 0,
            age: 0,
            max_tid: 0,
        }
    }

    fn merge(&mut self, o: &Agg) {
        self.entries += o.entries;
        self.mappings += o.mappings;
        self.max_block = self.max_block.max(o.max_block);
        self.age = self.age.max(o.age);
        self.max_tid = self.max_tid.max(o.max_tid);
        if o.status == Status::Damaged {
            self.status = Status::Damaged;
        }
    }
}

/// The readings of one node that survived.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Class {
    /// As a mapping-tree node.
    pub mapping: Option<Agg>,
    /// As a top-level-tree node.
    pub top: Option<Agg>,
    /// As a details-tree node.
    pub details: Option<Agg>,
}

impl Class {
    /// The reading of `kind`.
    #[must_use]
    pub fn get(&self, kind: Kind) -> Option<&Agg> {
        match kind {
            Kind::Mapping => self.mapping.as_ref(),
            Kind::Top => self.top.as_ref(),
            Kind::Details => self.details.as_ref(),
        }
    }

    fn set(&mut self, kind: Kind, a: Option<Agg>) {
        match kind {
            Kind::Mapping => self.mapping = a,
            Kind::Top => self.top = a,
            Kind::Details => self.details = a,
        }
    }

    fn is_empty(&self) -> bool {
        self.mapping.is_none() && self.top.is_none() && self.details.is_none()
    }
}

#[derive(Clone, Copy)]
enum Memo {
    Todo,
    Busy,
    Done(Class),
}

/// Why a child was dropped from its parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// The block is not a readable btree node (bad checksum, not a node, ...).
    Unreadable,
    /// A node of another kind, or with no valid reading.
    Incompatible,
    /// Keys out of order, overlapping or outside the parent's bounds.
    KeyRange,
    /// Not at the height of its siblings.
    Height,
}

/// The children of an internal node kept under one reading.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// (position, child block) kept, in key order.
    pub kept: Vec<(usize, BlockNr)>,
    /// (position, child block, why) dropped.
    pub lost: Vec<(usize, BlockNr, Loss)>,
}

/// Classifications of every scanned node.
pub struct Classifier<'t> {
    table: &'t ScanTable,
    memo: Vec<Memo>,
    /// Nodes kept as a child by some internal node.
    pub referenced: Vec<bool>,
    /// Nodes named as a device's mapping root by a top-level leaf.
    pub root_referenced: Vec<bool>,
}

impl<'t> Classifier<'t> {
    /// Classifies every node of `table`.
    #[must_use]
    pub fn new(table: &'t ScanTable) -> Self {
        let n = table.nodes.len();
        let mut c = Classifier {
            table,
            memo: vec![Memo::Todo; n],
            referenced: vec![false; n],
            root_referenced: vec![false; n],
        };
        for i in 0..n {
            c.classify(i, 0);
        }
        c.mark_references();
        c
    }

    /// The scan this classifier reads.
    #[must_use]
    pub fn table(&self) -> &'t ScanTable {
        self.table
    }

    /// The classification of block `nr` (empty when it is not a usable node).
    #[must_use]
    pub fn class_of(&self, nr: BlockNr) -> Class {
        match self.table.find(nr).map(|i| self.memo[i]) {
            Some(Memo::Done(c)) => c,
            _ => Class::default(),
        }
    }

    /// The reading `kind` of block `nr`.
    #[must_use]
    pub fn agg(&self, nr: BlockNr, kind: Kind) -> Option<Agg> {
        self.class_of(nr).get(kind).copied()
    }

    /// The scanned node at `nr`.
    #[must_use]
    pub fn node(&self, nr: BlockNr) -> Option<&'t ScanNode> {
        self.table.find(nr).map(|i| &self.table.nodes[i])
    }

    fn class_at_depth(&mut self, nr: BlockNr, depth: u32) -> Class {
        match self.table.find(nr) {
            Some(i) => self.classify(i, depth),
            None => Class::default(),
        }
    }

    fn classify(&mut self, i: usize, depth: u32) -> Class {
        match self.memo[i] {
            Memo::Done(c) => return c,
            Memo::Busy => return Class::default(),
            Memo::Todo => {}
        }
        if depth > MAX_NESTING {
            return Class::default();
        }
        self.memo[i] = Memo::Busy;
        let n = self.table.nodes[i];
        let c = match n.shape {
            Shape::Leaf8 => self.classify_leaf8(&n, depth),
            Shape::Leaf24 => Class {
                details: Some(details_leaf(&n)),
                ..Class::default()
            },
            Shape::Internal => self.classify_internal(&n, depth),
        };
        self.memo[i] = Memo::Done(c);
        c
    }

    fn classify_leaf8(&mut self, n: &ScanNode, depth: u32) -> Class {
        let mapping = Agg {
            mappings: u64::from(n.nr_entries),
            max_block: n.mapping.max_block,
            age: n.mapping.max_time,
            ..Agg::leaf(n, Status::Complete)
        };
        let mut c = Class {
            mapping: Some(mapping),
            ..Class::default()
        };
        if n.mapping.top_shaped {
            c.top = self.top_leaf(n, depth);
        }
        c
    }

    /// A top-level reading when most values name mapping-tree roots.
    fn top_leaf(&mut self, n: &ScanNode, depth: u32) -> Option<Agg> {
        let table = self.table;
        let values = table.values(n);
        let mut agg = Agg::leaf(n, Status::Complete);
        let mut roots = 0usize;
        for &v in values {
            match self.class_at_depth(v, depth + 1).mapping {
                Some(m) => {
                    roots += 1;
                    agg.mappings += m.mappings;
                    agg.max_block = agg.max_block.max(m.max_block);
                    agg.age = agg.age.max(m.age);
                    if m.status == Status::Damaged {
                        agg.status = Status::Damaged;
                    }
                }
                None => agg.status = Status::Damaged,
            }
        }
        (roots > 0 && roots * 2 >= values.len()).then_some(agg)
    }

    fn classify_internal(&mut self, n: &ScanNode, depth: u32) -> Class {
        let table = self.table;
        let children = table.values(n);
        let classes: Vec<Class> = children
            .iter()
            .map(|&c| self.class_at_depth(c, depth + 1))
            .collect();
        let mut c = Class::default();
        let mut best = 0usize;
        for kind in [Kind::Mapping, Kind::Top, Kind::Details] {
            let sel = select(table, n, &classes, kind);
            if sel.kept.is_empty() {
                continue;
            }
            let mut agg: Option<Agg> = None;
            for &(pos, _) in &sel.kept {
                let Some(ca) = classes[pos].get(kind) else {
                    continue;
                };
                match agg.as_mut() {
                    None => {
                        let mut a = *ca;
                        a.height += 1;
                        agg = Some(a);
                    }
                    Some(a) => {
                        a.merge(ca);
                        a.last_key = ca.last_key;
                    }
                }
            }
            if let Some(a) = agg.as_mut() {
                if !sel.lost.is_empty() {
                    a.status = Status::Damaged;
                }
            }
            let count = sel.kept.len();
            if count > best {
                c = Class::default();
                best = count;
            }
            if count == best {
                c.set(kind, agg);
            }
        }
        if c.is_empty() {
            Class::default()
        } else {
            c
        }
    }

    /// The children of internal node `nr` kept under `kind`.
    #[must_use]
    pub fn selection(&self, nr: BlockNr, kind: Kind) -> Selection {
        let Some(n) = self.node(nr) else {
            return Selection::default();
        };
        let classes: Vec<Class> = self
            .table
            .values(n)
            .iter()
            .map(|&c| self.class_of(c))
            .collect();
        select(self.table, n, &classes, kind)
    }

    fn mark_references(&mut self) {
        let table = self.table;
        for i in 0..table.nodes.len() {
            let n = table.nodes[i];
            let Memo::Done(c) = self.memo[i] else {
                continue;
            };
            match n.shape {
                Shape::Internal => {
                    for kind in [Kind::Mapping, Kind::Top, Kind::Details] {
                        if c.get(kind).is_some() {
                            for (_, child) in self.selection(n.nr, kind).kept {
                                if let Some(j) = table.find(child) {
                                    self.referenced[j] = true;
                                }
                            }
                        }
                    }
                }
                Shape::Leaf8 if c.top.is_some() => {
                    for &v in table.values(&n) {
                        if let Some(j) = table.find(v) {
                            self.root_referenced[j] = true;
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// The top-level reading of `nr`, or of a top-shaped leaf even when most
    /// of its devices' roots are lost (for a root the superblock names).
    #[must_use]
    pub fn top_or_named_leaf(&self, nr: BlockNr) -> Option<Agg> {
        if let Some(a) = self.agg(nr, Kind::Top) {
            return Some(a);
        }
        let n = self.node(nr)?;
        if n.shape != Shape::Leaf8 || !n.mapping.top_shaped {
            return None;
        }
        let mut agg = Agg::leaf(n, Status::Damaged);
        for &v in self.table.values(n) {
            if let Some(m) = self.agg(v, Kind::Mapping) {
                agg.mappings += m.mappings;
                agg.max_block = agg.max_block.max(m.max_block);
                agg.age = agg.age.max(m.age);
            }
        }
        Some(agg)
    }

    /// True when some internal node keeps `nr` as a child.
    #[must_use]
    pub fn is_referenced(&self, nr: BlockNr) -> bool {
        self.table.find(nr).is_some_and(|i| self.referenced[i])
    }

    /// True when some top-level leaf names `nr` as a mapping root.
    #[must_use]
    pub fn is_root_referenced(&self, nr: BlockNr) -> bool {
        self.table.find(nr).is_some_and(|i| self.root_referenced[i])
    }
}

fn details_leaf(n: &ScanNode) -> Agg {
    Agg {
        mappings: n.details.mapped,
        age: n.details.age,
        max_tid: n.details.max_tid,
        ..Agg::leaf(n, Status::Complete)
    }
}

/// Which children of `n` survive under `kind`: those with that reading, at the
/// majority height, with key ranges inside their slot and increasing.
fn select(table: &ScanTable, n: &ScanNode, classes: &[Class], kind: Kind) -> Selection {
    let keys = table.keys(n);
    let children = table.values(n);
    let mut sel = Selection::default();
    let mut heights: Vec<(u32, usize)> = Vec::new();
    for c in classes.iter().filter_map(|c| c.get(kind)) {
        match heights.iter_mut().find(|(h, _)| *h == c.height) {
            Some(e) => e.1 += 1,
            None => heights.push((c.height, 1)),
        }
    }
    let Some(&(height, _)) = heights
        .iter()
        .max_by_key(|&&(h, n)| (n, std::cmp::Reverse(h)))
    else {
        for (pos, &child) in children.iter().enumerate() {
            sel.lost.push((pos, child, loss_of(table, child)));
        }
        return sel;
    };
    let mut prev_last: Option<u64> = None;
    for (pos, &child) in children.iter().enumerate() {
        let Some(a) = classes[pos].get(kind) else {
            sel.lost.push((pos, child, loss_of(table, child)));
            continue;
        };
        if a.height != height {
            sel.lost.push((pos, child, Loss::Height));
            continue;
        }
        if a.entries > 0 || a.height > 0 {
            let below = a.first_key < keys[pos];
            let above = keys.get(pos + 1).is_some_and(|&k| a.last_key > k);
            let overlap = prev_last.is_some_and(|p| a.first_key <= p);
            if below || above || overlap {
                sel.lost.push((pos, child, Loss::KeyRange));
                continue;
            }
            prev_last = Some(a.last_key);
        }
        sel.kept.push((pos, child));
    }
    sel
}

fn loss_of(table: &ScanTable, child: BlockNr) -> Loss {
    if table.find(child).is_some() {
        Loss::Incompatible
    } else {
        Loss::Unreadable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdata::block::{Block, BLOCK_SIZE};
    use crate::pdata::checksum::{write_checksum, BlockKind};
    use crate::pdata::io::{BlockDevice, MemDevice};
    use crate::thin::engines::repair::scan::scan;

    /// A node with 8-byte values at `nr`.
    fn node(dev: &MemDevice, nr: u64, leaf: bool, entries: &[(u64, u64)]) {
        let mut b = Block::zeroed();
        let max = 252usize;
        b.0[4..8].copy_from_slice(&(if leaf { 2u32 } else { 1u32 }).to_le_bytes());
        b.0[8..16].copy_from_slice(&nr.to_le_bytes());
        b.0[16..20].copy_from_slice(&u32::try_from(entries.len()).unwrap().to_le_bytes());
        b.0[20..24].copy_from_slice(&252u32.to_le_bytes());
        b.0[24..28].copy_from_slice(&8u32.to_le_bytes());
        for (i, &(k, v)) in entries.iter().enumerate() {
            b.0[32 + 8 * i..40 + 8 * i].copy_from_slice(&k.to_le_bytes());
            let o = 32 + 8 * max + 8 * i;
            b.0[o..o + 8].copy_from_slice(&v.to_le_bytes());
        }
        write_checksum(&mut b.0, BlockKind::Node);
        dev.write_at(nr, &b).unwrap();
    }

    fn mapping(block: u64, time: u64) -> u64 {
        (block << 24) | time
    }

    fn leaf_of(dev: &MemDevice, nr: u64, keys: std::ops::Range<u64>) {
        let e: Vec<(u64, u64)> = keys.map(|k| (k, mapping(100 + k, 1))).collect();
        node(dev, nr, true, &e);
    }

    #[test]
    fn a_bad_child_costs_only_its_slot() {
        let dev = MemDevice::new(64);
        leaf_of(&dev, 10, 0..5);
        leaf_of(&dev, 11, 5..10);
        leaf_of(&dev, 12, 10..15);
        node(&dev, 20, false, &[(0, 10), (5, 11), (10, 12)]);
        let mut b = Block::zeroed();
        dev.read_at(11, &mut b).unwrap();
        b.0[200] ^= 1;
        dev.write_at(11, &b).unwrap();
        let table = scan(&dev);
        let cls = Classifier::new(&table);
        let a = cls.agg(20, Kind::Mapping).unwrap();
        assert_eq!(a.status, Status::Damaged);
        assert_eq!(a.mappings, 10);
        let sel = cls.selection(20, Kind::Mapping);
        assert_eq!(sel.kept, vec![(0, 10), (2, 12)]);
        assert_eq!(sel.lost, vec![(1, 11, Loss::Unreadable)]);
        assert!(cls.is_referenced(10) && !cls.is_referenced(20));
    }

    #[test]
    fn children_outside_their_slot_are_dropped() {
        let dev = MemDevice::new(64);
        leaf_of(&dev, 10, 0..5);
        leaf_of(&dev, 11, 3..8);
        node(&dev, 20, false, &[(0, 10), (5, 11)]);
        let table = scan(&dev);
        let cls = Classifier::new(&table);
        let sel = cls.selection(20, Kind::Mapping);
        assert_eq!(sel.lost, vec![(1, 11, Loss::KeyRange)]);
    }

    #[test]
    fn top_level_leaves_need_mapping_roots_behind_their_values() {
        let dev = MemDevice::new(64);
        leaf_of(&dev, 10, 0..5);
        leaf_of(&dev, 11, 0..7);
        node(&dev, 30, true, &[(1, 10), (2, 11)]);
        // Same shape, but the values name blocks that are not mapping roots.
        node(&dev, 31, true, &[(1, 40), (2, 41)]);
        let table = scan(&dev);
        let cls = Classifier::new(&table);
        let top = cls.agg(30, Kind::Top).unwrap();
        assert_eq!(
            (top.entries, top.mappings, top.status),
            (2, 12, Status::Complete)
        );
        assert!(
            cls.agg(30, Kind::Mapping).is_some(),
            "both readings are kept"
        );
        assert!(cls.agg(31, Kind::Top).is_none());
        assert!(cls.agg(31, Kind::Mapping).is_some());
        assert!(cls.is_root_referenced(10));
        assert_eq!(BLOCK_SIZE, 4096);
    }

    #[test]
    fn a_written_pool_reads_as_complete_trees_and_a_bad_leaf_damages_them() {
        use crate::thin::engines::repair::test_images::{corrupt, entries, pool, superblock};
        let dev = pool(&[(1, 600), (2, 10)]);
        let sb = superblock(&dev);
        let table = scan(&dev);
        let cls = Classifier::new(&table);
        let top = cls.agg(sb.mapping_root, Kind::Top).unwrap();
        assert_eq!(
            (top.status, top.entries, top.mappings),
            (Status::Complete, 2, 610)
        );
        let det = cls.agg(sb.details_root, Kind::Details).unwrap();
        assert_eq!(
            (det.status, det.entries, det.mappings),
            (Status::Complete, 2, 610)
        );
        assert!(cls.agg(sb.details_root, Kind::Mapping).is_none());

        let root1 = entries(&dev, sb.mapping_root)[0].1;
        let leaf = entries(&dev, root1)[1].1;
        let lost = u64::try_from(entries(&dev, leaf).len()).unwrap();
        corrupt(&dev, leaf);
        let table = scan(&dev);
        let cls = Classifier::new(&table);
        let top = cls.agg(sb.mapping_root, Kind::Top).unwrap();
        assert_eq!((top.status, top.mappings), (Status::Damaged, 610 - lost));
        let sel = cls.selection(root1, Kind::Mapping);
        assert_eq!(sel.lost, vec![(1, leaf, Loss::Unreadable)]);
    }
}
