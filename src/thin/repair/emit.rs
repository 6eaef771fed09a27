//! Emitting the repaired pool as IR events (repair.md G2, G6, G7).
//!
//! Devices are paired by id between the chosen top-level and details trees.
//! A device keeps every mapping under its readable nodes; a lost subtree costs
//! only its key range. Leaves reached by more than one device are emitted once
//! as a `<def>` (named by the leaf's block) and referenced, so the output
//! keeps the input's sharing.

use std::collections::{BTreeMap, HashMap};

use anyhow::{anyhow, Result};

use crate::pdata::block::{Block, BlockNr};
use crate::pdata::btree::node::NodeRef;
use crate::pdata::io::BlockDevice;
use crate::thin::device_details::DeviceDetails;
use crate::thin::ir::{DeviceInfo, Map, MetadataVisitor};
use crate::thin::mapping::BlockTime;
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

/// Merges mappings into runs and sends them.
struct Runs {
    cur: Option<Map>,
    last_key: Option<u64>,
}

impl Runs {
    fn push(&mut self, sink: &mut dyn MetadataVisitor, key: u64, bt: BlockTime) -> Result<()> {
        if let Some(m) = &mut self.cur {
            if m.thin_begin + m.len == key && m.data_begin + m.len == bt.block && m.time == bt.time
            {
                m.len += 1;
                return Ok(());
            }
            sink.map(m)?;
        }
        self.cur = Some(Map {
            thin_begin: key,
            data_begin: bt.block,
            time: bt.time,
            len: 1,
        });
        self.last_key = Some(key);
        Ok(())
    }

    fn flush(&mut self, sink: &mut dyn MetadataVisitor) -> Result<()> {
        if let Some(m) = self.cur.take() {
            self.last_key = Some(m.thin_begin + m.len - 1);
            sink.map(&m)?;
        }
        Ok(())
    }
}

fn emit_leaf(
    dev: &dyn BlockDevice,
    leaf: BlockNr,
    runs: &mut Runs,
    sink: &mut dyn MetadataVisitor,
) -> Result<()> {
    let mut b = Block::zeroed();
    dev.read_at(leaf, &mut b)
        .map_err(|e| anyhow!("re-reading block {leaf}: {e}"))?;
    let node =
        NodeRef::parse(&b.0, leaf, 8).map_err(|e| anyhow!("re-reading block {leaf}: {e}"))?;
    for i in 0..node.len() {
        runs.push(sink, node.key(i), BlockTime::unpack(node.value_u64(i)))?;
    }
    Ok(())
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

/// Emits the pool `chosen` describes into `sink`.
///
/// # Errors
/// Input re-read failures and sink failures.
pub fn emit(
    dev: &dyn BlockDevice,
    cl: &Classified,
    chosen: &Chosen,
    sink: &mut dyn MetadataVisitor,
    warnings: &mut Vec<String>,
) -> Result<Salvage> {
    let mut salvage = Salvage::default();
    let plans = plan(cl, chosen, warnings, &mut salvage);
    let mut users: HashMap<BlockNr, u32> = HashMap::new();
    for p in &plans {
        for &l in &p.leaves {
            *users.entry(l).or_default() += 1;
        }
    }
    let mut shared: Vec<BlockNr> = users
        .iter()
        .filter(|(_, &n)| n > 1)
        .map(|(&b, _)| b)
        .collect();
    shared.sort_unstable();
    sink.superblock_begin(&chosen.sb)?;
    for &leaf in &shared {
        sink.def_begin(leaf)?;
        let mut runs = Runs {
            cur: None,
            last_key: None,
        };
        emit_leaf(dev, leaf, &mut runs, sink)?;
        runs.flush(sink)?;
        sink.def_end()?;
    }
    for p in &plans {
        sink.device_begin(&DeviceInfo {
            dev_id: p.id,
            mapped_blocks: p.details.mapped_blocks,
            transaction: p.details.transaction_id,
            creation_time: p.details.creation_time,
            snap_time: p.details.snapshotted_time,
        })?;
        let mut runs = Runs {
            cur: None,
            last_key: None,
        };
        for &leaf in &p.leaves {
            if users.get(&leaf).copied().unwrap_or(0) > 1 {
                runs.flush(sink)?;
                sink.ref_shared(leaf)?;
            } else {
                emit_leaf(dev, leaf, &mut runs, sink)?;
            }
        }
        runs.flush(sink)?;
        sink.device_end()?;
        salvage.devices += 1;
        salvage.mappings += p.mappings;
    }
    sink.superblock_end()?;
    sink.eof()?;
    Ok(salvage)
}
