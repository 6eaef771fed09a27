//! The btree builder: packs sorted entries into leaves and leaves into
//! internal nodes, bottom-up, writing each node once when it is final.
//!
//! Packing rules:
//! - a level holds back up to two nodes' worth of entries; when it reaches
//!   `2 * max` it writes one full node, so at the end it holds `max..2*max`
//!   entries (or fewer when it never overflowed), which become one node or two
//!   halves: no non-root node is below `max / 2` when that can be avoided, and
//!   no internal node but the root is ever below `max / 3`;
//! - an already written leaf (a shared `<def>` leaf) can be inserted between
//!   packed entries: the pending entries are flushed as leaves first and the
//!   shared leaf gets one more reference from its new parent.
//!
//! Every unused byte of a node is zero; `blocknr` and the checksum are set by
//! the [`NodeStore`] when the node is appended.

use crate::pdata::block::{Block, BlockNr};
use crate::pdata::btree::node::{
    max_entries_for, node_u32, INTERNAL_NODE, LEAF_NODE, NODE_HEADER_SIZE,
};
use crate::pdata::checksum::BlockKind;

/// Failures of a metadata writer.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The output has no room for the next block.
    #[error("out of metadata space")]
    OutOfSpace,
    /// Writing or reading the output failed.
    #[error("output i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Where built nodes go: a sequential allocator that also keeps reference counts.
pub trait NodeStore {
    /// Writes `block` at the next free location after setting its `blocknr`
    /// (bytes 8..16) and checksum for `kind`; returns the location.
    ///
    /// # Errors
    /// No space left, or output I/O.
    fn append(&mut self, block: &mut Block, kind: BlockKind) -> Result<BlockNr, WriteError>;

    /// One more reference to block `b`.
    fn inc_ref(&mut self, b: BlockNr);
}

/// A node as written: where it is and what keys it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrittenNode {
    /// Location.
    pub block: BlockNr,
    /// First key (0 for an empty leaf).
    pub first_key: u64,
    /// Last key (0 for an empty leaf).
    pub last_key: u64,
    /// Number of entries.
    pub nr_entries: u32,
}

/// Encodes a node into `block` (zero-filled first). `values` holds
/// `keys.len() * value_size` bytes.
pub fn encode_node(block: &mut Block, flags: u32, value_size: usize, keys: &[u64], values: &[u8]) {
    let max = max_entries_for(value_size);
    debug_assert!(keys.len() <= max && values.len() == keys.len() * value_size);
    block.0.fill(0);
    block.0[4..8].copy_from_slice(&flags.to_le_bytes());
    let nr = node_u32(keys.len());
    block.0[16..20].copy_from_slice(&nr.to_le_bytes());
    let max32 = node_u32(max);
    block.0[20..24].copy_from_slice(&max32.to_le_bytes());
    let vs = node_u32(value_size);
    block.0[24..28].copy_from_slice(&vs.to_le_bytes());
    for (i, k) in keys.iter().enumerate() {
        let o = NODE_HEADER_SIZE + 8 * i;
        block.0[o..o + 8].copy_from_slice(&k.to_le_bytes());
    }
    let vstart = NODE_HEADER_SIZE + 8 * max;
    block.0[vstart..vstart + values.len()].copy_from_slice(values);
}

/// `n` entries of 8-byte values: key `key + i`, value `value + i * value_step`.
#[derive(Clone, Copy, Debug)]
pub struct ValueRun {
    /// First key.
    pub key: u64,
    /// First value.
    pub value: u64,
    /// Added to the value from one entry to the next.
    pub value_step: u64,
    /// Number of entries.
    pub n: u64,
}

impl ValueRun {
    /// The run without its first `k` entries.
    #[must_use]
    pub fn skip(self, k: u64) -> ValueRun {
        ValueRun {
            key: self.key + k,
            value: self.value.wrapping_add(k.wrapping_mul(self.value_step)),
            value_step: self.value_step,
            n: self.n - k,
        }
    }
}

/// Packs sorted (key, value) entries into leaves.
pub struct LeafPacker {
    value_size: usize,
    max: usize,
    keys: Vec<u64>,
    values: Vec<u8>,
    scratch: Box<Block>,
}

impl LeafPacker {
    /// A packer for leaves of `value_size`-byte values.
    #[must_use]
    pub fn new(value_size: usize) -> LeafPacker {
        let max = max_entries_for(value_size);
        LeafPacker {
            value_size,
            max,
            keys: Vec::with_capacity(2 * max),
            values: Vec::with_capacity(2 * max * value_size),
            scratch: Block::zeroed(),
        }
    }

    /// Entries held back, not yet written.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.keys.len()
    }

    /// Capacity of one leaf.
    #[must_use]
    pub fn max_entries(&self) -> usize {
        self.max
    }

    /// Adds one entry (keys must ascend); may write one full leaf.
    ///
    /// # Errors
    /// Store failures.
    pub fn push(
        &mut self,
        store: &mut dyn NodeStore,
        key: u64,
        value: &[u8],
    ) -> Result<Option<WrittenNode>, WriteError> {
        debug_assert_eq!(value.len(), self.value_size);
        self.keys.push(key);
        self.values.extend_from_slice(value);
        if self.keys.len() == 2 * self.max {
            let n = self.write(store, 0, self.max)?;
            self.keys.drain(..self.max);
            self.values.drain(..self.max * self.value_size);
            return Ok(Some(n));
        }
        Ok(None)
    }

    /// Adds entries of a run of 8-byte values: key `key + i` with value
    /// `value + i * value_step`, for `i` from 0 while `i < n` and the
    /// packer has room; stops after writing a leaf. Returns how many
    /// entries were taken (at least one when `n > 0`) and the leaf written.
    /// The same as that many [`LeafPacker::push`]es, without the per-entry
    /// calls (a `<range_mapping>` of a thin_dump document is such a run).
    ///
    /// # Errors
    /// Store failures.
    pub fn push_run(
        &mut self,
        store: &mut dyn NodeStore,
        run: ValueRun,
    ) -> Result<(u64, Option<WrittenNode>), WriteError> {
        debug_assert_eq!(self.value_size, 8);
        let room = (2 * self.max - self.keys.len()) as u64;
        let take = run.n.min(room);
        self.keys.extend(run.key..run.key + take);
        for i in 0..take {
            let v = run.value.wrapping_add(i.wrapping_mul(run.value_step));
            self.values.extend_from_slice(&v.to_le_bytes());
        }
        if self.keys.len() == 2 * self.max {
            let n = self.write(store, 0, self.max)?;
            self.keys.drain(..self.max);
            self.values.drain(..self.max * self.value_size);
            return Ok((take, Some(n)));
        }
        Ok((take, None))
    }

    fn write(
        &mut self,
        store: &mut dyn NodeStore,
        from: usize,
        to: usize,
    ) -> Result<WrittenNode, WriteError> {
        let vs = self.value_size;
        encode_node(
            &mut self.scratch,
            LEAF_NODE,
            vs,
            &self.keys[from..to],
            &self.values[from * vs..to * vs],
        );
        let block = store.append(&mut self.scratch, BlockKind::Node)?;
        Ok(WrittenNode {
            block,
            first_key: self.keys[from],
            last_key: self.keys[to - 1],
            nr_entries: node_u32(to - from),
        })
    }

    /// Writes what is held back as one leaf, or two halves when it does not
    /// fit in one. Returns the leaves written (0, 1 or 2).
    ///
    /// # Errors
    /// Store failures.
    pub fn flush(&mut self, store: &mut dyn NodeStore) -> Result<Vec<WrittenNode>, WriteError> {
        let n = self.keys.len();
        let mut out = Vec::new();
        if n == 0 {
        } else if n <= self.max {
            out.push(self.write(store, 0, n)?);
        } else {
            let half = n / 2;
            out.push(self.write(store, 0, half)?);
            out.push(self.write(store, half, n)?);
        }
        self.keys.clear();
        self.values.clear();
        Ok(out)
    }

    /// Writes an empty leaf (the root of an empty tree).
    ///
    /// # Errors
    /// Store failures.
    pub fn write_empty(&mut self, store: &mut dyn NodeStore) -> Result<WrittenNode, WriteError> {
        encode_node(&mut self.scratch, LEAF_NODE, self.value_size, &[], &[]);
        let block = store.append(&mut self.scratch, BlockKind::Node)?;
        Ok(WrittenNode {
            block,
            first_key: 0,
            last_key: 0,
            nr_entries: 0,
        })
    }
}

/// Builds the internal levels above a sequence of nodes.
pub struct InternalBuilder {
    max: usize,
    levels: Vec<Vec<(u64, BlockNr)>>,
    scratch: Box<Block>,
    values: Vec<u8>,
}

impl Default for InternalBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl InternalBuilder {
    /// An empty builder.
    #[must_use]
    pub fn new() -> InternalBuilder {
        let max = max_entries_for(8);
        InternalBuilder {
            max,
            levels: Vec::new(),
            scratch: Block::zeroed(),
            values: Vec::with_capacity(max * 8),
        }
    }

    /// Adds a child at `level` (0 = the children are leaves).
    ///
    /// # Errors
    /// Store failures.
    pub fn push(
        &mut self,
        store: &mut dyn NodeStore,
        level: usize,
        key: u64,
        child: BlockNr,
    ) -> Result<(), WriteError> {
        if self.levels.len() <= level {
            self.levels.resize_with(level + 1, Vec::new);
        }
        self.levels[level].push((key, child));
        if self.levels[level].len() == 2 * self.max {
            let (k, b) = self.write(store, level, 0, self.max)?;
            self.levels[level].drain(..self.max);
            self.push(store, level + 1, k, b)?;
        }
        Ok(())
    }

    fn write(
        &mut self,
        store: &mut dyn NodeStore,
        level: usize,
        from: usize,
        to: usize,
    ) -> Result<(u64, BlockNr), WriteError> {
        let entries = &self.levels[level][from..to];
        let keys: Vec<u64> = entries.iter().map(|e| e.0).collect();
        self.values.clear();
        for &(_, c) in entries {
            self.values.extend_from_slice(&c.to_le_bytes());
            store.inc_ref(c);
        }
        encode_node(&mut self.scratch, INTERNAL_NODE, 8, &keys, &self.values);
        let b = store.append(&mut self.scratch, BlockKind::Node)?;
        Ok((keys[0], b))
    }

    /// Writes the remaining nodes of every level and returns the root, or
    /// `None` when no child was ever pushed. A single child is its own root.
    ///
    /// # Errors
    /// Store failures.
    pub fn finish(&mut self, store: &mut dyn NodeStore) -> Result<Option<BlockNr>, WriteError> {
        let mut level = 0;
        while level < self.levels.len() {
            let higher_empty = self.levels[level + 1..].iter().all(Vec::is_empty);
            let n = self.levels[level].len();
            if higher_empty && n == 1 {
                let root = self.levels[level][0].1;
                self.levels.clear();
                return Ok(Some(root));
            }
            if n > 0 {
                let parts = if n <= self.max {
                    vec![(0, n)]
                } else {
                    vec![(0, n / 2), (n / 2, n)]
                };
                let mut made = Vec::new();
                for (a, b) in parts {
                    made.push(self.write(store, level, a, b)?);
                }
                self.levels[level].clear();
                for (k, b) in made {
                    self.push(store, level + 1, k, b)?;
                }
            }
            level += 1;
        }
        Ok(None)
    }
}

/// A whole btree from sorted entries and shared leaves.
pub struct BtreeBuilder {
    leaves: LeafPacker,
    internal: InternalBuilder,
}

impl BtreeBuilder {
    /// A builder of a tree with `value_size`-byte leaf values.
    #[must_use]
    pub fn new(value_size: usize) -> BtreeBuilder {
        BtreeBuilder {
            leaves: LeafPacker::new(value_size),
            internal: InternalBuilder::new(),
        }
    }

    /// Entries held back in the leaf level.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.leaves.pending()
    }

    /// Capacity of one leaf.
    #[must_use]
    pub fn leaf_max_entries(&self) -> usize {
        self.leaves.max_entries()
    }

    /// Adds one entry; keys must ascend.
    ///
    /// # Errors
    /// Store failures.
    pub fn push_value(
        &mut self,
        store: &mut dyn NodeStore,
        key: u64,
        value: &[u8],
    ) -> Result<(), WriteError> {
        if let Some(n) = self.leaves.push(store, key, value)? {
            self.internal.push(store, 0, n.first_key, n.block)?;
        }
        Ok(())
    }

    /// Adds every entry of `run` (8-byte values; keys must ascend), as
    /// [`BtreeBuilder::push_value`] does one by one.
    ///
    /// # Errors
    /// Store failures.
    pub fn push_run(&mut self, store: &mut dyn NodeStore, run: ValueRun) -> Result<(), WriteError> {
        let mut done = 0;
        while done < run.n {
            let (took, leaf) = self.leaves.push_run(store, run.skip(done))?;
            if let Some(n) = leaf {
                self.internal.push(store, 0, n.first_key, n.block)?;
            }
            done += took;
        }
        Ok(())
    }

    /// Inserts an already written leaf (it gets one reference from its parent,
    /// or from whoever names the root when it ends up alone).
    ///
    /// # Errors
    /// Store failures.
    pub fn push_leaf(
        &mut self,
        store: &mut dyn NodeStore,
        leaf: &WrittenNode,
    ) -> Result<(), WriteError> {
        self.flush_leaves(store)?;
        self.internal.push(store, 0, leaf.first_key, leaf.block)
    }

    fn flush_leaves(&mut self, store: &mut dyn NodeStore) -> Result<(), WriteError> {
        for n in self.leaves.flush(store)? {
            self.internal.push(store, 0, n.first_key, n.block)?;
        }
        Ok(())
    }

    /// Writes everything left and returns the root (an empty leaf for an
    /// empty tree). The root's own reference is the caller's to add.
    ///
    /// # Errors
    /// Store failures.
    pub fn finish(&mut self, store: &mut dyn NodeStore) -> Result<BlockNr, WriteError> {
        self.flush_leaves(store)?;
        match self.internal.finish(store)? {
            Some(root) => Ok(root),
            None => Ok(self.leaves.write_empty(store)?.block),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdata::btree::node::NodeRef;
    use std::collections::HashMap;

    #[derive(Default)]
    struct MemStore {
        blocks: Vec<Box<Block>>,
        refs: HashMap<BlockNr, u32>,
    }

    impl NodeStore for MemStore {
        fn append(&mut self, block: &mut Block, kind: BlockKind) -> Result<BlockNr, WriteError> {
            let loc = self.blocks.len() as u64;
            block.0[8..16].copy_from_slice(&loc.to_le_bytes());
            crate::pdata::checksum::write_checksum(&mut block.0, kind);
            self.blocks.push(Box::new(block.clone()));
            Ok(loc)
        }
        fn inc_ref(&mut self, b: BlockNr) {
            *self.refs.entry(b).or_default() += 1;
        }
    }

    /// Walks the tree, checking fill rules; returns the keys in order.
    fn collect(s: &MemStore, b: BlockNr, root: bool, depth: usize, out: &mut Vec<u64>) -> usize {
        let n = NodeRef::new(&s.blocks[b as usize].0, b, 8).unwrap();
        if !root {
            let min = if n.is_leaf() { 126 } else { 84 };
            assert!(n.len() >= min, "node {b} has {} entries", n.len());
        }
        if n.is_leaf() {
            out.extend(n.keys().iter().map(|k| k.get()));
            return depth;
        }
        let mut d = None;
        for i in 0..n.len() {
            let c = n.value_u64(i);
            let first = out.len();
            let cd = collect(s, c, false, depth + 1, out);
            assert_eq!(out[first], n.key(i));
            assert!(d.is_none() || d == Some(cd), "unbalanced");
            d = Some(cd);
        }
        d.unwrap()
    }

    #[test]
    fn every_size_packs_within_the_fill_rules() {
        for &count in &[
            0usize, 1, 252, 253, 377, 504, 505, 1000, 63_504, 63_505, 200_000,
        ] {
            let mut s = MemStore::default();
            let mut b = BtreeBuilder::new(8);
            for k in 0..count as u64 {
                b.push_value(&mut s, k * 3, &k.to_le_bytes()).unwrap();
            }
            let root = b.finish(&mut s).unwrap();
            let mut keys = Vec::new();
            collect(&s, root, true, 0, &mut keys);
            assert_eq!(keys.len(), count);
            assert!(keys.iter().enumerate().all(|(i, &k)| k == i as u64 * 3));
            // Every non-root node has exactly one reference.
            for loc in 0..s.blocks.len() as u64 {
                let want = u32::from(loc != root);
                assert_eq!(
                    s.refs.get(&loc).copied().unwrap_or(0),
                    want,
                    "{count}: block {loc}"
                );
            }
        }
    }

    #[test]
    fn shared_leaves_are_reused_and_referenced() {
        let mut s = MemStore::default();
        let mut p = LeafPacker::new(8);
        for k in 1000..1300u64 {
            assert!(p.push(&mut s, k, &k.to_le_bytes()).unwrap().is_none());
        }
        let shared = p.flush(&mut s).unwrap();
        assert_eq!(shared.len(), 2);
        let mut roots = Vec::new();
        for _ in 0..2 {
            let mut b = BtreeBuilder::new(8);
            for k in 0..300u64 {
                b.push_value(&mut s, k, &k.to_le_bytes()).unwrap();
            }
            for l in &shared {
                b.push_leaf(&mut s, l).unwrap();
            }
            roots.push(b.finish(&mut s).unwrap());
        }
        for l in &shared {
            assert_eq!(s.refs[&l.block], 2);
        }
        let mut keys = Vec::new();
        collect(&s, roots[1], true, 0, &mut keys);
        assert_eq!(keys.len(), 600);
    }
}
