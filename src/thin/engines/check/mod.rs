//! thin_check: verifies thin-pool metadata, optionally repairing leaks and
//! clearing NEEDS_CHECK.
//!
//! The checks run in a fixed order in [`Checker::run`]: the live superblock,
//! the metadata-snapshot superblock, the summary lines, the device trees (live
//! and snapshot), the mapping trees with their data counts, then the space
//! maps, and last the repair and the superblock rewrite. Every finding goes to
//! the [`report::Report`] sink and the verdict is computed once at the end.
//! Submodules: `devices` (top-level and details trees), `mappings`
//! (bottom-level trees and data counts), `space_maps` (comparison and
//! repair), `report` (the sink).

mod devices;
mod mappings;
pub mod report;
mod space_maps;

use std::collections::BTreeSet;
use std::io::{self, Write};

use crate::pdata::block::{Block, BlockNr};
use crate::pdata::io::{Access, BlockDevice, Sharing};
use crate::pdata::space_map::dense_counts::{CountSource, FrozenCounts, RefCounts, SharedCounts};
use crate::pdata::space_map::fingerprint::CountFingerprint;
use crate::pdata::space_map::read::{read_space_map, DiskSpaceMap, SmErrorIn, SmKind, TreeEntries};
use crate::pdata::space_map::ENTRIES_PER_BITMAP;
use crate::thin::model::open::SnapshotChoice;
use crate::thin::model::superblock::{
    read_superblock, Superblock, SuperblockError, MAX_METADATA_BLOCKS, NEEDS_CHECK,
};

use devices::{DeviceSet, DeviceTrees};
use mappings::{walk_mappings, DataRefs, DeviceToCheck, LeafLimits};
pub use report::{Report, Strictness, Verbosity};
use space_maps::Comparison;

/// How far the check goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// Everything.
    Full,
    /// `--skip-mappings`: superblocks, top-level and details trees.
    SkipMappings,
    /// `--super-block-only`.
    SuperblockOnly,
}

/// What may be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repair {
    /// Read-only.
    None,
    /// `--auto-repair`: repair leaks, clear NEEDS_CHECK.
    AutoRepair,
    /// `--clear-needs-check-flag`: clear NEEDS_CHECK (and repair leaks).
    ClearNeedsCheck,
}

/// Whether the two `KEY=value` lines go to stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Summary {
    /// Print them (thin_check).
    Print,
    /// Keep stdout clean (thin_trim's pre-check).
    Suppress,
}

/// Everything a check run needs.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// How far to go.
    pub depth: Depth,
    /// Repair mode.
    pub repair: Repair,
    /// Non-fatal policy.
    pub strictness: Strictness,
    /// stderr level.
    pub verbosity: Verbosity,
    /// `-m[=BLOCKNR]`.
    pub snapshot: Option<SnapshotChoice>,
    /// `--override-mapping-root`.
    pub override_mapping_root: Option<BlockNr>,
    /// `--override-details-root`.
    pub override_details_root: Option<BlockNr>,
    /// stdout lines.
    pub summary: Summary,
}

/// The access a check with these options needs: read-write only when it may
/// repair, and no exclusive open when it reads a live pool's metadata snapshot.
#[must_use]
pub fn open_mode(opts: &CheckOptions) -> (Access, Sharing) {
    let access = if opts.repair == Repair::None {
        Access::ReadOnly
    } else {
        Access::ReadWrite
    };
    let sharing = if opts.snapshot.is_some() {
        Sharing::LiveSnapshot
    } else {
        Sharing::Exclusive
    };
    (access, sharing)
}

/// How a check ended: the number of findings of each class. Every finding
/// was printed (at the options' verbosity) as it was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Fatal errors: the metadata cannot be used as it is.
    pub fatal: u64,
    /// Non-fatal errors (leaks, underfull nodes).
    pub non_fatal: u64,
    /// Warnings: printed, never failing.
    pub warnings: u64,
    /// Whether non-fatal errors fail the check.
    pub strictness: Strictness,
}

impl Verdict {
    /// True when the findings fail the check.
    #[must_use]
    pub fn failed(&self) -> bool {
        self.fatal > 0 || (self.non_fatal > 0 && self.strictness == Strictness::Strict)
    }
}

/// Checks the metadata on `dev`, repairing it when the options say so.
#[must_use]
pub fn check(dev: &dyn BlockDevice, opts: &CheckOptions) -> Verdict {
    let mut checker = Checker {
        dev,
        opts,
        report: Report::new(opts.verbosity, opts.strictness),
    };
    let _ = checker.run();
    checker.report.verdict()
}

/// Returned by a step that ends the check early (the reason is in the report).
struct Stop;

type Step<T> = Result<T, Stop>;

/// The snapshot superblock as far as it could be read.
enum Snap {
    /// No `held_root`.
    Absent,
    /// Read and valid.
    Valid(Box<Superblock>),
    /// Damaged; the message is raised after the mapping trees were checked.
    Failed(String),
}

struct Checker<'a> {
    dev: &'a dyn BlockDevice,
    opts: &'a CheckOptions,
    report: Report,
}

impl Checker<'_> {
    fn run(&mut self) -> Step<()> {
        let live = self.live_superblock()?;
        let snap = self.snapshot_superblock(&live)?;
        self.print_summary(&live)?;
        if self.opts.depth == Depth::SuperblockOnly {
            if let Snap::Failed(msg) = &snap {
                self.report.fatal(msg);
                return Err(Stop);
            }
            return self.finish(&live);
        }
        self.report.title("Checking thin metadata");
        self.report.title("device details tree");
        let mut trees = DeviceTrees::new(self.dev);
        let mut remembered: Option<String> = match &snap {
            Snap::Failed(m) => Some(m.clone()),
            _ => None,
        };
        let live_set = if self.opts.snapshot.is_none() {
            let set = self.read_devices(&mut trees, &live)?;
            if set.roots.keys().ne(set.details.keys()) {
                self.report
                    .fatal("Inconsistency between the details tree and the mapping tree");
                return Err(Stop);
            }
            Some(set)
        } else {
            None
        };
        let snap_set = match &snap {
            Snap::Valid(s) => match self.read_snapshot_devices(&mut trees, s) {
                Ok(set) => Some((set, s.time)),
                Err(msg) if self.opts.snapshot.is_some() => {
                    self.report.fatal(msg);
                    return Err(Stop);
                }
                Err(msg) => {
                    remembered = Some(msg);
                    None
                }
            },
            _ => None,
        };
        for w in trees.key_warnings() {
            self.report.warning(w);
        }
        for l in trees.non_fatal() {
            self.report.non_fatal(l);
        }
        let devices = devices_to_check(live_set.as_ref(), live.0.time, snap_set.as_ref());
        if self.opts.depth == Depth::SkipMappings {
            if let Some(m) = remembered {
                self.report.fatal(m);
            }
            return self.finish(&live);
        }
        self.check_mappings(&live, &snap, &trees, &devices, remembered)
    }

    fn check_mappings(
        &mut self,
        live: &(Superblock, Box<Block>),
        snap: &Snap,
        trees: &DeviceTrees,
        devices: &Devices,
        remembered: Option<String>,
    ) -> Step<()> {
        let sb = &live.0;
        self.report.title("mapping tree");
        let k = devices.exclusive;
        let n = devices.list.len();
        if k > 0 {
            self.report.info(format!(
                "number of devices to check: {n} ({k} exclusive in metadata snapshot)"
            ));
        } else {
            self.report.info(format!("number of devices to check: {n}"));
        }
        let snapshot_mode = self.opts.snapshot.is_some();
        let nr_data = sb.data_sm_root.nr_blocks;
        if !snapshot_mode {
            self.check_data_size(sb)?;
        }
        let roots: Vec<BlockNr> = devices.list.iter().map(|d| d.root).collect();
        let time = match (snapshot_mode, snap) {
            (true, Snap::Valid(s)) => s.time,
            _ => sb.time,
        };
        let limits = LeafLimits {
            nr_data_blocks: nr_data,
            time,
        };
        // The on-disk space maps do not depend on the walk: they are read
        // beside it, the data map summed into the same fingerprint as the
        // leaves' references.
        let fingerprint = CountFingerprint::random();
        let dev = self.dev;
        let (tree, maps) = if snapshot_mode {
            (walk_mappings(dev, &roots, limits, DataRefs::Ignore), None)
        } else {
            let (tree, maps) = rayon::join(
                || walk_mappings(dev, &roots, limits, DataRefs::Fingerprint(&fingerprint)),
                || read_space_maps(dev, sb, TreeEntries::Fingerprint(&fingerprint)),
            );
            (tree, Some(maps))
        };
        let bad_nodes = tree.report_nodes(&mut self.report);
        let bad_devices = tree.report_devices(&devices.list, &mut self.report);
        if bad_devices || bad_nodes {
            self.report.notice("Check of mappings failed");
        }
        if let Some(m) = remembered {
            self.report.fatal(m);
        }
        let Some(maps) = maps.filter(|_| self.report.fatal_count() == 0) else {
            return Err(Stop);
        };
        let mut meta = RefCounts::new(sb.metadata_sm_root.nr_blocks);
        meta.inc(0);
        if sb.held_root != 0 {
            meta.inc(sb.held_root);
        }
        trees.count_metadata(&mut meta);
        tree.count_metadata(&mut meta);
        let data_sum = tree.data_sum;
        drop(tree);
        let (dsm, msm) = self.space_maps_read(maps)?;
        if dsm.fingerprint == Some(data_sum) {
            // Every data block's count equals its references: nothing to
            // compare block by block, and no data counts are needed.
            let none = SharedCounts::new(0).freeze();
            return self.check_space_maps(
                live,
                &none,
                Some(Comparison::default()),
                dsm,
                msm,
                &mut meta,
            );
        }
        // Some count differs: count exactly, and re-read the data map keeping
        // the entries that differ, to name them.
        drop(dsm);
        let counts = SharedCounts::new(nr_data);
        drop(walk_mappings(dev, &roots, limits, DataRefs::Count(&counts)));
        let data = counts.freeze();
        let differs = |b: u64, c: u32| data.get(b) != c;
        let dsm = read_space_map(
            dev,
            SmKind::Data,
            sb.data_sm_root,
            sb.metadata_sm_root.nr_blocks,
            TreeEntries::Differing(&differs),
        );
        let (dsm, msm) = self.space_maps_read((dsm, Ok(msm)))?;
        self.check_space_maps(live, &data, None, dsm, msm, &mut meta)
    }

    /// Checks that the data space map's size is plausible: a valid data
    /// space map never has more bitmaps than the metadata device blocks.
    fn check_data_size(&mut self, sb: &Superblock) -> Step<()> {
        let nr = sb.data_sm_root.nr_blocks;
        let max = sb
            .metadata_sm_root
            .nr_blocks
            .saturating_mul(ENTRIES_PER_BITMAP);
        if nr > max {
            self.report.fatal(format!(
                "data space map: {nr} blocks need more bitmaps than the metadata device holds"
            ));
            return Err(Stop);
        }
        Ok(())
    }

    /// Compares the counts with both maps (the data comparison is `data_cmp`
    /// when already known), reports, and repairs when asked to.
    fn check_space_maps(
        &mut self,
        live: &(Superblock, Box<Block>),
        data: &FrozenCounts,
        data_cmp: Option<Comparison>,
        dsm: DiskSpaceMap,
        msm: DiskSpaceMap,
        meta: &mut RefCounts,
    ) -> Step<()> {
        for m in [&dsm, &msm] {
            for &b in &m.metadata_refs {
                meta.inc(b);
            }
        }
        let dcmp = match data_cmp {
            Some(c) => c,
            None => space_maps::compare(data, &dsm, &mut self.report),
        };
        let mcmp = space_maps::compare(meta, &msm, &mut self.report);
        let mut leaky = Vec::new();
        for (cmp, m) in [(&dcmp, &dsm), (&mcmp, &msm)] {
            let kind = m.kind;
            if cmp.leaks > 0 {
                self.report
                    .notice(format!("{} {kind} blocks have leaked", cmp.leaks));
                leaky.push(kind);
            }
            if cmp.bad > 0 {
                self.report.fatal(format!(
                    "{kind} space map: {} {kind} blocks have bad reference counts",
                    cmp.bad
                ));
            }
            space_maps::report_stats(m, &mut self.report);
        }
        if self.report.fatal_count() > 0 {
            return Err(Stop);
        }
        if self.opts.repair == Repair::None {
            if let Some(kind) = leaky.first() {
                if self.opts.strictness == Strictness::Strict {
                    self.report.non_fatal(format!(
                        "{kind} space map contains leaks\nperhaps you wanted to run with --auto-repair"
                    ));
                }
            }
            return Ok(());
        }
        let plans = [
            (
                space_maps::plan_repair(data as &dyn CountSource, &dsm, &dcmp),
                &dsm,
            ),
            (space_maps::plan_repair(meta, &msm, &mcmp), &msm),
        ];
        self.repair(live, &plans, &leaky)
    }

    /// Reports the errors of reading the two maps, if any.
    fn space_maps_read(&mut self, maps: MapsRead) -> Step<(DiskSpaceMap, DiskSpaceMap)> {
        match maps {
            (Ok(d), Ok(m)) => Ok((d, m)),
            (d, m) => {
                for errs in [d.err(), m.err()].into_iter().flatten() {
                    errs.iter().for_each(|e| self.report.fatal(e));
                }
                Err(Stop)
            }
        }
    }

    fn repair(
        &mut self,
        live: &(Superblock, Box<Block>),
        plans: &[(space_maps::SmRepair, &DiskSpaceMap); 2],
        leaky: &[SmKind],
    ) -> Step<()> {
        if self.report.failed() {
            return Err(Stop);
        }
        for kind in leaky {
            let word = match kind {
                SmKind::Data => "data",
                SmKind::Metadata => "metadata",
            };
            self.report.warning(format!("Repairing {word} leaks."));
        }
        let mut sb = live.0.clone();
        let mut changed = false;
        for (plan, disk) in plans {
            if plan.is_empty() {
                continue;
            }
            changed = true;
            if let Err(e) = space_maps::write_repair(self.dev, disk, plan) {
                self.report
                    .fatal(format!("writing the repaired space map: {e}"));
                return Err(Stop);
            }
            if let Some(n) = plan.nr_allocated {
                match disk.kind {
                    SmKind::Data => sb.data_sm_root.nr_allocated = n,
                    SmKind::Metadata => sb.metadata_sm_root.nr_allocated = n,
                }
            }
        }
        if changed {
            if let Err(e) = self.dev.sync() {
                self.report
                    .fatal(format!("flushing the repaired space maps: {e}"));
                return Err(Stop);
            }
        }
        self.finish_with(live, sb)
    }

    /// Clears NEEDS_CHECK when asked and nothing failed, at whichever depth the
    /// check stopped.
    fn finish(&mut self, live: &(Superblock, Box<Block>)) -> Step<()> {
        if self.opts.repair == Repair::None || self.report.failed() {
            return Ok(());
        }
        self.finish_with(live, live.0.clone())
    }

    /// Writes the superblock (read-modify-write of block 0) when `sb` differs
    /// from what is on disk or NEEDS_CHECK must be cleared.
    fn finish_with(&mut self, live: &(Superblock, Box<Block>), mut sb: Superblock) -> Step<()> {
        let clear = sb.needs_check();
        if clear {
            sb.flags &= !NEEDS_CHECK;
        }
        if sb == live.0 {
            return Ok(());
        }
        let mut block = live.1.clone();
        sb.write_into(&mut block.0);
        if let Err(e) = self.dev.write_at(0, &block).and_then(|()| self.dev.sync()) {
            self.report.fatal(format!("writing the superblock: {e}"));
            return Err(Stop);
        }
        if clear {
            self.report.notice("Cleared needs_check flag");
        }
        Ok(())
    }

    /// The live superblock: checksum, magic, version, and a metadata space map
    /// that fits the device.
    fn live_superblock(&mut self) -> Step<(Superblock, Box<Block>)> {
        let (sb, block) = match read_superblock(self.dev, 0) {
            Ok(x) => x,
            Err(SuperblockError::Checksum) => {
                self.report.fatal(SuperblockError::Checksum);
                let mut b = Block::zeroed();
                if self.dev.read_at(0, &mut b).is_ok() && b.is_zero() {
                    self.report
                        .notice("(block 0 is all zeroes: this metadata was never formatted)");
                }
                return Err(Stop);
            }
            Err(e) => {
                self.report.fatal(e);
                return Err(Stop);
            }
        };
        if let Err(e) = sb.validate(0) {
            self.report.fatal(e);
            return Err(Stop);
        }
        let n = sb.metadata_sm_root.nr_blocks;
        let dev_blocks = self.dev.nr_blocks();
        // Only the trees need the blocks the space map names: a superblock-only
        // check passes on a copy of the superblock block alone.
        if n > dev_blocks && self.opts.depth != Depth::SuperblockOnly {
            self.report.fatal(format!(
                "metadata space map: {n} blocks exceed the device ({dev_blocks} blocks)"
            ));
        }
        if n > MAX_METADATA_BLOCKS {
            self.report.fatal(format!(
                "metadata space map: {n} blocks exceed the maximum of {MAX_METADATA_BLOCKS}"
            ));
        }
        if self.report.fatal_count() > 0 {
            return Err(Stop);
        }
        self.superblock_warnings(&sb, "");
        if sb.metadata_nr_blocks != n {
            self.report.info(format!(
                "superblock: metadata_nr_blocks is {}, the metadata space map has {n} blocks",
                sb.metadata_nr_blocks
            ));
        }
        Ok((sb, block))
    }

    fn superblock_warnings(&mut self, sb: &Superblock, prefix: &str) {
        if sb.metadata_block_size != 8 {
            self.report.warning(format!(
                "{prefix}superblock: metadata_block_size is {}, expected 8",
                sb.metadata_block_size
            ));
        }
        if sb.compat_flags != 0 {
            self.report.warning(format!(
                "{prefix}superblock: compat_flags {:#x} set",
                sb.compat_flags
            ));
        }
    }

    /// The metadata snapshot superblock named by `held_root`, if any.
    fn snapshot_superblock(&mut self, live: &(Superblock, Box<Block>)) -> Step<Snap> {
        let held = live.0.held_root;
        let at = match self.opts.snapshot {
            None if held == 0 => return Ok(Snap::Absent),
            None | Some(SnapshotChoice::Held | SnapshotChoice::Live) => held,
            Some(SnapshotChoice::At(n)) => n,
        };
        if at == 0 {
            self.report.fatal("no current metadata snap");
            return Err(Stop);
        }
        if let Some(SnapshotChoice::At(n)) = self.opts.snapshot {
            if n != held {
                self.report.warning(format!(
                    "block {n} is not the held metadata snapshot (held root is {held})"
                ));
            }
        }
        let res = read_superblock(self.dev, at).and_then(|(sb, _)| sb.validate(at).map(|()| sb));
        match res {
            Ok(sb) => {
                self.superblock_warnings(&sb, "metadata snap: ");
                if !sb.data_sm_root.is_zero() || !sb.metadata_sm_root.is_zero() {
                    self.report
                        .warning("metadata snap: space map roots are not zero");
                }
                Ok(Snap::Valid(Box::new(sb)))
            }
            Err(e) if self.opts.snapshot.is_some() => {
                self.report.fatal(format!("metadata snap: {e}"));
                Err(Stop)
            }
            Err(e) => Ok(Snap::Failed(format!("metadata snap: {e}"))),
        }
    }

    /// The `TRANSACTION_ID=` and `METADATA_FREE_BLOCKS=` lines on stdout.
    fn print_summary(&mut self, live: &(Superblock, Box<Block>)) -> Step<()> {
        if self.opts.summary == Summary::Suppress || self.opts.verbosity == Verbosity::Quiet {
            return Ok(());
        }
        let sm = live.0.metadata_sm_root;
        let mut out = io::stdout().lock();
        let r = writeln!(
            out,
            "TRANSACTION_ID={}\nMETADATA_FREE_BLOCKS={}",
            live.0.trans_id,
            sm.nr_blocks.saturating_sub(sm.nr_allocated)
        )
        .and_then(|()| out.flush());
        if r.is_err() {
            // A closed stdout ends the tool silently with status 1.
            self.report.fatal_silent();
            return Err(Stop);
        }
        Ok(())
    }

    /// The live device trees, with the root overrides applied.
    fn read_devices(
        &mut self,
        trees: &mut DeviceTrees,
        live: &(Superblock, Box<Block>),
    ) -> Step<DeviceSet> {
        let mapping_root = self
            .opts
            .override_mapping_root
            .unwrap_or(live.0.mapping_root);
        let details_root = self
            .opts
            .override_details_root
            .unwrap_or(live.0.details_root);
        match trees.read(mapping_root, details_root) {
            Ok(set) => Ok(set),
            Err(errs) => {
                for e in errs.0 {
                    self.report.fatal(e);
                }
                Err(Stop)
            }
        }
    }

    /// The snapshot's device trees. Errors come back as one message.
    fn read_snapshot_devices(
        &mut self,
        trees: &mut DeviceTrees,
        snap: &Superblock,
    ) -> Result<DeviceSet, String> {
        let snapshot_mode = self.opts.snapshot.is_some();
        let prefix = if snapshot_mode { "" } else { "metadata snap: " };
        let set = trees
            .read(snap.mapping_root, snap.details_root)
            .map_err(|e| {
                e.0.iter()
                    .map(|l| format!("{prefix}{l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
        if set.roots.keys().ne(set.details.keys()) {
            return Err(format!("{prefix}inconsistent device ids"));
        }
        Ok(set)
    }
}

/// The devices whose mapping trees are checked, in report order.
struct Devices {
    list: Vec<DeviceToCheck>,
    exclusive: usize,
}

/// Live devices first, then the snapshot devices whose (id, root) pair is not
/// in the live top-level tree (all of them with `-m`), each ascending by id.
/// Both on-disk space maps as read: data, metadata.
type MapsRead = (
    Result<DiskSpaceMap, Vec<SmErrorIn>>,
    Result<DiskSpaceMap, Vec<SmErrorIn>>,
);

/// Reads both on-disk space maps, in parallel; the data map's ref-count tree
/// entries as `data_entries` says, the metadata map's all.
fn read_space_maps(dev: &dyn BlockDevice, sb: &Superblock, data_entries: TreeEntries) -> MapsRead {
    let max_bitmaps = sb.metadata_sm_root.nr_blocks;
    rayon::join(
        || {
            read_space_map(
                dev,
                SmKind::Data,
                sb.data_sm_root,
                max_bitmaps,
                data_entries,
            )
        },
        || {
            read_space_map(
                dev,
                SmKind::Metadata,
                sb.metadata_sm_root,
                max_bitmaps,
                TreeEntries::All,
            )
        },
    )
}

fn devices_to_check(
    live: Option<&DeviceSet>,
    live_time: u32,
    snap: Option<&(DeviceSet, u32)>,
) -> Devices {
    let mut list = Vec::new();
    let mut pairs = BTreeSet::new();
    if let Some(set) = live {
        for (&id, &root) in &set.roots {
            pairs.insert((id, root));
            if let Some(&details) = set.details.get(&id) {
                list.push(DeviceToCheck {
                    id,
                    root,
                    details,
                    sb_time: live_time,
                });
            }
        }
    }
    let mut exclusive = 0;
    if let Some((set, time)) = snap {
        for (&id, &root) in &set.roots {
            if pairs.contains(&(id, root)) {
                continue;
            }
            if let Some(&details) = set.details.get(&id) {
                exclusive += 1;
                list.push(DeviceToCheck {
                    id,
                    root,
                    details,
                    sb_time: *time,
                });
            }
        }
    }
    Devices { list, exclusive }
}
