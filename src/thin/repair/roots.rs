//! Choosing roots and superblock values (repair.md §1.2–1.7, G1, G4).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::{bail, Result};

use crate::pdata::block::BlockNr;
use crate::thin::ir::SuperblockInfo;
use crate::thin::repair::classify::{Class, Classified, Kind};
use crate::thin::repair::scan::ScannedNode;
use crate::thin::repair::tree::leaves;
use crate::thin::superblock::{valid_data_block_size, Superblock};
use crate::thin::writer::Overrides;

/// A possible top-level or details root.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Root block.
    pub root: BlockNr,
    /// Its aggregate.
    pub class: Class,
    /// Device ids in the tree.
    pub ids: Vec<u64>,
    /// time -> mappings, newest first (top-level only).
    pub times: Vec<(u32, u64)>,
}

/// What the repair will write.
#[derive(Clone, Debug)]
pub struct Chosen {
    /// Superblock values for the output.
    pub sb: SuperblockInfo,
    /// Top-level root (None for an empty pool, or when `orphans` is used).
    pub top: Option<BlockNr>,
    /// Device roots found without a top-level tree (orphan recovery).
    pub orphans: Option<BTreeMap<u64, BlockNr>>,
    /// Details root (None when the details are regenerated).
    pub details: Option<BlockNr>,
    /// Whether the roots are the superblock's own.
    pub from_superblock: bool,
    /// Times given to regenerated details.
    pub regen_time: u32,
    /// Transaction id given to regenerated details.
    pub regen_tid: u64,
}

/// Device ids of a top-level or details tree.
fn ids_of(cl: &Classified, root: BlockNr, kind: Kind) -> Vec<u64> {
    let mut lost = Vec::new();
    let mut ids = Vec::new();
    for leaf in leaves(cl, root, kind, &mut lost) {
        match cl.scan.nodes.get(&leaf) {
            Some(ScannedNode::U64(l)) => {
                ids.extend(l.small_values.iter().flatten().map(|&(k, _)| k));
            }
            Some(ScannedNode::Details(d)) => ids.extend(d.entries.iter().map(|&(k, _)| k)),
            _ => {}
        }
    }
    ids
}

/// Mapping roots of a top-level tree, by device id.
#[must_use]
pub fn device_roots(cl: &Classified, root: BlockNr) -> Vec<(u64, BlockNr)> {
    let mut lost = Vec::new();
    let mut out = Vec::new();
    for leaf in leaves(cl, root, Kind::TopLevel, &mut lost) {
        if let Some(ScannedNode::U64(l)) = cl.scan.nodes.get(&leaf) {
            out.extend(l.small_values.iter().flatten().copied());
        }
    }
    out
}

fn time_histogram(
    cl: &Classified,
    root: BlockNr,
    memo: &mut HashMap<BlockNr, Vec<(u32, u64)>>,
) -> Vec<(u32, u64)> {
    let mut total: HashMap<u32, u64> = HashMap::new();
    for (_, dev_root) in device_roots(cl, root) {
        let h = memo.entry(dev_root).or_insert_with(|| {
            let mut m: HashMap<u32, u64> = HashMap::new();
            let mut lost = Vec::new();
            for leaf in leaves(cl, dev_root, Kind::Mapping, &mut lost) {
                if let Some(ScannedNode::U64(l)) = cl.scan.nodes.get(&leaf) {
                    for &(t, n) in &l.times {
                        *m.entry(t).or_default() += u64::from(n);
                    }
                }
            }
            m.into_iter().collect()
        });
        for &(t, n) in h.iter() {
            *total.entry(t).or_default() += n;
        }
    }
    let mut v: Vec<(u32, u64)> = total.into_iter().collect();
    v.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
    v
}

/// Upstream's order: newest time first, then the larger count, then the next
/// time; a histogram that runs out first goes last.
fn compare_times(a: &[(u32, u64)], b: &[(u32, u64)]) -> Ordering {
    for i in 0.. {
        match (a.get(i), b.get(i)) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Greater,
            (Some(_), None) => return Ordering::Less,
            (Some(x), Some(y)) => {
                let o = y.0.cmp(&x.0).then(y.1.cmp(&x.1));
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
    Ordering::Equal
}

/// Unreferenced top-level and details roots, top-level ones in upstream order.
#[must_use]
pub fn candidates(cl: &Classified) -> (Vec<Candidate>, Vec<Candidate>) {
    let mut tops = Vec::new();
    let mut details = Vec::new();
    let mut memo = HashMap::new();
    let mut blocks: Vec<BlockNr> = cl.scan.nodes.keys().copied().collect();
    blocks.sort_unstable();
    for b in blocks {
        if cl.referenced.contains(&b) {
            continue;
        }
        let Some(class) = cl.class(b) else { continue };
        match class.kind {
            Kind::TopLevel => tops.push(Candidate {
                root: b,
                class,
                ids: ids_of(cl, b, Kind::TopLevel),
                times: time_histogram(cl, b, &mut memo),
            }),
            Kind::Details if class.entries > 0 => details.push(Candidate {
                root: b,
                class,
                ids: ids_of(cl, b, Kind::Details),
                times: Vec::new(),
            }),
            _ => {}
        }
    }
    tops.sort_by(|a, b| compare_times(&a.times, &b.times));
    details.sort_by_key(|d| (d.class.sum_mapped, d.root));
    (tops, details)
}

/// (top, details) pairs: same device ids, Σ mapped_blocks = counted mappings.
#[must_use]
pub fn pairs(tops: &[Candidate], details: &[Candidate]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (i, t) in tops.iter().enumerate() {
        for (j, d) in details.iter().enumerate() {
            if d.class.sum_mapped == t.class.mappings && d.ids == t.ids {
                out.push((i, j));
            }
        }
    }
    // Complete pairs first, then damaged ones, each in upstream order.
    out.sort_by_key(|&(i, j)| !(tops[i].class.complete && details[j].class.complete));
    out
}

fn block_size(
    ov: &Overrides,
    reference: Option<&Superblock>,
    snapshots: &[(BlockNr, Superblock)],
) -> Result<u32> {
    let found = ov
        .data_block_size
        .or(reference.map(|r| r.data_block_size))
        .or(snapshots.first().map(|s| s.1.data_block_size));
    let Some(s) = found else {
        bail!("data block size needs to be provided due to corruption in the superblock");
    };
    if !valid_data_block_size(u64::from(s)) {
        bail!("invalid data block size");
    }
    Ok(s)
}

fn info(time: u32, transaction: u64, data_block_size: u32, nr_data_blocks: u64) -> SuperblockInfo {
    SuperblockInfo {
        uuid: String::new(),
        time,
        transaction,
        flags: 0,
        version: 2,
        data_block_size,
        nr_data_blocks,
        metadata_snap: None,
    }
}

/// Is `b` a usable root of `kind` (complete or damaged; an empty u64 leaf
/// counts as an empty top-level tree)?
fn usable(cl: &Classified, b: BlockNr, kind: Kind) -> Option<Class> {
    match cl.class(b) {
        Some(c) if c.kind == kind => Some(c),
        Some(c)
            if kind == Kind::TopLevel
                && c.kind == Kind::Mapping
                && c.entries == 0
                && c.height == 0 =>
        {
            Some(c)
        }
        _ => None,
    }
}

/// Chooses roots and superblock values.
///
/// # Errors
/// `no compatible roots found`, or a missing/invalid data block size.
pub fn choose(
    cl: &Classified,
    reference: Option<&Superblock>,
    ov: &Overrides,
    tops: &[Candidate],
    details: &[Candidate],
    warnings: &mut Vec<String>,
) -> Result<Chosen> {
    let pairs = pairs(tops, details);
    // The superblock's own roots, when they are (possibly damaged) trees.
    if let Some(r) = reference {
        let top = usable(cl, r.mapping_root, Kind::TopLevel);
        let det = usable(cl, r.details_root, Kind::Details);
        let matching = |t: &Class, d: &Class| {
            let ti = if t.kind == Kind::TopLevel {
                ids_of(cl, r.mapping_root, Kind::TopLevel)
            } else {
                Vec::new()
            };
            let di = ids_of(cl, r.details_root, Kind::Details);
            if t.complete && d.complete {
                ti == di && d.sum_mapped == t.mappings
            } else {
                (ti.is_empty() && di.is_empty()) || ti.iter().any(|x| di.binary_search(x).is_ok())
            }
        };
        if let (Some(t), Some(d)) = (top, det) {
            if !matching(&t, &d) {
                return choose_scanned(cl, reference, ov, tops, details, &pairs, warnings);
            }
            let data_block_size = block_size(ov, reference, &cl.scan.snapshots)?;
            let nr = r
                .data_sm_root
                .nr_blocks
                .max(ov.nr_data_blocks.unwrap_or(0))
                .max(t.max_data + u64::from(t.entries > 0));
            let tid = r.trans_id.max(ov.transaction_id.unwrap_or(0));
            return Ok(Chosen {
                sb: info(r.time, tid, data_block_size, nr),
                top: (t.kind == Kind::TopLevel).then_some(r.mapping_root),
                details: Some(r.details_root),
                orphans: None,
                from_superblock: true,
                regen_time: r.time,
                regen_tid: tid.saturating_sub(1),
            });
        }
    }
    if let Some(r) = reference {
        // A pair holding one of the superblock's roots is the current pool.
        let mut pairs = pairs.clone();
        pairs.sort_by_key(|&(i, j)| {
            tops[i].root != r.mapping_root && details[j].root != r.details_root
        });
        if pairs.first().is_some_and(|&(i, j)| {
            tops[i].root == r.mapping_root || details[j].root == r.details_root
        }) {
            return choose_scanned(cl, reference, ov, tops, details, &pairs, warnings);
        }
        if let Some(c) = current_half(cl, r, ov, warnings)? {
            // Partial orphan recovery: an older complete tree may hold more.
            if let Some(o) = &c.orphans {
                let got: u64 = o
                    .values()
                    .filter_map(|&b| cl.class(b))
                    .map(|x| x.mappings)
                    .sum();
                let mut scratch = Vec::new();
                if let Ok(alt) =
                    choose_scanned(cl, reference, ov, tops, details, &pairs, &mut scratch)
                {
                    let alt_maps = alt.top.and_then(|t| cl.class(t)).map_or(0, |x| x.mappings);
                    if alt_maps > got {
                        warnings.extend(scratch);
                        return Ok(alt);
                    }
                }
            }
            return Ok(c);
        }
    }
    choose_scanned(cl, reference, ov, tops, details, &pairs, warnings)
}

/// The superblock's trees when only one of them is readable: its top-level
/// tree with regenerated details, or its details with the device roots
/// recovered from unreferenced mapping trees of the recorded size (G2, G7:
/// salvage the current trees rather than fall back to older ones).
fn current_half(
    cl: &Classified,
    r: &Superblock,
    ov: &Overrides,
    warnings: &mut Vec<String>,
) -> Result<Option<Chosen>> {
    let top = usable(cl, r.mapping_root, Kind::TopLevel);
    let det = usable(cl, r.details_root, Kind::Details);
    let dbs = || block_size(ov, Some(r), &cl.scan.snapshots);
    let tid = r.trans_id.max(ov.transaction_id.unwrap_or(0));
    let nr = r.data_sm_root.nr_blocks.max(ov.nr_data_blocks.unwrap_or(0));
    let unreadable = |b: BlockNr| !cl.scan.nodes.contains_key(&b);
    match (top, det) {
        (Some(t), None) if t.kind == Kind::TopLevel && unreadable(r.details_root) => {
            warnings.push(format!(
                "details tree at block {} unreadable: device details regenerated",
                r.details_root
            ));
            let time = r.time.max(t.age + 1);
            let tid = tid.max(1);
            Ok(Some(Chosen {
                sb: info(time, tid, dbs()?, nr.max(t.max_data + 1)),
                top: Some(r.mapping_root),
                details: None,
                orphans: None,
                from_superblock: true,
                regen_time: time,
                regen_tid: tid - 1,
            }))
        }
        (None, Some(d)) if d.entries > 0 && unreadable(r.mapping_root) => {
            let orphans = match_orphans(cl, r.details_root);
            warnings.push(format!(
                "top-level mapping tree at block {} unreadable: {} of {} devices matched to orphaned mapping trees",
                r.mapping_root,
                orphans.len(),
                d.entries
            ));
            let max_data = orphans
                .values()
                .filter_map(|&b| cl.class(b))
                .map(|c| c.max_data + 1)
                .max()
                .unwrap_or(0);
            Ok(Some(Chosen {
                sb: info(r.time, tid, dbs()?, nr.max(max_data)),
                top: None,
                details: Some(r.details_root),
                orphans: Some(orphans),
                from_superblock: true,
                regen_time: r.time,
                regen_tid: tid.saturating_sub(1),
            }))
        }
        _ => Ok(None),
    }
}

/// Devices of a details tree matched to unreferenced mapping trees whose
/// mapping count equals the device's `mapped_blocks` (only when exactly one
/// such tree exists for that count).
fn match_orphans(cl: &Classified, details_root: BlockNr) -> BTreeMap<u64, BlockNr> {
    let mut named: HashSet<BlockNr> = HashSet::new();
    for (_, node) in cl.scan.nodes.iter() {
        if let ScannedNode::U64(l) = node {
            named.extend(l.small_values.iter().flatten().map(|&(_, v)| v));
        }
    }
    let mut by_count: HashMap<u64, Vec<BlockNr>> = HashMap::new();
    for &b in cl.scan.nodes.keys() {
        if cl.referenced.contains(&b) || named.contains(&b) {
            continue;
        }
        if let Some(c) = cl.class_as(b, Kind::Mapping) {
            if c.entries > 0 && cl.class(b).map(|x| x.kind) == Some(Kind::Mapping) {
                by_count.entry(c.mappings).or_default().push(b);
            }
        }
    }
    let mut lost = Vec::new();
    let mut out = BTreeMap::new();
    for leaf in leaves(cl, details_root, Kind::Details, &mut lost) {
        if let Some(ScannedNode::Details(d)) = cl.scan.nodes.get(&leaf) {
            for (id, det) in &d.entries {
                if let Some([only]) = by_count.get(&det.mapped_blocks).map(Vec::as_slice) {
                    out.insert(*id, *only);
                }
            }
        }
    }
    out
}

/// The choice when the superblock's own roots are not usable.
fn choose_scanned(
    cl: &Classified,
    reference: Option<&Superblock>,
    ov: &Overrides,
    tops: &[Candidate],
    details: &[Candidate],
    pairs: &[(usize, usize)],
    warnings: &mut Vec<String>,
) -> Result<Chosen> {
    let data_block_size = || block_size(ov, reference, &cl.scan.snapshots);
    let ref_time = reference.map_or(0, |r| r.time);
    let ref_tid = ov
        .transaction_id
        .or(reference.map(|r| r.trans_id))
        .unwrap_or(0);
    let ref_nr = ov
        .nr_data_blocks
        .or(reference.map(|r| r.data_sm_root.nr_blocks))
        .unwrap_or(0);
    if let Some(&(i, j)) = pairs.first() {
        let (t, d) = (&tops[i].class, &details[j].class);
        let tid = ref_tid.max(d.max_tid + 1);
        let nr = ref_nr.max(t.max_data + 1);
        let time = ref_time.max(t.age).max(d.age);
        return Ok(Chosen {
            sb: info(time, tid, data_block_size()?, nr),
            top: Some(tops[i].root),
            details: Some(details[j].root),
            orphans: None,
            from_superblock: false,
            regen_time: time,
            regen_tid: tid.saturating_sub(1),
        });
    }
    let best = tops.iter().find(|t| t.class.complete).or(tops.first());
    if let Some(t) = best {
        warnings.push(format!(
            "found {} mapping trees without device details",
            tops.len()
        ));
        let time = ref_time.max(t.class.age + 1);
        let tid = ref_tid.max(1);
        let nr = ref_nr.max(t.class.max_data + 1);
        return Ok(Chosen {
            sb: info(time, tid, data_block_size()?, nr),
            top: Some(t.root),
            details: None,
            orphans: None,
            from_superblock: false,
            regen_time: time,
            regen_tid: tid - 1,
        });
    }
    bail!("no compatible roots found")
}
