//! Assembling the devices to write from the chosen trees.
//!
//! Every device of the top-level tree or the details tree is written. A
//! device's mapping tree is its top-level entry's when that is usable, else
//! the same device's tree in an older top-level tree when it holds exactly
//! the recorded mapping count, else an orphan tree of that count. Ranges
//! lost beneath it are filled from older copies of the device, then from
//! orphan subtrees. Recorded details are kept (with the mapping count
//! recovered); devices without details get made-up ones. Every step that
//! departs from the superblock's own trees is named in a warning.

use std::collections::{BTreeMap, BTreeSet};

use crate::pdata::block::BlockNr;
use crate::pdata::io::BlockDevice;
use crate::thin::engines::repair::candidates::Candidates;
use crate::thin::engines::repair::classify::{Classifier, Kind, Loss};
use crate::thin::engines::repair::fill::Filler;
use crate::thin::engines::repair::messages::{loss_text, KeyRange, Notes, UsedRoots, Warning};
use crate::thin::engines::repair::orphans::{adopt_orphans, Orphans, PendingDevice};
use crate::thin::engines::repair::reuse::{
    reused_mappings, DeviceLeafSets, OlderPart, OlderSource, Reused,
};
use crate::thin::engines::repair::select::{Chosen, Source};
use crate::thin::engines::repair::trees::{
    details_entries, mapping_leaves, mapping_tree_nodes, top_devices, LostRange, TopEntry,
};
use crate::thin::engines::repair::values::regenerated_details;
use crate::thin::engines::repair::{RepairedDevice, RepairedPool};
use crate::thin::ir::{DeviceInfo, SuperblockInfo};
use crate::thin::model::device_details::DeviceDetails;
use crate::thin::model::superblock::Superblock;

/// What assembling reads from.
pub struct Context<'a, 't> {
    /// The input (to word why a block was unreadable).
    pub dev: &'a dyn BlockDevice,
    /// The classified scan.
    pub cls: &'a Classifier<'t>,
    /// Every candidate tree (older copies to fill from).
    pub cands: &'a Candidates,
    /// The roots chosen.
    pub chosen: &'a Chosen,
    /// Block 0's superblock, when it reads as one.
    pub reference: Option<&'a Superblock>,
    /// Where warnings go.
    pub notes: &'a Notes<'a>,
}

/// What the chosen trees hold.
#[derive(Debug, Default)]
pub struct Gathered {
    /// Devices of the top-level tree.
    pub top: Vec<TopEntry>,
    /// Id ranges lost from the top-level tree.
    pub top_lost: Vec<LostRange>,
    /// Entries of the details tree.
    pub details: BTreeMap<u64, DeviceDetails>,
    /// Id ranges lost from the details tree.
    pub details_lost: Vec<LostRange>,
}

/// Reads the devices of the chosen top-level and details trees.
#[must_use]
pub fn gather(cls: &Classifier, chosen: &Chosen) -> Gathered {
    if chosen.empty {
        return Gathered::default();
    }
    let (top, top_lost) = top_devices(cls, chosen.mapping_root);
    let (details, details_lost) = match chosen.details_root {
        Some(d) => {
            let (e, l) = details_entries(cls, d);
            (e.into_iter().collect(), l)
        }
        None => (BTreeMap::new(), Vec::new()),
    };
    Gathered {
        top,
        top_lost,
        details,
        details_lost,
    }
}

/// One assembled device: id, leaves in key order, mappings in them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssembledDevice {
    /// Device id.
    pub id: u64,
    /// Leaves in key order.
    pub leaves: Vec<BlockNr>,
    /// Mappings in `leaves`.
    pub mappings: u64,
}

/// The devices assembled, before the superblock values are fixed.
#[derive(Debug)]
pub struct Assembled {
    /// What the chosen trees hold.
    pub gathered: Gathered,
    /// Devices in ascending id.
    pub devices: Vec<AssembledDevice>,
    /// Highest data block mapped.
    pub highest: Option<u64>,
    /// Newest mapping time.
    pub age: u32,
    /// Subtrees lost in all trees.
    pub lost_subtrees: usize,
    /// Keys dropped from leaves borrowed from older copies (reused blocks).
    pub dropped: BTreeMap<BlockNr, Vec<u64>>,
}

/// Where a device's mapping tree comes from.
struct Roots<'g> {
    /// Usable roots of the top-level tree.
    top: BTreeMap<u64, BlockNr>,
    /// (older top-level root, mapping root) with exactly the recorded count.
    older: BTreeMap<u64, (BlockNr, BlockNr)>,
    /// Orphan trees for the devices with neither.
    orphans: Orphans,
    details: &'g BTreeMap<u64, DeviceDetails>,
}

impl<'g> Roots<'g> {
    fn new(ctx: &Context, g: &'g Gathered, filler: &mut Filler) -> Self {
        let top: BTreeMap<u64, BlockNr> = g
            .top
            .iter()
            .filter(|d| d.2)
            .map(|&(id, r, _)| (id, r))
            .collect();
        let mut older = BTreeMap::new();
        for (&id, d) in &g.details {
            if !top.contains_key(&id) && d.mapped_blocks > 0 {
                if let Some(r) = filler.exact_root(id, d.mapped_blocks) {
                    older.insert(id, r);
                }
            }
        }
        let needing = g
            .details
            .iter()
            .filter(|(id, _)| !top.contains_key(id) && !older.contains_key(id));
        let max_time = ctx.reference.map(|r| r.time);
        let orphans = Orphans::new(ctx.cls, needing.map(|(_, d)| d.mapped_blocks), max_time);
        Roots {
            top,
            older,
            orphans,
            details: &g.details,
        }
    }

    /// The mapping root of device `id`, with the older top-level tree it
    /// comes from when it is an older copy; an orphan root is named as it is
    /// taken.
    fn of(&self, id: u64, notes: &Notes) -> Option<(BlockNr, Option<BlockNr>)> {
        if let Some(&r) = self.top.get(&id) {
            return Some((r, None));
        }
        if let Some(&(top, r)) = self.older.get(&id) {
            return Some((r, Some(top)));
        }
        let d = self.details.get(&id)?;
        self.orphans
            .take(d.mapped_blocks, notes, id)
            .map(|r| (r, None))
    }
}

/// Assembles every device of the chosen trees.
#[must_use]
pub fn assemble(ctx: &Context) -> Assembled {
    let cls = ctx.cls;
    let gathered = gather(cls, ctx.chosen);
    warn_lost_trees(ctx, &gathered);
    warn_lost_roots(ctx, &gathered);
    let mut ids: BTreeSet<u64> = gathered.top.iter().map(|d| d.0).collect();
    ids.extend(gathered.details.keys().copied());
    let current = mapping_tree_nodes(cls, gathered.top.iter().map(|d| d.1));
    let mut filler = Filler::new(cls, &ctx.cands.tops, ctx.chosen.mapping_root)
        .committed_by(ctx.reference.map(|r| r.time))
        .outside(current);
    let roots = Roots::new(ctx, &gathered, &mut filler);
    let mut lost_subtrees = gathered.top_lost.len() + gathered.details_lost.len();
    let mut pending = Vec::with_capacity(ids.len());
    for &id in &ids {
        let expected = gathered
            .details
            .get(&id)
            .is_none_or(|d| d.mapped_blocks > 0);
        let (p, lost) = device_leaves(ctx, &mut filler, id, roots.of(id, ctx.notes), expected);
        lost_subtrees += lost;
        pending.push(p);
    }
    adopt_orphans(cls, &mut pending, ctx.reference.map(|r| r.time));
    let reused = drop_reused(ctx, &mut pending);
    let mut highest: Option<u64> = None;
    let mut age = 0u32;
    let mut devices = Vec::with_capacity(pending.len());
    for p in pending {
        if p.leaves.is_empty() && p.rootless {
            ctx.notes.warn(&Warning::KeptEmpty { id: p.id });
        }
        let mut mappings = 0u64;
        for n in p.leaves.iter().filter_map(|&l| cls.node(l)) {
            mappings += u64::from(n.nr_entries) - reused.left_out(n.nr);
            if n.nr_entries > 0 {
                highest = Some(highest.unwrap_or(0).max(n.mapping.max_block));
                age = age.max(n.mapping.max_time);
            }
        }
        devices.push(AssembledDevice {
            id: p.id,
            leaves: p.leaves,
            mappings,
        });
    }
    Assembled {
        gathered,
        devices,
        highest,
        age,
        lost_subtrees,
        dropped: reused.keys,
    }
}

/// Drops the borrowed mappings whose data blocks were reused (leaves left
/// empty go), then names what every device took from older copies.
fn drop_reused(ctx: &Context, pending: &mut [PendingDevice]) -> Reused {
    let sets: Vec<DeviceLeafSets> = pending
        .iter()
        .map(|p| DeviceLeafSets {
            id: p.id,
            leaves: &p.leaves,
            borrowed: &p.borrowed,
            clip: &p.clip,
        })
        .collect();
    let reused = reused_mappings(ctx.dev, &sets);
    let cls = ctx.cls;
    let entries = |l: &BlockNr| cls.node(*l).map_or(0, |n| u64::from(n.nr_entries));
    for p in pending.iter_mut() {
        p.leaves.retain(|l| reused.left_out(*l) != entries(l));
        for part in &p.older {
            let dropped = reused.dropped_from(&part.blocks);
            let mappings = part
                .blocks
                .iter()
                .map(|l| entries(l) - reused.left_out(*l))
                .sum::<u64>();
            ctx.notes
                .warn(&older_warning(cls, p, part, mappings, dropped));
        }
    }
    reused
}

/// The key ranges the leaves `blocks` (in key order) give device `p`, each
/// clipped to what is taken of it, adjacent ones merged.
fn taken_ranges(cls: &Classifier, p: &PendingDevice, blocks: &[BlockNr]) -> Vec<KeyRange> {
    let mut out: Vec<KeyRange> = Vec::new();
    for &l in blocks {
        let Some(n) = cls.node(l) else {
            continue;
        };
        let (lo, hi) = p.clip.get(&l).copied().unwrap_or((n.first_key, n.last_key));
        match out.last_mut() {
            Some(last) if last.end == Some(lo) => last.end = hi.checked_add(1),
            _ => out.push(KeyRange {
                begin: lo,
                end: hi.checked_add(1),
            }),
        }
    }
    out
}

/// The warning naming what device `p` took from one older source.
fn older_warning(
    cls: &Classifier,
    p: &PendingDevice,
    part: &OlderPart,
    mappings: u64,
    dropped: u64,
) -> Warning {
    let id = p.id;
    let ranges = || taken_ranges(cls, p, &part.blocks);
    match part.source {
        OlderSource::Fill { top } => Warning::FilledFromOlderTop {
            id,
            ranges: ranges(),
            mappings,
            leaves: part.blocks.len(),
            top,
            dropped,
        },
        OlderSource::FillFromNode { node } => Warning::FilledFromOlderNode {
            id,
            ranges: ranges(),
            mappings,
            leaves: part.blocks.len(),
            node,
            dropped,
        },
        OlderSource::WholeTree { top } => Warning::TreeFromOlderTop {
            id,
            top,
            mappings,
            dropped,
        },
        OlderSource::Subtrees { subtrees } => Warning::SubtreesAdopted {
            id,
            mappings,
            subtrees,
            dropped,
        },
    }
}

fn warn_lost_trees(ctx: &Context, g: &Gathered) {
    let table = ctx.cls.table();
    for l in &g.top_lost {
        ctx.notes.warn(&Warning::TopLevelLost {
            range: KeyRange::from(l),
            why: loss_text(ctx.dev, table, l),
        });
    }
    for l in &g.details_lost {
        ctx.notes.warn(&Warning::DetailsLost {
            range: KeyRange::from(l),
            why: loss_text(ctx.dev, table, l),
        });
    }
}

/// The leaves of device `id` under `root` (from the older top-level tree
/// `older_top`, when given), with what older trees give back for the ranges
/// lost; and the number of subtrees lost. `expected`: the device should have
/// mappings.
fn device_leaves(
    ctx: &Context,
    filler: &mut Filler,
    id: u64,
    root: Option<(BlockNr, Option<BlockNr>)>,
    expected: bool,
) -> (PendingDevice, usize) {
    let (older_top, root) = (root.and_then(|r| r.1), root.map(|r| r.0));
    let (mut leaves, lost) = root.map(|r| mapping_leaves(ctx.cls, r)).unwrap_or_default();
    for l in &lost {
        ctx.notes.warn(&Warning::MappingsLost {
            id,
            range: KeyRange::from(l),
            block: l.block,
            why: loss_text(ctx.dev, ctx.cls.table(), l),
        });
    }
    let mut p = PendingDevice::new(id, Vec::new(), lost.iter().map(KeyRange::from).collect());
    if let Some(top) = older_top {
        p.borrowed.extend(leaves.iter().copied());
        p.older.push(OlderPart {
            source: OlderSource::WholeTree { top },
            blocks: leaves.clone(),
        });
    }
    if !lost.is_empty() || (root.is_none() && expected) {
        for f in filler.fill(id, root, &lost, &mut leaves) {
            p.borrowed.extend(f.blocks.iter().copied());
            p.clip
                .extend(f.clipped.iter().map(|&(l, lo, hi)| (l, (lo, hi))));
            p.older.push(OlderPart {
                source: f.source,
                blocks: f.blocks,
            });
        }
    }
    // A device with no tree at all adopts nothing: any stray subtree, a
    // deleted thin's included, would fit its missing range.
    p.leaves = leaves;
    p.sort_leaves(ctx.cls);
    p.rootless = root.is_none() && expected;
    (p, lost.len())
}

/// Names the devices of the top-level tree whose mapping root is not a
/// usable tree: all their mappings are lost, unless an older copy gives
/// them back.
fn warn_lost_roots(ctx: &Context, g: &Gathered) {
    for &(id, block, usable) in &g.top {
        if usable {
            continue;
        }
        let l = LostRange {
            begin: 0,
            end: None,
            block,
            loss: Loss::Unreadable,
        };
        ctx.notes.warn(&Warning::MappingsLost {
            id,
            range: KeyRange::from(&l),
            block,
            why: loss_text(ctx.dev, ctx.cls.table(), &l),
        });
    }
}

/// The pool written: details for every device (recorded or made up), and
/// the warnings about what differs from the superblock's own trees.
#[must_use]
pub fn finish(ctx: &Context, a: Assembled, sb: SuperblockInfo) -> RepairedPool {
    let notes = ctx.notes;
    let details = &a.gathered.details;
    let regenerated: Vec<u64> = a
        .devices
        .iter()
        .map(|d| d.id)
        .filter(|id| !details.contains_key(id))
        .collect();
    if ctx.chosen.source == Source::NoDetails || ctx.chosen.details_root.is_none() {
        if !regenerated.is_empty() {
            notes.warn(&Warning::NoDetailsTree {
                devices: regenerated.len(),
            });
        }
    } else {
        for &id in &regenerated {
            notes.warn(&Warning::DetailsRegenerated { id });
        }
    }
    let mut devices = Vec::with_capacity(a.devices.len());
    for d in a.devices {
        let info = match details.get(&d.id) {
            Some(rec) => recorded_details(d.id, rec, d.mappings, notes),
            None => regenerated_details(d.id, d.mappings, &sb),
        };
        devices.push(RepairedDevice {
            info,
            leaves: d.leaves,
        });
    }
    let pool = RepairedPool {
        sb,
        devices,
        warnings: Vec::new(),
        misplaced: Vec::new(),
        dropped: a.dropped,
    };
    report_rollback(ctx, &pool);
    if a.lost_subtrees > 0 {
        notes.warn(&Warning::Salvaged {
            devices: pool.devices.len(),
            mappings: pool.mappings(),
            lost: a.lost_subtrees,
        });
    }
    pool
}

/// The leaves of `pool` whose block-number field names another block (they
/// are read leniently when emitting), each named in a warning.
#[must_use]
pub fn misplaced_leaves(ctx: &Context, pool: &RepairedPool) -> Vec<BlockNr> {
    let mut out: Vec<BlockNr> = pool
        .devices
        .iter()
        .flat_map(|d| d.leaves.iter().copied())
        .filter(|&l| ctx.cls.node(l).is_some_and(|n| n.misplaced))
        .collect();
    out.sort_unstable();
    out.dedup();
    for &block in &out {
        ctx.notes.warn(&Warning::Misplaced { block });
    }
    out
}

fn recorded_details(id: u64, d: &DeviceDetails, mappings: u64, notes: &Notes) -> DeviceInfo {
    if d.mapped_blocks != mappings {
        notes.warn(&Warning::MappedBlocksDiffer {
            id,
            recorded: d.mapped_blocks,
            recovered: mappings,
        });
    }
    DeviceInfo {
        dev_id: id,
        mapped_blocks: mappings,
        transaction: d.transaction_id,
        creation_time: d.creation_time,
        snap_time: d.snapshotted_time,
    }
}

/// Says so when the roots used are not the superblock's current ones, and
/// how the devices written differ from the current details.
fn report_rollback(ctx: &Context, pool: &RepairedPool) {
    let (chosen, notes) = (ctx.chosen, ctx.notes);
    let roots = UsedRoots {
        mapping_root: chosen.mapping_root,
        details_root: chosen.details_root,
    };
    let Some(sb) = ctx.reference else {
        notes.warn(&Warning::SuperblockLost {
            roots,
            transaction: pool.sb.transaction,
            time: pool.sb.time,
        });
        return;
    };
    match chosen.source {
        Source::Current => return,
        Source::DetailsOnly => {
            notes.warn(&Warning::TopLevelTreeLost {
                mapping_root: sb.mapping_root,
            });
            return;
        }
        Source::Pair | Source::NoDetails => {}
    }
    notes.warn(&Warning::RolledBack {
        sb_mapping_root: sb.mapping_root,
        sb_details_root: sb.details_root,
        roots,
        transaction: pool.sb.transaction,
        time: pool.sb.time,
        sb_transaction: sb.trans_id,
        sb_time: sb.time,
    });
    if ctx.cls.agg(sb.details_root, Kind::Details).is_none() {
        return;
    }
    let current: BTreeMap<u64, DeviceDetails> = details_entries(ctx.cls, sb.details_root)
        .0
        .into_iter()
        .collect();
    for d in &pool.devices {
        let id = d.info.dev_id;
        match current.get(&id) {
            None => notes.warn(&Warning::Resurrected { id }),
            Some(c) if c.mapped_blocks != d.info.mapped_blocks => {
                notes.warn(&Warning::CountRolledBack {
                    id,
                    current: c.mapped_blocks,
                    recovered: d.info.mapped_blocks,
                });
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdata::io::MemDevice;
    use crate::progress::{Log, Verbosity};
    use crate::thin::engines::repair::candidates;
    use crate::thin::engines::repair::scan::scan;
    use crate::thin::engines::repair::select::choose;
    use crate::thin::engines::repair::test_images::{
        corrupt, entries, pool, superblock, TIME, TRANSACTION,
    };

    /// Runs selection and assembly on `dev`, then `f`; returns its result
    /// and the warnings given.
    fn assembled<R>(
        dev: &MemDevice,
        reference: Option<&Superblock>,
        f: impl FnOnce(&Context, Assembled) -> R,
    ) -> (R, Vec<String>) {
        let table = scan(dev);
        let cls = Classifier::new(&table);
        let cands = candidates::find(&cls, &BTreeSet::new());
        let chosen = choose(&cls, &cands, reference).unwrap();
        let log = Log::capture(Verbosity::Normal);
        let notes = Notes::new(&log);
        let ctx = Context {
            dev,
            cls: &cls,
            cands: &cands,
            chosen: &chosen,
            reference,
            notes: &notes,
        };
        let r = f(&ctx, assemble(&ctx));
        (r, notes.into_warnings())
    }

    fn counts(a: &Assembled) -> Vec<(u64, u64)> {
        a.devices.iter().map(|d| (d.id, d.mappings)).collect()
    }

    #[test]
    fn whole_trees_give_every_device_and_no_warning() {
        let dev = pool(&[(1, 600), (2, 10), (7, 0)]);
        let sb = superblock(&dev);
        let (a, warnings) = assembled(&dev, Some(&sb), |_, a| a);
        assert_eq!(counts(&a), vec![(1, 600), (2, 10), (7, 0)]);
        assert_eq!((a.highest, a.age, a.lost_subtrees), (Some(609), 1, 0));
        assert_eq!(a.gathered.details.len(), 3);
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn a_lost_leaf_costs_its_key_range_and_is_named() {
        let dev = pool(&[(1, 600), (2, 10)]);
        let sb = superblock(&dev);
        let root1 = entries(&dev, sb.mapping_root)[0].1;
        let slots = entries(&dev, root1);
        let (begin, leaf) = slots[1];
        let end = slots[2].0;
        let lost = u64::try_from(entries(&dev, leaf).len()).unwrap();
        corrupt(&dev, leaf);
        let (a, warnings) = assembled(&dev, Some(&sb), |_, a| a);
        assert_eq!(counts(&a), vec![(1, 600 - lost), (2, 10)]);
        assert_eq!(a.lost_subtrees, 1);
        assert_eq!(
            warnings,
            vec![format!(
                "device 1: lost mappings in [{begin}..{end}) (block {leaf} unreadable: \
                 checksum error)"
            )]
        );
    }

    #[test]
    fn devices_of_a_lost_top_level_tree_come_back_from_orphan_roots() {
        let dev = pool(&[(1, 600), (2, 10)]);
        let sb = superblock(&dev);
        let roots = entries(&dev, sb.mapping_root);
        corrupt(&dev, sb.mapping_root);
        let (pool, warnings) = assembled(&dev, Some(&sb), |ctx, a| {
            let sb_info = SuperblockInfo::default();
            finish(ctx, a, sb_info)
        });
        let got: Vec<(u64, u64)> = pool
            .devices
            .iter()
            .map(|d| (d.info.dev_id, d.info.mapped_blocks))
            .collect();
        assert_eq!(got, vec![(1, 600), (2, 10)]);
        assert_eq!(
            warnings,
            vec![
                format!(
                    "device 1: mapping tree recovered from unreferenced root {}",
                    roots[0].1
                ),
                format!(
                    "device 2: mapping tree recovered from unreferenced root {}",
                    roots[1].1
                ),
                format!(
                    "top-level tree at block {} is lost: mapping trees matched to the current \
                     details by their mapping counts",
                    sb.mapping_root
                ),
            ]
        );
    }

    #[test]
    fn devices_without_details_get_made_up_ones() {
        let dev = pool(&[(1, 600), (2, 10)]);
        let sb = superblock(&dev);
        corrupt(&dev, sb.details_root);
        let (pool, warnings) = assembled(&dev, Some(&sb), |ctx, a| {
            let info = SuperblockInfo {
                time: TIME,
                transaction: TRANSACTION,
                ..SuperblockInfo::default()
            };
            finish(ctx, a, info)
        });
        let d = pool.devices[0].info;
        assert_eq!(
            (
                d.dev_id,
                d.mapped_blocks,
                d.transaction,
                d.creation_time,
                d.snap_time
            ),
            (1, 600, TRANSACTION - 1, TIME, TIME)
        );
        assert_eq!(
            warnings,
            vec!["found 2 mapping trees without device details"]
        );
    }

    #[test]
    fn a_wrong_recorded_count_is_corrected_and_named() {
        let d = DeviceDetails {
            mapped_blocks: 9,
            transaction_id: 3,
            creation_time: 1,
            snapshotted_time: 2,
        };
        let log = Log::capture(Verbosity::Normal);
        let notes = Notes::new(&log);
        let info = recorded_details(4, &d, 7, &notes);
        assert_eq!(
            (info.mapped_blocks, info.transaction, info.snap_time),
            (7, 3, 2)
        );
        assert_eq!(
            notes.into_warnings(),
            vec!["device 4: mapped_blocks is 9 but 7 mappings were recovered"]
        );
    }
}
