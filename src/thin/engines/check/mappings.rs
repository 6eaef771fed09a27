//! The bottom-level mapping trees: one walk over
//! every device's root, data reference counts taken on the worker threads,
//! then per-device totals compared with the details tree.

use std::collections::HashMap;

use crate::pdata::block::BlockNr;
use crate::pdata::btree::node::{NodeErrorKind, NodeRef};
use crate::pdata::btree::walk::{NodeState, TreeGraph, Walker};
use crate::pdata::io::BlockDevice;
use crate::pdata::space_map::dense_counts::{RefCounts, SharedCounts};
use crate::pdata::space_map::fingerprint::{CountFingerprint, Sum};
use crate::thin::engines::check::report::Report;
use crate::thin::model::device_details::DeviceDetails;
use crate::thin::model::mapping::MAPPING_VALUE_SIZE;
use crate::thin::model::mapping::{TIME_BITS, TIME_LIMIT};

/// Device ids the kernel can activate are below this (24 bits).
const DEVICE_ID_LIMIT: u64 = 1 << 24;

/// What a worker learned about one new leaf.
#[derive(Clone, Copy)]
struct LeafInfo {
    /// Some value names a data block past the end of the data device.
    out_of_bounds: bool,
    /// Entries whose time is newer than the superblock time.
    newer: u32,
    /// The fingerprint of its data blocks (with [`DataRefs::Fingerprint`]).
    sum: Sum,
}

/// What the walk does with the data blocks the leaves reference.
#[derive(Clone, Copy)]
pub enum DataRefs<'a> {
    /// Nothing (a check of the metadata snapshot's trees only).
    Ignore,
    /// Adds one per reference to the block's counter.
    Count(&'a SharedCounts),
    /// Adds each reference to [`MappingTrees::data_sum`].
    Fingerprint(&'a CountFingerprint),
}

/// The walked mapping trees.
pub struct MappingTrees {
    /// Every node of every bottom-level tree.
    pub graph: TreeGraph,
    /// Leaves with mappings newer than the superblock time, and how many.
    newer: HashMap<BlockNr, u32>,
    /// With [`DataRefs::Fingerprint`]: the fingerprint of every data block
    /// reference held by a distinct valid leaf.
    pub data_sum: Sum,
}

/// Limits a leaf's values are checked against.
#[derive(Clone, Copy)]
pub struct LeafLimits {
    /// Data blocks must be below this (the live data space map's size).
    pub nr_data_blocks: u64,
    /// Mapping times above this are reported.
    pub time: u32,
}

/// Walks every tree under `roots`; each entry of each distinct valid leaf is
/// a reference to its data block, handled as `data` says.
#[must_use]
pub fn walk_mappings(
    dev: &dyn BlockDevice,
    roots: &[BlockNr],
    limits: LeafLimits,
    data: DataRefs,
) -> MappingTrees {
    let mut walker = Walker::new(dev);
    let mut bad_leaves = Vec::new();
    let mut newer = HashMap::new();
    let mut data_sum = Sum::default();
    let time = u64::from(limits.time);
    walker.walk(
        roots,
        MAPPING_VALUE_SIZE,
        |_, node: &NodeRef| {
            let values = node.values_u64();
            // Branch-free so that it vectorises: the highest data block and
            // the number of newer times.
            let (highest, newer) = values.iter().fold((0u64, 0u32), |(m, n), v| {
                let v = v.get();
                (
                    m.max(v >> TIME_BITS),
                    n + u32::from(v & (TIME_LIMIT - 1) > time),
                )
            });
            let mut info = LeafInfo {
                out_of_bounds: !values.is_empty() && highest >= limits.nr_data_blocks,
                newer,
                sum: Sum::default(),
            };
            if info.out_of_bounds {
                return info;
            }
            let blocks = values.iter().map(|v| v.get() >> TIME_BITS);
            match data {
                DataRefs::Ignore => {}
                DataRefs::Count(counts) => counts.inc_all(blocks),
                DataRefs::Fingerprint(f) => info.sum = f.blocks(blocks),
            }
            info
        },
        |nr, info: LeafInfo| {
            data_sum = data_sum.plus(info.sum);
            if info.out_of_bounds {
                bad_leaves.push(nr);
            }
            if info.newer > 0 {
                newer.insert(nr, info.newer);
            }
        },
    );
    let mut graph = walker.into_graph();
    for nr in bad_leaves {
        graph.mark_bad(nr, NodeErrorKind::ValueOutOfBounds);
    }
    let links: Vec<_> = graph.link_errors.clone();
    for e in links {
        graph.mark_bad(e.block, e.kind);
    }
    MappingTrees {
        graph,
        newer,
        data_sum,
    }
}

/// One device to check: its id, root and recorded details.
#[derive(Clone, Copy)]
pub struct DeviceToCheck {
    /// Device id.
    pub id: u64,
    /// Bottom-level root.
    pub root: BlockNr,
    /// Details (expected mapping count, times).
    pub details: DeviceDetails,
    /// Time of the superblock naming it.
    pub sb_time: u32,
}

impl MappingTrees {
    /// Prints the tree-wide findings: non-fatal node issues, key warnings,
    /// and the damaged-node summary. Returns true when a node is damaged.
    pub fn report_nodes(&self, report: &mut Report) -> bool {
        let mut non_fatal: Vec<_> = self
            .graph
            .iter()
            .filter(|(_, s)| !matches!(s.state, NodeState::Bad(_)))
            .filter_map(|(nr, s)| s.non_fatal.map(|k| (nr, k)))
            .collect();
        non_fatal.sort_unstable_by_key(|&(nr, _)| nr);
        for (nr, k) in non_fatal {
            report.non_fatal(format!("mapping tree: node error: {k} at block {nr}"));
        }
        for w in &self.graph.key_warnings {
            report.warning(format!(
                "node {}: key {} equals the next parent key",
                w.block, w.key
            ));
        }
        let (mut bad, mut io, mut csum) = (0u64, 0u64, 0u64);
        for (_, s) in self.graph.iter() {
            if let NodeState::Bad(k) = s.state {
                bad += 1;
                io += u64::from(k == NodeErrorKind::Io);
                csum += u64::from(k == NodeErrorKind::Checksum);
            }
        }
        if bad > 0 {
            report.fatal(format!("{bad} nodes in data mapping tree contain errors"));
            report.notice(format!("{io} io errors, {csum} checksum errors"));
        }
        bad > 0
    }

    /// Compares each device's mappings with its details (fatal lines) and
    /// prints the time and id warnings. Returns true when any device failed.
    pub fn report_devices(&self, devices: &[DeviceToCheck], report: &mut Report) -> bool {
        let roots: Vec<BlockNr> = devices.iter().map(|d| d.root).collect();
        let totals = self.graph.totals_of_roots(&roots);
        let mut failed = false;
        for (d, &t) in devices.iter().zip(&totals) {
            let expected = d.details.mapped_blocks;
            let root_ok = matches!(
                self.graph.node(d.root).map(|s| s.state),
                Some(NodeState::Leaf | NodeState::Internal)
            );
            if !root_ok {
                failed = true;
                report.fatal(format!(
                    "Thin device {} is missing root with {expected} mappings",
                    d.id
                ));
            } else if t.errors > 0 {
                failed = true;
                let e = if t.errors >= 255 {
                    "255+".to_string()
                } else {
                    t.errors.to_string()
                };
                report.fatal(format!(
                    "Thin device {} has {e} errors and is missing {} mappings, while expected {expected}",
                    d.id,
                    expected.saturating_sub(t.entries)
                ));
            } else if t.entries != expected {
                failed = true;
                report.fatal(format!(
                    "Thin device {} has unexpected number of mappings, expected {expected}, actual {}",
                    d.id, t.entries
                ));
            }
            self.device_warnings(d, report);
        }
        failed
    }

    fn device_warnings(&self, d: &DeviceToCheck, report: &mut Report) {
        if !self.newer.is_empty() {
            let n: u64 = self
                .graph
                .leaves_of(d.root, |_, _| {})
                .iter()
                .filter_map(|l| self.newer.get(l))
                .map(|&n| u64::from(n))
                .sum();
            if n > 0 {
                report.warning(format!(
                    "device {}: {n} mappings have a time newer than the superblock time {}",
                    d.id, d.sb_time
                ));
            }
        }
        if d.details.creation_time > d.sb_time || d.details.snapshotted_time > d.sb_time {
            report.warning(format!(
                "device {}: creation/snapshot time newer than the superblock time {}",
                d.id, d.sb_time
            ));
        }
        if d.id >= DEVICE_ID_LIMIT {
            report.warning(format!(
                "device {}: id does not fit in 24 bits, the kernel cannot activate it",
                d.id
            ));
        }
    }

    /// Adds one metadata reference per parent entry of each distinct internal
    /// node (roots are counted by the top-level trees).
    pub fn count_metadata(&self, counts: &mut RefCounts) {
        for c in self.graph.child_refs() {
            counts.inc(c);
        }
    }
}
