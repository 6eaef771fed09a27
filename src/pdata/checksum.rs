//! Block checksums: CRC-32C over bytes 4..4096, stored XOR a per-type salt.
//!
//! The stored value is the *non-inverted* CRC-32C (initial value !0, no final
//! inversion) XOR a constant that says what kind of block it is. Nothing else in
//! a block names its type, so `classify` (used only by pack and repair) recognises
//! a block by which salt matches.

use crate::pdata::block::BLOCK_SIZE;

/// The kinds of checksummed blocks, each with its XOR salt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockKind {
    /// Thin superblock (also the metadata-snapshot copy).
    Superblock,
    /// Any btree node.
    Node,
    /// Space-map bitmap.
    Bitmap,
    /// Metadata space-map index block.
    Index,
    /// dm-cache superblock (recognised only to refuse or pack it).
    CacheSuperblock,
    /// dm-era superblock.
    EraSuperblock,
    /// Array block (cache/era).
    Array,
}

impl BlockKind {
    /// Every kind, for classification.
    pub const ALL: [BlockKind; 7] = [
        BlockKind::Superblock,
        BlockKind::Node,
        BlockKind::Bitmap,
        BlockKind::Index,
        BlockKind::CacheSuperblock,
        BlockKind::EraSuperblock,
        BlockKind::Array,
    ];

    /// The XOR constant for this kind.
    #[must_use]
    pub const fn salt(self) -> u32 {
        match self {
            BlockKind::Superblock => 160_774,
            BlockKind::Node => 121_107,
            BlockKind::Bitmap => 240_779,
            BlockKind::Index => 160_478,
            BlockKind::CacheSuperblock => 9_031_977,
            BlockKind::EraSuperblock => 146_538_381,
            BlockKind::Array => 595_846_735,
        }
    }
}

/// Why a block failed verification against the kind the caller expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumError {
    /// The checksum matches no salt we expected.
    #[error("checksum mismatch: expected {expected:#x}, found {found:#x}")]
    Mismatch {
        /// Value the block should hold for the expected kind.
        expected: u32,
        /// Value stored in the block.
        found: u32,
    },
    /// The checksum is valid, but for another kind of block.
    #[error("block is a {found:?}, not a {expected:?}")]
    WrongKind {
        /// Kind the caller wanted.
        expected: BlockKind,
        /// Kind the checksum says.
        found: BlockKind,
    },
}

/// The raw (non-inverted) CRC-32C of bytes 4..4096.
#[must_use]
pub fn raw_crc(block: &[u8; BLOCK_SIZE]) -> u32 {
    crc32c::crc32c(&block[4..]) ^ 0xffff_ffff
}

fn stored(block: &[u8; BLOCK_SIZE]) -> u32 {
    u32::from_le_bytes([block[0], block[1], block[2], block[3]])
}

/// Checks that `block` carries a valid checksum for `kind`.
///
/// # Errors
/// `Mismatch` when no salt fits, `WrongKind` when another kind's salt fits.
pub fn verify(block: &[u8; BLOCK_SIZE], kind: BlockKind) -> Result<(), ChecksumError> {
    let raw = raw_crc(block);
    let found = stored(block);
    if raw ^ kind.salt() == found {
        return Ok(());
    }
    match BlockKind::ALL.iter().find(|k| raw ^ k.salt() == found) {
        Some(&other) => Err(ChecksumError::WrongKind {
            expected: kind,
            found: other,
        }),
        None => Err(ChecksumError::Mismatch {
            expected: raw ^ kind.salt(),
            found,
        }),
    }
}

/// Which kind of block this is, by which salt matches; `None` for unknown blocks.
#[must_use]
pub fn classify(block: &[u8; BLOCK_SIZE]) -> Option<BlockKind> {
    let x = raw_crc(block) ^ stored(block);
    BlockKind::ALL.iter().copied().find(|k| k.salt() == x)
}

/// Computes and stores the checksum of `block` for `kind` (call last, after every other byte).
pub fn write_checksum(block: &mut [u8; BLOCK_SIZE], kind: BlockKind) {
    let v = raw_crc(block) ^ kind.salt();
    block[0..4].copy_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_crc32c_test_vector() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn zero_block_values_match_the_spec() {
        let b = [0u8; BLOCK_SIZE];
        assert_eq!(raw_crc(&b), 0x58CD_A791);
        for (kind, want) in [
            (BlockKind::Superblock, 0x58CF_D397),
            (BlockKind::Node, 0x58CC_7E82),
            (BlockKind::Bitmap, 0x58CE_0B1A),
            (BlockKind::Index, 0x58CF_D54F),
        ] {
            let mut blk = b;
            write_checksum(&mut blk, kind);
            assert_eq!(stored(&blk), want, "{kind:?}");
            assert_eq!(verify(&blk, kind), Ok(()));
            assert_eq!(classify(&blk), Some(kind));
        }
    }

    #[test]
    fn wrong_kind_is_reported_apart_from_mismatch() {
        let mut b = [0u8; BLOCK_SIZE];
        write_checksum(&mut b, BlockKind::Bitmap);
        assert_eq!(
            verify(&b, BlockKind::Node),
            Err(ChecksumError::WrongKind {
                expected: BlockKind::Node,
                found: BlockKind::Bitmap
            })
        );
        b[100] = 1;
        assert!(matches!(
            verify(&b, BlockKind::Node),
            Err(ChecksumError::Mismatch { .. })
        ));
        assert_eq!(classify(&b), None);
    }
}
