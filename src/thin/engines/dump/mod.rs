//! thin_dump: write binary thin metadata as XML or human-readable text
//! (spec/tools.md "thin_dump", spec/formats.md §1 and §3).
//!
//! Order of work: open the input, choose the superblock (live or metadata
//! snapshot), open `-o` only then, read the details and top-level trees, pair
//! devices by id, walk the selected devices' mapping trees with the one
//! walker (any damaged node is fatal), plan defs/refs from the leaf lists
//! ([`SharingPlan`]) and let the engine ([`crate::thin::ir::emit`]) stream the
//! document into the chosen sink.

pub mod output;

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::{ArgAction, Parser, ValueEnum};

use crate::commands::exit::Outcome;
use crate::commands::run as cli;
use crate::pdata::block::BlockNr;
use crate::pdata::btree::node::{NodeError, NodeErrorKind};
use crate::pdata::btree::walk::Walker;
use crate::pdata::io::{open_metadata, Access, BlockDevice, FileDevice, Sharing};
use crate::thin::ir::emit::{emit, DeviceLeaves, LeafReader};
use crate::thin::ir::human::HumanWriter;
use crate::thin::ir::sharing_plan::SharingPlan;
use crate::thin::ir::xml::write::XmlWriter;
use crate::thin::ir::{ChunkSink, DeviceInfo, SuperblockInfo};
use crate::thin::model::open::{
    choose_superblock, read_details, read_top_level, ChosenSuperblock, OpenSnapError,
    SnapshotChoice,
};
use crate::thin::model::superblock::{
    valid_data_block_size, Superblock, SuperblockError, NEEDS_CHECK,
};

/// Output format (`-f`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    // thin_dump XML (the default; thin_restore reads it). The variants carry
    // no doc comments so that --help lists the values on one line.
    Xml,
    // Indented text for people.
    #[value(name = "human_readable")]
    HumanReadable,
}

/// Command line of thin_dump.
#[derive(Parser, Debug)]
#[command(
    name = "thin_dump",
    version = crate::commands::VERSION,
    about = "Dump thin-provisioning metadata as XML or human-readable text",
    max_term_width = 100
)]
pub struct Args {
    /// Replace the data block size (sectors; 128..=2097152, a multiple of 128)
    #[arg(long, value_name = "SECTORS", value_parser = parse_data_block_size)]
    data_block_size: Option<u32>,

    /// Dump only this device (repeatable)
    #[arg(long = "dev-id", value_name = "ID", action = ArgAction::Append)]
    dev_id: Vec<u64>,

    /// Write every device's mappings in full, without <def>/<ref> sharing
    #[arg(long)]
    expand_shared: bool,

    /// Output format
    #[arg(
        short = 'f',
        long,
        value_enum,
        default_value = "xml",
        value_name = "FORMAT"
    )]
    format: Format,

    /// Dump the metadata snapshot (the held one, or the one at BLOCKNR)
    #[arg(
        short = 'm',
        long = "metadata-snap",
        value_name = "BLOCKNR",
        num_args = 0..=1,
        require_equals = true,
        conflicts_with = "repair"
    )]
    metadata_snap: Option<Option<u64>>,

    /// Raise the data space size to at least this many blocks
    #[arg(long, value_name = "BLOCKS")]
    nr_data_blocks: Option<u64>,

    /// Write to this file instead of stdout
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,

    /// Print nothing on stderr
    #[arg(short = 'q', long, action = ArgAction::SetTrue, overrides_with = "quiet")]
    quiet: bool,

    /// Find the trees of damaged metadata and dump what can be salvaged
    #[arg(short = 'r', long, action = ArgAction::SetTrue, overrides_with = "repair")]
    repair: bool,

    /// List devices with their details but no mappings
    #[arg(long, action = ArgAction::SetTrue, overrides_with = "skip_mappings")]
    skip_mappings: bool,

    /// Raise the transaction id to at least this value
    #[arg(long, value_name = "ID")]
    transaction_id: Option<u64>,

    /// More diagnostics on stderr (repeatable)
    #[arg(short = 'v', long, action = ArgAction::Count)]
    verbose: u8,

    /// Binary metadata: a file or block device
    #[arg(value_name = "INPUT")]
    input: PathBuf,
}

fn parse_data_block_size(s: &str) -> Result<u32, String> {
    match s.parse::<u64>() {
        Ok(v) if valid_data_block_size(v) => u32::try_from(v).map_err(|e| e.to_string()),
        Ok(_) => Err("invalid data block size".to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Superblock values given on the command line (spec/tools.md §2.8).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--transaction-id`: the result is the larger of this and the value found.
    pub transaction_id: Option<u64>,
    /// `--data-block-size`: replaces the value found (already validated).
    pub data_block_size: Option<u32>,
    /// `--nr-data-blocks`: the result is the larger of this and the value found.
    pub nr_data_blocks: Option<u64>,
}

impl Overrides {
    /// Applies the overrides to superblock values about to be written.
    pub fn apply(&self, sb: &mut SuperblockInfo) {
        if let Some(t) = self.transaction_id {
            sb.transaction = sb.transaction.max(t);
        }
        if let Some(s) = self.data_block_size {
            sb.data_block_size = s;
        }
        if let Some(n) = self.nr_data_blocks {
            sb.nr_data_blocks = sb.nr_data_blocks.max(n);
        }
    }
}

/// How shared leaves are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedLeaves {
    /// `<def>`/`<ref>` exactly as upstream (formats.md §1.3).
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

impl From<Args> for DumpOptions {
    fn from(a: Args) -> Self {
        DumpOptions {
            input: a.input,
            output: a.output,
            format: a.format,
            snapshot: match a.metadata_snap {
                None => SnapshotChoice::Live,
                Some(None) => SnapshotChoice::Held,
                Some(Some(b)) => SnapshotChoice::At(b),
            },
            dev_ids: (!a.dev_id.is_empty()).then(|| a.dev_id.into_iter().collect()),
            mappings: if a.skip_mappings {
                Mappings::Skip
            } else {
                Mappings::Dump
            },
            shared: if a.expand_shared {
                SharedLeaves::Expanded
            } else {
                SharedLeaves::DefRef
            },
            overrides: Overrides {
                transaction_id: a.transaction_id,
                data_block_size: a.data_block_size,
                nr_data_blocks: a.nr_data_blocks,
            },
            quiet: a.quiet,
            verbose: a.verbose,
        }
    }
}

/// Entry point of `thin_dump`: parses `args` (without argv[0]) and runs the tool.
#[must_use]
pub fn command(args: &[OsString]) -> Outcome {
    let args = cli::glue_optional_short(args, 'm');
    cli::run_with::<Args, _>("thin_dump", &args, |a| {
        let repair = a.repair;
        let opts = DumpOptions::from(a);
        if repair {
            return dump_repaired(&opts);
        }
        match dump(&opts) {
            Ok(o) => o,
            Err(e) => cli::report_error(&e, opts.quiet),
        }
    })
}

/// `--repair`: the repair engine finds the roots and writes the document
/// with this module's writers (spec/repair.md).
fn dump_repaired(opts: &DumpOptions) -> Outcome {
    crate::thin::engines::repair::dump::dump_command(opts)
}

/// Stderr diagnostics honouring `-q`/`-v`.
struct Diag {
    quiet: bool,
    verbose: u8,
}

impl Diag {
    fn warn(&self, msg: &str) {
        if !self.quiet {
            let mut e = std::io::stderr().lock();
            let _ = writeln!(e, "{msg}");
        }
    }
    fn info(&self, msg: impl FnOnce() -> String) {
        if !self.quiet && self.verbose > 0 {
            self.warn(&msg());
        }
    }
    /// A `-vv` line with the time since `start`.
    fn debug_timed(&self, start: std::time::Instant, what: &str) {
        if !self.quiet && self.verbose > 1 {
            self.warn(&format!("{what}: {} ms", start.elapsed().as_millis()));
        }
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
pub fn open_destination(opts: &DumpOptions) -> anyhow::Result<output::Output> {
    match &opts.output {
        Some(p) => output::open_file(p),
        None => Ok(output::stdout()),
    }
}

/// Writes the whole document in `format` to `out`.
///
/// # Errors
/// A damaged leaf or a write failure (EPIPE included).
pub fn write_document(
    format: Format,
    sb: &SuperblockInfo,
    devices: &[DeviceInfo],
    plan: &SharingPlan,
    reader: &dyn LeafReader,
    out: output::Output,
) -> anyhow::Result<()> {
    fn go<S: ChunkSink + Send>(
        sb: &SuperblockInfo,
        devices: &[DeviceInfo],
        plan: &SharingPlan,
        reader: &dyn LeafReader,
        mut sink: S,
    ) -> anyhow::Result<()> {
        emit(sb, devices, plan, reader, &mut sink).map_err(|e| match e.downcast::<NodeError>() {
            Ok(ne) => anyhow!(node_error_message(&ne)),
            Err(e) => e,
        })
    }
    match format {
        Format::Xml => go(sb, devices, plan, reader, XmlWriter::new(out)),
        Format::HumanReadable => go(sb, devices, plan, reader, HumanWriter::new(out)),
    }
}

fn superblock_error(dev: &dyn BlockDevice, e: OpenSnapError) -> anyhow::Error {
    if let OpenSnapError::Live(SuperblockError::Checksum) = e {
        let mut b = crate::pdata::block::Block::zeroed();
        if dev.read_at(0, &mut b).is_ok() && b.is_zero() {
            return anyhow!("{e}\n(block 0 is all zeroes: this metadata was never formatted)");
        }
    }
    anyhow!(e)
}

/// A dump of healthy metadata.
fn dump(opts: &DumpOptions) -> anyhow::Result<Outcome> {
    let diag = Diag {
        quiet: opts.quiet,
        verbose: opts.verbose,
    };
    let sharing = match opts.snapshot {
        SnapshotChoice::Live => Sharing::Exclusive,
        _ => Sharing::LiveSnapshot,
    };
    let dev: FileDevice = open_metadata(&opts.input, Access::ReadOnly, sharing)?;
    let ChosenSuperblock { sb, warning, .. } =
        choose_superblock(&dev, opts.snapshot).map_err(|e| superblock_error(&dev, e))?;
    if let Some(w) = warning {
        diag.warn(&w);
    }
    let out = open_destination(opts)?;
    let mut info = superblock_info(&sb);
    opts.overrides.apply(&mut info);

    let reader = DeviceLeaves::new(&dev);
    if opts.mappings == Mappings::Skip {
        let details = read_details(&mut Walker::new(&dev), sb.details_root).map_err(fail)?;
        let devices: Vec<DeviceInfo> = details
            .iter()
            .filter(|(id, _)| opts.wanted(**id))
            .map(|(&id, d)| device_info(id, d))
            .collect();
        let plan = SharingPlan::expanded(&vec![&[][..]; devices.len()]);
        write_document(opts.format, &info, &devices, &plan, &reader, out)?;
        return Ok(Outcome::Success);
    }

    let (selected, outcome) = paired_devices(&dev, &sb, opts, &diag)?;
    let start = std::time::Instant::now();
    let lists = mapping_leaves(&dev, &selected).map_err(fail)?;
    diag.debug_timed(start, "mapping trees walked");
    let refs: Vec<&[BlockNr]> = selected.iter().map(|(_, r)| lists[r].as_slice()).collect();
    let plan = match opts.shared {
        SharedLeaves::DefRef => SharingPlan::build(&refs).context("planning shared leaves")?,
        SharedLeaves::Expanded => SharingPlan::expanded(&refs),
    };
    diag.info(|| {
        format!(
            "{} devices, {} distinct mapping trees, {} shared runs",
            selected.len(),
            lists.len(),
            plan.defs.len()
        )
    });
    diag.debug_timed(start, "shared runs planned");
    let devices: Vec<DeviceInfo> = selected.iter().map(|(d, _)| *d).collect();
    write_document(opts.format, &info, &devices, &plan, &reader, out)?;
    diag.debug_timed(start, "document written");
    Ok(outcome)
}

fn fail(e: NodeError) -> anyhow::Error {
    anyhow!(node_error_message(&e))
}

impl DumpOptions {
    /// True when device `id` is to be dumped (`--dev-id`).
    #[must_use]
    pub fn wanted(&self, id: u64) -> bool {
        self.dev_ids.as_ref().is_none_or(|s| s.contains(&id))
    }
}

/// The selected devices present in both the top-level and the details tree,
/// ascending by id, with their mapping roots. An id found in only one tree
/// is warned about and makes the outcome a failure.
fn paired_devices(
    dev: &dyn BlockDevice,
    sb: &Superblock,
    opts: &DumpOptions,
    diag: &Diag,
) -> anyhow::Result<(Vec<(DeviceInfo, BlockNr)>, Outcome)> {
    let details = read_details(&mut Walker::new(dev), sb.details_root).map_err(fail)?;
    let roots = read_top_level(&mut Walker::new(dev), sb.mapping_root).map_err(fail)?;
    let ids: BTreeSet<u64> = roots.keys().chain(details.keys()).copied().collect();
    let mut selected = Vec::new();
    let mut outcome = Outcome::Success;
    for id in ids.into_iter().filter(|&id| opts.wanted(id)) {
        match (roots.get(&id), details.get(&id)) {
            (Some(&root), Some(d)) => selected.push((device_info(id, d), root)),
            (Some(_), None) => {
                diag.warn(&format!("device {id} has no device details"));
                outcome = Outcome::Failure;
            }
            (None, _) => {
                diag.warn(&format!("device {id} has no mapping tree"));
                outcome = Outcome::Failure;
            }
        }
    }
    Ok((selected, outcome))
}

fn device_info(id: u64, d: &crate::thin::model::device_details::DeviceDetails) -> DeviceInfo {
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
    walker.walk(&roots, 8, |_, _| (), |_, ()| {});
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
