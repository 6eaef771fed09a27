//! Choosing the roots and the superblock values (spec/repair.md §1.5–1.7,
//! G4), and assembling the devices to write (G2, G7).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::bail;

use crate::pdata::block::BlockNr;
use crate::pdata::btree::node::{NodeErrorKind, NodeRef};
use crate::pdata::io::BlockDevice;
use crate::thin::engines::repair::candidates::{self, Candidates};
use crate::thin::engines::repair::classify::{Classifier, Kind, Loss, Status};
use crate::thin::engines::repair::fast::healthy_devices;
use crate::thin::engines::repair::fill::{adopt_orphans, Filler};
use crate::thin::engines::repair::scan::{scan, ScanTable, Shape};
use crate::thin::engines::repair::trees::{
    details_entries, mapping_leaves, top_devices, LostRange,
};
use crate::thin::engines::repair::{Log, RepairOptions, RepairedDevice, RepairedPool};
use crate::thin::ir::{DeviceInfo, SuperblockInfo};
use crate::thin::model::device_details::DeviceDetails;
use crate::thin::model::superblock::{read_superblock, valid_data_block_size, Superblock};

/// Where the chosen roots came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// The live superblock's own roots.
    Current,
    /// A pair found by the scan.
    Pair,
    /// A top-level tree with no details tree (§1.6).
    NoDetails,
    /// The live details tree without its top-level tree: devices get their
    /// mapping trees from unreferenced roots (G2 orphan recovery).
    DetailsOnly,
}

struct Chosen {
    mapping_root: BlockNr,
    details_root: Option<BlockNr>,
    source: Source,
    empty: bool,
}

/// Finds the roots and rebuilds the superblock of `dev`.
///
/// # Errors
/// `no compatible roots found`, the data-block-size errors of §1.5.
pub fn plan(dev: &dyn BlockDevice, opts: &RepairOptions) -> anyhow::Result<RepairedPool> {
    let reference = read_superblock(dev, 0).ok().map(|(sb, _)| sb);
    if let Some(sb) = reference.as_ref().filter(|sb| sb.validate(0).is_ok()) {
        if let Some(devs) = healthy_devices(dev, sb) {
            opts.log
                .info("superblock and trees are healthy: no scan needed");
            return Ok(healthy_pool(sb, devs, opts));
        }
    }
    let table = scan(dev);
    let cls = Classifier::new(&table);
    let snapshot_roots: BTreeSet<BlockNr> = table
        .snapshots
        .iter()
        .flat_map(|(_, s)| [s.mapping_root, s.details_root])
        .collect();
    let cands = candidates::find(&cls, &snapshot_roots);
    for line in candidates::info_lines(&cands) {
        opts.log.info(&line);
    }
    let Some(chosen) = choose(&cls, &cands, reference.as_ref()) else {
        bail!("no compatible roots found");
    };
    assemble(dev, &cls, &table, &cands, &chosen, reference.as_ref(), opts)
}

fn healthy_pool(
    sb: &Superblock,
    devs: Vec<crate::thin::engines::repair::fast::HealthyDevice>,
    opts: &RepairOptions,
) -> RepairedPool {
    let info = SuperblockInfo {
        uuid: String::new(),
        time: sb.time,
        transaction: sb.trans_id,
        flags: 0,
        version: 2,
        data_block_size: sb.data_block_size,
        nr_data_blocks: sb.data_sm_root.nr_blocks,
        metadata_snap: None,
    };
    let devices = devs
        .into_iter()
        .map(|d| RepairedDevice {
            info: DeviceInfo {
                dev_id: d.id,
                mapped_blocks: d.details.mapped_blocks,
                transaction: d.details.transaction_id,
                creation_time: d.details.creation_time,
                snap_time: d.details.snapshotted_time,
            },
            leaves: d.leaves,
        })
        .collect();
    let mut pool = RepairedPool { sb: info, devices };
    apply_overrides(&mut pool.sb, opts, None);
    pool
}

fn apply_overrides(sb: &mut SuperblockInfo, opts: &RepairOptions, highest: Option<u64>) {
    if let Some(t) = opts.transaction_id {
        sb.transaction = sb.transaction.max(t);
    }
    if let Some(s) = opts.data_block_size {
        sb.data_block_size = s;
    }
    if let Some(n) = opts.nr_data_blocks {
        sb.nr_data_blocks = sb.nr_data_blocks.max(n);
    }
    if let Some(h) = highest {
        sb.nr_data_blocks = sb.nr_data_blocks.max(h + 1);
    }
}

/// G4.2, then §1.5's pairs (complete first, then damaged), §1.6, then an
/// empty pool.
fn choose(cls: &Classifier, cands: &Candidates, sb: Option<&Superblock>) -> Option<Chosen> {
    if let Some(sb) = sb {
        if let Some(c) = current_roots(cls, sb) {
            if c.source == Source::DetailsOnly {
                // The live details tree lost its top-level tree: a pair found
                // by the scan with the same details tree beats matching roots.
                let paired = cands
                    .pairs
                    .iter()
                    .chain(&cands.damaged_pairs)
                    .find(|&&(_, d)| Some(cands.details[d].root) == c.details_root);
                if let Some(&(t, _)) = paired {
                    return Some(Chosen {
                        mapping_root: cands.tops[t].root,
                        source: Source::Pair,
                        ..c
                    });
                }
                if orphans_cover(cls, cands, c.details_root, Some(sb.time)) {
                    return Some(c);
                }
            } else if c.details_root.is_some() {
                return Some(c);
            }
            // The current top-level tree lost its details tree: a details
            // tree found by the scan that pairs with it beats regenerating.
            let paired = cands
                .pairs
                .iter()
                .chain(&cands.damaged_pairs)
                .find(|&&(t, _)| cands.tops[t].root == c.mapping_root);
            if let Some(&(_, d)) = paired {
                return Some(Chosen {
                    details_root: Some(cands.details[d].root),
                    source: Source::Pair,
                    ..c
                });
            }
            if c.source != Source::DetailsOnly {
                return Some(c);
            }
        }
    }
    let pair = cands.pairs.first().or(cands.damaged_pairs.first());
    if let Some(&(t, d)) = pair {
        return Some(Chosen {
            mapping_root: cands.tops[t].root,
            details_root: Some(cands.details[d].root),
            source: Source::Pair,
            empty: false,
        });
    }
    if let Some(t) = cands.tops.iter().find(|t| !t.ambiguous) {
        return Some(Chosen {
            mapping_root: t.root,
            details_root: None,
            source: Source::NoDetails,
            empty: false,
        });
    }
    cands.empty_pair.map(|(t, d)| Chosen {
        mapping_root: t,
        details_root: Some(d),
        source: Source::Pair,
        empty: true,
    })
}

/// True when every device of the details tree at `root` that has mappings
/// finds its mapping tree among the unreferenced roots or in an older
/// top-level tree.
fn orphans_cover(
    cls: &Classifier,
    cands: &Candidates,
    root: Option<BlockNr>,
    max_time: Option<u32>,
) -> bool {
    let Some(root) = root else {
        return false;
    };
    let (devs, _) = details_entries(cls, root);
    let mut filler = Filler::new(cls, &cands.tops, 0);
    let rest: Vec<&(u64, DeviceDetails)> = devs
        .iter()
        .filter(|(id, d)| d.mapped_blocks > 0 && filler.exact_root(*id, d.mapped_blocks).is_none())
        .collect();
    let orphans = Orphans::new(cls, rest.iter().map(|(_, d)| d.mapped_blocks), max_time);
    let older: BTreeSet<u64> = cands
        .tops
        .iter()
        .flat_map(|t| t.ids.iter().copied())
        .collect();
    rest.iter()
        .all(|(id, d)| orphans.find(d.mapped_blocks).is_some() || older.contains(id))
}

/// The superblock's own roots when they are (possibly damaged) trees of the
/// right kinds with compatible device ids (G4.2).
fn current_roots(cls: &Classifier, sb: &Superblock) -> Option<Chosen> {
    let empty_leaf = |nr: BlockNr, shape: Shape| {
        cls.node(nr)
            .is_some_and(|n| n.shape == shape && n.nr_entries == 0)
    };
    let top = cls.top_or_named_leaf(sb.mapping_root);
    let empty_top = empty_leaf(sb.mapping_root, Shape::Leaf8);
    if empty_top || (top.is_none() && empty_leaf(sb.details_root, Shape::Leaf24)) {
        // A pool with no devices (one of its two empty trees may be lost).
        return Some(Chosen {
            mapping_root: sb.mapping_root,
            details_root: Some(sb.details_root),
            source: Source::Current,
            empty: true,
        });
    }
    let Some(top) = top else {
        return cls.agg(sb.details_root, Kind::Details).map(|_| Chosen {
            mapping_root: sb.mapping_root,
            details_root: Some(sb.details_root),
            source: Source::DetailsOnly,
            empty: false,
        });
    };
    let Some(det) = cls.agg(sb.details_root, Kind::Details) else {
        return Some(Chosen {
            mapping_root: sb.mapping_root,
            details_root: None,
            source: Source::Current,
            empty: false,
        });
    };
    let top_ids: BTreeSet<u64> = top_devices(cls, sb.mapping_root)
        .0
        .iter()
        .map(|d| d.0)
        .collect();
    let det_ids: BTreeSet<u64> = details_entries(cls, sb.details_root)
        .0
        .iter()
        .map(|d| d.0)
        .collect();
    let complete = top.status == Status::Complete && det.status == Status::Complete;
    let ok = if complete {
        top_ids == det_ids && top.mappings == det.mappings
    } else {
        top_ids.is_subset(&det_ids) || det_ids.is_subset(&top_ids)
    };
    ok.then_some(Chosen {
        mapping_root: sb.mapping_root,
        details_root: Some(sb.details_root),
        source: Source::Current,
        empty: false,
    })
}

/// What the chosen trees hold, before the superblock values are fixed.
struct Gathered {
    top: Vec<(u64, BlockNr, bool)>,
    top_lost: Vec<LostRange>,
    details: BTreeMap<u64, DeviceDetails>,
    details_lost: Vec<LostRange>,
}

fn gather(cls: &Classifier, chosen: &Chosen) -> Gathered {
    let (top, top_lost) = if chosen.empty {
        (Vec::new(), Vec::new())
    } else {
        top_devices(cls, chosen.mapping_root)
    };
    let (details, details_lost) = match chosen.details_root {
        Some(d) if !chosen.empty => {
            let (e, l) = details_entries(cls, d);
            (e.into_iter().collect(), l)
        }
        _ => (BTreeMap::new(), Vec::new()),
    };
    Gathered {
        top,
        top_lost,
        details,
        details_lost,
    }
}

fn assemble(
    dev: &dyn BlockDevice,
    cls: &Classifier,
    table: &ScanTable,
    cands: &Candidates,
    chosen: &Chosen,
    reference: Option<&Superblock>,
    opts: &RepairOptions,
) -> anyhow::Result<RepairedPool> {
    let g = gather(cls, chosen);
    let log = &opts.log;
    for l in &g.top_lost {
        log.warn(&format!(
            "top-level tree: lost devices in {} ({})",
            range_text(l),
            loss_text(dev, table, l)
        ));
    }
    for l in &g.details_lost {
        log.warn(&format!(
            "device details tree: lost details of devices in {} ({})",
            range_text(l),
            loss_text(dev, table, l)
        ));
    }
    // Devices: those of the top-level tree, then details-only ones.
    let mut ids: BTreeSet<u64> = g.top.iter().map(|d| d.0).collect();
    ids.extend(g.details.keys().copied());
    let roots: BTreeMap<u64, (BlockNr, bool)> =
        g.top.iter().map(|&(id, r, ok)| (id, (r, ok))).collect();
    let mut filler = Filler::new(cls, &cands.tops, chosen.mapping_root);
    // Devices without a usable root: first the same device in an older tree
    // with exactly its recorded mapping count, then unreferenced roots.
    let mut older_roots: BTreeMap<u64, (BlockNr, BlockNr)> = BTreeMap::new();
    for (&id, d) in &g.details {
        if !matches!(roots.get(&id), Some((_, true))) && d.mapped_blocks > 0 {
            if let Some(r) = filler.exact_root(id, d.mapped_blocks) {
                older_roots.insert(id, r);
            }
        }
    }
    let needing = g.details.iter().filter(|(id, _)| {
        !matches!(roots.get(id), Some((_, true))) && !older_roots.contains_key(id)
    });
    let max_time = reference.map(|r| r.time);
    let orphans = Orphans::new(cls, needing.map(|(_, d)| d.mapped_blocks), max_time);
    let mut devices = Vec::with_capacity(ids.len());
    let mut pending = Vec::with_capacity(ids.len());
    let mut lost_subtrees = g.top_lost.len() + g.details_lost.len();
    let mut highest: Option<u64> = None;
    let mut age = 0u32;
    for &id in &ids {
        let root = match (roots.get(&id), older_roots.get(&id)) {
            (Some(&(r, true)), _) => Some(r),
            (_, Some(&(top, r))) => {
                log.warn(&format!(
                    "device {id}: mapping tree taken whole from the older top-level tree at \
                     block {top}"
                ));
                Some(r)
            }
            _ => g
                .details
                .get(&id)
                .and_then(|d| orphans.take(d.mapped_blocks, log, id)),
        };
        let (mut leaves, lost) = root.map(|r| mapping_leaves(cls, r)).unwrap_or_default();
        for l in &lost {
            log.warn(&format!(
                "device {id}: lost mappings in {} (block {} unreadable: {})",
                range_text(l),
                l.block,
                loss_text(dev, table, l)
            ));
        }
        lost_subtrees += lost.len();
        let expected = g.details.get(&id).is_none_or(|d| d.mapped_blocks > 0);
        if !lost.is_empty() || (root.is_none() && expected) {
            for f in filler.fill(id, root, &lost, &mut leaves) {
                log.warn(&format!(
                    "device {id}: took {} mappings in {} leaves from the older top-level tree \
                     at block {}",
                    f.mappings, f.leaves, f.top_root
                ));
            }
        }
        // A device with no tree at all adopts nothing: any stray subtree,
        // a deleted thin's included, would fit its missing range.
        let holes: Vec<(u64, Option<u64>)> = lost.iter().map(|l| (l.begin, l.end)).collect();
        pending.push((id, leaves, holes, root.is_none() && expected));
    }
    adopt_orphans(cls, &mut pending, reference.map(|r| r.time), log);
    for (id, leaves, _, rootless) in pending {
        if leaves.is_empty() && rootless {
            log.warn(&format!("device {id}: kept with no mappings"));
        }
        let mut mappings = 0u64;
        for &l in &leaves {
            if let Some(n) = cls.node(l) {
                mappings += u64::from(n.nr_entries);
                if n.nr_entries > 0 {
                    highest = Some(highest.unwrap_or(0).max(n.mapping.max_block));
                    age = age.max(n.mapping.max_time);
                }
            }
        }
        devices.push((id, leaves, mappings));
    }
    let sb = superblock_values(chosen, &g, reference, table, opts, highest, age)?;
    let regenerated: Vec<u64> = ids
        .iter()
        .filter(|id| !g.details.contains_key(id))
        .copied()
        .collect();
    if chosen.source == Source::NoDetails || chosen.details_root.is_none() {
        if !regenerated.is_empty() {
            log.warn(&format!(
                "found {} mapping trees without device details",
                regenerated.len()
            ));
        }
    } else {
        for id in &regenerated {
            log.warn(&format!("device {id}: details regenerated"));
        }
    }
    let mut out = Vec::with_capacity(devices.len());
    for (id, leaves, mappings) in devices {
        let info = match g.details.get(&id) {
            Some(d) => {
                if d.mapped_blocks != mappings {
                    log.warn(&format!(
                        "device {id}: mapped_blocks is {} but {mappings} mappings were recovered",
                        d.mapped_blocks
                    ));
                }
                DeviceInfo {
                    dev_id: id,
                    mapped_blocks: mappings,
                    transaction: d.transaction_id,
                    creation_time: d.creation_time,
                    snap_time: d.snapshotted_time,
                }
            }
            None => DeviceInfo {
                dev_id: id,
                mapped_blocks: mappings,
                transaction: sb.transaction.saturating_sub(1),
                creation_time: sb.time,
                snap_time: sb.time,
            },
        };
        out.push(RepairedDevice { info, leaves });
    }
    let pool = RepairedPool { sb, devices: out };
    report_rollback(cls, chosen, reference, &pool, log);
    if lost_subtrees > 0 {
        let m: u64 = pool.devices.iter().map(|d| d.info.mapped_blocks).sum();
        log.warn(&format!(
            "salvaged {} devices, {m} mappings; lost {lost_subtrees} subtrees",
            pool.devices.len()
        ));
    }
    Ok(pool)
}

fn superblock_values(
    chosen: &Chosen,
    g: &Gathered,
    reference: Option<&Superblock>,
    table: &ScanTable,
    opts: &RepairOptions,
    highest: Option<u64>,
    age: u32,
) -> anyhow::Result<SuperblockInfo> {
    let current = matches!(chosen.source, Source::Current | Source::DetailsOnly)
        && chosen.details_root.is_some();
    let dbs = match (opts.data_block_size, reference) {
        (Some(s), _) => s,
        (None, Some(r)) => r.data_block_size,
        (None, None) => match table.snapshots.first() {
            Some((_, s)) => s.data_block_size,
            None => {
                bail!("data block size needs to be provided due to corruption in the superblock")
            }
        },
    };
    if !valid_data_block_size(u64::from(dbs)) {
        bail!("invalid data block size");
    }
    let mut sb = SuperblockInfo {
        uuid: String::new(),
        time: 0,
        transaction: 0,
        flags: 0,
        version: 2,
        data_block_size: dbs,
        nr_data_blocks: 0,
        metadata_snap: None,
    };
    let snap = table.snapshots.iter().map(|(_, s)| s);
    let snap_tid = snap.clone().map(|s| s.trans_id).max().unwrap_or(0);
    let snap_time = snap.map(|s| s.time).max().unwrap_or(0);
    let ref_time = reference.map_or(snap_time, |r| r.time);
    let ref_tid = reference.map_or(snap_tid, |r| r.trans_id);
    let ref_data = reference.map_or(0, |r| r.data_sm_root.nr_blocks);
    let details_age = g
        .details
        .values()
        .map(|d| d.creation_time.max(d.snapshotted_time))
        .max()
        .unwrap_or(0);
    let details_tid = g.details.values().map(|d| d.transaction_id).max();
    if current {
        sb.time = ref_time;
        sb.transaction = ref_tid;
        sb.nr_data_blocks = ref_data;
        apply_overrides(&mut sb, opts, highest);
        return Ok(sb);
    }
    sb.nr_data_blocks = opts.nr_data_blocks.unwrap_or(ref_data);
    if let Some(h) = highest {
        sb.nr_data_blocks = sb.nr_data_blocks.max(h + 1);
    }
    let base_tid = opts.transaction_id.unwrap_or(ref_tid);
    if chosen.details_root.is_some() {
        sb.transaction = base_tid.max(details_tid.map_or(0, |t| t + 1));
        sb.time = ref_time.max(age).max(details_age);
    } else {
        sb.transaction = base_tid.max(1);
        let bump = if g.top.is_empty() { 0 } else { 1 };
        sb.time = ref_time.max(age.saturating_add(bump));
    }
    Ok(sb)
}

/// G7: say so when the roots used are not the superblock's current ones.
fn report_rollback(
    cls: &Classifier,
    chosen: &Chosen,
    reference: Option<&Superblock>,
    pool: &RepairedPool,
    log: &Log,
) {
    let roots = format!(
        "mapping root {}, details root {}",
        chosen.mapping_root,
        chosen
            .details_root
            .map_or_else(|| "none".to_string(), |d| d.to_string())
    );
    let Some(sb) = reference else {
        log.warn(&format!(
            "superblock lost: using {roots} (transaction {}, time {})",
            pool.sb.transaction, pool.sb.time
        ));
        return;
    };
    if chosen.source == Source::Current {
        return;
    }
    if chosen.source == Source::DetailsOnly {
        log.warn(&format!(
            "top-level tree at block {} is lost: mapping trees matched to the current \
             details by their mapping counts",
            sb.mapping_root
        ));
        return;
    }
    log.warn(&format!(
        "the superblock's roots (mapping root {}, details root {}) are not usable: using {roots} \
         (transaction {}, time {}; superblock transaction {}, time {})",
        sb.mapping_root, sb.details_root, pool.sb.transaction, pool.sb.time, sb.trans_id, sb.time
    ));
    if cls.agg(sb.details_root, Kind::Details).is_none() {
        return;
    }
    let current: BTreeMap<u64, DeviceDetails> = details_entries(cls, sb.details_root)
        .0
        .into_iter()
        .collect();
    for d in &pool.devices {
        match current.get(&d.info.dev_id) {
            None => log.warn(&format!(
                "device {}: not in the current details (resurrected from an older transaction)",
                d.info.dev_id
            )),
            Some(c) if c.mapped_blocks != d.info.mapped_blocks => log.warn(&format!(
                "device {}: {} mappings in the current details, {} recovered",
                d.info.dev_id, c.mapped_blocks, d.info.mapped_blocks
            )),
            Some(_) => {}
        }
    }
}

fn range_text(l: &LostRange) -> String {
    match l.end {
        Some(e) => format!("[{}..{e})", l.begin),
        None => format!("[{}..)", l.begin),
    }
}

fn loss_text(dev: &dyn BlockDevice, table: &ScanTable, l: &LostRange) -> String {
    match l.loss {
        Loss::Unreadable => {
            let mut b = crate::pdata::block::Block::zeroed();
            if dev.read_at(l.block, &mut b).is_err() {
                return NodeErrorKind::Io.to_string();
            }
            let err = |vs| NodeRef::new(&b.0, l.block, vs).err().map(|e| e.kind);
            match (err(8), err(24)) {
                (Some(NodeErrorKind::ValueSize), Some(k)) | (Some(k), _) => k.to_string(),
                (None, _) => "not a usable node".to_string(),
            }
        }
        Loss::Incompatible if table.find(l.block).is_some() => "node of another tree".to_string(),
        Loss::Incompatible => "not a usable node".to_string(),
        Loss::KeyRange => NodeErrorKind::KeyRange.to_string(),
        Loss::Height => NodeErrorKind::Unbalanced.to_string(),
    }
}

/// Complete mapping trees that no internal node holds and no top-level leaf
/// names, for devices whose top-level entry was lost (G2 orphan recovery).
struct Orphans {
    /// (mappings, age, root), sorted.
    roots: Vec<(u64, u32, BlockNr)>,
    /// How many devices look for a tree of each size: a size two devices
    /// share identifies neither.
    wanted: BTreeMap<u64, usize>,
}

impl Orphans {
    fn new(
        cls: &Classifier,
        wanted_counts: impl Iterator<Item = u64>,
        max_time: Option<u32>,
    ) -> Self {
        let mut wanted = BTreeMap::new();
        for c in wanted_counts {
            *wanted.entry(c).or_insert(0usize) += 1;
        }
        let mut roots = Vec::new();
        for n in &cls.table().nodes {
            // A leaf that reads as a top-level leaf is one (G3): its values
            // name mapping roots, which real mappings almost never do.
            if cls.is_referenced(n.nr)
                || cls.is_root_referenced(n.nr)
                || cls.agg(n.nr, Kind::Top).is_some()
            {
                continue;
            }
            if let Some(a) = cls.agg(n.nr, Kind::Mapping) {
                let committed = max_time.is_none_or(|t| a.age <= t);
                if a.status == Status::Complete && a.mappings > 0 && committed {
                    roots.push((a.mappings, a.age, n.nr));
                }
            }
        }
        roots.sort_unstable();
        Orphans { roots, wanted }
    }

    /// The root with `count` mappings: the only one, or the only newest one.
    fn find(&self, count: u64) -> Option<BlockNr> {
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

    /// As [`Orphans::find`], saying so.
    fn take(&self, count: u64, log: &Log, id: u64) -> Option<BlockNr> {
        let r = self.find(count)?;
        log.warn(&format!(
            "device {id}: mapping tree recovered from unreferenced root {r}"
        ));
        Some(r)
    }
}
