//! In-memory reference counters indexed by block number: two bits per block
//! while counts stay at or below 2, with an overflow table for larger counts.

use std::collections::HashMap;

/// Dense reference counts for `0..nr_blocks`.
pub struct RefCounts {
    bits: Vec<u64>,
    overflow: HashMap<u64, u32>,
    nr_blocks: u64,
}

impl RefCounts {
    /// All-zero counts for `nr_blocks` blocks.
    #[must_use]
    pub fn new(nr_blocks: u64) -> RefCounts {
        let words = usize::try_from(nr_blocks.div_ceil(32)).unwrap_or(0);
        RefCounts {
            bits: vec![0; words],
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
        let v = self.small(b);
        if v == 3 {
            self.overflow.get(&b).copied().unwrap_or(3)
        } else {
            v
        }
    }

    fn small(&self, b: u64) -> u32 {
        let w = self.bits[usize::try_from(b / 32).unwrap_or(0)];
        u32::try_from((w >> ((b % 32) * 2)) & 3).unwrap_or(3)
    }

    /// Adds one to block `b`; returns false when `b` is out of range.
    pub fn inc(&mut self, b: u64) -> bool {
        if b >= self.nr_blocks {
            return false;
        }
        let idx = usize::try_from(b / 32).unwrap_or(0);
        let shift = (b % 32) * 2;
        let v = (self.bits[idx] >> shift) & 3;
        if v < 3 {
            self.bits[idx] += 1 << shift;
            if v == 2 {
                self.overflow.insert(b, 3);
            }
        } else {
            *self.overflow.entry(b).or_insert(3) += 1;
        }
        true
    }

    /// Sets block `b` to `count`.
    pub fn set(&mut self, b: u64, count: u32) {
        if b >= self.nr_blocks {
            return;
        }
        let idx = usize::try_from(b / 32).unwrap_or(0);
        let shift = (b % 32) * 2;
        self.bits[idx] &= !(3 << shift);
        self.bits[idx] |= u64::from(count.min(3)) << shift;
        if count >= 3 {
            self.overflow.insert(b, count);
        } else {
            self.overflow.remove(&b);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_widen_past_two() {
        let mut c = RefCounts::new(100);
        for _ in 0..5 {
            c.inc(7);
        }
        c.inc(8);
        assert_eq!(c.get(7), 5);
        assert_eq!(c.get(8), 1);
        assert_eq!(c.get(9), 0);
        assert_eq!(c.nr_allocated(), 2);
        assert!(!c.inc(100));
        c.set(7, 0);
        assert_eq!(c.get(7), 0);
        assert_eq!(c.nr_allocated(), 1);
    }
}
