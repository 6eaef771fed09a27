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
use crate::pdata::btree::node::{NodeError, NodeRef};
use crate::pdata::btree::walk::Walker;
use crate::pdata::io::BlockDevice;
use crate::thin::engines::delta::{Delta, DeltaKind, Run};
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
    /// The delta walk failed.
    #[error("delta between thin {base} and thin {thin}: {msg}")]
    Delta {
        /// Base thin.
        base: u64,
        /// Source thin.
        thin: u64,
        /// The walk's message.
        msg: String,
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

/// The plan bringing a destination that holds the base thin's content
/// (`deltas` = delta walk with the base on the left, the source on the
/// right) to the source's content. `src_runs`, when given, supplies the
/// source's data blocks (offline reading); `origin` says whether blocks
/// unmapped in the source read from an external origin.
#[must_use]
pub fn delta_plan(
    deltas: &[Delta],
    src_runs: Option<&[Run]>,
    nr_blocks: u64,
    origin: bool,
) -> Vec<Extent> {
    let mut out: Vec<Extent> = Vec::new();
    let mut runs = src_runs.map(|r| (r, 0usize));
    for d in deltas {
        if d.begin >= nr_blocks {
            break;
        }
        let len = d.len.min(nr_blocks - d.begin);
        match d.kind {
            DeltaKind::Same => {}
            DeltaKind::LeftOnly => out.push(Extent {
                begin: d.begin,
                len,
                action: if origin { Action::Origin } else { Action::Zero },
            }),
            DeltaKind::RightOnly | DeltaKind::Different => match &mut runs {
                None => out.push(Extent {
                    begin: d.begin,
                    len,
                    action: Action::Mapped { data: None },
                }),
                Some((runs, i)) => split_by_runs(runs, i, d.begin, len, &mut out),
            },
        }
    }
    out
}

/// Pushes `[begin, begin+len)` (all mapped in the source) cut at the
/// boundaries of the source's runs, each piece with its data block.
fn split_by_runs(runs: &[Run], i: &mut usize, begin: u64, len: u64, out: &mut Vec<Extent>) {
    let end = begin + len;
    let mut pos = begin;
    while *i < runs.len() && runs[*i].thin + runs[*i].len <= pos {
        *i += 1;
    }
    let mut j = *i;
    while pos < end && j < runs.len() {
        let r = runs[j];
        if r.thin >= end {
            break;
        }
        let from = pos.max(r.thin);
        let to = end.min(r.thin + r.len);
        if to > from {
            out.push(Extent {
                begin: from,
                len: to - from,
                action: Action::Mapped {
                    data: Some(r.data + (from - r.thin)),
                },
            });
            pos = to;
        }
        if r.thin + r.len <= end {
            j += 1;
        } else {
            break;
        }
    }
    *i = j;
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
    fn delta_plan_splits_changes_by_source_runs() {
        let d = |kind, begin, len| Delta {
            kind,
            begin,
            len,
            data: 0,
            right_data: 0,
        };
        let deltas = [
            d(DeltaKind::Same, 0, 2),
            d(DeltaKind::Different, 2, 4),
            d(DeltaKind::LeftOnly, 6, 1),
            d(DeltaKind::RightOnly, 9, 2),
        ];
        let src = [run(0, 50, 2), run(2, 10, 2), run(4, 30, 2), run(9, 70, 2)];
        assert_eq!(
            delta_plan(&deltas, Some(&src), 20, false),
            vec![
                mapped(2, 2, 10),
                mapped(4, 2, 30),
                Extent {
                    begin: 6,
                    len: 1,
                    action: Action::Zero
                },
                mapped(9, 2, 70),
            ]
        );
        let live = delta_plan(&deltas, None, 10, true);
        assert_eq!(live.len(), 3);
        assert_eq!(live[1].action, Action::Origin);
        assert_eq!(live[2].len, 1);
    }
}
