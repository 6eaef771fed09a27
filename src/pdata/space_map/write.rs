//! Writing space maps from final reference counts, after every other
//! metadata block is allocated (the maps count the blocks of each other).
//!
//! - Bitmaps carry the kernel's bit order (even bit = high bit), `blocknr` and
//!   checksum; counts of 3 or more store 3 and go to the ref-count tree.
//! - Index entries hold `nr_free` over the whole 16320-entry capacity and the
//!   exact first free entry (or the number of real entries when none is free).
//! - The data map's index is a btree keyed by bitmap number; the metadata map's
//!   index is one block of 255 entries, unused ones zero.
//! - The metadata map counts its own bitmaps, index block and ref-count tree.

use crate::pdata::block::Block;
use crate::pdata::btree::build::WriteError;
use crate::pdata::btree::build::{BtreeBuilder, NodeStore};
use crate::pdata::checksum::BlockKind;
use crate::pdata::space_map::allocator::BlockAllocator;
use crate::pdata::space_map::disk::{
    entries_in_bitmap, IndexEntry, BITMAP_HEADER_SIZE, MAX_METADATA_BITMAPS,
};
use crate::pdata::space_map::sparse_counts::CountMap;
use crate::pdata::space_map::{SmRoot, ENTRIES_PER_BITMAP};
use crate::pdata::{low_u32, to_index};

/// Words of one bitmap.
const WORDS: usize = (ENTRIES_PER_BITMAP as usize) / 32;

/// One encoded bitmap and what its index entry and ref-count tree need.
struct EncodedBitmap {
    nr_free: u32,
    none_free_before: u32,
    allocated: u64,
    /// (block, count) for counts >= 3, ascending.
    overflow: Vec<(u64, u32)>,
}

/// Fills `block` with bitmap `index` of `counts` (header left for the store).
fn encode_bitmap(counts: &CountMap, index: u64, block: &mut Block) -> EncodedBitmap {
    block.0.fill(0);
    // Every count below is of entries of one bitmap (at most
    // ENTRIES_PER_BITMAP), so `low_u32` is exact on it.
    let real = entries_in_bitmap(counts.nr_blocks(), index);
    let mut enc = EncodedBitmap {
        nr_free: low_u32(ENTRIES_PER_BITMAP),
        none_free_before: low_u32(real),
        allocated: 0,
        overflow: Vec::new(),
    };
    let Some(bm) = counts.bitmap(index) else {
        if real > 0 {
            enc.none_free_before = 0;
        }
        return enc;
    };
    let mut first_free = None;
    let base = index * ENTRIES_PER_BITMAP;
    for w in 0..WORDS {
        let mut word = 0u64;
        for k in 0..32 {
            let i = w * 32 + k;
            let small = bm.small(i);
            if small == 0 {
                if first_free.is_none() {
                    first_free = Some(i);
                }
                continue;
            }
            enc.allocated += 1;
            let c = if small >= 3 {
                enc.overflow.push((base + i as u64, bm.get(i)));
                3u64
            } else {
                u64::from(small)
            };
            // Even bit = high bit of the count, odd bit = low bit.
            word |= ((c >> 1) & 1) << (2 * k);
            word |= (c & 1) << (2 * k + 1);
        }
        let o = BITMAP_HEADER_SIZE + 8 * w;
        block.0[o..o + 8].copy_from_slice(&word.to_le_bytes());
    }
    enc.nr_free = low_u32(ENTRIES_PER_BITMAP - enc.allocated);
    enc.none_free_before = low_u32(first_free.map_or(real, |i| i as u64).min(real));
    enc
}

/// Writes the data space map for `counts` (its `nr_blocks` is the data
/// device size): bitmaps, the index btree and the ref-count tree. The
/// returned roots are not yet referenced: the superblock that names them must
/// add one reference each.
///
/// # Errors
/// Out of metadata space, output I/O.
pub fn write_data_sm(w: &mut BlockAllocator, counts: &CountMap) -> Result<SmRoot, WriteError> {
    let nr_bitmaps = counts.nr_blocks().div_ceil(ENTRIES_PER_BITMAP);
    let mut index = BtreeBuilder::new(16);
    let mut refs = BtreeBuilder::new(4);
    let mut block = Block::zeroed();
    let mut allocated = 0u64;
    for i in 0..nr_bitmaps {
        let enc = encode_bitmap(counts, i, &mut block);
        let loc = w.append(&mut block, BlockKind::Bitmap)?;
        w.inc_ref(loc);
        allocated += enc.allocated;
        let entry = IndexEntry {
            blocknr: loc,
            nr_free: enc.nr_free,
            none_free_before: enc.none_free_before,
        };
        index.push_value(w, i, &entry.to_bytes())?;
        for (b, c) in enc.overflow {
            refs.push_value(w, b, &c.to_le_bytes())?;
        }
    }
    let bitmap_root = index.finish(w)?;
    let ref_count_root = refs.finish(w)?;
    Ok(SmRoot {
        nr_blocks: counts.nr_blocks(),
        nr_allocated: allocated,
        bitmap_root,
        ref_count_root,
    })
}

/// Writes the metadata space map as the last blocks before the superblock:
/// the ref-count tree, then the bitmaps and the index block. Every reference
/// except the superblock's own block 0 must be counted before this call; the
/// roots returned are already counted as referenced by the superblock.
///
/// # Errors
/// Out of metadata space, output I/O.
pub fn write_metadata_sm(w: &mut BlockAllocator) -> Result<SmRoot, WriteError> {
    let nr_blocks = w.nr_blocks();
    let nr_bitmaps = nr_blocks.div_ceil(ENTRIES_PER_BITMAP);
    if nr_bitmaps > MAX_METADATA_BITMAPS as u64 {
        return Err(WriteError::OutOfSpace);
    }
    // Counts of 3 or more, before the ref-count tree's own nodes (count 1) exist.
    let mut big: Vec<(u64, u32)> = Vec::new();
    for b in 0..w.next_block() {
        let c = w.count(b);
        if c >= 3 {
            big.push((b, c));
        }
    }
    let mut refs = BtreeBuilder::new(4);
    for (b, c) in big {
        refs.push_value(w, b, &c.to_le_bytes())?;
    }
    let ref_count_root = refs.finish(w)?;
    w.inc_ref(ref_count_root);
    // Bitmaps at base..base+n, index block right after; count them first.
    let base = w.next_block();
    let index_loc = base + nr_bitmaps;
    if index_loc >= nr_blocks {
        return Err(WriteError::OutOfSpace);
    }
    for b in base..=index_loc {
        w.inc_ref(b);
    }
    let mut index_block = Block::zeroed();
    let mut block = Block::zeroed();
    let mut allocated = 0u64;
    for i in 0..nr_bitmaps {
        let enc = encode_bitmap(w.counts(), i, &mut block);
        let loc = w.append(&mut block, BlockKind::Bitmap)?;
        debug_assert_eq!(loc, base + i);
        allocated += enc.allocated;
        let entry = IndexEntry {
            blocknr: loc,
            nr_free: enc.nr_free,
            none_free_before: enc.none_free_before,
        };
        let o = 16 + 16 * to_index(i);
        index_block.0[o..o + 16].copy_from_slice(&entry.to_bytes());
    }
    let loc = w.append(&mut index_block, BlockKind::Index)?;
    debug_assert_eq!(loc, index_loc);
    Ok(SmRoot {
        nr_blocks,
        nr_allocated: allocated,
        bitmap_root: index_loc,
        ref_count_root,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdata::space_map::disk::bitmap_get;

    #[test]
    fn bitmap_encoding_follows_the_kernel() {
        let mut c = CountMap::new(1000);
        c.inc(0).unwrap();
        c.inc(1).unwrap();
        c.inc(3).unwrap();
        for _ in 0..5 {
            c.inc(4).unwrap();
        }
        c.inc_range(5, 2).unwrap();
        c.inc(5).unwrap();
        let mut b = Block::zeroed();
        let enc = encode_bitmap(&c, 0, &mut b);
        assert_eq!(b.0[16], 0x8A, "entries 0..3 = 1, 1, 0, 1");
        assert_eq!(bitmap_get(&b.0, 4), 3);
        assert_eq!(bitmap_get(&b.0, 5), 2);
        assert_eq!(bitmap_get(&b.0, 6), 1);
        assert_eq!(enc.allocated, 6);
        assert_eq!(enc.nr_free, 16320 - 6);
        assert_eq!(enc.none_free_before, 2);
        assert_eq!(enc.overflow, vec![(4, 5)]);
    }

    #[test]
    fn a_full_last_bitmap_reports_its_real_size() {
        let mut c = CountMap::new(100);
        c.inc_range(0, 100).unwrap();
        let mut b = Block::zeroed();
        let enc = encode_bitmap(&c, 0, &mut b);
        assert_eq!(enc.none_free_before, 100);
        assert_eq!(enc.nr_free, 16220);
        let empty = CountMap::new(100);
        let enc = encode_bitmap(&empty, 0, &mut b);
        assert_eq!((enc.none_free_before, enc.nr_free), (0, 16320));
    }
}
