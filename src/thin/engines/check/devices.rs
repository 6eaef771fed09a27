//! The device trees of thin_check: the top-level
//! mapping tree and the device details tree of the live superblock and of the
//! metadata snapshot, walked into shared graphs so that nodes the two
//! superblocks share are read and counted once.

use std::collections::{BTreeMap, HashMap};

use crate::pdata::block::BlockNr;
use crate::pdata::btree::node::NodeRef;
use crate::pdata::btree::walk::Walker;
use crate::pdata::io::BlockDevice;
use crate::pdata::space_map::dense_counts::RefCounts;
use crate::pdata::space_map::read::tree_errors;
use crate::thin::model::device_details::{DeviceDetails, DETAILS_VALUE_LEN, DETAILS_VALUE_SIZE};
use crate::thin::model::mapping::TOP_LEVEL_VALUE_SIZE;

/// The devices one superblock names.
#[derive(Default)]
pub struct DeviceSet {
    /// Top-level tree: id → bottom-level root.
    pub roots: BTreeMap<u64, BlockNr>,
    /// Details tree: id → details.
    pub details: BTreeMap<u64, DeviceDetails>,
}

/// Why a pair of trees could not be read: the messages to print, in order.
pub struct TreeErrors(pub Vec<String>);

/// Walkers and leaf contents of every top-level and details tree read so far.
pub struct DeviceTrees<'d> {
    top: Walker<'d>,
    details: Walker<'d>,
    top_leaves: HashMap<BlockNr, Vec<(u64, u64)>>,
    details_leaves: HashMap<BlockNr, Vec<(u64, DeviceDetails)>>,
    root_refs: Vec<BlockNr>,
}

impl<'d> DeviceTrees<'d> {
    /// Nothing read yet.
    #[must_use]
    pub fn new(dev: &'d dyn BlockDevice) -> Self {
        DeviceTrees {
            top: Walker::new(dev),
            details: Walker::new(dev),
            top_leaves: HashMap::new(),
            details_leaves: HashMap::new(),
            root_refs: Vec::new(),
        }
    }

    /// Reads the two trees one superblock names. Tree errors come back as
    /// `mapping top-level: ...` / `device details tree: ...` lines.
    ///
    /// # Errors
    /// [`TreeErrors`] with every damaged node of either tree.
    pub fn read(
        &mut self,
        mapping_root: BlockNr,
        details_root: BlockNr,
    ) -> Result<DeviceSet, TreeErrors> {
        self.root_refs.push(mapping_root);
        self.root_refs.push(details_root);
        let top_leaves = &mut self.top_leaves;
        self.top.walk(
            &[mapping_root],
            TOP_LEVEL_VALUE_SIZE,
            |_, n: &NodeRef| {
                n.keys()
                    .iter()
                    .zip(n.values_u64())
                    .map(|(k, v)| (k.get(), v.get()))
                    .collect::<Vec<_>>()
            },
            |nr, v| {
                top_leaves.insert(nr, v);
            },
        );
        let details_leaves = &mut self.details_leaves;
        self.details.walk(
            &[details_root],
            DETAILS_VALUE_SIZE,
            |_, n: &NodeRef| {
                n.keys()
                    .iter()
                    .zip(n.value_bytes().as_chunks::<DETAILS_VALUE_LEN>().0)
                    .map(|(k, v)| (k.get(), DeviceDetails::from_bytes(v)))
                    .collect::<Vec<_>>()
            },
            |nr, v| {
                details_leaves.insert(nr, v);
            },
        );
        let mut errors: Vec<String> = tree_errors(self.top.graph(), mapping_root)
            .into_iter()
            .map(|e| format!("mapping top-level: {e}"))
            .collect();
        errors.extend(
            tree_errors(self.details.graph(), details_root)
                .into_iter()
                .map(|e| format!("device details tree: {e}")),
        );
        if !errors.is_empty() {
            return Err(TreeErrors(errors));
        }
        let mut set = DeviceSet::default();
        for leaf in self.top.graph().leaves_of(mapping_root, |_, _| {}) {
            if let Some(v) = self.top_leaves.get(&leaf) {
                set.roots.extend(v.iter().copied());
            }
        }
        for leaf in self.details.graph().leaves_of(details_root, |_, _| {}) {
            if let Some(v) = self.details_leaves.get(&leaf) {
                set.details.extend(v.iter().copied());
            }
        }
        Ok(set)
    }

    /// Warnings of both graphs: keys equal to the next parent key.
    #[must_use]
    pub fn key_warnings(&self) -> Vec<String> {
        [self.top.graph(), self.details.graph()]
            .iter()
            .flat_map(|g| g.key_warnings.iter())
            .map(|w| format!("node {}: key {} equals the next parent key", w.block, w.key))
            .collect()
    }

    /// Non-fatal node findings of both graphs, as printed lines.
    #[must_use]
    pub fn non_fatal(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (ctx, g) in [
            ("mapping top-level", self.top.graph()),
            ("device details tree", self.details.graph()),
        ] {
            let mut v: Vec<_> = g
                .iter()
                .filter_map(|(nr, s)| s.non_fatal.map(|k| (nr, k)))
                .collect();
            v.sort_unstable_by_key(|&(nr, _)| nr);
            out.extend(
                v.into_iter()
                    .map(|(nr, k)| format!("{ctx}: node error: {k} at block {nr}")),
            );
        }
        out
    }

    /// Adds every metadata reference these trees hold: one per superblock
    /// root field, one per parent entry of each distinct internal node, and
    /// one per entry of each distinct top-level leaf for the bottom-level roots.
    pub fn count_metadata(&self, counts: &mut RefCounts) {
        for &r in &self.root_refs {
            counts.inc(r);
        }
        for c in self.top.graph().child_refs() {
            counts.inc(c);
        }
        for c in self.details.graph().child_refs() {
            counts.inc(c);
        }
        for leaf in self.top_leaves.values() {
            for &(_, root) in leaf {
                counts.inc(root);
            }
        }
    }
}
