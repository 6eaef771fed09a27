//! Filling the holes of a salvaged device from older copies of its tree.
//!
//! When a device of the chosen (current) top-level tree lost a subtree, the
//! same device often still exists, whole, in an older top-level tree left on
//! disk by an earlier transaction. Whole leaves of that older tree whose keys
//! lie entirely inside a lost key range are taken back, in candidate order,
//! and named in a warning: the current tree stays authoritative everywhere
//! it is readable, and only what it lost is rolled back.
//!
//! Where no older top-level tree holds the range, an older internal node of
//! the device's own tree may: copy-on-write leaves the predecessor of a
//! changed leaf under the predecessor of its parent, which still keeps some
//! of the device's current leaves as children (that is how it is known to be
//! the same device). Its leaves inside the lost ranges are taken, newest
//! node first, committed ones only.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::pdata::block::BlockNr;
use crate::thin::engines::repair::candidates::TopCandidate;
use crate::thin::engines::repair::classify::{Classifier, Kind};
use crate::thin::engines::repair::reuse::OlderSource;
use crate::thin::engines::repair::scan::Shape;
use crate::thin::engines::repair::trees::{mapping_leaves, top_devices, LostRange};

/// Older top-level trees, their device maps computed on first use; the
/// parents of every mapping-tree node, computed on first use.
pub struct Filler<'c, 't> {
    cls: &'c Classifier<'t>,
    tops: Vec<BlockNr>,
    maps: Vec<Option<BTreeMap<u64, BlockNr>>>,
    parents: Option<HashMap<BlockNr, Vec<BlockNr>>>,
    max_time: Option<u32>,
    current: HashSet<BlockNr>,
}

/// A key range still missing: `[begin, end)`, `end` None = unbounded.
#[derive(Clone, Copy, Debug)]
struct Hole {
    begin: u64,
    end: Option<u64>,
}

impl Hole {
    /// True when keys `first..=last` reach into the hole.
    fn meets(&self, first: u64, last: u64) -> bool {
        last >= self.begin && self.end.is_none_or(|e| first < e)
    }
}

/// What one fill took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filled {
    /// The older top-level tree or internal node the leaves came from.
    pub source: OlderSource,
    /// Leaves taken, in key order.
    pub blocks: Vec<BlockNr>,
    /// Entries in them.
    pub mappings: u64,
    /// Leaves among `blocks` that reach past the lost range: only their keys
    /// in `[lo, hi]` are taken.
    pub clipped: Vec<(BlockNr, u64, u64)>,
}

impl From<OlderSource> for Filled {
    fn from(source: OlderSource) -> Self {
        Filled {
            source,
            blocks: Vec::new(),
            mappings: 0,
            clipped: Vec::new(),
        }
    }
}

impl<'c, 't> Filler<'c, 't> {
    /// Older trees: every top-level candidate except `current`, in candidate order.
    #[must_use]
    pub fn new(cls: &'c Classifier<'t>, tops: &[TopCandidate], current: BlockNr) -> Self {
        let tops: Vec<BlockNr> = tops
            .iter()
            .map(|t| t.root)
            .filter(|&r| r != current)
            .collect();
        let maps = vec![None; tops.len()];
        Filler {
            cls,
            tops,
            maps,
            parents: None,
            max_time: None,
            current: HashSet::new(),
        }
    }

    /// The nodes of every device's current tree: older internal nodes are
    /// never one of them, and never give one of them.
    #[must_use]
    pub fn outside(mut self, current: HashSet<BlockNr>) -> Self {
        self.current = current;
        self
    }

    /// Older internal nodes holding mappings newer than `time` (not
    /// committed) are not filled from.
    #[must_use]
    pub fn committed_by(mut self, time: Option<u32>) -> Self {
        self.max_time = time;
        self
    }

    fn device_root(&mut self, i: usize, id: u64) -> Option<BlockNr> {
        let cls = self.cls;
        let root = self.tops[i];
        let map = self.maps[i].get_or_insert_with(|| {
            top_devices(cls, root)
                .0
                .into_iter()
                .filter(|d| d.2)
                .map(|d| (d.0, d.1))
                .collect()
        });
        map.get(&id).copied()
    }

    /// The mapping root of device `id` in the newest older tree where it
    /// holds exactly `count` mappings (the same tree, most likely).
    pub fn exact_root(&mut self, id: u64, count: u64) -> Option<(BlockNr, BlockNr)> {
        for i in 0..self.tops.len() {
            let Some(r) = self.device_root(i, id) else {
                continue;
            };
            let n = self.cls.agg(r, Kind::Mapping).map(|a| a.mappings);
            if n == Some(count) {
                return Some((self.tops[i], r));
            }
        }
        None
    }

    /// Older trees holding device `id`, the one where it has most mappings
    /// first (ties in candidate order).
    fn by_size(&mut self, id: u64) -> Vec<usize> {
        let mut v: Vec<(std::cmp::Reverse<u64>, usize)> = Vec::new();
        for i in 0..self.tops.len() {
            if let Some(r) = self.device_root(i, id) {
                let n = self.cls.agg(r, Kind::Mapping).map_or(0, |a| a.mappings);
                v.push((std::cmp::Reverse(n), i));
            }
        }
        v.sort();
        v.into_iter().map(|(_, i)| i).collect()
    }

    /// Adds to `leaves` (device `id`'s leaves, whose tree was rooted at
    /// `current_root`) the older leaves that fit inside `lost` (or anywhere
    /// when the device has no tree at all), keeping key order.
    pub fn fill(
        &mut self,
        id: u64,
        current_root: Option<BlockNr>,
        lost: &[LostRange],
        leaves: &mut Vec<BlockNr>,
    ) -> Vec<Filled> {
        let mut holes: Vec<Hole> = match current_root {
            None => vec![Hole {
                begin: 0,
                end: None,
            }],
            Some(_) => lost
                .iter()
                .map(|l| Hole {
                    begin: l.begin,
                    end: l.end,
                })
                .collect(),
        };
        let mut out = Vec::new();
        let own: HashSet<BlockNr> = leaves.iter().copied().collect();
        let mut added: Vec<(u64, u64, BlockNr)> = Vec::new();
        // A device with no tree at all takes the largest older copy of it.
        let order: Vec<usize> = match current_root {
            Some(_) => (0..self.tops.len()).collect(),
            None => self.by_size(id),
        };
        for i in order {
            if holes.is_empty() {
                break;
            }
            let Some(r) = self.device_root(i, id) else {
                continue;
            };
            if Some(r) == current_root {
                continue;
            }
            let (older, _) = mapping_leaves(self.cls, r);
            let mut f = Filled::from(OlderSource::Fill { top: self.tops[i] });
            self.take(older, &own, &holes, &mut added, &mut f);
            if !f.blocks.is_empty() {
                out.push(f);
            }
            if current_root.is_none() && !added.is_empty() {
                // The first older tree holding the device supplies all of it.
                holes.clear();
            }
        }
        if current_root.is_some() {
            out.extend(self.fill_from_older_nodes(&own, &holes, &mut added));
        }
        if !added.is_empty() {
            let cls = self.cls;
            leaves.extend(added.iter().map(|&(_, _, l)| l));
            // A clipped leaf starts where its clip does.
            let start: HashMap<BlockNr, u64> = added.iter().map(|&(lo, _, l)| (l, lo)).collect();
            leaves.sort_by_key(|l| {
                start
                    .get(l)
                    .copied()
                    .unwrap_or_else(|| cls.node(*l).map_or(0, |n| n.first_key))
            });
        }
        out
    }
}

impl Filler<'_, '_> {
    /// Takes into `f` the leaves of `older` in `holes` that overlap nothing
    /// in `added`: whole when inside one hole; clipped to the one hole they
    /// overlap when they reach past it and are no device's current leaf.
    fn take(
        &self,
        older: Vec<BlockNr>,
        own: &HashSet<BlockNr>,
        holes: &[Hole],
        added: &mut Vec<(u64, u64, BlockNr)>,
        f: &mut Filled,
    ) {
        for l in older {
            let Some(n) = self.cls.node(l) else {
                continue;
            };
            if n.nr_entries == 0 || own.contains(&l) {
                continue;
            }
            let (a, b) = (n.first_key, n.last_key);
            let mut meeting = holes.iter().filter(|h| h.meets(a, b));
            let (Some(h), None) = (meeting.next(), meeting.next()) else {
                continue;
            };
            let (lo, hi) = (a.max(h.begin), h.end.map_or(b, |e| b.min(e - 1)));
            let whole = (lo, hi) == (a, b);
            if !whole && self.current.contains(&l) {
                continue;
            }
            if added.iter().any(|&(x, y, _)| lo <= y && x <= hi) {
                continue;
            }
            added.push((lo, hi, l));
            f.blocks.push(l);
            f.mappings += u64::from(n.nr_entries);
            if !whole {
                f.clipped.push((l, lo, hi));
            }
        }
    }

    /// Internal mapping-tree node → the internal nodes keeping it as a child.
    fn parents(&mut self) -> &HashMap<BlockNr, Vec<BlockNr>> {
        let cls = self.cls;
        self.parents.get_or_insert_with(|| {
            let mut m: HashMap<BlockNr, Vec<BlockNr>> = HashMap::new();
            for n in cls
                .table()
                .nodes
                .iter()
                .filter(|n| n.shape == Shape::Internal)
            {
                if cls.agg(n.nr, Kind::Mapping).is_none() {
                    continue;
                }
                for (_, c) in cls.selection(n.nr, Kind::Mapping).kept {
                    m.entry(c).or_default().push(n.nr);
                }
            }
            m
        })
    }

    /// Leaves inside `holes` under older internal nodes that keep some of
    /// the device's current `leaves` (and something else) as children,
    /// newest node first; each taken leaf is added to `added`.
    fn fill_from_older_nodes(
        &mut self,
        own: &HashSet<BlockNr>,
        holes: &[Hole],
        added: &mut Vec<(u64, u64, BlockNr)>,
    ) -> Vec<Filled> {
        if holes.is_empty() {
            return Vec::new();
        }
        let cls = self.cls;
        let max_time = self.max_time;
        let mut nodes: Vec<(u32, BlockNr)> = Vec::new();
        self.parents();
        let (Some(parents), current) = (self.parents.as_ref(), &self.current) else {
            return Vec::new();
        };
        for l in own {
            for &p in parents.get(l).map_or(&[][..], Vec::as_slice) {
                let Some(a) = cls.agg(p, Kind::Mapping) else {
                    continue;
                };
                if current.contains(&p) {
                    continue;
                }
                let kept = cls.selection(p, Kind::Mapping).kept;
                let other = kept.iter().any(|(_, c)| !own.contains(c));
                if other && max_time.is_none_or(|t| a.age <= t) {
                    nodes.push((a.age, p));
                }
            }
        }
        nodes.sort_unstable_by(|a, b| b.cmp(a));
        nodes.dedup();
        let mut out = Vec::new();
        for (_, node) in nodes {
            let mut f = Filled::from(OlderSource::FillFromNode { node });
            self.take(mapping_leaves(cls, node).0, own, holes, added, &mut f);
            if !f.blocks.is_empty() {
                out.push(f);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thin::engines::repair::candidates;
    use crate::thin::engines::repair::scan::scan;
    use crate::thin::engines::repair::test_images::{
        copy_node, corrupt, entries, pool, superblock,
    };

    #[test]
    fn a_lost_leaf_is_taken_back_from_an_older_copy_of_the_device() {
        let dev = pool(&[(1, 600), (2, 10)]);
        let sb = superblock(&dev);
        let top = sb.mapping_root;
        let root1 = entries(&dev, top)[0].1;
        let slots = entries(&dev, root1);
        let leaf = slots[1].1;
        let n = u64::try_from(entries(&dev, leaf).len()).unwrap();
        // An older transaction's copy: the same device with its own copy of
        // the leaf, under its own root and top-level leaf.
        copy_node(&dev, leaf, 240, 0, 0);
        copy_node(&dev, root1, 241, leaf, 240);
        copy_node(&dev, top, 242, root1, 241);
        corrupt(&dev, leaf);

        let table = scan(&dev);
        let cls = Classifier::new(&table);
        let cands = candidates::find(&cls, &std::collections::BTreeSet::new());
        let mut filler = Filler::new(&cls, &cands.tops, top);
        assert_eq!(filler.exact_root(1, 600), Some((242, 241)));
        assert_eq!(filler.exact_root(1, 599), None);

        let (mut leaves, lost) = mapping_leaves(&cls, root1);
        assert_eq!(leaves.len(), slots.len() - 1);
        let filled = filler.fill(1, Some(root1), &lost, &mut leaves);
        assert_eq!(
            filled,
            vec![Filled {
                source: OlderSource::Fill { top: 242 },
                blocks: vec![240],
                mappings: n,
                clipped: Vec::new(),
            }]
        );
        let mut want: Vec<BlockNr> = slots.iter().map(|s| s.1).collect();
        want[1] = 240;
        assert_eq!(leaves, want, "the copy goes in key order");
    }

    #[test]
    fn a_device_with_no_tree_takes_its_largest_older_copy_whole() {
        let dev = pool(&[(1, 600)]);
        let top = superblock(&dev).mapping_root;
        let root1 = entries(&dev, top)[0].1;
        copy_node(&dev, top, 242, root1, root1);
        let table = scan(&dev);
        let cls = Classifier::new(&table);
        let cands = candidates::find(&cls, &std::collections::BTreeSet::new());
        let mut filler = Filler::new(&cls, &cands.tops, top);
        let mut leaves = Vec::new();
        let filled = filler.fill(1, None, &[], &mut leaves);
        assert_eq!(filled.len(), 1);
        assert_eq!(
            (filled[0].source, filled[0].mappings),
            (OlderSource::Fill { top: 242 }, 600)
        );
        let want: Vec<BlockNr> = entries(&dev, root1).iter().map(|s| s.1).collect();
        assert_eq!(leaves, want);
        assert!(filler.fill(9, None, &[], &mut Vec::new()).is_empty());
    }
}
