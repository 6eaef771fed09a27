//! Writes a stream of any format from operations given in ascending offset
//! order.

use std::io::{self, Write};

use sha2::{Digest, Sha256};
use zerocopy::IntoBytes;

use super::linbit::{self, Header};
use super::v2::{self, EndPayload, HeaderPayload, RecordHeader};
use super::{Counts, Format, StreamHeader};

/// Per-record zstd compression of format 2 DATA records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Raw payloads.
    None,
    /// zstd at this level; a record that does not shrink is stored raw.
    Zstd(i32),
}

/// A stream being written.
pub struct StreamWriter<W: Write> {
    out: W,
    format: Format,
    counts: Counts,
    hasher: Sha256,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    cbuf: Vec<u8>,
    /// Bytes of a 1.x DATA payload still to come through [`Self::payload`].
    owed: u64,
    written: u64,
}

impl<W: Write> StreamWriter<W> {
    /// Starts a stream: BEGIN (1.1) or HEADER (2, which needs `header`).
    ///
    /// # Errors
    /// The output's write error; `InvalidInput` for format 2 without a header.
    pub fn new(
        out: W,
        format: Format,
        header: Option<&StreamHeader>,
        compression: Compression,
    ) -> io::Result<Self> {
        let compressor = match (format, compression) {
            (Format::V2, Compression::Zstd(level)) => Some(zstd::bulk::Compressor::new(level)?),
            _ => None,
        };
        let cbuf = if compressor.is_some() {
            vec![0; v2::MAX_DATA as usize]
        } else {
            Vec::new()
        };
        let mut w = StreamWriter {
            out,
            format,
            counts: Counts::default(),
            hasher: Sha256::new(),
            compressor,
            cbuf,
            owed: 0,
            written: 0,
        };
        match format {
            Format::V1_0 => {}
            Format::V1_1 => w.linbit(0, 0, linbit::CMD_BEGIN)?,
            Format::V2 => {
                let h = header.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "format 2 needs a header")
                })?;
                w.v2_header(h)?;
            }
        }
        Ok(w)
    }

    /// The format being written.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes out everything buffered so far (before bytes of a 1.x DATA
    /// payload go to the output by another way, see [`Self::payload_sent`]).
    ///
    /// # Errors
    /// The output's write error.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Accounts for `n` bytes of the 1.x DATA payload owed that the caller
    /// wrote to the output itself, after [`Self::flush`].
    ///
    /// # Errors
    /// `InvalidInput` for more bytes than owed.
    pub fn payload_sent(&mut self, n: u64) -> io::Result<()> {
        if n > self.owed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "payload longer than its data record",
            ));
        }
        self.owed -= n;
        self.written += n;
        Ok(())
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn linbit(&mut self, offset: u64, length: u64, cmd: u32) -> io::Result<()> {
        let magic = if self.format == Format::V1_0 {
            linbit::MAGIC_1_0
        } else {
            linbit::MAGIC_1_1
        };
        self.counts.records += 1;
        self.put(Header::new(magic, offset, length, cmd).as_bytes())
    }

    fn v2_record(&mut self, kind: u32, flags: u32, off: u64, len: u64, p: &[u8]) -> io::Result<()> {
        let plen = u32::try_from(p.len()).map_err(io::Error::other)?;
        let mut h = RecordHeader::new(kind, flags, off, len, plen);
        h.csum.set(v2::record_csum(&h, p));
        if kind != v2::KIND_END {
            self.hasher.update(h.as_bytes());
            self.hasher.update(p);
        }
        self.counts.records += 1;
        self.put(h.as_bytes())?;
        self.put(p)
    }

    fn v2_header(&mut self, h: &StreamHeader) -> io::Result<()> {
        let mut flags = 0;
        if h.base.is_some() {
            flags |= v2::HFLAG_INCREMENTAL;
        }
        if h.resume_from != 0 {
            flags |= v2::HFLAG_RESUMED;
        }
        let mut p = HeaderPayload {
            version: v2::HEADER_VERSION.into(),
            flags: flags.into(),
            volume_size: h.volume_size.into(),
            granularity: h.granularity.into(),
            max_data: u32::try_from(v2::MAX_DATA).unwrap_or(u32::MAX).into(),
            resume_from: h.resume_from.into(),
            source: h.source.0,
            base: [0; 16],
        };
        if let Some(b) = h.base {
            p.base = b.0;
        }
        self.v2_record(v2::KIND_HEADER, 0, 0, 0, p.as_bytes())
    }

    /// Starts a 1.x DATA record of `len` bytes at `offset`; its bytes follow
    /// through [`Self::payload`].
    ///
    /// # Errors
    /// The output's write error; `InvalidInput` in format 2 or while a
    /// payload is still owed.
    pub fn data_record(&mut self, offset: u64, len: u64) -> io::Result<()> {
        if self.format == Format::V2 || self.owed != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "data_record is for formats 1.x, one at a time",
            ));
        }
        self.counts.data += 1;
        self.owed = len;
        self.linbit(offset, len, linbit::CMD_DATA)
    }

    /// Bytes of the 1.x DATA record started by [`Self::data_record`].
    ///
    /// # Errors
    /// The output's write error; `InvalidInput` for more bytes than owed.
    pub fn payload(&mut self, bytes: &[u8]) -> io::Result<()> {
        let n = bytes.len() as u64;
        if n > self.owed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "payload longer than its data record",
            ));
        }
        self.owed -= n;
        self.put(bytes)
    }

    /// One format 2 DATA record of `bytes` (at most [`v2::MAX_DATA`]) at
    /// `offset`, compressed when that was asked for and it shrinks.
    ///
    /// # Errors
    /// The output's write error; `InvalidInput` for an empty or oversized
    /// record or another format.
    pub fn data(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let len = bytes.len() as u64;
        if self.format != Format::V2 || len == 0 || len > v2::MAX_DATA {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "format 2 data records hold 1 byte to 4 MiB",
            ));
        }
        self.counts.data += 1;
        if let Some(c) = &mut self.compressor {
            if let Ok(n) = c.compress_to_buffer(bytes, &mut self.cbuf[..bytes.len()]) {
                if n < bytes.len() {
                    let cbuf = std::mem::take(&mut self.cbuf);
                    let r = self.v2_record(v2::KIND_DATA, v2::FLAG_ZSTD, offset, len, &cbuf[..n]);
                    self.cbuf = cbuf;
                    return r;
                }
            }
        }
        self.v2_record(v2::KIND_DATA, 0, offset, len, bytes)
    }

    /// A format 2 ZERO record.
    ///
    /// # Errors
    /// The output's write error; `InvalidInput` in formats 1.x.
    pub fn zero(&mut self, offset: u64, len: u64) -> io::Result<()> {
        if self.format != Format::V2 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "zero records exist only in format 2",
            ));
        }
        self.counts.zero += 1;
        self.v2_record(v2::KIND_ZERO, 0, offset, len, &[])
    }

    /// An UNMAP record.
    ///
    /// # Errors
    /// The output's write error.
    pub fn unmap(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.counts.unmap += 1;
        match self.format {
            Format::V2 => self.v2_record(v2::KIND_UNMAP, 0, offset, len, &[]),
            _ => self.linbit(offset, len, linbit::CMD_UNMAP),
        }
    }

    /// Writes the END record (1.1, 2), flushes and hands back the output.
    ///
    /// # Errors
    /// The output's write error; `InvalidInput` while a payload is owed.
    pub fn finish(mut self) -> io::Result<(W, Counts)> {
        if self.owed != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "stream finished inside a data record",
            ));
        }
        match self.format {
            Format::V1_0 => {}
            Format::V1_1 => {
                self.linbit(0, linbit::END_STATS_SIZE as u64, linbit::CMD_END)?;
                let c = self.counts;
                let s = linbit::EndStats {
                    n_chunks: c.records.into(),
                    n_data: c.data.into(),
                    n_unmap: c.unmap.into(),
                };
                self.put(s.as_bytes())?;
            }
            Format::V2 => {
                let c = self.counts;
                let p = EndPayload {
                    n_records: (c.records + 1).into(),
                    n_data: c.data.into(),
                    n_zero: c.zero.into(),
                    n_unmap: c.unmap.into(),
                    digest: self.hasher.clone().finalize().into(),
                };
                self.v2_record(v2::KIND_END, 0, 0, 0, p.as_bytes())?;
            }
        }
        self.out.flush()?;
        Ok((self.out, self.counts))
    }
}
