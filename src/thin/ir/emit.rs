//! The emitter: a [`SharingPlan`] plus the contents of its leaves become IR
//! events for any [`ChunkSink`]: the shared runs first (each as a def), then
//! every device in order, its own runs and refs to the defs it shares.
//!
//! Work is cut into *chunks* of a few hundred leaves. Each chunk is read and
//! turned into runs on a worker thread: its first and last runs are kept
//! aside, the runs in between are rendered into a fragment at once. The
//! calling thread then walks the document in order, joining the boundary runs
//! of neighbouring chunks of the same group (a run may cross leaves and
//! chunks, never a `<ref>` or the end of a def) and splicing the fragments.
//! Chunks are processed a window at a time, so memory stays bounded, and the
//! next window is rendered while the previous one is written.

use std::io;

use rayon::prelude::*;
use zerocopy::little_endian::U64;

use crate::pdata::block::{Block, BlockNr};
use crate::pdata::btree::node::{NodeError, NodeErrorKind, NodeRef};
use crate::pdata::btree::walk::UnreadLeaves;
use crate::pdata::io::{read_sorted, BlockDevice};
use crate::thin::ir::sharing_plan::{Segment, SharingPlan};
use crate::thin::ir::{ChunkSink, DeviceInfo, IrError, Map, SuperblockInfo, Visit};
use crate::thin::model::mapping::TIME_BITS;

/// Leaves per chunk (the unit of parallel work).
const CHUNK_LEAVES: usize = 128;
/// Leaves per window (bounds the memory of rendered fragments).
const WINDOW_LEAVES: usize = 1024;

/// Receives one leaf: its block number, keys and values.
pub type LeafFn<'f> = dyn FnMut(BlockNr, &[U64], &[U64]) + 'f;

/// Where leaf contents come from.
pub trait LeafReader: Sync {
    /// Calls `f(leaf, keys, values)` for every leaf of `leaves`, in the order
    /// given (the same leaf may appear more than once).
    ///
    /// # Errors
    /// The first leaf that cannot be read or is not a valid mapping leaf.
    fn read_leaves(&self, leaves: &[BlockNr], f: &mut LeafFn<'_>) -> Result<(), NodeError>;
}

/// Reads mapping leaves from a metadata device, coalescing neighbouring
/// blocks into large reads.
pub struct DeviceLeaves<'d> {
    dev: &'d dyn BlockDevice,
    /// Set when the walk left the leaves unread: they are then checked in
    /// full as they are read.
    unread: Option<&'d UnreadLeaves>,
}

impl<'d> DeviceLeaves<'d> {
    /// A reader over `dev` of leaves the walker has already validated (the
    /// header rules are checked again, the checksum is not).
    #[must_use]
    pub fn new(dev: &'d dyn BlockDevice) -> Self {
        DeviceLeaves { dev, unread: None }
    }

    /// A reader of leaves listed by [`crate::pdata::btree::walk::Walker::walk_to_leaf_parents`]:
    /// each is checked as the walk would have (checksum, header, leaf flag,
    /// the key bounds its parents give it).
    #[must_use]
    pub fn checked(dev: &'d dyn BlockDevice, unread: &'d UnreadLeaves) -> Self {
        DeviceLeaves {
            dev,
            unread: Some(unread),
        }
    }

    fn leaf_view<'b>(
        &self,
        nr: BlockNr,
        r: io::Result<&'b Block>,
    ) -> Result<NodeRef<'b>, NodeError> {
        let err = |kind| NodeError { block: nr, kind };
        let block = r.map_err(|_| err(NodeErrorKind::Io))?;
        let Some(unread) = self.unread else {
            let node = NodeRef::parse(&block.0, nr, 8)?;
            return if node.is_leaf() {
                Ok(node)
            } else {
                Err(err(NodeErrorKind::BadFlags))
            };
        };
        let node = NodeRef::new(&block.0, nr, 8)?;
        if !node.is_leaf() {
            return Err(err(NodeErrorKind::BadFlags));
        }
        if let Some(b) = unread.bounds(nr) {
            let keys = node.keys();
            let first = keys.first().map_or(0, |k| k.get());
            let last = keys.last().map_or(0, |k| k.get());
            if !b.admit(keys.len(), first, last) {
                return Err(err(NodeErrorKind::KeyRange));
            }
        }
        Ok(node)
    }
}

impl LeafReader for DeviceLeaves<'_> {
    fn read_leaves(&self, leaves: &[BlockNr], f: &mut LeafFn<'_>) -> Result<(), NodeError> {
        let mut err = None;
        if leaves.windows(2).all(|w| w[0] < w[1]) {
            // The common case (leaves laid out left to right): no copies.
            read_sorted(self.dev, leaves, &mut |nr, r| {
                if err.is_some() {
                    return;
                }
                match self.leaf_view(nr, r) {
                    Ok(n) => f(nr, n.keys(), n.values_u64()),
                    Err(e) => err = Some(e),
                }
            });
            return err.map_or(Ok(()), Err);
        }
        let mut order: Vec<(BlockNr, usize)> =
            leaves.iter().enumerate().map(|(i, &b)| (b, i)).collect();
        order.sort_unstable();
        let mut sorted: Vec<BlockNr> = order.iter().map(|&(b, _)| b).collect();
        sorted.dedup();
        let mut held = Block::zeroed_vec(leaves.len());
        let mut ok = vec![false; leaves.len()];
        let mut k = 0;
        read_sorted(self.dev, &sorted, &mut |nr, r| {
            while k < order.len() && order[k].0 == nr {
                if let Ok(b) = &r {
                    held[order[k].1].0.copy_from_slice(&b.0);
                    ok[order[k].1] = true;
                }
                k += 1;
            }
        });
        for (i, &nr) in leaves.iter().enumerate() {
            let r = if ok[i] {
                Ok(&held[i])
            } else {
                Err(io::Error::other("read failed"))
            };
            let n = self.leaf_view(nr, r)?;
            f(nr, n.keys(), n.values_u64());
        }
        Ok(())
    }
}

/// One step of the document.
#[derive(Clone, Copy)]
enum Step<'p> {
    DefBegin(u64),
    DefEnd,
    DeviceBegin(usize),
    DeviceEnd,
    Ref(u64),
    /// Some consecutive leaves of the current group.
    Chunk(&'p [BlockNr]),
}

fn steps(plan: &SharingPlan, nr_devices: usize) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    for d in &plan.defs {
        out.push(Step::DefBegin(d.name));
        out.extend(d.leaves.chunks(CHUNK_LEAVES).map(Step::Chunk));
        out.push(Step::DefEnd);
    }
    for i in 0..nr_devices {
        out.push(Step::DeviceBegin(i));
        for seg in plan.devices.get(i).map_or(&[][..], Vec::as_slice) {
            match seg {
                Segment::Ref(name) => out.push(Step::Ref(*name)),
                Segment::Leaves(l) => out.extend(l.chunks(CHUNK_LEAVES).map(Step::Chunk)),
            }
        }
        out.push(Step::DeviceEnd);
    }
    out
}

/// A chunk turned into runs: the first and last runs kept aside, the ones
/// in between rendered.
struct ChunkOut<F> {
    head: Option<Map>,
    body: F,
    tail: Option<Map>,
}

fn render_chunk<S: ChunkSink>(
    reader: &dyn LeafReader,
    leaves: &[BlockNr],
) -> Result<ChunkOut<S::Fragment>, NodeError> {
    let mut head: Option<Map> = None;
    let mut cur: Option<Map> = None;
    let mut body = S::fragment(leaves.len());
    reader.read_leaves(leaves, &mut |_, keys, values| {
        for (k, v) in keys.iter().zip(values) {
            let k = k.get();
            let v = v.get();
            let data = v >> TIME_BITS;
            // The mask keeps 24 bits: the cast cannot truncate.
            #[allow(clippy::cast_possible_truncation)]
            let time = (v & ((1 << TIME_BITS) - 1)) as u32;
            if let Some(c) = &mut cur {
                if c.time == time
                    && k.wrapping_sub(c.thin_begin) == c.len
                    && data.wrapping_sub(c.data_begin) == c.len
                {
                    c.len += 1;
                    continue;
                }
                let done = *c;
                if head.is_none() {
                    head = Some(done);
                } else {
                    S::render(&mut body, &done);
                }
            }
            cur = Some(Map {
                thin_begin: k,
                data_begin: data,
                time,
                len: 1,
            });
        }
    })?;
    let tail = match (head, cur) {
        (None, c) => {
            head = c;
            None
        }
        (Some(_), c) => c,
    };
    Ok(ChunkOut { head, body, tail })
}

/// Writes the document for `devices` (paired by index with
/// `plan.devices`) to `sink`, reading leaves through `reader`.
///
/// The error is converted into the caller's error type `E`.
///
/// # Errors
/// A damaged leaf ([`IrError::Leaf`], naming the block) or a sink failure.
pub fn emit<S, E>(
    sb: &SuperblockInfo,
    devices: &[DeviceInfo],
    plan: &SharingPlan,
    reader: &dyn LeafReader,
    sink: &mut S,
) -> Result<(), E>
where
    S: ChunkSink + Send,
    E: From<IrError>,
{
    emit_document(sb, devices, plan, reader, sink).map_err(E::from)
}

fn emit_document<S>(
    sb: &SuperblockInfo,
    devices: &[DeviceInfo],
    plan: &SharingPlan,
    reader: &dyn LeafReader,
    sink: &mut S,
) -> Result<(), IrError>
where
    S: ChunkSink + Send,
{
    if sink.superblock_begin(sb)? == Visit::Stop {
        return Ok(());
    }
    let steps = steps(plan, devices.len());
    let windows = windows(&steps);
    let mut writer = DocWriter {
        sink,
        devices,
        pending: None,
    };
    let mut rendered = render_window::<S>(reader, windows.first().copied().unwrap_or(&[]));
    for (w, window) in windows.iter().enumerate() {
        let next = windows.get(w + 1).copied();
        let (next_rendered, flow) = rayon::join(
            || next.map(|n| render_window::<S>(reader, n)),
            || writer.write_window(window, rendered),
        );
        if flow? == Visit::Stop {
            return Ok(());
        }
        rendered = next_rendered.unwrap_or_default();
    }
    writer.flush_pending()?;
    if writer.sink.superblock_end()? == Visit::Stop {
        return Ok(());
    }
    writer.sink.eof()?;
    Ok(())
}

/// Cuts the steps into windows of about [`WINDOW_LEAVES`] leaves.
fn windows<'s, 'p>(steps: &'s [Step<'p>]) -> Vec<&'s [Step<'p>]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut leaves = 0;
    for (i, s) in steps.iter().enumerate() {
        if let Step::Chunk(l) = s {
            leaves += l.len();
        }
        if leaves >= WINDOW_LEAVES {
            out.push(&steps[start..=i]);
            start = i + 1;
            leaves = 0;
        }
    }
    if start < steps.len() {
        out.push(&steps[start..]);
    }
    out
}

type Rendered<F> = Vec<Result<ChunkOut<F>, NodeError>>;

fn render_window<S: ChunkSink>(
    reader: &dyn LeafReader,
    window: &[Step<'_>],
) -> Rendered<S::Fragment> {
    let chunks: Vec<&[BlockNr]> = window
        .iter()
        .filter_map(|s| match s {
            Step::Chunk(l) => Some(*l),
            _ => None,
        })
        .collect();
    chunks
        .par_iter()
        .with_max_len(1)
        .map(|l| render_chunk::<S>(reader, l))
        .collect()
}

/// The sequential half: events in document order.
struct DocWriter<'a, S> {
    sink: &'a mut S,
    devices: &'a [DeviceInfo],
    /// The open run of the current group.
    pending: Option<Map>,
}

impl<S: ChunkSink> DocWriter<'_, S> {
    fn flush_pending(&mut self) -> Result<Visit, IrError> {
        match self.pending.take() {
            Some(m) => self.sink.map(&m),
            None => Ok(Visit::Continue),
        }
    }

    fn write_window(
        &mut self,
        window: &[Step<'_>],
        rendered: Rendered<S::Fragment>,
    ) -> Result<Visit, IrError> {
        let mut outs = rendered.into_iter();
        for step in window {
            let flow = match *step {
                Step::Chunk(_) => {
                    let Some(out) = outs.next() else {
                        return Err(IrError::ChunkMissing);
                    };
                    self.chunk(out?)?
                }
                other => {
                    if self.flush_pending()? == Visit::Stop {
                        return Ok(Visit::Stop);
                    }
                    self.event(other)?
                }
            };
            if flow == Visit::Stop {
                return Ok(Visit::Stop);
            }
        }
        Ok(Visit::Continue)
    }

    fn event(&mut self, step: Step<'_>) -> Result<Visit, IrError> {
        match step {
            Step::DefBegin(name) => self.sink.def_begin(name),
            Step::DefEnd => self.sink.def_end(),
            Step::DeviceBegin(i) => self.sink.device_begin(&self.devices[i]),
            Step::DeviceEnd => self.sink.device_end(),
            Step::Ref(name) => self.sink.ref_shared(name),
            Step::Chunk(_) => Ok(Visit::Continue),
        }
    }

    fn chunk(&mut self, out: ChunkOut<S::Fragment>) -> Result<Visit, IrError> {
        let Some(head) = out.head else {
            return Ok(Visit::Continue);
        };
        match &mut self.pending {
            Some(p) if p.continued_by(&head) => p.len += head.len,
            _ => {
                if self.flush_pending()? == Visit::Stop {
                    return Ok(Visit::Stop);
                }
                self.pending = Some(head);
            }
        }
        if let Some(tail) = out.tail {
            if self.flush_pending()? == Visit::Stop || self.sink.splice(out.body)? == Visit::Stop {
                return Ok(Visit::Stop);
            }
            self.pending = Some(tail);
        }
        Ok(Visit::Continue)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::thin::ir::sharing_plan::SharedRun;
    use crate::thin::ir::{MetadataVisitor, RunList};

    /// Leaves held in memory: (key, value) pairs per block.
    struct MemLeaves(HashMap<BlockNr, Vec<(u64, u64)>>);

    impl LeafReader for MemLeaves {
        fn read_leaves(&self, leaves: &[BlockNr], f: &mut LeafFn<'_>) -> Result<(), NodeError> {
            for &nr in leaves {
                let entries = self.0.get(&nr).ok_or(NodeError {
                    block: nr,
                    kind: NodeErrorKind::Io,
                })?;
                let keys: Vec<U64> = entries.iter().map(|&(k, _)| U64::new(k)).collect();
                let values: Vec<U64> = entries.iter().map(|&(_, v)| U64::new(v)).collect();
                f(nr, &keys, &values);
            }
            Ok(())
        }
    }

    /// Records events as short strings.
    #[derive(Default)]
    struct Events(Vec<String>);

    impl MetadataVisitor for Events {
        fn superblock_begin(&mut self, _: &SuperblockInfo) -> Result<Visit, IrError> {
            self.0.push("sb".into());
            Ok(Visit::Continue)
        }
        fn superblock_end(&mut self) -> Result<Visit, IrError> {
            self.0.push("/sb".into());
            Ok(Visit::Continue)
        }
        fn def_begin(&mut self, name: u64) -> Result<Visit, IrError> {
            self.0.push(format!("def {name}"));
            Ok(Visit::Continue)
        }
        fn def_end(&mut self) -> Result<Visit, IrError> {
            self.0.push("/def".into());
            Ok(Visit::Continue)
        }
        fn device_begin(&mut self, d: &DeviceInfo) -> Result<Visit, IrError> {
            self.0.push(format!("dev {}", d.dev_id));
            Ok(Visit::Continue)
        }
        fn device_end(&mut self) -> Result<Visit, IrError> {
            self.0.push("/dev".into());
            Ok(Visit::Continue)
        }
        fn map(&mut self, m: &Map) -> Result<Visit, IrError> {
            self.0.push(format!(
                "{}+{}->{}@{}",
                m.thin_begin, m.len, m.data_begin, m.time
            ));
            Ok(Visit::Continue)
        }
        fn ref_shared(&mut self, name: u64) -> Result<Visit, IrError> {
            self.0.push(format!("ref {name}"));
            Ok(Visit::Continue)
        }
        fn eof(&mut self) -> Result<Visit, IrError> {
            Ok(Visit::Continue)
        }
    }

    fn value(data: u64, time: u64) -> u64 {
        (data << TIME_BITS) | time
    }

    fn run(plan: &SharingPlan, leaves: MemLeaves, nr_devices: u64) -> Vec<String> {
        let devices: Vec<DeviceInfo> = (0..nr_devices)
            .map(|dev_id| DeviceInfo {
                dev_id,
                ..DeviceInfo::default()
            })
            .collect();
        let mut sink = RunList(Events::default());
        emit::<_, IrError>(
            &SuperblockInfo::default(),
            &devices,
            plan,
            &leaves,
            &mut sink,
        )
        .unwrap();
        sink.0 .0
    }

    /// One run crossing 1000 leaves (several chunks and windows) stays one
    /// run; a time change or a ref ends it.
    #[test]
    fn runs_continue_across_leaves_chunks_and_windows() {
        let n = 5000u64;
        let mut map = HashMap::new();
        for leaf in 0..n {
            let entries = (0..10)
                .map(|i| {
                    let k = leaf * 10 + i;
                    (k, value(k + 7, u64::from(k >= 20_000)))
                })
                .collect();
            map.insert(100 + leaf, entries);
        }
        map.insert(1, vec![(50_000, value(50_000 + 7, 1))]);
        let plan = SharingPlan {
            defs: vec![SharedRun {
                name: 1,
                leaves: vec![1],
            }],
            devices: vec![
                vec![Segment::Leaves((100..100 + n).collect()), Segment::Ref(1)],
                vec![],
            ],
        };
        let ev = run(&plan, MemLeaves(map), 2);
        assert_eq!(
            ev,
            [
                "sb",
                "def 1",
                "50000+1->50007@1",
                "/def",
                "dev 0",
                "0+20000->7@0",
                "20000+30000->20007@1",
                "ref 1",
                "/dev",
                "dev 1",
                "/dev",
                "/sb"
            ]
        );
    }

    #[test]
    fn a_damaged_leaf_is_reported_with_its_block() {
        let plan = SharingPlan::expanded(&[&[4, 5]]);
        let leaves = MemLeaves(HashMap::from([(4, vec![(0, value(1, 0))])]));
        let devices = [DeviceInfo::default()];
        let mut sink = RunList(Events::default());
        let err = emit::<_, IrError>(
            &SuperblockInfo::default(),
            &devices,
            &plan,
            &leaves,
            &mut sink,
        )
        .unwrap_err();
        let IrError::Leaf(err) = err else {
            panic!("not a leaf error: {err}");
        };
        assert_eq!(
            err,
            NodeError {
                block: 5,
                kind: NodeErrorKind::Io
            }
        );
    }
}
