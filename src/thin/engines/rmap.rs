//! thin_rmap: which thin blocks map to given data block regions
//! (one line per run of data blocks mapped by one device).
//!
//! Every device's tree is read by one walk; leaf visitors keep only the
//! mappings whose data block lies in a requested region, so memory follows
//! the size of the answer. Devices are then replayed in ascending id, each
//! leaf counted for the first (lowest) device that reaches it.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;

use crate::pdata::block::BlockNr;
use crate::pdata::btree::node::{NodeError, NodeRef};
use crate::pdata::btree::walk::Walker;
use crate::pdata::io::BlockDevice;
use crate::thin::model::mapping::BlockTime;
use crate::thin::model::mapping::MAPPING_VALUE_SIZE;
use crate::thin::model::open::{device_roots, open_for_reading, ReadError, SnapshotChoice};

/// What to look up.
#[derive(Clone, Debug)]
pub struct RmapOptions {
    /// Metadata device or file.
    pub input: PathBuf,
    /// Data block regions, each `begin..end` with `end` exclusive.
    pub regions: Vec<Range<u64>>,
}

/// Why thin_rmap could not answer.
#[derive(Debug, thiserror::Error)]
pub enum RmapError {
    /// Opening the input or reading its top-level tree failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A damaged node in a device's mapping tree.
    #[error("mapping tree of device {id}: {err}")]
    Tree {
        /// The device.
        id: u64,
        /// The first bad node.
        err: NodeError,
    },
    /// The device has more blocks than this machine can index.
    #[error("metadata device of {0} blocks is too large to index")]
    TooLarge(u64),
}

/// Opens the input and maps the options' regions back to thin blocks.
///
/// # Errors
/// An [`RmapError`].
pub fn rmap_input(opts: &RmapOptions) -> Result<Vec<RmapLine>, RmapError> {
    let opened = open_for_reading(&opts.input, SnapshotChoice::Live)?;
    let roots = device_roots(&opened.dev, opened.chosen.sb.mapping_root)?;
    rmap(&opened.dev, &roots, &opts.regions)
}

/// Data blocks `data_begin..data_end` are mapped by device `dev` from thin
/// block `thin_begin` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RmapLine {
    /// First data block.
    pub data_begin: u64,
    /// One past the last data block.
    pub data_end: u64,
    /// Device id.
    pub dev: u64,
    /// First thin block.
    pub thin_begin: u64,
}

impl RmapLine {
    fn extend(&mut self, dev: u64, thin: u64, data: u64) -> bool {
        let len = self.data_end - self.data_begin;
        let continues = dev == self.dev
            && data == self.data_end
            && self.thin_begin.checked_add(len) == Some(thin);
        if continues {
            self.data_end += 1;
        }
        continues
    }
}

/// The sorted reverse map of `regions` over the devices in `roots` (id → root).
///
/// # Errors
/// A damaged node in a mapping tree.
pub fn rmap(
    dev: &dyn BlockDevice,
    roots: &std::collections::BTreeMap<u64, BlockNr>,
    regions: &[Range<u64>],
) -> Result<Vec<RmapLine>, RmapError> {
    let in_regions = |b: u64| regions.iter().any(|r| r.contains(&b));
    let root_list: Vec<BlockNr> = roots.values().copied().collect();
    let mut hits: HashMap<BlockNr, Vec<(u64, u64)>> = HashMap::new();
    let mut walker = Walker::new(dev);
    walker.walk(
        &root_list,
        MAPPING_VALUE_SIZE,
        |_, n: &NodeRef| {
            n.keys()
                .iter()
                .zip(n.values_u64())
                .map(|(k, v)| (k.get(), BlockTime::unpack(v.get()).block))
                .filter(|&(_, data)| in_regions(data))
                .collect::<Vec<_>>()
        },
        |nr, found| {
            if !found.is_empty() {
                hits.insert(nr, found);
            }
        },
    );
    let graph = walker.graph();
    let nr_blocks = dev.nr_blocks();
    let size = usize::try_from(nr_blocks).map_err(|_| RmapError::TooLarge(nr_blocks))?;
    let mut reported = vec![false; size];
    let mut lines = Vec::new();
    let mut cur: Option<RmapLine> = None;
    for (&id, &root) in roots {
        let mut bad = None;
        let leaves = graph.leaves_of(root, |block, kind| {
            bad.get_or_insert(NodeError { block, kind });
        });
        if let Some(e) = bad.or_else(|| graph.link_errors.first().copied()) {
            return Err(RmapError::Tree { id, err: e });
        }
        for leaf in leaves {
            let Some(seen) = usize::try_from(leaf).ok().and_then(|i| reported.get_mut(i)) else {
                continue;
            };
            if std::mem::replace(seen, true) {
                continue;
            }
            for &(thin, data) in hits.get(&leaf).map_or(&[][..], Vec::as_slice) {
                if !cur.as_mut().is_some_and(|c| c.extend(id, thin, data)) {
                    lines.extend(cur.replace(RmapLine {
                        data_begin: data,
                        data_end: data + 1,
                        dev: id,
                        thin_begin: thin,
                    }));
                }
            }
        }
    }
    lines.extend(cur);
    lines.sort_unstable();
    Ok(lines)
}
