//! What a sender sends: sorted, non-overlapping pieces of the volume, and the
//! identities that name source and base.
//!
//! The extents come from the copy engine's planner (`copy::plan`, shared
//! with thin_migrate and thin_merge): every mapped run for a full send, the
//! delta walk between base and source (shared subtrees skipped unread) for an
//! incremental one. This module only turns them into byte ranges of the
//! volume and of the data device.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::stream::Identity;
use crate::thin::engines::copy::plan::{Action, Gaps, Plan as CopyPlan};
use crate::thin::engines::copy::source::{SourceError, SourceMetadata};
use crate::thin::model::device_details::DeviceDetails;
use crate::thin::model::open::SnapshotChoice;

/// One piece of the volume, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    /// `len` bytes at `offset` of the volume, read at `data` of the data device.
    Data {
        /// Volume offset.
        offset: u64,
        /// Data device offset.
        data: u64,
        /// Length.
        len: u64,
    },
    /// `len` bytes at `offset` are unmapped at the source.
    Unmap {
        /// Volume offset.
        offset: u64,
        /// Length.
        len: u64,
    },
}

impl Piece {
    /// First byte.
    #[must_use]
    pub fn offset(&self) -> u64 {
        match *self {
            Piece::Data { offset, .. } | Piece::Unmap { offset, .. } => offset,
        }
    }

    /// Length in bytes.
    #[must_use]
    pub fn len(&self) -> u64 {
        match *self {
            Piece::Data { len, .. } | Piece::Unmap { len, .. } => len,
        }
    }

    /// True for an empty piece.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The part of the piece at or above `from`, if any.
    #[must_use]
    pub fn from(&self, from: u64) -> Option<Piece> {
        let (off, len) = (self.offset(), self.len());
        let end = off + len;
        if end <= from {
            return None;
        }
        let skip = from.saturating_sub(off);
        Some(match *self {
            Piece::Data { data, .. } => Piece::Data {
                offset: off + skip,
                data: data + skip,
                len: len - skip,
            },
            Piece::Unmap { .. } => Piece::Unmap {
                offset: off + skip,
                len: len - skip,
            },
        })
    }
}

/// What to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Sorted pieces.
    pub pieces: Vec<Piece>,
    /// Volume size in bytes.
    pub volume_size: u64,
    /// Pool data block size in bytes.
    pub granularity: u32,
    /// The volume sent.
    pub source: Identity,
    /// The base of an incremental plan.
    pub base: Option<Identity>,
}

/// Whether a full plan unmaps the unmapped parts of the volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holes {
    /// Leave them out (formats 1.x: the target must start empty).
    Skip,
    /// Send them as UNMAP (format 2: any target ends up equal).
    Unmap,
}

/// A plan that cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The metadata could not be read, or a thin not found in it.
    #[error("{0}")]
    Source(#[from] SourceError),
    /// A volume size smaller than what is mapped.
    #[error("volume size {size} is smaller than the mapped extent {mapped}")]
    SizeTooSmall {
        /// Asked for.
        size: u64,
        /// Needed.
        mapped: u64,
    },
    /// A block address that overflows in bytes.
    #[error("thin block {0} overflows a byte offset")]
    Overflow(u64),
}

/// The identity of a thin device: a hash of what its metadata says about it
/// that does not change while nobody writes to it (pool block size, device
/// id, creation transaction and time, mapped block count).
#[must_use]
pub fn identity(data_block_size: u32, id: u64, d: &DeviceDetails) -> Identity {
    let mut h = Sha256::new();
    h.update(b"thintools volume identity 1\0");
    h.update(data_block_size.to_le_bytes());
    h.update(id.to_le_bytes());
    h.update(d.transaction_id.to_le_bytes());
    h.update(d.creation_time.to_le_bytes());
    h.update(d.mapped_blocks.to_le_bytes());
    let full: [u8; 32] = h.finalize().into();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    Identity(out)
}

/// Offline images to send from.
#[derive(Clone, Debug)]
pub struct OfflineSource<'a> {
    /// Metadata device or image.
    pub metadata: &'a Path,
    /// Which superblock.
    pub snapshot: SnapshotChoice,
    /// The thin device to send.
    pub thin_id: u64,
    /// For an incremental send, the base device.
    pub base_id: Option<u64>,
    /// The volume size; the mapped extent when None.
    pub volume_size: Option<u64>,
}

/// Builds the plan for `src` from its metadata. Without a volume size, the
/// volume ends with the last block mapped in the source (or, for an
/// incremental plan, in the source or the base, so that the base's blocks
/// past the source's end are unmapped too).
///
/// # Errors
/// Unreadable metadata, a missing device, a size below the mapped extent.
pub fn plan_offline(src: &OfflineSource, holes: Holes) -> Result<Plan, PlanError> {
    let md = SourceMetadata::open(src.metadata, src.snapshot)?;
    let bs = md.block_bytes();
    let granularity = u32::try_from(bs).map_err(|_| PlanError::Overflow(bs))?;
    let mut mapped = md.mapped_end(src.thin_id)?;
    if let Some(b) = src.base_id {
        mapped = mapped.max(md.mapped_end(b)?);
    }
    let volume_size = match src.volume_size {
        Some(s) if s < mapped => return Err(PlanError::SizeTooSmall { size: s, mapped }),
        Some(s) => s,
        None => mapped,
    };
    let extents = match src.base_id {
        Some(base) => md.delta_plan(base, src.thin_id, volume_size, false)?,
        None if holes == Holes::Unmap => md.full_plan(src.thin_id, volume_size, Gaps::Zero)?,
        None => md.full_plan(src.thin_id, volume_size, Gaps::Skip)?,
    };
    let pieces = pieces_of(&extents)?;
    let dbs = md.sb.data_block_size;
    let ident = |id| -> Result<Identity, PlanError> { Ok(identity(dbs, id, &md.details(id)?)) };
    Ok(Plan {
        pieces,
        volume_size,
        granularity,
        source: ident(src.thin_id)?,
        base: src.base_id.map(ident).transpose()?,
    })
}

/// The copy plan's extents as byte ranges: mapped extents are read at their
/// data blocks, unmapped ones (zero or origin: the target must read as
/// unmapped there) become UNMAP pieces.
fn pieces_of(plan: &CopyPlan) -> Result<Vec<Piece>, PlanError> {
    let mut out = Vec::with_capacity(plan.extents.len());
    for e in &plan.extents {
        let (offset, len) = plan.extent_bytes(e);
        if len == 0 {
            continue;
        }
        out.push(match e.action {
            Action::Mapped { data: Some(d) } => Piece::Data {
                offset,
                data: d
                    .checked_mul(plan.block_bytes)
                    .ok_or(PlanError::Overflow(d))?,
                len,
            },
            Action::Mapped { data: None } | Action::Origin | Action::Zero => {
                Piece::Unmap { offset, len }
            }
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thin::engines::copy::plan::Extent;

    #[test]
    fn extents_become_byte_pieces_clipped_to_the_volume() {
        let plan = CopyPlan {
            block_bytes: 1024,
            size_bytes: 10 * 1024 - 100,
            extents: vec![
                Extent {
                    begin: 0,
                    len: 2,
                    action: Action::Zero,
                },
                Extent {
                    begin: 2,
                    len: 3,
                    action: Action::Mapped { data: Some(7) },
                },
                Extent {
                    begin: 9,
                    len: 1,
                    action: Action::Mapped { data: Some(1) },
                },
            ],
        };
        let d = |offset, data, len| Piece::Data { offset, data, len };
        assert_eq!(
            pieces_of(&plan).unwrap(),
            [
                Piece::Unmap {
                    offset: 0,
                    len: 2048
                },
                d(2048, 7168, 3072),
                d(9216, 1024, 924)
            ]
        );
        assert_eq!(d(10, 0, 5).from(12), Some(d(12, 2, 3)));
        assert_eq!(d(10, 0, 5).from(15), None);
    }
}
