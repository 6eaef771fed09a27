//! The walker's record of the nodes it has read, by block number.
//!
//! A hash map of one entry per node costs about 100 bytes per node once its
//! buckets, load factor and the doubling on growth are counted (a rehash holds
//! the old and the new table at once), and a hash and a probe per lookup.
//! Node numbers are block numbers of one device, so this map keeps the
//! summaries in a vector in the order they were added and finds them through
//! a dense slot of 4 bytes per block of the device; the few blocks beyond it
//! (references past the end of a damaged device) go to a small hash map.

use rustc_hash::FxHashMap as HashMap;

use crate::pdata::block::BlockNr;
use crate::pdata::to_index;

/// Largest device (in blocks) given dense slots: 256 GiB of metadata, far
/// beyond the 16 GiB the format allows. Blocks past it use the hash map.
const DENSE_LIMIT: u64 = 1 << 26;

/// A map from block number to `V`, dense over `0..nr_blocks`.
pub(crate) struct NodeMap<V> {
    /// Slot per block: 0 for none, else the position in `entries` plus one.
    dense: Vec<u32>,
    /// Positions of blocks at or beyond `dense.len()`.
    sparse: HashMap<BlockNr, u32>,
    entries: Vec<(BlockNr, V)>,
}

impl<V> Default for NodeMap<V> {
    fn default() -> Self {
        NodeMap {
            dense: Vec::new(),
            sparse: HashMap::default(),
            entries: Vec::new(),
        }
    }
}

impl<V> NodeMap<V> {
    /// An empty map with dense slots for the blocks of a device of
    /// `nr_blocks` blocks (zeroed lazily by the allocator: only the slots of
    /// blocks actually added are ever touched).
    pub(crate) fn for_device(nr_blocks: u64) -> Self {
        NodeMap {
            dense: vec![0; to_index(nr_blocks.min(DENSE_LIMIT))],
            sparse: HashMap::default(),
            entries: Vec::new(),
        }
    }

    fn position(&self, nr: BlockNr) -> Option<usize> {
        let slot = match usize::try_from(nr).ok().and_then(|i| self.dense.get(i)) {
            Some(&s) => s,
            None => self.sparse.get(&nr).copied().unwrap_or(0),
        };
        (slot != 0).then(|| to_index(u64::from(slot) - 1))
    }

    pub(crate) fn get(&self, nr: BlockNr) -> Option<&V> {
        self.position(nr).map(|i| &self.entries[i].1)
    }

    pub(crate) fn get_mut(&mut self, nr: BlockNr) -> Option<&mut V> {
        self.position(nr).map(|i| &mut self.entries[i].1)
    }

    pub(crate) fn contains_key(&self, nr: BlockNr) -> bool {
        self.position(nr).is_some()
    }

    /// Adds or replaces the value of `nr`.
    pub(crate) fn insert(&mut self, nr: BlockNr, v: V) {
        if let Some(i) = self.position(nr) {
            self.entries[i].1 = v;
            return;
        }
        // More nodes than u32 slots cannot be read from a 16 TiB device of
        // 4 KiB blocks; saturate rather than wrap.
        let slot = u32::try_from(self.entries.len() + 1).unwrap_or(u32::MAX);
        self.entries.push((nr, v));
        match usize::try_from(nr).ok().and_then(|i| self.dense.get_mut(i)) {
            Some(s) => *s = slot,
            None => {
                self.sparse.insert(nr, slot);
            }
        }
    }

    pub(crate) fn reserve(&mut self, n: usize) {
        self.entries.reserve(n);
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry, in the order added.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (BlockNr, &V)> {
        self.entries.iter().map(|(nr, v)| (*nr, v))
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = BlockNr> + '_ {
        self.entries.iter().map(|(nr, _)| *nr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_and_sparse_blocks_are_found_and_replaced() {
        let mut m = NodeMap::for_device(100);
        m.insert(7, "a");
        m.insert(1 << 40, "far");
        m.insert(99, "b");
        m.insert(7, "c");
        assert_eq!(m.get(7), Some(&"c"));
        assert_eq!(m.get(1 << 40), Some(&"far"));
        assert_eq!(m.get(99), Some(&"b"));
        assert_eq!(m.get(100), None);
        assert!(!m.contains_key(0));
        assert_eq!(m.len(), 3);
        let keys: Vec<_> = m.keys().collect();
        assert_eq!(keys, vec![7, 1 << 40, 99]);
        *m.get_mut(99).unwrap() = "d";
        assert_eq!(m.iter().last(), Some((99, &"d")));
        let mut e: NodeMap<u8> = NodeMap::default();
        assert!(e.is_empty());
        e.insert(3, 1);
        assert_eq!(e.get(3), Some(&1));
    }
}
