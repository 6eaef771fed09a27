//! The thin superblock (block 0) and the metadata-snapshot copy (`held_root`).
//!
//! ```text
//! offset size  field
//!      0    4  csum                      (XOR 160774)
//!      4    4  flags                     bit 0 = NEEDS_CHECK
//!      8    8  blocknr                   own location (0 for the live superblock)
//!     16   16  uuid                      unused, zero
//!     32    8  magic                     27022010
//!     40    4  version                   1 or 2
//!     44    4  time                      snapshot counter
//!     48    8  trans_id
//!     56    8  held_root                 metadata snapshot copy, 0 = none
//!     64  128  data_space_map_root       first 32 bytes = SmRoot
//!    192  128  metadata_space_map_root   first 32 bytes = SmRoot
//!    320    8  data_mapping_root         top-level mapping tree
//!    328    8  device_details_root
//!    336    4  data_block_size           sectors
//!    340    4  metadata_block_size       8
//!    344    8  metadata_nr_blocks        at format time only
//!    352    4  compat_flags
//!    356    4  compat_ro_flags
//!    360    4  incompat_flags
//!    364 3732  unused, zero
//! ```

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

use crate::pdata::block::{Block, BlockNr, BLOCK_SIZE};
use crate::pdata::checksum::{self, BlockKind};
use crate::pdata::io::BlockDevice;
use crate::pdata::space_map::SmRoot;

/// Superblock magic number.
pub const THIN_MAGIC: u64 = 27_022_010;
/// NEEDS_CHECK flag bit.
pub const NEEDS_CHECK: u32 = 1;
/// Size of each space-map root field.
pub const SM_ROOT_FIELD: usize = crate::pdata::space_map::SM_ROOT_SIZE;
/// The largest metadata device the format can index, defined by the space map.
pub use crate::pdata::space_map::MAX_METADATA_BLOCKS;

/// Raw superblock layout.
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct RawSuperblock {
    /// Checksum.
    pub csum: U32,
    /// Flags.
    pub flags: U32,
    /// Own location.
    pub blocknr: U64,
    /// Unused.
    pub uuid: [u8; 16],
    /// Magic.
    pub magic: U64,
    /// Format version.
    pub version: U32,
    /// Snapshot time counter.
    pub time: U32,
    /// Transaction id.
    pub trans_id: U64,
    /// Metadata snapshot location.
    pub held_root: U64,
    /// Data space-map root.
    pub data_space_map_root: [u8; SM_ROOT_FIELD],
    /// Metadata space-map root.
    pub metadata_space_map_root: [u8; SM_ROOT_FIELD],
    /// Top-level mapping tree root.
    pub data_mapping_root: U64,
    /// Device details tree root.
    pub device_details_root: U64,
    /// Sectors per data block.
    pub data_block_size: U32,
    /// Always 8.
    pub metadata_block_size: U32,
    /// Metadata size at format time.
    pub metadata_nr_blocks: U64,
    /// Optional features.
    pub compat_flags: U32,
    /// Read-only-compatible features.
    pub compat_ro_flags: U32,
    /// Incompatible features.
    pub incompat_flags: U32,
}
const _: () = assert!(std::mem::size_of::<RawSuperblock>() == 364);

/// A decoded superblock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// Flags (bit 0 = NEEDS_CHECK).
    pub flags: u32,
    /// Own location.
    pub blocknr: BlockNr,
    /// Magic number as stored.
    pub magic: u64,
    /// Format version.
    pub version: u32,
    /// Snapshot time counter.
    pub time: u32,
    /// Transaction id.
    pub trans_id: u64,
    /// Metadata snapshot location (0 = none).
    pub held_root: BlockNr,
    /// Data space map root.
    pub data_sm_root: SmRoot,
    /// Metadata space map root.
    pub metadata_sm_root: SmRoot,
    /// True when bytes 32..128 of either sm root field are non-zero.
    pub sm_root_tail_nonzero: bool,
    /// Top-level mapping tree root.
    pub mapping_root: BlockNr,
    /// Device details tree root.
    pub details_root: BlockNr,
    /// Sectors per data block.
    pub data_block_size: u32,
    /// Expected 8.
    pub metadata_block_size: u32,
    /// Metadata size at format time.
    pub metadata_nr_blocks: u64,
    /// Optional features.
    pub compat_flags: u32,
    /// Read-only-compatible features.
    pub compat_ro_flags: u32,
    /// Incompatible features.
    pub incompat_flags: u32,
}

/// Superblock failures, worded as the tools print them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SuperblockError {
    /// Read failed.
    #[error("superblock: io error: {0}")]
    Io(String),
    /// Bad checksum.
    #[error("bad checksum in superblock")]
    Checksum,
    /// Location mismatch.
    #[error("superblock: blocknr is {found}, expected {expected}")]
    Blocknr {
        /// Stored value.
        found: u64,
        /// Location.
        expected: u64,
    },
    /// Wrong magic.
    #[error("superblock: bad magic {0}, expected 27022010")]
    Magic(u64),
    /// Version not 1 or 2.
    #[error("superblock: unsupported metadata version {0}")]
    Version(u32),
    /// incompat_flags set.
    #[error("superblock: unsupported incompatible features {0:#x}")]
    Incompat(u32),
    /// compat_ro_flags set.
    #[error("superblock: unsupported read-only-compatible features {0:#x}")]
    CompatRo(u32),
    /// Invalid data block size.
    #[error("superblock: invalid data block size {0}")]
    DataBlockSize(u32),
}

/// True when `sectors` is a data block size the kernel accepts.
#[must_use]
pub fn valid_data_block_size(sectors: u64) -> bool {
    (128..=2_097_152).contains(&sectors) && sectors.is_multiple_of(128)
}

impl Superblock {
    /// Decodes the fields (no checks; pure).
    #[must_use]
    pub fn from_bytes(block: &[u8; BLOCK_SIZE]) -> Superblock {
        let (raw, _) = RawSuperblock::ref_from_prefix(block)
            .unwrap_or_else(|_| unreachable!("a block holds a superblock"));
        let tail_nonzero = |f: &[u8; SM_ROOT_FIELD]| f[32..].iter().any(|&b| b != 0);
        Superblock {
            flags: raw.flags.get(),
            blocknr: raw.blocknr.get(),
            magic: raw.magic.get(),
            version: raw.version.get(),
            time: raw.time.get(),
            trans_id: raw.trans_id.get(),
            held_root: raw.held_root.get(),
            data_sm_root: SmRoot::from_bytes(&raw.data_space_map_root),
            metadata_sm_root: SmRoot::from_bytes(&raw.metadata_space_map_root),
            sm_root_tail_nonzero: tail_nonzero(&raw.data_space_map_root)
                || tail_nonzero(&raw.metadata_space_map_root),
            mapping_root: raw.data_mapping_root.get(),
            details_root: raw.device_details_root.get(),
            data_block_size: raw.data_block_size.get(),
            metadata_block_size: raw.metadata_block_size.get(),
            metadata_nr_blocks: raw.metadata_nr_blocks.get(),
            compat_flags: raw.compat_flags.get(),
            compat_ro_flags: raw.compat_ro_flags.get(),
            incompat_flags: raw.incompat_flags.get(),
        }
    }

    /// Encodes into a fresh zeroed block and checksums it.
    #[must_use]
    pub fn to_block(&self) -> Box<Block> {
        let mut b = Block::zeroed();
        self.write_into(&mut b.0);
        b
    }

    /// Overwrites the defined fields of `block` (keeping every other byte) and
    /// recomputes the checksum, so that fields this crate does not model survive
    /// a rewrite of the superblock.
    pub fn write_into(&self, block: &mut [u8; BLOCK_SIZE]) {
        let (raw, _) = RawSuperblock::mut_from_prefix(block)
            .unwrap_or_else(|_| unreachable!("a block holds a superblock"));
        raw.flags.set(self.flags);
        raw.blocknr.set(self.blocknr);
        raw.magic.set(self.magic);
        raw.version.set(self.version);
        raw.time.set(self.time);
        raw.trans_id.set(self.trans_id);
        raw.held_root.set(self.held_root);
        self.data_sm_root
            .write_into(&mut raw.data_space_map_root[..32]);
        self.metadata_sm_root
            .write_into(&mut raw.metadata_space_map_root[..32]);
        raw.data_mapping_root.set(self.mapping_root);
        raw.device_details_root.set(self.details_root);
        raw.data_block_size.set(self.data_block_size);
        raw.metadata_block_size.set(self.metadata_block_size);
        raw.metadata_nr_blocks.set(self.metadata_nr_blocks);
        raw.compat_flags.set(self.compat_flags);
        raw.compat_ro_flags.set(self.compat_ro_flags);
        raw.incompat_flags.set(self.incompat_flags);
        checksum::write_checksum(block, BlockKind::Superblock);
    }

    /// A fresh superblock as our writers make it (version 2, no snapshot).
    #[must_use]
    pub fn fresh(time: u32, trans_id: u64, data_block_size: u32) -> Superblock {
        Superblock {
            flags: 0,
            blocknr: 0,
            magic: THIN_MAGIC,
            version: 2,
            time,
            trans_id,
            held_root: 0,
            data_sm_root: SmRoot::default(),
            metadata_sm_root: SmRoot::default(),
            sm_root_tail_nonzero: false,
            mapping_root: 0,
            details_root: 0,
            data_block_size,
            metadata_block_size: 8,
            metadata_nr_blocks: 0,
            compat_flags: 0,
            compat_ro_flags: 0,
            incompat_flags: 0,
        }
    }

    /// True when NEEDS_CHECK is set.
    #[must_use]
    pub fn needs_check(&self) -> bool {
        self.flags & NEEDS_CHECK != 0
    }

    /// The fatal superblock rules after the checksum, in the order thin_check
    /// reports them.
    ///
    /// # Errors
    /// The first rule broken.
    pub fn validate(&self, location: BlockNr) -> Result<(), SuperblockError> {
        if self.blocknr != location {
            return Err(SuperblockError::Blocknr {
                found: self.blocknr,
                expected: location,
            });
        }
        if self.magic != THIN_MAGIC {
            return Err(SuperblockError::Magic(self.magic));
        }
        if self.version != 1 && self.version != 2 {
            return Err(SuperblockError::Version(self.version));
        }
        if self.incompat_flags != 0 {
            return Err(SuperblockError::Incompat(self.incompat_flags));
        }
        if self.compat_ro_flags != 0 {
            return Err(SuperblockError::CompatRo(self.compat_ro_flags));
        }
        if !valid_data_block_size(u64::from(self.data_block_size)) {
            return Err(SuperblockError::DataBlockSize(self.data_block_size));
        }
        Ok(())
    }
}

/// Reads block `location`, verifies its superblock checksum and decodes it.
/// Only the checksum is checked; call [`Superblock::validate`] for the rest.
///
/// # Errors
/// `Io` or `Checksum`.
pub fn read_superblock(
    dev: &dyn BlockDevice,
    location: BlockNr,
) -> Result<(Superblock, Box<Block>), SuperblockError> {
    let mut b = Block::zeroed();
    dev.read_at(location, &mut b)
        .map_err(|e| SuperblockError::Io(e.to_string()))?;
    if checksum::verify(&b.0, BlockKind::Superblock).is_err() {
        return Err(SuperblockError::Checksum);
    }
    Ok((Superblock::from_bytes(&b.0), b))
}

/// Reads and fully validates the live superblock at block 0.
///
/// # Errors
/// Any [`SuperblockError`].
pub fn read_live_superblock(dev: &dyn BlockDevice) -> Result<Superblock, SuperblockError> {
    let (sb, _) = read_superblock(dev, 0)?;
    sb.validate(0)?;
    Ok(sb)
}

/// A zeroed raw superblock, for writers that start from nothing.
#[must_use]
pub fn zeroed_raw() -> RawSuperblock {
    RawSuperblock::new_zeroed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_validation_order() {
        let mut sb = Superblock::fresh(3, 7, 128);
        sb.data_sm_root = SmRoot {
            nr_blocks: 1000,
            nr_allocated: 3,
            bitmap_root: 5,
            ref_count_root: 6,
        };
        let b = sb.to_block();
        let back = Superblock::from_bytes(&b.0);
        assert_eq!(back, sb);
        assert_eq!(back.validate(0), Ok(()));
        let mut bad = sb.clone();
        bad.magic = 5;
        bad.blocknr = 3;
        assert_eq!(
            bad.validate(0).unwrap_err().to_string(),
            "superblock: blocknr is 3, expected 0"
        );
        bad.blocknr = 0;
        assert_eq!(
            bad.validate(0).unwrap_err().to_string(),
            "superblock: bad magic 5, expected 27022010"
        );
        let mut bad = sb.clone();
        bad.incompat_flags = 0x10;
        assert_eq!(
            bad.validate(0).unwrap_err().to_string(),
            "superblock: unsupported incompatible features 0x10"
        );
        let mut bad = sb;
        bad.data_block_size = 100;
        assert_eq!(
            bad.validate(0).unwrap_err().to_string(),
            "superblock: invalid data block size 100"
        );
    }
}
