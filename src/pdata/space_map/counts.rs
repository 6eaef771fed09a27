//! In-memory reference counters indexed by block number: two bits per block
//! while counts stay at or below 2, with an overflow table for larger counts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

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

/// Reference counts that several threads increment at once (the data counts
/// of a parallel mapping walk). Same layout as [`RefCounts`], into which it
/// turns when the walk is over.
pub struct SharedCounts {
    bits: Vec<AtomicU64>,
    overflow: Mutex<HashMap<u64, u32>>,
    nr_blocks: u64,
}

impl SharedCounts {
    /// All-zero counts for `nr_blocks` blocks.
    #[must_use]
    pub fn new(nr_blocks: u64) -> SharedCounts {
        let words = usize::try_from(nr_blocks.div_ceil(32)).unwrap_or(0);
        SharedCounts {
            bits: (0..words).map(|_| AtomicU64::new(0)).collect(),
            overflow: Mutex::new(HashMap::new()),
            nr_blocks,
        }
    }

    /// Adds one to block `b`; returns false when `b` is out of range.
    pub fn inc(&self, b: u64) -> bool {
        if b >= self.nr_blocks {
            return false;
        }
        let cell = &self.bits[usize::try_from(b / 32).unwrap_or(0)];
        let shift = (b % 32) * 2;
        let mut cur = cell.load(Ordering::Relaxed);
        loop {
            let v = (cur >> shift) & 3;
            if v == 3 {
                self.bump_overflow(b, 1);
                return true;
            }
            match cell.compare_exchange_weak(
                cur,
                cur + (1 << shift),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if v == 2 {
                        // 3 reached: the overflow entry holds the full count. A
                        // concurrent increment may have created it already.
                        self.bump_overflow(b, 0);
                    }
                    return true;
                }
                Err(now) => cur = now,
            }
        }
    }

    fn bump_overflow(&self, b: u64, by: u32) {
        let mut o = self
            .overflow
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let e = o.entry(b).or_insert(3);
        *e = e.saturating_add(by);
    }

    /// The final counts.
    #[must_use]
    pub fn into_counts(self) -> RefCounts {
        RefCounts {
            bits: self.bits.into_iter().map(AtomicU64::into_inner).collect(),
            overflow: self
                .overflow
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            nr_blocks: self.nr_blocks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_counts_agree_with_serial_counts() {
        use rayon::prelude::*;
        let blocks: Vec<u64> = (0..20_000u64).map(|i| (i * 7919) % 1000).collect();
        let shared = SharedCounts::new(1000);
        blocks.par_iter().for_each(|&b| {
            shared.inc(b);
        });
        assert!(!shared.inc(1000));
        let mut serial = RefCounts::new(1000);
        for &b in &blocks {
            serial.inc(b);
        }
        let got = shared.into_counts();
        for b in 0..1000 {
            assert_eq!(got.get(b), serial.get(b), "block {b}");
        }
        assert_eq!(got.words(), serial.words());
    }

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
