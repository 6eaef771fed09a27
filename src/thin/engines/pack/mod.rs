//! thin_metadata_pack / thin_metadata_unpack: the engines.
//!
//! `vm` decodes records, `encode` writes them, `file` holds the container
//! format and the parallel pack/unpack drivers; this module opens the files,
//! guards an output that already holds metadata and writes the unpacked
//! device.

pub mod encode;
pub mod file;
pub mod vm;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::pdata::block::{Block, BlockNr, BLOCK_SIZE_U64};
use crate::pdata::checksum::{self, BlockKind};
use crate::pdata::io::{open_metadata, Access, BlockDevice, FileDevice, OpenError, Sharing};
use crate::pdata::sys;
use crate::pdata::to_index;
use file::{BlockSink, Header, PackStats};

pub use file::PackError;

/// How an output that already holds a thin, cache or era superblock is
/// treated.
#[derive(Clone, Copy, Debug)]
pub enum Overwrite {
    /// Overwrite it (`-f`).
    Force,
    /// Ask: the function asks the user and returns true for "yes".
    Ask(fn() -> io::Result<bool>),
}

/// What to pack and where.
#[derive(Clone, Debug)]
pub struct PackOptions {
    /// Metadata device or file to pack (opened read-only).
    pub input: PathBuf,
    /// Pack file to write.
    pub output: PathBuf,
    /// Treatment of an output holding metadata.
    pub overwrite: Overwrite,
}

/// What to unpack and where.
#[derive(Clone, Debug)]
pub struct UnpackOptions {
    /// Pack file to read.
    pub input: PathBuf,
    /// Metadata device or file to write.
    pub output: PathBuf,
    /// Treatment of an output holding metadata.
    pub overwrite: Overwrite,
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
        let data = match sys::next_data(file, pos) {
            Ok(Some(d)) => d,
            Ok(None) => break,
            Err(_) => return whole,
        };
        let Ok(Some(hole)) = sys::next_hole(file, data) else {
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

/// Refuses an output that is the input itself (truncating it would destroy
/// the input before it was read).
fn ensure_distinct(input: &Path, output: &Path) -> Result<(), PackError> {
    use std::os::unix::fs::MetadataExt;
    if let (Ok(i), Ok(o)) = (std::fs::metadata(input), std::fs::metadata(output)) {
        if i.dev() == o.dev() && i.ino() == o.ino() {
            return Err(PackError::SameFile);
        }
    }
    Ok(())
}

/// A step on `path` that failed with `source`.
fn step(what: &str, path: &Path) -> impl FnOnce(io::Error) -> PackError {
    let context = format!("{what} {}", path.display());
    move |source| PackError::Step { context, source }
}

/// Packs every block of the input with a recognised checksum into the
/// output, then syncs it.
///
/// # Errors
/// A [`PackError`]: an input or output that cannot be opened, a refused
/// overwrite, or an I/O error (named with the file and step).
pub fn pack(opts: &PackOptions) -> Result<PackStats, PackError> {
    let dev = open_metadata(&opts.input, Access::ReadOnly, Sharing::Exclusive)?;
    ensure_distinct(&opts.input, &opts.output)?;
    let out = open_output(&opts.output, opts.overwrite)?;
    if out.kind == OutKind::Regular {
        out.file
            .set_len(0)
            .map_err(step("truncating", &opts.output))?;
    }
    let ranges = data_ranges(dev.file(), dev.nr_blocks());
    let mut w = io::BufWriter::with_capacity(1 << 20, &out.file);
    let stats = file::pack(&dev, &ranges, &mut w)?;
    drop(w);
    out.file.sync_all().map_err(step("writing", &opts.output))?;
    Ok(stats)
}

/// Writes the device a pack file describes: every stored block, zeros for
/// the rest of a block device, block 0 last; then syncs.
///
/// # Errors
/// A [`PackError`]: a bad or corrupt pack file, an output that cannot be
/// opened or is too small, a refused overwrite, or an I/O error.
pub fn unpack(opts: &UnpackOptions) -> Result<(), PackError> {
    let input = open_pack(&opts.input)?;
    let header = Header::read(&input)?;
    ensure_distinct(&opts.input, &opts.output)?;
    let out = open_output(&opts.output, opts.overwrite)?;
    let bytes = header
        .nr_blocks
        .checked_mul(BLOCK_SIZE_U64)
        .ok_or(PackError::TooManyBlocks(header.nr_blocks))?;
    match out.kind {
        OutKind::Regular => {
            out.file
                .set_len(0)
                .and_then(|()| out.file.set_len(bytes))
                .map_err(|source| PackError::Step {
                    context: format!("sizing {} to {bytes} bytes", opts.output.display()),
                    source,
                })?;
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
    sink.finish().map_err(|e| PackError::Finish {
        context: format!("writing {}", opts.output.display()),
        source: Box::new(e),
    })
}

/// Opens a pack file: it must exist and be a regular file or a block device.
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
fn open_output(path: &Path, overwrite: Overwrite) -> Result<Output, PackError> {
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
    if let Overwrite::Ask(confirm) = overwrite {
        if holds_metadata(&file, size) && !confirm()? {
            return Err(PackError::NotOverwritten);
        }
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
        let written =
            (kind == OutKind::BlockDev).then(|| vec![0u64; to_index(dev.nr_blocks().div_ceil(64))]);
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

    fn finish(mut self) -> Result<(), PackError> {
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
            if let Some(w) = bits.get_mut(to_index(nr / 64)) {
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
    let is_set = |b: u64| bits[to_index(b / 64)] & (1 << (b % 64)) != 0;
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
