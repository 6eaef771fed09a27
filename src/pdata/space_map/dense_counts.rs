//! In-memory reference counters indexed by block number: two bits per block
//! while counts stay at or below 2, widened per region of [`REGION`] blocks to
//! one extra byte per block where some count reaches 3, with a table for the
//! rare counts above 257.
//!
//! Value of block `b`: the 2-bit field (0..=2), or, when it is 3, `3 + extra`
//! where `extra` is the region byte (0..=254); a byte of 255 means the full
//! count is in the overflow table.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::pdata::{low_u32, to_index};

/// Blocks per widened region.
pub const REGION: u64 = 1024;
/// Region byte meaning "see the overflow table".
const SPILLED: u8 = 255;
/// Count held by a spilled block when it spills.
const SPILL_COUNT: u32 = 3 + SPILLED as u32;

fn word_and_shift(b: u64) -> (usize, u64) {
    (to_index(b / 32), (b % 32) * 2)
}

fn region_and_slot(b: u64) -> (usize, usize) {
    (to_index(b / REGION), to_index(b % REGION))
}

/// Dense reference counts for `0..nr_blocks`.
pub struct RefCounts {
    bits: Vec<u64>,
    regions: Vec<Option<Box<[u8]>>>,
    overflow: HashMap<u64, u32>,
    nr_blocks: u64,
}

impl RefCounts {
    /// All-zero counts for `nr_blocks` blocks.
    #[must_use]
    pub fn new(nr_blocks: u64) -> RefCounts {
        let words = to_index(nr_blocks.div_ceil(32));
        let regions = to_index(nr_blocks.div_ceil(REGION));
        RefCounts {
            bits: vec![0; words],
            regions: (0..regions).map(|_| None).collect(),
            overflow: HashMap::new(),
            nr_blocks,
        }
    }

    /// Number of blocks counted.
    #[must_use]
    pub fn nr_blocks(&self) -> u64 {
        self.nr_blocks
    }

    /// Count of block `b` (0 for blocks out of range).
    #[must_use]
    pub fn get(&self, b: u64) -> u32 {
        if b >= self.nr_blocks {
            return 0;
        }
        let (w, shift) = word_and_shift(b);
        let v = u32::try_from((self.bits[w] >> shift) & 3).unwrap_or(3);
        if v < 3 {
            return v;
        }
        let (r, s) = region_and_slot(b);
        match self.regions[r].as_ref().map_or(0, |x| x[s]) {
            SPILLED => self.overflow.get(&b).copied().unwrap_or(SPILL_COUNT),
            extra => 3 + u32::from(extra),
        }
    }

    /// Adds one to block `b`; returns false when `b` is out of range.
    pub fn inc(&mut self, b: u64) -> bool {
        let c = self.get(b);
        if b >= self.nr_blocks {
            return false;
        }
        self.set(b, c.saturating_add(1));
        true
    }

    /// Sets block `b` to `count`.
    pub fn set(&mut self, b: u64, count: u32) {
        if b >= self.nr_blocks {
            return;
        }
        let (w, shift) = word_and_shift(b);
        self.bits[w] &= !(3 << shift);
        self.bits[w] |= u64::from(count.min(3)) << shift;
        let (r, s) = region_and_slot(b);
        if count >= 3 {
            let region = self.regions[r].get_or_insert_with(|| vec![0u8; REGION as usize].into());
            let extra = count - 3;
            if extra >= u32::from(SPILLED) {
                region[s] = SPILLED;
                self.overflow.insert(b, count);
            } else {
                // Exact: this branch has extra < SPILLED (255).
                region[s] = extra.to_le_bytes()[0];
                self.overflow.remove(&b);
            }
        } else if let Some(region) = self.regions[r].as_mut() {
            if region[s] == SPILLED {
                self.overflow.remove(&b);
            }
            region[s] = 0;
        }
    }

    /// The packed 2-bit counts, 32 blocks per word, block `32 * i + k` at bits
    /// `2k..2k+2` (value 3 = see [`RefCounts::get`]).
    #[must_use]
    pub fn words(&self) -> &[u64] {
        &self.bits
    }

    /// Number of blocks with a non-zero count.
    #[must_use]
    pub fn nr_allocated(&self) -> u64 {
        let mut n = 0u64;
        for &w in &self.bits {
            // A pair is non-zero when either of its bits is set.
            let nz = (w | (w >> 1)) & 0x5555_5555_5555_5555;
            n += u64::from(nz.count_ones());
        }
        n
    }
}

/// Read access to finished counts, as the space-map comparison needs it.
pub trait CountSource {
    /// Count of block `b` (0 out of range).
    fn count(&self, b: u64) -> u32;
    /// Blocks `32 * i .. 32 * i + 32` as 2-bit fields `min(count, 3)`, block
    /// `32 * i + k` at bits `2k..2k+2` (0 past the end).
    fn word2(&self, i: usize) -> u64;
}

impl CountSource for RefCounts {
    fn count(&self, b: u64) -> u32 {
        self.get(b)
    }
    fn word2(&self, i: usize) -> u64 {
        self.bits.get(i).copied().unwrap_or(0)
    }
}

/// Low bit of every 4-bit field.
const NIBBLES: u64 = 0x1111_1111_1111_1111;
/// Field value meaning "see the overflow table".
const NIBBLE_SPILLED: u64 = 15;

/// Reference counts that several threads increment at once (the data counts
/// of a parallel mapping walk): four bits per block (half a byte), counts of
/// 15 and more in a table. Leaves of sequential mappings update a whole word
/// with one atomic operation while its counts stay below 8.
pub struct SharedCounts {
    nibbles: Vec<AtomicU64>,
    overflow: Mutex<HashMap<u64, u32>>,
    nr_blocks: u64,
}

fn nibble_pos(b: u64) -> (usize, u64) {
    (to_index(b / 16), (b % 16) * 4)
}

impl SharedCounts {
    /// All-zero counts for `nr_blocks` blocks.
    #[must_use]
    pub fn new(nr_blocks: u64) -> SharedCounts {
        let words = to_index(nr_blocks.div_ceil(16));
        SharedCounts {
            nibbles: (0..words).map(|_| AtomicU64::new(0)).collect(),
            overflow: Mutex::new(HashMap::new()),
            nr_blocks,
        }
    }

    /// Adds one to block `b`; returns false when `b` is out of range.
    pub fn inc(&self, b: u64) -> bool {
        if b >= self.nr_blocks {
            return false;
        }
        let (w, shift) = nibble_pos(b);
        let cell = &self.nibbles[w];
        let mut cur = cell.load(Ordering::Relaxed);
        loop {
            let v = (cur >> shift) & 15;
            if v == NIBBLE_SPILLED {
                self.spill(b, 1);
                return true;
            }
            match cell.compare_exchange_weak(
                cur,
                cur + (1 << shift),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if v + 1 == NIBBLE_SPILLED {
                        // The full count now lives in the table; a concurrent
                        // increment may already have created the entry.
                        self.spill(b, 0);
                    }
                    return true;
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Adds one to each block of `blocks` (blocks out of range are skipped).
    pub fn inc_all<I: IntoIterator<Item = u64>>(&self, blocks: I) {
        let mut word = usize::MAX;
        let mut add = 0u64;
        for b in blocks {
            if b >= self.nr_blocks {
                continue;
            }
            let (w, shift) = nibble_pos(b);
            if w != word || (add >> shift) & 15 != 0 {
                self.add_to_word(word, add);
                word = w;
                add = 0;
            }
            add |= 1 << shift;
        }
        self.add_to_word(word, add);
    }

    /// Adds `add` (a 1 in the low bit of some fields) to word `w`.
    fn add_to_word(&self, w: usize, add: u64) {
        if add == 0 {
            return;
        }
        let cell = &self.nibbles[w];
        let mut cur = cell.load(Ordering::Relaxed);
        loop {
            if (cur >> 3) & add != 0 {
                // Some field is at 8 or more: one block at a time.
                let mut rest = add;
                while rest != 0 {
                    let k = u64::from(rest.trailing_zeros() / 4);
                    rest &= rest - 1;
                    self.inc(w as u64 * 16 + k);
                }
                return;
            }
            // Every field added to is below 8: no carry between fields.
            match cell.compare_exchange_weak(cur, cur + add, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }

    fn spill(&self, b: u64, by: u32) {
        let mut o = self
            .overflow
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let e = o.entry(b).or_insert(15);
        *e = e.saturating_add(by);
    }

    /// The final counts.
    #[must_use]
    pub fn freeze(self) -> FrozenCounts {
        FrozenCounts {
            nibbles: self
                .nibbles
                .into_iter()
                .map(AtomicU64::into_inner)
                .collect(),
            overflow: self
                .overflow
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            nr_blocks: self.nr_blocks,
        }
    }
}

/// The finished counts of a [`SharedCounts`].
pub struct FrozenCounts {
    nibbles: Vec<u64>,
    overflow: HashMap<u64, u32>,
    nr_blocks: u64,
}

impl FrozenCounts {
    /// Number of blocks counted.
    #[must_use]
    pub fn nr_blocks(&self) -> u64 {
        self.nr_blocks
    }

    /// Count of block `b` (0 out of range).
    #[must_use]
    pub fn get(&self, b: u64) -> u32 {
        if b >= self.nr_blocks {
            return 0;
        }
        let (w, shift) = nibble_pos(b);
        match (self.nibbles[w] >> shift) & 15 {
            NIBBLE_SPILLED => self.overflow.get(&b).copied().unwrap_or(15),
            v => low_u32(v),
        }
    }
}

/// Sixteen 4-bit counts to sixteen 2-bit fields `min(count, 3)` (low 32 bits).
fn squeeze(n: u64) -> u64 {
    let sat = ((n >> 2) | (n >> 3)) & NIBBLES;
    let lo = (n | sat) & NIBBLES;
    let hi = ((n >> 1) | sat) & NIBBLES;
    let mut x = lo | (hi << 1);
    x = (x | (x >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x >> 4)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF;
    (x | (x >> 16)) & 0xFFFF_FFFF
}

impl CountSource for FrozenCounts {
    fn count(&self, b: u64) -> u32 {
        self.get(b)
    }
    fn word2(&self, i: usize) -> u64 {
        let lo = self.nibbles.get(2 * i).copied().unwrap_or(0);
        let hi = self.nibbles.get(2 * i + 1).copied().unwrap_or(0);
        squeeze(lo) | (squeeze(hi) << 32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_counts_agree_with_serial_counts() {
        use rayon::prelude::*;
        // Counts up to 600 cross both the region byte and the overflow table.
        let blocks: Vec<u64> = (0..300_000u64).map(|i| (i * 7919) % 500).collect();
        let shared = SharedCounts::new(5000);
        blocks.par_chunks(7).enumerate().for_each(|(i, c)| {
            if i % 2 == 0 {
                shared.inc_all(c.iter().copied());
            } else {
                c.iter().for_each(|&b| {
                    shared.inc(b);
                });
            }
        });
        shared.inc_all([40, 41, 41, 41, 42, 5000]);
        assert!(!shared.inc(5000));
        let mut serial = RefCounts::new(5000);
        for &b in blocks.iter().chain(&[40, 41, 41, 41, 42]) {
            serial.inc(b);
        }
        let got = shared.freeze();
        for b in 0..5000 {
            assert_eq!(got.get(b), serial.get(b), "block {b}");
        }
        assert_eq!(got.get(7), 600);
        for i in 0..serial.words().len() {
            assert_eq!(got.word2(i), serial.word2(i), "word {i}");
        }
    }

    #[test]
    fn every_small_count_squeezes_to_two_bits() {
        let shared = SharedCounts::new(64);
        let mut serial = RefCounts::new(64);
        for b in 0..64u64 {
            for _ in 0..(b % 17) {
                shared.inc(b);
                serial.inc(b);
            }
        }
        let got = shared.freeze();
        assert_eq!(got.word2(0), serial.word2(0));
        assert_eq!(got.word2(1), serial.word2(1));
        assert_eq!(got.get(16), 16);
    }

    #[test]
    fn counts_widen_past_two() {
        let mut c = RefCounts::new(3000);
        for _ in 0..5 {
            c.inc(7);
        }
        for _ in 0..300 {
            c.inc(2048);
        }
        c.inc(8);
        assert_eq!(c.get(7), 5);
        assert_eq!(c.get(2048), 300);
        assert_eq!(c.get(8), 1);
        assert_eq!(c.get(9), 0);
        assert_eq!(c.nr_allocated(), 3);
        assert!(!c.inc(3000));
        c.set(7, 0);
        c.set(2048, 2);
        assert_eq!(c.get(7), 0);
        assert_eq!(c.get(2048), 2);
        assert_eq!(c.nr_allocated(), 2);
    }
}
