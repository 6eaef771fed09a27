//! Space-map comparison and leak repair:
//! computed counts against the on-disk bitmaps and ref-count tree, the
//! statistics the index entries and the root record, and the in-place rewrite
//! of bitmaps and index entries that repairs leaks.

use std::collections::BTreeMap;
use std::fmt;
use std::io;

use crate::pdata::block::{Block, BlockNr};
use crate::pdata::btree::node::NodeRef;
use crate::pdata::btree::walk::Walker;
use crate::pdata::checksum::{self, BlockKind};
use crate::pdata::io::BlockDevice;
use crate::pdata::space_map::dense_counts::CountSource;
use crate::pdata::space_map::disk::{
    bitmap_get, bitmap_set, compress_pairs, entries_in_bitmap, IndexEntry, REF_COUNT_VALUE_SIZE,
};
use crate::pdata::space_map::read::{bitmap_stats, DiskSpaceMap, SmKind};
use crate::pdata::space_map::ENTRIES_PER_BITMAP;
use crate::thin::engines::check::report::Report;

/// Low bit of every 2-bit pair of a word.
const PAIRS: u64 = 0x5555_5555_5555_5555;
/// Bitmap words per bitmap block.
const WORDS_PER_BITMAP: usize = 510;

/// Outcome of comparing one space map.
#[derive(Debug, Default)]
pub struct Comparison {
    /// Blocks counted 0 but marked 1 on disk.
    pub leaks: u64,
    /// Any other difference.
    pub bad: u64,
    /// Bitmaps holding at least one leak.
    leaky: Vec<usize>,
}

/// The on-disk word with its pairs rewritten so that the low bit of each pair
/// is the count's low bit (the layout of [`CountSource::word2`]).
fn normalise(w: u64) -> u64 {
    ((w >> 1) & PAIRS) | ((w & PAIRS) << 1)
}

/// One bit per entry of a normalised word whose count is 3.
fn threes(d: u64) -> u32 {
    compress_pairs(d & (d >> 1))
}

fn disk_word(bitmap: &Block, j: usize) -> u64 {
    let off = 16 + 8 * j;
    let mut a = [0u8; 8];
    a.copy_from_slice(&bitmap.0[off..off + 8]);
    normalise(u64::from_le_bytes(a))
}

/// Compares `computed` with `disk` block by block.
pub fn compare(computed: &dyn CountSource, disk: &DiskSpaceMap, report: &mut Report) -> Comparison {
    let mut out = Comparison::default();
    let nr_blocks = disk.root.nr_blocks;
    let debug = report.debugging();
    for (i, bm) in disk.bitmaps.iter().enumerate() {
        let mut leaked_here = false;
        for j in 0..WORDS_PER_BITMAP {
            let base = i as u64 * ENTRIES_PER_BITMAP + 32 * j as u64;
            if base >= nr_blocks {
                break;
            }
            let valid = (nr_blocks - base).min(32);
            let mask = if valid == 32 {
                u64::MAX
            } else {
                (1u64 << (2 * valid)) - 1
            };
            let d = disk_word(bm, j) & mask;
            let c = computed.word2(i * WORDS_PER_BITMAP + j) & mask;
            if d == c {
                // Equal fields; entries at 3 are equal too when the tree holds
                // them and the reader dropped them as equal to our counts.
                let t = threes(d);
                if t == 0 || (disk.tree.nothing_kept() && t & !disk.tree.present32(base) == 0) {
                    continue;
                }
            }
            for k in 0..valid {
                let dv = (d >> (2 * k)) & 3;
                let cv = (c >> (2 * k)) & 3;
                if dv == cv && dv != 3 {
                    continue;
                }
                let b = base + k;
                let cc = computed.count(b);
                let dc = if dv != 3 {
                    dv as u32 // two bits: exact
                } else if !disk.tree.has(b) {
                    0
                } else if let Some(t) = disk.tree.kept(b) {
                    t
                } else {
                    // Dropped by the reader's filter: equal to our count.
                    cc
                };
                if dc == cc {
                    continue;
                }
                if cc == 0 && dc == 1 {
                    out.leaks += 1;
                    leaked_here = true;
                } else {
                    out.bad += 1;
                }
                if debug {
                    report.debug(format!(
                        "{} count difference for block {b}: {cc}, {dc}",
                        disk.kind
                    ));
                }
            }
        }
        if leaked_here {
            out.leaky.push(i);
        }
    }
    out
}

/// A statistic the kernel tolerates being wrong (reported, never fatal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatFinding {
    /// Root `nr_allocated`.
    NrAllocated {
        /// Stored.
        stored: u64,
        /// Counted in the bitmaps.
        counted: u64,
    },
    /// Index entry `nr_free`.
    NrFree {
        /// Entry.
        entry: usize,
        /// Stored.
        stored: u32,
        /// Counted.
        counted: u32,
    },
    /// Index entry `none_free_before` past the first free entry.
    NoneFreeBefore {
        /// Entry.
        entry: usize,
        /// Stored.
        stored: u32,
        /// First free entry.
        first: u32,
    },
    /// A ref-count tree entry for a block whose bitmap count is not 3.
    Stale {
        /// Block.
        block: u64,
        /// Bitmap count.
        count: u32,
    },
}

/// A [`StatFinding`] with its space map, for printing.
pub struct StatLine(pub SmKind, pub StatFinding);

impl fmt::Display for StatLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = self.0;
        match &self.1 {
            StatFinding::NrAllocated { stored, counted } => {
                write!(f, "{k} space map: nr_allocated is {stored}, counted {counted}")
            }
            StatFinding::NrFree {
                entry,
                stored,
                counted,
            } => write!(
                f,
                "{k} space map: index entry {entry}: nr_free is {stored}, counted {counted}"
            ),
            StatFinding::NoneFreeBefore {
                entry,
                stored,
                first,
            } => write!(
                f,
                "{k} space map: index entry {entry}: none_free_before {stored} is past the first free entry {first}"
            ),
            StatFinding::Stale { block, count } => write!(
                f,
                "{k} space map: ref count tree holds block {block} whose bitmap count is {count}"
            ),
        }
    }
}

/// The statistics findings of a map whose bitmaps are `bitmaps`.
fn stat_findings(disk: &DiskSpaceMap, bitmaps: &[Block]) -> Vec<StatFinding> {
    let mut out = Vec::new();
    let mut allocated = 0u64;
    let mut per_entry = Vec::new();
    for (i, (bm, e)) in bitmaps.iter().zip(&disk.entries).enumerate() {
        let st = bitmap_stats(bm, entries_in_bitmap(disk.root.nr_blocks, i as u64));
        allocated += u64::from(st.allocated);
        if st.nr_free != e.nr_free {
            per_entry.push(StatFinding::NrFree {
                entry: i,
                stored: e.nr_free,
                counted: st.nr_free,
            });
        }
        if e.none_free_before > st.first_free {
            per_entry.push(StatFinding::NoneFreeBefore {
                entry: i,
                stored: e.none_free_before,
                first: st.first_free,
            });
        }
    }
    if allocated != disk.root.nr_allocated {
        out.push(StatFinding::NrAllocated {
            stored: disk.root.nr_allocated,
            counted: allocated,
        });
    }
    out.extend(per_entry);
    for (i, bm) in bitmaps.iter().enumerate() {
        for j in 0..WORDS_PER_BITMAP {
            let base = i as u64 * ENTRIES_PER_BITMAP + 32 * j as u64;
            let present = disk.tree.present32(base);
            if present == 0 {
                continue;
            }
            let d = disk_word(bm, j);
            let mut stale = present & !threes(d);
            while stale != 0 {
                let k = stale.trailing_zeros();
                stale &= stale - 1;
                let count = ((d >> (2 * k)) & 3) as u32; // two bits: exact
                out.push(StatFinding::Stale {
                    block: base + u64::from(k),
                    count,
                });
            }
        }
    }
    for &(block, _) in &disk.tree.beyond {
        out.push(StatFinding::Stale { block, count: 0 });
    }
    out
}

/// Prints the statistics warnings of the map as stored.
pub fn report_stats(disk: &DiskSpaceMap, report: &mut Report) {
    for f in stat_findings(disk, &disk.bitmaps) {
        report.warning(StatLine(disk.kind, f));
    }
}

/// The blocks to rewrite to repair one space map.
pub struct SmRepair {
    kind: SmKind,
    /// Rewritten bitmaps (entry index, new content without checksum).
    bitmaps: Vec<(usize, Block)>,
    /// Rewritten index entries.
    entries: Vec<(usize, IndexEntry)>,
    /// New root `nr_allocated`, when it changes.
    pub nr_allocated: Option<u64>,
    /// Stale ref-count tree entries to remove, ascending.
    stale: Vec<u64>,
}

impl SmRepair {
    /// True when nothing needs writing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.bitmaps.is_empty()
            && self.entries.is_empty()
            && self.nr_allocated.is_none()
            && self.stale.is_empty()
    }
}

/// Plans the repair: leaked entries set to 0, and exact `nr_free`,
/// `none_free_before` and `nr_allocated` wherever they changed or were wrong.
#[must_use]
pub fn plan_repair(computed: &dyn CountSource, disk: &DiskSpaceMap, cmp: &Comparison) -> SmRepair {
    let mut bitmaps: Vec<Block> = Vec::new();
    let mut changed: Vec<usize> = Vec::new();
    for &i in &cmp.leaky {
        let mut bm = disk.bitmaps[i].clone();
        let real = entries_in_bitmap(disk.root.nr_blocks, i as u64);
        // At most ENTRIES_PER_BITMAP entries: the conversion is exact.
        for e in 0..real as usize {
            let b = i as u64 * ENTRIES_PER_BITMAP + e as u64;
            if bitmap_get(&bm.0, e) == 1 && computed.count(b) == 0 {
                bitmap_set(&mut bm.0, e, 0);
            }
        }
        bitmaps.push(bm);
        changed.push(i);
    }
    let mut all: Vec<Block> = disk.bitmaps.clone();
    for (&i, bm) in changed.iter().zip(&bitmaps) {
        all[i] = bm.clone();
    }
    let mut entries = Vec::new();
    let mut allocated = 0u64;
    for (i, bm) in all.iter().enumerate() {
        let st = bitmap_stats(bm, entries_in_bitmap(disk.root.nr_blocks, i as u64));
        allocated += u64::from(st.allocated);
        let old = disk.entries[i];
        let touched = changed.contains(&i);
        let wrong = old.nr_free != st.nr_free || old.none_free_before > st.first_free;
        if touched || wrong {
            let new = IndexEntry {
                blocknr: old.blocknr,
                nr_free: st.nr_free,
                none_free_before: st.first_free,
            };
            if new != old {
                entries.push((i, new));
            }
        }
    }
    let mut stale: Vec<u64> = stat_findings(disk, &all)
        .into_iter()
        .filter_map(|f| match f {
            StatFinding::Stale { block, .. } => Some(block),
            _ => None,
        })
        .collect();
    stale.sort_unstable();
    SmRepair {
        kind: disk.kind,
        bitmaps: changed.into_iter().zip(bitmaps).collect(),
        entries,
        nr_allocated: (allocated != disk.root.nr_allocated).then_some(allocated),
        stale,
    }
}

/// Writes the repaired bitmaps, then the index entries in place (each index
/// block or index-tree leaf read, patched and re-checksummed). No flush.
///
/// # Errors
/// Any I/O error.
pub fn write_repair(dev: &dyn BlockDevice, disk: &DiskSpaceMap, r: &SmRepair) -> io::Result<()> {
    for (i, bm) in &r.bitmaps {
        let mut b = bm.clone();
        checksum::write_checksum(&mut b.0, BlockKind::Bitmap);
        dev.write_at(disk.entries[*i].blocknr, &b)?;
    }
    let mut by_block: BTreeMap<BlockNr, Vec<(usize, IndexEntry)>> = BTreeMap::new();
    for &(i, e) in &r.entries {
        let slot = disk.slots[i];
        by_block.entry(slot.block).or_default().push((slot.slot, e));
    }
    for (block, list) in by_block {
        let mut b = Block::zeroed();
        dev.read_at(block, &mut b)?;
        let max_entries = u32::from_le_bytes([b[20], b[21], b[22], b[23]]) as usize;
        for (slot, e) in list {
            let off = crate::pdata::space_map::read::EntrySlot { block, slot }
                .offset(r.kind, max_entries);
            b.0[off..off + 16].copy_from_slice(&e.to_bytes());
        }
        let kind = match r.kind {
            SmKind::Data => BlockKind::Node,
            SmKind::Metadata => BlockKind::Index,
        };
        checksum::write_checksum(&mut b.0, kind);
        dev.write_at(block, &b)?;
    }
    remove_stale(dev, disk.root.ref_count_root, &r.stale)
}

/// Removes the `stale` keys (ascending) from the leaves of the ref-count tree
/// at `root`, in place: later entries move down, the freed slots are zeroed.
fn remove_stale(dev: &dyn BlockDevice, root: BlockNr, stale: &[u64]) -> io::Result<()> {
    if stale.is_empty() {
        return Ok(());
    }
    let mut leaves: Vec<BlockNr> = Vec::new();
    let mut walker = Walker::new(dev);
    walker.walk(
        &[root],
        REF_COUNT_VALUE_SIZE,
        |_, n: &NodeRef| {
            n.keys()
                .iter()
                .any(|k| stale.binary_search(&k.get()).is_ok())
        },
        |nr, hit| {
            if hit {
                leaves.push(nr);
            }
        },
    );
    for nr in leaves {
        let mut b = Block::zeroed();
        dev.read_at(nr, &mut b)?;
        let get32 = |b: &Block, o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let nr_entries = get32(&b, 16) as usize;
        let max = get32(&b, 20) as usize;
        let vstart = 32 + 8 * max;
        let entries: Vec<([u8; 8], [u8; 4])> = (0..nr_entries)
            .map(|i| {
                let mut k = [0u8; 8];
                let mut v = [0u8; 4];
                k.copy_from_slice(&b[32 + 8 * i..40 + 8 * i]);
                v.copy_from_slice(&b[vstart + 4 * i..vstart + 4 * i + 4]);
                (k, v)
            })
            .filter(|(k, _)| stale.binary_search(&u64::from_le_bytes(*k)).is_err())
            .collect();
        for i in 0..nr_entries {
            let (k, v) = entries.get(i).copied().unwrap_or(([0; 8], [0; 4]));
            b.0[32 + 8 * i..40 + 8 * i].copy_from_slice(&k);
            b.0[vstart + 4 * i..vstart + 4 * i + 4].copy_from_slice(&v);
        }
        let n = u32::try_from(entries.len()).expect("a node holds fewer than 2^32 entries");
        b.0[16..20].copy_from_slice(&n.to_le_bytes());
        checksum::write_checksum(&mut b.0, BlockKind::Node);
        dev.write_at(nr, &b)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_helpers_follow_the_bitmap_bit_order() {
        // On disk the even bit is the high bit: (word >> 2k) & 3 of 1 means
        // count 2, of 2 means count 1.
        let raw: u64 = 0b11_01_10_00;
        let n = normalise(raw);
        assert_eq!(
            [n & 3, (n >> 2) & 3, (n >> 4) & 3, (n >> 6) & 3],
            [0, 1, 2, 3]
        );
        assert_eq!(threes(n), 0b1000);
        assert_eq!(compress_pairs(u64::MAX), u32::MAX);
        assert_eq!(compress_pairs(1 << 62), 1 << 31);
    }
}
