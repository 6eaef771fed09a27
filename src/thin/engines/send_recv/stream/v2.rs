//! Format 2's records (docs/stream-format.md). All integers are little-endian.
//!
//! Record header, 40 bytes:
//!
//! | offset | size | field | meaning |
//! |---|---|---|---|
//! | 0 | 8 | magic | [`MAGIC`], the bytes `54 53 52 32 0d 0a 1a 0a` (`TSR2\r\n\x1a\n`) |
//! | 8 | 4 | kind | [`KIND_HEADER`] … [`KIND_END`] |
//! | 12 | 4 | flags | [`FLAG_ZSTD`]: the payload is one zstd frame |
//! | 16 | 8 | offset | target byte offset (0 for HEADER and END) |
//! | 24 | 8 | length | target range in bytes (0 for HEADER and END) |
//! | 32 | 4 | payload_len | bytes that follow the header |
//! | 36 | 4 | csum | crc32c of bytes 0..36 and then of the payload |
//!
//! HEADER's payload ([`HeaderPayload`], 64 bytes) and END's ([`EndPayload`],
//! 64 bytes) are below; DATA carries `length` bytes (or fewer, compressed);
//! ZERO and UNMAP carry none.

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Every record's first 8 bytes.
pub const MAGIC: [u8; 8] = *b"TSR2\r\n\x1a\n";

/// First record: [`HeaderPayload`].
pub const KIND_HEADER: u32 = 1;
/// Bytes to write at `offset`.
pub const KIND_DATA: u32 = 2;
/// The range reads as zeros at the source.
pub const KIND_ZERO: u32 = 3;
/// The range is unmapped at the source (reads as zeros there too).
pub const KIND_UNMAP: u32 = 4;
/// Last record: [`EndPayload`].
pub const KIND_END: u32 = 5;

/// The DATA payload is a zstd frame decompressing to `length` bytes.
pub const FLAG_ZSTD: u32 = 1;

/// The largest range one DATA record may carry (a reader refuses more), so
/// that a reader's buffers have a fixed size.
pub const MAX_DATA: u64 = 4 << 20;

/// Header flag: the stream is incremental (`base` is set).
pub const HFLAG_INCREMENTAL: u32 = 1;
/// Header flag: the stream was resumed (`resume_from` may be non-zero).
pub const HFLAG_RESUMED: u32 = 2;

/// The 40-byte record header.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RecordHeader {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// Record kind.
    pub kind: U32,
    /// Record flags.
    pub flags: U32,
    /// Target byte offset.
    pub offset: U64,
    /// Target range in bytes.
    pub length: U64,
    /// Bytes of payload following.
    pub payload_len: U32,
    /// crc32c of the header's first 36 bytes and the payload.
    pub csum: U32,
}

/// Size of [`RecordHeader`].
pub const RECORD_HEADER_SIZE: usize = 8 + 4 + 4 + 8 + 8 + 4 + 4;
const _: () = assert!(std::mem::size_of::<RecordHeader>() == RECORD_HEADER_SIZE);
/// The header bytes the checksum covers.
pub const CSUM_COVERS: usize = RECORD_HEADER_SIZE - 4;

/// HEADER's payload.
///
/// | offset | size | field | meaning |
/// |---|---|---|---|
/// | 0 | 4 | version | 1 |
/// | 4 | 4 | flags | [`HFLAG_INCREMENTAL`], [`HFLAG_RESUMED`] |
/// | 8 | 8 | volume_size | bytes |
/// | 16 | 4 | granularity | bytes (pool data block size) |
/// | 20 | 4 | max_data | the largest DATA range this stream uses |
/// | 24 | 8 | resume_from | no operation starts below this offset |
/// | 32 | 16 | source | identity of the volume sent |
/// | 48 | 16 | base | identity the target must hold (zeros: full stream) |
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct HeaderPayload {
    /// Payload version (1).
    pub version: U32,
    /// Header flags.
    pub flags: U32,
    /// Volume size in bytes.
    pub volume_size: U64,
    /// Granularity in bytes.
    pub granularity: U32,
    /// Largest DATA range.
    pub max_data: U32,
    /// Resume offset.
    pub resume_from: U64,
    /// Source identity.
    pub source: [u8; 16],
    /// Base identity.
    pub base: [u8; 16],
}

/// Size of [`HeaderPayload`].
pub const HEADER_PAYLOAD_SIZE: usize = 4 + 4 + 8 + 4 + 4 + 8 + 16 + 16;
const _: () = assert!(std::mem::size_of::<HeaderPayload>() == HEADER_PAYLOAD_SIZE);
/// The only header payload version.
pub const HEADER_VERSION: u32 = 1;

/// END's payload.
///
/// | offset | size | field | meaning |
/// |---|---|---|---|
/// | 0 | 8 | n_records | every record, HEADER and END included |
/// | 8 | 8 | n_data | DATA records |
/// | 16 | 8 | n_zero | ZERO records |
/// | 24 | 8 | n_unmap | UNMAP records |
/// | 32 | 32 | digest | SHA-256 of every stream byte before the END record |
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct EndPayload {
    /// All records.
    pub n_records: U64,
    /// DATA records.
    pub n_data: U64,
    /// ZERO records.
    pub n_zero: U64,
    /// UNMAP records.
    pub n_unmap: U64,
    /// SHA-256 of the stream before the END record.
    pub digest: [u8; 32],
}

/// Size of [`EndPayload`].
pub const END_PAYLOAD_SIZE: usize = 8 * 4 + 32;
const _: () = assert!(std::mem::size_of::<EndPayload>() == END_PAYLOAD_SIZE);

impl RecordHeader {
    /// A header with `csum` still 0 (see [`record_csum`]).
    #[must_use]
    pub fn new(kind: u32, flags: u32, offset: u64, length: u64, payload_len: u32) -> Self {
        RecordHeader {
            magic: MAGIC,
            kind: U32::new(kind),
            flags: U32::new(flags),
            offset: U64::new(offset),
            length: U64::new(length),
            payload_len: U32::new(payload_len),
            csum: U32::new(0),
        }
    }
}

/// The checksum of a record: crc32c over the header's first 36 bytes, then
/// over the payload.
#[must_use]
pub fn record_csum(header: &RecordHeader, payload: &[u8]) -> u32 {
    let h = crc32c::crc32c(&header.as_bytes()[..CSUM_COVERS]);
    crc32c::crc32c_append(h, payload)
}
