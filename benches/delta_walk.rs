//! thin_delta cost benchmark: metadata blocks read and time of our diff
//! (one walk of both trees, shared subtrees read once) against the same diff
//! reading each tree completely on its own (what thin-provisioning-tools does).
//!
//!     cargo bench --bench delta_walk -- IMAGE [--share] [--runs N]
//!
//! IMAGE holds devices 0 and 1 with the same mapped keys (made by
//! scripts/bench/gen_delta_xml.py and a restore). A restore writes two
//! separate trees; `--share` first rewrites a copy of the image so that
//! device 1's tree points at device 0's nodes wherever the subtrees are equal,
//! which is what the kernel's copy-on-write leaves behind after a snapshot
//! and writes to it. Driven by scripts/bench/delta.sh.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use thintools::pdata::block::{Block, BlockNr, BLOCK_SIZE};
use thintools::pdata::btree::node::{NodeRef, NODE_HEADER_SIZE};
use thintools::pdata::checksum::{write_checksum, BlockKind};
use thintools::pdata::io::{open_metadata, Access, BlockDevice, FileDevice, Sharing};
use thintools::thin::engines::delta::{diff_walking, Walk};
use thintools::thin::model::open::device_roots;
use thintools::thin::model::superblock::read_live_superblock;

/// Counts the blocks read through it.
struct Counting<'a> {
    inner: &'a dyn BlockDevice,
    blocks: AtomicU64,
}

impl BlockDevice for Counting<'_> {
    fn nr_blocks(&self) -> u64 {
        self.inner.nr_blocks()
    }
    fn read_run(&self, first: BlockNr, bufs: &mut [Block]) -> io::Result<()> {
        self.blocks.fetch_add(bufs.len() as u64, Ordering::Relaxed);
        self.inner.read_run(first, bufs)
    }
    fn write_run(&self, first: BlockNr, bufs: &[Block]) -> io::Result<()> {
        self.inner.write_run(first, bufs)
    }
    fn sync(&self) -> io::Result<()> {
        self.inner.sync()
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some(image) = args.first().map(PathBuf::from) else {
        // Run without an image (e.g. by `cargo test --all-targets`): nothing to measure.
        eprintln!("usage: delta_walk IMAGE [--share] [--runs N] (see scripts/bench/delta.sh)");
        return;
    };
    let share = args.iter().any(|a| a == "--share");
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .map_or(5, |n| n.parse().unwrap());
    let image = if share {
        make_shared_copy(&image)
    } else {
        image
    };
    let dev = open_metadata(&image, Access::ReadOnly, Sharing::Exclusive).unwrap();
    let sb = read_live_superblock(&dev).unwrap();
    let roots = device_roots(&dev, sb.mapping_root).unwrap();
    let (r0, r1) = (roots[&0], roots[&1]);
    println!(
        "image {} (devices 0 and 1, roots {r0} and {r1})",
        image.display()
    );

    let (ours_blocks, ours_t, nr_deltas) = measure(&dev, runs, |d| {
        diff_walking(d, r0, r1, Walk::Together).unwrap().len()
    });
    let (full_blocks, full_t, _) = measure(&dev, runs, |d| {
        diff_walking(d, r0, r1, Walk::PerSide).unwrap().len()
    });
    let cpu = cpu_seconds();
    let (_, ours_cpu) = (
        measure(&dev, runs, |d| {
            diff_walking(d, r0, r1, Walk::Together).unwrap().len()
        }),
        cpu_seconds() - cpu,
    );
    let cpu = cpu_seconds();
    let (_, full_cpu) = (
        measure(&dev, runs, |d| {
            diff_walking(d, r0, r1, Walk::PerSide).unwrap().len()
        }),
        cpu_seconds() - cpu,
    );
    let per_run = |c: f64| Duration::from_secs_f64(c / runs.max(1) as f64);
    let (ours_cpu, full_cpu) = (per_run(ours_cpu), per_run(full_cpu));
    println!("| walk | metadata blocks read | median wall time | mean CPU time |");
    println!("|---|---|---|---|");
    println!(
        "| thin_delta (both trees in one walk) | {ours_blocks} | {ours_t:.1?} | {ours_cpu:.1?} |"
    );
    println!("| each tree walked on its own (upstream's way) | {full_blocks} | {full_t:.1?} | {full_cpu:.1?} |");
    println!("deltas: {nr_deltas}");
}

/// User plus system CPU time of this process so far, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // Fields 14 and 15 of the file (utime, stime), counted after the name.
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Median time and blocks read of `f` over `runs` runs.
fn measure(
    dev: &FileDevice,
    runs: usize,
    f: impl Fn(&dyn BlockDevice) -> usize,
) -> (u64, Duration, usize) {
    let mut times = Vec::new();
    let mut blocks = 0;
    let mut result = 0;
    for _ in 0..runs.max(1) {
        let c = Counting {
            inner: dev,
            blocks: AtomicU64::new(0),
        };
        let t = Instant::now();
        result = f(&c);
        times.push(t.elapsed());
        blocks = c.blocks.load(Ordering::Relaxed);
    }
    times.sort();
    (blocks, times[times.len() / 2], result)
}

/// Copies `image` and makes device 1's tree share every subtree equal to
/// device 0's at the same position. Returns the copy's path.
fn make_shared_copy(image: &Path) -> PathBuf {
    let out = image.with_extension("shared");
    std::fs::copy(image, &out).unwrap();
    let dev = open_metadata(&out, Access::ReadWrite, Sharing::Exclusive).unwrap();
    let sb = read_live_superblock(&dev).unwrap();
    let roots = device_roots(&dev, sb.mapping_root).unwrap();
    let (mut shared, mut total) = (0u64, 0u64);
    if share(&dev, roots[&0], roots[&1], &mut shared, &mut total) {
        // Whole trees equal: point the top-level entry of device 1 at device 0's root.
        retarget_top_level(&dev, sb.mapping_root, roots[&1], roots[&0]);
    }
    dev.sync().unwrap();
    println!("--share: {shared} of {total} nodes of device 1 now shared with device 0");
    out
}

fn read(dev: &dyn BlockDevice, nr: BlockNr) -> Box<Block> {
    let mut b = Block::zeroed();
    dev.read_at(nr, &mut b).unwrap();
    b
}

/// Byte range of value `i` in a node with 8-byte values.
fn value_range(block: &[u8; BLOCK_SIZE], i: usize) -> std::ops::Range<usize> {
    let max = u32::from_le_bytes(block[20..24].try_into().unwrap()) as usize;
    let off = NODE_HEADER_SIZE + max * 8 + i * 8;
    off..off + 8
}

/// True when subtree `b` (device 1) equals subtree `a` (device 0) and can be
/// replaced by it; rewrites `b` to point at `a`'s children where those match.
fn share(dev: &dyn BlockDevice, a: BlockNr, b: BlockNr, shared: &mut u64, total: &mut u64) -> bool {
    *total += 1;
    let ab = read(dev, a);
    let mut bb = read(dev, b);
    let (na, nb) = (
        NodeRef::new(&ab.0, a, 8).unwrap(),
        NodeRef::new(&bb.0, b, 8).unwrap(),
    );
    let same_keys = na
        .keys()
        .iter()
        .map(|k| k.get())
        .eq(nb.keys().iter().map(|k| k.get()));
    if !same_keys || na.is_leaf() != nb.is_leaf() {
        return false;
    }
    if na.is_leaf() {
        let equal = na
            .values_u64()
            .iter()
            .map(|v| v.get())
            .eq(nb.values_u64().iter().map(|v| v.get()));
        *shared += u64::from(equal);
        return equal;
    }
    let (ac, bc): (Vec<u64>, Vec<u64>) = (
        na.values_u64().iter().map(|v| v.get()).collect(),
        nb.values_u64().iter().map(|v| v.get()).collect(),
    );
    let mut all = true;
    let mut changed = false;
    for (i, (&ca, &cb)) in ac.iter().zip(&bc).enumerate() {
        if share(dev, ca, cb, shared, total) {
            let r = value_range(&bb.0, i);
            bb.0[r].copy_from_slice(&ca.to_le_bytes());
            changed = true;
        } else {
            all = false;
        }
    }
    if all {
        *shared += 1;
        return true;
    }
    if changed {
        write_checksum(&mut bb.0, BlockKind::Node);
        dev.write_at(b, &bb).unwrap();
    }
    false
}

fn retarget_top_level(dev: &dyn BlockDevice, top: BlockNr, from: BlockNr, to: BlockNr) {
    let mut b = read(dev, top);
    let n = NodeRef::new(&b.0, top, 8).unwrap();
    assert!(n.is_leaf(), "top-level tree of two devices is one leaf");
    let i = n.values_u64().iter().position(|v| v.get() == from).unwrap();
    let r = value_range(&b.0, i);
    b.0[r].copy_from_slice(&to.to_le_bytes());
    write_checksum(&mut b.0, BlockKind::Node);
    dev.write_at(top, &b).unwrap();
}
