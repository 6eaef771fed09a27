//! The scan: every block of the input is read once, sequentially in large
//! runs, and each block whose checksum says "btree node" is decoded leniently
//! into a compact summary (repair.md §1.1, G5).
//!
//! Kept per node: internal nodes keep their (key, child) pairs; u64 leaves
//! keep their key range, mapping count, highest data block, a small time
//! histogram, and their raw values only when every value could be a metadata
//! block number (a possible top-level leaf); details leaves keep their device
//! ids and the sums the pairing needs.

use std::collections::HashMap;

use crate::pdata::block::{Block, BlockNr};
use crate::pdata::btree::node::{NodeRef, INTERNAL_NODE, LEAF_NODE};
use crate::pdata::checksum::{classify, BlockKind};
use crate::pdata::io::BlockDevice;
use crate::thin::device_details::{DeviceDetails, DETAILS_VALUE_SIZE};
use crate::thin::mapping::BlockTime;
use crate::thin::superblock::Superblock;

/// Blocks per sequential read (1 MiB).
const RUN: usize = 256;

/// A u64-valued leaf (mapping leaf or top-level leaf).
#[derive(Clone, Debug, Default)]
pub struct U64Leaf {
    /// Entries.
    pub nr: u32,
    /// First key.
    pub first_key: u64,
    /// Last key.
    pub last_key: u64,
    /// Highest data block, read as a mapping leaf.
    pub max_data: u64,
    /// Highest time, read as a mapping leaf.
    pub age: u32,
    /// time -> count, read as a mapping leaf (few distinct times per leaf).
    pub times: Vec<(u32, u32)>,
    /// (key, value) pairs when every value is a possible block number.
    pub small_values: Option<Vec<(u64, u64)>>,
}

/// A device details leaf.
#[derive(Clone, Debug, Default)]
pub struct DetailsLeaf {
    /// (device id, details).
    pub entries: Vec<(u64, DeviceDetails)>,
}

/// What a node block held.
#[derive(Clone, Debug)]
pub enum ScannedNode {
    /// An internal node: (key, child) pairs.
    Internal(Vec<(u64, BlockNr)>),
    /// A leaf with u64 values.
    U64(U64Leaf),
    /// A device details leaf.
    Details(DetailsLeaf),
}

/// Everything the scan found.
#[derive(Default)]
pub struct ScanResult {
    /// Node blocks by location.
    pub nodes: HashMap<BlockNr, ScannedNode>,
    /// Superblock copies (checksum valid, blocknr = location) other than block 0.
    pub snapshots: Vec<(BlockNr, Superblock)>,
    /// Blocks whose read failed.
    pub io_errors: Vec<BlockNr>,
}

fn decode_u64_leaf(node: &NodeRef, nr_blocks: u64) -> U64Leaf {
    let n = node.len();
    let mut leaf = U64Leaf {
        nr: node.nr_entries(),
        first_key: if n > 0 { node.key(0) } else { 0 },
        last_key: if n > 0 { node.key(n - 1) } else { 0 },
        ..U64Leaf::default()
    };
    let mut small = n > 0;
    for i in 0..n {
        let v = node.value_u64(i);
        if v > nr_blocks {
            small = false;
        }
        let bt = BlockTime::unpack(v);
        leaf.max_data = leaf.max_data.max(bt.block);
        leaf.age = leaf.age.max(bt.time);
        match leaf.times.iter_mut().find(|(t, _)| *t == bt.time) {
            Some(e) => e.1 += 1,
            None => leaf.times.push((bt.time, 1)),
        }
    }
    if small {
        leaf.small_values = Some((0..n).map(|i| (node.key(i), node.value_u64(i))).collect());
    }
    leaf
}

/// Decodes one block if it is a btree node we understand.
fn decode(block: &Block, loc: BlockNr, nr_blocks: u64) -> Option<ScannedNode> {
    let flags = u32::from_le_bytes(block.0[4..8].try_into().ok()?);
    let vs = u32::from_le_bytes(block.0[24..28].try_into().ok()?);
    let node = match (flags, vs) {
        (INTERNAL_NODE, 8) | (LEAF_NODE, 8) => NodeRef::parse(&block.0, loc, 8).ok()?,
        (LEAF_NODE, DETAILS_VALUE_SIZE) => {
            NodeRef::parse(&block.0, loc, DETAILS_VALUE_SIZE).ok()?
        }
        _ => return None,
    };
    if !node.is_leaf() {
        if node.is_empty() {
            return None;
        }
        let links = (0..node.len())
            .map(|i| (node.key(i), node.value_u64(i)))
            .collect();
        return Some(ScannedNode::Internal(links));
    }
    if vs == 8 {
        return Some(ScannedNode::U64(decode_u64_leaf(&node, nr_blocks)));
    }
    let entries = node
        .keys()
        .iter()
        .zip(node.value_bytes().chunks_exact(DETAILS_VALUE_SIZE as usize))
        .map(|(k, v)| (k.get(), DeviceDetails::from_bytes(v)))
        .collect();
    Some(ScannedNode::Details(DetailsLeaf { entries }))
}

/// Reads every block of `dev` and keeps the node summaries.
#[must_use]
pub fn scan(dev: &dyn BlockDevice) -> ScanResult {
    let nr_blocks = dev.nr_blocks();
    let mut out = ScanResult::default();
    let mut buf = Block::zeroed_vec(RUN);
    let mut first = 0u64;
    while first < nr_blocks {
        let n = usize::try_from((nr_blocks - first).min(RUN as u64)).unwrap_or(RUN);
        let ok = dev.read_run(first, &mut buf[..n]).is_ok();
        for (i, b) in buf[..n].iter_mut().enumerate() {
            let loc = first + i as u64;
            if !ok && dev.read_at(loc, b).is_err() {
                out.io_errors.push(loc);
                continue;
            }
            match classify(&b.0) {
                Some(BlockKind::Node) => {
                    if let Some(node) = decode(b, loc, nr_blocks) {
                        out.nodes.insert(loc, node);
                    }
                }
                Some(BlockKind::Superblock) if loc != 0 => {
                    let sb = Superblock::from_bytes(&b.0);
                    if sb.blocknr == loc {
                        out.snapshots.push((loc, sb));
                    }
                }
                _ => {}
            }
        }
        first += n as u64;
    }
    out
}
