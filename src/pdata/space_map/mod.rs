//! Reference-counting space maps: the on-disk format (`disk`, `read`,
//! `write`) and in-memory counters: `dense_counts` (two bits per block over a
//! whole device, for counting references while checking) and `sparse_counts`
//! (four bits per block, allocated only where blocks are counted, for writers
//! and their block `allocator`).
//!
//! Space-map root (first 32 bytes of each 128-byte superblock field):
//! ```text
//! offset size field
//!      0    8 nr_blocks
//!      8    8 nr_allocated
//!     16    8 bitmap_root      data: index btree root; metadata: index block
//!     24    8 ref_count_root   btree of u32 counts >= 3
//! ```

pub mod allocator;
pub mod dense_counts;
pub mod disk;
pub mod fingerprint;
pub mod read;
pub mod sparse_counts;
pub mod write;

use zerocopy::little_endian::U64;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Number of 2-bit entries in one bitmap block.
pub const ENTRIES_PER_BITMAP: u64 = 16320;

/// Largest metadata space map the format can index: the metadata index block
/// holds 255 bitmap entries of 16320 blocks each (4,161,600 blocks). The
/// kernel never uses a larger metadata device, and writers cap theirs here.
#[allow(clippy::cast_possible_truncation)]
pub const MAX_METADATA_BLOCKS: u64 = disk::MAX_METADATA_BITMAPS as u64 * ENTRIES_PER_BITMAP;

/// Size of the field that holds a space-map root (in the thin superblock):
/// the root proper, then unused bytes.
pub const SM_ROOT_SIZE: usize = 128;

/// On-disk space-map root field.
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RawSmRoot {
    nr_blocks: U64,
    nr_allocated: U64,
    bitmap_root: U64,
    ref_count_root: U64,
    unused: [u8; SM_ROOT_SIZE - 32],
}
const _: () = assert!(std::mem::size_of::<RawSmRoot>() == SM_ROOT_SIZE);

/// Decoded space-map root.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SmRoot {
    /// Blocks managed.
    pub nr_blocks: u64,
    /// Blocks with count > 0.
    pub nr_allocated: u64,
    /// Index tree root (data) or index block (metadata).
    pub bitmap_root: u64,
    /// Ref-count tree root.
    pub ref_count_root: u64,
}

impl SmRoot {
    /// Decodes a root field (its first 32 bytes; the rest is unused).
    #[must_use]
    pub fn from_bytes(bytes: &[u8; SM_ROOT_SIZE]) -> SmRoot {
        let r: RawSmRoot = zerocopy::transmute!(*bytes);
        SmRoot {
            nr_blocks: r.nr_blocks.get(),
            nr_allocated: r.nr_allocated.get(),
            bitmap_root: r.bitmap_root.get(),
            ref_count_root: r.ref_count_root.get(),
        }
    }

    /// Encodes into the first 32 bytes of `out`.
    pub fn write_into(&self, out: &mut [u8]) {
        let raw = RawSmRoot {
            nr_blocks: self.nr_blocks.into(),
            nr_allocated: self.nr_allocated.into(),
            bitmap_root: self.bitmap_root.into(),
            ref_count_root: self.ref_count_root.into(),
            unused: [0; SM_ROOT_SIZE - 32],
        };
        out[..32].copy_from_slice(&raw.as_bytes()[..32]);
    }

    /// True when every field is zero (a metadata-snapshot copy).
    #[must_use]
    pub fn is_zero(&self) -> bool {
        *self == SmRoot::default()
    }

    /// Number of bitmaps needed for `nr_blocks`.
    #[must_use]
    pub fn nr_bitmaps(&self) -> u64 {
        self.nr_blocks.div_ceil(ENTRIES_PER_BITMAP)
    }
}
