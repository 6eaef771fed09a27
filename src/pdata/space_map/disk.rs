//! On-disk space-map blocks: bitmaps, index entries and the metadata index block.
//!
//! Bitmap block (XOR 240779):
//! ```text
//! offset size field
//!      0    4 csum
//!      4    4 not_used (0)
//!      8    8 blocknr
//!     16 4080 510 LE u64 words = 16320 2-bit entries
//! ```
//! Entry `i` is in word `i / 32` at bits `2k` (HIGH bit) and `2k+1` (low bit),
//! `k = i % 32`: raw 01 means count 2, raw 10 means count 1, 11 means "3 or
//! more, see the ref-count tree".
//!
//! Index entry (16 bytes): `blocknr u64, nr_free u32, none_free_before u32`.
//! Metadata index block (XOR 160478): `csum u32, padding u32, blocknr u64`, then
//! 255 index entries.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::pdata::block::BLOCK_SIZE;
use crate::pdata::low_u32;
use crate::pdata::space_map::ENTRIES_PER_BITMAP;

/// Offset of the first bitmap word.
pub const BITMAP_HEADER_SIZE: usize = 16;
/// Index entries in the metadata index block.
pub const MAX_METADATA_BITMAPS: usize = 255;
/// value_size of the data-sm index tree and of index entries.
pub const INDEX_ENTRY_SIZE: u32 = 16;
/// value_size of ref-count tree leaves.
pub const REF_COUNT_VALUE_SIZE: u32 = 4;

/// One index entry.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct RawIndexEntry {
    /// Location of the bitmap.
    pub blocknr: U64,
    /// Zero entries over all 16320 slots.
    pub nr_free: U32,
    /// Lower bound on the first free entry.
    pub none_free_before: U32,
}
const _: () = assert!(std::mem::size_of::<RawIndexEntry>() == INDEX_ENTRY_SIZE as usize);

/// Decoded index entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexEntry {
    /// Location of the bitmap.
    pub blocknr: u64,
    /// Zero entries over all 16320 slots.
    pub nr_free: u32,
    /// Lower bound on the first free entry.
    pub none_free_before: u32,
}

impl IndexEntry {
    /// Decodes 16 bytes.
    #[must_use]
    pub fn from_bytes(b: &[u8]) -> IndexEntry {
        match RawIndexEntry::read_from_prefix(b) {
            Ok((r, _)) => IndexEntry {
                blocknr: r.blocknr.get(),
                nr_free: r.nr_free.get(),
                none_free_before: r.none_free_before.get(),
            },
            Err(_) => IndexEntry::default(),
        }
    }

    /// Encodes into 16 bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; 16] {
        let raw = RawIndexEntry {
            blocknr: self.blocknr.into(),
            nr_free: self.nr_free.into(),
            none_free_before: self.none_free_before.into(),
        };
        let mut out = [0u8; 16];
        out.copy_from_slice(raw.as_bytes());
        out
    }
}

/// The bitmap words of a bitmap block.
#[must_use]
pub fn bitmap_words(block: &[u8; BLOCK_SIZE]) -> &[U64] {
    <[U64]>::ref_from_bytes(&block[BITMAP_HEADER_SIZE..]).unwrap_or(&[])
}

/// Count (0..=3) of entry `i` of a bitmap.
#[must_use]
pub fn bitmap_get(block: &[u8; BLOCK_SIZE], i: usize) -> u32 {
    let word = bitmap_words(block)[i / 32].get();
    decode_pair(word, i % 32)
}

/// Decodes the 2-bit pair `k` of a word (even bit = high bit).
#[must_use]
pub fn decode_pair(word: u64, k: usize) -> u32 {
    let hi = (word >> (2 * k)) & 1;
    let lo = (word >> (2 * k + 1)) & 1;
    u32::try_from(hi * 2 + lo).unwrap_or(3)
}

/// The low bits of the 32 pairs of `x` (bits at even positions only) packed
/// into 32 bits, pair `k` at bit `k`.
#[must_use]
pub fn compress_pairs(x: u64) -> u32 {
    let mut x = x & 0x5555_5555_5555_5555;
    x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
    x = (x | (x >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x >> 4)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF;
    low_u32(x | (x >> 16))
}

/// One bit per entry of an on-disk bitmap word (entry `k` at bit `k`) whose
/// count is `count` (0..=3).
#[must_use]
pub fn entries_with_count(word: u64, count: u32) -> u32 {
    // Even bit = high bit of the count, odd bit = low bit.
    let hi = if count & 2 != 0 { word } else { !word };
    let lo = if count & 1 != 0 {
        word >> 1
    } else {
        !(word >> 1)
    };
    compress_pairs(hi & lo)
}

/// Sets entry `i` of a bitmap to `count` (values >= 3 store 3).
pub fn bitmap_set(block: &mut [u8; BLOCK_SIZE], i: usize, count: u32) {
    let off = BITMAP_HEADER_SIZE + (i / 32) * 8;
    let k = i % 32;
    let mut w = u64::from_le_bytes(block[off..off + 8].try_into().unwrap_or([0; 8]));
    let c = u64::from(count.min(3));
    w &= !(3u64 << (2 * k));
    w |= ((c >> 1) & 1) << (2 * k);
    w |= (c & 1) << (2 * k + 1);
    block[off..off + 8].copy_from_slice(&w.to_le_bytes());
}

/// The index entries of a metadata index block (all 255).
pub fn metadata_index_entries(block: &[u8; BLOCK_SIZE]) -> impl Iterator<Item = IndexEntry> + '_ {
    block[16..].chunks_exact(16).map(IndexEntry::from_bytes)
}

/// Number of entries of bitmap `index` that are real blocks of an `nr_blocks` map.
#[must_use]
pub fn entries_in_bitmap(nr_blocks: u64, index: u64) -> u64 {
    nr_blocks
        .saturating_sub(index * ENTRIES_PER_BITMAP)
        .min(ENTRIES_PER_BITMAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_order_follows_the_kernel() {
        // First byte 0x8A = entries 0..3 with counts 1, 1, 0, 1 (even bit = high bit).
        let mut b = [0u8; BLOCK_SIZE];
        b[16] = 0x8A;
        assert_eq!(
            (0..4).map(|i| bitmap_get(&b, i)).collect::<Vec<_>>(),
            vec![1, 1, 0, 1]
        );
        let mut c = [0u8; BLOCK_SIZE];
        for (i, v) in [1, 1, 0, 1].into_iter().enumerate() {
            bitmap_set(&mut c, i, v);
        }
        assert_eq!(c[16], 0x8A);
        bitmap_set(&mut c, 40, 2);
        assert_eq!(bitmap_get(&c, 40), 2);
        bitmap_set(&mut c, 40, 7);
        assert_eq!(bitmap_get(&c, 40), 3);
    }
}
