//! Carrying out a [`Plan`]: a reader thread fills large aligned buffers
//! with the extents' content while this thread writes the previous buffer,
//! so reading and writing overlap; two buffers of half the requested size
//! each bound the memory whatever the volume size.
//!
//! All-zero 4 KiB pieces of copied data are not written to a destination
//! known to read as zeroes (a fresh file stays sparse, a fresh thin stays
//! thin); otherwise they, and the plan's zero extents, are zeroed with
//! BLKZEROOUT on a block device or hole-punched in a file. The destination
//! is `fdatasync`ed before success is returned.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use indicatif::{ProgressBar, ProgressStyle};

use crate::pdata::sys::{blk_zeroout, punch_hole, AlignedBuf, DIRECT_ALIGN};
use crate::thin::engines::copy::plan::{Action, Plan};

/// Failures of a copy.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Reading the source failed.
    #[error("reading {what} at byte {offset}: {source}")]
    Read {
        /// Which input.
        what: &'static str,
        /// Byte offset in it.
        offset: u64,
        /// The OS error.
        source: io::Error,
    },
    /// Writing the destination failed.
    #[error("writing the destination at byte {offset}: {source}")]
    Write {
        /// Byte offset.
        offset: u64,
        /// The OS error.
        source: io::Error,
    },
    /// Zeroing a range of the destination failed.
    #[error("zeroing the destination at bytes {offset}..{end}: {source}")]
    Zero {
        /// First byte.
        offset: u64,
        /// End byte.
        end: u64,
        /// The OS error.
        source: io::Error,
    },
    /// fdatasync failed.
    #[error("flushing the destination: {0}")]
    Sync(io::Error),
    /// A signal asked us to stop.
    #[error("interrupted by {}", crate::pdata::sys::signal_name(*.0))]
    Interrupted(i32),
}

/// Where the source's content is read.
pub enum Source<'a> {
    /// Through the thin device itself (live mode): every extent is read at
    /// its offset in the volume.
    Thin(&'a File),
    /// Offline: mapped blocks from the data device or image, unmapped
    /// blocks from the external origin (`(file, size in bytes)`, zeroes
    /// past its end) when there is one.
    Offline {
        /// The pool's data device or image.
        data: &'a File,
        /// The external origin and its size.
        origin: Option<(&'a File, u64)>,
    },
}

/// The kind of destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestKind {
    /// A block device (zeroed with BLKZEROOUT).
    Block,
    /// A regular file (zeroed by punching holes).
    File,
}

/// The destination.
pub struct Dest<'a> {
    /// Open for writing.
    pub file: &'a File,
    /// Block device or file.
    pub kind: DestKind,
    /// True when everything not written reads as zeroes already (a new
    /// file, a fresh thin): zero pieces are then skipped.
    pub reads_zero: bool,
}

/// How to run.
pub struct Options<'a> {
    /// Total buffer memory in bytes (two buffers of half each).
    pub buffer_bytes: usize,
    /// Show a progress bar when stderr is a terminal.
    pub progress: bool,
    /// Polled between buffers: `Some(signal)` stops the copy.
    pub stop: &'a (dyn Fn() -> Option<i32> + Sync),
}

/// What a copy did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// Bytes written to the destination.
    pub bytes_written: u64,
    /// Bytes of the destination zeroed or punched.
    pub bytes_zeroed: u64,
    /// Bytes of zeroes not written because the destination reads as zeroes.
    pub bytes_skipped: u64,
}

/// One piece of a buffer: `len` bytes at `buf_off` go to volume offset `off`.
#[derive(Clone, Copy)]
struct Piece {
    off: u64,
    len: usize,
    buf_off: usize,
}

/// A filled buffer, or a range to zero, in plan order.
enum Work {
    Data { buf: AlignedBuf, pieces: Vec<Piece> },
    Zero { off: u64, len: u64 },
}

/// Granularity of the zero detection.
const ZERO_CHUNK: usize = 4096;

/// Runs `plan` from `src` to `dest`.
///
/// # Errors
/// A [`CopyError`]; the destination may then be partly written.
pub fn execute(plan: &Plan, src: &Source, dest: &Dest, opts: &Options) -> Result<Stats, CopyError> {
    let block = usize::try_from(plan.block_bytes).unwrap_or(usize::MAX);
    let half = (opts.buffer_bytes / 2 / block).max(1) * block;
    let total = plan.bytes_where(|_| true);
    let bar = progress_bar(opts.progress, total);
    let (work_tx, work_rx) = sync_channel::<Work>(1);
    let (free_tx, free_rx) = sync_channel::<AlignedBuf>(2);
    for _ in 0..2 {
        let _ = free_tx.send(AlignedBuf::new(half));
    }
    let result = std::thread::scope(|s| {
        let reader = s.spawn(move || read_all(plan, src, opts, &work_tx, &free_rx));
        let written = write_all(dest, opts, &work_rx, &free_tx, &bar);
        // Unblock the reader if the writer stopped early.
        drop(work_rx);
        drop(free_tx);
        let read = reader
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        match (read, written) {
            (_, Err(e)) | (Err(e), Ok(_)) => Err(e),
            (Ok(bytes_read), Ok(mut stats)) => {
                stats.bytes_read = bytes_read;
                Ok(stats)
            }
        }
    });
    let stats = result?;
    dest.file.sync_data().map_err(CopyError::Sync)?;
    bar.finish_and_clear();
    Ok(stats)
}

fn progress_bar(show: bool, total: u64) -> ProgressBar {
    use std::io::IsTerminal;
    if !show || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} copying [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// The reader: walks the plan, filling buffers; returns the bytes read.
fn read_all(
    plan: &Plan,
    src: &Source,
    opts: &Options,
    work: &SyncSender<Work>,
    free: &Receiver<AlignedBuf>,
) -> Result<u64, CopyError> {
    let mut bytes_read = 0u64;
    let mut cur: Option<(AlignedBuf, Vec<Piece>, usize)> = None;
    let flush = |cur: &mut Option<(AlignedBuf, Vec<Piece>, usize)>| -> bool {
        match cur.take() {
            Some((buf, pieces, used)) if used > 0 => work.send(Work::Data { buf, pieces }).is_ok(),
            _ => true,
        }
    };
    for e in &plan.extents {
        let (off, len) = plan.extent_bytes(e);
        if len == 0 {
            continue;
        }
        if e.action == Action::Zero {
            if !flush(&mut cur) || work.send(Work::Zero { off, len }).is_err() {
                return Ok(bytes_read);
            }
            continue;
        }
        let mut done = 0u64;
        while done < len {
            if let Some(sig) = (opts.stop)() {
                return Err(CopyError::Interrupted(sig));
            }
            if cur.is_none() {
                let Ok(buf) = free.recv() else {
                    return Ok(bytes_read);
                };
                cur = Some((buf, Vec::new(), 0));
            }
            let Some((buf, pieces, used)) = cur.as_mut() else {
                continue;
            };
            let room = buf.len() - *used;
            let n = usize::try_from(len - done).unwrap_or(usize::MAX).min(room);
            let vol_off = off + done;
            // O_DIRECT reads need a length that is a multiple of the
            // alignment; the volume's tail may not be one.
            let read_len = n.div_ceil(512) * 512;
            let read_len = if *used + read_len <= buf.len() {
                read_len
            } else {
                n
            };
            let dst = &mut buf[*used..*used + read_len];
            read_piece(plan, src, e.action, e.begin, vol_off, dst, n)?;
            pieces.push(Piece {
                off: vol_off,
                len: n,
                buf_off: *used,
            });
            // Keep every piece's start aligned for O_DIRECT writes.
            *used += n.div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN;
            done += n as u64;
            bytes_read += n as u64;
            if *used >= buf.len() && !flush(&mut cur) {
                return Ok(bytes_read);
            }
        }
    }
    flush(&mut cur);
    Ok(bytes_read)
}

/// Reads the `n` bytes at volume offset `vol_off` of an extent starting at
/// thin block `begin` into `dst` (which may be longer, for alignment).
fn read_piece(
    plan: &Plan,
    src: &Source,
    action: Action,
    begin: u64,
    vol_off: u64,
    dst: &mut [u8],
    n: usize,
) -> Result<(), CopyError> {
    let fail = |what, offset| {
        move |source| CopyError::Read {
            what,
            offset,
            source,
        }
    };
    match (src, action) {
        (Source::Thin(f), _) => {
            read_exact_or_short(f, dst, n, vol_off).map_err(fail("the thin device", vol_off))
        }
        (Source::Offline { data, .. }, Action::Mapped { data: Some(d) }) => {
            let off = d * plan.block_bytes + (vol_off - begin * plan.block_bytes);
            data.read_exact_at(&mut dst[..n], off)
                .map_err(fail("the data device", off))
        }
        (Source::Offline { origin, .. }, _) => {
            dst[..n].fill(0);
            if let Some((f, size)) = origin {
                if vol_off < *size {
                    let m = usize::try_from(size - vol_off).unwrap_or(usize::MAX).min(n);
                    f.read_exact_at(&mut dst[..m], vol_off)
                        .map_err(fail("the external origin", vol_off))?;
                }
            }
            Ok(())
        }
    }
}

/// Reads `dst.len()` bytes at `off`, accepting that the file ends after the
/// first `need` of them (an aligned read of a volume's tail).
fn read_exact_or_short(f: &File, dst: &mut [u8], need: usize, off: u64) -> io::Result<()> {
    let mut got = 0;
    while got < dst.len() {
        match f.read_at(&mut dst[got..], off + got as u64) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if got < need {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the device ends after {} bytes", off + got as u64),
        ));
    }
    Ok(())
}

/// The writer: consumes the reader's work in order.
fn write_all(
    dest: &Dest,
    opts: &Options,
    work: &Receiver<Work>,
    free: &SyncSender<AlignedBuf>,
    bar: &ProgressBar,
) -> Result<Stats, CopyError> {
    let mut stats = Stats::default();
    for w in work {
        if let Some(sig) = (opts.stop)() {
            return Err(CopyError::Interrupted(sig));
        }
        match w {
            Work::Zero { off, len } => {
                zero_range(dest, off, len)?;
                stats.bytes_zeroed += len;
                bar.inc(len);
            }
            Work::Data { buf, pieces } => {
                for p in &pieces {
                    write_piece(dest, &buf[p.buf_off..p.buf_off + p.len], p.off, &mut stats)?;
                    bar.inc(p.len as u64);
                }
                // The reader may be done already; the buffer is then dropped.
                let _ = free.send(buf);
            }
        }
    }
    Ok(stats)
}

/// Writes one piece, treating its all-zero 4 KiB chunks as zero ranges.
fn write_piece(dest: &Dest, bytes: &[u8], off: u64, stats: &mut Stats) -> Result<(), CopyError> {
    let mut i = 0;
    while i < bytes.len() {
        let zero = is_zero(&bytes[i..(i + ZERO_CHUNK).min(bytes.len())]);
        let mut j = i;
        while j < bytes.len() && is_zero(&bytes[j..(j + ZERO_CHUNK).min(bytes.len())]) == zero {
            j = (j + ZERO_CHUNK).min(bytes.len());
        }
        let at = off + i as u64;
        let len = (j - i) as u64;
        if !zero {
            write_exact(dest, &bytes[i..j], at)?;
            stats.bytes_written += len;
        } else if dest.reads_zero {
            stats.bytes_skipped += len;
        } else {
            zero_range(dest, at, len)?;
            stats.bytes_zeroed += len;
        }
        i = j;
    }
    Ok(())
}

fn write_exact(dest: &Dest, bytes: &[u8], at: u64) -> Result<(), CopyError> {
    dest.file
        .write_all_at(bytes, at)
        .map_err(|source| CopyError::Write { offset: at, source })
}

/// Makes `len` bytes at `off` read as zeroes: BLKZEROOUT or a punched hole,
/// falling back to writing zeroes where those are not supported.
fn zero_range(dest: &Dest, off: u64, len: u64) -> Result<(), CopyError> {
    let r = match dest.kind {
        DestKind::Block => blk_zeroout(dest.file, off, len),
        DestKind::File => punch_hole(dest.file, off, len),
    };
    match r {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) => {
            let zeros = AlignedBuf::new(1 << 20);
            let mut pos = 0u64;
            while pos < len {
                let n = (len - pos).min(zeros.len() as u64);
                let n = usize::try_from(n).unwrap_or(zeros.len());
                write_exact(dest, &zeros[..n], off + pos)?;
                pos += n as u64;
            }
            Ok(())
        }
        Err(source) => Err(CopyError::Zero {
            offset: off,
            end: off + len,
            source,
        }),
    }
}

fn is_zero(b: &[u8]) -> bool {
    let mut words = b.chunks_exact(8);
    let body = words
        .by_ref()
        .all(|w| u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]) == 0);
    body && words.remainder().iter().all(|&x| x == 0)
}
