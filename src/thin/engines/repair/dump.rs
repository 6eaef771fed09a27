//! `thin_dump --repair`: the dump of what repair would write, through
//! thin_dump's own writers (XML or human-readable) and options.

use crate::commands::exit::Outcome;
use crate::commands::run as cli;
use crate::pdata::io::{open_metadata, Access, Sharing};
use crate::thin::engines::dump::{
    open_destination, write_document, DumpOptions, Mappings, SharedLeaves,
};
use crate::thin::engines::repair::output::{plan_of, Sharing as LeafSharing};
use crate::thin::engines::repair::{repair_plan, RepairOptions, Verbosity};
use crate::thin::ir::emit::DeviceLeaves;

/// Runs `thin_dump --repair` with the already parsed `opts`.
#[must_use]
pub fn dump_command(opts: &DumpOptions) -> Outcome {
    match run(opts) {
        Ok(()) => Outcome::Success,
        Err(e) => cli::report_error(&e, opts.quiet),
    }
}

fn run(opts: &DumpOptions) -> anyhow::Result<()> {
    let dev = open_metadata(&opts.input, Access::ReadOnly, Sharing::Exclusive)?;
    let verbosity = match (opts.quiet, opts.verbose) {
        (true, _) => Verbosity::Quiet,
        (false, 0) => Verbosity::Normal,
        _ => Verbosity::Verbose,
    };
    let mut ropts = RepairOptions::new(verbosity);
    ropts.transaction_id = opts.overrides.transaction_id;
    ropts.data_block_size = opts.overrides.data_block_size;
    ropts.nr_data_blocks = opts.overrides.nr_data_blocks;
    let mut pool = repair_plan(&dev, &ropts)?;
    if let Some(ids) = &opts.dev_ids {
        pool.devices.retain(|d| ids.contains(&d.info.dev_id));
    }
    if opts.mappings == Mappings::Skip {
        for d in &mut pool.devices {
            d.leaves.clear();
        }
    }
    let sharing = match opts.shared {
        SharedLeaves::DefRef => LeafSharing::DefRef,
        SharedLeaves::Expanded => LeafSharing::Expanded,
    };
    let (devices, plan) = plan_of(&pool, sharing);
    let out = open_destination(opts)?;
    write_document(
        opts.format,
        &pool.sb,
        &devices,
        &plan,
        &DeviceLeaves::new(&dev),
        out,
    )
}
