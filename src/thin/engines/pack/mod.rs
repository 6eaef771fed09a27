//! thin_metadata_pack / thin_metadata_unpack (spec/tools.md, formats.md §9).
//!
//! `vm` decodes records, `encode` writes them, `file` holds the container
//! format and the parallel pack/unpack drivers; this module is the command
//! layer: options, opening files, the overwrite prompt.

pub mod encode;
pub mod file;
pub mod vm;

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufWriter, Write};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use clap::{ArgAction, Parser};

use crate::commands::exit::Outcome;
use crate::commands::run as cli;
use crate::pdata::block::{Block, BlockNr, BLOCK_SIZE_U64};
use crate::pdata::checksum::{self, BlockKind};
use crate::pdata::io::{open_metadata, Access, BlockDevice, FileDevice, OpenError, Sharing};
use file::{BlockSink, Header, PackError};

/// Produce a compressed file of thin metadata.
#[derive(Parser, Debug)]
#[command(
    name = "thin_metadata_pack",
    version = crate::commands::VERSION,
    about = "Produce a compressed file of thin metadata"
)]
pub struct PackOpts {
    /// Overwrite the output without asking, even if it holds metadata
    #[arg(short = 'f', long = "force", action = ArgAction::Count)]
    force: u8,
    /// Metadata device or file to pack
    #[arg(short = 'i', long = "input", value_name = "DEV")]
    input: PathBuf,
    /// Pack file to write
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
}

/// Unpack a compressed file of thin metadata.
#[derive(Parser, Debug)]
#[command(
    name = "thin_metadata_unpack",
    version = crate::commands::VERSION,
    about = "Unpack a compressed file of thin metadata"
)]
pub struct UnpackOpts {
    /// Overwrite the output without asking, even if it holds metadata
    #[arg(short = 'f', long = "force", action = ArgAction::Count)]
    force: u8,
    /// Pack file to read
    #[arg(short = 'i', long = "input", value_name = "FILE")]
    input: PathBuf,
    /// Metadata device or file to write
    #[arg(short = 'o', long = "output", value_name = "DEV")]
    output: PathBuf,
}

/// Entry point of `thin_metadata_pack`.
#[must_use]
pub fn pack_command(args: &[OsString]) -> Outcome {
    cli::run_with::<PackOpts, _>("thin_metadata_pack", args, |o| match run_pack(&o) {
        Ok(()) => Outcome::Success,
        Err(e) => cli::report_error(&e, false),
    })
}

/// Entry point of `thin_metadata_unpack`.
#[must_use]
pub fn unpack_command(args: &[OsString]) -> Outcome {
    cli::run_with::<UnpackOpts, _>("thin_metadata_unpack", args, |o| match run_unpack(&o) {
        Ok(()) => Outcome::Success,
        Err(e) => cli::report_error(&e, false),
    })
}

/// How an existing output is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Overwrite {
    /// Ask when it already holds metadata.
    Ask,
    /// `-f`.
    Force,
}

/// The block ranges of `file` that may hold data: for a sparse regular file
/// its data extents (SEEK_DATA/SEEK_HOLE), otherwise (block devices, file
/// systems without hole reporting) the whole device.
fn data_ranges(file: &File, nr_blocks: u64) -> Vec<std::ops::Range<u64>> {
    let whole = vec![std::ops::Range {
        start: 0,
        end: nr_blocks,
    }];
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return whole;
    }
    let mut ranges: Vec<std::ops::Range<u64>> = Vec::new();
    let mut pos: u64 = 0;
    while pos < nr_blocks * BLOCK_SIZE_U64 {
        let data = match seek_data_or_hole(file, pos, libc::SEEK_DATA) {
            Ok(Some(d)) => d,
            Ok(None) => break,
            Err(_) => return whole,
        };
        let Ok(Some(hole)) = seek_data_or_hole(file, data, libc::SEEK_HOLE) else {
            return whole;
        };
        let (first, end) = (
            data / BLOCK_SIZE_U64,
            hole.div_ceil(BLOCK_SIZE_U64).min(nr_blocks),
        );
        match ranges.last_mut() {
            _ if first >= end => {}
            Some(last) if last.end >= first => last.end = last.end.max(end),
            _ => ranges.push(first..end),
        }
        pos = hole;
    }
    ranges
}

/// `lseek(SEEK_DATA | SEEK_HOLE)`: the next data or hole offset at or after
/// `from`, `None` when there is no more data.
fn seek_data_or_hole(file: &File, from: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    use std::os::fd::AsRawFd;
    let from = libc::off_t::try_from(from).map_err(io::Error::other)?;
    // SAFETY: lseek takes plain integers and an fd we own; it touches no
    // memory of ours. Pack reads positionally, so the moved offset is unused.
    let r = unsafe { libc::lseek(file.as_raw_fd(), from, whence) };
    if r >= 0 {
        return Ok(u64::try_from(r).ok());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENXIO) {
        Ok(None)
    } else {
        Err(e)
    }
}

/// Refuses an output that is the input itself (truncating it would destroy
/// the input before it was read).
fn ensure_distinct(input: &Path, output: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if let (Ok(i), Ok(o)) = (std::fs::metadata(input), std::fs::metadata(output)) {
        if i.dev() == o.dev() && i.ino() == o.ino() {
            return Err(anyhow!("input and output are the same file"));
        }
    }
    Ok(())
}

fn run_pack(o: &PackOpts) -> anyhow::Result<()> {
    let dev = open_metadata(&o.input, Access::ReadOnly, Sharing::Exclusive)?;
    ensure_distinct(&o.input, &o.output)?;
    let force = if o.force > 0 {
        Overwrite::Force
    } else {
        Overwrite::Ask
    };
    let out = open_output(&o.output, force)?;
    let shown = o.output.display().to_string();
    if out.kind == OutKind::Regular {
        out.file
            .set_len(0)
            .with_context(|| format!("truncating {shown}"))?;
    }
    let ranges = data_ranges(dev.file(), dev.nr_blocks());
    let mut w = BufWriter::with_capacity(1 << 20, &out.file);
    file::pack(&dev, &ranges, &mut w)?;
    drop(w);
    out.file
        .sync_all()
        .with_context(|| format!("writing {shown}"))?;
    Ok(())
}

fn run_unpack(o: &UnpackOpts) -> anyhow::Result<()> {
    let input = open_pack(&o.input)?;
    let header = Header::read(&input)?;
    ensure_distinct(&o.input, &o.output)?;
    let force = if o.force > 0 {
        Overwrite::Force
    } else {
        Overwrite::Ask
    };
    let out = open_output(&o.output, force)?;
    let bytes = header
        .nr_blocks
        .checked_mul(BLOCK_SIZE_U64)
        .ok_or_else(|| anyhow!("pack file describes {} blocks, too many", header.nr_blocks))?;
    let shown = o.output.display().to_string();
    match out.kind {
        OutKind::Regular => {
            out.file
                .set_len(0)
                .and_then(|()| out.file.set_len(bytes))
                .with_context(|| format!("sizing {shown} to {bytes} bytes"))?;
        }
        OutKind::BlockDev => {
            if out.size < bytes {
                return Err(OpenError::OutputTooSmall.into());
            }
        }
    }
    let dev = FileDevice::new(out.file, header.nr_blocks);
    let mut sink = DeviceSink::new(&dev, out.kind);
    file::unpack(&input, header, &mut sink)?;
    sink.finish().with_context(|| format!("writing {shown}"))?;
    Ok(())
}

/// Opens a pack file, applying §2.4 items 1–3.
fn open_pack(path: &Path) -> Result<File, OpenError> {
    let shown = path.display().to_string();
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() || m.file_type().is_block_device() => {}
        Ok(_) => return Err(OpenError::WrongType(shown)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(OpenError::InputMissing(shown))
        }
        Err(e) => return Err(OpenError::Stat(e)),
    }
    File::open(path).map_err(|source| OpenError::Os {
        path: shown,
        source,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutKind {
    Regular,
    BlockDev,
}

struct Output {
    file: File,
    kind: OutKind,
    size: u64,
}

/// True for paths under `/dev`, where a missing output must not be created.
fn under_dev(path: &Path) -> bool {
    std::path::absolute(path).is_ok_and(|p| p.starts_with("/dev"))
}

/// Opens (or creates) the output of pack/unpack: an existing regular file or
/// block device holding a thin/cache/era superblock needs confirmation.
fn open_output(path: &Path, overwrite: Overwrite) -> anyhow::Result<Output> {
    let shown = path.display().to_string();
    let kind = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Some(OutKind::Regular),
        Ok(m) if m.file_type().is_block_device() => Some(OutKind::BlockDev),
        Ok(_) => return Err(OpenError::WrongType(shown).into()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(OpenError::Stat(e).into()),
    };
    let os = |source| OpenError::Os {
        path: shown.clone(),
        source,
    };
    let Some(kind) = kind else {
        if under_dev(path) {
            return Err(OpenError::OutputMissing(shown).into());
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(os)?;
        return Ok(Output {
            file,
            kind: OutKind::Regular,
            size: 0,
        });
    };
    let mut opts = OpenOptions::new();
    opts.read(true).write(true);
    if kind == OutKind::BlockDev {
        opts.custom_flags(libc::O_EXCL);
    }
    let file = opts.open(path).map_err(os)?;
    let size = {
        // The size of a block device is where its end is; then back to the
        // start, where pack's sequential writes begin.
        let mut f = &file;
        let end = io::Seek::seek(&mut f, io::SeekFrom::End(0)).map_err(os)?;
        io::Seek::seek(&mut f, io::SeekFrom::Start(0)).map_err(os)?;
        end
    };
    if overwrite == Overwrite::Ask && holds_metadata(&file, size) && !confirm_overwrite()? {
        return Err(anyhow!("Output file not overwritten"));
    }
    Ok(Output { file, kind, size })
}

/// True when block 0 carries a valid thin, cache or era superblock checksum.
fn holds_metadata(file: &File, size: u64) -> bool {
    let mut b = Block::zeroed();
    if size < BLOCK_SIZE_U64 || file.read_exact_at(&mut b.0, 0).is_err() {
        return false;
    }
    matches!(
        checksum::classify(&b.0),
        Some(BlockKind::Superblock | BlockKind::CacheSuperblock | BlockKind::EraSuperblock)
    )
}

/// Asks on stderr, reads one line from stdin: `y`/`yes` (any case) accepts.
fn confirm_overwrite() -> anyhow::Result<bool> {
    {
        let mut e = io::stderr().lock();
        write!(
            e,
            "The destination appears to already contain metadata, are you sure? [y/n]: "
        )?;
        e.flush()?;
    }
    let mut line = String::new();
    if io::stdin().lock().read_line(&mut line).is_err() {
        return Ok(false);
    }
    let answer = line.trim().to_ascii_lowercase();
    Ok(answer == "y" || answer == "yes")
}

/// Writes unpacked blocks to the output: consecutive blocks in one write,
/// block 0 last, and on a block device every block the pack does not hold as
/// zeros.
struct DeviceSink<'a> {
    dev: &'a FileDevice,
    block0: Option<Box<Block>>,
    /// One bit per block written (block devices only).
    written: Option<Vec<u64>>,
    /// Consecutive blocks not yet written, starting at `run_start`.
    run: Vec<Block>,
    run_start: BlockNr,
}

/// Longest write of consecutive blocks.
const WRITE_RUN: usize = 256;

impl<'a> DeviceSink<'a> {
    fn new(dev: &'a FileDevice, kind: OutKind) -> Self {
        let written = (kind == OutKind::BlockDev)
            .then(|| vec![0u64; usize::try_from(dev.nr_blocks().div_ceil(64)).unwrap_or(0)]);
        DeviceSink {
            dev,
            block0: None,
            written,
            run: Vec::with_capacity(WRITE_RUN),
            run_start: 0,
        }
    }

    fn flush(&mut self) -> Result<(), PackError> {
        if self.run.is_empty() {
            return Ok(());
        }
        let (first, n) = (self.run_start, self.run.len() as u64);
        self.dev
            .write_run(first, &self.run)
            .map_err(|source| PackError::Io {
                context: format!("writing blocks {first}..{}", first + n),
                source,
            })?;
        self.run.clear();
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<()> {
        self.flush()?;
        if let Some(bits) = &self.written {
            zero_unwritten(self.dev, bits)?;
        }
        if self.dev.nr_blocks() > 0 {
            let zero = Block::zeroed();
            self.dev
                .write_at(0, self.block0.as_deref().unwrap_or(&zero))?;
        }
        self.dev.sync()?;
        Ok(())
    }
}

impl BlockSink for DeviceSink<'_> {
    fn put(&mut self, nr: BlockNr, block: &Block) -> Result<(), PackError> {
        if let Some(bits) = &mut self.written {
            if let Some(w) = usize::try_from(nr / 64).ok().and_then(|i| bits.get_mut(i)) {
                *w |= 1 << (nr % 64);
            }
        }
        if nr == 0 {
            self.block0 = Some(Box::new(block.clone()));
            return Ok(());
        }
        let next = self.run_start + self.run.len() as u64;
        if !self.run.is_empty() && (nr != next || self.run.len() == WRITE_RUN) {
            self.flush()?;
        }
        if self.run.is_empty() {
            self.run_start = nr;
        }
        self.run.push(block.clone());
        Ok(())
    }
}

/// Writes zeros over every block (except 0) whose bit is clear.
fn zero_unwritten(dev: &FileDevice, bits: &[u64]) -> io::Result<()> {
    const RUN: usize = 256;
    let zeros = Block::zeroed_vec(RUN);
    let n = dev.nr_blocks();
    let is_set = |b: u64| bits[usize::try_from(b / 64).unwrap_or(0)] & (1 << (b % 64)) != 0;
    let mut b = 1;
    while b < n {
        if is_set(b) {
            b += 1;
            continue;
        }
        let mut len = 1;
        while len < RUN && b + (len as u64) < n && !is_set(b + len as u64) {
            len += 1;
        }
        dev.write_run(b, &zeros[..len])?;
        b += len as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn data_ranges_skip_holes_of_sparse_files() {
        let f = tempfile::tempfile().unwrap();
        f.set_len(1000 * BLOCK_SIZE_U64).unwrap();
        f.write_all_at(&[1u8; 4096], 10 * BLOCK_SIZE_U64).unwrap();
        f.write_all_at(&[1u8; 100], 500 * BLOCK_SIZE_U64 + 7)
            .unwrap();
        let r = data_ranges(&f, 1000);
        // File systems report data at their own granularity: every written
        // block must be covered, and most of the file must be skipped.
        let covered = |b: u64| r.iter().any(|x| x.contains(&b));
        assert!(covered(10) && covered(500), "{r:?}");
        assert!(
            r.iter().map(|x| x.end - x.start).sum::<u64>() < 1000,
            "{r:?}"
        );
        assert!(r.windows(2).all(|w| w[0].end < w[1].start), "{r:?}");
    }
}
