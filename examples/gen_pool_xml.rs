//! Benchmark pool generator: writes thin_dump XML of a synthetic pool on
//! stdout, for `thin_restore` to turn into binary metadata
//! (scripts/bench/run.sh builds its images with it).
//!
//! The pool has `--thins` origin volumes. Each origin maps `--mappings`
//! virtual blocks, in runs of consecutive blocks (mean length `--run`) with
//! holes between them, each mapped block on a fresh data block. Then a chain
//! of `--snaps` snapshots is taken of every origin; after each snapshot the
//! origin rewrites about `--overwrite` of its mapped blocks (in clusters of
//! `--cluster` consecutive mapped blocks) onto fresh data blocks, the way
//! copy-on-write after a snapshot does. So snapshot k holds the origin's
//! state before the k-th round of rewrites and shares everything else with
//! its neighbours.
//!
//! With `--share W`, every window of W virtual blocks whose mappings are the
//! same on several devices of a chain is written once as a `<def>` and
//! referenced with `<ref>` from each of those devices, so that thin_restore
//! shares its leaves between them as the kernel's copy-on-write does;
//! without it every device's mappings are written out in full.
//!
//! Output is a function of the arguments alone (the random numbers come from
//! `--seed`). Memory: the virtual block numbers of one origin plus the
//! rewritten block indices of all origins.
//!
//! ```text
//! cargo run --release --example gen_pool_xml -- --thins 4 --mappings 1000000 \
//!     --snaps 3 --overwrite 0.05 --seed 2 > med.xml
//! ```

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

const USAGE: &str = "usage: gen_pool_xml [--thins N] [--mappings N] [--snaps N] [--overwrite F] \
[--run N] [--cluster N] [--share W] [--block-size SECTORS] [--seed N]";

/// The shape of the pool.
#[derive(Clone, Debug)]
struct Shape {
    thins: u64,
    mappings: u64,
    snaps: u32,
    overwrite: f64,
    run: u64,
    cluster: u64,
    share: u64,
    block_size: u64,
    seed: u64,
}

impl Shape {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Shape, String> {
        let mut s = Shape {
            thins: 4,
            mappings: 100_000,
            snaps: 2,
            overwrite: 0.05,
            run: 8,
            cluster: 1,
            share: 0,
            block_size: 128,
            seed: 1,
        };
        while let Some(flag) = args.next() {
            let value = args.next().ok_or(format!("{flag} needs a value"))?;
            let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
            let int = || value.parse::<u64>().map_err(|e| bad(&e));
            match flag.as_str() {
                "--thins" => s.thins = int()?,
                "--mappings" => s.mappings = int()?,
                "--snaps" => s.snaps = value.parse().map_err(|e| bad(&e))?,
                "--overwrite" => s.overwrite = value.parse().map_err(|e| bad(&e))?,
                "--run" => s.run = int()?,
                "--cluster" => s.cluster = int()?,
                "--share" => s.share = int()?,
                "--block-size" => s.block_size = int()?,
                "--seed" => s.seed = int()?,
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        if s.snaps > 62 {
            return Err("--snaps must be at most 62".into());
        }
        if !(0.0..=1.0).contains(&s.overwrite) {
            return Err("--overwrite must lie in 0..1".into());
        }
        if s.mappings > u64::from(u32::MAX) || s.run == 0 || s.cluster == 0 {
            return Err("--mappings must fit in 32 bits, --run and --cluster be positive".into());
        }
        Ok(s)
    }
}

/// splitmix64: small, fast and good enough for synthetic layouts.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        Rng(seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
    /// Exponentially distributed with mean `mean`, at least 1.
    fn run_len(&mut self, mean: u64) -> u64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((-(1.0 - u).ln() * mean as f64) as u64).max(1)
    }
}

/// One origin and its snapshot chain.
struct Chain {
    /// Index of the chain (origin) in the pool.
    nr: u64,
    /// First data block of the origin's initial writes (mapped block i is on `data0 + i`).
    data0: u64,
    /// `rewrites[g - 1]`: sorted indices of the mapped blocks rewritten after
    /// snapshot g, on data blocks `rewrite_data0[g - 1] + position`.
    rewrites: Vec<Vec<u32>>,
    rewrite_data0: Vec<u64>,
}

impl Chain {
    /// The virtual block of each mapped block, increasing.
    fn virtual_blocks(&self, s: &Shape) -> Vec<u64> {
        let mut rng = Rng::new(s.seed, 2 * self.nr);
        let mut out = Vec::with_capacity(s.mappings as usize);
        let mut vb = 0u64;
        while (out.len() as u64) < s.mappings {
            vb += rng.below(3 * s.run + 1);
            let len = rng.run_len(s.run).min(s.mappings - out.len() as u64);
            out.extend(vb..vb + len);
            vb += len;
        }
        out
    }
}

/// Chooses the rewritten blocks of every chain and numbers the data blocks.
fn plan(s: &Shape) -> (Vec<Chain>, u64) {
    let mut next_data = 0u64;
    let mut chains = Vec::new();
    for nr in 0..s.thins {
        let mut rng = Rng::new(s.seed, 2 * nr + 1);
        let data0 = next_data;
        next_data += s.mappings;
        let mut rewrites = Vec::new();
        let mut rewrite_data0 = Vec::new();
        for _ in 0..s.snaps {
            let wanted = (s.mappings as f64 * s.overwrite).round() as u64;
            let mut idx: Vec<u32> = Vec::with_capacity(wanted as usize);
            if s.mappings > 0 {
                let c = s.cluster.min(s.mappings);
                for _ in 0..wanted.div_ceil(c) {
                    let start = rng.below(s.mappings - c + 1);
                    idx.extend((start..start + c).map(|i| i as u32));
                }
            }
            idx.sort_unstable();
            idx.dedup();
            rewrite_data0.push(next_data);
            next_data += idx.len() as u64;
            rewrites.push(idx);
        }
        chains.push(Chain {
            nr,
            data0,
            rewrites,
            rewrite_data0,
        });
    }
    (chains, next_data)
}

/// Mapping values of one chain as seen by the device that sees rewrite
/// rounds `1..=limit`, for increasing mapped-block indices.
struct View<'a> {
    chain: &'a Chain,
    limit: usize,
    cursors: Vec<usize>,
}

impl<'a> View<'a> {
    fn new(chain: &'a Chain, limit: usize) -> Self {
        View {
            chain,
            limit,
            cursors: vec![0; chain.rewrites.len()],
        }
    }
    /// (data block, time) of mapped block `i`; `i` must not decrease between calls.
    fn get(&mut self, i: u32) -> (u64, u32) {
        for g in (1..=self.limit).rev() {
            let list = &self.chain.rewrites[g - 1];
            let cur = &mut self.cursors[g - 1];
            while *cur < list.len() && list[*cur] < i {
                *cur += 1;
            }
            if list.get(*cur) == Some(&i) {
                return (self.chain.rewrite_data0[g - 1] + *cur as u64, g as u32);
            }
        }
        (self.chain.data0 + u64::from(i), 0)
    }
}

/// A window of mapped blocks `begin..end` (indices) and the rewrite rounds
/// that touch it (bit g).
struct Window {
    begin: u32,
    end: u32,
    touched: u64,
}

impl Window {
    /// The newest round touching this window that a device seeing rounds
    /// `1..=limit` sees (0: none).
    fn version(&self, limit: u32) -> u32 {
        let seen = self.touched & ((2u64 << limit) - 1) & !1;
        if seen == 0 {
            0
        } else {
            63 - seen.leading_zeros()
        }
    }
    /// Whether the content at `version` is on two or more of the chain's
    /// devices (the devices see rounds 0..=snaps, one each).
    fn shared(&self, version: u32, snaps: u32) -> bool {
        let later = self.touched & !((2u64 << version) - 1);
        let next = if later == 0 {
            snaps + 1
        } else {
            later.trailing_zeros()
        };
        next - version >= 2
    }
}

fn windows(chain: &Chain, vbs: &[u64], share: u64) -> Vec<Window> {
    let mut out: Vec<Window> = Vec::new();
    if share == 0 {
        return out;
    }
    for (i, &vb) in vbs.iter().enumerate() {
        let i = i as u32;
        match out.last_mut() {
            Some(w) if vbs[w.begin as usize] / share == vb / share => w.end = i + 1,
            _ => out.push(Window {
                begin: i,
                end: i + 1,
                touched: 0,
            }),
        }
    }
    for (g, list) in chain.rewrites.iter().enumerate() {
        for &i in list {
            let w = out.partition_point(|w| w.end <= i);
            out[w].touched |= 1 << (g + 1);
        }
    }
    out
}

/// Collects mappings into runs and writes them as XML lines.
struct Runs<'w, W: Write> {
    out: &'w mut W,
    indent: &'static str,
    cur: Option<(u64, u64, u64, u32)>,
}

impl<'w, W: Write> Runs<'w, W> {
    fn new(out: &'w mut W, indent: &'static str) -> Self {
        Runs {
            out,
            indent,
            cur: None,
        }
    }
    fn push(&mut self, vb: u64, db: u64, time: u32) -> io::Result<()> {
        if let Some((v, d, len, t)) = &mut self.cur {
            if *v + *len == vb && *d + *len == db && *t == time {
                *len += 1;
                return Ok(());
            }
        }
        self.flush()?;
        self.cur = Some((vb, db, 1, time));
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        let ind = self.indent;
        match self.cur.take() {
            None => Ok(()),
            Some((v, d, 1, t)) => writeln!(
                self.out,
                "{ind}<single_mapping origin_block=\"{v}\" data_block=\"{d}\" time=\"{t}\"/>"
            ),
            Some((v, d, len, t)) => writeln!(
                self.out,
                "{ind}<range_mapping origin_begin=\"{v}\" data_begin=\"{d}\" length=\"{len}\" time=\"{t}\"/>"
            ),
        }
    }
}

fn def_name(chain: &Chain, window: usize, version: u32) -> String {
    format!("c{}w{window}v{version}", chain.nr)
}

/// Writes one chain: its shared windows as defs, then its devices.
fn write_chain(out: &mut impl Write, s: &Shape, chain: &Chain) -> io::Result<()> {
    let vbs = chain.virtual_blocks(s);
    let wins = windows(chain, &vbs, s.share);
    let mut views: Vec<View> = (0..=s.snaps as usize)
        .map(|l| View::new(chain, l))
        .collect();
    for (n, w) in wins.iter().enumerate() {
        // The window's distinct contents: the initial one and one per round touching it.
        for v in (0..=s.snaps).filter(|&v| v == 0 || w.touched & (1 << v) != 0) {
            if !w.shared(v, s.snaps) {
                continue;
            }
            writeln!(out, "  <def name=\"{}\">", def_name(chain, n, v))?;
            let mut runs = Runs::new(out, "    ");
            for i in w.begin..w.end {
                let (db, t) = views[v as usize].get(i);
                runs.push(vbs[i as usize], db, t)?;
            }
            runs.flush()?;
            writeln!(out, "  </def>")?;
        }
    }
    let per_chain = u64::from(s.snaps) + 1;
    // Device k of the chain: the origin (k = 0, sees every round) or
    // snapshot k (sees the rounds before it).
    for k in 0..=s.snaps {
        let (limit, ctime, stime) = if k == 0 {
            (s.snaps, 0, s.snaps)
        } else {
            (k - 1, k, k)
        };
        writeln!(
            out,
            "  <device dev_id=\"{}\" mapped_blocks=\"{}\" transaction=\"0\" creation_time=\"{ctime}\" snap_time=\"{stime}\">",
            chain.nr * per_chain + u64::from(k),
            s.mappings
        )?;
        let mut view = View::new(chain, limit as usize);
        let mut runs = Runs::new(out, "    ");
        let mut next_window = 0;
        let mut i = 0u32;
        while u64::from(i) < s.mappings {
            if let Some(w) = wins.get(next_window) {
                next_window += 1;
                let v = w.version(limit);
                if w.shared(v, s.snaps) {
                    runs.flush()?;
                    writeln!(
                        runs.out,
                        "    <ref name=\"{}\"/>",
                        def_name(chain, next_window - 1, v)
                    )?;
                } else {
                    for j in w.begin..w.end {
                        let (db, t) = view.get(j);
                        runs.push(vbs[j as usize], db, t)?;
                    }
                }
                i = w.end;
            } else {
                let (db, t) = view.get(i);
                runs.push(vbs[i as usize], db, t)?;
                i += 1;
            }
        }
        runs.flush()?;
        writeln!(out, "  </device>")?;
    }
    Ok(())
}

fn generate(s: &Shape, out: &mut impl Write) -> io::Result<()> {
    let (chains, data_used) = plan(s);
    let nr_data_blocks = data_used + data_used / 10 + 1;
    let devices = s.thins * (u64::from(s.snaps) + 1);
    writeln!(
        out,
        "<superblock uuid=\"\" time=\"{}\" transaction=\"{devices}\" version=\"2\" data_block_size=\"{}\" nr_data_blocks=\"{nr_data_blocks}\">",
        s.snaps, s.block_size
    )?;
    for chain in &chains {
        write_chain(out, s, chain)?;
    }
    // No final newline, as thin_dump writes it: a restore dumps back to these bytes.
    write!(out, "</superblock>")?;
    out.flush()
}

fn main() -> ExitCode {
    let shape = match Shape::parse(std::env::args().skip(1)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gen_pool_xml: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    match generate(&shape, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::from(1),
        Err(e) => {
            eprintln!("gen_pool_xml: {e}");
            ExitCode::from(1)
        }
    }
}
