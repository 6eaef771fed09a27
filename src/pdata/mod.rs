//! Generic persistent data: the layers below the thin metadata model.

pub mod block;
pub mod btree;
pub mod checksum;
pub mod io;
pub mod space_map;
#[allow(unsafe_code)]
pub mod sys;
pub mod writer;

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
