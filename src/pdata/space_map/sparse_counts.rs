//! Reference counts for a writer: four bits per block in chunks of an eighth
//! of a bitmap (2040 entries), allocated only where a block is counted, with
//! an overflow table for counts of 15 and more.
//!
//! Memory follows the range of blocks actually touched (1020 bytes per touched
//! 2040-block region), never the number of references: a data block shared by
//! a few snapshots costs nothing extra, and only blocks referenced 15 times or
//! more take an overflow entry.

use rustc_hash::FxHashMap as HashMap;

use crate::pdata::space_map::ENTRIES_PER_BITMAP;
use crate::pdata::to_index;

/// Chunks per bitmap.
const CHUNKS_PER_BITMAP: u64 = 8;
/// Entries per chunk.
const CHUNK_ENTRIES: u64 = ENTRIES_PER_BITMAP / CHUNKS_PER_BITMAP;
/// Bytes per chunk: 2040 four-bit counters.
const CHUNK_BYTES: usize = (CHUNK_ENTRIES as usize) / 2;
/// Nibble value meaning "look in the overflow table".
const OVERFLOW: u8 = 15;

type Chunk = Box<[u8; CHUNK_BYTES]>;

/// Sparse reference counts over `0..nr_blocks`.
pub struct CountMap {
    nr_blocks: u64,
    slots: HashMap<u64, usize>,
    chunks: Vec<(u64, Chunk)>,
    overflow: HashMap<u64, u32>,
    last: Option<(u64, usize)>,
}

/// Error of a count update outside the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("block {0} is beyond the end of the space map")]
pub struct OutOfRange(pub u64);

impl CountMap {
    /// All-zero counts for `nr_blocks` blocks.
    #[must_use]
    pub fn new(nr_blocks: u64) -> CountMap {
        CountMap {
            nr_blocks,
            slots: HashMap::default(),
            chunks: Vec::new(),
            overflow: HashMap::default(),
            last: None,
        }
    }

    /// Number of blocks counted.
    #[must_use]
    pub fn nr_blocks(&self) -> u64 {
        self.nr_blocks
    }

    #[inline]
    fn slot(&mut self, chunk: u64) -> usize {
        match self.last {
            Some((c, s)) if c == chunk => s,
            _ => self.slot_lookup(chunk),
        }
    }

    fn slot_lookup(&mut self, chunk: u64) -> usize {
        let s = match self.slots.get(&chunk) {
            Some(&s) => s,
            None => {
                let s = self.chunks.len();
                self.chunks.push((chunk, Box::new([0u8; CHUNK_BYTES])));
                self.slots.insert(chunk, s);
                s
            }
        };
        self.last = Some((chunk, s));
        s
    }

    fn nibble(bytes: &[u8; CHUNK_BYTES], i: usize) -> u8 {
        (bytes[i / 2] >> ((i % 2) * 4)) & 0xf
    }

    fn set_nibble(bytes: &mut [u8; CHUNK_BYTES], i: usize, v: u8) {
        let sh = (i % 2) * 4;
        bytes[i / 2] = (bytes[i / 2] & !(0xf << sh)) | (v << sh);
    }

    /// Count of block `b` (0 when never counted or out of range).
    #[must_use]
    pub fn get(&self, b: u64) -> u32 {
        let Some(&s) = self.slots.get(&(b / CHUNK_ENTRIES)) else {
            return 0;
        };
        self.get_in(s, b)
    }

    fn get_in(&self, s: usize, b: u64) -> u32 {
        let i = to_index(b % CHUNK_ENTRIES);
        match Self::nibble(&self.chunks[s].1, i) {
            OVERFLOW => self
                .overflow
                .get(&b)
                .copied()
                .unwrap_or(u32::from(OVERFLOW)),
            v => u32::from(v),
        }
    }

    /// Adds one to block `b`.
    ///
    /// # Errors
    /// `OutOfRange` when `b >= nr_blocks`.
    pub fn inc(&mut self, b: u64) -> Result<(), OutOfRange> {
        self.inc_range(b, 1)
    }

    /// Adds one to each of the `len` blocks from `b`.
    ///
    /// # Errors
    /// `OutOfRange` when the range passes `nr_blocks`.
    pub fn inc_range(&mut self, b: u64, len: u64) -> Result<(), OutOfRange> {
        match b.checked_add(len) {
            Some(end) if end <= self.nr_blocks => {}
            _ => return Err(OutOfRange(b.saturating_add(len).saturating_sub(1))),
        }
        let mut cur = b;
        let end = b + len;
        while cur < end {
            let chunk = cur / CHUNK_ENTRIES;
            let chunk_end = ((chunk + 1) * CHUNK_ENTRIES).min(end);
            let s = self.slot(chunk);
            let mut blk = cur;
            while blk < chunk_end {
                let i = to_index(blk % CHUNK_ENTRIES);
                // Two counters of one byte, both below 14: one add (the common case).
                let byte = &mut self.chunks[s].1[i / 2];
                if i.is_multiple_of(2)
                    && blk + 1 < chunk_end
                    && *byte & 0x0e != 0x0e
                    && *byte & 0xe0 != 0xe0
                {
                    *byte += 0x11;
                    blk += 2;
                    continue;
                }
                let v = Self::nibble(&self.chunks[s].1, i);
                if v < OVERFLOW - 1 {
                    Self::set_nibble(&mut self.chunks[s].1, i, v + 1);
                } else if v == OVERFLOW - 1 {
                    Self::set_nibble(&mut self.chunks[s].1, i, OVERFLOW);
                    self.overflow.insert(blk, u32::from(OVERFLOW));
                } else {
                    *self.overflow.entry(blk).or_insert(u32::from(OVERFLOW)) += 1;
                }
                blk += 1;
            }
            cur = chunk_end;
        }
        Ok(())
    }

    /// Removes one from block `b` (no change when already 0).
    pub fn dec(&mut self, b: u64) {
        if b >= self.nr_blocks || !self.slots.contains_key(&(b / CHUNK_ENTRIES)) {
            return;
        }
        let s = self.slot(b / CHUNK_ENTRIES);
        let i = to_index(b % CHUNK_ENTRIES);
        match Self::nibble(&self.chunks[s].1, i) {
            0 => {}
            OVERFLOW => {
                let c = self
                    .overflow
                    .get(&b)
                    .copied()
                    .unwrap_or(u32::from(OVERFLOW));
                if c <= u32::from(OVERFLOW) {
                    self.overflow.remove(&b);
                    Self::set_nibble(&mut self.chunks[s].1, i, OVERFLOW - 1);
                } else {
                    self.overflow.insert(b, c - 1);
                }
            }
            v => Self::set_nibble(&mut self.chunks[s].1, i, v - 1),
        }
    }

    /// The counts of bitmap `index` (entries `index * 16320 ..`), or `None`
    /// when no block in it was ever counted.
    #[must_use]
    pub fn bitmap(&self, index: u64) -> Option<BitmapCounts<'_>> {
        let first = index * CHUNKS_PER_BITMAP;
        let slots: [Option<usize>; CHUNKS_PER_BITMAP as usize] =
            std::array::from_fn(|k| self.slots.get(&(first + k as u64)).copied());
        slots.iter().any(Option::is_some).then_some(BitmapCounts {
            map: self,
            slots,
            base: index * ENTRIES_PER_BITMAP,
        })
    }
}

/// Read access to one bitmap's worth of counts.
pub struct BitmapCounts<'a> {
    map: &'a CountMap,
    slots: [Option<usize>; CHUNKS_PER_BITMAP as usize],
    base: u64,
}

impl BitmapCounts<'_> {
    /// Count of entry `i` (0..16320) of this bitmap.
    #[must_use]
    pub fn get(&self, i: usize) -> u32 {
        match self.slots[i / CHUNK_ENTRIES as usize] {
            Some(s) => self.map.get_in(s, self.base + i as u64),
            None => 0,
        }
    }

    /// The raw four-bit value of entry `i` (15 = overflow).
    #[must_use]
    pub fn small(&self, i: usize) -> u8 {
        match self.slots[i / CHUNK_ENTRIES as usize] {
            Some(s) => CountMap::nibble(&self.map.chunks[s].1, i % CHUNK_ENTRIES as usize),
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_grow_past_the_nibble_and_shrink_back() {
        let mut c = CountMap::new(100_000);
        for _ in 0..20 {
            c.inc(40_000).unwrap();
        }
        assert_eq!(c.get(40_000), 20);
        for _ in 0..6 {
            c.dec(40_000);
        }
        assert_eq!(c.get(40_000), 14);
        c.dec(40_000);
        assert_eq!(c.get(40_000), 13);
        assert_eq!(c.get(40_001), 0);
        assert!(c.inc(100_000).is_err());
        assert!(c.inc_range(99_999, 2).is_err());
    }

    /// Ranges of every parity, repeated past the nibble limit, count each
    /// block exactly as single increments do (the two-at-a-time path).
    #[test]
    fn ranges_count_as_single_increments() {
        let mut ranged = CountMap::new(10_000);
        let mut single = CountMap::new(10_000);
        for round in 0..20u64 {
            let (b, len) = (4077 + round % 3, 7 + round % 4);
            ranged.inc_range(b, len).unwrap();
            for blk in b..b + len {
                single.inc(blk).unwrap();
            }
        }
        for blk in 4070..4100 {
            assert_eq!(ranged.get(blk), single.get(blk), "block {blk}");
        }
        assert_eq!(ranged.get(4080), 20);
    }

    #[test]
    fn sparse_chunks_inside_one_bitmap() {
        let mut c = CountMap::new(40_000);
        c.inc_range(2039, 2).unwrap();
        c.inc(16_319).unwrap();
        c.inc(16_319).unwrap();
        let bm = c.bitmap(0).unwrap();
        assert_eq!(
            (bm.get(2038), bm.get(2039), bm.get(2040), bm.get(2041)),
            (0, 1, 1, 0)
        );
        assert_eq!((bm.get(5000), bm.small(16_319)), (0, 2));
        assert_eq!(c.chunks.len(), 3);
    }

    #[test]
    fn ranges_cross_bitmaps() {
        let mut c = CountMap::new(50_000);
        c.inc_range(16_000, 1000).unwrap();
        c.inc_range(16_319, 2).unwrap();
        assert_eq!(c.get(15_999), 0);
        assert_eq!(c.get(16_000), 1);
        assert_eq!(c.get(16_319), 2);
        assert_eq!(c.get(16_320), 2);
        assert_eq!(c.get(16_999), 1);
        assert_eq!(c.get(17_000), 0);
        assert!(c.bitmap(0).is_some() && c.bitmap(1).is_some() && c.bitmap(2).is_none());
        assert_eq!(c.bitmap(1).unwrap().get(0), 2);
    }
}
