//! thin_rmap: which thin blocks map to given data block regions
//! (formats.md §6).
//!
//! Every device's tree is read by one walk; leaf visitors keep only the
//! mappings whose data block lies in a requested region, so memory follows
//! the size of the answer. Devices are then replayed in ascending id, each
//! leaf counted for the first (lowest) device that reaches it.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::ops::Range;
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::{ArgAction, Parser};

use crate::commands::exit::Outcome;
use crate::commands::run::{report_error, run_with, stdout_writer};
use crate::pdata::block::BlockNr;
use crate::pdata::btree::node::{NodeError, NodeRef};
use crate::pdata::btree::walk::Walker;
use crate::pdata::io::BlockDevice;
use crate::thin::model::mapping::BlockTime;
use crate::thin::model::mapping::MAPPING_VALUE_SIZE;
use crate::thin::model::open::SnapshotChoice;
use crate::thin::model::open::{device_roots, open_for_reading};

/// Print the thin blocks that map to given data blocks.
#[derive(Parser, Debug)]
#[command(name = "thin_rmap", disable_version_flag = true)]
pub struct Args {
    /// Data blocks BEGIN..END (END exclusive); repeatable
    #[arg(
        long = "region",
        value_name = "BLOCK_RANGE",
        required = true,
        action = ArgAction::Append,
        value_parser = parse_region
    )]
    region: Vec<Range<u64>>,
    /// Metadata device or file
    #[arg(value_name = "INPUT")]
    input: PathBuf,
}

/// Parses `BEGIN..END` (decimal, END exclusive, END > BEGIN).
///
/// # Errors
/// `badly formed region`, `end <= begin`, or the integer parse error.
pub fn parse_region(s: &str) -> Result<Range<u64>, String> {
    let parts: Vec<&str> = s.split("..").collect();
    let [b, e] = parts[..] else {
        return Err("badly formed region".to_string());
    };
    let begin: u64 = b
        .parse()
        .map_err(|e: std::num::ParseIntError| e.to_string())?;
    let end: u64 = e
        .parse()
        .map_err(|e: std::num::ParseIntError| e.to_string())?;
    if end <= begin {
        return Err("end <= begin".to_string());
    }
    Ok(begin..end)
}

/// Entry point of `thin_rmap`: parses `args` (without argv[0]) and runs the tool.
#[must_use]
pub fn command(args: &[OsString]) -> Outcome {
    run_with::<Args, _>("thin_rmap", args, |a| match run(&a) {
        Ok(()) => Outcome::Success,
        Err(e) => report_error(&e, false),
    })
}

fn run(a: &Args) -> anyhow::Result<()> {
    let opened = open_for_reading(&a.input, SnapshotChoice::Live)?;
    let roots = device_roots(&opened.dev, opened.chosen.sb.mapping_root)?;
    let lines = rmap(&opened.dev, &roots, &a.region)?;
    let mut out = stdout_writer();
    for l in &lines {
        writeln!(
            out,
            "data {}..{} -> thin({}) {}..{}",
            l.data_begin,
            l.data_end,
            l.dev,
            l.thin_begin,
            l.thin_begin + (l.data_end - l.data_begin)
        )?;
    }
    out.flush()?;
    Ok(())
}

/// Data blocks `data_begin..data_end` are mapped by device `dev` from thin
/// block `thin_begin` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RmapLine {
    /// First data block.
    pub data_begin: u64,
    /// One past the last data block.
    pub data_end: u64,
    /// Device id.
    pub dev: u64,
    /// First thin block.
    pub thin_begin: u64,
}

impl RmapLine {
    fn extend(&mut self, dev: u64, thin: u64, data: u64) -> bool {
        let len = self.data_end - self.data_begin;
        let continues = dev == self.dev
            && data == self.data_end
            && self.thin_begin.checked_add(len) == Some(thin);
        if continues {
            self.data_end += 1;
        }
        continues
    }
}

/// The sorted reverse map of `regions` over the devices in `roots` (id → root).
///
/// # Errors
/// A damaged node in a mapping tree.
pub fn rmap(
    dev: &dyn BlockDevice,
    roots: &std::collections::BTreeMap<u64, BlockNr>,
    regions: &[Range<u64>],
) -> anyhow::Result<Vec<RmapLine>> {
    let in_regions = |b: u64| regions.iter().any(|r| r.contains(&b));
    let root_list: Vec<BlockNr> = roots.values().copied().collect();
    let mut hits: HashMap<BlockNr, Vec<(u64, u64)>> = HashMap::new();
    let mut walker = Walker::new(dev);
    walker.walk(
        &root_list,
        MAPPING_VALUE_SIZE,
        |_, n: &NodeRef| {
            n.keys()
                .iter()
                .zip(n.values_u64())
                .map(|(k, v)| (k.get(), BlockTime::unpack(v.get()).block))
                .filter(|&(_, data)| in_regions(data))
                .collect::<Vec<_>>()
        },
        |nr, found| {
            if !found.is_empty() {
                hits.insert(nr, found);
            }
        },
    );
    let graph = walker.graph();
    let mut reported = vec![false; usize::try_from(dev.nr_blocks()).unwrap_or(0)];
    let mut lines = Vec::new();
    let mut cur: Option<RmapLine> = None;
    for (&id, &root) in roots {
        let mut bad = None;
        let leaves = graph.leaves_of(root, |block, kind| {
            bad.get_or_insert(NodeError { block, kind });
        });
        if let Some(e) = bad.or_else(|| graph.link_errors.first().copied()) {
            return Err(anyhow!("{e}")).context(format!("mapping tree of device {id}"));
        }
        for leaf in leaves {
            let Some(seen) = usize::try_from(leaf).ok().and_then(|i| reported.get_mut(i)) else {
                continue;
            };
            if std::mem::replace(seen, true) {
                continue;
            }
            for &(thin, data) in hits.get(&leaf).map_or(&[][..], Vec::as_slice) {
                if !cur.as_mut().is_some_and(|c| c.extend(id, thin, data)) {
                    lines.extend(cur.replace(RmapLine {
                        data_begin: data,
                        data_end: data + 1,
                        dev: id,
                        thin_begin: thin,
                    }));
                }
            }
        }
    }
    lines.extend(cur);
    lines.sort_unstable();
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_validation_messages() {
        assert_eq!(parse_region("0..10"), Ok(0..10));
        assert_eq!(parse_region("+3..5"), Ok(3..5));
        assert_eq!(parse_region("5"), Err("badly formed region".into()));
        assert_eq!(parse_region("1..2..3"), Err("badly formed region".into()));
        assert_eq!(parse_region("5..5"), Err("end <= begin".into()));
        assert_eq!(parse_region("6..5"), Err("end <= begin".into()));
        assert_eq!(
            parse_region("a..5"),
            Err("invalid digit found in string".into())
        );
        assert_eq!(
            parse_region("..5"),
            Err("cannot parse integer from empty string".into())
        );
    }
}
