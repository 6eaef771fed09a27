//! A fingerprint of a multiset of block numbers: thin_check's first, cheap
//! comparison of the data references the mapping trees hold with the counts
//! the data space map stores.
//!
//! Counting every mapping into a table of per-block counters costs a random
//! memory access per leaf and an atomic update per counter word, and the
//! table is half a byte per data block. Instead, both sides are summed into
//! one 64-bit number: each reference to block `b` adds `h(b)`, a block stored
//! with count `c` adds `c * h(b)`, all modulo 2^64, where `h` is a keyed
//! mixing function whose key is drawn at random for each run (so no metadata
//! can be built to fool it). The two sums are equal when every count is
//! right. When some count is wrong the sums differ unless the wrong counts
//! happen to cancel out under this run's key, which for a function that
//! behaves as a random one has a probability of about 2^-64. thin_check
//! treats a mismatch as "count exactly" and names the blocks from the exact
//! counts, so a mismatch never produces a report of its own.
//!
//! The cost is a few multiplications per reference, with no memory traffic
//! beyond the leaf being read, and no table at all.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// A sum of fingerprints (modulo 2^64).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sum(u64);

impl Sum {
    /// Adds another sum.
    #[must_use]
    pub fn plus(self, other: Sum) -> Sum {
        Sum(self.0.wrapping_add(other.0))
    }
}

/// The keyed function `h` of one run of a check.
#[derive(Clone, Copy, Debug)]
pub struct CountFingerprint {
    /// Xored into the block number first.
    key: u64,
    /// The two (odd) multipliers of the finaliser.
    m1: u64,
    m2: u64,
}

/// The splitmix64 step: the `i`-th output for `seed`.
fn splitmix(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl CountFingerprint {
    /// A function keyed from the process's random hash keys.
    #[must_use]
    pub fn random() -> CountFingerprint {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0x7468_696e_636b);
        CountFingerprint::with_key(h.finish())
    }

    /// The function drawn from `seed`: its key and multipliers are the
    /// first outputs of a splitmix64 sequence (a xor key alone would only
    /// permute aligned ranges of blocks, leaving their sum unchanged).
    #[must_use]
    pub fn with_key(seed: u64) -> CountFingerprint {
        CountFingerprint {
            key: splitmix(seed, 1),
            m1: splitmix(seed, 2) | 1,
            m2: splitmix(seed, 3) | 1,
        }
    }

    /// h(b): the block number, keyed, through a 64-bit finaliser with this
    /// function's multipliers (xor-shift and multiply twice), a bijection
    /// whose every output bit depends on every input bit.
    #[must_use]
    #[inline]
    pub fn point(&self, b: u64) -> Sum {
        let mut z = b ^ self.key;
        z = (z ^ (z >> 30)).wrapping_mul(self.m1);
        z = (z ^ (z >> 27)).wrapping_mul(self.m2);
        Sum(z ^ (z >> 31))
    }

    /// The sum of h over `blocks` (each once per occurrence).
    #[must_use]
    #[inline]
    pub fn blocks(&self, blocks: impl IntoIterator<Item = u64>) -> Sum {
        Sum(blocks
            .into_iter()
            .fold(0u64, |s, b| s.wrapping_add(self.point(b).0)))
    }

    /// `count * h(b)`.
    #[must_use]
    #[inline]
    pub fn counted(&self, b: u64, count: u32) -> Sum {
        Sum(self.point(b).0.wrapping_mul(u64::from(count)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn counted_all(f: &CountFingerprint, entries: &[(u64, u32)]) -> Sum {
        entries
            .iter()
            .fold(Sum::default(), |s, &(b, c)| s.plus(f.counted(b, c)))
    }

    #[test]
    fn a_wrong_count_changes_the_sum() {
        let f = CountFingerprint::random();
        let right = counted_all(&f, &[(5, 1), (6, 1), (7, 2), (9, 1)]);
        assert_eq!(f.blocks([5, 7, 6, 9, 7]), right);
        assert_ne!(counted_all(&f, &[(5, 1), (6, 1), (7, 1), (9, 1)]), right);
        assert_ne!(
            counted_all(&f, &[(5, 1), (6, 1), (7, 2), (9, 1), (10, 1)]),
            right
        );
        // Equal count and equal sum of block numbers, other blocks.
        assert_ne!(f.blocks([1, 4]), f.blocks([2, 3]));
        assert_ne!(f.blocks([100, 101, 102]), f.blocks([101, 102, 103]));
        // A count of 2 does not cancel (as an exclusive or would).
        assert_ne!(f.blocks([8, 8]), Sum::default());
    }

    #[test]
    fn keys_give_different_functions() {
        let (f, g) = (CountFingerprint::with_key(1), CountFingerprint::with_key(2));
        assert_ne!(f.blocks(0..100), g.blocks(0..100));
        assert_eq!(
            f.blocks(0..100),
            CountFingerprint::with_key(1).blocks(0..100)
        );
    }

    proptest! {
        #[test]
        fn any_order_and_grouping_gives_one_sum(
            blocks in proptest::collection::vec(0u64..2000, 0..400),
        ) {
            let f = CountFingerprint::random();
            let mut sorted = blocks.clone();
            sorted.sort_unstable();
            let mut counted: Vec<(u64, u32)> = Vec::new();
            for &b in &sorted {
                match counted.last_mut() {
                    Some((k, c)) if *k == b => *c += 1,
                    _ => counted.push((b, 1)),
                }
            }
            prop_assert_eq!(f.blocks(blocks.iter().copied()), counted_all(&f, &counted));
        }

        #[test]
        fn one_reference_more_or_less_is_seen(
            blocks in proptest::collection::vec(0u64..1_000_000, 1..300),
            extra in 0u64..1_000_000,
        ) {
            let f = CountFingerprint::random();
            let base = f.blocks(blocks.iter().copied());
            prop_assert_ne!(base.plus(f.point(extra)), base);
        }
    }
}
