//! thin_ls: one table row per thin device.

mod count;
mod table;

use std::path::PathBuf;

use crate::progress::{self, Progress};
use crate::thin::model::open::{devices, open_for_reading, DeviceEntry, ReadError, SnapshotChoice};

pub use count::{count_devices, count_devices_with, Counting, DeviceCounts};
pub use table::{pretty_size, Field, Table};

/// What to list.
#[derive(Clone, Debug)]
pub struct LsOptions {
    /// Metadata device or file.
    pub input: PathBuf,
    /// Live trees or a metadata snapshot.
    pub snapshot: SnapshotChoice,
    /// The columns to fill.
    pub fields: Vec<Field>,
    /// Whether the header row is printed.
    pub headers: bool,
}

/// Why thin_ls could not list.
#[derive(Debug, thiserror::Error)]
pub enum LsError {
    /// Opening the input or reading its device trees failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A mapping tree is damaged.
    #[error("metadata contains errors")]
    Damaged,
    /// The device has more blocks than this machine can index.
    #[error("metadata device of {0} blocks is too large to index")]
    TooLarge(u64),
}

/// Reads the devices and, when a field needs them, their counts, into the
/// table to print.
///
/// # Errors
/// An [`LsError`].
pub fn ls(opts: &LsOptions) -> Result<Table<'_>, LsError> {
    let opened = open_for_reading(&opts.input, opts.snapshot)?;
    let sb = &opened.chosen.sb;
    let devs: Vec<DeviceEntry> = devices(&opened.dev, sb.mapping_root, sb.details_root)?;
    let counts = if opts.fields.iter().any(|f| f.needs_counting()) {
        let progress = Progress::new(progress::Display::Shown);
        progress.phase("Scanning data mappings");
        let roots: Vec<u64> = devs.iter().map(|d| d.root).collect();
        let nr_data = opened
            .chosen
            .live
            .as_ref()
            .map(|l| l.data_sm_root.nr_blocks);
        let counts = count_devices(&opened.dev, &roots, nr_data)?;
        progress.finish();
        counts
    } else {
        vec![DeviceCounts::default(); devs.len()]
    };
    let mut table = Table::new(&opts.fields, u64::from(sb.data_block_size));
    if opts.headers {
        table.push_header();
    }
    for (d, c) in devs.iter().zip(&counts) {
        table.push_row(d, c);
    }
    Ok(table)
}
