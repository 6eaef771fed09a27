//! The repaired pool (repair.md G2, G6, G7): devices paired by id between
//! the chosen top-level and details trees, each with the leaves under its
//! readable nodes (a lost subtree costs only its key range). The leaf lists
//! then go through the same def/ref planning as thin_dump, so the output
//! keeps the input's sharing.

use std::collections::BTreeMap;

use crate::pdata::block::BlockNr;
use crate::thin::device_details::DeviceDetails;
use crate::thin::ir::DeviceInfo;
use crate::thin::repair::classify::{Classified, Kind};
use crate::thin::repair::roots::{device_roots, Chosen};
use crate::thin::repair::scan::ScannedNode;
use crate::thin::repair::tree::{leaves, Lost};

/// What was written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Salvage {
    /// Devices written.
    pub devices: u64,
    /// Mappings written (per device).
    pub mappings: u64,
    /// Subtrees lost.
    pub lost_subtrees: u64,
    /// Devices whose details were regenerated.
    pub regenerated: u64,
}

fn range(l: &Lost) -> String {
    match l.end {
        Some(e) => format!("[{}..{})", l.begin, e),
        None => format!("[{}..)", l.begin),
    }
}

/// Device details of a details tree, by id.
fn read_details(
    cl: &Classified,
    root: BlockNr,
    lost: &mut Vec<Lost>,
) -> BTreeMap<u64, DeviceDetails> {
    let mut out = BTreeMap::new();
    for leaf in leaves(cl, root, Kind::Details, lost) {
        if let Some(ScannedNode::Details(d)) = cl.scan.nodes.get(&leaf) {
            out.extend(d.entries.iter().copied());
        }
    }
    out
}

/// One device to emit.
struct Plan {
    id: u64,
    details: DeviceDetails,
    leaves: Vec<BlockNr>,
    mappings: u64,
}

fn leaf_range(cl: &Classified, leaf: BlockNr) -> (u64, u64, u64) {
    match cl.scan.nodes.get(&leaf) {
        Some(ScannedNode::U64(l)) => (l.first_key, l.last_key, u64::from(l.nr)),
        _ => (0, 0, 0),
    }
}

/// Plans every device: ids from both trees, details found or regenerated,
/// leaves under readable nodes.
fn plan(
    cl: &Classified,
    chosen: &Chosen,
    warnings: &mut Vec<String>,
    salvage: &mut Salvage,
) -> Vec<Plan> {
    let roots: BTreeMap<u64, BlockNr> = match &chosen.orphans {
        Some(o) => o.clone(),
        None => chosen
            .top
            .map(|t| device_roots(cl, t).into_iter().collect())
            .unwrap_or_default(),
    };
    let mut lost = Vec::new();
    if let Some(t) = chosen.top {
        let _ = leaves(cl, t, Kind::TopLevel, &mut lost);
        for l in &lost {
            warnings.push(format!(
                "lost devices in {} (block {} unreadable: {})",
                range(l),
                l.block,
                l.why
            ));
        }
        salvage.lost_subtrees += lost.len() as u64;
    }
    let mut dlost = Vec::new();
    let details = chosen
        .details
        .map(|d| read_details(cl, d, &mut dlost))
        .unwrap_or_default();
    salvage.lost_subtrees += dlost.len() as u64;
    let mut ids: Vec<u64> = roots.keys().chain(details.keys()).copied().collect();
    ids.sort_unstable();
    ids.dedup();
    let mut plans = Vec::new();
    for id in ids {
        let mut det = details.get(&id).copied().unwrap_or_else(|| {
            if chosen.details.is_some() {
                warnings.push(format!("device {id}: details regenerated"));
            }
            salvage.regenerated += 1;
            DeviceDetails {
                mapped_blocks: 0,
                transaction_id: chosen.regen_tid,
                creation_time: chosen.regen_time,
                snapshotted_time: chosen.regen_time,
            }
        });
        let mut lv = Vec::new();
        match roots.get(&id) {
            Some(&r) => {
                let mut l = Vec::new();
                lv = leaves(cl, r, Kind::Mapping, &mut l);
                for x in &l {
                    warnings.push(format!(
                        "device {id}: lost mappings in {} (block {} unreadable: {})",
                        range(x),
                        x.block,
                        x.why
                    ));
                }
                salvage.lost_subtrees += l.len() as u64;
            }
            None => warnings.push(format!("device {id}: kept with no mappings")),
        }
        // Keys must ascend across leaves; drop a leaf that would break that.
        let mut last: Option<u64> = None;
        lv.retain(|&leaf| {
            let (first, lastk, n) = leaf_range(cl, leaf);
            if n == 0 {
                return false;
            }
            if last.is_some_and(|k| first <= k) {
                return false;
            }
            last = Some(lastk);
            true
        });
        let mappings = lv.iter().map(|&l| leaf_range(cl, l).2).sum();
        if det.mapped_blocks != mappings && details.contains_key(&id) && chosen.details.is_some() {
            warnings.push(format!(
                "device {id}: {} mappings in the details, {mappings} recovered",
                det.mapped_blocks
            ));
        }
        det.mapped_blocks = mappings;
        plans.push(Plan {
            id,
            details: det,
            leaves: lv,
            mappings,
        });
    }
    plans
}

/// The repaired pool: devices in ascending id with their leaf lists.
#[derive(Clone, Debug, Default)]
pub struct Pool {
    /// Devices (mapped_blocks = mappings recovered).
    pub devices: Vec<DeviceInfo>,
    /// Mapping leaves of each device, left to right (paired by index).
    pub leaves: Vec<Vec<BlockNr>>,
}

/// Plans the pool `chosen` describes.
#[must_use]
pub fn pool(cl: &Classified, chosen: &Chosen, warnings: &mut Vec<String>) -> (Pool, Salvage) {
    let mut salvage = Salvage::default();
    let plans = plan(cl, chosen, warnings, &mut salvage);
    let mut out = Pool::default();
    for p in plans {
        salvage.devices += 1;
        salvage.mappings += p.mappings;
        out.devices.push(DeviceInfo {
            dev_id: p.id,
            mapped_blocks: p.details.mapped_blocks,
            transaction: p.details.transaction_id,
            creation_time: p.details.creation_time,
            snap_time: p.details.snapshotted_time,
        });
        out.leaves.push(p.leaves);
    }
    (out, salvage)
}
