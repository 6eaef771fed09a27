//! What a shrink moves, and the IR visitors on either side of the plan.
//!
//! [`UsedBlocks`] is the first pass: a visitor that records the superblock
//! and every data run a def or device maps (a run inside a def is recorded
//! once, however many devices refer to it). [`Plan::build`] turns the runs
//! into disjoint used extents and pairs every used block at or above the new
//! size, in ascending order, with the free blocks below it, in ascending
//! order. The pairing is a function of the mapped blocks alone, so the same
//! input always gives the same plan (a rerun after a crash copies the same
//! blocks to the same places). [`Remapper`] is the second pass: it forwards
//! every event to a sink, with data blocks moved by the plan and the data
//! size set to the new size.

use crate::thin::engines::shrink::names::DefNames;
use crate::thin::ir::{DeviceInfo, IrError, Map, MetadataVisitor, SuperblockInfo, Visit};

/// The result type of the IR visitor methods.
type VisitResult = Result<Visit, IrError>;

/// `len` data blocks from `begin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// First block.
    pub begin: u64,
    /// Number of blocks.
    pub len: u64,
}

impl Extent {
    fn end(self) -> u64 {
        self.begin + self.len
    }
}

/// `len` data blocks moved from `src` to `dst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move {
    /// First block moved (at or above the new size).
    pub src: u64,
    /// Where it goes (below the new size, free in the input).
    pub dst: u64,
    /// Number of blocks.
    pub len: u64,
}

/// First pass: the superblock and the data runs of the input.
#[derive(Debug, Default)]
pub struct UsedBlocks {
    /// The superblock, once seen.
    pub sb: Option<SuperblockInfo>,
    /// Every run as mapped, in input order (one entry per def or device run).
    pub runs: Vec<Extent>,
}

impl MetadataVisitor for UsedBlocks {
    fn superblock_begin(&mut self, sb: &SuperblockInfo) -> VisitResult {
        self.sb = Some(sb.clone());
        Ok(Visit::Continue)
    }
    fn superblock_end(&mut self) -> VisitResult {
        Ok(Visit::Continue)
    }
    fn def_begin(&mut self, _: u64) -> VisitResult {
        Ok(Visit::Continue)
    }
    fn def_end(&mut self) -> VisitResult {
        Ok(Visit::Continue)
    }
    fn device_begin(&mut self, _: &DeviceInfo) -> VisitResult {
        Ok(Visit::Continue)
    }
    fn device_end(&mut self) -> VisitResult {
        Ok(Visit::Continue)
    }
    fn map(&mut self, m: &Map) -> VisitResult {
        if m.len > 0 {
            self.runs.push(Extent {
                begin: m.data_begin,
                len: m.len,
            });
        }
        Ok(Visit::Continue)
    }
    fn ref_shared(&mut self, _: u64) -> VisitResult {
        Ok(Visit::Continue)
    }
    fn eof(&mut self) -> VisitResult {
        Ok(Visit::Continue)
    }
}

/// Sorts `runs` and merges overlapping or adjacent ones into disjoint
/// extents in ascending order.
#[must_use]
pub fn merge_extents(mut runs: Vec<Extent>) -> Vec<Extent> {
    runs.sort_unstable_by_key(|e| e.begin);
    let mut out: Vec<Extent> = Vec::with_capacity(runs.len());
    for r in runs {
        match out.last_mut() {
            Some(last) if r.begin <= last.end() => {
                let end = last.end().max(r.end());
                last.len = end - last.begin;
            }
            _ => out.push(r),
        }
    }
    out
}

/// Why a plan cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insufficient {
    /// Mapped blocks at or above the new size.
    pub to_move: u64,
    /// Free blocks below the new size.
    pub free: u64,
}

/// The moves of one shrink, sorted by source block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Disjoint moves, ascending by `src` (and by `dst`).
    pub moves: Vec<Move>,
    /// Distinct data blocks mapped.
    pub used: u64,
}

impl Plan {
    /// Pairs every block of `used` (disjoint, ascending, from
    /// [`merge_extents`]) at or above `nr_blocks` with a free block below it.
    ///
    /// # Errors
    /// [`Insufficient`] when the blocks to move outnumber the free ones.
    pub fn build(used: &[Extent], nr_blocks: u64) -> Result<Plan, Insufficient> {
        let total: u64 = used.iter().map(|e| e.len).sum();
        let above: Vec<Extent> = used
            .iter()
            .filter(|e| e.end() > nr_blocks)
            .map(|e| {
                let begin = e.begin.max(nr_blocks);
                Extent {
                    begin,
                    len: e.end() - begin,
                }
            })
            .collect();
        let to_move: u64 = above.iter().map(|e| e.len).sum();
        let below_used = total - to_move;
        let free = nr_blocks - below_used;
        if to_move > free {
            return Err(Insufficient { to_move, free });
        }
        let mut holes = FreeBelow::new(used, nr_blocks);
        let mut moves = Vec::new();
        for e in above {
            let mut src = e.begin;
            let mut left = e.len;
            while left > 0 {
                let Some(hole) = holes.take(left) else {
                    // Counted above: there are enough free blocks.
                    return Err(Insufficient { to_move, free });
                };
                moves.push(Move {
                    src,
                    dst: hole.begin,
                    len: hole.len,
                });
                src += hole.len;
                left -= hole.len;
            }
        }
        Ok(Plan { moves, used: total })
    }

    /// Number of blocks moved.
    #[must_use]
    pub fn blocks_moved(&self) -> u64 {
        self.moves.iter().map(|m| m.len).sum()
    }

    /// Calls `f` with the pieces of data run `begin..begin+len`, each as
    /// (offset into the run, new first block, length), in run order.
    pub fn remap(&self, begin: u64, len: u64, mut f: impl FnMut(u64, u64, u64)) {
        let end = begin + len;
        let mut at = begin;
        // The first move that ends after `begin`.
        let mut i = self.moves.partition_point(|m| m.src + m.len <= begin);
        while at < end {
            match self.moves.get(i) {
                Some(m) if m.src <= at => {
                    let piece = (m.src + m.len).min(end) - at;
                    f(at - begin, m.dst + (at - m.src), piece);
                    at += piece;
                    i += 1;
                }
                Some(m) => {
                    let piece = m.src.min(end) - at;
                    f(at - begin, at, piece);
                    at += piece;
                }
                None => {
                    f(at - begin, at, end - at);
                    at = end;
                }
            }
        }
    }
}

/// The free extents below the new size, handed out in ascending order.
struct FreeBelow<'a> {
    used: std::slice::Iter<'a, Extent>,
    /// Start of the current gap.
    at: u64,
    /// End of the current gap (exclusive).
    gap_end: u64,
    limit: u64,
}

impl<'a> FreeBelow<'a> {
    fn new(used: &'a [Extent], limit: u64) -> Self {
        let mut f = FreeBelow {
            used: used.iter(),
            at: 0,
            gap_end: 0,
            limit,
        };
        f.gap_end = f.next_used_begin();
        f
    }

    fn next_used_begin(&mut self) -> u64 {
        self.used
            .clone()
            .next()
            .map_or(self.limit, |e| e.begin)
            .min(self.limit)
    }

    /// At most `want` free blocks, contiguous, lowest first.
    fn take(&mut self, want: u64) -> Option<Extent> {
        while self.at >= self.gap_end {
            if self.at >= self.limit {
                return None;
            }
            let e = self.used.next()?;
            self.at = self.at.max(e.end());
            self.gap_end = self.next_used_begin();
        }
        let len = want.min(self.gap_end - self.at);
        let begin = self.at;
        self.at += len;
        Some(Extent { begin, len })
    }
}

/// Second pass: forwards every event to `sink` with data blocks moved by the
/// plan, the superblock's data size set to the new size, and defs named as
/// in the input.
pub struct Remapper<'a> {
    plan: &'a Plan,
    names: &'a DefNames,
    nr_blocks: u64,
    sink: &'a mut (dyn MetadataVisitor + Send),
}

impl<'a> Remapper<'a> {
    /// A remapper for `plan` in front of `sink`.
    pub fn new(
        plan: &'a Plan,
        names: &'a DefNames,
        nr_blocks: u64,
        sink: &'a mut (dyn MetadataVisitor + Send),
    ) -> Self {
        Remapper {
            plan,
            names,
            nr_blocks,
            sink,
        }
    }
}

impl MetadataVisitor for Remapper<'_> {
    fn superblock_begin(&mut self, sb: &SuperblockInfo) -> VisitResult {
        let mut sb = sb.clone();
        sb.nr_data_blocks = self.nr_blocks;
        self.sink.superblock_begin(&sb)
    }
    fn superblock_end(&mut self) -> VisitResult {
        self.sink.superblock_end()
    }
    fn def_begin(&mut self, name: u64) -> VisitResult {
        self.sink.def_begin(self.names.original(name))
    }
    fn def_end(&mut self) -> VisitResult {
        self.sink.def_end()
    }
    fn device_begin(&mut self, dev: &DeviceInfo) -> VisitResult {
        self.sink.device_begin(dev)
    }
    fn device_end(&mut self) -> VisitResult {
        self.sink.device_end()
    }
    fn map(&mut self, m: &Map) -> VisitResult {
        let mut pieces: Vec<Map> = Vec::new();
        self.plan.remap(m.data_begin, m.len, |off, data, len| {
            pieces.push(Map {
                thin_begin: m.thin_begin + off,
                data_begin: data,
                time: m.time,
                len,
            });
        });
        for p in &pieces {
            if self.sink.map(p)? == Visit::Stop {
                return Ok(Visit::Stop);
            }
        }
        Ok(Visit::Continue)
    }
    fn ref_shared(&mut self, name: u64) -> VisitResult {
        self.sink.ref_shared(self.names.original(name))
    }
    fn eof(&mut self) -> VisitResult {
        self.sink.eof()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(begin: u64, len: u64) -> Extent {
        Extent { begin, len }
    }

    fn mv(src: u64, dst: u64, len: u64) -> Move {
        Move { src, dst, len }
    }

    #[test]
    fn merging_joins_overlapping_and_adjacent_runs() {
        let m = merge_extents(vec![
            ext(10, 5),
            ext(0, 2),
            ext(12, 10),
            ext(2, 1),
            ext(30, 1),
        ]);
        assert_eq!(m, vec![ext(0, 3), ext(10, 12), ext(30, 1)]);
    }

    #[test]
    fn blocks_above_fill_the_lowest_holes_in_order() {
        // used: 0..3, 5..6, 8..12 ; new size 9: 9..12 move into 3, 4, 6.
        let used = merge_extents(vec![ext(0, 3), ext(5, 1), ext(8, 4)]);
        let p = Plan::build(&used, 9).unwrap();
        assert_eq!(p.moves, vec![mv(9, 3, 2), mv(11, 6, 1)]);
        assert_eq!(p.blocks_moved(), 3);
        assert_eq!(p.used, 8);
    }

    #[test]
    fn nothing_above_means_no_moves() {
        let p = Plan::build(&[ext(0, 4)], 4).unwrap();
        assert!(p.moves.is_empty());
        let p = Plan::build(&[], 0).unwrap();
        assert!(p.moves.is_empty());
    }

    #[test]
    fn size_equal_to_the_used_count_fills_every_hole() {
        let used = [ext(1, 1), ext(3, 2), ext(7, 3)];
        let p = Plan::build(&used, 6).unwrap();
        // holes 0, 2, 5; above: 7, 8, 9
        assert_eq!(p.moves, vec![mv(7, 0, 1), mv(8, 2, 1), mv(9, 5, 1)]);
    }

    #[test]
    fn one_block_too_many_is_refused() {
        let used = [ext(1, 1), ext(3, 2), ext(7, 3)];
        assert_eq!(
            Plan::build(&used, 5),
            Err(Insufficient {
                to_move: 3,
                free: 2
            })
        );
    }

    #[test]
    fn remap_splits_a_run_at_move_boundaries() {
        let used = merge_extents(vec![ext(0, 3), ext(5, 1), ext(8, 4)]);
        let p = Plan::build(&used, 9).unwrap();
        let mut got = Vec::new();
        p.remap(8, 4, |o, d, l| got.push((o, d, l)));
        assert_eq!(got, vec![(0, 8, 1), (1, 3, 2), (3, 6, 1)]);
        got.clear();
        p.remap(10, 1, |o, d, l| got.push((o, d, l)));
        assert_eq!(got, vec![(0, 4, 1)]);
        got.clear();
        p.remap(0, 3, |o, d, l| got.push((o, d, l)));
        assert_eq!(got, vec![(0, 0, 3)]);
    }
}
