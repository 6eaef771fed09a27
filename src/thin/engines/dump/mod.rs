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
use crate::pdata::btree::walk::Walker;
use crate::pdata::io::{open_metadata, Access, BlockDevice, FileDevice, OpenError, Sharing};
use crate::progress::{Log, Verbosity};
use crate::thin::ir::emit::{emit, DeviceLeaves, LeafReader};
use crate::thin::ir::human::HumanWriter;
use crate::thin::ir::sharing_plan::{SharingError, SharingPlan};
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
///
/// # Errors
/// The input, its superblock, the output, a damaged node or a write failure.
pub fn dump(opts: &DumpOptions, log: &Log) -> Result<DumpReport, DumpError> {
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
    let reader = DeviceLeaves::new(&dev);
    if opts.mappings == Mappings::Skip {
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
    let lists = mapping_leaves(&dev, &selected).map_err(DumpError::Node)?;
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
    write_document::<DumpError>(opts.format, &info, &devices, &plan, &reader, out)?;
    debug_timed(log, start, "document written");
    Ok(report)
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

/// Walks the mapping trees of `devices` and returns each distinct root's
/// leaves, left to right. Any damaged node is an error.
///
/// # Errors
/// The first damaged node, in device order, then structural errors.
pub fn mapping_leaves(
    dev: &dyn BlockDevice,
    devices: &[(DeviceInfo, BlockNr)],
) -> Result<HashMap<BlockNr, Vec<BlockNr>>, NodeError> {
    let mut roots: Vec<BlockNr> = devices.iter().map(|&(_, r)| r).collect();
    roots.sort_unstable();
    roots.dedup();
    let mut walker = Walker::new(dev);
    walker.walk(&roots, MAPPING_VALUE_SIZE, |_, _| (), |_, ()| {});
    let graph = walker.graph();
    let mut lists: HashMap<BlockNr, Vec<BlockNr>> = HashMap::with_capacity(roots.len());
    for &(_, root) in devices {
        if lists.contains_key(&root) {
            continue;
        }
        let mut err = None;
        let leaves = graph.leaves_of(root, |block, kind| {
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
    Ok(lists)
}
