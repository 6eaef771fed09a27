//! When block 0 is a valid superblock whose trees are whole and agree with
//! each other, repair is a plain read of those trees (no scan).

use std::collections::BTreeMap;

use crate::pdata::block::BlockNr;
use crate::pdata::btree::node::NodeRef;
use crate::pdata::btree::walk::{NodeState, Walker};
use crate::pdata::io::BlockDevice;
use crate::thin::model::device_details::DeviceDetails;
use crate::thin::model::mapping::MAPPING_VALUE_SIZE;
use crate::thin::model::open::{read_details, read_top_level};
use crate::thin::model::superblock::Superblock;

/// A healthy device: its details, and its mapping leaves left to right.
pub struct HealthyDevice {
    /// Device id.
    pub id: u64,
    /// Details as recorded.
    pub details: DeviceDetails,
    /// Mapping leaves in key order.
    pub leaves: Vec<BlockNr>,
    /// Mappings counted in those leaves.
    pub mappings: u64,
}

/// The devices of `sb` when every tree is readable and consistent
/// (same id sets, Σ mapped_blocks equals the mappings counted), else `None`.
#[must_use]
pub fn healthy_devices(dev: &dyn BlockDevice, sb: &Superblock) -> Option<Vec<HealthyDevice>> {
    let mut walker = Walker::new(dev);
    let top = read_top_level(&mut walker, sb.mapping_root).ok()?;
    let mut dwalker = Walker::new(dev);
    let details = read_details(&mut dwalker, sb.details_root).ok()?;
    if !top.keys().eq(details.keys()) {
        return None;
    }
    let roots: Vec<BlockNr> = top.values().copied().collect();
    let mut mwalker = Walker::new(dev);
    let mut leaf_entries: BTreeMap<BlockNr, u64> = BTreeMap::new();
    mwalker.walk(
        &roots,
        MAPPING_VALUE_SIZE,
        |_, n: &NodeRef| u64::from(n.nr_entries()),
        |nr, k| {
            leaf_entries.insert(nr, k);
        },
    );
    let g = mwalker.graph();
    if !g.link_errors.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(top.len());
    let mut counted = 0u64;
    let mut recorded = 0u64;
    for ((&id, &root), (_, &d)) in top.iter().zip(details.iter()) {
        let mut bad = false;
        let leaves = g.leaves_of(root, |_, _| bad = true);
        if bad
            || g.node(root)
                .is_none_or(|s| matches!(s.state, NodeState::Bad(_)))
        {
            return None;
        }
        let mappings: u64 = leaves
            .iter()
            .map(|l| leaf_entries.get(l).copied().unwrap_or(0))
            .sum();
        counted += mappings;
        recorded = recorded.saturating_add(d.mapped_blocks);
        out.push(HealthyDevice {
            id,
            details: d,
            leaves,
            mappings,
        });
    }
    (counted == recorded).then_some(out)
}
