//! thin_dump's engine: binary thin metadata out as XML or human-readable
//! text.
//!
//! Order of work: open the input, choose the superblock (live or metadata
//! snapshot), open `-o` only then, read the details and top-level trees, pair
//! devices by id, walk the selected devices' mapping trees with the one
//! walker (any damaged node is fatal), plan defs/refs from the leaf lists
//! ([`SharingPlan`]) and let the emitter ([`crate::thin::ir::emit`]) stream
//! the document into the chosen sink.

pub mod output;

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::PathBuf;
use std::time::Instant;

use crate::pdata::block::{Block, BlockNr};
use crate::pdata::btree::node::{NodeError, NodeErrorKind};
use crate::pdata::btree::walk::{UnreadLeaves, Walker};
use crate::pdata::io::{open_metadata, Access, BlockDevice, FileDevice, OpenError, Sharing};
use crate::progress::{Counter, Log, Progress, Unit, Verbosity};
use crate::thin::ir::emit::{emit, DeviceLeaves, LeafFn, LeafReader};
use crate::thin::ir::human::HumanWriter;
use crate::thin::ir::sharing_plan::{Segment, SharingError, SharingPlan};
use crate::thin::ir::xml::write::XmlWriter;
use crate::thin::ir::{DeviceInfo, IrError, SuperblockInfo};
use crate::thin::model::device_details::DeviceDetails;
use crate::thin::model::mapping::MAPPING_VALUE_SIZE;
use crate::thin::model::open::{
    choose_superblock, read_details, read_top_level, ChosenSuperblock, OpenSnapError, ReadError,
    SnapshotChoice,
};
use crate::thin::model::superblock::{Superblock, SuperblockError, NEEDS_CHECK};

pub use crate::thin::ir::Overrides;

/// Output format (`-f`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// thin_dump XML (the default; thin_restore reads it).
    Xml,
    /// Indented text for people.
    HumanReadable,
}

/// How shared leaves are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedLeaves {
    /// Leaves shared by several devices written once as a `<def>` and
    /// referenced by `<ref>`, exactly where upstream thin_dump puts them.
    DefRef,
    /// `--expand-shared`: every device in full.
    Expanded,
}

/// Whether the mapping trees are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mappings {
    /// Read and write every mapping.
    Dump,
    /// `--skip-mappings`: devices only.
    Skip,
}

/// thin_dump's options in typed form (also what `--repair` receives).
#[derive(Clone, Debug)]
pub struct DumpOptions {
    /// Binary metadata to read.
    pub input: PathBuf,
    /// `-o`, or stdout.
    pub output: Option<PathBuf>,
    /// `-f`.
    pub format: Format,
    /// `-m[=BLOCKNR]`, or the live superblock.
    pub snapshot: SnapshotChoice,
    /// `--dev-id` values (None = every device).
    pub dev_ids: Option<BTreeSet<u64>>,
    /// `--skip-mappings`.
    pub mappings: Mappings,
    /// `--expand-shared`.
    pub shared: SharedLeaves,
    /// Superblock overrides.
    pub overrides: Overrides,
    /// `-q`.
    pub quiet: bool,
    /// Number of `-v`.
    pub verbose: u8,
}

/// Why a dump failed, worded as thin_dump prints it.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// The input (or a missing `-o` path under /dev) could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The chosen superblock could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The `-o` file could not be opened or created.
    #[error("{path}: {err}")]
    Output {
        /// The path given.
        path: String,
        /// What the OS said.
        err: io::Error,
    },
    /// A damaged node in a tree that is read (names the block).
    #[error("{}", node_error_message(.0))]
    Node(NodeError),
    /// The mapping trees share leaves in a way no def/ref plan can express.
    #[error("planning shared leaves: {0}")]
    Plan(SharingError),
    /// Writing the document failed.
    #[error(transparent)]
    Ir(IrError),
}

impl From<IrError> for DumpError {
    fn from(e: IrError) -> Self {
        match e {
            IrError::Leaf(ne) => DumpError::Node(ne),
            other => DumpError::Ir(other),
        }
    }
}

impl DumpError {
    /// True when the output was a pipe whose reader went away.
    #[must_use]
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, DumpError::Ir(e) if e.is_broken_pipe())
    }
}

/// What a finished dump found besides its document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DumpReport {
    /// Ids found in only one of the top-level and details trees (warned
    /// about and left out of the document): the dump is incomplete.
    pub unpaired: Vec<u64>,
}

impl DumpReport {
    /// True when every selected device was written.
    #[must_use]
    pub fn complete(&self) -> bool {
        self.unpaired.is_empty()
    }
}

impl DumpOptions {
    /// The level `-q`/`-v` ask for.
    #[must_use]
    pub fn verbosity(&self) -> Verbosity {
        Verbosity::from_flags(self.quiet, self.verbose)
    }

    /// True when device `id` is to be dumped (`--dev-id`).
    #[must_use]
    pub fn wanted(&self, id: u64) -> bool {
        self.dev_ids.as_ref().is_none_or(|s| s.contains(&id))
    }
}

/// The superblock values a dump prints (before overrides).
#[must_use]
pub fn superblock_info(sb: &Superblock) -> SuperblockInfo {
    SuperblockInfo {
        uuid: String::new(),
        time: sb.time,
        transaction: sb.trans_id,
        flags: sb.flags & NEEDS_CHECK,
        version: sb.version,
        data_block_size: sb.data_block_size,
        nr_data_blocks: sb.data_sm_root.nr_blocks,
        metadata_snap: None,
    }
}

/// A damaged node, worded for the user (the message names the node).
#[must_use]
pub fn node_error_message(e: &NodeError) -> String {
    match e.kind {
        NodeErrorKind::Checksum => format!("checksum failed for node {}", e.block),
        k => format!("{k} in node {}", e.block),
    }
}

/// Opens the destination: `-o FILE` or stdout.
///
/// # Errors
/// See [`output::open_file`].
pub fn open_destination(opts: &DumpOptions) -> Result<output::Output, DumpError> {
    match &opts.output {
        Some(p) => output::open_file(p),
        None => Ok(output::stdout()),
    }
}

/// Writes the whole document in `format` to `out`. The error is converted
/// into the caller's error type `E`.
///
/// # Errors
/// A damaged leaf ([`DumpError::Node`]) or a write failure (EPIPE included).
pub fn write_document<E: From<DumpError>>(
    format: Format,
    sb: &SuperblockInfo,
    devices: &[DeviceInfo],
    plan: &SharingPlan,
    reader: &dyn LeafReader,
    out: output::Output,
) -> Result<(), E> {
    let r: Result<(), DumpError> = match format {
        Format::Xml => emit(sb, devices, plan, reader, &mut XmlWriter::new(out)),
        Format::HumanReadable => emit(sb, devices, plan, reader, &mut HumanWriter::new(out)),
    };
    r.map_err(E::from)
}

/// Words a superblock failure, adding the "never formatted" hint when block 0
/// is all zeroes.
fn superblock_error(dev: &dyn BlockDevice, err: OpenSnapError) -> DumpError {
    let mut never_formatted = false;
    if let OpenSnapError::Live(SuperblockError::Checksum) = err {
        let mut b = Block::zeroed();
        never_formatted = dev.read_at(0, &mut b).is_ok() && b.is_zero();
    }
    DumpError::Read(ReadError::Superblock {
        err,
        never_formatted,
    })
}

/// Dumps healthy metadata as `opts` say; warnings and `-v` lines go to `log`.
/// With `-o`, the mapping leaves written are counted on `progress`.
///
/// # Errors
/// The input, its superblock, the output, a damaged node or a write failure.
pub fn dump(opts: &DumpOptions, log: &Log, progress: &Progress) -> Result<DumpReport, DumpError> {
    let sharing = match opts.snapshot {
        SnapshotChoice::Live => Sharing::Exclusive,
        _ => Sharing::LiveSnapshot,
    };
    let dev: FileDevice = open_metadata(&opts.input, Access::ReadOnly, sharing)?;
    let ChosenSuperblock { sb, warning, .. } =
        choose_superblock(&dev, opts.snapshot).map_err(|e| superblock_error(&dev, e))?;
    if let Some(w) = warning {
        log.warn(w);
    }
    let out = open_destination(opts)?;
    let mut info = superblock_info(&sb);
    opts.overrides.apply(&mut info);
    if opts.mappings == Mappings::Skip {
        let reader = DeviceLeaves::new(&dev);
        let details =
            read_details(&mut Walker::new(&dev), sb.details_root).map_err(DumpError::Node)?;
        let devices: Vec<DeviceInfo> = details
            .iter()
            .filter(|(id, _)| opts.wanted(**id))
            .map(|(&id, d)| device_info(id, d))
            .collect();
        let plan = SharingPlan::expanded(&vec![&[][..]; devices.len()]);
        write_document::<DumpError>(opts.format, &info, &devices, &plan, &reader, out)?;
        return Ok(DumpReport::default());
    }
    let (selected, report) = paired_devices(&dev, &sb, opts, log)?;
    let start = Instant::now();
    let MappingLeaves { lists, unread } =
        mapping_leaves(&dev, &selected).map_err(DumpError::Node)?;
    let reader = DeviceLeaves::checked(&dev, &unread);
    debug_timed(log, start, "mapping trees walked");
    let refs: Vec<&[BlockNr]> = selected.iter().map(|(_, r)| lists[r].as_slice()).collect();
    let plan = match opts.shared {
        SharedLeaves::DefRef => SharingPlan::build(&refs).map_err(DumpError::Plan)?,
        SharedLeaves::Expanded => SharingPlan::expanded(&refs),
    };
    log.info(format_args!(
        "{} devices, {} distinct mapping trees, {} shared runs",
        selected.len(),
        lists.len(),
        plan.defs.len()
    ));
    debug_timed(log, start, "shared runs planned");
    let devices: Vec<DeviceInfo> = selected.iter().map(|(d, _)| *d).collect();
    // On stdout a bar would mix with the document when both are the terminal.
    let counter = match opts.output {
        Some(_) => progress.counter(
            "Dumping",
            Some(leaves_written(&plan)),
            Unit::Items("leaves"),
        ),
        None => Counter::hidden(),
    };
    let counted = CountedLeaves {
        inner: &reader,
        counter: &counter,
    };
    write_document::<DumpError>(opts.format, &info, &devices, &plan, &counted, out)?;
    progress.finish();
    debug_timed(log, start, "document written");
    Ok(report)
}

/// The number of leaves the document reads: every def's once, and the
/// leaves devices hold in place.
fn leaves_written(plan: &SharingPlan) -> u64 {
    let defs: usize = plan.defs.iter().map(|d| d.leaves.len()).sum();
    let in_place: usize = plan
        .devices
        .iter()
        .flatten()
        .map(|s| match s {
            Segment::Leaves(l) => l.len(),
            Segment::Ref(_) => 0,
        })
        .sum();
    (defs + in_place) as u64
}

/// A leaf reader that counts the leaves it has read.
struct CountedLeaves<'a> {
    inner: &'a dyn LeafReader,
    counter: &'a Counter,
}

impl LeafReader for CountedLeaves<'_> {
    fn read_leaves(&self, leaves: &[BlockNr], f: &mut LeafFn<'_>) -> Result<(), NodeError> {
        self.inner.read_leaves(leaves, f)?;
        self.counter.add(leaves.len() as u64);
        Ok(())
    }
}

/// A `-vv` line with the time since `start`.
fn debug_timed(log: &Log, start: Instant, what: &str) {
    log.debug(format_args!("{what}: {} ms", start.elapsed().as_millis()));
}

/// The selected devices present in both the top-level and the details tree,
/// ascending by id, with their mapping roots. An id found in only one tree
/// is warned about and recorded in the report.
fn paired_devices(
    dev: &dyn BlockDevice,
    sb: &Superblock,
    opts: &DumpOptions,
    log: &Log,
) -> Result<(Vec<(DeviceInfo, BlockNr)>, DumpReport), DumpError> {
    let details = read_details(&mut Walker::new(dev), sb.details_root).map_err(DumpError::Node)?;
    let roots = read_top_level(&mut Walker::new(dev), sb.mapping_root).map_err(DumpError::Node)?;
    let ids: BTreeSet<u64> = roots.keys().chain(details.keys()).copied().collect();
    let mut selected = Vec::new();
    let mut report = DumpReport::default();
    for id in ids.into_iter().filter(|&id| opts.wanted(id)) {
        match (roots.get(&id), details.get(&id)) {
            (Some(&root), Some(d)) => selected.push((device_info(id, d), root)),
            (Some(_), None) => {
                log.warn(format_args!("device {id} has no device details"));
                report.unpaired.push(id);
            }
            (None, _) => {
                log.warn(format_args!("device {id} has no mapping tree"));
                report.unpaired.push(id);
            }
        }
    }
    Ok((selected, report))
}

fn device_info(id: u64, d: &DeviceDetails) -> DeviceInfo {
    DeviceInfo {
        dev_id: id,
        mapped_blocks: d.mapped_blocks,
        transaction: d.transaction_id,
        creation_time: d.creation_time,
        snap_time: d.snapshotted_time,
    }
}

/// The leaves of the dumped mapping trees, listed by the walk but not yet
/// read.
pub struct MappingLeaves {
    /// Each distinct root's leaves, left to right.
    pub lists: HashMap<BlockNr, Vec<BlockNr>>,
    /// The bounds the leaves must be checked against when they are read.
    pub unread: UnreadLeaves,
}

/// Walks the internal levels of the mapping trees of `devices` and returns
/// each distinct root's leaves, left to right. Any damaged internal node is
/// an error; the leaves are checked when they are read
/// ([`DeviceLeaves::checked`]).
///
/// # Errors
/// The first damaged node, in device order, then structural errors.
pub fn mapping_leaves(
    dev: &dyn BlockDevice,
    devices: &[(DeviceInfo, BlockNr)],
) -> Result<MappingLeaves, NodeError> {
    let mut roots: Vec<BlockNr> = devices.iter().map(|&(_, r)| r).collect();
    roots.sort_unstable();
    roots.dedup();
    let mut walker = Walker::new(dev);
    let unread = walker.walk_to_leaf_parents(&roots, MAPPING_VALUE_SIZE);
    let graph = walker.graph();
    let mut lists: HashMap<BlockNr, Vec<BlockNr>> = HashMap::with_capacity(roots.len());
    for &(_, root) in devices {
        if lists.contains_key(&root) {
            continue;
        }
        let mut err = None;
        let leaves = unread.leaves_of(graph, root, |block, kind| {
            err.get_or_insert(NodeError { block, kind });
        });
        if let Some(e) = err {
            return Err(e);
        }
        lists.insert(root, leaves);
    }
    if let Some(e) = graph.link_errors.first() {
        return Err(*e);
    }
    Ok(MappingLeaves { lists, unread })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdata::checksum::{write_checksum, BlockKind};
    use crate::thin::engines::repair::test_images::{corrupt, entries, pool, read, superblock};

    /// Device 0 has two levels (a root over many leaves), device 1 a root
    /// that is a leaf, device 2 is empty.
    fn roots(dev: &dyn BlockDevice) -> Vec<BlockNr> {
        let sb = superblock_of(dev);
        let top = read_top_level(&mut Walker::new(dev), sb.mapping_root).unwrap();
        top.values().copied().collect()
    }

    fn superblock_of(dev: &dyn BlockDevice) -> Superblock {
        crate::thin::model::superblock::read_superblock(dev, 0)
            .unwrap()
            .0
    }

    fn keys_read(reader: &DeviceLeaves, leaves: &[BlockNr]) -> Result<Vec<u64>, NodeError> {
        let mut keys = Vec::new();
        reader.read_leaves(leaves, &mut |_, k, _| {
            keys.extend(k.iter().map(|k| k.get()))
        })?;
        Ok(keys)
    }

    #[test]
    fn leaves_listed_without_reading_them_match_a_full_walk() {
        let dev = pool(&[(0, 9_000), (1, 100), (2, 0)]);
        let _ = superblock(&dev);
        let roots = roots(&dev);
        let mut full = Walker::new(&dev);
        full.walk(&roots, MAPPING_VALUE_SIZE, |_, _| (), |_, ()| {});
        let mut above = Walker::new(&dev);
        let unread = above.walk_to_leaf_parents(&roots, MAPPING_VALUE_SIZE);
        let none = |b, k| panic!("node {b}: {k:?}");
        let first = full.graph().leaves_of(roots[0], none);
        assert!(first.len() > 10, "{} leaves", first.len());
        assert_eq!(
            unread.len(),
            first.len(),
            "only device 0's leaves are unread"
        );
        for &r in &roots {
            let want = full.graph().leaves_of(r, none);
            assert_eq!(unread.leaves_of(above.graph(), r, none), want);
            let keys = keys_read(&DeviceLeaves::checked(&dev, &unread), &want).unwrap();
            assert_eq!(keys, keys_read(&DeviceLeaves::new(&dev), &want).unwrap());
        }
        assert_eq!(
            above.graph().len(),
            1 + 1 + 1,
            "two internal roots, one leaf root"
        );
    }

    #[test]
    fn an_unread_leaf_is_checked_when_it_is_read() {
        let dev = pool(&[(0, 9_000)]);
        let root = roots(&dev)[0];
        let parent = entries(&dev, root);
        let (key, leaf) = parent[1];
        // A first key below the parent's key for the leaf: the walk would
        // report a key range error on the leaf.
        let mut b = read(&dev, leaf);
        b.0[32..40].copy_from_slice(&(key - 1).to_le_bytes());
        write_checksum(&mut b.0, BlockKind::Node);
        dev.write_at(leaf, &b).unwrap();
        let mut w = Walker::new(&dev);
        let unread = w.walk_to_leaf_parents(&[root], MAPPING_VALUE_SIZE);
        let leaves = unread.leaves_of(w.graph(), root, |b, k| panic!("{b}: {k:?}"));
        let reader = DeviceLeaves::checked(&dev, &unread);
        let err = keys_read(&reader, &leaves).unwrap_err();
        assert_eq!((err.block, err.kind), (leaf, NodeErrorKind::KeyRange));
        let (_, other) = parent[2];
        corrupt(&dev, other);
        let err = keys_read(&reader, &leaves[2..]).unwrap_err();
        assert_eq!((err.block, err.kind), (other, NodeErrorKind::Checksum));
    }
}
