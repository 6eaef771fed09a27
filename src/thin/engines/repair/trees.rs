//! Reading the surviving parts of classified trees: the devices of a
//! top-level tree, the entries of a details tree, the leaves of a mapping
//! tree, each with the key ranges that were lost on the way.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

use crate::pdata::block::BlockNr;
use crate::thin::engines::repair::classify::{Classifier, Kind, Loss};
use crate::thin::engines::repair::scan::Shape;
use crate::thin::model::device_details::DeviceDetails;

/// Deepest tree followed (real trees have at most 5 levels).
const MAX_DEPTH: u32 = 12;

/// A key range whose subtree could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LostRange {
    /// First key of the range.
    pub begin: u64,
    /// End of the range (exclusive); `None` when unbounded.
    pub end: Option<u64>,
    /// The child block that was dropped.
    pub block: BlockNr,
    /// Why.
    pub loss: Loss,
}

/// State of one walk: the path from the root (a node met again on its own
/// path is a cycle) and the last key emitted (leaves must increase; the
/// classification ensures it, this makes it a guarantee).
#[derive(Default)]
struct Walk {
    path: Vec<BlockNr>,
    last_key: Option<u64>,
}

/// Leaves (or leaf entries) of a tree under one reading, left to right.
fn walk(
    cls: &Classifier,
    nr: BlockNr,
    kind: Kind,
    hi: Option<u64>,
    st: &mut Walk,
    leaf: &mut dyn FnMut(BlockNr),
    lost: &mut Vec<LostRange>,
) {
    let Some(n) = cls.node(nr) else {
        return;
    };
    if n.shape != Shape::Internal {
        if n.nr_entries > 0 {
            if st.last_key.is_some_and(|k| n.first_key <= k) {
                lost.push(LostRange {
                    begin: n.first_key,
                    end: n.last_key.checked_add(1),
                    block: nr,
                    loss: Loss::KeyRange,
                });
                return;
            }
            st.last_key = Some(n.last_key);
        }
        leaf(nr);
        return;
    }
    if st.path.len() >= MAX_DEPTH as usize || st.path.contains(&nr) {
        return;
    }
    st.path.push(nr);
    let keys = cls.table().keys(n);
    let sel = cls.selection(nr, kind);
    let mut li = 0;
    for &(pos, child) in &sel.kept {
        while li < sel.lost.len() && sel.lost[li].0 < pos {
            lost.push(lost_range(keys, &sel.lost[li], hi));
            li += 1;
        }
        let child_hi = keys.get(pos + 1).copied().or(hi);
        walk(cls, child, kind, child_hi, st, leaf, lost);
    }
    for l in &sel.lost[li..] {
        lost.push(lost_range(keys, l, hi));
    }
    st.path.pop();
}

fn lost_range(keys: &[u64], l: &(usize, BlockNr, Loss), hi: Option<u64>) -> LostRange {
    LostRange {
        begin: keys[l.0],
        end: keys.get(l.0 + 1).copied().or(hi),
        block: l.1,
        loss: l.2,
    }
}

/// The leaves of the mapping tree at `root`, and the ranges lost beneath it.
#[must_use]
pub fn mapping_leaves(cls: &Classifier, root: BlockNr) -> (Vec<BlockNr>, Vec<LostRange>) {
    let mut leaves = Vec::new();
    let mut lost = Vec::new();
    if cls.agg(root, Kind::Mapping).is_some() {
        walk(
            cls,
            root,
            Kind::Mapping,
            None,
            &mut Walk::default(),
            &mut |l| leaves.push(l),
            &mut lost,
        );
    }
    (leaves, lost)
}

/// Every node (internal and leaf) of the mapping trees at `roots`, each
/// shared subtree visited once.
#[must_use]
pub fn mapping_tree_nodes(
    cls: &Classifier,
    roots: impl IntoIterator<Item = BlockNr>,
) -> HashSet<BlockNr> {
    let mut seen = HashSet::new();
    let mut stack: Vec<(BlockNr, u32)> = roots
        .into_iter()
        .filter(|&r| cls.agg(r, Kind::Mapping).is_some())
        .map(|r| (r, 0))
        .collect();
    while let Some((nr, depth)) = stack.pop() {
        if !seen.insert(nr) || depth >= MAX_DEPTH {
            continue;
        }
        if cls.node(nr).is_some_and(|n| n.shape == Shape::Internal) {
            let kept = cls.selection(nr, Kind::Mapping).kept;
            stack.extend(kept.into_iter().map(|(_, c)| (c, depth + 1)));
        }
    }
    seen
}

/// A device of a top-level tree: its id and mapping root, `None` when the
/// root is not a usable mapping tree.
pub type TopEntry = (u64, BlockNr, bool);

/// The leaves of the `kind` tree at `root` that survive, and the key ranges
/// lost; nothing when the root has no `readable` reading of that kind.
fn surviving_leaves(
    cls: &Classifier,
    root: BlockNr,
    kind: Kind,
    readable: bool,
) -> (Vec<BlockNr>, Vec<LostRange>) {
    let mut leaves = Vec::new();
    let mut lost = Vec::new();
    if readable {
        walk(
            cls,
            root,
            kind,
            None,
            &mut Walk::default(),
            &mut |l| leaves.push(l),
            &mut lost,
        );
    }
    (leaves, lost)
}

/// The devices of the top-level tree at `root` (id, mapping root, whether the
/// root is usable), and the id ranges lost.
#[must_use]
pub fn top_devices(cls: &Classifier, root: BlockNr) -> (Vec<TopEntry>, Vec<LostRange>) {
    let readable = cls.top_or_named_leaf(root).is_some();
    let (leaves, lost) = surviving_leaves(cls, root, Kind::Top, readable);
    let table = cls.table();
    let mut out = Vec::new();
    for l in leaves {
        let Some(n) = cls.node(l) else {
            continue;
        };
        for (&id, &r) in table.keys(n).iter().zip(table.values(n)) {
            out.push((id, r, cls.agg(r, Kind::Mapping).is_some()));
        }
    }
    (out, lost)
}

/// The entries of the details tree at `root`, and the id ranges lost.
#[must_use]
pub fn details_entries(
    cls: &Classifier,
    root: BlockNr,
) -> (Vec<(u64, DeviceDetails)>, Vec<LostRange>) {
    let readable = cls.agg(root, Kind::Details).is_some();
    let (leaves, lost) = surviving_leaves(cls, root, Kind::Details, readable);
    let table = cls.table();
    let mut out = Vec::new();
    for l in leaves {
        let Some(n) = cls.node(l) else {
            continue;
        };
        for (i, &id) in table.keys(n).iter().enumerate() {
            out.push((id, table.details(n, i)));
        }
    }
    (out, lost)
}

/// A time histogram: time → number of mappings.
pub type Histogram = BTreeMap<u32, u64>;

/// Time histograms of trees, memoised per mapping-tree node (shared subtrees
/// are computed once and counted once per reference).
pub struct Histograms<'c, 't> {
    cls: &'c Classifier<'t>,
    memo: HashMap<BlockNr, Rc<Histogram>>,
}

impl<'c, 't> Histograms<'c, 't> {
    /// An empty memo over `cls`.
    #[must_use]
    pub fn new(cls: &'c Classifier<'t>) -> Self {
        Histograms {
            cls,
            memo: HashMap::new(),
        }
    }

    /// The histogram of every mapping of every device of the top-level tree at `root`.
    #[must_use]
    pub fn of_top(&mut self, root: BlockNr) -> Histogram {
        let (devs, _) = top_devices(self.cls, root);
        let mut out = Histogram::new();
        for (_, r, ok) in devs {
            if ok {
                let h = self.of_mapping(r, 0);
                for (&t, &c) in h.iter() {
                    *out.entry(t).or_default() += c;
                }
            }
        }
        out
    }

    fn of_mapping(&mut self, nr: BlockNr, depth: u32) -> Rc<Histogram> {
        if let Some(h) = self.memo.get(&nr) {
            return Rc::clone(h);
        }
        let cls = self.cls;
        let mut out = Histogram::new();
        // A node met again while its own histogram is being summed is a
        // cycle: it counts as empty there.
        self.memo.insert(nr, Rc::new(Histogram::new()));
        if let Some(n) = cls.node(nr) {
            if n.shape == Shape::Internal {
                if depth < MAX_DEPTH {
                    for (_, c) in cls.selection(nr, Kind::Mapping).kept {
                        let h = self.of_mapping(c, depth + 1);
                        for (&t, &k) in h.iter() {
                            *out.entry(t).or_default() += k;
                        }
                    }
                }
            } else {
                for &(t, k) in cls.table().histogram(n) {
                    *out.entry(t).or_default() += u64::from(k);
                }
            }
        }
        let h = Rc::new(out);
        self.memo.insert(nr, Rc::clone(&h));
        h
    }
}
