//! Selecting the roots to repair from.
//!
//! Order of preference: the superblock's own roots when they are trees of
//! the right kinds with compatible device ids; when one of those two trees
//! is lost, a pair found by the scan that shares the surviving one; then the
//! scan's complete pairs, then its damaged pairs (in candidate order); then a
//! lone top-level tree (its devices get made-up details); then an empty pool.

use std::collections::BTreeSet;

use crate::pdata::block::BlockNr;
use crate::thin::engines::repair::candidates::Candidates;
use crate::thin::engines::repair::classify::{Classifier, Kind, Status};
use crate::thin::engines::repair::fill::Filler;
use crate::thin::engines::repair::orphans::Orphans;
use crate::thin::engines::repair::scan::Shape;
use crate::thin::engines::repair::trees::{details_entries, top_devices};
use crate::thin::model::device_details::DeviceDetails;
use crate::thin::model::superblock::Superblock;

/// Where the chosen roots came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The live superblock's own roots.
    Current,
    /// A pair found by the scan.
    Pair,
    /// A top-level tree with no details tree.
    NoDetails,
    /// The live details tree without its top-level tree: devices get their
    /// mapping trees from unreferenced roots.
    DetailsOnly,
}

/// The roots chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chosen {
    /// Top-level tree root.
    pub mapping_root: BlockNr,
    /// Details tree root, if any.
    pub details_root: Option<BlockNr>,
    /// Where they came from.
    pub source: Source,
    /// A pool with no devices.
    pub empty: bool,
}

impl Chosen {
    fn of(mapping_root: BlockNr, details_root: Option<BlockNr>, source: Source) -> Self {
        Chosen {
            mapping_root,
            details_root,
            source,
            empty: false,
        }
    }
}

/// The roots to repair from, or `None` when nothing usable was found.
#[must_use]
pub fn choose(cls: &Classifier, cands: &Candidates, sb: Option<&Superblock>) -> Option<Chosen> {
    if let Some(c) = sb.and_then(|sb| from_superblock(cls, cands, sb)) {
        return Some(c);
    }
    let pair = cands.pairs.first().or(cands.damaged_pairs.first());
    if let Some(&(t, d)) = pair {
        return Some(Chosen::of(
            cands.tops[t].root,
            Some(cands.details[d].root),
            Source::Pair,
        ));
    }
    if let Some(t) = cands.tops.iter().find(|t| !t.ambiguous) {
        return Some(Chosen::of(t.root, None, Source::NoDetails));
    }
    cands.empty_pair.map(|(t, d)| Chosen {
        empty: true,
        ..Chosen::of(t, Some(d), Source::Pair)
    })
}

/// The superblock's roots, possibly with the lost one of the two replaced
/// by a scanned tree that pairs with the survivor.
fn from_superblock(cls: &Classifier, cands: &Candidates, sb: &Superblock) -> Option<Chosen> {
    let c = current_roots(cls, sb)?;
    let all_pairs = || cands.pairs.iter().chain(&cands.damaged_pairs);
    if c.source == Source::DetailsOnly {
        // The live details tree lost its top-level tree: a pair found by the
        // scan with the same details tree beats matching roots.
        let paired = all_pairs().find(|&&(_, d)| Some(cands.details[d].root) == c.details_root);
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
    // The current top-level tree lost its details tree: a details tree found
    // by the scan that pairs with it beats regenerating.
    let paired = all_pairs().find(|&&(t, _)| cands.tops[t].root == c.mapping_root);
    if let Some(&(_, d)) = paired {
        return Some(Chosen {
            details_root: Some(cands.details[d].root),
            source: Source::Pair,
            ..c
        });
    }
    (c.source != Source::DetailsOnly).then_some(c)
}

/// True when every device of the details tree at `root` that has mappings
/// finds its mapping tree among the unreferenced roots or in an older
/// top-level tree.
#[must_use]
pub fn orphans_cover(
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
/// right kinds with compatible device ids: equal id sets and mapping counts
/// when both are complete (or the details holding devices the top-level tree
/// lost), one id set holding the other when either is damaged.
#[must_use]
pub fn current_roots(cls: &Classifier, sb: &Superblock) -> Option<Chosen> {
    let empty_leaf = |nr: BlockNr, shape: Shape| {
        cls.node(nr)
            .is_some_and(|n| n.shape == shape && n.nr_entries == 0)
    };
    let top = cls.top_or_named_leaf(sb.mapping_root);
    let details = cls.agg(sb.details_root, Kind::Details);
    let empty_top = empty_leaf(sb.mapping_root, Shape::Leaf8);
    if empty_top && details.is_some_and(|d| d.entries > 0) {
        // The top-level tree lost every entry while the details still name
        // devices: their mapping trees are found as orphans.
        return Some(Chosen::of(
            sb.mapping_root,
            Some(sb.details_root),
            Source::DetailsOnly,
        ));
    }
    if empty_top || (top.is_none() && empty_leaf(sb.details_root, Shape::Leaf24)) {
        // A pool with no devices (one of its two empty trees may be lost).
        return Some(Chosen {
            empty: true,
            ..Chosen::of(sb.mapping_root, Some(sb.details_root), Source::Current)
        });
    }
    let Some(top) = top else {
        return details
            .map(|_| Chosen::of(sb.mapping_root, Some(sb.details_root), Source::DetailsOnly));
    };
    let Some(det) = details else {
        return Some(Chosen::of(sb.mapping_root, None, Source::Current));
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
    // Whole trees agree, or the top-level tree lost entries the details
    // still hold (those devices' trees are found as orphans).
    let ok = if complete {
        (top_ids == det_ids && top.mappings == det.mappings) || top_ids.is_subset(&det_ids)
    } else {
        top_ids.is_subset(&det_ids) || det_ids.is_subset(&top_ids)
    };
    ok.then_some(Chosen::of(
        sb.mapping_root,
        Some(sb.details_root),
        Source::Current,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdata::checksum::{write_checksum, BlockKind};
    use crate::pdata::io::BlockDevice;
    use crate::pdata::io::MemDevice;
    use crate::thin::engines::repair::candidates;
    use crate::thin::engines::repair::scan::scan;
    use crate::thin::engines::repair::test_images::{corrupt, pool, read, superblock, zero};

    fn chosen(dev: &MemDevice, sb: Option<&Superblock>) -> Option<Chosen> {
        let table = scan(dev);
        let cls = Classifier::new(&table);
        let cands = candidates::find(&cls, &BTreeSet::new());
        choose(&cls, &cands, sb)
    }

    #[test]
    fn the_superblocks_roots_come_first() {
        let dev = pool(&[(1, 600), (2, 10)]);
        let sb = superblock(&dev);
        let c = chosen(&dev, Some(&sb)).unwrap();
        assert_eq!(
            c,
            Chosen::of(sb.mapping_root, Some(sb.details_root), Source::Current)
        );
    }

    #[test]
    fn without_a_superblock_the_scanned_pair_is_used() {
        let dev = pool(&[(1, 600), (2, 10)]);
        let sb = superblock(&dev);
        zero(&dev, 0);
        let c = chosen(&dev, None).unwrap();
        assert_eq!(
            c,
            Chosen::of(sb.mapping_root, Some(sb.details_root), Source::Pair)
        );
    }

    #[test]
    fn a_lost_details_tree_leaves_the_top_level_tree_alone() {
        let dev = pool(&[(1, 600), (2, 10)]);
        let sb = superblock(&dev);
        corrupt(&dev, sb.details_root);
        let c = chosen(&dev, Some(&sb)).unwrap();
        assert_eq!(c, Chosen::of(sb.mapping_root, None, Source::Current));
    }

    #[test]
    fn a_lost_top_level_tree_is_replaced_by_orphans_that_cover_the_details() {
        let dev = pool(&[(1, 600), (2, 10)]);
        let sb = superblock(&dev);
        corrupt(&dev, sb.mapping_root);
        let c = chosen(&dev, Some(&sb)).unwrap();
        assert_eq!(
            c,
            Chosen::of(sb.mapping_root, Some(sb.details_root), Source::DetailsOnly)
        );
    }

    #[test]
    fn orphans_with_a_shared_count_cover_nothing() {
        let dev = pool(&[(1, 10), (2, 10)]);
        let sb = superblock(&dev);
        corrupt(&dev, sb.mapping_root);
        let table = scan(&dev);
        let cls = Classifier::new(&table);
        let cands = candidates::find(&cls, &BTreeSet::new());
        assert!(!orphans_cover(&cls, &cands, Some(sb.details_root), None));
        assert_eq!(choose(&cls, &cands, Some(&sb)), None);
    }

    #[test]
    fn a_top_level_tree_that_lost_every_entry_leaves_the_details_to_orphans() {
        let dev = pool(&[(1, 600), (2, 10)]);
        let sb = superblock(&dev);
        let mut b = read(&dev, sb.mapping_root);
        b.0[16..20].copy_from_slice(&0u32.to_le_bytes());
        write_checksum(&mut b.0, BlockKind::Node);
        dev.write_at(sb.mapping_root, &b).unwrap();
        let c = chosen(&dev, Some(&sb)).unwrap();
        assert_eq!(
            c,
            Chosen::of(sb.mapping_root, Some(sb.details_root), Source::DetailsOnly)
        );
    }

    #[test]
    fn an_empty_device_gives_no_roots() {
        let dev = MemDevice::new(16);
        assert_eq!(chosen(&dev, None), None);
    }
}
