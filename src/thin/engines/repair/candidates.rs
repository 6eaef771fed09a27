//! Root candidates: every unreferenced top-level and details tree, ordered
//! as upstream orders them (complete before damaged, snapshot copies last,
//! then by time histogram), paired (complete pairs need equal device ids and
//! mapping counts, damaged ones id sets one of which holds the other), plus
//! the empty leaves of a pool with no devices.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use crate::pdata::block::BlockNr;
use crate::thin::engines::repair::classify::{Agg, Classifier, Kind, Status};
use crate::thin::engines::repair::scan::Shape;
use crate::thin::engines::repair::trees::{details_entries, top_devices, Histogram, Histograms};

/// An unreferenced top-level tree.
#[derive(Clone, Debug)]
pub struct TopCandidate {
    /// Root block.
    pub root: BlockNr,
    /// Its reading.
    pub agg: Agg,
    /// Time → mappings.
    pub hist: Histogram,
    /// Device ids.
    pub ids: BTreeSet<u64>,
    /// Reachable from a metadata-snapshot copy (older than the live trees).
    pub from_snapshot: bool,
    /// Some values of its leaves were not mapping roots (only usable in a pair).
    pub ambiguous: bool,
}

/// An unreferenced details tree.
#[derive(Clone, Debug)]
pub struct DetailsCandidate {
    /// Root block.
    pub root: BlockNr,
    /// Its reading.
    pub agg: Agg,
    /// Device ids.
    pub ids: BTreeSet<u64>,
}

/// Everything found, ordered.
#[derive(Debug, Default)]
pub struct Candidates {
    /// Top-level candidates in upstream order (complete first, then damaged;
    /// snapshot trees after all others).
    pub tops: Vec<TopCandidate>,
    /// Details candidates, by Σ mapped_blocks.
    pub details: Vec<DetailsCandidate>,
    /// Complete pairs (indices into `tops`, `details`), upstream order.
    pub pairs: Vec<(usize, usize)>,
    /// Pairs with a damaged side whose id sets are compatible.
    pub damaged_pairs: Vec<(usize, usize)>,
    /// An empty top-level leaf and an empty details leaf (a pool with no devices).
    pub empty_pair: Option<(BlockNr, BlockNr)>,
}

/// Upstream's histogram order: newest time first, then larger count, then the
/// next time down; the histogram that runs out first goes last.
#[must_use]
pub fn compare_histograms(a: &Histogram, b: &Histogram) -> Ordering {
    let mut ia = a.iter().rev();
    let mut ib = b.iter().rev();
    loop {
        match (ia.next(), ib.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Greater,
            (Some(_), None) => return Ordering::Less,
            (Some((ta, ca)), Some((tb, cb))) => {
                let o = tb.cmp(ta).then(cb.cmp(ca));
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

/// Collects and orders the candidates of a classified scan.
#[must_use]
pub fn find(cls: &Classifier, snapshot_roots: &BTreeSet<BlockNr>) -> Candidates {
    let table = cls.table();
    let mut hists = Histograms::new(cls);
    let mut c = Candidates::default();
    let mut empty_top = None;
    let mut empty_details = None;
    for n in &table.nodes {
        if cls.is_referenced(n.nr) || n.misplaced {
            continue;
        }
        let class = cls.class_of(n.nr);
        if let Some(agg) = class.top {
            let (devs, _) = top_devices(cls, n.nr);
            c.tops.push(TopCandidate {
                root: n.nr,
                agg,
                hist: hists.of_top(n.nr),
                ids: devs.iter().map(|d| d.0).collect(),
                from_snapshot: snapshot_roots.contains(&n.nr),
                ambiguous: devs.iter().any(|d| !d.2),
            });
        }
        if let Some(agg) = class.details {
            if agg.entries == 0 {
                empty_details.get_or_insert(n.nr);
                continue;
            }
            let (devs, _) = details_entries(cls, n.nr);
            c.details.push(DetailsCandidate {
                root: n.nr,
                agg,
                ids: devs.iter().map(|d| d.0).collect(),
            });
        }
        if n.shape == Shape::Leaf8 && n.nr_entries == 0 && !cls.is_root_referenced(n.nr) {
            empty_top.get_or_insert(n.nr);
        }
    }
    c.tops.sort_by(|a, b| {
        a.from_snapshot
            .cmp(&b.from_snapshot)
            .then(a.agg.status.cmp(&b.agg.status))
            .then_with(|| compare_histograms(&a.hist, &b.hist))
    });
    let counts: BTreeSet<u64> = c.tops.iter().map(|t| t.agg.entries).collect();
    c.details.retain(|d| {
        d.agg.status == Status::Damaged || counts.contains(&d.agg.entries) || counts.is_empty()
    });
    c.details.sort_by_key(|d| d.agg.mappings);
    pair(&mut c);
    if let (Some(t), Some(d)) = (empty_top, empty_details) {
        c.empty_pair = Some((t, d));
    }
    c
}

fn pair(c: &mut Candidates) {
    for (ti, t) in c.tops.iter().enumerate() {
        for (di, d) in c.details.iter().enumerate() {
            let complete = t.agg.status == Status::Complete && d.agg.status == Status::Complete;
            if complete {
                if d.agg.mappings == t.agg.mappings && d.ids == t.ids {
                    c.pairs.push((ti, di));
                }
            } else if compatible_ids(&t.ids, &d.ids) {
                c.damaged_pairs.push((ti, di));
            }
        }
    }
}

/// Id sets of trees one of which lost a part: one must hold the other.
fn compatible_ids(a: &BTreeSet<u64>, b: &BTreeSet<u64>) -> bool {
    !a.is_empty() && !b.is_empty() && (a.is_subset(b) || b.is_subset(a))
}

/// The `-v` lines: every candidate and every compatible pair.
#[must_use]
pub fn info_lines(c: &Candidates) -> Vec<String> {
    let mut out = vec![format!("mapping candidates ({}):", c.tops.len())];
    for t in &c.tops {
        let counts: Vec<String> = t.hist.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        out.push(format!(
            "b={}, nr_devices={}, nr_mappings={}, highest_mapped={}, age={}, time_counts={{{}}}",
            t.root,
            t.agg.entries,
            t.agg.mappings,
            t.agg.max_block,
            t.agg.age,
            counts.join(", ")
        ));
    }
    out.push(format!("device candidates ({}):", c.details.len()));
    for d in &c.details {
        out.push(format!(
            "b={}, nr_devices={}, nr_mappings={}, max_tid={}, age={}",
            d.root, d.agg.entries, d.agg.mappings, d.agg.max_tid, d.agg.age
        ));
    }
    out.push(format!("compatible roots ({}):", c.pairs.len()));
    for &(t, d) in &c.pairs {
        out.push(format!("({}, {})", c.tops[t].root, c.details[d].root));
    }
    out
}

/// True when `root` reads as the kind asked.
#[must_use]
pub fn is_kind(cls: &Classifier, root: BlockNr, kind: Kind) -> bool {
    cls.agg(root, kind).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &[(u32, u64)]) -> Histogram {
        v.iter().copied().collect()
    }

    #[test]
    fn histograms_order_newest_time_then_count_and_empty_last() {
        let newer = h(&[(0, 5), (3, 1)]);
        let older = h(&[(0, 900), (2, 50)]);
        assert_eq!(compare_histograms(&newer, &older), Ordering::Less);
        let more = h(&[(1, 2), (3, 4)]);
        let fewer = h(&[(1, 9), (3, 3)]);
        assert_eq!(compare_histograms(&more, &fewer), Ordering::Less);
        let longer = h(&[(1, 1), (3, 4)]);
        let shorter = h(&[(3, 4)]);
        assert_eq!(compare_histograms(&longer, &shorter), Ordering::Less);
        assert_eq!(compare_histograms(&h(&[]), &shorter), Ordering::Greater);
        assert_eq!(compare_histograms(&longer, &longer), Ordering::Equal);
    }

    #[test]
    fn a_pool_without_its_superblock_gives_one_complete_pair() {
        use crate::thin::engines::repair::classify::Classifier;
        use crate::thin::engines::repair::scan::scan;
        use crate::thin::engines::repair::test_images::{pool, superblock, zero};
        let dev = pool(&[(1, 600), (2, 10)]);
        let sb = superblock(&dev);
        zero(&dev, 0);
        let table = scan(&dev);
        let cls = Classifier::new(&table);
        let c = find(&cls, &BTreeSet::new());
        assert_eq!(c.tops.len(), 1);
        assert_eq!(c.tops[0].root, sb.mapping_root);
        assert_eq!(c.tops[0].ids, BTreeSet::from([1, 2]));
        assert_eq!(c.tops[0].hist, h(&[(1, 610)]));
        assert!(!c.tops[0].ambiguous && !c.tops[0].from_snapshot);
        assert_eq!(c.details.len(), 1);
        assert_eq!(c.details[0].root, sb.details_root);
        assert_eq!(c.pairs, vec![(0, 0)]);
        assert!(c.damaged_pairs.is_empty() && c.empty_pair.is_none());
        let lines = info_lines(&c);
        assert_eq!(lines[0], "mapping candidates (1):");
        assert_eq!(
            lines.last().unwrap(),
            &format!("({}, {})", sb.mapping_root, sb.details_root)
        );
    }

    #[test]
    fn a_damaged_top_level_tree_pairs_only_as_damaged() {
        use crate::thin::engines::repair::classify::Classifier;
        use crate::thin::engines::repair::scan::scan;
        use crate::thin::engines::repair::test_images::{corrupt, entries, pool, superblock};
        let dev = pool(&[(1, 600), (2, 10)]);
        let sb = superblock(&dev);
        let root1 = entries(&dev, sb.mapping_root)[0].1;
        corrupt(&dev, entries(&dev, root1)[0].1);
        let table = scan(&dev);
        let cls = Classifier::new(&table);
        let c = find(&cls, &BTreeSet::new());
        assert!(c.pairs.is_empty());
        assert_eq!(c.damaged_pairs, vec![(0, 0)]);
        assert_eq!(c.tops[0].agg.status, Status::Damaged);
    }
}
