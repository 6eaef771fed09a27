//! The unit of metadata I/O: a 4 KiB block, aligned to 4 KiB so that the same
//! buffer can be used for O_DIRECT reads of block devices.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Size of every metadata block in bytes (fixed by the format).
pub const BLOCK_SIZE: usize = 4096;

/// `BLOCK_SIZE` as a `u64`, for offset arithmetic.
pub const BLOCK_SIZE_U64: u64 = 4096;

/// A metadata block number (block `n` lives at byte offset `n * 4096`).
pub type BlockNr = u64;

/// One 4 KiB metadata block with 4 KiB alignment.
#[derive(Clone, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C, align(4096))]
pub struct Block(pub [u8; BLOCK_SIZE]);

impl Block {
    /// An all-zero block on the heap.
    #[must_use]
    pub fn zeroed() -> Box<Block> {
        Box::new(Block([0; BLOCK_SIZE]))
    }

    /// A vector of `n` zeroed blocks (contiguous and aligned).
    #[must_use]
    pub fn zeroed_vec(n: usize) -> Vec<Block> {
        vec![Block([0; BLOCK_SIZE]); n]
    }

    /// True when every byte of the block is zero.
    #[must_use]
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|&b| b == 0)
    }
}

impl std::ops::Deref for Block {
    type Target = [u8; BLOCK_SIZE];
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Block {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}
