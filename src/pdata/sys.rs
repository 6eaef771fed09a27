//! Thin safe wrappers around the system calls that std does not offer: hole
//! punching and the block-device discard/zero-out ioctls. Every `unsafe` block
//! of the data tools lives here, each with the reason it is sound.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;

/// `BLKDISCARD` = `_IO(0x12, 119)`.
const BLKDISCARD: libc::c_ulong = 0x1277;
/// `BLKZEROOUT` = `_IO(0x12, 127)`.
const BLKZEROOUT: libc::c_ulong = 0x127f;

fn range_ioctl(file: &File, request: libc::c_ulong, offset: u64, len: u64) -> io::Result<()> {
    let range: [u64; 2] = [offset, len];
    // SAFETY: BLKDISCARD and BLKZEROOUT read exactly two u64 (start, length)
    // from the pointer, which points at a live local array; the fd is open.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), request, range.as_ptr()) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Discards `[offset, offset + len)` of a block device (`BLKDISCARD`).
///
/// # Errors
/// The ioctl's error (`EOPNOTSUPP` where the device cannot discard, `ENOTTY`
/// on a regular file, `EINVAL` for a misaligned or out-of-range span).
pub fn blk_discard(file: &File, offset: u64, len: u64) -> io::Result<()> {
    range_ioctl(file, BLKDISCARD, offset, len)
}

/// Zeroes `[offset, offset + len)` of a block device (`BLKZEROOUT`; the kernel
/// writes zero pages itself where the device has no write-zeroes command).
///
/// # Errors
/// The ioctl's error.
pub fn blk_zeroout(file: &File, offset: u64, len: u64) -> io::Result<()> {
    range_ioctl(file, BLKZEROOUT, offset, len)
}

/// Deallocates `[offset, offset + len)` of a regular file without changing its
/// size (`fallocate(PUNCH_HOLE | KEEP_SIZE)`); the range then reads as zeros.
///
/// # Errors
/// An offset beyond `off_t`, or fallocate's error (`EOPNOTSUPP` on a file
/// system without hole punching).
pub fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let off = libc::off_t::try_from(offset).map_err(io::Error::other)?;
    let len = libc::off_t::try_from(len).map_err(io::Error::other)?;
    // SAFETY: fallocate takes plain integers and an open fd; it does not touch
    // our memory.
    let r = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            off,
            len,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};

    #[test]
    fn punched_range_reads_as_zeros_and_size_is_kept() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[0xab; 3 * 4096]).unwrap();
        punch_hole(&f, 4096, 4096).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 3 * 4096);
        let mut back = Vec::new();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut back).unwrap();
        assert!(back[..4096].iter().all(|&b| b == 0xab));
        assert!(back[4096..8192].iter().all(|&b| b == 0));
        assert!(back[8192..].iter().all(|&b| b == 0xab));
    }

    #[test]
    fn discard_on_a_regular_file_is_refused() {
        let f = tempfile::tempfile().unwrap();
        assert!(blk_discard(&f, 0, 4096).is_err());
        assert!(blk_zeroout(&f, 0, 4096).is_err());
    }
}
