//! Zero-copy views of btree nodes.
//!
//! ```text
//! offset  size                 field
//!      0     4                 csum         (XOR 121107)
//!      4     4                 flags        1 = INTERNAL, 2 = LEAF
//!      8     8                 blocknr      the node's own location
//!     16     4                 nr_entries
//!     20     4                 max_entries
//!     24     4                 value_size
//!     28     4                 padding
//!     32     8 * max_entries   keys (u64)
//!      .     value_size * max_entries   values
//! ```
//! The value array starts after *all* `max_entries` key slots.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::pdata::block::{BlockNr, BLOCK_SIZE};
use crate::pdata::checksum::{self, BlockKind, ChecksumError};

/// `flags` value of an internal node.
pub const INTERNAL_NODE: u32 = 1;
/// `flags` value of a leaf node.
pub const LEAF_NODE: u32 = 2;
/// Size of the node header.
pub const NODE_HEADER_SIZE: usize = 32;

/// The on-disk node header.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct NodeHeader {
    /// Checksum.
    pub csum: U32,
    /// 1 = internal, 2 = leaf.
    pub flags: U32,
    /// Own location.
    pub blocknr: U64,
    /// Entries in use.
    pub nr_entries: U32,
    /// Capacity.
    pub max_entries: U32,
    /// Bytes per value.
    pub value_size: U32,
    /// Zero.
    pub padding: U32,
}
const _: () = assert!(std::mem::size_of::<NodeHeader>() == NODE_HEADER_SIZE);

/// `max_entries` of a new node whose values are `value_size` bytes.
#[must_use]
pub const fn max_entries_for(value_size: usize) -> usize {
    (BLOCK_SIZE - NODE_HEADER_SIZE) / (8 + value_size) / 3 * 3
}

/// A count within one node (entries, bytes of a value) as the `u32` of a
/// node header. Clamped to the block size, below which every such count is,
/// so the conversion is exact.
#[must_use]
pub const fn node_u32(n: usize) -> u32 {
    let n = if n < BLOCK_SIZE { n } else { BLOCK_SIZE };
    crate::pdata::low_u32(n as u64)
}

/// What is wrong with a node, worded as thin_check reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NodeErrorKind {
    /// Read failure.
    #[error("io error")]
    Io,
    /// Bad checksum.
    #[error("checksum error")]
    Checksum,
    /// Valid checksum of another block type.
    #[error("not a btree node")]
    NotANode,
    /// flags neither 1 nor 2.
    #[error("bad node flags")]
    BadFlags,
    /// Unexpected value size.
    #[error("value_size mismatch")]
    ValueSize,
    /// Entries do not fit in the block.
    #[error("max_entries is too large")]
    MaxEntriesTooLarge,
    /// More entries than capacity.
    #[error("nr_entries > max_entries")]
    TooManyEntries,
    /// Non-fatal class.
    #[error("max_entries is not divisible by 3")]
    MaxEntriesNotDivisibleBy3,
    /// Non-fatal class for non-root internal nodes.
    #[error("nr_entries < max_entries / 3")]
    Underfull,
    /// Keys not strictly increasing.
    #[error("keys out of order")]
    KeysOutOfOrder,
    /// blocknr differs from the location.
    #[error("blocknr mismatch")]
    BlocknrMismatch,
    /// Internal node with no entries.
    #[error("internal node with no entries")]
    EmptyInternal,
    /// A child's keys lie outside the parent's range.
    #[error("key out of parent range")]
    KeyRange,
    /// Leaves at different depths.
    #[error("unbalanced tree")]
    Unbalanced,
    /// Deeper than any real tree, or a cycle.
    #[error("tree too deep")]
    TooDeep,
    /// Leaf value out of bounds (data block beyond the data device).
    #[error("value out of bounds")]
    ValueOutOfBounds,
}

impl NodeErrorKind {
    /// Findings that fail a check only without `--ignore-non-fatal-errors`.
    #[must_use]
    pub fn is_non_fatal(self) -> bool {
        matches!(
            self,
            NodeErrorKind::MaxEntriesNotDivisibleBy3 | NodeErrorKind::Underfull
        )
    }
}

/// A node error with the block it was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("node error: {kind} at block {block}")]
pub struct NodeError {
    /// Block number of the node.
    pub block: BlockNr,
    /// What was wrong.
    pub kind: NodeErrorKind,
}

/// What a reader expects of a node beyond the header invariants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeExpect {
    /// value_size of the tree's leaves.
    pub leaf_value_size: u32,
    /// Whether the node is a root (exempt from the minimum fill rule).
    pub position: NodePosition,
}

/// Root or not, for the minimum-fill rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodePosition {
    /// The tree's root.
    Root,
    /// Any other node.
    NonRoot,
}

/// A validated, borrowed view of a btree node.
#[derive(Clone, Copy)]
pub struct NodeRef<'a> {
    header: &'a NodeHeader,
    keys: &'a [U64],
    values: &'a [u8],
}

impl<'a> NodeRef<'a> {
    /// Checks the checksum, then the header (flags and value size, entries
    /// that fit the block, keys in ascending order, block number) and returns
    /// a view. The non-fatal rules (`% 3`, underfull) are left to
    /// [`NodeRef::non_fatal_issue`].
    ///
    /// # Errors
    /// The first rule the node breaks.
    pub fn new(
        block: &'a [u8; BLOCK_SIZE],
        location: BlockNr,
        leaf_value_size: u32,
    ) -> Result<Self, NodeError> {
        let err = |kind| NodeError {
            block: location,
            kind,
        };
        match checksum::verify(block, BlockKind::Node) {
            Ok(()) => {}
            Err(ChecksumError::Mismatch { .. }) => return Err(err(NodeErrorKind::Checksum)),
            Err(ChecksumError::WrongKind { .. }) => return Err(err(NodeErrorKind::NotANode)),
        }
        Self::parse(block, location, leaf_value_size)
    }

    /// As [`NodeRef::new`] without the checksum test (for tests and repair scans
    /// that already classified the block).
    ///
    /// # Errors
    /// The first header rule the node breaks.
    pub fn parse(
        block: &'a [u8; BLOCK_SIZE],
        location: BlockNr,
        leaf_value_size: u32,
    ) -> Result<Self, NodeError> {
        let node = Self::view(block, location, leaf_value_size)?;
        let err = |kind| {
            Err(NodeError {
                block: location,
                kind,
            })
        };
        if node.keys.windows(2).any(|w| w[0].get() >= w[1].get()) {
            return err(NodeErrorKind::KeysOutOfOrder);
        }
        if node.header.blocknr.get() != location {
            return err(NodeErrorKind::BlocknrMismatch);
        }
        Ok(node)
    }

    /// As [`NodeRef::parse`] without reading the keys: for a block read again
    /// after a walk verified all of it, when only its values are wanted. The
    /// header rules the view's bounds rest on are still checked.
    ///
    /// # Errors
    /// The first header rule the node breaks.
    pub fn parse_rechecked(
        block: &'a [u8; BLOCK_SIZE],
        location: BlockNr,
        leaf_value_size: u32,
    ) -> Result<Self, NodeError> {
        let node = Self::view(block, location, leaf_value_size)?;
        if node.header.blocknr.get() != location {
            return Err(NodeError {
                block: location,
                kind: NodeErrorKind::BlocknrMismatch,
            });
        }
        Ok(node)
    }

    /// The header rules (flags, value size, entries that fit the block) and
    /// the view they bound; neither the keys nor `blocknr` are looked at.
    fn view(
        block: &'a [u8; BLOCK_SIZE],
        location: BlockNr,
        leaf_value_size: u32,
    ) -> Result<Self, NodeError> {
        let err = |kind| {
            Err(NodeError {
                block: location,
                kind,
            })
        };
        let (header, _) = NodeHeader::ref_from_prefix(block).map_err(|_| NodeError {
            block: location,
            kind: NodeErrorKind::BadFlags,
        })?;
        let flags = header.flags.get();
        let value_size = header.value_size.get();
        match flags {
            INTERNAL_NODE if value_size != 8 => return err(NodeErrorKind::ValueSize),
            LEAF_NODE if value_size != leaf_value_size => return err(NodeErrorKind::ValueSize),
            INTERNAL_NODE | LEAF_NODE => {}
            _ => return err(NodeErrorKind::BadFlags),
        }
        let max = u64::from(header.max_entries.get());
        if (u64::from(value_size) + 8) * max + NODE_HEADER_SIZE as u64 > BLOCK_SIZE as u64 {
            return err(NodeErrorKind::MaxEntriesTooLarge);
        }
        let nr = header.nr_entries.get();
        if nr > header.max_entries.get() {
            return err(NodeErrorKind::TooManyEntries);
        }
        // Bounds proven above: everything fits in the block.
        let max = max as usize;
        let nr = nr as usize;
        let vs = value_size as usize;
        let key_bytes = &block[NODE_HEADER_SIZE..NODE_HEADER_SIZE + 8 * max];
        let keys = <[U64]>::ref_from_bytes(key_bytes).map_err(|_| NodeError {
            block: location,
            kind: NodeErrorKind::MaxEntriesTooLarge,
        })?;
        let keys = &keys[..nr];
        let vstart = NODE_HEADER_SIZE + 8 * max;
        let values = &block[vstart..vstart + vs * nr];
        Ok(NodeRef {
            header,
            keys,
            values,
        })
    }

    /// The non-fatal rule this node breaks, if any (`% 3`, then underfull for
    /// non-root internal nodes).
    #[must_use]
    pub fn non_fatal_issue(&self, position: NodePosition) -> Option<NodeErrorKind> {
        let max = self.header.max_entries.get();
        if !max.is_multiple_of(3) {
            return Some(NodeErrorKind::MaxEntriesNotDivisibleBy3);
        }
        if position == NodePosition::NonRoot && !self.is_leaf() && self.nr_entries() < max / 3 {
            return Some(NodeErrorKind::Underfull);
        }
        None
    }

    /// The raw header.
    #[must_use]
    pub fn header(&self) -> &'a NodeHeader {
        self.header
    }

    /// True for a leaf.
    #[must_use]
    pub fn is_leaf(&self) -> bool {
        self.header.flags.get() == LEAF_NODE
    }

    /// Entries in use.
    #[must_use]
    pub fn nr_entries(&self) -> u32 {
        self.header.nr_entries.get()
    }

    /// Entries in use, as a length.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when the node has no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys in use.
    #[must_use]
    pub fn keys(&self) -> &'a [U64] {
        self.keys
    }

    /// Key `i`.
    #[must_use]
    pub fn key(&self, i: usize) -> u64 {
        self.keys[i].get()
    }

    /// Bytes of the values in use (`nr_entries * value_size`).
    #[must_use]
    pub fn value_bytes(&self) -> &'a [u8] {
        self.values
    }

    /// Values as u64 (internal nodes, top-level and mapping leaves).
    /// Empty if the value size is not 8.
    #[must_use]
    pub fn values_u64(&self) -> &'a [U64] {
        <[U64]>::ref_from_bytes(self.values).unwrap_or(&[])
    }

    /// Value `i` as u64 (value size 8).
    #[must_use]
    pub fn value_u64(&self, i: usize) -> u64 {
        self.values_u64()[i].get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(keys: &[u64], loc: u64) -> [u8; BLOCK_SIZE] {
        let mut b = [0u8; BLOCK_SIZE];
        b[4..8].copy_from_slice(&LEAF_NODE.to_le_bytes());
        b[8..16].copy_from_slice(&loc.to_le_bytes());
        b[16..20].copy_from_slice(&(keys.len() as u32).to_le_bytes());
        b[20..24].copy_from_slice(&252u32.to_le_bytes());
        b[24..28].copy_from_slice(&8u32.to_le_bytes());
        for (i, k) in keys.iter().enumerate() {
            b[32 + 8 * i..40 + 8 * i].copy_from_slice(&k.to_le_bytes());
            let v = 32 + 8 * 252 + 8 * i;
            b[v..v + 8].copy_from_slice(&(k * 2).to_le_bytes());
        }
        checksum::write_checksum(&mut b, BlockKind::Node);
        b
    }

    #[test]
    fn max_entries_table() {
        assert_eq!(max_entries_for(8), 252);
        assert_eq!(max_entries_for(24), 126);
        assert_eq!(max_entries_for(16), 168);
        assert_eq!(max_entries_for(4), 336);
    }

    #[test]
    fn a_valid_leaf_parses() {
        let b = leaf(&[1, 5, 9], 7);
        let n = NodeRef::new(&b, 7, 8).unwrap();
        assert!(n.is_leaf());
        assert_eq!(n.len(), 3);
        assert_eq!(n.key(2), 9);
        assert_eq!(n.value_u64(1), 10);
    }

    #[test]
    fn each_rule_has_its_error() {
        let b = leaf(&[1, 5, 9], 7);
        let kind = |b: &[u8; BLOCK_SIZE], loc, vs| NodeRef::new(b, loc, vs).err().map(|e| e.kind);
        assert_eq!(kind(&b, 8, 8), Some(NodeErrorKind::BlocknrMismatch));
        assert_eq!(kind(&b, 7, 24), Some(NodeErrorKind::ValueSize));
        let mut c = b;
        c[100] ^= 1;
        assert_eq!(kind(&c, 7, 8), Some(NodeErrorKind::Checksum));
        let patch = |off: usize, v: u32| {
            let mut c = b;
            c[off..off + 4].copy_from_slice(&v.to_le_bytes());
            checksum::write_checksum(&mut c, BlockKind::Node);
            c
        };
        assert_eq!(kind(&patch(4, 3), 7, 8), Some(NodeErrorKind::BadFlags));
        assert_eq!(
            kind(&patch(20, 300), 7, 8),
            Some(NodeErrorKind::MaxEntriesTooLarge)
        );
        assert_eq!(
            kind(&patch(16, 253), 7, 8),
            Some(NodeErrorKind::TooManyEntries)
        );
        assert_eq!(
            kind(&leaf(&[1, 1], 7), 7, 8),
            Some(NodeErrorKind::KeysOutOfOrder)
        );
        let mut c = b;
        checksum::write_checksum(&mut c, BlockKind::Bitmap);
        assert_eq!(kind(&c, 7, 8), Some(NodeErrorKind::NotANode));
    }

    #[test]
    fn error_text_names_kind_and_block() {
        let e = NodeError {
            block: 280,
            kind: NodeErrorKind::Checksum,
        };
        assert_eq!(e.to_string(), "node error: checksum error at block 280");
    }
}
