//! Generic persistent data: the layers below the thin metadata model.

pub mod block;
pub mod btree;
pub mod checksum;
pub mod io;
pub mod space_map;
#[allow(unsafe_code)]
pub mod sys;
pub mod write_behind;

#[cfg(not(target_pointer_width = "64"))]
compile_error!("thintools indexes memory by 64-bit block numbers: it needs a 64-bit target");

/// A block number, block count or on-disk length as a memory index. Lossless:
/// the crate builds only for 64-bit targets (checked above), where `usize`
/// holds every `u64`. Callers still bound the value before indexing.
#[must_use]
#[inline]
#[allow(clippy::cast_possible_truncation)]
pub const fn to_index(v: u64) -> usize {
    v as usize
}

/// The low 32 bits of `v`. Exact for the values it is used on: masked to 32
/// bits or fewer, or bounded by the entries of one block.
#[must_use]
#[inline]
pub const fn low_u32(v: u64) -> u32 {
    let b = v.to_le_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}
