//! The operating-system calls the standard library does not wrap, each behind
//! a small safe function. This is the only module of the crate allowed to use
//! `unsafe` (`src/lib.rs` denies it everywhere else); every `unsafe` block
//! states why it is sound.
//!
//! Sections: block-device ioctls, file space (hole punching, sparse-file
//! extents), pipes, memory maps. A new wrapper goes in the section of its kind, takes
//! std types (`&File`, byte offsets as `u64`) and returns `io::Result`, so the
//! callers above stay free of raw descriptors and errno.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI32, Ordering};

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

/// Zeroes `len` bytes at `offset` of a block device (`BLKZEROOUT`: the device
/// unmaps or writes zeroes, and the range reads back as zeroes).
///
/// # Errors
/// The ioctl's error.
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

/// Starts writeback of every dirty page of `file` and returns without waiting
/// for it (`sync_file_range(0, 0, SYNC_FILE_RANGE_WRITE)`).
///
/// # Errors
/// sync_file_range's error (`ESPIPE` for a pipe, `EINVAL` where unsupported).
pub fn start_writeback(file: &File) -> io::Result<()> {
    // SAFETY: sync_file_range takes plain integers and an open descriptor; it
    // does not touch our memory.
    check(unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) })
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
// Pipes

/// Asks for the pipe behind `fd` to hold `bytes` (`F_SETPIPE_SZ`; the kernel
/// rounds up to a power of two of pages and caps unprivileged callers at
/// /proc/sys/fs/pipe-max-size) and returns the size it now has. A stream
/// tool's writes and reads of 1 MiB then need one wake-up each instead of
/// sixteen through the default 64 KiB.
///
/// # Errors
/// `EBADF` when `fd` is not a pipe, `EPERM` above the cap, `EBUSY` when the
/// pipe holds more than `bytes` already.
pub fn grow_pipe(fd: &impl AsRawFd, bytes: usize) -> io::Result<usize> {
    let want = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: F_SETPIPE_SZ takes an int argument and touches no memory of
    // ours; a descriptor that is not a pipe fails with EBADF.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, want) };
    usize::try_from(r).map_err(|_| io::Error::last_os_error())
}

/// Moves up to `len` bytes of `file` from `offset` into the pipe `pipe`
/// without copying them through user memory (`splice`); returns the bytes
/// moved, 0 at the end of the file.
///
/// # Errors
/// splice's error: `EINVAL` when `pipe` is not a pipe or the file system
/// cannot splice.
pub fn splice_to_pipe(
    file: &File,
    offset: u64,
    pipe: &impl AsRawFd,
    len: usize,
) -> io::Result<usize> {
    let mut off =
        libc::loff_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    loop {
        // SAFETY: both descriptors are open for the call; `off` is a valid
        // loff_t the kernel updates; no other memory of ours is touched.
        let r = unsafe {
            libc::splice(
                file.as_raw_fd(),
                &raw mut off,
                pipe.as_raw_fd(),
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_MORE,
            )
        };
        match usize::try_from(r) {
            Ok(n) => return Ok(n),
            Err(_) => {
                let e = io::Error::last_os_error();
                // Interrupted by a signal the caller catches (see
                // `pending_signal`): give up, so that it can clean up and
                // stop; by any other signal: retry.
                if e.kind() != io::ErrorKind::Interrupted || pending_signal().is_some() {
                    return Err(e);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Aligned buffers

/// A heap buffer whose usable part starts at a 4096-byte boundary, as
/// `O_DIRECT` needs. Built from a plain `Vec` (over-allocated by one
/// alignment unit), so it needs no unsafe code.
pub struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

/// Alignment of [`AlignedBuf`].
pub const DIRECT_ALIGN: usize = 4096;

impl AlignedBuf {
    /// A zero-filled buffer of `len` bytes.
    #[must_use]
    pub fn new(len: usize) -> AlignedBuf {
        let raw = vec![0u8; len + DIRECT_ALIGN];
        let start = raw.as_ptr().align_offset(DIRECT_ALIGN);
        AlignedBuf { raw, start, len }
    }

    /// Usable length.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the buffer holds nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

// ---------------------------------------------------------------------------
// Signals

static PENDING_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn note_signal(sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    PENDING_SIGNAL.store(sig, Ordering::SeqCst);
}

/// Catches `signals`: from now on each only records itself, to be seen by
/// [`pending_signal`] at the next check of a long operation (which then
/// unwinds through its clean-up and calls [`reraise`]).
///
/// # Errors
/// The sigaction error.
pub fn catch_signals(signals: &[libc::c_int]) -> io::Result<()> {
    for &sig in signals {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value;
        // the handler is an extern "C" fn that only stores into an atomic.
        let r = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = note_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        check(r)?;
    }
    Ok(())
}

/// Like [`catch_signals`], but without `SA_RESTART`: a read or write blocked
/// on a pipe when one arrives returns `EINTR`, so that a tool waiting on a
/// stalled peer notices the signal at once. The fault signals (SIGSEGV,
/// SIGBUS, SIGFPE) are caught once (`SA_RESETHAND`): sent by `kill` they
/// unwind like the others; raised by a real fault, the repeated fault then
/// ends the process instead of looping. A signal inherited as ignored (as
/// `nohup` leaves SIGHUP) stays ignored.
///
/// # Errors
/// The sigaction error.
pub fn catch_signals_interrupting(signals: &[libc::c_int]) -> io::Result<()> {
    for &sig in signals {
        let flags = if matches!(sig, libc::SIGSEGV | libc::SIGBUS | libc::SIGFPE) {
            libc::SA_RESETHAND
        } else {
            0
        };
        // SAFETY: as in catch_signals; the first call only reads the
        // current action into a zeroed struct.
        let r = unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            check(libc::sigaction(sig, std::ptr::null(), &mut old))?;
            if old.sa_sigaction == libc::SIG_IGN {
                continue;
            }
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = note_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = flags;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        check(r)?;
    }
    Ok(())
}

/// The last caught signal not yet handled, if any.
#[must_use]
pub fn pending_signal() -> Option<i32> {
    match PENDING_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Restores the default action of `sig` and raises it, so the process ends
/// the way the signal's sender expects (after every clean-up has run).
pub fn reraise(sig: i32) {
    // SAFETY: signal and raise take plain integers.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// Name of a signal for messages.
#[must_use]
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGABRT => "SIGABRT",
        libc::SIGALRM => "SIGALRM",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPWR => "SIGPWR",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => "a signal",
    }
}

// ---------------------------------------------------------------------------
// Device-mapper ioctls (linux/dm-ioctl.h, interface version 4)

/// Size of `struct dm_ioctl`.
const DM_IOCTL_SIZE: usize = 312;
const DM_NAME_LEN: usize = 128;
const DM_UUID_LEN: usize = 129;
const OFF_DATA_SIZE: usize = 12;
const OFF_DATA_START: usize = 16;
const OFF_TARGET_COUNT: usize = 20;
const OFF_OPEN_COUNT: usize = 24;
const OFF_FLAGS: usize = 28;
const OFF_DEV: usize = 40;
const OFF_NAME: usize = 48;
const OFF_UUID: usize = OFF_NAME + DM_NAME_LEN;

/// `DM_READONLY_FLAG`.
pub const DM_READONLY_FLAG: u32 = 1 << 0;
/// `DM_SUSPEND_FLAG`.
pub const DM_SUSPEND_FLAG: u32 = 1 << 1;
/// `DM_STATUS_TABLE_FLAG`: table status returns the table, not the status.
pub const DM_STATUS_TABLE_FLAG: u32 = 1 << 4;
/// `DM_ACTIVE_PRESENT_FLAG`.
pub const DM_ACTIVE_PRESENT_FLAG: u32 = 1 << 5;
const DM_BUFFER_FULL_FLAG: u32 = 1 << 8;

/// The device-mapper commands used here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmCmd {
    /// `DM_DEV_STATUS`.
    DevStatus = 7,
    /// `DM_TABLE_STATUS`.
    TableStatus = 12,
    /// `DM_TARGET_MSG`.
    TargetMsg = 14,
}

/// What a device-mapper ioctl returned.
#[derive(Clone, Debug)]
pub struct DmReply {
    /// `flags` out.
    pub flags: u32,
    /// `target_count` out.
    pub target_count: u32,
    /// `open_count` out.
    pub open_count: i32,
    /// Device name.
    pub name: String,
    /// Device uuid.
    pub uuid: String,
    /// The data area after `data_start`, as far as the kernel filled it.
    pub data: Vec<u8>,
}

fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Issues device-mapper command `cmd` on the device `dev` (a `(major, minor)`
/// pair) with `flags` and `payload` in the data area; grows the buffer and
/// retries while the kernel says it was too small.
///
/// # Errors
/// Opening `/dev/mapper/control` or the ioctl's error.
#[allow(clippy::host_endian_bytes)] // struct dm_ioctl is in the host's byte order
pub fn dm_ioctl(cmd: DmCmd, dev: (u32, u32), flags: u32, payload: &[u8]) -> io::Result<DmReply> {
    let control = File::options()
        .read(true)
        .write(true)
        .open("/dev/mapper/control")
        .map_err(|e| io::Error::new(e.kind(), format!("/dev/mapper/control: {e}")))?;
    let mut size = 16 * 1024 + payload.len();
    loop {
        // u64 elements keep the structure 8-byte aligned.
        let mut buf = vec![0u64; size.div_ceil(8)];
        let bytes: &mut [u8] = zerocopy::IntoBytes::as_mut_bytes(buf.as_mut_slice());
        let total = bytes.len();
        let put32 =
            |b: &mut [u8], off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        put32(bytes, 0, 4);
        put32(bytes, 4, 0);
        put32(bytes, 8, 0);
        put32(
            bytes,
            OFF_DATA_SIZE,
            u32::try_from(total).map_err(io::Error::other)?,
        );
        put32(bytes, OFF_DATA_START, DM_IOCTL_SIZE as u32);
        put32(bytes, OFF_FLAGS, flags);
        let (major, minor) = (u64::from(dev.0), u64::from(dev.1));
        let encoded = (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12);
        bytes[OFF_DEV..OFF_DEV + 8].copy_from_slice(&encoded.to_ne_bytes());
        bytes[DM_IOCTL_SIZE..DM_IOCTL_SIZE + payload.len()].copy_from_slice(payload);
        // _IOWR(0xfd, nr, struct dm_ioctl)
        let req: libc::c_ulong = (3 << 30)
            | ((DM_IOCTL_SIZE as libc::c_ulong) << 16)
            | (0xfd << 8)
            | (cmd as libc::c_ulong);
        // SAFETY: the kernel reads and writes at most `data_size` bytes of the
        // buffer, which is exactly the live allocation's length; the fd is open.
        check(unsafe { libc::ioctl(control.as_raw_fd(), req, bytes.as_mut_ptr()) })?;
        let get32 = |off: usize| {
            let mut a = [0u8; 4];
            a.copy_from_slice(&bytes[off..off + 4]);
            u32::from_ne_bytes(a)
        };
        let out_flags = get32(OFF_FLAGS);
        if out_flags & DM_BUFFER_FULL_FLAG != 0 && size < (64 << 20) {
            size *= 4;
            continue;
        }
        let start = (get32(OFF_DATA_START) as usize).min(total);
        let end = (get32(OFF_DATA_SIZE) as usize).clamp(start, total);
        return Ok(DmReply {
            flags: out_flags,
            target_count: get32(OFF_TARGET_COUNT),
            open_count: i32::from_ne_bytes(get32(OFF_OPEN_COUNT).to_ne_bytes()),
            name: cstr(&bytes[OFF_NAME..OFF_NAME + DM_NAME_LEN]),
            uuid: cstr(&bytes[OFF_UUID..OFF_UUID + DM_UUID_LEN]),
            data: bytes[start..end].to_vec(),
        });
    }
}

/// One target of a table or status reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmTarget {
    /// First sector.
    pub start: u64,
    /// Length in sectors.
    pub length: u64,
    /// Target type (`thin`, `thin-pool`, `linear`...).
    pub kind: String,
    /// The table parameters or the status line.
    pub params: String,
}

/// The targets of the table (`table`) or the status of device `dev`.
///
/// # Errors
/// As [`dm_ioctl`].
#[allow(clippy::host_endian_bytes)] // struct dm_target_spec is in the host's byte order
pub fn dm_table_status(dev: (u32, u32), table: bool) -> io::Result<Vec<DmTarget>> {
    let flags = if table { DM_STATUS_TABLE_FLAG } else { 0 };
    let reply = dm_ioctl(DmCmd::TableStatus, dev, flags, &[])?;
    let d = &reply.data;
    let u64_at = |o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&d[o..o + 8]);
        u64::from_ne_bytes(a)
    };
    let mut out = Vec::new();
    let mut off = 0usize;
    for _ in 0..reply.target_count.min(4096) {
        // struct dm_target_spec: u64 start, u64 length, i32 status,
        // u32 next (offset of the next spec from the data start), char[16].
        if off + 40 > d.len() {
            break;
        }
        let mut n = [0u8; 4];
        n.copy_from_slice(&d[off + 20..off + 24]);
        let next = u32::from_ne_bytes(n) as usize;
        out.push(DmTarget {
            start: u64_at(off),
            length: u64_at(off + 8),
            kind: cstr(&d[off + 24..off + 40]),
            params: cstr(&d[off + 40..]),
        });
        if next <= off {
            break;
        }
        off = next;
    }
    Ok(out)
}

/// Sends `msg` to the target at sector 0 of device `dev` (DM_TARGET_MSG).
///
/// # Errors
/// As [`dm_ioctl`].
#[allow(clippy::host_endian_bytes)] // struct dm_target_msg is in the host's byte order
pub fn dm_message(dev: (u32, u32), msg: &str) -> io::Result<()> {
    let mut payload = Vec::with_capacity(msg.len() + 9);
    payload.extend_from_slice(&0u64.to_ne_bytes());
    payload.extend_from_slice(msg.as_bytes());
    payload.push(0);
    dm_ioctl(DmCmd::TargetMsg, dev, 0, &payload).map(|_| ())
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
    fn pipes_grow_and_files_are_refused() {
        let (r, _w) = std::io::pipe().unwrap();
        assert!(grow_pipe(&r, 256 << 10).unwrap() >= 256 << 10);
        let f = tempfile::tempfile().unwrap();
        assert!(grow_pipe(&f, 1 << 20).is_err());
        f.write_all_at(b"0123456789", 0).unwrap();
        let (mut r, w) = std::io::pipe().unwrap();
        assert_eq!(splice_to_pipe(&f, 3, &w, 4).unwrap(), 4);
        assert_eq!(splice_to_pipe(&f, 10, &w, 4).unwrap(), 0);
        drop(w);
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut r, &mut got).unwrap();
        assert_eq!(got, b"3456");
        assert!(splice_to_pipe(&f, 0, &f, 4).is_err());
    }

    #[test]
    fn writeback_starts_on_files_and_is_refused_on_pipes() {
        let f = tempfile::tempfile().unwrap();
        f.write_all_at(&[0xcd; 2 * 4096], 0).unwrap();
        start_writeback(&f).unwrap();
        let mut back = [0u8; 4096];
        f.read_exact_at(&mut back, 4096).unwrap();
        assert_eq!(back, [0xcd; 4096]);
        let (r, _w) = std::io::pipe().unwrap();
        let as_file = File::from(std::os::fd::OwnedFd::from(r));
        assert_eq!(
            start_writeback(&as_file).unwrap_err().raw_os_error(),
            Some(libc::ESPIPE)
        );
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
    fn aligned_buffer_is_aligned_and_sized() {
        for len in [0, 1, 4096, 65536 + 17] {
            let mut b = AlignedBuf::new(len);
            assert_eq!(b.len(), len);
            assert_eq!(b.as_ptr() as usize % DIRECT_ALIGN, 0);
            b.iter_mut().for_each(|x| *x = 7);
            assert!(b.iter().all(|&x| x == 7));
        }
    }

    #[test]
    fn punch_hole_reads_back_zero() {
        use std::os::unix::fs::FileExt;
        let f = tempfile::tempfile().unwrap();
        f.write_all_at(&[0xaa; 65536], 0).unwrap();
        punch_hole(&f, 4096, 8192).unwrap();
        let mut b = vec![0u8; 65536];
        f.read_exact_at(&mut b, 0).unwrap();
        assert!(b[..4096].iter().all(|&x| x == 0xaa));
        assert!(b[4096..12288].iter().all(|&x| x == 0));
        assert!(b[12288..].iter().all(|&x| x == 0xaa));
        assert_eq!(f.metadata().unwrap().len(), 65536);
    }
}
