//! Orphans: complete mapping trees or subtrees that no internal node holds
//! and no top-level leaf names. They are what is left of a device whose
//! top-level entry, or of a subtree whose parent, was lost.
//!
//! Two uses, one definition of an orphan ([`orphan_roots`]):
//! - a device with recorded details but no mapping tree takes the orphan
//!   whose mapping count equals its `mapped_blocks` ([`Orphans`]);
//! - a device with lost key ranges takes the orphan subtrees that fit
//!   inside one of them ([`adopt_orphans`]).
//!
//! Orphans holding mappings newer than the superblock's time (when it is
//! known) never were part of a committed transaction and are skipped.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::pdata::block::BlockNr;
use crate::thin::engines::repair::classify::{Agg, Classifier, Kind, Status};
use crate::thin::engines::repair::messages::{KeyRange, Notes, Warning};
use crate::thin::engines::repair::reuse::{OlderPart, OlderSource};
use crate::thin::engines::repair::trees::mapping_leaves;

/// Every orphan with at least one mapping, committed by `max_time`.
fn orphan_roots<'a>(
    cls: &'a Classifier,
    max_time: Option<u32>,
) -> impl Iterator<Item = (BlockNr, Agg)> + 'a {
    cls.table().nodes.iter().filter_map(move |n| {
        // A leaf that reads as a top-level leaf is one: its values name
        // mapping roots, which real mappings almost never do.
        if n.misplaced
            || cls.is_referenced(n.nr)
            || cls.is_root_referenced(n.nr)
            || cls.agg(n.nr, Kind::Top).is_some()
        {
            return None;
        }
        let a = cls.agg(n.nr, Kind::Mapping)?;
        let committed = max_time.is_none_or(|t| a.age <= t);
        (a.status == Status::Complete && a.entries > 0 && committed).then_some((n.nr, a))
    })
}

/// Whole orphan trees, to be matched to devices by their mapping counts.
pub struct Orphans {
    /// (mappings, age, root), sorted.
    roots: Vec<(u64, u32, BlockNr)>,
    /// How many devices look for a tree of each size: a size two devices
    /// share identifies neither.
    wanted: BTreeMap<u64, usize>,
}

impl Orphans {
    /// The orphans of `cls` for devices wanting `wanted_counts` mappings.
    #[must_use]
    pub fn new(
        cls: &Classifier,
        wanted_counts: impl Iterator<Item = u64>,
        max_time: Option<u32>,
    ) -> Self {
        let mut wanted = BTreeMap::new();
        for c in wanted_counts {
            *wanted.entry(c).or_insert(0usize) += 1;
        }
        let mut roots: Vec<(u64, u32, BlockNr)> = orphan_roots(cls, max_time)
            .map(|(nr, a)| (a.mappings, a.age, nr))
            .collect();
        roots.sort_unstable();
        Orphans { roots, wanted }
    }

    /// The root with `count` mappings: the only one, or the only newest one.
    #[must_use]
    pub fn find(&self, count: u64) -> Option<BlockNr> {
        if count == 0 || self.wanted.get(&count).copied().unwrap_or(0) > 1 {
            return None;
        }
        let lo = self.roots.partition_point(|&(c, _, _)| c < count);
        let hi = self.roots.partition_point(|&(c, _, _)| c <= count);
        let m = &self.roots[lo..hi];
        let newest = m.iter().map(|r| r.1).max()?;
        let mut best = m.iter().filter(|r| r.1 == newest);
        match (best.next(), best.next()) {
            (Some(&(_, _, r)), None) => Some(r),
            _ => None,
        }
    }

    /// As [`Orphans::find`] for device `id`, saying so.
    pub fn take(&self, count: u64, notes: &Notes, id: u64) -> Option<BlockNr> {
        let root = self.find(count)?;
        notes.warn(&Warning::TreeFromOrphan { id, root });
        Some(root)
    }
}

/// A device being assembled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingDevice {
    /// Device id.
    pub id: u64,
    /// Leaves in key order.
    pub leaves: Vec<BlockNr>,
    /// Key ranges still missing.
    pub holes: Vec<KeyRange>,
    /// The device should have mappings but has no tree at all.
    pub rootless: bool,
    /// Leaves among `leaves` taken from older copies (not its own tree).
    pub borrowed: BTreeSet<BlockNr>,
    /// What was taken from older copies, to be named in warnings.
    pub older: Vec<OlderPart>,
    /// Borrowed leaves of which only the keys in `[lo, hi]` are taken.
    pub clip: BTreeMap<BlockNr, (u64, u64)>,
}

impl PendingDevice {
    /// Device `id` with its own `leaves` and the key ranges it lost.
    #[must_use]
    pub fn new(id: u64, leaves: Vec<BlockNr>, holes: Vec<KeyRange>) -> Self {
        PendingDevice {
            id,
            leaves,
            holes,
            rootless: false,
            borrowed: BTreeSet::new(),
            older: Vec::new(),
            clip: BTreeMap::new(),
        }
    }

    /// The first key taken from `leaf`: its first, or where its clip starts.
    #[must_use]
    pub fn first_key(&self, cls: &Classifier, leaf: BlockNr) -> u64 {
        match self.clip.get(&leaf) {
            Some(&(lo, _)) => lo,
            None => cls.node(leaf).map_or(0, |n| n.first_key),
        }
    }

    /// Puts the leaves back in key order.
    pub fn sort_leaves(&mut self, cls: &Classifier) {
        let mut keyed: Vec<(u64, BlockNr)> = self
            .leaves
            .iter()
            .map(|&l| (self.first_key(cls, l), l))
            .collect();
        keyed.sort_by_key(|k| k.0);
        self.leaves = keyed.into_iter().map(|k| k.1).collect();
    }

    /// True when the subtree with keys `lo..=hi` lies inside one hole and
    /// overlaps none of the leaves.
    fn fits(&self, cls: &Classifier, lo: u64, hi: u64) -> bool {
        let inside = self
            .holes
            .iter()
            .any(|h| lo >= h.begin && h.end.is_none_or(|e| hi < e));
        inside
            && !self.leaves.iter().any(|&l| {
                cls.node(l)
                    .is_some_and(|n| n.nr_entries > 0 && n.first_key <= hi && lo <= n.last_key)
            })
    }
}

/// Gives orphan subtrees to the one device whose missing key range holds
/// them whole without overlapping its leaves: the children of a lost
/// internal node come back. Newest subtrees (highest mapping time), then
/// largest, are placed first; a subtree two devices could take goes to
/// neither. What each device took is recorded in its `older` parts.
pub fn adopt_orphans(cls: &Classifier, devices: &mut [PendingDevice], max_time: Option<u32>) {
    if devices.iter().all(|d| d.holes.is_empty()) {
        return;
    }
    let used: HashSet<BlockNr> = devices
        .iter()
        .flat_map(|d| d.leaves.iter().copied())
        .collect();
    let mut orphans: Vec<(u32, u64, BlockNr)> = orphan_roots(cls, max_time)
        .filter(|(nr, _)| !used.contains(nr))
        .map(|(nr, a)| (a.age, a.entries, nr))
        .collect();
    orphans.sort_unstable_by(|a, b| b.cmp(a));
    let mut taken: Vec<(usize, Vec<BlockNr>)> = vec![(0, Vec::new()); devices.len()];
    for (_, _, nr) in orphans {
        let Some(a) = cls.agg(nr, Kind::Mapping) else {
            continue;
        };
        let mut it = devices
            .iter()
            .enumerate()
            .filter(|(_, d)| d.fits(cls, a.first_key, a.last_key));
        let (Some((i, _)), None) = (it.next(), it.next()) else {
            continue;
        };
        let (leaves, _) = mapping_leaves(cls, nr);
        let d = &mut devices[i];
        if leaves
            .iter()
            .any(|l| used.contains(l) || d.leaves.contains(l))
        {
            continue;
        }
        d.borrowed.extend(leaves.iter().copied());
        taken[i].1.extend(leaves.iter().copied());
        d.leaves.extend(leaves);
        d.sort_leaves(cls);
        taken[i].0 += 1;
    }
    for (d, (subtrees, mut blocks)) in devices.iter_mut().zip(taken) {
        if subtrees > 0 {
            blocks.sort_by_key(|&l| cls.node(l).map_or(0, |n| n.first_key));
            d.older.push(OlderPart {
                source: OlderSource::Subtrees { subtrees },
                blocks,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thin::engines::repair::scan::scan;
    use crate::thin::engines::repair::test_images::{corrupt, entries, pool, superblock};

    fn hole() -> Vec<KeyRange> {
        vec![KeyRange {
            begin: 0,
            end: None,
        }]
    }

    #[test]
    fn whole_orphan_trees_are_found_by_count_newest_and_committed_only() {
        let dev = pool(&[(1, 600), (2, 10), (3, 10)]);
        let sb = superblock(&dev);
        let roots = entries(&dev, sb.mapping_root);
        corrupt(&dev, sb.mapping_root);
        let table = scan(&dev);
        let cls = Classifier::new(&table);
        let o = Orphans::new(&cls, [600, 10, 10].into_iter(), None);
        assert_eq!(o.find(600), Some(roots[0].1));
        assert_eq!(o.find(10), None, "two devices want 10 mappings");
        assert_eq!(o.find(0), None);
        let o = Orphans::new(&cls, [10].into_iter(), None);
        assert_eq!(o.find(10), None, "two trees of 10 mappings, equally new");
        let o = Orphans::new(&cls, [600].into_iter(), Some(0));
        assert_eq!(o.find(600), None, "mapped after the superblock's time");
    }

    #[test]
    fn subtrees_of_a_lost_node_go_back_into_the_hole_they_fit() {
        let dev = pool(&[(1, 600), (2, 10)]);
        let sb = superblock(&dev);
        let root1 = entries(&dev, sb.mapping_root)[0].1;
        let leaves: Vec<BlockNr> = entries(&dev, root1).iter().map(|s| s.1).collect();
        corrupt(&dev, root1);
        let table = scan(&dev);
        let cls = Classifier::new(&table);
        let mut devices = vec![PendingDevice::new(1, Vec::new(), hole())];
        adopt_orphans(&cls, &mut devices, None);
        assert_eq!(devices[0].leaves, leaves);
        assert_eq!(
            devices[0].older,
            vec![OlderPart {
                source: OlderSource::Subtrees {
                    subtrees: leaves.len()
                },
                blocks: leaves.clone(),
            }]
        );
        assert_eq!(devices[0].borrowed, leaves.iter().copied().collect());
    }

    #[test]
    fn a_subtree_two_devices_could_take_goes_to_neither() {
        let dev = pool(&[(1, 600)]);
        let sb = superblock(&dev);
        let root1 = entries(&dev, sb.mapping_root)[0].1;
        corrupt(&dev, root1);
        let table = scan(&dev);
        let cls = Classifier::new(&table);
        let pending = |id| PendingDevice::new(id, Vec::new(), hole());
        let mut devices = vec![pending(1), pending(2)];
        adopt_orphans(&cls, &mut devices, None);
        assert!(devices
            .iter()
            .all(|d| d.leaves.is_empty() && d.older.is_empty()));
    }
}
