//! What a sender sends: sorted, non-overlapping pieces of the volume, built
//! from the mapping runs of the binary metadata (the O(changed) delta walk of
//! thin_delta), and the identities that name source and base.
//!
//! This is a minimal run planner of its own: the copy engine's planner
//! (thin_migrate) should take its place once both have landed.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::stream::Identity;
use crate::thin::engines::delta::{diff_runs, DeltaError, DeltaKind};
use crate::thin::model::device_details::DeviceDetails;
use crate::thin::model::open::{devices, open_for_reading, DeviceEntry, ReadError, SnapshotChoice};

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
    /// The metadata could not be read.
    #[error("{0}")]
    Metadata(ReadError),
    /// A mapping tree could not be read.
    #[error("{0}")]
    Mappings(DeltaError),
    /// No such thin device.
    #[error("no thin device with id {0} in the metadata")]
    NoDevice(u64),
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

/// Builds the plan for `src` from its metadata.
///
/// # Errors
/// Unreadable metadata, a missing device, a size below the mapped extent.
pub fn plan_offline(src: &OfflineSource, holes: Holes) -> Result<Plan, PlanError> {
    let opened = open_for_reading(src.metadata, src.snapshot).map_err(PlanError::Metadata)?;
    let sb = &opened.chosen.sb;
    let devs =
        devices(&opened.dev, sb.mapping_root, sb.details_root).map_err(PlanError::Metadata)?;
    let find = |id: u64| -> Result<&DeviceEntry, PlanError> {
        devs.iter()
            .find(|d| d.id == id)
            .ok_or(PlanError::NoDevice(id))
    };
    let thin = find(src.thin_id)?;
    let base = src.base_id.map(find).transpose()?;
    let bs = u64::from(sb.data_block_size) * 512;
    let gran = u32::try_from(bs).map_err(|_| PlanError::Overflow(bs))?;
    let left = base.map_or(thin.root, |b| b.root);
    let deltas = diff_runs(&opened.dev, left, thin.root).map_err(PlanError::Mappings)?;
    let bytes = |b: u64| b.checked_mul(bs).ok_or(PlanError::Overflow(b));
    let mut pieces = Vec::new();
    for d in &deltas {
        let (offset, len) = (bytes(d.begin)?, bytes(d.len)?);
        let data = match (base.is_some(), d.kind) {
            (false, _) | (true, DeltaKind::RightOnly) => d.data,
            (true, DeltaKind::Different) => d.right_data,
            (true, DeltaKind::LeftOnly) => {
                pieces.push(Piece::Unmap { offset, len });
                continue;
            }
            (true, DeltaKind::Same) => continue,
        };
        pieces.push(Piece::Data {
            offset,
            data: bytes(data)?,
            len,
        });
    }
    let mapped = pieces.last().map_or(0, |p| p.offset() + p.len());
    let volume_size = match src.volume_size {
        Some(s) if s < mapped => return Err(PlanError::SizeTooSmall { size: s, mapped }),
        Some(s) => s,
        None => mapped,
    };
    if base.is_none() && holes == Holes::Unmap {
        pieces = with_holes(&pieces, volume_size);
    }
    Ok(Plan {
        pieces,
        volume_size,
        granularity: gran,
        source: identity(sb.data_block_size, thin.id, &thin.details),
        base: base.map(|b| identity(sb.data_block_size, b.id, &b.details)),
    })
}

/// `pieces` (all DATA, sorted) with UNMAP pieces for the gaps up to `size`.
fn with_holes(pieces: &[Piece], size: u64) -> Vec<Piece> {
    let mut out = Vec::with_capacity(pieces.len() * 2 + 1);
    let mut at = 0;
    for p in pieces {
        if p.offset() > at {
            out.push(Piece::Unmap {
                offset: at,
                len: p.offset() - at,
            });
        }
        out.push(*p);
        at = p.offset() + p.len();
    }
    if size > at {
        out.push(Piece::Unmap {
            offset: at,
            len: size - at,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holes_fill_the_gaps_and_the_tail() {
        let d = |offset, len| Piece::Data {
            offset,
            data: 0,
            len,
        };
        let u = |offset, len| Piece::Unmap { offset, len };
        assert_eq!(
            with_holes(&[d(10, 5), d(15, 5), d(30, 2)], 40),
            [u(0, 10), d(10, 5), d(15, 5), u(20, 10), d(30, 2), u(32, 8)]
        );
        assert_eq!(with_holes(&[], 7), [u(0, 7)]);
        assert_eq!(
            d(10, 5).from(12),
            Some(Piece::Data {
                offset: 12,
                data: 2,
                len: 3
            })
        );
        assert_eq!(d(10, 5).from(15), None);
        assert_eq!(u(10, 5).from(0), Some(u(10, 5)));
    }
}
