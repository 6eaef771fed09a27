//! LINBIT thin-send-recv's record header (formats 1.0 and 1.1). All integers
//! are big-endian; nothing is padded.
//!
//! | offset | size | field | meaning |
//! |---|---|---|---|
//! | 0 | 8 | magic | [`MAGIC_1_1`] or [`MAGIC_1_0`] |
//! | 8 | 8 | offset | target byte offset |
//! | 16 | 8 | length | range length (DATA/UNMAP) or payload length |
//! | 24 | 4 | cmd | [`CMD_DATA`] … [`CMD_END`], bit 31 = optional |
//!
//! DATA is followed by `length` raw bytes, END by three u64 (records, data,
//! unmap), an optional record (bit 31) by `length` bytes to skip.

use zerocopy::byteorder::big_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Format 1.1's magic (thin-send-recv 1.1.0 and later).
pub const MAGIC_1_1: u64 = 0x24C4_F02A_AE2E_4FA9;
/// Format 1.0's magic (thin-send-recv 1.0.1, 1.0.2).
pub const MAGIC_1_0: u64 = 0xCA7F_00D5_DE7E_C7ED;
/// The magic of versions before 1.0.1 (24-byte headers), recognised only to
/// be refused with a helpful message.
pub const MAGIC_ANCIENT: u64 = 0xE85B_C563_6CC7_2A05;

/// Write `length` bytes at `offset`.
pub const CMD_DATA: u32 = 0;
/// Discard `[offset, offset + length)`.
pub const CMD_UNMAP: u32 = 1;
/// First record of a 1.1 stream.
pub const CMD_BEGIN: u32 = 2;
/// Last record of a 1.1 stream, with [`EndStats`].
pub const CMD_END: u32 = 3;
/// Set on a record a 1.1 receiver may skip.
pub const CMD_OPTIONAL: u32 = 0x8000_0000;

/// The 28-byte record header.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Header {
    /// The format's magic.
    pub magic: U64,
    /// Target byte offset.
    pub offset: U64,
    /// Range or payload length.
    pub length: U64,
    /// Command code.
    pub cmd: U32,
}

/// Size of [`Header`].
pub const HEADER_SIZE: usize = 8 + 8 + 8 + 4;
const _: () = assert!(std::mem::size_of::<Header>() == HEADER_SIZE);

/// END's 24-byte payload.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct EndStats {
    /// Every record, BEGIN and END and optional ones included.
    pub n_chunks: U64,
    /// DATA records.
    pub n_data: U64,
    /// UNMAP records.
    pub n_unmap: U64,
}

/// Size of [`EndStats`].
pub const END_STATS_SIZE: usize = 24;
const _: () = assert!(std::mem::size_of::<EndStats>() == END_STATS_SIZE);

impl Header {
    /// A header with these fields.
    #[must_use]
    pub fn new(magic: u64, offset: u64, length: u64, cmd: u32) -> Header {
        Header {
            magic: U64::new(magic),
            offset: U64::new(offset),
            length: U64::new(length),
            cmd: U32::new(cmd),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn begin_header_bytes_are_the_spec_example() {
        let h = Header::new(MAGIC_1_1, 0, 0, CMD_BEGIN);
        let want = [
            0x24, 0xc4, 0xf0, 0x2a, 0xae, 0x2e, 0x4f, 0xa9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 2,
        ];
        assert_eq!(h.as_bytes(), &want);
    }
}
