//! The sender: writes a [`Plan`] as a stream. Into a pipe, formats 1.x
//! splice each DATA payload from the data device (no copy through this
//! process); otherwise, and for format 2 (whose zero detection and checksums
//! need the bytes), the data is read in large buffers on a second thread so
//! that reading and writing overlap.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use super::plan::{Piece, Plan};
use super::stream::writer::{Compression, StreamWriter};
use super::stream::{v2, Counts, Format, StreamHeader};
use crate::pdata::sys::splice_to_pipe;
use crate::progress::Counter;

/// Bytes read from the data device at once (and the largest format 2 DATA
/// record the sender makes).
const CHUNK: usize = 1 << 20;
/// Buffers in flight between the reading thread and the writer.
const IN_FLIGHT: usize = 4;

/// How to send.
#[derive(Clone, Copy, Debug)]
pub struct SendOptions<'a> {
    /// Stream format.
    pub format: Format,
    /// Compression (format 2).
    pub compression: Compression,
    /// Leave out everything below this offset (format 2 resume).
    pub resume_from: u64,
    /// Counts the volume bytes read from the data device (see
    /// [`data_bytes`]).
    pub progress: &'a Counter,
    /// The output's descriptor when it is a pipe: formats 1.x then splice
    /// DATA payloads from the data device into it, without copying them
    /// through this process.
    pub pipe_out: Option<BorrowedFd<'a>>,
}

/// The volume bytes a send of `plan` from `resume_from` reads from the data
/// device: the total of its progress counter.
#[must_use]
pub fn data_bytes(plan: &Plan, resume_from: u64) -> u64 {
    plan.pieces
        .iter()
        .filter_map(|p| p.from(resume_from))
        .filter(|p| matches!(p, Piece::Data { .. }))
        .map(|p| p.len())
        .sum()
}

/// What a send wrote.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    /// Records written.
    pub counts: Counts,
    /// Stream bytes.
    pub stream_bytes: u64,
    /// Volume bytes read from the data device.
    pub data_bytes: u64,
}

/// A send that failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Reading the data device failed.
    #[error("data device: read of {len} bytes at {offset}: {cause}")]
    Read {
        /// Data device offset.
        offset: u64,
        /// Length.
        len: u64,
        /// The error.
        cause: io::Error,
    },
    /// Writing the stream failed.
    #[error("writing the stream: {0}")]
    Write(io::Error),
    /// A resume offset beyond the volume.
    #[error("resume offset {from} is beyond the volume size {size}")]
    ResumeBeyond {
        /// The offset.
        from: u64,
        /// The volume size.
        size: u64,
    },
}

impl From<io::Error> for SendError {
    fn from(e: io::Error) -> Self {
        SendError::Write(e)
    }
}

/// One buffer of volume data read from the data device.
struct Filled {
    offset: u64,
    buf: Vec<u8>,
}

/// Reads the DATA pieces of `pieces` in [`CHUNK`]s and hands them on.
fn read_pieces(
    data: &File,
    pieces: &[Piece],
    full: &SyncSender<Result<Filled, SendError>>,
    empty: &Receiver<Vec<u8>>,
) {
    for p in pieces {
        let Piece::Data {
            offset,
            data: at,
            len,
        } = *p
        else {
            continue;
        };
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CHUNK as u64) as usize;
            let Ok(mut buf) = empty.recv() else { return };
            buf.resize(n, 0);
            let r = data
                .read_exact_at(&mut buf, at + done)
                .map_err(|cause| SendError::Read {
                    offset: at + done,
                    len: n as u64,
                    cause,
                });
            let failed = r.is_err();
            if full
                .send(r.map(|()| Filled {
                    offset: offset + done,
                    buf,
                }))
                .is_err()
                || failed
            {
                return;
            }
            done += n as u64;
        }
    }
}

/// Writes `plan` to `out` in `opts.format`, reading data from `data`.
///
/// # Errors
/// A data read or stream write failure.
pub fn send<W: Write>(
    plan: &Plan,
    data: &File,
    out: W,
    opts: &SendOptions,
) -> Result<(W, Sent), SendError> {
    if opts.resume_from > plan.volume_size {
        return Err(SendError::ResumeBeyond {
            from: opts.resume_from,
            size: plan.volume_size,
        });
    }
    let pieces: Vec<Piece> = plan
        .pieces
        .iter()
        .filter_map(|p| p.from(opts.resume_from))
        .collect();
    let header = StreamHeader {
        volume_size: plan.volume_size,
        granularity: plan.granularity,
        source: plan.source,
        base: plan.base,
        resume_from: opts.resume_from,
    };
    let mut w = StreamWriter::new(out, opts.format, Some(&header), opts.compression)?;
    if let (Some(pipe), false) = (opts.pipe_out, opts.format == Format::V2) {
        let data_bytes = send_spliced(&mut w, &pieces, data, pipe, opts.progress)?;
        let stream_bytes = w.written();
        let (out, counts) = w.finish()?;
        return Ok((
            out,
            Sent {
                counts,
                stream_bytes,
                data_bytes,
            },
        ));
    }
    let (full_tx, full_rx) = sync_channel(IN_FLIGHT);
    let (empty_tx, empty_rx) = sync_channel(IN_FLIGHT + 1);
    for _ in 0..IN_FLIGHT {
        let _ = empty_tx.send(Vec::with_capacity(CHUNK));
    }
    let mut data_bytes = 0;
    let unit = usize::try_from(plan.granularity)
        .unwrap_or(CHUNK)
        .clamp(512, CHUNK);
    let result = std::thread::scope(|s| {
        // Owned here, so that an early return drops them and the reading
        // thread, blocked on either channel, stops.
        let (full_rx, empty_tx) = (full_rx, empty_tx);
        let todo = &pieces;
        s.spawn(move || read_pieces(data, todo, &full_tx, &empty_rx));
        let mut zeros = ZeroRun::default();
        for p in &pieces {
            match *p {
                Piece::Unmap { offset, len } => {
                    zeros.flush(&mut w)?;
                    w.unmap(offset, len)?;
                }
                Piece::Data { offset, len, .. } => {
                    if opts.format != Format::V2 {
                        w.data_record(offset, len)?;
                    }
                    let buffers = Buffers {
                        full: &full_rx,
                        empty: &empty_tx,
                    };
                    data_bytes += write_data(&mut w, &mut zeros, &buffers, len, opts, unit)?;
                }
            }
        }
        zeros.flush(&mut w)?;
        Ok::<(), SendError>(())
    });
    result?;
    let stream_bytes = w.written();
    let (out, counts) = w.finish()?;
    Ok((
        out,
        Sent {
            counts,
            stream_bytes,
            data_bytes,
        },
    ))
}

/// Writes `pieces` in a 1.x stream whose output is `pipe`, each DATA
/// payload spliced from the data device (read and written through a buffer
/// where the data device cannot splice); returns the data bytes.
fn send_spliced<W: Write>(
    w: &mut StreamWriter<W>,
    pieces: &[Piece],
    data: &File,
    pipe: BorrowedFd,
    progress: &Counter,
) -> Result<u64, SendError> {
    let mut bytes = 0;
    let mut buf = Vec::new();
    for p in pieces {
        let (offset, at, len) = match *p {
            Piece::Unmap { offset, len } => {
                w.unmap(offset, len)?;
                continue;
            }
            Piece::Data { offset, data, len } => (offset, data, len),
        };
        w.data_record(offset, len)?;
        w.flush()?;
        let mut done = 0;
        while done < len {
            let n = usize::try_from((len - done).min(CHUNK as u64)).unwrap_or(CHUNK);
            let read_err = |cause| SendError::Read {
                offset: at + done,
                len: n as u64,
                cause,
            };
            let got = match splice_to_pipe(data, at + done, &pipe, n) {
                Ok(0) => Err(read_err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the data device ends",
                ))),
                Ok(k) => {
                    w.payload_sent(k as u64)?;
                    Ok(k)
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    buf.resize(n, 0);
                    data.read_exact_at(&mut buf, at + done).map_err(read_err)?;
                    w.payload(&buf)?;
                    w.flush()?;
                    Ok(n)
                }
                Err(e)
                    if e.raw_os_error() == Some(libc::EPIPE)
                        || e.kind() == io::ErrorKind::Interrupted =>
                {
                    Err(SendError::Write(e))
                }
                Err(e) => Err(read_err(e)),
            }?;
            progress.add(got as u64);
            done += got as u64;
        }
        bytes += len;
    }
    Ok(bytes)
}

/// The two channels between the reading thread and the stream writer.
struct Buffers<'a> {
    full: &'a Receiver<Result<Filled, SendError>>,
    empty: &'a SyncSender<Vec<u8>>,
}

/// Writes the `len` bytes of one data piece as the reading thread delivers
/// them (payload after a DATA record, or format 2 chunks); returns the bytes.
fn write_data<W: Write>(
    w: &mut StreamWriter<W>,
    zeros: &mut ZeroRun,
    buffers: &Buffers,
    len: u64,
    opts: &SendOptions,
    unit: usize,
) -> Result<u64, SendError> {
    let mut done = 0;
    while done < len {
        let f = buffers
            .full
            .recv()
            .map_err(|_| SendError::Write(io::Error::other("data reader stopped")))??;
        done += f.buf.len() as u64;
        opts.progress.add(f.buf.len() as u64);
        if opts.format == Format::V2 {
            v2_chunk(w, zeros, f.offset, &f.buf, unit)?;
        } else {
            w.payload(&f.buf)?;
        }
        let _ = buffers.empty.send(f.buf);
    }
    Ok(done)
}

/// Zero units waiting to become one ZERO record.
#[derive(Default)]
struct ZeroRun {
    run: Option<(u64, u64)>,
}

impl ZeroRun {
    fn add<W: Write>(&mut self, w: &mut StreamWriter<W>, offset: u64, len: u64) -> io::Result<()> {
        match &mut self.run {
            Some((o, l)) if *o + *l == offset => {
                *l += len;
                Ok(())
            }
            _ => {
                self.flush(w)?;
                self.run = Some((offset, len));
                Ok(())
            }
        }
    }

    fn flush<W: Write>(&mut self, w: &mut StreamWriter<W>) -> io::Result<()> {
        match self.run.take() {
            Some((o, l)) => w.zero(o, l),
            None => Ok(()),
        }
    }
}

/// True when `b` is all zeros (64-byte blocks folded with OR, which the
/// compiler vectorises).
fn is_zero(b: &[u8]) -> bool {
    let mut blocks = b.chunks_exact(64);
    for c in &mut blocks {
        if c.iter().fold(0u8, |a, &x| a | x) != 0 {
            return false;
        }
    }
    blocks.remainder().iter().all(|&x| x == 0)
}

/// Writes one buffer of volume data as format 2 DATA and ZERO records,
/// deciding per `unit` bytes whether it is all zeros.
fn v2_chunk<W: Write>(
    w: &mut StreamWriter<W>,
    zeros: &mut ZeroRun,
    offset: u64,
    buf: &[u8],
    unit: usize,
) -> io::Result<()> {
    debug_assert!(buf.len() as u64 <= v2::MAX_DATA);
    let mut i = 0;
    while i < buf.len() {
        let zero = is_zero(&buf[i..(i + unit).min(buf.len())]);
        let mut j = (i + unit).min(buf.len());
        while j < buf.len() && is_zero(&buf[j..(j + unit).min(buf.len())]) == zero {
            j = (j + unit).min(buf.len());
        }
        let at = offset + i as u64;
        if zero {
            zeros.add(w, at, (j - i) as u64)?;
        } else {
            zeros.flush(w)?;
            w.data(at, &buf[i..j])?;
        }
        i = j;
    }
    Ok(())
}
