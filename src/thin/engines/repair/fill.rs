//! Filling the holes of a salvaged device from older copies of its tree.
//!
//! When a device of the chosen (current) top-level tree lost a subtree, the
//! same device often still exists, whole, in an older top-level tree left on
//! disk by an earlier transaction. Whole leaves of that older tree whose keys
//! lie entirely inside a lost key range are taken back, newest candidate
//! first, and named in a warning: the current tree stays authoritative
//! everywhere it is readable (G2), and only what it lost is rolled back (G7).

use std::collections::BTreeMap;

use crate::pdata::block::BlockNr;
use crate::thin::engines::repair::candidates::TopCandidate;
use crate::thin::engines::repair::classify::{Classifier, Kind};
use crate::thin::engines::repair::trees::{mapping_leaves, top_devices, LostRange};

/// Older top-level trees, their device maps computed on first use.
pub struct Filler<'c, 't> {
    cls: &'c Classifier<'t>,
    tops: Vec<BlockNr>,
    maps: Vec<Option<BTreeMap<u64, BlockNr>>>,
}

/// A key range still missing: `[begin, end)`, `end` None = unbounded.
#[derive(Clone, Copy, Debug)]
struct Hole {
    begin: u64,
    end: Option<u64>,
}

impl Hole {
    fn holds(&self, first: u64, last: u64) -> bool {
        first >= self.begin && self.end.is_none_or(|e| last < e)
    }
}

/// What one fill took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filled {
    /// Root of the older top-level tree the leaves came from.
    pub top_root: BlockNr,
    /// Leaves taken.
    pub leaves: usize,
    /// Mappings in them.
    pub mappings: u64,
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
        Filler { cls, tops, maps }
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
            let mut f = Filled {
                top_root: self.tops[i],
                leaves: 0,
                mappings: 0,
            };
            for l in older {
                let Some(n) = self.cls.node(l) else {
                    continue;
                };
                if n.nr_entries == 0 || leaves.contains(&l) {
                    continue;
                }
                let (a, b) = (n.first_key, n.last_key);
                let inside = holes.iter().any(|h| h.holds(a, b));
                let clash = added.iter().any(|&(x, y, _)| a <= y && x <= b);
                if inside && !clash {
                    added.push((a, b, l));
                    f.leaves += 1;
                    f.mappings += u64::from(n.nr_entries);
                }
            }
            if f.leaves > 0 {
                out.push(f);
            }
            if current_root.is_none() && !added.is_empty() {
                // The first older tree holding the device supplies all of it.
                holes.clear();
            }
        }
        if !added.is_empty() {
            let cls = self.cls;
            leaves.extend(added.iter().map(|&(_, _, l)| l));
            leaves.sort_by_key(|&l| cls.node(l).map_or(0, |n| n.first_key));
        }
        out
    }
}

/// A device being assembled: id, leaves in key order, key ranges still
/// missing, and whether it has no tree at all.
pub type Pending = (u64, Vec<BlockNr>, Vec<(u64, Option<u64>)>, bool);

/// Gives unreferenced mapping subtrees (no parent, no top-level entry) to
/// the one device whose missing key range holds them whole without
/// overlapping its leaves: the children of a lost internal node come back.
/// Newest subtrees (highest mapping time), then largest, are placed first.
/// Subtrees holding mappings newer than `max_time` (the superblock's time,
/// when known) never were part of a committed transaction and are skipped.
pub fn adopt_orphans(
    cls: &Classifier,
    devices: &mut [Pending],
    max_time: Option<u32>,
    log: &crate::thin::engines::repair::Log,
) {
    if devices.iter().all(|d| d.2.is_empty()) {
        return;
    }
    let used: std::collections::HashSet<BlockNr> =
        devices.iter().flat_map(|d| d.1.iter().copied()).collect();
    let mut orphans: Vec<(u32, u64, BlockNr)> = Vec::new();
    for n in &cls.table().nodes {
        if cls.is_referenced(n.nr)
            || cls.is_root_referenced(n.nr)
            || used.contains(&n.nr)
            || cls.agg(n.nr, Kind::Top).is_some()
        {
            continue;
        }
        if let Some(a) = cls.agg(n.nr, Kind::Mapping) {
            let committed = max_time.is_none_or(|t| a.age <= t);
            if a.entries > 0
                && committed
                && a.status == crate::thin::engines::repair::classify::Status::Complete
            {
                orphans.push((a.age, a.entries, n.nr));
            }
        }
    }
    orphans.sort_unstable_by(|a, b| b.cmp(a));
    let mut taken: Vec<(u64, u64)> = vec![(0, 0); devices.len()];
    for (_, _, nr) in orphans {
        let Some(a) = cls.agg(nr, Kind::Mapping) else {
            continue;
        };
        let (lo, hi) = (a.first_key, a.last_key);
        let fits = |d: &Pending| {
            d.2.iter()
                .any(|&(b, e)| lo >= b && e.is_none_or(|e| hi < e))
                && !d.1.iter().any(|&l| {
                    cls.node(l)
                        .is_some_and(|n| n.nr_entries > 0 && n.first_key <= hi && lo <= n.last_key)
                })
        };
        let mut it = devices.iter().enumerate().filter(|(_, d)| fits(d));
        let (Some((i, _)), None) = (it.next(), it.next()) else {
            continue;
        };
        let (leaves, _) = mapping_leaves(cls, nr);
        if leaves
            .iter()
            .any(|l| used.contains(l) || devices[i].1.contains(l))
        {
            continue;
        }
        let d = &mut devices[i];
        d.1.extend(leaves);
        d.1.sort_by_key(|&l| cls.node(l).map_or(0, |n| n.first_key));
        taken[i].0 += 1;
        taken[i].1 += a.entries;
    }
    for (d, &(k, m)) in devices.iter().zip(&taken) {
        if k > 0 {
            log.warn(&format!(
                "device {}: took {m} mappings in {k} unreferenced subtrees inside its lost ranges",
                d.0
            ));
        }
    }
}
