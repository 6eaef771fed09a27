//! Block devices: a tiny positional trait, its file and in-memory
//! implementations, opening with the rules every tool shares, and batched
//! reads that coalesce neighbouring blocks into one large read.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::RwLock;

use crate::pdata::block::{Block, BlockNr, BLOCK_SIZE, BLOCK_SIZE_U64};
use crate::pdata::to_index;

/// Positional block I/O. Implementations must be usable from several threads.
pub trait BlockDevice: Send + Sync {
    /// Number of whole 4 KiB blocks on the device.
    fn nr_blocks(&self) -> u64;

    /// Reads `bufs.len()` consecutive blocks starting at `first`.
    ///
    /// # Errors
    /// Any I/O error, or `UnexpectedEof` past the end of the device.
    fn read_run(&self, first: BlockNr, bufs: &mut [Block]) -> io::Result<()>;

    /// Writes consecutive blocks starting at `first`.
    ///
    /// # Errors
    /// Any I/O error.
    fn write_run(&self, first: BlockNr, bufs: &[Block]) -> io::Result<()>;

    /// Makes every write durable.
    ///
    /// # Errors
    /// Any I/O error.
    fn sync(&self) -> io::Result<()>;

    /// Reads one block.
    ///
    /// # Errors
    /// As `read_run`.
    fn read_at(&self, nr: BlockNr, buf: &mut Block) -> io::Result<()> {
        self.read_run(nr, std::slice::from_mut(buf))
    }

    /// Writes one block.
    ///
    /// # Errors
    /// As `write_run`.
    fn write_at(&self, nr: BlockNr, buf: &Block) -> io::Result<()> {
        self.write_run(nr, std::slice::from_ref(buf))
    }

    /// Starts writing back what was written so far, without waiting for it
    /// (a hint: durability still comes from [`BlockDevice::sync`]). A long
    /// writer calls it as it goes, so that its final sync finds little left
    /// to write. Nothing to do for devices without a page cache.
    ///
    /// # Errors
    /// The system's error; callers may ignore it.
    fn start_writeback(&self) -> io::Result<()> {
        Ok(())
    }
}

fn check_range(dev_blocks: u64, first: BlockNr, n: usize) -> io::Result<u64> {
    let n = u64::try_from(n).map_err(|_| io::Error::other("run too long"))?;
    match first.checked_add(n) {
        Some(end) if end <= dev_blocks => Ok(first * BLOCK_SIZE_U64),
        _ => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("block {first} is beyond the end of the device ({dev_blocks} blocks)"),
        )),
    }
}

/// A device backed by a regular file or a block device.
pub struct FileDevice {
    file: File,
    nr_blocks: u64,
}

impl FileDevice {
    /// Wraps an open file whose usable size is `nr_blocks` blocks.
    #[must_use]
    pub fn new(file: File, nr_blocks: u64) -> Self {
        FileDevice { file, nr_blocks }
    }

    /// The underlying file.
    #[must_use]
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl BlockDevice for FileDevice {
    fn nr_blocks(&self) -> u64 {
        self.nr_blocks
    }
    fn read_run(&self, first: BlockNr, bufs: &mut [Block]) -> io::Result<()> {
        let off = check_range(self.nr_blocks, first, bufs.len())?;
        self.file
            .read_exact_at(zerocopy::IntoBytes::as_mut_bytes(bufs), off)
    }
    fn write_run(&self, first: BlockNr, bufs: &[Block]) -> io::Result<()> {
        let off = check_range(self.nr_blocks, first, bufs.len())?;
        self.file
            .write_all_at(zerocopy::IntoBytes::as_bytes(bufs), off)
    }
    fn sync(&self) -> io::Result<()> {
        self.file.sync_all()
    }
    fn start_writeback(&self) -> io::Result<()> {
        crate::pdata::sys::start_writeback(&self.file)
    }
}

/// An in-memory device, for tests and for building metadata in memory.
pub struct MemDevice {
    data: RwLock<Vec<u8>>,
}

impl MemDevice {
    /// A zero-filled device of `nr_blocks` blocks.
    #[must_use]
    pub fn new(nr_blocks: usize) -> Self {
        MemDevice {
            data: RwLock::new(vec![0; nr_blocks * BLOCK_SIZE]),
        }
    }

    /// A device holding `bytes` (a trailing partial block is ignored).
    #[must_use]
    pub fn from_bytes(mut bytes: Vec<u8>) -> Self {
        bytes.truncate(bytes.len() / BLOCK_SIZE * BLOCK_SIZE);
        MemDevice {
            data: RwLock::new(bytes),
        }
    }

    /// A copy of the whole device.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        self.data
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl BlockDevice for MemDevice {
    fn nr_blocks(&self) -> u64 {
        let d = self
            .data
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (d.len() / BLOCK_SIZE) as u64
    }
    fn read_run(&self, first: BlockNr, bufs: &mut [Block]) -> io::Result<()> {
        let d = self
            .data
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let off = check_range((d.len() / BLOCK_SIZE) as u64, first, bufs.len())?;
        let off = usize::try_from(off).map_err(io::Error::other)?;
        let out = zerocopy::IntoBytes::as_mut_bytes(bufs);
        out.copy_from_slice(&d[off..off + out.len()]);
        Ok(())
    }
    fn write_run(&self, first: BlockNr, bufs: &[Block]) -> io::Result<()> {
        let mut d = self
            .data
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let off = check_range((d.len() / BLOCK_SIZE) as u64, first, bufs.len())?;
        let off = usize::try_from(off).map_err(io::Error::other)?;
        let src = zerocopy::IntoBytes::as_bytes(bufs);
        d[off..off + src.len()].copy_from_slice(src);
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
}

/// Largest gap of unrequested blocks bridged inside one coalesced read.
pub const MAX_GAP: u64 = 8;
/// Largest single read, in blocks (1 MiB).
pub const MAX_RUN: usize = 256;

/// Reads every block in `nrs` (any order, duplicates allowed), coalescing
/// neighbours into large reads, and hands each to `f` in ascending block order.
/// A failed run is retried block by block so that errors are per block.
pub fn read_batch<F>(dev: &dyn BlockDevice, nrs: &[BlockNr], mut f: F)
where
    F: FnMut(BlockNr, io::Result<&Block>),
{
    let mut sorted: Vec<BlockNr> = nrs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    read_sorted(dev, &sorted, &mut f);
}

/// As [`read_batch`] for a list already sorted ascending without duplicates.
///
/// The read buffer ([`MAX_RUN`] blocks) is kept per thread and reused, so
/// callers issuing many small batches neither allocate nor fault in fresh
/// pages each time.
pub fn read_sorted<F>(dev: &dyn BlockDevice, sorted: &[BlockNr], f: &mut F)
where
    F: FnMut(BlockNr, io::Result<&Block>),
{
    thread_local! {
        static BUF: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => read_sorted_with(dev, sorted, &mut buf, f),
        // A nested call from inside `f`: use a buffer of its own.
        Err(_) => read_sorted_with(dev, sorted, &mut Vec::new(), f),
    });
}

fn read_sorted_with<F>(dev: &dyn BlockDevice, sorted: &[BlockNr], buf: &mut Vec<Block>, f: &mut F)
where
    F: FnMut(BlockNr, io::Result<&Block>),
{
    if buf.len() < MAX_RUN {
        *buf = Block::zeroed_vec(MAX_RUN);
    }
    read_runs(dev, sorted, buf, f);
}

fn read_runs<F>(dev: &dyn BlockDevice, sorted: &[BlockNr], buf: &mut [Block], f: &mut F)
where
    F: FnMut(BlockNr, io::Result<&Block>),
{
    let mut i = 0;
    while i < sorted.len() {
        let first = sorted[i];
        let mut j = i + 1;
        while j < sorted.len()
            && sorted[j] - sorted[j - 1] <= MAX_GAP
            && sorted[j] - first < MAX_RUN as u64
        {
            j += 1;
        }
        let len = to_index(sorted[j - 1] - first + 1);
        match dev.read_run(first, &mut buf[..len]) {
            Ok(()) => {
                for &nr in &sorted[i..j] {
                    f(nr, Ok(&buf[to_index(nr - first)]));
                }
            }
            Err(_) => {
                for &nr in &sorted[i..j] {
                    let r = dev.read_at(nr, &mut buf[0]);
                    f(nr, r.map(|()| &buf[0]));
                }
            }
        }
        i = j;
    }
}

/// How a metadata input is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read-only (every read-only tool).
    ReadOnly,
    /// Read-write (thin_check repairs, writers).
    ReadWrite,
}

/// Whether a block device is opened with O_EXCL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sharing {
    /// O_EXCL: refuse a device held by a live pool.
    Exclusive,
    /// No O_EXCL and O_DIRECT: reading a live pool through its metadata snapshot.
    LiveSnapshot,
}

/// Input/output file errors, worded as the tools print them.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The path does not exist.
    #[error("Couldn't find input file '{0}'")]
    InputMissing(String),
    /// The output path does not exist.
    #[error("Couldn't find output file '{0}'")]
    OutputMissing(String),
    /// A directory, FIFO, socket...
    #[error("Not a block device or regular file '{0}'.")]
    WrongType(String),
    /// stat failed for another reason.
    #[error("Invalid input file: {0}")]
    Stat(io::Error),
    /// Smaller than one block.
    #[error("Metadata device/file too small.  Is this binary metadata?")]
    TooSmall,
    /// Output smaller than the minimum a writer needs.
    #[error("Output file too small.")]
    OutputTooSmall,
    /// The input starts like XML.
    #[error("This looks like XML.  This tool only supports the binary metadata format.")]
    LooksLikeXml,
    /// open(2) or a read failed.
    #[error("{path}: {source}")]
    Os {
        /// Path that failed.
        path: String,
        /// OS error.
        source: io::Error,
    },
}

/// Minimum size of a metadata output (10 blocks).
pub const MIN_OUTPUT_BYTES: u64 = 40960;

/// Kind of file at a path, after the existence and type checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    Regular,
    /// A block device.
    BlockDev,
}

fn stat_kind(path: &Path, missing: fn(String) -> OpenError) -> Result<FileKind, OpenError> {
    let shown = path.display().to_string();
    match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_file() => Ok(FileKind::Regular),
        Ok(m) if m.file_type().is_block_device() => Ok(FileKind::BlockDev),
        Ok(_) => Err(OpenError::WrongType(shown)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(missing(shown)),
        Err(e) => Err(OpenError::Stat(e)),
    }
}

fn open_file(
    path: &Path,
    kind: FileKind,
    access: Access,
    sharing: Sharing,
) -> Result<(File, u64), OpenError> {
    let mut opts = OpenOptions::new();
    opts.read(true).write(access == Access::ReadWrite);
    if kind == FileKind::BlockDev {
        let mut flags = libc::O_DIRECT;
        if sharing == Sharing::Exclusive {
            flags |= libc::O_EXCL;
        }
        opts.custom_flags(flags);
    }
    let os = |source| OpenError::Os {
        path: path.display().to_string(),
        source,
    };
    let file = opts.open(path).map_err(os)?;
    let bytes = match kind {
        FileKind::Regular => file.metadata().map_err(os)?.len(),
        FileKind::BlockDev => block_device_size(&file).map_err(os)?,
    };
    Ok((file, bytes))
}

/// Size of a block device in bytes (BLKGETSIZE64).
fn block_device_size(file: &File) -> io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    // Seeking to the end of a block device reports its size, the same value the
    // BLKGETSIZE64 ioctl returns, without unsafe code.
    let mut f = file;
    let size = f.seek(SeekFrom::End(0))?;
    f.seek(SeekFrom::Start(0))?;
    Ok(size)
}

/// Opens binary metadata for reading (or read-write), applying the shared input
/// checks in order: existence, file type, stat, size, XML detection.
///
/// # Errors
/// An [`OpenError`] worded for the user.
pub fn open_metadata(
    path: &Path,
    access: Access,
    sharing: Sharing,
) -> Result<FileDevice, OpenError> {
    let kind = stat_kind(path, OpenError::InputMissing)?;
    let (file, bytes) = open_file(path, kind, access, sharing)?;
    if bytes < BLOCK_SIZE_U64 {
        return Err(OpenError::TooSmall);
    }
    let dev = FileDevice::new(file, bytes / BLOCK_SIZE_U64);
    let mut b = Block::zeroed();
    dev.read_at(0, &mut b).map_err(|source| OpenError::Os {
        path: path.display().to_string(),
        source,
    })?;
    if looks_like_xml(&b.0) {
        return Err(OpenError::LooksLikeXml);
    }
    Ok(dev)
}

/// Opens the output of a metadata writer (thin_restore, thin_repair): it must
/// exist, be a regular file or block device, and hold at least 10 blocks.
///
/// # Errors
/// An [`OpenError`] worded for the user.
pub fn open_output(path: &Path) -> Result<FileDevice, OpenError> {
    let kind = stat_kind(path, OpenError::OutputMissing)?;
    let (file, bytes) = open_file(path, kind, Access::ReadWrite, Sharing::Exclusive)?;
    if bytes < MIN_OUTPUT_BYTES {
        return Err(OpenError::OutputTooSmall);
    }
    Ok(FileDevice::new(file, bytes / BLOCK_SIZE_U64))
}

/// True when the first non-blank bytes start an XML document.
#[must_use]
pub fn looks_like_xml(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let rest = &bytes[start..];
    [&b"<superblock"[..], b"<?xml", b"<!DOCTYPE"]
        .iter()
        .any(|p| rest.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batched_reads_return_every_block_once_in_order() {
        let dev = MemDevice::new(1000);
        for nr in 0..1000u64 {
            let mut b = Block::zeroed();
            b.0[0..8].copy_from_slice(&nr.to_le_bytes());
            dev.write_at(nr, &b).unwrap();
        }
        let want = [999u64, 3, 5, 4, 500, 3, 260, 0];
        let mut seen = Vec::new();
        read_batch(&dev, &want, |nr, r| {
            let b = r.unwrap();
            assert_eq!(u64::from_le_bytes(b.0[0..8].try_into().unwrap()), nr);
            seen.push(nr);
        });
        assert_eq!(seen, vec![0, 3, 4, 5, 260, 500, 999]);
    }

    #[test]
    fn reads_past_the_end_fail_per_block() {
        let dev = MemDevice::new(10);
        let mut res = Vec::new();
        read_batch(&dev, &[8, 9, 10, 11], |nr, r| res.push((nr, r.is_ok())));
        assert_eq!(res, vec![(8, true), (9, true), (10, false), (11, false)]);
    }

    #[test]
    fn xml_is_detected_after_blanks() {
        assert!(looks_like_xml(b"  \n<superblock uuid=\"\""));
        assert!(looks_like_xml(b"<?xml version"));
        assert!(!looks_like_xml(b"\0\0\0\0<superblock"));
    }
}
