//! thin_shrink: make an inactive pool fit a smaller data device. Every data
//! block mapped at or above the new size is copied into a block below it
//! that no device maps, and new metadata (XML, or binary) is written in
//! which those blocks are mapped at their new places and the data size is
//! the new size.
//!
//! It is an IR→IR transform. The source (the XML reader, or the binary
//! metadata read the way thin_dump reads it) drives the visitors of
//! [`plan`] twice: the first pass collects the mapped blocks, the second
//! rewrites the mappings in front of the sink (the XML writer, or the binary
//! metadata writer). A block shared by several devices (a `<def>` or a
//! shared leaf) is one block of the plan: it is copied once and every device
//! that maps it is rewritten to its one new place.
//!
//! Order of work, chosen so that a crash at any point leaves the input
//! metadata describing the pool correctly:
//! 1. read the input and make the plan; refuse, having changed nothing, when
//!    the mapped blocks do not fit below the new size;
//! 2. open the data device and check that it holds every mapped block;
//! 3. copy the moved blocks into blocks the input does not map, then
//!    fdatasync the data device;
//! 4. only then write the new metadata to the output (and sync it).
//!
//! The input is never written. Rerunning the same command after a crash
//! makes the same plan (it depends on the mapped blocks alone) and copies
//! the same blocks to the same places again.

pub mod copy;
pub mod names;
pub mod plan;

use std::fs::File;
use std::io::{self, BufWriter};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::pdata::btree::node::NodeError;
use crate::pdata::btree::walk::UnreadLeaves;
use crate::pdata::io::{open_output, OpenError};
use crate::progress::{Display, Log, Progress};
use crate::thin::engines::dump::{mapping_leaves, superblock_info, MappingLeaves};
use crate::thin::ir::emit::{emit, DeviceLeaves};
use crate::thin::ir::metadata_writer::{Overrides, ThinWriter};
use crate::thin::ir::sharing_plan::{SharingError, SharingPlan};
use crate::thin::ir::xml::lexer::LexError;
use crate::thin::ir::xml::read::read_xml;
use crate::thin::ir::xml::write::XmlWriter;
use crate::thin::ir::{DeviceInfo, IrError, MetadataVisitor, RunList, SuperblockInfo};
use crate::thin::model::open::{devices, open_for_reading, ReadError, SnapshotChoice};

use copy::{DataDevice, DataError};
use names::DefNames;
use plan::{merge_extents, Insufficient, Plan, Remapper, UsedBlocks};

/// The input and output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// XML in, XML out.
    Xml,
    /// `--binary`: binary metadata in, binary metadata out.
    Binary,
}

/// Whether the data is moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Copy {
    /// Copy the moved blocks (the normal case).
    Data,
    /// `--no-copy`: only rewrite the metadata (for measurements; the data
    /// device then no longer matches it).
    MetadataOnly,
}

/// A shrink to do.
#[derive(Clone, Debug)]
pub struct ShrinkOptions {
    /// `-i`: the metadata to read.
    pub input: PathBuf,
    /// `-o`: the metadata to write.
    pub output: PathBuf,
    /// `--data`: the pool's data device.
    pub data: PathBuf,
    /// `--nr-blocks`: the new size in data blocks.
    pub nr_blocks: u64,
    /// XML or binary.
    pub format: Format,
    /// Copy the data or not.
    pub copy: Copy,
    /// Progress display while copying.
    pub progress: Display,
}

/// What a shrink did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShrinkReport {
    /// The data size before.
    pub nr_blocks_before: u64,
    /// The data size written.
    pub nr_blocks_after: u64,
    /// Distinct data blocks mapped.
    pub used: u64,
    /// Data blocks moved.
    pub blocks_moved: u64,
    /// Contiguous copies made (or planned, with `--no-copy`).
    pub nr_moves: usize,
    /// Bytes per data block.
    pub block_bytes: u64,
}

/// Why a shrink was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ShrinkError {
    /// The XML input path does not exist.
    #[error("Couldn't find input file '{0}'")]
    InputMissing(String),
    /// The XML input is not a regular file or block device (it is read twice).
    #[error("Not a block device or regular file '{0}'.")]
    InputWrongType(String),
    /// Opening or reading a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: io::Error,
    },
    /// The binary input could not be opened or its device trees read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A mapping tree of the binary input is damaged.
    #[error("mapping tree: {0}")]
    Mapping(NodeError),
    /// The shared leaves of the binary input do not form runs.
    #[error(transparent)]
    Sharing(#[from] SharingError),
    /// The binary output could not be opened.
    #[error(transparent)]
    Output(OpenError),
    /// Two of input, output and data device are the same file.
    #[error("{first} and {second} are the same file ('{path}')")]
    SameFile {
        /// The option naming the first.
        first: &'static str,
        /// The option naming the second.
        second: &'static str,
        /// The path given.
        path: String,
    },
    /// The input ended without a superblock.
    #[error("incomplete source metadata")]
    NoSuperblock,
    /// The new size is larger than the current one.
    #[error("--nr-blocks {nr_blocks} is larger than the pool's {current} data blocks: nothing to shrink")]
    Grow {
        /// The size asked for.
        nr_blocks: u64,
        /// The current size.
        current: u64,
    },
    /// A mapping names a data block outside the data device.
    #[error("data block {block} is mapped but the pool has {nr_data_blocks} data blocks")]
    MappingBeyond {
        /// The highest mapped block of the run.
        block: u64,
        /// The pool's data size.
        nr_data_blocks: u64,
    },
    /// The mapped blocks do not fit below the new size.
    #[error(
        "Insufficient free space: {to_move} mapped data blocks lie at or above block {nr_blocks} \
         but only {free} blocks below it are free ({used} of the pool's blocks are mapped); \
         nothing was changed"
    )]
    Insufficient {
        /// Blocks to move.
        to_move: u64,
        /// Free blocks below the new size.
        free: u64,
        /// Mapped blocks in all.
        used: u64,
        /// The size asked for.
        nr_blocks: u64,
    },
    /// The data device failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A source or sink of the IR failed (input rule broken, write failed).
    #[error(transparent)]
    Metadata(IrError),
    /// The XML input is malformed where its def names were looked for.
    #[error(transparent)]
    DefNames(LexError),
}

/// Shrinks as `opts` says.
///
/// # Errors
/// A [`ShrinkError`]; every refusal happens before anything is written.
pub fn shrink(opts: &ShrinkOptions, log: &Log) -> Result<ShrinkReport, ShrinkError> {
    let input = Input::open(opts)?;
    let mut used = input.drive(UsedBlocks::default())?;
    let sb = used.sb.take().ok_or(ShrinkError::NoSuperblock)?;
    let plan = make_plan(&sb, used.runs, opts.nr_blocks)?;
    let names = input.def_names()?;
    let block_bytes = u64::from(sb.data_block_size) * 512;
    check_distinct(opts)?;
    let data = DataDevice::open(&opts.data)?;
    data.check_holds(plan.highest_end, block_bytes)?;
    let report = ShrinkReport {
        nr_blocks_before: sb.nr_data_blocks,
        nr_blocks_after: opts.nr_blocks,
        used: plan.plan.used,
        blocks_moved: plan.plan.blocks_moved(),
        nr_moves: plan.plan.moves.len(),
        block_bytes,
    };
    let binary_out = match opts.format {
        Format::Binary => Some(open_output(&opts.output).map_err(ShrinkError::Output)?),
        Format::Xml => None,
    };
    if opts.copy == Copy::Data {
        copy_data(&data, &plan.plan, block_bytes, opts.progress, log)?;
    }
    match binary_out {
        Some(out) => {
            let mut writer = ThinWriter::new(&out, Overrides::default());
            input.drive(Remapper::new(
                &plan.plan,
                &names,
                opts.nr_blocks,
                &mut writer,
            ))?;
            for w in writer.take_warnings() {
                log.warn(w);
            }
        }
        None => write_xml(&input, &plan.plan, &names, opts)?,
    }
    log.info(format_args!(
        "moved {} of {} mapped data blocks in {} copies; data size {} -> {} blocks",
        report.blocks_moved, report.used, report.nr_moves, report.nr_blocks_before, opts.nr_blocks
    ));
    Ok(report)
}

/// A plan and the end of the highest mapped block.
struct Checked {
    plan: Plan,
    highest_end: u64,
}

fn make_plan(
    sb: &SuperblockInfo,
    runs: Vec<plan::Extent>,
    nr_blocks: u64,
) -> Result<Checked, ShrinkError> {
    let current = sb.nr_data_blocks;
    if nr_blocks > current {
        return Err(ShrinkError::Grow { nr_blocks, current });
    }
    for r in &runs {
        match r.begin.checked_add(r.len) {
            Some(end) if end <= current => {}
            _ => {
                return Err(ShrinkError::MappingBeyond {
                    block: r.begin.saturating_add(r.len - 1),
                    nr_data_blocks: current,
                })
            }
        }
    }
    let used = merge_extents(runs);
    let highest_end = used.last().map_or(0, |e| e.begin + e.len);
    let plan = Plan::build(&used, nr_blocks).map_err(|Insufficient { to_move, free }| {
        ShrinkError::Insufficient {
            to_move,
            free,
            used: used.iter().map(|e| e.len).sum(),
            nr_blocks,
        }
    })?;
    Ok(Checked { plan, highest_end })
}

fn copy_data(
    data: &DataDevice,
    plan: &Plan,
    block_bytes: u64,
    display: Display,
    log: &Log,
) -> Result<(), ShrinkError> {
    let total = plan.blocks_moved();
    let progress = Progress::new(display);
    progress.phase(&format!("Copying {total} data blocks"));
    let mut shown = 0u64;
    data.copy(&plan.moves, block_bytes, |done| {
        // About a hundred updates over the whole copy.
        if done == total || done - shown >= total.div_ceil(100) {
            progress.phase(&format!("Copying data blocks: {done} of {total}"));
            shown = done;
        }
    })?;
    progress.finish();
    log.debug(format_args!("{total} data blocks copied and flushed"));
    Ok(())
}

fn write_xml(
    input: &Input,
    plan: &Plan,
    names: &DefNames,
    opts: &ShrinkOptions,
) -> Result<(), ShrinkError> {
    let io_err = |source| ShrinkError::Io {
        path: opts.output.display().to_string(),
        source,
    };
    let file = File::create(&opts.output).map_err(io_err)?;
    let mut sink = XmlWriter::new(BufWriter::with_capacity(1 << 20, file));
    input.drive(Remapper::new(plan, names, opts.nr_blocks, &mut sink))?;
    let file = sink
        .into_inner()
        .into_inner()
        .map_err(|e| io_err(e.into_error()))?;
    file.sync_all().map_err(io_err)
}

/// Refuses an output or data device that is the input or each other.
fn check_distinct(opts: &ShrinkOptions) -> Result<(), ShrinkError> {
    let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let (i, o, d) = (id(&opts.input), id(&opts.output), id(&opts.data));
    let same = |a: Option<(u64, u64)>, b: Option<(u64, u64)>| a.is_some() && a == b;
    let err = |first, second, path: &Path| ShrinkError::SameFile {
        first,
        second,
        path: path.display().to_string(),
    };
    if same(i, o) {
        return Err(err("--input", "--output", &opts.output));
    }
    if same(i, d) {
        return Err(err("--input", "--data", &opts.data));
    }
    if same(o, d) {
        return Err(err("--output", "--data", &opts.data));
    }
    Ok(())
}

/// The opened input: an XML file (opened again for each pass) or binary
/// metadata with its trees read once.
enum Input {
    Xml(PathBuf),
    Binary(Box<BinaryInput>),
}

struct BinaryInput {
    dev: crate::pdata::io::FileDevice,
    sb: SuperblockInfo,
    devices: Vec<DeviceInfo>,
    plan: SharingPlan,
    /// The leaves the walk listed without reading them (checked when read).
    unread: UnreadLeaves,
}

impl Input {
    fn open(opts: &ShrinkOptions) -> Result<Input, ShrinkError> {
        match opts.format {
            Format::Xml => {
                check_xml_input(&opts.input)?;
                Ok(Input::Xml(opts.input.clone()))
            }
            Format::Binary => Ok(Input::Binary(Box::new(BinaryInput::open(&opts.input)?))),
        }
    }

    /// The def names of an XML input (none for binary input).
    fn def_names(&self) -> Result<DefNames, ShrinkError> {
        match self {
            Input::Xml(path) => {
                let file = self.open_xml(path)?;
                DefNames::scan(file).map_err(ShrinkError::DefNames)
            }
            Input::Binary(_) => Ok(DefNames::default()),
        }
    }

    fn open_xml(&self, path: &Path) -> Result<io::BufReader<File>, ShrinkError> {
        let file = File::open(path).map_err(|source| ShrinkError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok(io::BufReader::with_capacity(1 << 20, file))
    }

    /// One pass of the whole document into `sink`, which is given back.
    fn drive<V: MetadataVisitor + Send>(&self, mut sink: V) -> Result<V, ShrinkError> {
        match self {
            Input::Xml(path) => {
                let reader = self.open_xml(path)?;
                read_xml(reader, &mut sink).map_err(ShrinkError::Metadata)?;
                Ok(sink)
            }
            Input::Binary(b) => {
                let reader = DeviceLeaves::checked(&b.dev, &b.unread);
                let mut runs = RunList(sink);
                emit(&b.sb, &b.devices, &b.plan, &reader, &mut runs)
                    .map_err(ShrinkError::Metadata)?;
                Ok(runs.0)
            }
        }
    }
}

impl BinaryInput {
    fn open(path: &Path) -> Result<BinaryInput, ShrinkError> {
        let opened = open_for_reading(path, SnapshotChoice::Live)?;
        let sb = &opened.chosen.sb;
        let entries = devices(&opened.dev, sb.mapping_root, sb.details_root)?;
        let selected: Vec<(DeviceInfo, u64)> = entries
            .iter()
            .map(|e| {
                let info = DeviceInfo {
                    dev_id: e.id,
                    mapped_blocks: e.details.mapped_blocks,
                    transaction: e.details.transaction_id,
                    creation_time: e.details.creation_time,
                    snap_time: e.details.snapshotted_time,
                };
                (info, e.root)
            })
            .collect();
        let MappingLeaves { lists, unread } =
            mapping_leaves(&opened.dev, &selected).map_err(ShrinkError::Mapping)?;
        let refs: Vec<&[u64]> = selected.iter().map(|(_, r)| lists[r].as_slice()).collect();
        let plan = SharingPlan::build(&refs)?;
        let sb = superblock_info(sb);
        Ok(BinaryInput {
            dev: opened.dev,
            sb,
            devices: selected.into_iter().map(|(d, _)| d).collect(),
            plan,
            unread,
        })
    }
}

/// The XML input must exist and be a file or block device: it is read twice.
fn check_xml_input(path: &Path) -> Result<(), ShrinkError> {
    let shown = path.display().to_string();
    match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_file() || m.file_type().is_block_device() => Ok(()),
        Ok(_) => Err(ShrinkError::InputWrongType(shown)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ShrinkError::InputMissing(shown)),
        Err(source) => Err(ShrinkError::Io {
            path: shown,
            source,
        }),
    }
}
