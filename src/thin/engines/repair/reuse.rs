//! Older copies never bring back a reused data block.
//!
//! Leaves a device borrows from an older copy of its tree (a lost range
//! filled from an older top-level tree, a whole older tree, an adopted
//! unreferenced subtree) describe the pool as it was some transactions ago.
//! A data block such a leaf maps may have been freed and reused since: its
//! content now belongs to another virtual block or another device. A
//! borrowed mapping `v → d` is dropped when the surviving trees (every
//! device's own, current leaves) use `d` at another virtual block, or at `v`
//! in a device unrelated to the borrower. Devices are related when they share
//! a surviving leaf, or when the other device holds at least two mappings of
//! the borrowed leaf exactly (a snapshot and its origin agree on many).
//!
//! Leaves that are also a surviving leaf of some device are current
//! mappings: they are never cut.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::pdata::block::{Block, BlockNr};
use crate::pdata::btree::node::NodeRef;
use crate::pdata::io::BlockDevice;
use crate::thin::model::mapping::{BlockTime, MAPPING_VALUE_SIZE};

/// Where leaves borrowed from older copies came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OlderSource {
    /// Leaves of an older top-level tree filling the device's lost ranges.
    Fill {
        /// Root of that older top-level tree.
        top: BlockNr,
    },
    /// Leaves under an older internal node of the device's own tree,
    /// filling its lost ranges.
    FillFromNode {
        /// That older internal node.
        node: BlockNr,
    },
    /// The device's whole mapping tree, from an older top-level tree.
    WholeTree {
        /// Root of that older top-level tree.
        top: BlockNr,
    },
    /// Unreferenced subtrees adopted into the device's lost ranges.
    Subtrees {
        /// How many.
        subtrees: usize,
    },
}

/// Leaves a device took from one older source, in key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OlderPart {
    /// Where from.
    pub source: OlderSource,
    /// The leaves.
    pub blocks: Vec<BlockNr>,
}

/// A device's leaves split by where they came from.
#[derive(Clone, Copy, Debug)]
pub struct DeviceLeafSets<'a> {
    /// Device id.
    pub id: u64,
    /// Every leaf, in key order.
    pub leaves: &'a [BlockNr],
    /// The leaves among them borrowed from older copies.
    pub borrowed: &'a BTreeSet<BlockNr>,
    /// Borrowed leaves of which only the keys in `[lo, hi]` are taken.
    pub clip: &'a BTreeMap<BlockNr, (u64, u64)>,
}

/// One mapping of a leaf: (virtual block, data block).
type Entry = (u64, u64);

/// The mappings (key, data block) of the leaf at `nr`, read as the scan
/// classified it (its block-number field is not checked); empty when it no
/// longer reads as a leaf.
#[must_use]
pub fn leaf_entries(dev: &dyn BlockDevice, nr: BlockNr) -> Vec<(u64, u64)> {
    let mut b = Block::zeroed();
    if dev.read_at(nr, &mut b).is_err() {
        return Vec::new();
    }
    let mut recorded = [0u8; 8];
    recorded.copy_from_slice(&b.0[8..16]);
    let Ok(n) = NodeRef::new(&b.0, u64::from_le_bytes(recorded), MAPPING_VALUE_SIZE) else {
        return Vec::new();
    };
    if !n.is_leaf() {
        return Vec::new();
    }
    n.keys()
        .iter()
        .zip(n.values_u64())
        .map(|(k, v)| (k.get(), BlockTime::unpack(v.get()).block))
        .collect()
}

/// Keys to drop per borrowed leaf, and the number of mappings dropped per
/// device (every device borrowing a leaf loses what the leaf loses).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reused {
    /// Leaf → keys left out of it (outside the range taken, or reused), ascending.
    pub keys: BTreeMap<BlockNr, Vec<u64>>,
    /// Leaf → how many of those were left out as reused.
    pub reused: BTreeMap<BlockNr, u64>,
}

impl Reused {
    /// Mappings of `leaves` left out as reused.
    #[must_use]
    pub fn dropped_from(&self, leaves: &[BlockNr]) -> u64 {
        leaves.iter().filter_map(|l| self.reused.get(l)).sum()
    }

    /// Keys of `leaf` left out.
    #[must_use]
    pub fn left_out(&self, leaf: BlockNr) -> u64 {
        self.keys.get(&leaf).map_or(0, |k| k.len() as u64)
    }
}

/// The borrowed mappings of `devices` whose data block the surviving trees
/// use elsewhere.
#[must_use]
pub fn reused_mappings(dev: &dyn BlockDevice, devices: &[DeviceLeafSets]) -> Reused {
    let surviving: BTreeMap<BlockNr, Vec<u64>> = {
        let mut m: BTreeMap<BlockNr, Vec<u64>> = BTreeMap::new();
        for d in devices {
            for l in d.leaves.iter().filter(|l| !d.borrowed.contains(l)) {
                m.entry(*l).or_default().push(d.id);
            }
        }
        m
    };
    // Borrowed leaves, with the devices borrowing each and the key range
    // taken (the narrowest any of them takes).
    let mut borrowed: BTreeMap<BlockNr, Vec<u64>> = BTreeMap::new();
    let mut clip: BTreeMap<BlockNr, (u64, u64)> = BTreeMap::new();
    for d in devices {
        for &l in d.borrowed.iter().filter(|l| !surviving.contains_key(l)) {
            borrowed.entry(l).or_default().push(d.id);
            if let Some(&(lo, hi)) = d.clip.get(&l) {
                let c = clip.entry(l).or_insert((lo, hi));
                *c = (c.0.max(lo), c.1.min(hi));
            }
        }
    }
    if borrowed.is_empty() {
        return Reused::default();
    }
    let mut out = Reused::default();
    let mut entries: BTreeMap<BlockNr, Vec<(u64, u64)>> = BTreeMap::new();
    for &l in borrowed.keys() {
        let (inside, outside): (Vec<Entry>, Vec<Entry>) = leaf_entries(dev, l)
            .into_iter()
            .partition(|&(k, _)| clip.get(&l).is_none_or(|&(lo, hi)| lo <= k && k <= hi));
        if !outside.is_empty() {
            out.keys.insert(l, outside.iter().map(|e| e.0).collect());
        }
        entries.insert(l, inside);
    }
    let wanted: HashSet<u64> = entries.values().flatten().map(|&(_, d)| d).collect();
    let uses = surviving_uses(dev, &surviving, &wanted);
    let sharing = shared_leaf_pairs(&surviving);
    for (&leaf, ids) in &borrowed {
        let e = &entries[&leaf];
        let enc = Encounters::of(e, &uses);
        let dropped: Vec<u64> = e
            .iter()
            .filter(|&&(v, d)| {
                ids.iter()
                    .any(|&id| is_reused(id, v, d, &enc, &uses, &sharing))
            })
            .map(|&(v, _)| v)
            .collect();
        if dropped.is_empty() {
            continue;
        }
        out.reused.insert(leaf, dropped.len() as u64);
        let keys = out.keys.entry(leaf).or_default();
        keys.extend(dropped);
        keys.sort_unstable();
    }
    out
}

/// Data block → (device, virtual block) of every surviving mapping whose
/// data block is in `wanted`.
fn surviving_uses(
    dev: &dyn BlockDevice,
    surviving: &BTreeMap<BlockNr, Vec<u64>>,
    wanted: &HashSet<u64>,
) -> HashMap<u64, Vec<(u64, u64)>> {
    let mut uses: HashMap<u64, Vec<(u64, u64)>> = HashMap::new();
    for (&leaf, ids) in surviving {
        for (v, d) in leaf_entries(dev, leaf) {
            if wanted.contains(&d) {
                let u = uses.entry(d).or_default();
                u.extend(ids.iter().map(|&id| (id, v)));
            }
        }
    }
    uses
}

/// Pairs of devices (smaller id first) sharing a surviving leaf.
fn shared_leaf_pairs(surviving: &BTreeMap<BlockNr, Vec<u64>>) -> HashSet<(u64, u64)> {
    let mut out = HashSet::new();
    for ids in surviving.values() {
        for (i, &a) in ids.iter().enumerate() {
            for &b in &ids[i + 1..] {
                out.insert((a.min(b), a.max(b)));
            }
        }
    }
    out
}

/// How each other device's surviving mappings meet a borrowed leaf: those
/// that hold one of its mappings exactly, those that map one of its data
/// blocks at another virtual block (they took over a freed block).
#[derive(Debug, Default)]
struct Encounters {
    agreeing: HashSet<u64>,
    conflicting: HashSet<u64>,
}

impl Encounters {
    fn of(entries: &[(u64, u64)], uses: &HashMap<u64, Vec<(u64, u64)>>) -> Self {
        let mut e = Encounters::default();
        for &(v, d) in entries {
            for &(other, w) in uses.get(&d).map_or(&[][..], Vec::as_slice) {
                if w == v {
                    e.agreeing.insert(other);
                } else {
                    e.conflicting.insert(other);
                }
            }
        }
        e
    }

    /// A relative of the borrower `id` (a snapshot or origin): it shares a
    /// surviving leaf with it, or holds some of the leaf's mappings exactly
    /// and none of its data blocks elsewhere.
    fn related(&self, id: u64, other: u64, sharing: &HashSet<(u64, u64)>) -> bool {
        other == id
            || sharing.contains(&(id.min(other), id.max(other)))
            || (self.agreeing.contains(&other) && !self.conflicting.contains(&other))
    }
}

/// True when device `id` borrowing `v → d` (from a leaf the surviving trees
/// meet as `enc`) would map a data block the surviving trees use elsewhere.
fn is_reused(
    id: u64,
    v: u64,
    d: u64,
    enc: &Encounters,
    uses: &HashMap<u64, Vec<(u64, u64)>>,
    sharing: &HashSet<(u64, u64)>,
) -> bool {
    uses.get(&d).is_some_and(|u| {
        u.iter()
            .any(|&(other, w)| w != v || !enc.related(id, other, sharing))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_used_at_another_place_or_by_a_stranger_is_reused() {
        let entries = [(0, 100), (1, 101), (2, 102)];
        let mut uses: HashMap<u64, Vec<(u64, u64)>> = HashMap::new();
        // Device 2 holds 100 at 0 and 101 at 1 exactly: a relative of device 1.
        uses.insert(100, vec![(2, 0)]);
        uses.insert(101, vec![(2, 1)]);
        // Device 3 maps 102 at 7: reused.
        uses.insert(102, vec![(3, 7)]);
        let none = HashSet::new();
        let enc = Encounters::of(&entries, &uses);
        assert!(!is_reused(1, 0, 100, &enc, &uses, &none));
        assert!(is_reused(1, 2, 102, &enc, &uses, &none));
        assert!(!is_reused(1, 9, 999, &enc, &uses, &none), "unused block");
        // Device 3 also holds 101 at 1: it took over the leaf's blocks, so
        // that is reuse too, unless it shares a surviving leaf with device 1.
        uses.insert(101, vec![(3, 1)]);
        let enc = Encounters::of(&entries, &uses);
        assert!(is_reused(1, 1, 101, &enc, &uses, &none));
        assert!(!is_reused(1, 1, 101, &enc, &uses, &HashSet::from([(1, 3)])));
    }
}
