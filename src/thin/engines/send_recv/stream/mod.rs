//! The byte streams `thin_send` writes and `thin_recv` reads: LINBIT's formats
//! 1.0 and 1.1 (in [`linbit`]) and our format 2
//! (docs/stream-format.md, in [`v2`]).
//!
//! [`reader::StreamReader`] turns any of them into [`Event`]s, with every
//! buffer of a fixed size: no length read from a stream sizes an allocation.
//! [`writer::StreamWriter`] writes any of them from the same operations.

pub mod linbit;
pub mod reader;
pub mod v2;
pub mod writer;

use std::fmt;

/// A stream format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// LINBIT thin-send-recv 1.0.1/1.0.2: DATA and UNMAP records only.
    V1_0,
    /// LINBIT thin-send-recv 1.1.x: BEGIN, DATA, UNMAP, optional records, END.
    V1_1,
    /// Ours: a header naming the volume, checksums, zero records, compression.
    V2,
}

impl Format {
    /// The name used on the command line (`1.0`, `1.1`, `2`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Format::V1_0 => "1.0",
            Format::V1_1 => "1.1",
            Format::V2 => "2",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which formats a receiver takes (`--accept-stream-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accept {
    /// Any format; empty input is accepted (as LINBIT's `auto`).
    Auto,
    /// Only this format.
    Only(Format),
}

impl Accept {
    fn takes(self, f: Format) -> bool {
        match self {
            Accept::Auto => true,
            Accept::Only(g) => g == f,
        }
    }
}

/// A volume's identity: 16 bytes derived from what the source's metadata says
/// about it (see [`crate::thin::engines::send_recv::identity`]). All zeros
/// means "none".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Identity(pub [u8; 16]);

impl Identity {
    /// True for the all-zero identity ("none").
    #[must_use]
    pub fn is_none(&self) -> bool {
        self.0 == [0; 16]
    }

    /// Parses 32 hex digits.
    #[must_use]
    pub fn parse(s: &str) -> Option<Identity> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Identity(out))
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// What a format 2 stream says about itself before its first operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamHeader {
    /// Size of the volume in bytes; every operation lies inside it.
    pub volume_size: u64,
    /// The sender's unit in bytes (the pool's data block size).
    pub granularity: u32,
    /// The volume (snapshot) whose content the stream brings.
    pub source: Identity,
    /// For an incremental stream, the volume the target must already hold.
    pub base: Option<Identity>,
    /// Operations below this byte offset were left out (a resumed stream).
    pub resume_from: u64,
}

/// What one record (or, for long DATA records of formats 1.x, one piece of
/// it) asks of the target.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// The stream's first record was read; `header` only for format 2.
    Begin {
        /// The stream's format.
        format: Format,
        /// Format 2's header.
        header: Option<StreamHeader>,
    },
    /// Write `bytes` at `offset`.
    Data {
        /// Target byte offset.
        offset: u64,
        /// The bytes (verified, decompressed).
        bytes: &'a [u8],
    },
    /// The range reads as zeros at the source (format 2).
    Zero {
        /// Target byte offset.
        offset: u64,
        /// Length in bytes.
        len: u64,
    },
    /// The range is unmapped at the source.
    Unmap {
        /// Target byte offset.
        offset: u64,
        /// Length in bytes.
        len: u64,
    },
    /// The stream ended and its end record (1.1, 2) checked out.
    End,
}

/// Record counts, as the end records carry them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Every record, the begin/header and end records included.
    pub records: u64,
    /// DATA records.
    pub data: u64,
    /// ZERO records (format 2).
    pub zero: u64,
    /// UNMAP records.
    pub unmap: u64,
}

/// A stream that cannot be read; `offset` is the stream byte offset of the
/// record (or the point) where it went wrong.
#[derive(Debug, thiserror::Error)]
#[error("stream offset {offset}: {kind}")]
pub struct StreamError {
    /// Byte offset in the stream.
    pub offset: u64,
    /// What was wrong.
    pub kind: StreamErrorKind,
}

/// What was wrong with a stream.
#[derive(Debug, thiserror::Error)]
pub enum StreamErrorKind {
    /// Reading the input failed.
    #[error("read error: {0}")]
    Io(std::io::Error),
    /// No input at all where it is not accepted.
    #[error("empty input, but only format {0} is accepted")]
    EmptyRefused(Format),
    /// The first magic is not one we know.
    #[error("unknown magic 0x{0:016x}")]
    UnknownMagic(u64),
    /// The magic of thin-send-recv before 1.0.1.
    #[error("magic 0x{0:016x} of thin-send-recv before 1.0.1 (stream format of 24-byte headers), which no receiver reads any more: use matching versions on both sides")]
    AncientMagic(u64),
    /// A known format that `--accept-stream-format` excludes.
    #[error("stream format {0} is not accepted here")]
    NotAccepted(Format),
    /// A later record's magic differs from the first's.
    #[error("magic 0x{found:016x} where 0x{expected:016x} was expected")]
    MagicChanged {
        /// The first record's magic.
        expected: u64,
        /// This record's.
        found: u64,
    },
    /// The input ended inside a record.
    #[error("truncated input: {what} needs {expected} bytes, got {got}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes needed.
        expected: u64,
        /// Bytes read.
        got: u64,
    },
    /// The input ended at a record boundary before the end record.
    #[error("input ends without an end record")]
    MissingEnd,
    /// Bytes follow the end record.
    #[error("trailing data after the end record")]
    TrailingData,
    /// A 1.1 or 2 stream whose first record is not BEGIN / HEADER.
    #[error("stream does not start with its begin record (cmd {0})")]
    NoBegin(u32),
    /// A second BEGIN / HEADER.
    #[error("begin record repeated")]
    BeginRepeated,
    /// A BEGIN record with a non-zero offset or length.
    #[error("begin record with offset {offset} and length {len} (both must be 0)")]
    BadBegin {
        /// Its offset.
        offset: u64,
        /// Its length.
        len: u64,
    },
    /// An END record of the wrong shape.
    #[error("end record with offset {offset} and length {len} (must be 0 and {want})")]
    BadEnd {
        /// Its offset.
        offset: u64,
        /// Its length.
        len: u64,
        /// The length it must have.
        want: u64,
    },
    /// The END counts differ from what was read.
    #[error("end record counts records/data/zero/unmap {found:?}, the stream had {counted:?}")]
    CountMismatch {
        /// The end record's.
        found: [u64; 4],
        /// Ours.
        counted: [u64; 4],
    },
    /// An unknown mandatory record.
    #[error("unknown record cmd 0x{cmd:x} (length {len})")]
    UnknownCmd {
        /// The command code.
        cmd: u32,
        /// Its length field.
        len: u64,
    },
    /// A record's checksum does not match.
    #[error("record checksum 0x{found:08x}, computed 0x{computed:08x}")]
    RecordChecksum {
        /// The record's.
        found: u32,
        /// Ours.
        computed: u32,
    },
    /// The stream digest in the END record does not match.
    #[error("stream digest mismatch: end record has {found}, the stream hashes to {computed}")]
    DigestMismatch {
        /// The end record's (hex).
        found: String,
        /// Ours (hex).
        computed: String,
    },
    /// A format 2 header that is not usable.
    #[error("bad stream header: {0}")]
    BadHeader(&'static str),
    /// A range outside the volume, overlapping or behind the previous one.
    #[error("record range {offset}+{len} {why}")]
    BadRange {
        /// Its offset.
        offset: u64,
        /// Its length.
        len: u64,
        /// Why it is refused.
        why: &'static str,
    },
    /// A record whose payload size does not fit its kind.
    #[error("record payload of {payload} bytes for a range of {len} bytes: {why}")]
    BadPayload {
        /// Payload bytes.
        payload: u64,
        /// Range bytes.
        len: u64,
        /// Why it is refused.
        why: &'static str,
    },
    /// A compressed payload that does not decompress to its range.
    #[error("compressed payload does not decompress to {len} bytes: {why}")]
    Decompress {
        /// Expected bytes.
        len: u64,
        /// What zstd said.
        why: String,
    },
}

#[cfg(test)]
mod tests;
