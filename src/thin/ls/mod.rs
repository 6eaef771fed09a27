//! thin_ls: one table row per thin device (formats.md §5).

mod count;
mod table;

use crate::progress::{self, Progress};
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use clap::{ArgAction, Parser};

use crate::cli::{glue_optional_short, report_error, run_with, stdout_writer, usage_error};
use crate::exit::Outcome;
use crate::thin::input::{devices, open_for_reading, snapshot_choice};

pub use count::{count_devices, count_devices_with, Counting, DeviceCounts};
pub use table::{pretty_size, Field, Table};

/// List thin devices with their mapping counts.
#[derive(Parser, Debug)]
#[command(name = "thin_ls", disable_version_flag = true)]
struct Args {
    /// Comma-separated list of fields to print
    #[arg(short = 'o', long = "format", value_name = "FIELDS")]
    format: Option<String>,
    /// Do not print the header row
    #[arg(long = "no-headers", action = ArgAction::Count)]
    no_headers: u8,
    /// Read the metadata snapshot (at the held root, or at BLOCKNR)
    #[arg(
        short = 'm',
        long = "metadata-snap",
        value_name = "BLOCKNR",
        num_args = 0..=1,
        require_equals = true
    )]
    metadata_snap: Option<Option<u64>>,
    /// More messages on stderr (repeatable)
    #[arg(short = 'v', action = ArgAction::Count)]
    verbose: u8,
    /// Metadata device or file
    #[arg(value_name = "INPUT")]
    input: PathBuf,
}

const DEFAULT_FIELDS: &str = "DEV,MAPPED,CREATE_TIME,SNAP_TIME";

/// Entry point of `thin_ls`: parses `args` (without argv[0]) and runs the tool.
#[must_use]
pub fn command(args: &[OsString]) -> Outcome {
    let args = glue_optional_short(args, 'm');
    run_with::<Args, _>("thin_ls", &args, |a| {
        let fields = match Field::parse_list(a.format.as_deref().unwrap_or(DEFAULT_FIELDS)) {
            Ok(f) => f,
            Err(bad) => {
                return usage_error(&format!(
                    "invalid value '{bad}' for '--format <FIELDS>': Unknown field"
                ))
            }
        };
        match run(&a, &fields) {
            Ok(()) => Outcome::Success,
            Err(e) => report_error(&e, false),
        }
    })
}

fn run(a: &Args, fields: &[Field]) -> anyhow::Result<()> {
    let opened = open_for_reading(&a.input, snapshot_choice(a.metadata_snap))?;
    let sb = &opened.chosen.sb;
    let devs = devices(&opened.dev, sb.mapping_root, sb.details_root)?;
    let counts = if fields.iter().any(|f| f.needs_counting()) {
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
    let mut table = Table::new(fields, u64::from(sb.data_block_size));
    if a.no_headers == 0 {
        table.push_header();
    }
    for (d, c) in devs.iter().zip(&counts) {
        table.push_row(d, c);
    }
    let mut out = stdout_writer();
    table.render(&mut out)?;
    out.flush()?;
    Ok(())
}
