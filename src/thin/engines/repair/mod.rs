//! The repair engine shared by `thin_repair` and `thin_dump --repair`
//! (spec/repair.md): decide which superblock values and roots describe the
//! pool, salvage what can be read, and emit it through the IR.
//!
//! Flow: a healthy superblock whose trees are whole is read directly
//! ([`fast`], G4.1). Otherwise every block is scanned ([`scan`]), nodes are
//! classified bottom-up ([`classify`]), candidate roots are ordered and
//! paired ([`candidates`]), the roots and superblock values are chosen and the
//! devices assembled ([`choose`]), and the result is emitted ([`output`]).

pub mod candidates;
pub mod choose;
pub mod classify;
pub mod command;
pub mod dump;
pub mod fast;
pub mod fill;
pub mod output;
pub mod scan;
pub mod trees;

use std::cell::RefCell;

use crate::pdata::block::BlockNr;
use crate::pdata::io::BlockDevice;
use crate::thin::ir::{ChunkSink, DeviceInfo, SuperblockInfo};

pub use command::command;

/// How much the engine says on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verbosity {
    /// Nothing (`-q`).
    Quiet,
    /// Warnings.
    Normal,
    /// Warnings and info lines (`-v`).
    Verbose,
}

/// Where the engine's warnings and info lines go.
#[derive(Debug)]
pub struct Log {
    verbosity: Verbosity,
    captured: Option<RefCell<Vec<String>>>,
}

impl Log {
    /// Lines go to stderr, filtered by `verbosity`.
    #[must_use]
    pub fn stderr(verbosity: Verbosity) -> Self {
        Log {
            verbosity,
            captured: None,
        }
    }

    /// Lines are kept in memory (tests), filtered by `verbosity`.
    #[must_use]
    pub fn capture(verbosity: Verbosity) -> Self {
        Log {
            verbosity,
            captured: Some(RefCell::new(Vec::new())),
        }
    }

    /// The lines captured so far.
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        self.captured
            .as_ref()
            .map(|c| c.borrow().clone())
            .unwrap_or_default()
    }

    fn emit(&self, line: &str) {
        match &self.captured {
            Some(c) => c.borrow_mut().push(line.to_string()),
            None => eprintln!("{line}"),
        }
    }

    /// A warning (shown unless quiet).
    pub fn warn(&self, line: &str) {
        if self.verbosity != Verbosity::Quiet {
            self.emit(line);
        }
    }

    /// An info line (shown with `-v`).
    pub fn info(&self, line: &str) {
        if self.verbosity == Verbosity::Verbose {
            self.emit(line);
        }
    }
}

/// Superblock overrides (spec/tools.md §2.8) and diagnostics.
#[derive(Debug)]
pub struct RepairOptions {
    /// `--transaction-id`: the result is at least this.
    pub transaction_id: Option<u64>,
    /// `--data-block-size`: replaces the value found (already validated).
    pub data_block_size: Option<u32>,
    /// `--nr-data-blocks`: the data space map has at least this many blocks.
    pub nr_data_blocks: Option<u64>,
    /// Warnings and info lines.
    pub log: Log,
}

impl RepairOptions {
    /// No overrides; messages to stderr at `verbosity`.
    #[must_use]
    pub fn new(verbosity: Verbosity) -> Self {
        RepairOptions {
            transaction_id: None,
            data_block_size: None,
            nr_data_blocks: None,
            log: Log::stderr(verbosity),
        }
    }
}

/// One device to write: its values and its mapping leaves in key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepairedDevice {
    /// Values written (`mapped_blocks` = mappings in `leaves`).
    pub info: DeviceInfo,
    /// Valid mapping leaves, left to right.
    pub leaves: Vec<BlockNr>,
}

/// What repair decided to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepairedPool {
    /// Superblock values (overrides applied).
    pub sb: SuperblockInfo,
    /// Devices in ascending id.
    pub devices: Vec<RepairedDevice>,
}

/// What was written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Devices written.
    pub devices: usize,
    /// Mappings written.
    pub mappings: u64,
}

impl RepairReport {
    fn of(pool: &RepairedPool) -> Self {
        RepairReport {
            devices: pool.devices.len(),
            mappings: pool.devices.iter().map(|d| d.info.mapped_blocks).sum(),
        }
    }
}

/// Finds roots, rebuilds the superblock and decides what to write.
///
/// # Errors
/// `no compatible roots found`, `data block size needs to be provided due to
/// corruption in the superblock`, `invalid data block size`.
pub fn repair_plan(dev: &dyn BlockDevice, opts: &RepairOptions) -> anyhow::Result<RepairedPool> {
    choose::plan(dev, opts)
}

/// `thin_dump --repair` and `thin_repair`: repairs `dev` and sends the result
/// to `out` (the XML or human-readable writer, or the metadata writer
/// wrapped in [`crate::thin::ir::RunList`]).
///
/// # Errors
/// The errors of [`repair_plan`], a damaged leaf met while emitting, or a sink failure.
pub fn dump_repaired<S: ChunkSink + Send>(
    dev: &dyn BlockDevice,
    opts: &RepairOptions,
    out: &mut S,
) -> anyhow::Result<RepairReport> {
    let pool = repair_plan(dev, opts)?;
    output::emit_pool(dev, &pool, out)?;
    Ok(RepairReport::of(&pool))
}
