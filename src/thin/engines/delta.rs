//! thin_delta: the differences between two thin devices' mappings, as the
//! XML thin_delta prints (simple or `--verbose`).
//!
//! Both bottom-level trees are listed by one walk of the shared walker over
//! their internal levels only ([`Walker::walk_to_leaf_parents`]), so a
//! subtree the two sides share (same block number, as after a snapshot) is
//! walked once. Each distinct leaf is then read once, in block order, on all
//! cores, and checked as the walk would have checked it. The leaves of a
//! shared subtree still have to be read: the `same` elements of the output
//! follow the gaps between mapped keys, and only the leaves know them. Each
//! side is reduced to runs (consecutive thin blocks on consecutive data
//! blocks), the two run lists are merged and neighbouring deltas of one kind
//! are joined.

use std::io::{self, Write};
use std::path::PathBuf;

use rayon::prelude::*;
use zerocopy::little_endian::U64;

use crate::pdata::block::BlockNr;
use crate::pdata::btree::node::NodeError;
use crate::pdata::btree::walk::Walker;
use crate::pdata::io::BlockDevice;
use crate::thin::ir::emit::{DeviceLeaves, LeafReader};
use crate::thin::ir::text::push_num;
use crate::thin::model::mapping::BlockTime;
use crate::thin::model::mapping::MAPPING_VALUE_SIZE;
use crate::thin::model::open::{devices, open_for_reading, ReadError, SnapshotChoice};
use crate::thin::model::superblock::Superblock;

/// One side of the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// A device id, looked up in the top-level mapping tree.
    Thin(u64),
    /// A bottom-level tree root given directly.
    Root(BlockNr),
}

/// What to compare.
#[derive(Clone, Debug)]
pub struct DeltaOptions {
    /// Metadata device or file.
    pub input: PathBuf,
    /// Live trees or a metadata snapshot.
    pub snapshot: SnapshotChoice,
    /// The left side.
    pub left: Side,
    /// The right side.
    pub right: Side,
}

/// The comparison: the superblock it was read from and both trees' leaves,
/// read and checked; the deltas are produced from them as they are written
/// (see [`DeltaReport::for_each_delta`]), never held as a list.
pub struct DeltaReport {
    /// The superblock whose trees were compared.
    pub sb: Superblock,
    runs: LeafRuns,
    roots: (BlockNr, BlockNr),
}

/// Deltas in thin-block order, handed out one by one (what [`write_xml`]
/// writes).
pub trait DeltaSource {
    /// Calls `f` with each delta, in order.
    fn for_each_delta(&self, f: &mut dyn FnMut(Delta));
}

impl DeltaSource for DeltaReport {
    /// The coalesced deltas, merged from the leaves' runs as they are asked
    /// for.
    fn for_each_delta(&self, f: &mut dyn FnMut(Delta)) {
        let (root1, root2) = self.roots;
        merge_coalesced(self.runs.side(root1), self.runs.side(root2), f);
    }
}

impl DeltaSource for Vec<Delta> {
    fn for_each_delta(&self, f: &mut dyn FnMut(Delta)) {
        self.iter().for_each(|&d| f(d));
    }
}

/// Why thin_delta could not compare.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// Opening the input or reading its device trees failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A side names a device the metadata does not hold.
    #[error("Unable to find mapping tree for {side} ({id})")]
    NoSuchDevice {
        /// `snap1` or `snap2`.
        side: &'static str,
        /// The device id asked for.
        id: u64,
    },
    /// A damaged node in a compared tree.
    #[error("mapping tree at block {root}: {err}")]
    Tree {
        /// Root of the damaged tree.
        root: BlockNr,
        /// The first bad node.
        err: NodeError,
    },
}

/// Opens the input and compares the two sides.
///
/// # Errors
/// A [`DeltaError`].
pub fn delta(opts: &DeltaOptions) -> Result<DeltaReport, DeltaError> {
    let opened = open_for_reading(&opts.input, opts.snapshot)?;
    let dev = &opened.dev;
    let sb = opened.chosen.sb;
    let devs = devices(dev, sb.mapping_root, sb.details_root)?;
    let root_of = |s: Side, side: &'static str| match s {
        Side::Root(b) => Ok(b),
        Side::Thin(id) => devs
            .iter()
            .find(|d| d.id == id)
            .map(|d| d.root)
            .ok_or(DeltaError::NoSuchDevice { side, id }),
    };
    let root1 = root_of(opts.left, "snap1")?;
    let root2 = root_of(opts.right, "snap2")?;
    // Every leaf is read (and a damaged one reported) before any output.
    let runs = LeafRuns::read(dev, &[root1, root2])?;
    Ok(DeltaReport {
        sb,
        runs,
        roots: (root1, root2),
    })
}

/// `len` consecutive thin blocks from `thin` mapped to consecutive data blocks
/// from `data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// First thin block.
    pub thin: u64,
    /// First data block.
    pub data: u64,
    /// Number of blocks.
    pub len: u64,
}

impl Run {
    /// Extends the run by one mapping when it continues it (thin and data both
    /// advance by one); false otherwise.
    fn extend(&mut self, thin: u64, data: u64) -> bool {
        let continues = self.thin.checked_add(self.len) == Some(thin)
            && self.data.checked_add(self.len) == Some(data);
        if continues {
            self.len += 1;
        }
        continues
    }
}

/// What a delta says about a range of thin blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeltaKind {
    /// Mapped on the left only.
    LeftOnly,
    /// Mapped on the right only.
    RightOnly,
    /// Mapped on both sides to different data blocks.
    Different,
    /// Mapped on both sides to the same data blocks.
    Same,
}

impl DeltaKind {
    fn tag(self) -> &'static str {
        match self {
            DeltaKind::LeftOnly => "left_only",
            DeltaKind::RightOnly => "right_only",
            DeltaKind::Different => "different",
            DeltaKind::Same => "same",
        }
    }
}

/// One difference: `len` thin blocks from `begin`. `data` is the data begin of
/// the side that has the mapping (the left one for `same` and `different`),
/// `right_data` the right side's for `different`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delta {
    /// DeltaKind of difference.
    pub kind: DeltaKind,
    /// First thin block.
    pub begin: u64,
    /// Number of thin blocks.
    pub len: u64,
    /// Data begin (left side when both have it).
    pub data: u64,
    /// Right data begin for `different`, else equal to `data`.
    pub right_data: u64,
}

/// How the two trees are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walk {
    /// One walk over both roots: a node the two trees share is read once.
    Together,
    /// Each tree read completely on its own, as thin-provisioning-tools does
    /// (the baseline of the benchmark in benches/delta_walk.rs).
    PerSide,
}

/// Computes the coalesced deltas between the trees rooted at `root1` and
/// `root2`: runs per side, merged, then joined.
///
/// # Errors
/// A damaged node in either tree.
pub fn diff(
    dev: &dyn BlockDevice,
    root1: BlockNr,
    root2: BlockNr,
) -> Result<Vec<Delta>, DeltaError> {
    diff_walking(dev, root1, root2, Walk::Together)
}

/// As [`diff`], reading the trees as `walk` says.
///
/// # Errors
/// A damaged node in either tree.
pub fn diff_walking(
    dev: &dyn BlockDevice,
    root1: BlockNr,
    root2: BlockNr,
    walk: Walk,
) -> Result<Vec<Delta>, DeltaError> {
    let mut out = Vec::new();
    match walk {
        Walk::Together => {
            let runs = LeafRuns::read(dev, &[root1, root2])?;
            // Each delta ends where a run of one side ends or the other
            // side's next run begins: at most twice the runs. Reserved once,
            // the list is never moved while it grows.
            out.reserve(2 * (runs.nr_runs(root1) + runs.nr_runs(root2)));
            merge_coalesced(runs.side(root1), runs.side(root2), |d| out.push(d));
        }
        Walk::PerSide => {
            let left: Vec<Run> = LeafRuns::read(dev, &[root1])?.side(root1).collect();
            let right = LeafRuns::read(dev, &[root2])?;
            merge_coalesced(left.into_iter(), right.side(root2), |d| out.push(d));
        }
    }
    Ok(out)
}

/// As [`diff`], but without joining touching deltas of one kind (step 3), so
/// that every delta's data begins hold for the whole of it, as a tool that
/// copies the data needs (thin_send).
///
/// # Errors
/// A damaged node in either tree.
pub fn diff_runs(
    dev: &dyn BlockDevice,
    root1: BlockNr,
    root2: BlockNr,
) -> Result<Vec<Delta>, DeltaError> {
    // One walk over both roots: a leaf the sides share is read once.
    let runs = LeafRuns::read(dev, &[root1, root2])?;
    let mut out = Vec::new();
    merge(runs.side(root1), runs.side(root2), |d| out.push(d));
    Ok(out)
}

/// A run as stored for a leaf: the thin block, and the data block (at most
/// 40 bits, as mapping values hold it) with the length (at most a leaf's
/// entries) packed in one word: 16 bytes instead of a [`Run`]'s 24.
#[derive(Clone, Copy)]
struct StoredRun {
    thin: u64,
    data_len: u64,
}

/// Bits of [`StoredRun::data_len`] holding the length.
const STORED_LEN_BITS: u32 = 24;

impl StoredRun {
    fn pack(r: Run) -> StoredRun {
        debug_assert!(r.len < 1 << STORED_LEN_BITS && r.data < 1 << (64 - STORED_LEN_BITS));
        StoredRun {
            thin: r.thin,
            data_len: r.data << STORED_LEN_BITS | r.len,
        }
    }

    fn unpack(self) -> Run {
        Run {
            thin: self.thin,
            data: self.data_len >> STORED_LEN_BITS,
            len: self.data_len & ((1 << STORED_LEN_BITS) - 1),
        }
    }
}

/// The runs of a chunk of leaves, as read: where each leaf's runs start
/// (one more entry than leaves), then all of them.
type ChunkRuns = (Vec<u32>, Vec<StoredRun>);

/// Leaves per parallel task when the leaves are read.
const LEAF_TASK: usize = 256;

/// Every distinct leaf of some trees and its runs, kept in the chunks they
/// were read in (no allocation per leaf, no copy into one list).
struct LeafRuns {
    /// Each root given and its leaves, left to right.
    lists: Vec<(BlockNr, Vec<BlockNr>)>,
    /// The distinct leaves, ascending; leaf `i` is entry `i % LEAF_TASK` of
    /// chunk `i / LEAF_TASK`.
    leaves: Vec<BlockNr>,
    chunks: Vec<ChunkRuns>,
}

impl LeafRuns {
    /// Lists the leaves under `roots` with one walk of the internal levels,
    /// then reads each distinct leaf once, in block order, on all cores.
    fn read(dev: &dyn BlockDevice, roots: &[BlockNr]) -> Result<LeafRuns, DeltaError> {
        let mut walker = Walker::new(dev);
        let unread = walker.walk_to_leaf_parents(roots, MAPPING_VALUE_SIZE);
        let graph = walker.graph();
        let mut lists = Vec::with_capacity(roots.len());
        for &root in roots {
            let mut bad = None;
            let leaves = unread.leaves_of(graph, root, |block, kind| {
                bad.get_or_insert(NodeError { block, kind });
            });
            if let Some(err) = bad.or_else(|| graph.link_errors.first().copied()) {
                return Err(DeltaError::Tree { root, err });
            }
            lists.push((root, leaves));
        }
        let mut leaves: Vec<BlockNr> = lists.iter().flat_map(|(_, l)| l.iter().copied()).collect();
        leaves.sort_unstable();
        leaves.dedup();
        let reader = DeviceLeaves::checked(dev, &unread);
        let parts: Vec<Result<ChunkRuns, NodeError>> = leaves
            .par_chunks(LEAF_TASK)
            .map(|chunk| {
                let mut start = Vec::with_capacity(chunk.len() + 1);
                start.push(0u32);
                let mut runs = Vec::new();
                reader.read_leaves(chunk, &mut |_, keys, values| {
                    push_leaf_runs(keys, values, &mut runs);
                    start.push(u32::try_from(runs.len()).unwrap_or(u32::MAX));
                })?;
                Ok((start, runs))
            })
            .collect();
        let mut out = LeafRuns {
            lists,
            leaves,
            chunks: Vec::with_capacity(parts.len()),
        };
        for part in parts {
            let part = part.map_err(|err| out.leaf_error(err))?;
            out.chunks.push(part);
        }
        Ok(out)
    }

    /// A damaged leaf, named with the first root that holds it.
    fn leaf_error(&self, err: NodeError) -> DeltaError {
        let root = self
            .lists
            .iter()
            .find(|(_, l)| l.contains(&err.block))
            .map_or(0, |&(r, _)| r);
        DeltaError::Tree { root, err }
    }

    fn list(&self, root: BlockNr) -> &[BlockNr] {
        self.lists
            .iter()
            .find(|(r, _)| *r == root)
            .map_or(&[][..], |(_, l)| l.as_slice())
    }

    /// The runs of distinct leaf `i`.
    fn runs_of(&self, i: usize) -> &[StoredRun] {
        let (start, runs) = &self.chunks[i / LEAF_TASK];
        let j = i % LEAF_TASK;
        &runs[start[j] as usize..start[j + 1] as usize]
    }

    /// How many runs the leaves of `root` hold (each leaf once per place it
    /// appears in the tree).
    fn nr_runs(&self, root: BlockNr) -> usize {
        self.list(root)
            .iter()
            .filter_map(|leaf| self.leaves.binary_search(leaf).ok())
            .map(|i| self.runs_of(i).len())
            .sum()
    }

    /// All runs of the tree under `root`, left to right, joining runs that
    /// continue across a leaf boundary; read from the chunks as needed.
    fn side(&self, root: BlockNr) -> Joined<impl Iterator<Item = Run> + '_> {
        let runs = self
            .list(root)
            .iter()
            .filter_map(|leaf| self.leaves.binary_search(leaf).ok())
            .flat_map(|i| self.runs_of(i).iter().map(|r| r.unpack()));
        Joined(runs.peekable())
    }
}

/// Runs with each run joined to the following ones that continue it (in
/// the thin and in the data device).
struct Joined<I: Iterator<Item = Run>>(std::iter::Peekable<I>);

impl<I: Iterator<Item = Run>> Iterator for Joined<I> {
    type Item = Run;

    fn next(&mut self) -> Option<Run> {
        let mut cur = self.0.next()?;
        while let Some(n) = self.0.next_if(|n| {
            cur.thin.checked_add(cur.len) == Some(n.thin)
                && cur.data.checked_add(cur.len) == Some(n.data)
        }) {
            cur.len += n.len;
        }
        Some(cur)
    }
}

/// Appends the runs of one leaf, in key order.
fn push_leaf_runs(keys: &[U64], values: &[U64], runs: &mut Vec<StoredRun>) {
    let mut cur: Option<Run> = None;
    for (k, v) in keys.iter().zip(values) {
        let thin = k.get();
        let data = BlockTime::unpack(v.get()).block;
        if let Some(r) = &mut cur {
            if r.extend(thin, data) {
                continue;
            }
            runs.push(StoredRun::pack(*r));
        }
        cur = Some(Run { thin, data, len: 1 });
    }
    if let Some(r) = cur {
        runs.push(StoredRun::pack(r));
    }
}

/// A run list being consumed from the front.
struct Stream<I: Iterator<Item = Run>> {
    rest: I,
    cur: Option<Run>,
}

impl<I: Iterator<Item = Run>> Stream<I> {
    fn new(mut runs: I) -> Self {
        let cur = runs.next();
        Stream { rest: runs, cur }
    }

    /// Drops `len` blocks from the current run (at most its length).
    fn consume(&mut self, len: u64) {
        if let Some(c) = &mut self.cur {
            if len >= c.len {
                self.cur = self.rest.next();
            } else {
                c.thin += len;
                c.data += len;
                c.len -= len;
            }
        }
    }
}

/// Merges two sorted run lists into deltas.
fn merge(
    left: impl Iterator<Item = Run>,
    right: impl Iterator<Item = Run>,
    mut emit: impl FnMut(Delta),
) {
    let mut l = Stream::new(left);
    let mut r = Stream::new(right);
    while let (Some(lr), Some(rr)) = (l.cur, r.cur) {
        let one = |kind, run: Run, len| Delta {
            kind,
            begin: run.thin,
            len,
            data: run.data,
            right_data: run.data,
        };
        if lr.thin < rr.thin {
            let len = lr.len.min(rr.thin - lr.thin);
            emit(one(DeltaKind::LeftOnly, lr, len));
            l.consume(len);
        } else if rr.thin < lr.thin {
            let len = rr.len.min(lr.thin - rr.thin);
            emit(one(DeltaKind::RightOnly, rr, len));
            r.consume(len);
        } else {
            let len = lr.len.min(rr.len);
            let kind = if lr.data == rr.data {
                DeltaKind::Same
            } else {
                DeltaKind::Different
            };
            emit(Delta {
                kind,
                begin: lr.thin,
                len,
                data: lr.data,
                right_data: rr.data,
            });
            l.consume(len);
            r.consume(len);
        }
    }
    drain(l, DeltaKind::LeftOnly, &mut emit);
    drain(r, DeltaKind::RightOnly, &mut emit);
}

/// Emits what is left of one side as deltas of `kind`.
fn drain(mut s: Stream<impl Iterator<Item = Run>>, kind: DeltaKind, emit: &mut impl FnMut(Delta)) {
    while let Some(c) = s.cur {
        emit(Delta {
            kind,
            begin: c.thin,
            len: c.len,
            data: c.data,
            right_data: c.data,
        });
        s.consume(c.len);
    }
}

/// Joins consecutive deltas of one kind whose thin ranges touch; the
/// joined delta keeps the data begins of its first piece.
#[derive(Default)]
struct Coalescer {
    cur: Option<Delta>,
}

/// [`merge`] with touching deltas of one kind joined (see [`Coalescer`]).
fn merge_coalesced(
    left: impl Iterator<Item = Run>,
    right: impl Iterator<Item = Run>,
    mut emit: impl FnMut(Delta),
) {
    let mut co = Coalescer::default();
    merge(left, right, |d| co.push(d, &mut emit));
    co.finish(&mut emit);
}

impl Coalescer {
    /// Joins `d` to the delta being built, or hands that one to `out` and
    /// starts anew from `d`.
    fn push(&mut self, d: Delta, out: &mut impl FnMut(Delta)) {
        if let Some(c) = &mut self.cur {
            if c.kind == d.kind && c.begin.checked_add(c.len) == Some(d.begin) {
                c.len += d.len;
                return;
            }
            out(*c);
        }
        self.cur = Some(d);
    }

    fn finish(&mut self, out: &mut impl FnMut(Delta)) {
        if let Some(c) = self.cur.take() {
            out(c);
        }
    }
}

/// Output flavour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// One self-closing element per delta.
    Simple,
    /// Grouped `<range>` elements with data block numbers.
    Verbose,
}

/// Writes the whole document, without a trailing newline.
///
/// # Errors
/// Write failures.
pub fn write_xml(
    w: &mut dyn Write,
    sb: &Superblock,
    sides: (Side, Side),
    deltas: &dyn DeltaSource,
    style: Style,
) -> io::Result<()> {
    write!(
        w,
        "<superblock uuid=\"\" time=\"{}\" transaction=\"{}\"",
        sb.time, sb.trans_id
    )?;
    if sb.needs_check() {
        w.write_all(b" flags=\"1\"")?;
    }
    writeln!(
        w,
        " data_block_size=\"{}\" nr_data_blocks=\"{}\">",
        sb.data_block_size, sb.data_sm_root.nr_blocks
    )?;
    let side_attr = |s: Side, name: &str| match s {
        Side::Thin(id) => format!("{name}=\"{id}\""),
        Side::Root(b) => format!("{name}_root=\"{b}\""),
    };
    writeln!(
        w,
        "  <diff {} {}>",
        side_attr(sides.0, "left"),
        side_attr(sides.1, "right")
    )?;
    match style {
        Style::Simple => write_simple(w, deltas)?,
        Style::Verbose => write_verbose(w, deltas)?,
    }
    w.write_all(b"  </diff>\n</superblock>")
}

/// Bytes of output gathered before each write.
const OUT_CHUNK: usize = 256 * 1024;

/// Runs `write` on each delta until one fails; that failure is the result.
fn write_each(
    deltas: &dyn DeltaSource,
    mut write: impl FnMut(&Delta) -> io::Result<()>,
) -> io::Result<()> {
    let mut result = Ok(());
    deltas.for_each_delta(&mut |d| {
        if result.is_ok() {
            result = write(&d);
        }
    });
    result
}

/// One `<kind begin=".." length=".."/>` line per delta, numbers formatted
/// straight into a reused buffer.
fn write_simple(w: &mut dyn Write, deltas: &dyn DeltaSource) -> io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(OUT_CHUNK + 256);
    write_each(deltas, |d| {
        buf.extend_from_slice(b"    <");
        buf.extend_from_slice(d.kind.tag().as_bytes());
        buf.extend_from_slice(b" begin=\"");
        push_num(&mut buf, d.begin);
        buf.extend_from_slice(b"\" length=\"");
        push_num(&mut buf, d.len);
        buf.extend_from_slice(b"\"/>\n");
        if buf.len() >= OUT_CHUNK {
            w.write_all(&buf)?;
            buf.clear();
        }
        Ok(())
    })?;
    w.write_all(&buf)
}

fn write_verbose(w: &mut dyn Write, deltas: &dyn DeltaSource) -> io::Result<()> {
    let mut group: Option<DeltaKind> = None;
    write_each(deltas, |d| {
        if group != Some(d.kind) {
            if let Some(g) = group {
                writeln!(w, "    </{}>", g.tag())?;
            }
            writeln!(w, "    <{}>", d.kind.tag())?;
            group = Some(d.kind);
        }
        if d.kind == DeltaKind::Different {
            writeln!(
                w,
                "      <range begin=\"{}\" left_data_begin=\"{}\" right_data_begin=\"{}\" length=\"{}\"/>",
                d.begin, d.data, d.right_data, d.len
            )
        } else {
            writeln!(
                w,
                "      <range begin=\"{}\" data_begin=\"{}\" length=\"{}\"/>",
                d.begin, d.data, d.len
            )
        }
    })?;
    if let Some(g) = group {
        writeln!(w, "    </{}>", g.tag())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(thin: u64, data: u64, len: u64) -> Run {
        Run { thin, data, len }
    }

    fn deltas(left: &[Run], right: &[Run]) -> Vec<(DeltaKind, u64, u64)> {
        let mut out = Vec::new();
        merge_coalesced(left.iter().copied(), right.iter().copied(), |d| {
            out.push(d);
        });
        out.iter().map(|d| (d.kind, d.begin, d.len)).collect()
    }

    #[test]
    fn overlapping_runs_split_into_left_only_same_and_right_only() {
        let got = deltas(&[r(0, 10, 6)], &[r(4, 14, 6)]);
        assert_eq!(
            got,
            vec![
                (DeltaKind::LeftOnly, 0, 4),
                (DeltaKind::Same, 4, 2),
                (DeltaKind::RightOnly, 6, 4)
            ]
        );
    }

    #[test]
    fn same_pieces_with_different_data_runs_coalesce_by_thin_block() {
        // Left: 0..2 -> 10.., 2..4 -> 50..; right identical: two runs, one `same`.
        let got = deltas(&[r(0, 10, 2), r(2, 50, 2)], &[r(0, 10, 2), r(2, 50, 2)]);
        assert_eq!(got, vec![(DeltaKind::Same, 0, 4)]);
        // A gap in thin blocks keeps them apart.
        let got = deltas(&[r(0, 10, 2), r(3, 50, 2)], &[r(0, 10, 2), r(3, 50, 2)]);
        assert_eq!(got, vec![(DeltaKind::Same, 0, 2), (DeltaKind::Same, 3, 2)]);
    }

    #[test]
    fn different_data_is_different() {
        let got = deltas(&[r(0, 32, 32)], &[r(0, 38, 4)]);
        assert_eq!(
            got,
            vec![(DeltaKind::Different, 0, 4), (DeltaKind::LeftOnly, 4, 28)]
        );
    }

    #[test]
    fn verbose_groups_reopen_when_the_kind_changes() {
        let sb = Superblock::fresh(1, 2, 128);
        let ds = [
            Delta {
                kind: DeltaKind::LeftOnly,
                begin: 0,
                len: 2,
                data: 10,
                right_data: 10,
            },
            Delta {
                kind: DeltaKind::Different,
                begin: 2,
                len: 1,
                data: 3,
                right_data: 7,
            },
        ];
        let mut out = Vec::new();
        write_xml(
            &mut out,
            &sb,
            (Side::Thin(1), Side::Root(9)),
            &ds.to_vec(),
            Style::Verbose,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("  <diff left=\"1\" right_root=\"9\">\n    <left_only>\n      <range begin=\"0\" data_begin=\"10\" length=\"2\"/>\n    </left_only>\n    <different>\n      <range begin=\"2\" left_data_begin=\"3\" right_data_begin=\"7\" length=\"1\"/>\n    </different>\n  </diff>\n</superblock>"), "{text}");
    }
}
