//! Device details: the 24-byte values of the details tree (key = device id).
//!
//! ```text
//! offset size field
//!      0    8 mapped_blocks
//!      8    8 transaction_id    trans_id when the device was created
//!     16    4 creation_time
//!     20    4 snapshotted_time
//! ```

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Size of one details value.
pub const DETAILS_VALUE_SIZE: u32 = 24;
/// [`DETAILS_VALUE_SIZE`] as a length: one value is a `[u8; DETAILS_VALUE_LEN]`
/// (split a leaf's values with `as_chunks::<DETAILS_VALUE_LEN>()`).
pub const DETAILS_VALUE_LEN: usize = 24;
const _: () = assert!(DETAILS_VALUE_LEN as u64 == DETAILS_VALUE_SIZE as u64);

/// On-disk layout of one details value.
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct RawDeviceDetails {
    /// Mapped blocks.
    pub mapped_blocks: U64,
    /// Transaction id at creation.
    pub transaction_id: U64,
    /// Time at creation.
    pub creation_time: U32,
    /// Time of the last snapshot.
    pub snapshotted_time: U32,
}
const _: () = assert!(std::mem::size_of::<RawDeviceDetails>() == DETAILS_VALUE_SIZE as usize);

/// Decoded device details.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceDetails {
    /// Mapped blocks as recorded (not recounted).
    pub mapped_blocks: u64,
    /// Transaction id at creation.
    pub transaction_id: u64,
    /// Time at creation.
    pub creation_time: u32,
    /// Time of the last snapshot.
    pub snapshotted_time: u32,
}

impl DeviceDetails {
    /// Decodes one 24-byte value.
    #[must_use]
    pub fn from_bytes(bytes: &[u8; DETAILS_VALUE_LEN]) -> DeviceDetails {
        let raw: RawDeviceDetails = zerocopy::transmute!(*bytes);
        DeviceDetails {
            mapped_blocks: raw.mapped_blocks.get(),
            transaction_id: raw.transaction_id.get(),
            creation_time: raw.creation_time.get(),
            snapshotted_time: raw.snapshotted_time.get(),
        }
    }

    /// Encodes into 24 bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; DETAILS_VALUE_LEN] {
        let raw = RawDeviceDetails {
            mapped_blocks: self.mapped_blocks.into(),
            transaction_id: self.transaction_id.into(),
            creation_time: self.creation_time.into(),
            snapshotted_time: self.snapshotted_time.into(),
        };
        zerocopy::transmute!(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let d = DeviceDetails {
            mapped_blocks: 5,
            transaction_id: 9,
            creation_time: 2,
            snapshotted_time: 3,
        };
        assert_eq!(DeviceDetails::from_bytes(&d.to_bytes()), d);
        assert_eq!(d.to_bytes()[16], 2);
    }
}
