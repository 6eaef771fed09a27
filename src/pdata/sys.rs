//! The operating-system calls the standard library does not wrap, each behind
//! a small safe function. This is the only module of the crate allowed to use
//! `unsafe` (`src/lib.rs` denies it everywhere else); every `unsafe` block
//! states why it is sound.
//!
//! Sections: block-device ioctls, file space (hole punching, sparse-file
//! extents), memory maps. A new wrapper goes in the section of its kind, takes
//! std types (`&File`, byte offsets as `u64`) and returns `io::Result`, so the
//! callers above stay free of raw descriptors and errno.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

use crate::pdata::block::{Block, BlockNr, BLOCK_SIZE, BLOCK_SIZE_U64};

/// `Ok` for a zero return, the OS error otherwise.
fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A byte offset or length as the kernel's signed `off_t`.
fn off_t(v: u64) -> io::Result<libc::off_t> {
    libc::off_t::try_from(v).map_err(|_| io::Error::other(format!("offset {v} beyond off_t")))
}

// ---------------------------------------------------------------------------
// Block-device ioctls

/// `BLKDISCARD` = `_IO(0x12, 119)`.
const BLKDISCARD: libc::c_ulong = 0x1277;
/// `BLKZEROOUT` = `_IO(0x12, 127)`.
const BLKZEROOUT: libc::c_ulong = 0x127f;

/// Issues a block-device ioctl that takes a `(start, length)` pair of bytes.
fn range_ioctl(file: &File, request: libc::c_ulong, offset: u64, len: u64) -> io::Result<()> {
    let range: [u64; 2] = [offset, len];
    // SAFETY: the range ioctls (BLKDISCARD, BLKZEROOUT) read exactly two u64
    // (start, length) from the pointer, which points at a live local array;
    // the descriptor is open for as long as `file` is borrowed.
    check(unsafe { libc::ioctl(file.as_raw_fd(), request, range.as_ptr()) })
}

/// Discards `len` bytes at `offset` of a block device (`BLKDISCARD`).
///
/// # Errors
/// The ioctl's error (`EOPNOTSUPP` where the device cannot discard, `ENOTTY`
/// on a regular file, `EINVAL` for a misaligned or out-of-range span).
pub fn blk_discard(file: &File, offset: u64, len: u64) -> io::Result<()> {
    range_ioctl(file, BLKDISCARD, offset, len)
}

/// Zeroes `len` bytes at `offset` of a block device (`BLKZEROOUT`; the kernel
/// writes zero pages itself where the device has no write-zeroes command).
///
/// # Errors
/// The ioctl's error (`ENOTTY` on a regular file).
pub fn blk_zeroout(file: &File, offset: u64, len: u64) -> io::Result<()> {
    range_ioctl(file, BLKZEROOUT, offset, len)
}

// ---------------------------------------------------------------------------
// File space

/// Deallocates `len` bytes at `offset` of a regular file without changing its
/// size (`fallocate(PUNCH_HOLE | KEEP_SIZE)`); the range then reads as zeros.
///
/// # Errors
/// An offset beyond `off_t`, or fallocate's error (`EOPNOTSUPP` on a file
/// system without hole punching).
pub fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (off, len) = (off_t(offset)?, off_t(len)?);
    // SAFETY: fallocate takes plain integers and an open descriptor; it does
    // not touch our memory.
    check(unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            off,
            len,
        )
    })
}

/// `lseek(from, whence)` for `SEEK_DATA`/`SEEK_HOLE`: `None` on `ENXIO`
/// (no data at or after `from`).
fn seek_extent(file: &File, from: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    let from = off_t(from)?;
    // SAFETY: lseek takes plain integers and an open descriptor; it touches no
    // memory of ours. It moves the file offset, so callers read positionally.
    let r = unsafe { libc::lseek(file.as_raw_fd(), from, whence) };
    if let Ok(pos) = u64::try_from(r) {
        return Ok(Some(pos));
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENXIO) {
        Ok(None)
    } else {
        Err(e)
    }
}

/// The first byte at or after `from` that a sparse file holds data for
/// (`SEEK_DATA`); `None` when only holes follow. Moves the file offset.
///
/// # Errors
/// lseek's error (e.g. `EINVAL` where the file system cannot tell).
pub fn next_data(file: &File, from: u64) -> io::Result<Option<u64>> {
    seek_extent(file, from, libc::SEEK_DATA)
}

/// The first hole at or after `from` (`SEEK_HOLE`; the end of the file counts
/// as a hole); `None` when `from` is past the end. Moves the file offset.
///
/// # Errors
/// lseek's error.
pub fn next_hole(file: &File, from: u64) -> io::Result<Option<u64>> {
    seek_extent(file, from, libc::SEEK_HOLE)
}

// ---------------------------------------------------------------------------
// Memory maps

/// Consecutive blocks of a regular file mapped read-only into memory, so that
/// large batched reads need no copy out of the page cache. Unmapped on drop:
/// only one run per reading thread is mapped at a time, which keeps the
/// resident set small however large the metadata is.
pub struct MappedBlocks {
    ptr: NonNull<Block>,
    nr: usize,
}

impl MappedBlocks {
    /// Maps blocks `first..first + nr` of `file`.
    ///
    /// # Errors
    /// An empty run, offset overflow or the OS refusing the mapping.
    pub fn map(file: &File, first: BlockNr, nr: usize) -> io::Result<Self> {
        let overflow = || io::Error::other("mapping offset overflows");
        let len = nr.checked_mul(BLOCK_SIZE).ok_or_else(overflow)?;
        let off = off_t(first.checked_mul(BLOCK_SIZE_U64).ok_or_else(overflow)?)?;
        if len == 0 {
            return Err(io::Error::other("empty mapping"));
        }
        // SAFETY: a fresh private read-only mapping of `len` bytes of an open
        // file at a page-aligned offset; no existing memory is affected. The
        // result is checked against MAP_FAILED before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_POPULATE,
                file.as_raw_fd(),
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(p.cast::<Block>()).ok_or_else(|| io::Error::other("null mapping"))?;
        Ok(MappedBlocks { ptr, nr })
    }

    /// The mapped blocks.
    #[must_use]
    pub fn blocks(&self) -> &[Block] {
        // SAFETY: the mapping is `nr * 4096` readable bytes at a page-aligned
        // (hence 4096-aligned) address, valid until `self` is dropped; any
        // byte pattern is a valid `Block`. The callers read metadata files
        // that are not truncated or rewritten while a tool runs (the same
        // assumption every reader of the file makes).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.nr) }
    }
}

impl Drop for MappedBlocks {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region `map` created; no reference into
        // it outlives `self` (`blocks` borrows `self`).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.nr * BLOCK_SIZE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn punched_range_reads_as_zeros_and_size_is_kept() {
        let f = tempfile::tempfile().unwrap();
        f.write_all_at(&[0xab; 3 * 4096], 0).unwrap();
        punch_hole(&f, 4096, 4096).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 3 * 4096);
        let mut back = vec![0u8; 3 * 4096];
        f.read_exact_at(&mut back, 0).unwrap();
        assert!(back[..4096].iter().all(|&b| b == 0xab));
        assert!(back[4096..8192].iter().all(|&b| b == 0));
        assert!(back[8192..].iter().all(|&b| b == 0xab));
    }

    #[test]
    fn discard_on_a_regular_file_is_refused() {
        let f = tempfile::tempfile().unwrap();
        f.set_len(4096).unwrap();
        assert!(blk_discard(&f, 0, 4096).is_err());
        assert!(blk_zeroout(&f, 0, 4096).is_err());
    }

    #[test]
    fn extents_of_a_sparse_file() {
        let f = tempfile::tempfile().unwrap();
        f.set_len(1 << 20).unwrap();
        f.write_all_at(&[1u8; 4096], 512 * 1024).unwrap();
        let data = next_data(&f, 0).unwrap().unwrap();
        assert!(data <= 512 * 1024, "{data}");
        let hole = next_hole(&f, data).unwrap().unwrap();
        assert!((512 * 1024 + 4096..=1 << 20).contains(&hole), "{hole}");
        assert_eq!(next_data(&f, 1 << 20).unwrap(), None);
    }

    #[test]
    fn mapped_blocks_read_what_the_file_holds() {
        let f = tempfile::tempfile().unwrap();
        f.write_all_at(&[7u8; 4096], 0).unwrap();
        f.write_all_at(&[9u8; 4096], 4096).unwrap();
        let m = MappedBlocks::map(&f, 1, 1).unwrap();
        assert_eq!(m.blocks().len(), 1);
        assert!(m.blocks()[0].0.iter().all(|&b| b == 9));
        assert!(MappedBlocks::map(&f, 0, 0).is_err());
    }
}
