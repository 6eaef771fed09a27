//! What a copy does, decided from the metadata alone: a sorted list of
//! extents of thin blocks, each read from a data block (mapped in the
//! source), from the external origin, or made to read as zeroes.
//!
//! A full plan covers every mapped run of the source (and, when the
//! destination is not known to be zero or the thin has an external origin,
//! the gaps between them). A delta plan comes from the delta walk between a
//! base thin, whose content the destination already holds, and the source:
//! only the runs mapped differently are copied, and the runs mapped in the
//! base but not in the source are zeroed (or read from the origin).

use crate::pdata::block::BlockNr;
use crate::pdata::btree::diff::KeyDiff;
use crate::pdata::btree::node::{NodeError, NodeRef};
use crate::pdata::btree::walk::Walker;
use crate::pdata::io::BlockDevice;
use crate::thin::engines::delta::Run;
use crate::thin::model::mapping::BlockTime;

/// Failures building a plan.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A damaged node in a mapping tree.
    #[error("mapping tree of thin {thin} at block {root}: {source}")]
    Tree {
        /// The thin whose tree it is.
        thin: u64,
        /// Root of the tree.
        root: BlockNr,
        /// The node error.
        source: NodeError,
    },
    /// A damaged node met by the delta walk.
    #[error("delta between thin {base} and thin {thin}: {source}")]
    Delta {
        /// Base thin.
        base: u64,
        /// Source thin.
        thin: u64,
        /// The node error.
        source: NodeError,
    },
}

/// Where an extent's content comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Mapped in the source; `data` is the data block of the first thin
    /// block when known (needed to read the data device offline).
    Mapped {
        /// Data block of the extent's first block.
        data: Option<u64>,
    },
    /// Unmapped in the source, which has an external origin: read from it.
    Origin,
    /// Unmapped in the source: the destination must read back zeroes.
    Zero,
}

/// `len` thin blocks from `begin`, all handled alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// First thin block.
    pub begin: u64,
    /// Number of thin blocks.
    pub len: u64,
    /// What to do with them.
    pub action: Action,
}

/// A whole copy: extents sorted by `begin`, not overlapping, all within the
/// volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Data block size in bytes.
    pub block_bytes: u64,
    /// Volume size in bytes (the last block may be partial).
    pub size_bytes: u64,
    /// The extents.
    pub extents: Vec<Extent>,
}

impl Plan {
    /// Number of thin blocks covering the volume.
    #[must_use]
    pub fn nr_blocks(&self) -> u64 {
        self.size_bytes.div_ceil(self.block_bytes)
    }

    /// Bytes of the volume covered by extents of the given kind.
    #[must_use]
    pub fn bytes_where(&self, pred: impl Fn(Action) -> bool) -> u64 {
        self.extents
            .iter()
            .filter(|e| pred(e.action))
            .map(|e| self.extent_bytes(e).1)
            .sum()
    }

    /// Byte offset and length of `e` in the volume (the last block clipped
    /// to the volume size).
    #[must_use]
    pub fn extent_bytes(&self, e: &Extent) -> (u64, u64) {
        let off = e.begin * self.block_bytes;
        let end = ((e.begin + e.len) * self.block_bytes).min(self.size_bytes);
        (off, end.saturating_sub(off))
    }
}

/// Every mapped run of the bottom-level tree at `root` (thin `thin`), in
/// thin-block order, consecutive mappings joined.
///
/// # Errors
/// The first damaged node.
pub fn mapped_runs(dev: &dyn BlockDevice, thin: u64, root: BlockNr) -> Result<Vec<Run>, PlanError> {
    let mut walker = Walker::new(dev);
    let mut leaves: std::collections::HashMap<BlockNr, Vec<(u64, u64)>> =
        std::collections::HashMap::new();
    walker.walk(
        &[root],
        8,
        |_, n: &NodeRef| {
            n.keys()
                .iter()
                .zip(n.values_u64())
                .map(|(k, v)| (k.get(), BlockTime::unpack(v.get()).block))
                .collect::<Vec<_>>()
        },
        |nr, v| {
            leaves.insert(nr, v);
        },
    );
    let graph = walker.graph();
    let mut bad = None;
    let order = graph.leaves_of(root, |block, kind| {
        bad.get_or_insert(NodeError { block, kind });
    });
    if let Some(source) = bad.or_else(|| graph.link_errors.first().copied()) {
        return Err(PlanError::Tree { thin, root, source });
    }
    let mut runs: Vec<Run> = Vec::new();
    for leaf in order {
        for &(t, d) in leaves.get(&leaf).map_or(&[][..], Vec::as_slice) {
            match runs.last_mut() {
                Some(r) if r.thin + r.len == t && r.data + r.len == d => r.len += 1,
                _ => runs.push(Run {
                    thin: t,
                    data: d,
                    len: 1,
                }),
            }
        }
    }
    Ok(runs)
}

/// Whether a full plan fills the gaps between mapped runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gaps {
    /// The destination reads as zeroes already: gaps are left alone.
    Skip,
    /// Gaps are zeroed.
    Zero,
    /// The thin has an external origin: gaps are read from it.
    Origin,
}

/// The plan copying every mapped run of `runs` within `nr_blocks`, and the
/// gaps as `gaps` says.
#[must_use]
pub fn full_plan(runs: &[Run], nr_blocks: u64, gaps: Gaps) -> Vec<Extent> {
    let mut out = Vec::new();
    let mut pos = 0u64;
    let gap = |out: &mut Vec<Extent>, from: u64, to: u64| {
        let action = match gaps {
            Gaps::Skip => return,
            Gaps::Zero => Action::Zero,
            Gaps::Origin => Action::Origin,
        };
        if to > from {
            out.push(Extent {
                begin: from,
                len: to - from,
                action,
            });
        }
    };
    for r in runs {
        if r.thin >= nr_blocks {
            break;
        }
        gap(&mut out, pos, r.thin);
        let len = r.len.min(nr_blocks - r.thin);
        out.push(Extent {
            begin: r.thin,
            len,
            action: Action::Mapped { data: Some(r.data) },
        });
        pos = r.thin + len;
    }
    gap(&mut out, pos, nr_blocks);
    out
}

/// Builds the extents bringing a destination that holds the base thin's
/// content to the source's, from the keys whose mappings differ (the
/// [`diff_trees`](crate::pdata::btree::diff::diff_trees) of the base, on the
/// left, and the source), fed in ascending order: blocks mapped anew in the
/// source are copied from their data blocks, blocks mapped only in the base
/// are zeroed (or read from the external origin), and a block whose mapping
/// differs only in its time is left alone.
pub struct DeltaExtents {
    extents: Vec<Extent>,
    nr_blocks: u64,
    unmapped: Action,
}

impl DeltaExtents {
    /// An empty plan for a volume of `nr_blocks`; `origin` says whether
    /// blocks unmapped in the source read from an external origin.
    #[must_use]
    pub fn new(nr_blocks: u64, origin: bool) -> DeltaExtents {
        DeltaExtents {
            extents: Vec::new(),
            nr_blocks,
            unmapped: if origin { Action::Origin } else { Action::Zero },
        }
    }

    /// Adds one differing key (keys at or past the volume end, or not above
    /// the last one added, are ignored).
    pub fn push(&mut self, d: KeyDiff) {
        let (key, action) = match d {
            KeyDiff::Left(k, _) => (k, self.unmapped),
            KeyDiff::Right(k, v) => (k, mapped_at(v)),
            KeyDiff::Both(k, l, r) => {
                if BlockTime::unpack(l).block == BlockTime::unpack(r).block {
                    return;
                }
                (k, mapped_at(r))
            }
        };
        if key >= self.nr_blocks {
            return;
        }
        if let Some(last) = self.extents.last_mut() {
            if key < last.begin + last.len {
                return;
            }
            let joins = match (last.action, action) {
                (Action::Mapped { data: Some(a) }, Action::Mapped { data: Some(b) }) => {
                    a.checked_add(last.len) == Some(b)
                }
                (x, y) => x == y,
            };
            if joins && last.begin + last.len == key {
                last.len += 1;
                return;
            }
        }
        self.extents.push(Extent {
            begin: key,
            len: 1,
            action,
        });
    }

    /// The extents, sorted and not overlapping.
    #[must_use]
    pub fn finish(self) -> Vec<Extent> {
        self.extents
    }
}

fn mapped_at(value: u64) -> Action {
    Action::Mapped {
        data: Some(BlockTime::unpack(value).block),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(thin: u64, data: u64, len: u64) -> Run {
        Run { thin, data, len }
    }

    fn mapped(begin: u64, len: u64, data: u64) -> Extent {
        Extent {
            begin,
            len,
            action: Action::Mapped { data: Some(data) },
        }
    }

    #[test]
    fn full_plan_fills_gaps_as_asked_and_clips() {
        let runs = [run(2, 100, 3), run(8, 7, 4)];
        assert_eq!(
            full_plan(&runs, 10, Gaps::Skip),
            vec![mapped(2, 3, 100), mapped(8, 2, 7)]
        );
        let z = |begin, len| Extent {
            begin,
            len,
            action: Action::Zero,
        };
        assert_eq!(
            full_plan(&runs, 14, Gaps::Zero),
            vec![
                z(0, 2),
                mapped(2, 3, 100),
                z(5, 3),
                mapped(8, 4, 7),
                z(12, 2)
            ]
        );
        assert_eq!(full_plan(&runs, 1, Gaps::Skip), vec![]);
    }

    #[test]
    fn delta_extents_join_runs_and_skip_time_only_changes() {
        let v = |block: u64, time: u32| BlockTime { block, time }.pack().unwrap_or(0);
        let mut d = DeltaExtents::new(20, false);
        for k in [
            KeyDiff::Right(2, v(10, 0)),
            KeyDiff::Both(3, v(5, 0), v(11, 1)),
            KeyDiff::Both(4, v(30, 0), v(30, 1)),
            KeyDiff::Right(5, v(31, 0)),
            KeyDiff::Left(6, v(1, 0)),
            KeyDiff::Left(7, v(2, 0)),
            KeyDiff::Right(9, v(70, 0)),
            KeyDiff::Right(10, v(72, 0)),
            KeyDiff::Right(25, v(80, 0)),
        ] {
            d.push(k);
        }
        let zero = Extent {
            begin: 6,
            len: 2,
            action: Action::Zero,
        };
        assert_eq!(
            d.finish(),
            vec![
                mapped(2, 2, 10),
                mapped(5, 1, 31),
                zero,
                mapped(9, 1, 70),
                mapped(10, 1, 72)
            ]
        );
        let mut o = DeltaExtents::new(20, true);
        o.push(KeyDiff::Left(1, v(1, 0)));
        assert_eq!(o.finish()[0].action, Action::Origin);
    }
}
