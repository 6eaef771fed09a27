//! `thin_dump --repair`: the repaired pool written as a dump (XML or
//! human-readable) with thin_dump's own def/ref planning, so a healthy pool
//! dumps identically with and without `--repair`.

use anyhow::Result;

use crate::exit::Outcome;
use crate::pdata::block::BlockNr;
use crate::pdata::io::{open_metadata, Access, Sharing};
use crate::thin::dump::{open_destination, write_document, DumpOptions, Mappings, SharedLeaves};
use crate::thin::emit::DeviceLeaves;
use crate::thin::repair::find_pool;
use crate::thin::shared_runs::SharingPlan;
use crate::thin::writer::Overrides;

/// Runs `thin_dump --repair` with `opts`.
///
/// # Errors
/// Input, root-finding and output failures, worded for the user.
pub fn dump_repaired(opts: &DumpOptions) -> Result<Outcome> {
    let dev = open_metadata(&opts.input, Access::ReadOnly, Sharing::Exclusive)?;
    let overrides = Overrides {
        transaction_id: opts.overrides.transaction_id,
        data_block_size: opts.overrides.data_block_size,
        nr_data_blocks: opts.overrides.nr_data_blocks,
    };
    let report = find_pool(&dev, &overrides)?;
    if !opts.quiet {
        if opts.verbose > 0 {
            for l in &report.info {
                eprintln!("{l}");
            }
        }
        for w in &report.warnings {
            eprintln!("{w}");
        }
    }
    let wanted = |id: u64| opts.dev_ids.as_ref().is_none_or(|s| s.contains(&id));
    let mut devices = Vec::new();
    let mut lists: Vec<Vec<BlockNr>> = Vec::new();
    for (d, l) in report.pool.devices.iter().zip(&report.pool.leaves) {
        if wanted(d.dev_id) {
            devices.push(*d);
            lists.push(match opts.mappings {
                Mappings::Dump => l.clone(),
                Mappings::Skip => Vec::new(),
            });
        }
    }
    let refs: Vec<&[BlockNr]> = lists.iter().map(Vec::as_slice).collect();
    let plan = match (opts.shared, opts.mappings) {
        (SharedLeaves::DefRef, Mappings::Dump) => {
            SharingPlan::build(&refs).unwrap_or_else(|_| SharingPlan::expanded(&refs))
        }
        _ => SharingPlan::expanded(&refs),
    };
    let out = open_destination(opts)?;
    write_document(
        opts.format,
        &report.chosen.sb,
        &devices,
        &plan,
        &DeviceLeaves::new(&dev),
        out,
    )?;
    Ok(Outcome::Success)
}
