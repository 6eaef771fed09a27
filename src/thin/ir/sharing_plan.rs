//! Deciding which runs of leaves become `<def>`s and where devices `<ref>`
//! them, from nothing but each device's leaf list.
//!
//! The rule: a leaf starts a run (is a *head*) when it begins a device's
//! list, when it is reached from two different predecessors, or when its
//! predecessor has several successors or is itself the end of a list (a
//! *tail*); a run follows successors from its head up to the next tail. A
//! run reached more than once (shared head) is written once as a def and
//! referenced from every device that contains it; the other runs are written
//! in place.
//!
//! The input is, per device in dump order, the block numbers of its mapping
//! leaves left to right; the output is a [`SharingPlan`]: the shared runs
//! (named by their first leaf) and, per device, a sequence of plain leaf
//! groups and references. Reproducing the successor-graph algorithm exactly
//! is what makes our dumps byte-identical to upstream's, so this module knows
//! nothing about mappings: thin_dump feeds it the walker's leaf lists, repair
//! feeds it the lists of salvaged trees, and [`crate::thin::ir::emit`] turns a plan
//! plus leaf contents into IR events.

use rustc_hash::FxHashMap;

use crate::pdata::block::BlockNr;

/// One device's part of the output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// Leaves written in place, as one group (runs continue across them).
    Leaves(Vec<BlockNr>),
    /// A reference to the shared run named by its first leaf.
    Ref(BlockNr),
}

/// A run of leaves written once as a `<def>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedRun {
    /// The def's name: the block number of its first leaf.
    pub name: BlockNr,
    /// Its leaves, in key order (one group).
    pub leaves: Vec<BlockNr>,
}

/// What to write: the defs in ascending name order, then per device (in the
/// order the leaf lists were given) its segments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharingPlan {
    /// Shared runs, ascending by name.
    pub defs: Vec<SharedRun>,
    /// Per device, its segments; consecutive plain leaves are one segment.
    pub devices: Vec<Vec<Segment>>,
}

/// The leaf lists are inconsistent (only possible with damaged trees that
/// slipped past validation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SharingError {
    /// A leaf is reached twice while following one run.
    #[error("leaf {0} repeats within a run of shared leaves")]
    LeafRepeats(BlockNr),
    /// A device's list does not follow the runs built from it.
    #[error("leaf {0} does not start a run of leaves")]
    NotARunStart(BlockNr),
    /// More distinct leaves than the planner numbers (never the case for
    /// real metadata, whose blocks are far fewer).
    #[error("{0} distinct leaves are too many to plan")]
    TooManyLeaves(usize),
}

impl SharingPlan {
    /// `--expand-shared`: every device's whole list is one group, no defs.
    #[must_use]
    pub fn expanded(lists: &[&[BlockNr]]) -> SharingPlan {
        SharingPlan {
            defs: Vec::new(),
            devices: lists
                .iter()
                .map(|l| {
                    if l.is_empty() {
                        Vec::new()
                    } else {
                        vec![Segment::Leaves(l.to_vec())]
                    }
                })
                .collect(),
        }
    }

    /// Runs the def/ref algorithm over `lists` (one leaf list per device, in
    /// dump order; devices sharing a root pass the same list again).
    ///
    /// # Errors
    /// A [`SharingError`] when the lists contradict each other.
    pub fn build(lists: &[&[BlockNr]]) -> Result<SharingPlan, SharingError> {
        let index = LeafIndex::new(lists)?;
        let mut g = Graph::new(index.len());
        for list in lists {
            g.add_list(list.iter().map(|&b| index.get(b)));
        }
        g.close();
        let runs = g.runs(&index)?;
        runs.plan(lists, &index)
    }
}

const NONE: u32 = u32::MAX;
const HEAD: u8 = 1;
const SHARED: u8 = 2;
const TAIL: u8 = 4;

/// Dense numbering of the distinct leaves. There are fewer than [`NONE`],
/// so every leaf number, count of leaves and run length fits a `u32`.
struct LeafIndex {
    blocks: Vec<BlockNr>,
    map: FxHashMap<BlockNr, u32>,
}

impl LeafIndex {
    fn new(lists: &[&[BlockNr]]) -> Result<LeafIndex, SharingError> {
        let total: usize = lists.iter().map(|l| l.len()).sum();
        let mut map = FxHashMap::default();
        map.reserve(total.min(1 << 22));
        let mut blocks = Vec::new();
        for &b in lists.iter().flat_map(|l| l.iter()) {
            if let std::collections::hash_map::Entry::Vacant(e) = map.entry(b) {
                let i = u32::try_from(blocks.len())
                    .ok()
                    .filter(|&i| i != NONE)
                    .ok_or(SharingError::TooManyLeaves(blocks.len()))?;
                e.insert(i);
                blocks.push(b);
            }
        }
        Ok(LeafIndex { blocks, map })
    }

    fn len(&self) -> usize {
        self.blocks.len()
    }

    fn get(&self, b: BlockNr) -> u32 {
        // OK to unwrap: every block looked up was inserted by `new`.
        *self.map.get(&b).unwrap_or(&NONE)
    }

    fn block(&self, i: u32) -> BlockNr {
        self.blocks[i as usize]
    }
}

/// Fits a leaf number, count or run length into a `u32` (always possible:
/// see [`LeafIndex`]).
fn small(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(NONE)
}

/// The successor graph: each leaf's predecessor and successors over all
/// lists, and which leaves are heads, shared heads and tails.
struct Graph {
    flags: Vec<u8>,
    pred: Vec<u32>,
    /// First successor of each leaf.
    succ: Vec<u32>,
    /// Further successors (rare: only where trees diverge).
    more: FxHashMap<u32, Vec<u32>>,
}

impl Graph {
    fn new(n: usize) -> Graph {
        Graph {
            flags: vec![0; n],
            pred: vec![NONE; n],
            succ: vec![NONE; n],
            more: FxHashMap::default(),
        }
    }

    fn mark_head(&mut self, b: u32) {
        let f = &mut self.flags[b as usize];
        if *f & HEAD != 0 {
            *f |= SHARED;
        }
        *f |= HEAD;
    }

    fn has_succ(&self, p: u32, b: u32) -> bool {
        self.succ[p as usize] == b || self.more.get(&p).is_some_and(|v| v.contains(&b))
    }

    fn add_succ(&mut self, p: u32, b: u32) {
        if self.succ[p as usize] == NONE {
            self.succ[p as usize] = b;
        } else {
            self.more.entry(p).or_default().push(b);
        }
    }

    fn nr_succ(&self, p: u32) -> usize {
        if self.succ[p as usize] == NONE {
            0
        } else {
            1 + self.more.get(&p).map_or(0, Vec::len)
        }
    }

    /// Adds one device's list: its first leaf is a head, its last a tail; a
    /// leaf reached from a second predecessor becomes a head, a step taken
    /// twice marks its target shared.
    fn add_list(&mut self, list: impl Iterator<Item = u32>) {
        let mut prev = NONE;
        for b in list {
            if prev == NONE {
                self.mark_head(b);
            } else {
                if self.has_succ(prev, b) {
                    self.flags[b as usize] |= SHARED;
                } else {
                    self.add_succ(prev, b);
                }
                match self.pred[b as usize] {
                    NONE => self.pred[b as usize] = prev,
                    p if p != prev => self.mark_head(b),
                    _ => {}
                }
            }
            prev = b;
        }
        if prev != NONE {
            self.flags[prev as usize] |= TAIL;
        }
    }

    /// Closes the graph: a leaf with no single successor, or whose successor
    /// is a head, ends a run (a tail), and every successor of a tail is a
    /// head.
    fn close(&mut self) {
        let n = small(self.flags.len());
        let mut tails = Vec::new();
        for b in 0..n {
            let s = self.succ[b as usize];
            let ends = match self.nr_succ(b) {
                1 => self.flags[s as usize] & HEAD != 0,
                _ => true,
            };
            if ends || self.flags[b as usize] & TAIL != 0 {
                tails.push(b);
            }
        }
        for &t in &tails {
            self.flags[t as usize] |= TAIL;
        }
        for &t in &tails {
            let s = self.succ[t as usize];
            if s == NONE {
                continue;
            }
            self.mark_head(s);
            if let Some(more) = self.more.get(&t).cloned() {
                for n in more {
                    self.mark_head(n);
                }
            }
        }
    }

    /// The run of every head: its leaves from the head up to the next tail.
    fn runs(&self, index: &LeafIndex) -> Result<Runs, SharingError> {
        let mut heads: Vec<u32> = (0..small(self.flags.len()))
            .filter(|&b| self.flags[b as usize] & HEAD != 0)
            .collect();
        heads.sort_unstable_by_key(|&b| index.block(b));
        let mut runs = Runs {
            start: vec![NONE; self.flags.len()],
            len: vec![0; self.flags.len()],
            leaves: Vec::new(),
            shared: Vec::new(),
        };
        let mut stamp = vec![NONE; self.flags.len()];
        for (run_id, &h) in heads.iter().enumerate() {
            let run_id = small(run_id);
            let start = runs.leaves.len();
            let mut b = h;
            loop {
                if stamp[b as usize] == run_id {
                    return Err(SharingError::LeafRepeats(index.block(b)));
                }
                stamp[b as usize] = run_id;
                runs.leaves.push(b);
                if self.flags[b as usize] & TAIL != 0 {
                    break;
                }
                b = self.succ[b as usize];
            }
            runs.start[h as usize] = small(start);
            runs.len[h as usize] = small(runs.leaves.len() - start);
            if self.flags[h as usize] & SHARED != 0 {
                runs.shared.push(h);
            }
        }
        Ok(runs)
    }
}

/// Every head's run, as a slice of one flat leaf array.
struct Runs {
    start: Vec<u32>,
    len: Vec<u32>,
    leaves: Vec<u32>,
    /// Shared heads, in ascending block order.
    shared: Vec<u32>,
}

impl Runs {
    fn run(&self, h: u32) -> Option<&[u32]> {
        let s = self.start[h as usize];
        (s != NONE).then(|| {
            let s = s as usize;
            &self.leaves[s..s + self.len[h as usize] as usize]
        })
    }

    /// The plan: shared runs become defs; each device's list is cut into
    /// runs, shared ones referenced and the rest written in place.
    fn plan(&self, lists: &[&[BlockNr]], index: &LeafIndex) -> Result<SharingPlan, SharingError> {
        let to_blocks = |r: &[u32]| r.iter().map(|&i| index.block(i)).collect::<Vec<_>>();
        let mut shared_flag = vec![false; index.len()];
        for &h in &self.shared {
            shared_flag[h as usize] = true;
        }
        let defs = self
            .shared
            .iter()
            .filter_map(|&h| {
                self.run(h).map(|r| SharedRun {
                    name: index.block(h),
                    leaves: to_blocks(r),
                })
            })
            .collect();
        let mut devices = Vec::with_capacity(lists.len());
        for list in lists {
            let mut segs = Vec::new();
            let mut plain: Vec<BlockNr> = Vec::new();
            let mut i = 0;
            while i < list.len() {
                let b = list[i];
                let h = index.get(b);
                let run = self.run(h).ok_or(SharingError::NotARunStart(b))?;
                let end = i + run.len();
                let follows = end <= list.len()
                    && run
                        .iter()
                        .zip(&list[i..end])
                        .all(|(&r, &l)| index.block(r) == l);
                if !follows {
                    return Err(SharingError::NotARunStart(b));
                }
                if shared_flag[h as usize] {
                    if !plain.is_empty() {
                        segs.push(Segment::Leaves(std::mem::take(&mut plain)));
                    }
                    segs.push(Segment::Ref(b));
                } else {
                    plain.extend_from_slice(&list[i..end]);
                }
                i = end;
            }
            if !plain.is_empty() {
                segs.push(Segment::Leaves(plain));
            }
            devices.push(segs);
        }
        Ok(SharingPlan { defs, devices })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(lists: &[&[BlockNr]]) -> SharingPlan {
        SharingPlan::build(lists).unwrap()
    }

    #[test]
    fn a_single_device_has_no_defs() {
        let p = plan(&[&[5, 3, 9]]);
        assert!(p.defs.is_empty());
        assert_eq!(p.devices, vec![vec![Segment::Leaves(vec![5, 3, 9])]]);
    }

    #[test]
    fn a_whole_shared_tree_is_one_def_with_two_refs() {
        let p = plan(&[&[27], &[27]]);
        assert_eq!(
            p.defs,
            vec![SharedRun {
                name: 27,
                leaves: vec![27]
            }]
        );
        assert_eq!(
            p.devices,
            vec![vec![Segment::Ref(27)], vec![Segment::Ref(27)]]
        );
        let p = plan(&[&[4, 6, 8], &[4, 6, 8]]);
        assert_eq!(p.defs.len(), 1);
        assert_eq!(p.defs[0].leaves, vec![4, 6, 8]);
    }

    #[test]
    fn a_shared_tail_after_private_leaves() {
        // Three devices, two of them
        // ending in the same three leaves.
        let p = plan(&[&[10, 29, 30, 31], &[11, 12, 29, 30, 31], &[40]]);
        assert_eq!(
            p.defs,
            vec![SharedRun {
                name: 29,
                leaves: vec![29, 30, 31]
            }]
        );
        assert_eq!(
            p.devices,
            vec![
                vec![Segment::Leaves(vec![10]), Segment::Ref(29)],
                vec![Segment::Leaves(vec![11, 12]), Segment::Ref(29)],
                vec![Segment::Leaves(vec![40])],
            ]
        );
    }

    #[test]
    fn divergence_splits_runs() {
        // Shared prefix, different middles, shared suffix.
        let p = plan(&[&[1, 2, 3, 4], &[1, 2, 5, 4]]);
        let names: Vec<_> = p.defs.iter().map(|d| (d.name, d.leaves.clone())).collect();
        assert_eq!(names, vec![(1, vec![1, 2]), (4, vec![4])]);
        assert_eq!(
            p.devices[1],
            vec![Segment::Ref(1), Segment::Leaves(vec![5]), Segment::Ref(4)]
        );
    }

    #[test]
    fn expanded_plan_has_one_group_per_device() {
        let p = SharingPlan::expanded(&[&[1, 2], &[1, 2]]);
        assert!(p.defs.is_empty());
        assert_eq!(p.devices[1], vec![Segment::Leaves(vec![1, 2])]);
    }

    /// The def/ref rule followed literally with ordered sets, as a reference.
    fn reference(lists: &[&[BlockNr]]) -> SharingPlan {
        use std::collections::{BTreeMap, BTreeSet};
        let mut heads = BTreeSet::new();
        let mut tails = BTreeSet::new();
        let mut shared = BTreeSet::new();
        let mut succ: BTreeMap<BlockNr, BTreeSet<BlockNr>> = BTreeMap::new();
        let mut pred: BTreeMap<BlockNr, BlockNr> = BTreeMap::new();
        let mark = |b, heads: &mut BTreeSet<_>, shared: &mut BTreeSet<_>| {
            if !heads.insert(b) {
                shared.insert(b);
            }
        };
        for list in lists {
            for (i, &b) in list.iter().enumerate() {
                succ.entry(b).or_default();
                if i == 0 {
                    mark(b, &mut heads, &mut shared);
                    continue;
                }
                let p = list[i - 1];
                if !succ.get_mut(&p).unwrap().insert(b) {
                    shared.insert(b);
                }
                match pred.get(&b) {
                    Some(&q) if q != p => mark(b, &mut heads, &mut shared),
                    Some(_) => {}
                    None => {
                        pred.insert(b, p);
                    }
                }
            }
            if let Some(&last) = list.last() {
                tails.insert(last);
            }
        }
        for (b, s) in &succ {
            if s.len() != 1 || heads.contains(s.iter().next().unwrap()) {
                tails.insert(*b);
            }
        }
        for t in tails.clone() {
            for &n in &succ[&t] {
                mark(n, &mut heads, &mut shared);
            }
        }
        let mut runs = BTreeMap::new();
        for &h in &heads {
            let mut run = vec![h];
            let mut b = h;
            while !tails.contains(&b) {
                b = *succ[&b].iter().next().unwrap();
                run.push(b);
            }
            runs.insert(h, run);
        }
        let defs = runs
            .iter()
            .filter(|(h, _)| shared.contains(h))
            .map(|(&name, leaves)| SharedRun {
                name,
                leaves: leaves.clone(),
            })
            .collect();
        let devices = lists
            .iter()
            .map(|list| {
                let mut segs = Vec::new();
                let mut plain = Vec::new();
                let mut i = 0;
                while i < list.len() {
                    let run = &runs[&list[i]];
                    if shared.contains(&list[i]) {
                        if !plain.is_empty() {
                            segs.push(Segment::Leaves(std::mem::take(&mut plain)));
                        }
                        segs.push(Segment::Ref(list[i]));
                    } else {
                        plain.extend_from_slice(run);
                    }
                    i += run.len();
                }
                if !plain.is_empty() {
                    segs.push(Segment::Leaves(plain));
                }
                segs
            })
            .collect();
        SharingPlan { defs, devices }
    }

    /// Leaf lists shaped like a pool's: origins, snapshots sharing their
    /// lists, and copy-on-write replacing, adding and dropping leaves.
    fn pool() -> impl proptest::strategy::Strategy<Value = Vec<Vec<BlockNr>>> {
        use proptest::prelude::*;
        (
            1usize..4,
            1usize..30,
            proptest::collection::vec((0usize..8, 0usize..64, 0u8..4), 0..12),
        )
            .prop_map(|(origins, len, edits)| {
                let mut next: BlockNr = 1000;
                let mut devs: Vec<Vec<BlockNr>> = (0..origins)
                    .map(|_| {
                        (0..len)
                            .map(|_| {
                                next += 1;
                                next
                            })
                            .collect()
                    })
                    .collect();
                for (dev, pos, op) in edits {
                    let src = devs[dev % devs.len()].clone();
                    let mut snap = src.clone();
                    if !snap.is_empty() {
                        let at = pos % snap.len();
                        next += 1;
                        match op {
                            0 => snap[at] = next,
                            1 => snap.insert(at, next),
                            2 if snap.len() > 1 => {
                                snap.remove(at);
                            }
                            _ => {}
                        }
                    }
                    devs.push(snap);
                }
                devs
            })
    }

    proptest::proptest! {
        #[test]
        fn the_planner_follows_the_spec_and_covers_every_list(devs in pool()) {
            let lists: Vec<&[BlockNr]> = devs.iter().map(Vec::as_slice).collect();
            let plan = SharingPlan::build(&lists).unwrap();
            proptest::prop_assert_eq!(&plan, &reference(&lists));
            let defs: std::collections::HashMap<_, _> =
                plan.defs.iter().map(|d| (d.name, &d.leaves)).collect();
            for (list, segs) in lists.iter().zip(&plan.devices) {
                let mut flat = Vec::new();
                for s in segs {
                    match s {
                        Segment::Leaves(l) => flat.extend_from_slice(l),
                        Segment::Ref(n) => flat.extend_from_slice(defs[n]),
                    }
                }
                proptest::prop_assert_eq!(&flat[..], *list);
                proptest::prop_assert!(segs
                    .windows(2)
                    .all(|w| !matches!(w, [Segment::Leaves(_), Segment::Leaves(_)])));
            }
        }
    }
}
